import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.models.unet3d import PlainBlock, ResidualBlock, UNet3D  # noqa: E402


def tiny(**kw):
    torch.manual_seed(0)
    args = dict(channels=(4, 8, 8, 16, 16), strides=(1, (1, 2, 2), 2, 2, (1, 2, 2)))
    args.update(kw)
    return UNet3D(1, 6, **args)


def test_deep_supervision_outputs_and_eval_output():
    net = tiny()
    x = torch.randn(2, 1, 8, 32, 32)
    assert net.size_divisor == (4, 16, 16)
    assert net.output_scales() == [(1, 1, 1), (1, 2, 2), (2, 4, 4), (4, 8, 8)]
    outs = net.train()(x)
    assert [tuple(o.shape) for o in outs] == [(2, 6, 8, 32, 32), (2, 6, 8, 16, 16), (2, 6, 4, 8, 8), (2, 6, 2, 4, 4)]
    full = net.eval()(x)
    assert full.shape == (2, 6, 8, 32, 32)
    # eval output is the training-mode full-resolution head (instance norm has no running stats)
    assert torch.allclose(full, outs[0], atol=1e-5)


def test_encoder_returns_stage_features():
    net = tiny()
    feats = net.encoder(torch.randn(1, 1, 8, 32, 32))
    assert [tuple(f.shape) for f in feats] == [
        (1, 4, 8, 32, 32), (1, 8, 8, 16, 16), (1, 8, 4, 8, 8), (1, 16, 2, 4, 4), (1, 16, 2, 2, 2)
    ]


def test_fewer_supervision_levels_and_config_roundtrip():
    net = tiny(deep_supervision=2)
    outs = net.train()(torch.randn(1, 1, 8, 32, 32))
    assert len(outs) == 2 and len(net.decoder.heads) == 2
    clone = UNet3D.from_config(net.config)
    clone.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 8, 32, 32)
    assert torch.equal(clone.eval()(x), net.eval()(x))


def test_residual_and_plain_blocks():
    res, plain = tiny(), tiny(residual=False)
    assert all(isinstance(s[0], ResidualBlock) for s in res.encoder.stages)
    assert all(isinstance(s[0], PlainBlock) for s in plain.encoder.stages)
    extra = sum(p.numel() for p in res.parameters()) - sum(p.numel() for p in plain.parameters())
    # every stage changes channels or strides, so each has a 1x1x1 projection shortcut: conv weights,
    # conv bias and the instance norm's affine weight and bias
    pairs = [(1, 4), (4, 8), (8, 8), (8, 16), (16, 16)]
    expected = sum(ci * co + co + 2 * co for ci, co in pairs)
    assert extra == expected
    assert plain.eval()(torch.randn(1, 1, 8, 32, 32)).shape == (1, 6, 8, 32, 32)


def test_identity_skip_passes_input_through():
    block = ResidualBlock(3, 3)
    with torch.no_grad():
        norm = block.conv2[1]
        norm.weight.zero_()
        norm.bias.zero_()
    x = torch.randn(1, 3, 4, 5, 6)
    assert torch.allclose(block(x), torch.nn.functional.leaky_relu(x, 0.01))


def test_bad_settings_and_sizes_are_refused():
    net = tiny()
    with pytest.raises(InputError, match="multiple of"):
        net(torch.zeros(1, 1, 8, 30, 32))
    with pytest.raises(InputError, match="first stage"):
        UNet3D(1, 2, channels=(4, 8), strides=(2, 2), deep_supervision=1)
    with pytest.raises(InputError, match="deep_supervision"):
        UNet3D(1, 2, channels=(4, 8, 8), deep_supervision=3)
    with pytest.raises(InputError, match="one entry per stage"):
        UNet3D(1, 2, channels=(4, 8, 8), strides=(1, 2), deep_supervision=2)
