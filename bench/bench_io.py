"""Benchmark CT reading against SimpleITK on real data: the DICOM series and the NRRD chest CT.

Prints, side by side in one run, the median wall time of esoct and of SimpleITK (the reference)
and their ratio, with the machine. Needs ../shared/data.

Run: ``.venv/bin/python bench/bench_io.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import machine  # noqa: E402

from esoct.io import read_image  # noqa: E402
from esoct.io.dicom import read_dicom_series  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sitk_series(folder: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    cases = [
        ("DICOM series, 512x512x20, JPEG 2000 (totalsegmentator/example_ct_dicom)",
         lambda: read_dicom_series(DATA / "totalsegmentator" / "example_ct_dicom"),
         lambda: _sitk_series(DATA / "totalsegmentator" / "example_ct_dicom")),
        ("NRRD chest CT, 512x512x48 (pyradiomics/lung1_image.nrrd)",
         lambda: read_image(DATA / "pyradiomics" / "lung1_image.nrrd"),
         lambda: sitk.ReadImage(str(DATA / "pyradiomics" / "lung1_image.nrrd"))),
    ]
    for name, ours, ref in cases:
        ours()
        ref()  # warm caches
        t_ours, t_ref = _median_time(ours, args.repeat), _median_time(ref, args.repeat)
        print(f"{name}: esoct {t_ours * 1000:.0f} ms, SimpleITK {t_ref * 1000:.0f} ms, ratio esoct/SimpleITK {t_ours / t_ref:.2f}")


if __name__ == "__main__":
    main()
