import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.models.backbones import resnet18_2d  # noqa: E402
from esoct.models.resolstm import ResNetSliceClassifier, ResoLSTMDepth, build_model  # noqa: E402


def _padded_batch(lengths, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(lengths), max(lengths), 1, size, size, generator=g)
    for i, n in enumerate(lengths):
        x[i, n:] = 7.0  # padding content must not matter
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("cls", [ResoLSTMDepth, ResNetSliceClassifier])
def test_padded_batch_equals_each_sequence_alone(cls):
    torch.manual_seed(0)
    model = cls(num_classes=2, width=0.125).eval()
    x, lengths = _padded_batch([5, 2, 3])
    with torch.no_grad():
        batched = model(x, lengths)
        alone = torch.cat([model(x[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
        refilled = model(torch.where(torch.arange(5)[None, :, None, None, None] < lengths[:, None, None, None, None],
                                     x, torch.zeros_like(x)), lengths)
    assert batched.shape == (3, 2)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched, refilled, rtol=1e-5, atol=1e-6)


def test_lstm_reads_slices_in_order_and_four_classes():
    torch.manual_seed(0)
    model = ResoLSTMDepth(num_classes=4, width=0.125, hidden_size=16).eval()
    x, lengths = _padded_batch([4, 4])
    with torch.no_grad():
        out = model(x, lengths)
        flipped = model(x.flip(1), lengths)
        feats = model.features(x, lengths)
    assert out.shape == (2, 4) and feats.shape == (2, 16)
    assert not torch.allclose(out, flipped)  # order matters to an LSTM
    assert model.lstm.num_layers == 2 and ResoLSTMDepth(width=0.125).lstm.hidden_size == 128


def test_baseline_is_mean_of_slice_probabilities():
    torch.manual_seed(1)
    model = ResNetSliceClassifier(num_classes=2, width=0.125).eval()
    x, lengths = _padded_batch([3, 1])
    with torch.no_grad():
        logits, valid = model.slice_logits(x, lengths)
        patient = torch.softmax(model(x, lengths), dim=-1)
    expected0 = torch.softmax(logits[0, :3], dim=-1).mean(0)
    expected1 = torch.softmax(logits[1, :1], dim=-1).mean(0)
    torch.testing.assert_close(patient, torch.stack([expected0, expected1]))
    assert valid.tolist() == [[True, True, True], [True, False, False]]
    y = torch.tensor([1, 0])
    manual = torch.nn.functional.cross_entropy(torch.cat([logits[0, :3], logits[1, :1]]), torch.tensor([1, 1, 1, 0]))
    torch.testing.assert_close(model.loss(x, lengths, y), manual)


def test_bad_inputs_and_local_weights(tmp_path):
    model = ResoLSTMDepth(width=0.125)
    with pytest.raises(InputError, match=r"\(N, S, C, H, W\)"):
        model(torch.zeros(2, 1, 32, 32))
    with pytest.raises(InputError, match="within 1..3"):
        model(torch.zeros(2, 3, 1, 32, 32), torch.tensor([4, 1]))
    with pytest.raises(InputError, match="unknown model"):
        build_model("vgg")
    torch.manual_seed(5)
    source = resnet18_2d(width=0.125)
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    for cls in (ResoLSTMDepth, ResNetSliceClassifier):
        net = cls(width=0.125, weights=tmp_path / "r18.pt")
        assert torch.equal(net.encoder.resnet.layer4[0].conv1.weight, source.layer4[0].conv1.weight)
