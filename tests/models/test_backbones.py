import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.models.backbones import load_backbone_weights, resnet18_2d  # noqa: E402


def test_feature_shape_and_channels():
    model = resnet18_2d(in_channels=7, width=0.125).eval()
    out = model(torch.zeros(2, 7, 64, 64))
    assert out.shape == (2, 64) and model.out_features == 64
    assert resnet18_2d(in_channels=7).out_features == 512


def test_local_weights_load_adapt_and_refuse(tmp_path):
    torch.manual_seed(0)
    source = resnet18_2d(in_channels=3, width=0.125)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = resnet18_2d(in_channels=7, width=0.125)
    info = load_backbone_weights(target, path)
    assert info["adapted"] == ["conv1.weight"]
    assert torch.equal(target.layer4[0].conv1.weight, source.layer4[0].conv1.weight)
    expected = source.conv1.weight.mean(dim=1, keepdim=True) * 3 / 7
    assert torch.allclose(target.conv1.weight[:, 4:5], expected)
    with pytest.raises(InputError, match="do not fit"):
        load_backbone_weights(resnet18_2d(in_channels=7, width=0.25), path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights"):
        load_backbone_weights(target, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not found"):
        load_backbone_weights(target, tmp_path / "missing.pt")
