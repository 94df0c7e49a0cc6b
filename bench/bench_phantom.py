"""Benchmark the phantom: generation speed (target: 100 patients, pre + post, under 60 s) and difficulty.

Prints the wall time of generating 100 patients with pre- and post-treatment scans at default
resolution, the machine it ran on, and the AUC that tumour volume alone gives for T1-2 vs T3-4 on
300 patients (target: below 0.8, so simple shortcuts do not decide T).

Run: ``.venv/bin/python bench/bench_phantom.py [--patients 100] [--auc-patients 300]``
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def torch_machine() -> str:
    """:func:`machine` plus the GPU (or "no GPU"), the torch version and its thread count."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{machine()}, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def volume_only_auc(n: int, seed: int) -> tuple[float, dict]:
    """AUC of pre-treatment tumour volume for T3-4 vs T1-2, from rendered tumour masks."""
    from sklearn.metrics import roc_auc_score

    from esoct.phantom.anatomy import render_anatomy
    from esoct.phantom.cohort import assign_centers
    from esoct.phantom.grid import Grid
    from esoct.phantom.spec import sample_patient
    from esoct.phantom.tumour import grow_tumour

    centers = assign_centers(n, seed)
    vols, stages = [], []
    for i in range(n):
        spec = sample_patient(seed, i, centers[i])
        grid = Grid.for_center(centers[i])
        anatomy, layers = render_anatomy(spec, grid, spec.tumour)
        mask, _ = grow_tumour(anatomy, layers, grid, spec)
        vols.append(mask.sum() * np.prod(grid.spacing_zyx) / 1000.0)
        stages.append(spec.tumour.t_stage)
    vols, stages = np.array(vols), np.array(stages)
    medians = {f"T{k}": round(float(np.median(vols[stages == k])), 2) for k in range(1, 5) if (stages == k).any()}
    return float(roc_auc_score(stages >= 3, vols)), medians


def main() -> None:
    from esoct.phantom.cohort import generate_cohort

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--auc-patients", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        truth = generate_cohort(tmp, args.patients, seed=args.seed, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs) / 1e6
    n_scans = 2 * truth["n_patients"]
    print(f"phantom generation: {truth['n_patients']} patients ({n_scans} scans + label maps) in {wall:.1f} s "
          f"({wall / n_scans * 1000:.0f} ms per scan, {size:.0f} MB) -- target < 60 s: {'PASS' if wall < 60 else 'FAIL'}")
    print(f"cohort summary: {truth['summary']}")
    t0 = time.perf_counter()
    auc, medians = volume_only_auc(args.auc_patients, args.seed)
    print(f"volume-only AUC, T3-4 vs T1-2, {args.auc_patients} patients: {auc:.3f} -- target < 0.8: "
          f"{'PASS' if auc < 0.8 else 'FAIL'}  (median volume ml per stage {medians}; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
