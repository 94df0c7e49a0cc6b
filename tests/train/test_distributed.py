"""DDP path of train_segmentation: two CPU processes with the gloo backend end with the same weights."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

from esoct.train.distributed import DistInfo, init_distributed, shard_seed, wrap_model  # noqa: E402

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: join the group from torchrun-style environment variables, train, save its weights."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from esoct.io.volume import Volume
    from esoct.models.unet3d import UNet3D
    from esoct.segment.data import Case, PatchDataset, Preprocessing
    from esoct.segment.training import TrainingConfig, train_segmentation
    from esoct.train.device import seed_everything
    from esoct.train.distributed import cleanup

    info = init_distributed(backend="gloo")
    assert info.world_size == world and info.rank == rank and info.device.type == "cpu"
    prep = Preprocessing((2.0, 2.0, 2.0), -100.0, 300.0, 50.0, 100.0)
    rng = np.random.default_rng(0)
    z, y, x = np.indices((16, 16, 16))
    lab = (((z - 8) ** 2 + (y - 7) ** 2 + (x - 9) ** 2) < 20).astype(np.uint8)
    hu = (rng.normal(0, 30, lab.shape) + 200 * lab).astype(np.float32)
    case = Case("s0", prep.image(Volume(hu, spacing=(2.0, 2.0, 2.0))), prep.labels(Volume(lab, spacing=(2.0, 2.0, 2.0))))
    config = TrainingConfig(epochs=1, iterations_per_epoch=2, batch_size=1, seed=0)

    def net(seed):
        seed_everything(seed)  # different initial weights per rank: DDP must broadcast rank 0's
        return UNet3D(1, 2, channels=(4, 8), strides=(1, 2), deep_supervision=1)

    dataset = PatchDataset([case], (8, 8, 8), 2, background=prep.background, seed=config.seed)
    try:
        result = train_segmentation(net(100 + rank), dataset, out, config, preprocessing=prep, progress=False)
        assert dataset.seed == config.seed  # restored after training
        torch.save(result.segmenter.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
        first = dataset[0]["image"]
        dataset.seed = shard_seed(config.seed, info)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump({"history": result.history, "patch0_sum": float(first.sum()),
                       "shard_patch0_sum": float(dataset[0]["image"].sum())}, fh)
        _interrupted_and_resumed(net, rank, prep, case, out)
    finally:
        cleanup()


def _interrupted_and_resumed(net, rank, prep, case, out):
    """2 epochs uninterrupted into ``full``; 1 epoch, a stop, then a resume from the checkpoint into ``resumed``."""
    from esoct.segment.data import PatchDataset
    from esoct.segment.training import TrainingConfig, train_segmentation

    config = TrainingConfig(epochs=2, iterations_per_epoch=2, batch_size=1, seed=1)
    data = PatchDataset([case], (8, 8, 8), 2, background=prep.background, seed=config.seed)
    full = train_segmentation(net(0), data, os.path.join(out, "full"), config, preprocessing=prep, progress=False)

    def stop(epoch, history):
        raise KeyboardInterrupt  # on every rank, after epoch 1's checkpoint

    try:
        train_segmentation(net(0), data, os.path.join(out, "resumed"), config, preprocessing=prep, progress=False,
                           on_epoch_end=stop)
    except KeyboardInterrupt:
        pass
    resumed = train_segmentation(net(300 + rank), data, os.path.join(out, "resumed"), config, preprocessing=prep,
                                 progress=False)
    assert resumed.resumed_from == 1
    torch.save({"full": full.segmenter.model.state_dict(), "resumed": resumed.segmenter.model.state_dict()},
               os.path.join(out, f"resume_rank{rank}.pt"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True,
                                          start_method="spawn")
    return out


def test_both_ranks_end_with_the_same_weights(ddp_run):
    a = torch.load(ddp_run / "rank0.pt", weights_only=True)
    b = torch.load(ddp_run / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the checkpoint (written by rank 0 only) holds the same unwrapped weights
    ckpt = torch.load(ddp_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["model"])
    assert all(torch.equal(ckpt["model"][k], a[k]) for k in a)
    assert not (ddp_run / "checkpoint.pt.tmp").exists()
    # one history and one log line per epoch, written once; the loss is the mean over the ranks
    history = json.loads((ddp_run / "history.json").read_text())
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert len(history) == 1 and ranks[0]["history"][0]["loss"] == pytest.approx(ranks[1]["history"][0]["loss"])
    assert history[0]["loss"] == pytest.approx(ranks[0]["history"][0]["loss"])
    assert (ddp_run / "train.log").read_text().count("epoch 1/1 loss") == 1


def test_ranks_draw_different_patches(ddp_run):
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0]["patch0_sum"] == ranks[1]["patch0_sum"]  # same dataset seed outside training
    assert ranks[0]["shard_patch0_sum"] != ranks[1]["shard_patch0_sum"]  # seed + rank inside


def test_every_rank_resumes_from_the_same_checkpoint(ddp_run):
    runs = [torch.load(ddp_run / f"resume_rank{r}.pt", weights_only=True) for r in range(WORLD)]
    full = runs[0]["full"]
    for run in runs:  # resumed on both ranks (from different fresh weights) = the uninterrupted run
        assert all(torch.equal(run["resumed"][k], full[k]) and torch.equal(run["full"][k], full[k]) for k in full)
    history = json.loads((ddp_run / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert "resume after epoch 1 of 2" in (ddp_run / "resumed" / "train.log").read_text()


def test_without_torchrun_environment_it_is_one_plain_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed()
    assert info.world_size == 1 and info.rank == 0 and info.is_main and not info.distributed
    assert not dist.is_initialized()
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, info) is model
    assert shard_seed(7, info) == 7 and shard_seed(7, DistInfo(rank=3, world_size=4)) == 10
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        init_distributed()
