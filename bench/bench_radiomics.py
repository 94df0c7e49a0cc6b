"""Benchmark radiomics: esoct per-ROI extraction vs bare PyRadiomics, and cohort throughput with 2 vs 1 workers.

Prints, side by side in one run, with the machine:

1. per ROI: median wall time of ``RadiomicsExtractor.extract`` (Volume in, dict out) over
   PyRadiomics' ``RadiomicsFeatureExtractor.execute`` on the same SimpleITK images and the
   same parameter file (goal: ratio <= 1.10). Runs alternate to cancel drift.
2. cohort: scans per second of ``extract_cohort`` with 2 local worker processes over 1
   (goal: >= 1.6 on a 2-core machine), on a fresh 512 x 512 phantom cohort (realistic CT
   matrix), no cache; each run includes reading the manifest, process start-up and writing Parquet.

Run: ``.venv/bin/python bench/bench_radiomics.py [--case lung1] [--repeat 3] [--patients 8] [--rounds 3]``
The machine's load average is printed: other processes on a shared machine distort the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import machine

from esoct.features.cohort import extract_cohort
from esoct.features.radiomics import DEFAULT_PARAMS, RadiomicsExtractor
from esoct.io.imageio import read_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def per_roi(case: str, params: Path, repeat: int) -> None:
    """esoct's extraction time over bare PyRadiomics on one real ROI."""
    from radiomics import featureextractor

    image, mask = (
        read_image(DATA / "pyradiomics" / f"{case}_image.nrrd"),
        read_image(DATA / "pyradiomics" / f"{case}_label.nrrd"),
    )
    ours = RadiomicsExtractor(params)
    bare = featureextractor.RadiomicsFeatureExtractor(str(params))
    image_s, mask_s = image.to_sitk(), mask.to_sitk()
    n = len(ours.extract(image, mask))  # warm-up (and import) for both
    bare.execute(image_s, mask_s)
    t_ours, t_bare = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours.extract(image, mask)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare.execute(image_s, mask_s)
        t_bare.append(time.perf_counter() - t0)
    a, b = statistics.median(t_ours), statistics.median(t_bare)
    print(
        f"per ROI ({case}, {params.name}, {n} features, median of {repeat}): esoct {a:.2f} s, "
        f"bare PyRadiomics {b:.2f} s, ratio esoct/PyRadiomics {a / b:.3f} (goal <= 1.10)"
    )


def cohort_throughput(n_patients: int, params: Path, full_res: bool, rounds: int) -> None:
    """Scans per second with 2 worker processes over 1, on a fresh phantom cohort, no cache.

    1- and 2-worker runs alternate for ``rounds`` rounds; the ratio of the median rates is
    reported, and the best round's, since other processes on a shared machine slow single runs.
    """
    from esoct.phantom.cohort import generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_cohort(root / "cohort", n_patients, seed=7, full_res=full_res, progress=False)
        matrix = "512 x 512" if full_res else "about 2 mm"
        print(f"phantom cohort: {n_patients} patients x 2 scans, {matrix} in-plane matrix, {rounds} alternating rounds")
        rates = {1: [], 2: []}
        for k in range(rounds):
            for workers in (1, 2):
                out = root / f"r{k}w{workers}" / "radiomics.parquet"
                t0 = time.perf_counter()
                result = extract_cohort(
                    root / "cohort" / "manifest.csv", out, params=params, workers=workers, progress=False
                )
                seconds = time.perf_counter() - t0
                rates[workers].append(result.computed / seconds)
                print(
                    f"  round {k + 1}, {workers} worker(s): {result.computed} scans in {seconds:.1f} s = {rates[workers][-1]:.2f} scans/s"
                )
        median = {w: statistics.median(r) for w, r in rates.items()}
        best = max(b / a for a, b in zip(rates[1], rates[2]))
        print(
            f"cohort throughput 2 workers / 1 worker: {median[2] / median[1]:.2f} (medians {median[1]:.2f} and "
            f"{median[2]:.2f} scans/s; best round {best:.2f}) (goal >= 1.6 on 2 cores)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--case", default="lung1", help="PyRadiomics test case for the per-ROI timing")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="PyRadiomics parameter file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--patients", type=int, default=8, help="phantom patients (2 scans each)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating 1-worker / 2-worker cohort runs")
    ap.add_argument(
        "--low-res",
        action="store_true",
        help="phantom at its centres' ~2 mm pixels instead of 512 x 512 (scans take ~0.25 s: process start-up then weighs)",
    )
    args = ap.parse_args()
    print(f"machine: {machine()}, load average before the run {os.getloadavg()[0]:.2f}")
    per_roi(args.case, args.params, args.repeat)
    cohort_throughput(args.patients, args.params, full_res=not args.low_res, rounds=args.rounds)


if __name__ == "__main__":
    main()
