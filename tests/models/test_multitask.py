"""nn-TransEC multitask classifier: cross-task gates, transfer from the segmentation encoder, ablation switches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.models.multitask import (  # noqa: E402
    CrossTaskGate,
    build_multitask_classifier,
    count_parameters,
    transfer_encoder_weights,
)
from esoct.models.unet3d import UNet3D, UNetEncoder  # noqa: E402

CHANNELS = (4, 8, 16)


def encoder(residual: bool = True) -> UNetEncoder:
    return UNetEncoder(1, CHANNELS, (1, (2, 2, 2), (2, 2, 2)), 3, residual=residual)


@pytest.fixture
def seg_encoder():
    torch.manual_seed(1)
    net = UNet3D(1, 6, channels=CHANNELS, strides=(1, (2, 2, 2), (2, 2, 2)), deep_supervision=2)
    return net.encoder  # stands for a trained segmentation encoder


def test_gate_coefficients_are_in_unit_interval_and_multiply_voxelwise():
    torch.manual_seed(0)
    gate = CrossTaskGate(8)
    seg = 50 * torch.randn(2, 8, 4, 5, 6)  # large values push the sigmoid to both ends
    cls = torch.randn(2, 3, 4, 5, 6)
    alpha = gate.coefficients(seg).detach()
    assert alpha.shape == (2, 1, 4, 5, 6)
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    assert float(alpha.min()) < 0.01 and float(alpha.max()) > 0.99
    manual = torch.sigmoid(torch.nn.functional.conv3d(seg, gate.conv.weight, gate.conv.bias)).detach()
    assert torch.equal(alpha, manual)
    assert torch.equal(gate(cls, seg).detach(), cls * manual)
    with pytest.raises(InputError, match="differ in size"):
        gate(cls, seg[:, :, :2])


def test_gated_forward_equals_the_manual_composition(seg_encoder):
    model, _ = build_multitask_classifier(seg_encoder, encoder, residual=True, gates=True, transfer=False, hidden=8)
    model.eval()
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        seg_feats = seg_encoder.eval()(x)
        h = x
        for stage, gate, f in zip(model.cls_encoder.stages, model.gates, seg_feats):
            h = stage(h) * torch.sigmoid(gate.conv(f))
        pooled = h.mean(dim=(2, 3, 4))
        expected = model.head.fc2(torch.nn.functional.leaky_relu(model.head.fc1(pooled), 0.01))
        assert torch.allclose(model(x), expected, atol=1e-6)
        # precomputed segmentation features give the same logits
        assert torch.allclose(model(x, seg_feats), expected, atol=1e-6)
    assert model.target_layer == "cls_encoder.stages.2"


def test_transfer_copies_exactly_the_encoder_tensors_and_leaves_the_head_random(seg_encoder):
    model, report = build_multitask_classifier(seg_encoder, encoder, residual=True, gates=True, transfer=True, seed=3)
    src, dst = seg_encoder.state_dict(), model.cls_encoder.state_dict()
    assert sorted(report.copied) == sorted(src) == sorted(dst) and report.complete
    for name, value in src.items():
        assert torch.equal(dst[name], value), name
    # a copy, not shared storage: training the classifier leaves the segmentation encoder alone
    assert dst["stages.0.0.conv1.0.weight"].data_ptr() != src["stages.0.0.conv1.0.weight"].data_ptr()
    fresh, none = build_multitask_classifier(seg_encoder, encoder, residual=True, gates=True, transfer=False, seed=3)
    assert none is None
    assert not torch.equal(fresh.cls_encoder.stages[0][0].conv1[0].weight, seg_encoder.stages[0][0].conv1[0].weight)
    # the head and gates are the seeded random initialisation, with or without transfer
    for a, b in zip(model.head.parameters(), fresh.head.parameters()):
        assert torch.equal(a, b)
    other, _ = build_multitask_classifier(seg_encoder, encoder, residual=True, gates=True, transfer=True, seed=4)
    assert not torch.equal(other.head.fc1.weight, model.head.fc1.weight)
    # residual -> plain transfer copies what fits and reports the rest
    plain = encoder(residual=False)
    partial = transfer_encoder_weights(seg_encoder, plain)
    assert partial.copied and any(".skip." in k for k in partial.only_in_source) and not partial.only_in_target
    with pytest.raises(InputError, match="incomplete"):
        transfer_encoder_weights(encoder(residual=False), encoder(residual=True), strict=True)


def test_ablation_switches_change_the_trainable_parameter_count_as_expected(seg_encoder):
    def n(**switches):
        model, _ = build_multitask_classifier(seg_encoder, encoder, hidden=8, **switches)
        return count_parameters(model), model

    plain, _ = n(residual=False, gates=False, transfer=False)
    residual, _ = n(residual=True, gates=False, transfer=False)
    gated, model = n(residual=True, gates=True, transfer=False)
    transferred, _ = n(residual=True, gates=True, transfer=True)
    # residual blocks add a 1x1x1 projection (conv weight + bias, norm weight + bias) where channels change
    cin = (1, *CHANNELS[:-1])
    assert residual - plain == sum(a * b + 3 * b for a, b in zip(cin, CHANNELS))
    # one 1x1x1 gate per depth: C_d weights + 1 bias
    assert gated - residual == sum(c + 1 for c in CHANNELS)
    assert transferred == gated
    head = 16 * 8 + 8 + 8 * 4 + 4
    assert plain == count_parameters(encoder(residual=False)) + head
    # the frozen segmentation encoder is not trained and stays in eval mode
    assert all(not p.requires_grad for p in model.seg_encoder.parameters())
    model.train()
    assert not model.seg_encoder.training and model.cls_encoder.training
    loss = model(torch.randn(2, 1, 8, 8, 8)).sum()
    loss.backward()
    assert all(p.grad is None for p in model.seg_encoder.parameters())
    assert model.gates[0].conv.weight.grad is not None
    with pytest.raises(InputError, match="segmentation encoder"):
        build_multitask_classifier(None, encoder, gates=True, transfer=False)
