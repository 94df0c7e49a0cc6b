"""The demo job: phantom cohort -> integrity check -> ROI extraction -> HTML page."""

from __future__ import annotations

from pathlib import Path


def run_demo(out: str | Path, n_patients: int = 24, seed: int = 0, progress: bool = True) -> int:
    """Run the demo end to end and say where the results are.

    Parameters
    ----------
    out : path
        Output folder: ``cohort/`` (phantom), ``roi/`` (ROIs), ``check.txt``, ``index.html``.
    n_patients : int
        Phantom cohort size.
    seed : int
        Phantom seed.
    progress : bool
        Show progress bars.

    Returns
    -------
    int
        Exit code: 0 when every step succeeded for every patient.
    """
    from esoct.io.manifest import check_manifest
    from esoct.phantom.cohort import generate_cohort
    from esoct.report.phantom_gallery import write_gallery
    from esoct.report.roi_figure import roi_figure
    from esoct.study.roi_extraction import extract_cohort_rois

    out = Path(out)
    cohort = out / "cohort"
    print(f"[1/4] generating a phantom cohort of {n_patients} patients (seed {seed}) in {cohort}")
    truth = generate_cohort(cohort, n_patients, seed=seed, progress=progress)
    print("[2/4] checking the cohort manifest and every file it names")
    report = check_manifest(cohort / "manifest.csv", progress=progress)
    (out / "check.txt").write_text(report.to_text() + "\n")
    print("      " + report.to_text().splitlines()[-1])
    print("[3/4] extracting ROIs: ResoLSTM slice sequences, 2.5D slabs, KRT boxes")
    run = extract_cohort_rois(cohort / "manifest.csv", out / "roi", progress=progress)
    print(f"      {len(run.results) + len(run.skipped)} patients done, {len(run.failures)} failed")
    print("[4/4] writing the HTML page")
    extra = []
    for rec in truth["patients"][:2]:
        pid = rec["patient_id"]
        roi = out / "roi"
        if (roi / f"{pid}_pre_krt_mask.nii.gz").exists():
            png = roi_figure(roi / f"{pid}_pre_slices.npz", roi / f"{pid}_pre_slab.npz", roi / f"{pid}_pre_krt_image.nii.gz",
                             roi / f"{pid}_pre_krt_mask.nii.gz", out / "figures" / f"roi_{pid}.png",
                             title=f"{pid} (pT{rec['t_stage']}): the three ROI extractions")
            extra.append((f"ROI extractions of {pid}", png))
    page = write_gallery(cohort, out / "index.html", extra_figures=extra)
    print(f"\nresults: {page.resolve()}")
    print(f"  cohort: {cohort.resolve()} (manifest.csv, truth.json)")
    print(f"  ROIs:   {(out / 'roi').resolve()} (roi_summary.csv, failures.csv)")
    return 0 if report.ok and run.ok else 1
