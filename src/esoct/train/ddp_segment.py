"""Train the segmentation network from a cohort manifest, on one process or several GPUs under torchrun.

Usage::

    # one GPU (or the CPU)
    python -m esoct.train.ddp_segment --manifest cohort/manifest.csv --out runs/seg --epochs 100

    # four GPUs of one machine: one process per GPU, gradients averaged (DDP)
    torchrun --nproc_per_node=4 -m esoct.train.ddp_segment --manifest cohort/manifest.csv --out runs/seg --epochs 100

Rank 0 fingerprints the cohort and writes the plan (``<out>/plan/plan.json``) unless it exists
(edit it and rerun to change the network); every rank then reads it, loads the training cases
and trains with :func:`esoct.segment.training.train_segmentation`, which writes
``<out>/checkpoint.pt`` (load it with :func:`esoct.segment.inference.load_segmenter`),
``history.json`` and ``train.log`` from rank 0. Rerunning the same command resumes. The batch
size of the plan is per process: N processes train with N times the patches per step.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m esoct.train.ddp_segment", description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True, help="cohort manifest CSV (image_pre + mask_pre per patient)")
    p.add_argument("--out", required=True, help="run folder (plan/, checkpoint.pt, history.json, train.log)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--iterations", type=int, default=250, help="optimiser steps per epoch")
    p.add_argument("--batch-size", type=int, default=None, help="patches per step and process (default: the plan's)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-mb", type=float, default=8000.0, help="activation memory budget of the plan, MiB")
    p.add_argument("--base-features", type=int, default=32)
    p.add_argument("--max-features", type=int, default=320)
    p.add_argument("--n-classes", type=int, default=6)
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available; the rank's GPU under torchrun)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _plan(manifest, out: Path, args, info):
    """Rank 0 computes the plan unless ``out/plan/plan.json`` exists; every rank reads it."""
    from esoct.segment.plan import Plan, compute_plan
    from esoct.train.distributed import barrier

    plan_json = out / "plan" / "plan.json"
    if info.is_main and not plan_json.is_file():
        compute_plan(manifest, out / "plan", progress=not args.no_progress, memory_budget_mb=args.memory_mb,
                     base_features=args.base_features, max_features=args.max_features)
    barrier()
    return Plan.from_json(plan_json)


def main(argv: list[str] | None = None) -> int:
    """Run the training; returns 0 (errors raise, naming the patient or file)."""
    import torch

    from esoct.io.manifest import load_manifest
    from esoct.segment.data import Augmentation, PatchDataset, Preprocessing, load_cases
    from esoct.segment.training import TrainingConfig, model_from_plan, train_segmentation
    from esoct.train.device import seed_everything
    from esoct.train.distributed import cleanup, init_distributed

    args = build_parser().parse_args(argv)
    info = init_distributed()
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        manifest = load_manifest(args.manifest)
        plan = _plan(manifest, out, args, info)
        prep = Preprocessing.from_plan(plan)
        cases, _ = load_cases(manifest, manifest.patients, prep, n_classes=args.n_classes, progress=False)
        config = TrainingConfig(epochs=args.epochs, iterations_per_epoch=args.iterations,
                                batch_size=args.batch_size or plan.batch_size, learning_rate=args.learning_rate,
                                seed=args.seed, device=args.device)
        seed_everything(args.seed)
        model = model_from_plan(plan, n_classes=args.n_classes)
        data = PatchDataset(cases, plan.patch_size, config.iterations_per_epoch * config.batch_size,
                            augmentation=Augmentation(), background=prep.background, seed=args.seed)
        if info.device.type == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads() // info.world_size))
        result = train_segmentation(model, data, out, config, preprocessing=prep, progress=not args.no_progress)
        if info.is_main:
            print(f"checkpoint: {result.checkpoint}  last loss: {result.history[-1]['loss']:.5f}")
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
