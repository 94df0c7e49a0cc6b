"""Device choice and seeding: CUDA when present, CPU otherwise; the same seed gives the same run."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def pick_device(device: str | None = None) -> torch.device:
    """The device to train on: ``device`` when given, else CUDA when available, else CPU.

    Parameters
    ----------
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` or ``"auto"`` picks.

    Returns
    -------
    torch.device
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but CUDA is not available here")
    return dev


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally make cuDNN deterministic.

    Parameters
    ----------
    seed : int
        The seed.
    deterministic : bool
        Ask cuDNN for deterministic algorithms (slower on GPU; no effect on CPU results, which
        are deterministic for a fixed thread count).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (for DataLoader shuffling and augmentation)."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
