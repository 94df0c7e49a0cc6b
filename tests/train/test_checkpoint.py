import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from esoct.train.device import seed_everything, seeded_generator  # noqa: E402


def _train(model, opt, gen, steps):
    for _ in range(steps):
        x = torch.randn(4, 3, generator=gen)
        loss = (model(x) - torch.rand(4, 1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    seed_everything(0)
    model, gen = torch.nn.Linear(3, 1), seeded_generator(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    _train(model, opt, gen, 3)
    save_checkpoint(tmp_path / "c.pt", model, opt, epoch=3, extra={"best": 0.5}, generators={"data": gen})
    _train(model, opt, gen, 3)
    straight = model.weight.detach().clone()

    seed_everything(123)  # a new process: different global state until the checkpoint restores it
    model2, gen2 = torch.nn.Linear(3, 1), seeded_generator(7)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    info = load_checkpoint(tmp_path / "c.pt", model2, opt2, generators={"data": gen2})
    assert info == {"epoch": 3, "extra": {"best": 0.5}}
    _train(model2, opt2, gen2, 3)
    assert torch.equal(model2.weight, straight)


def test_corrupt_and_wrong_checkpoints_are_refused(tmp_path):
    model = torch.nn.Linear(3, 1)
    save_checkpoint(tmp_path / "c.pt", model)
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or incompatible checkpoint"):
        load_checkpoint(tmp_path / "cut.pt", model)
    with pytest.raises(InputError, match="corrupt or incompatible checkpoint"):
        load_checkpoint(tmp_path / "c.pt", torch.nn.Linear(4, 1))
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "none.pt", model)
    assert not (tmp_path / "c.pt.tmp").exists()
