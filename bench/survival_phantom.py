"""The longitudinal survival study on a phantom cohort: Table 2, delta selection, risk groups, wall time.

Generates a phantom cohort, holds out one centre as the external test cohort, and runs
:func:`esoct.study.survival.run_survival_study` (radiomics pre/post + second reading, delta,
ICC -> correlation -> univariate Cox -> LASSO-Cox on the training centres, six presets with 5-fold
CV, bootstrap CIs, KM by risk group). Also prints the univariate Cox p-values of the delta
features on the training cohort, to show whether delta features carry survival signal.

Run: ``.venv/bin/python bench/survival_phantom.py [--patients 150] [--params small|paper] [--out DIR]``
(``paper`` is the 851-feature set with wavelets: hours on 2 cores for hundreds of patients).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import machine  # noqa: E402

SMALL = {
    "setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline"},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "shape": None, "glcm": None, "glrlm": None, "glszm": None},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=150)
    ap.add_argument("--params", choices=["small", "paper"], default="small")
    ap.add_argument("--trees", type=int, default=400)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from esoct.phantom.cohort import generate_cohort
    from esoct.select.cox import univariate_cox
    from esoct.study.survival import run_survival_study

    out = args.out or Path(tempfile.mkdtemp(prefix="esoct_surv_"))
    start = time.perf_counter()
    if not (out / "cohort" / "manifest.csv").exists():
        generate_cohort(out / "cohort", args.patients, seed=args.seed, progress=True)
    t_phantom = time.perf_counter() - start
    manifest = pd.read_csv(out / "cohort" / "manifest.csv")
    test_center = sorted(manifest["center"].unique())[-1]
    result = run_survival_study(
        out / "cohort" / "manifest.csv", out / "study", test_centers=test_center,
        params=None if args.params == "paper" else SMALL, n_estimators=args.trees, n_bootstrap=args.bootstrap,
        seed=args.seed,
    )
    wall = time.perf_counter() - start

    feats = result.features
    train = feats[feats["center"].astype(str) != str(test_center)]
    delta_cols = [c for c in pd.read_parquet(out / "study" / "features" / "delta.parquet").columns]
    delta = pd.read_parquet(out / "study" / "features" / "delta.parquet").loc[train.index, delta_cols]
    finite = delta.columns[np.isfinite(delta.to_numpy(dtype=float)).all(axis=0)]
    z = delta[finite].to_numpy(dtype=float)
    z = (z - z.mean(axis=0)) / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)
    uni = univariate_cox(z, train["os_event"].astype(bool).to_numpy(),
                         train["os_months"].to_numpy(dtype=float))
    uni = pd.DataFrame({"feature": finite, "hr_per_sd": np.exp(uni["coef"]), "p": uni["p"]}).sort_values("p")

    pd.set_option("display.width", 200)
    print(f"machine: {machine()}")
    print(f"phantom: {args.patients} patients (pre+post), test centre {test_center}: "
          f"{len(feats) - len(train)} test, {len(train)} training; params {args.params}")
    print(f"wall time: {wall:.0f} s (phantom {t_phantom:.0f} s)")
    print("\ndelta features, univariate Cox on the training cohort (top 10 of "
          f"{len(uni)}; {int((uni['p'] < 0.1).sum())} with p < 0.1, {int((uni['p'] < 0.05).sum())} with p < 0.05):")
    print(uni.head(10).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nselection on the training cohort:")
    print(result.selection_steps.to_string(index=False))
    print(f"selected: {result.selected}")
    cols = ["cohort", "model", "n", "events", "c_index", "c_index_lower", "c_index_upper", "c_index_p", "ibs",
            "ibs_lower", "ibs_upper", "cv_c_index"]
    print("\nTable 2:")
    print(result.table2[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nrisk groups (test cohort): log-rank p = {result.km.logrank_p:.3g}")
    print(result.adjusted.to_string(float_format=lambda v: f"{v:.3g}"))
    for note in result.notes[:5]:
        print(f"note: {note}")
    print(f"\noutputs: {out / 'study'}")


if __name__ == "__main__":
    main()
