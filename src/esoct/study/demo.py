"""The demo job (`make demo`): phantom cohort -> full study with CPU-sized settings -> report.html."""

from __future__ import annotations

import time
from pathlib import Path

#: The demo's study file: every task, sized for a 2-core CPU (21 minutes for 60 patients on a 2-core Xeon).
DEMO_STUDY = """\
# esoct demo study: every task on a synthetic phantom cohort, sized for a 2-core CPU.
name: esoct-demo (phantom cohort)
seed: {seed}
cohort:
  manifest: cohort/manifest.csv
  test_centers: [C]
radiomics:
  params: null
  workers: null
tasks:
  segmentation:
    enabled: true
    stage1_epochs: 8
    stage2_epochs: 25
    iterations: 20
  tstage_binary:
    enabled: true
    models: [resolstm, resnet]
    preset: fast
    folds: 3
  tstage_4class:
    enabled: true
    folds: 3
    epochs: 10
    krt_size: [32, 32, 32]
    krt_spacing: [4.0, 2.0, 2.0]
    viewer_cases: 4
  lnm:
    enabled: true
    folds: 3
  survival:
    enabled: true
    n_estimators: 100
    n_bootstrap: 200
    cv: 3
    deep_features: false
"""


def write_demo_study(out: str | Path, seed: int = 0) -> Path:
    """Write the demo's study file to ``out/study.yaml`` (the cohort is expected in ``out/cohort``)."""
    path = Path(out) / "study.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_STUDY.format(seed=int(seed)))
    return path


def run_demo(out: str | Path, n_patients: int = 60, seed: int = 0, progress: bool = True) -> int:
    """Run the demo end to end and say where the report is.

    Parameters
    ----------
    out : path
        Output folder: ``cohort/`` (phantom), ``study.yaml``, ``study/`` (the study directory with
        ``report.html``), ``check.txt``.
    n_patients : int
        Phantom cohort size (three centres; centre C is the external test cohort).
    seed : int
        Phantom and study seed.
    progress : bool
        Show progress bars.

    Returns
    -------
    int
        Exit code: 0 when every task succeeded.
    """
    from esoct.io.manifest import check_manifest
    from esoct.phantom.cohort import generate_cohort
    from esoct.report.html import write_report
    from esoct.study.config import load_study
    from esoct.study.run import run_study

    out = Path(out)
    cohort = out / "cohort"
    t0 = time.perf_counter()
    if (cohort / "manifest.csv").is_file():
        print(f"[1/4] reusing the phantom cohort in {cohort}")
    else:
        print(f"[1/4] generating a phantom cohort of {n_patients} patients (seed {seed}) in {cohort}")
        generate_cohort(cohort, n_patients, seed=seed, progress=progress)
    print("[2/4] checking the cohort manifest and every file it names")
    report = check_manifest(cohort / "manifest.csv", progress=progress)
    (out / "check.txt").write_text(report.to_text() + "\n")
    print("      " + report.to_text().splitlines()[-1])
    print("[3/4] running the study: segmentation, T-stage (2 and 4 classes), LN metastasis, survival")
    config = load_study(write_demo_study(out, seed))
    run = run_study(config, out / "study", progress=progress)
    for task, status in run.status.items():
        print(f"      {task}: {status} ({run.seconds[task]:.0f} s)")
    print("[4/4] writing the report")
    page = write_report(out / "study")
    print(f"\nreport: {page.resolve()}")
    print(f"study directory: {(out / 'study').resolve()}  (results/, models/, features/)")
    print(f"wall time: {time.perf_counter() - t0:.0f} s")
    return 0 if report.ok and run.ok else 1
