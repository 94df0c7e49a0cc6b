"""The documented launch command: ``torchrun --nproc_per_node=2 -m esoct.train.ddp_segment`` on CPU (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

ARGS = ["--epochs", "1", "--iterations", "2", "--batch-size", "1", "--base-features", "4", "--max-features", "8",
        "--memory-mb", "20", "--no-progress", "--device", "cpu"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("phantom")
    generate_cohort(root, 3, seed=2, workers=1, progress=False)
    return root / "manifest.csv"


def test_torchrun_two_processes_train_from_a_manifest(manifest, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "esoct.train.ddp_segment", "--manifest", str(manifest),
           "--out", str(tmp_path / "run"), *ARGS]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("checkpoint:") == 1  # printed by rank 0 only
    from esoct.segment.inference import load_segmenter

    segmenter = load_segmenter(tmp_path / "run" / "checkpoint.pt", device="cpu")
    assert segmenter.model.config["channels"][0] == 4
    assert (tmp_path / "run" / "plan" / "plan.json").is_file()
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 1


def test_single_process_without_torchrun(manifest, tmp_path, monkeypatch):
    from esoct.train.ddp_segment import main

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(1)
    assert main(["--manifest", str(manifest), "--out", str(tmp_path / "one"), *ARGS]) == 0
    assert (tmp_path / "one" / "checkpoint.pt").is_file()
