"""Data-parallel training (PyTorch DDP) under ``torchrun``: process group, model wrapping, per-rank seeds.

Launch one process per GPU with ``torchrun --nproc_per_node=N ...``; torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which
:func:`init_distributed` reads. Without them everything here is a no-op and training runs as
one plain process (one GPU when present, else the CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed run.

    Attributes
    ----------
    rank : int
        Global rank (0 .. world_size - 1).
    world_size : int
        Number of processes; 1 for a plain single-process run.
    local_rank : int
        Rank on this machine (which GPU it uses).
    device : torch.device
        ``cuda:<local_rank>`` with CUDA, else the CPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there are several processes."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def _device_for(local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment, or run as one process.

    Parameters
    ----------
    backend : str, optional
        ``"nccl"``, ``"gloo"``...; default NCCL when CUDA is available, else Gloo.

    Returns
    -------
    DistInfo
        World size 1 (nothing initialised) when ``WORLD_SIZE`` is unset or 1. With CUDA the
        process's current device is set to ``cuda:<LOCAL_RANK>``.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current()
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo(device=_device_for(0))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ValueError(f"WORLD_SIZE={world_size} but {', '.join(missing)} unset: launch with torchrun")
    device = _device_for(local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def current() -> DistInfo:
    """This process's :class:`DistInfo` from an initialised process group (world size 1 without one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo(device=_device_for(0))
    local_rank = _env_int("LOCAL_RANK", dist.get_rank())
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, _device_for(local_rank))


def wrap_model(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when ``info.world_size > 1``, else ``model`` unchanged.

    The model must already be on ``info.device``. ``device_ids`` are given on CUDA only.
    DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts equal.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if info.device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[info.device.index], output_device=info.device.index)
    return DistributedDataParallel(model)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP (or DataParallel) wrapper; its ``state_dict`` has no ``module.`` prefix."""
    return getattr(model, "module", model)


def shard_seed(seed: int, info: DistInfo) -> int:
    """A different seed per rank: ``seed + rank`` (rank 0 keeps ``seed``, so one process reproduces a plain run)."""
    return int(seed) + int(info.rank)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def mean_over_ranks(value: float, info: DistInfo) -> float:
    """Mean of a Python float over all ranks (the value itself in a single process)."""
    if not info.distributed:
        return float(value)
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def cleanup() -> None:
    """Leave the process group (no-op when none was initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
