"""ResoLSTM-Depth vs ResNet-18 on a one-centre phantom cohort: five-fold CV with the ``fast`` preset.

Generates the cohort (or reuses it), extracts the ROI slice sequences (resumes), runs the
cross-validation of both models (resumes), and prints the per-fold tables, the pooled AUCs with
DeLong CIs, the DeLong p-value of ResoLSTM-Depth vs ResNet-18 and the wall time. Figures (ROC,
confusion, t-SNE, Grad-CAM) go to ``<out>/study/results/tstage/figures``.

Run: ``.venv/bin/python bench/tstage_phantom.py --patients 200 --out /tmp/tstage200``
(``--limit 40`` uses the first 40 patients only; ``--epochs`` overrides the preset's).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--out", default="tstage_phantom_out")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N patients")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from esoct.phantom.centers import DEFAULT_CENTERS
    from esoct.phantom.cohort import generate_cohort
    from esoct.study.roi_extraction import extract_cohort_rois
    from esoct.tstage.cv import cross_validate
    from esoct.tstage.data import load_roi_sequences
    from esoct.tstage.presets import get_preset

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CUDA: {torch.cuda.is_available()}", flush=True)
    t0 = time.perf_counter()
    out = Path(args.out)
    cohort = out / "cohort"
    if not (cohort / "manifest.csv").is_file():
        one_centre = (dataclasses.replace(DEFAULT_CENTERS[0], weight=1.0),)
        generate_cohort(cohort, args.patients, seed=args.seed, centers=one_centre, workers=args.workers,
                        progress=False)
    t_gen = time.perf_counter() - t0
    run = extract_cohort_rois(cohort / "manifest.csv", out / "rois", kinds=("slices",), progress=False)
    t_roi = time.perf_counter() - t0 - t_gen
    manifest = pd.read_csv(cohort / "manifest.csv", dtype={"patient_id": str})
    if args.limit:
        manifest = manifest.head(args.limit)
    preset = get_preset(args.preset, **({"epochs": args.epochs} if args.epochs else {}))
    seqs = load_roi_sequences(out / "rois", dict(zip(manifest["patient_id"], manifest["pT"])),
                              size=preset.image_size)
    print(f"cohort: {len(manifest)} patients, one centre ({manifest['center'].unique().tolist()}), pT "
          f"{manifest['pT'].value_counts().sort_index().to_dict()}; {len(seqs)} usable sequences, "
          f"slices per patient median {int(pd.Series(seqs.n_slices).median())} "
          f"(range {seqs.n_slices.min()}-{seqs.n_slices.max()}); ROI failures {len(run.failures)}; "
          f"generation {t_gen:.0f} s, ROI extraction {t_roi:.0f} s", flush=True)
    print(f"preset: {preset.to_dict()}", flush=True)
    study = out / ("study" if not args.limit else f"study_{args.limit}")
    t1 = time.perf_counter()
    result = cross_validate(seqs, study, preset=preset, seed=args.seed, progress=False)
    t_cv = time.perf_counter() - t1
    print(result.summary())
    print(f"wall time: cross-validation (2 models x 5 folds + figures) {t_cv / 60:.1f} min, "
          f"total {(time.perf_counter() - t0) / 60:.1f} min on this machine")
    print(f"outputs: {study / 'results' / 'tstage'}")


if __name__ == "__main__":
    main()
