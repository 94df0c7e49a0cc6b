"""Atomic per-epoch checkpoints with random-number state, so an interrupted run resumes bit for bit."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from esoct.errors import InputError


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    epoch: int = 0,
    extra: dict | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> None:
    """Write a checkpoint atomically (temporary file + rename): a crash never leaves half a file.

    Parameters
    ----------
    path : str or Path
        Destination (``.pt``).
    model, optimizer, scheduler
        Their ``state_dict`` is saved (optimizer/scheduler optional).
    epoch : int
        Number of completed epochs.
    extra : dict, optional
        Plain values to keep (history, best metric...).
    generators : dict of str to torch.Generator, optional
        Named generators (data shuffling, augmentation) whose state is saved.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "extra": extra or {},
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": {k: g.get_state() for k, g in (generators or {}).items()},
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def safe_load(path: str | Path, map_location: str | torch.device = "cpu"):
    """``torch.load`` that cannot run code: tensors, plain Python values and NumPy arrays only.

    ``weights_only=True`` refuses every global but tensors and builtins; the NumPy array types are
    allowed besides (a checkpoint keeps the NumPy random state as an array), since rebuilding an
    array runs no user code.

    Parameters
    ----------
    path : str or Path
    map_location : str or torch.device

    Returns
    -------
    object
        What was saved.
    """
    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, map_location=map_location, weights_only=True)


def _numpy_globals() -> list:
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [getattr(np.dtypes, n) for n in ("UInt32DType", "Int64DType", "Float64DType", "Float32DType")
                if hasattr(np, "dtypes") and hasattr(np.dtypes, n)]
    return allowed


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects.

    Parameters
    ----------
    path : str or Path
        Checkpoint file.
    model, optimizer, scheduler, generators
        Objects to restore (those given).
    restore_rng : bool
        Restore the global Python/NumPy/torch random states, for an exact resume.
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    dict
        ``{"epoch": int, "extra": dict}``.

    Raises
    ------
    InputError
        When the file is missing, unreadable (corrupt, truncated) or holds another model.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        state = safe_load(path, map_location)  # no code can run: a planted file is refused
        model.load_state_dict(state["model"])
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise InputError(f"corrupt or incompatible checkpoint ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    rng = state.get("rng", {})
    for name, gen in (generators or {}).items():
        if name in rng.get("generators", {}):
            gen.set_state(rng["generators"][name])
    if restore_rng and rng:
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return {"epoch": int(state.get("epoch", 0)), "extra": state.get("extra", {})}

