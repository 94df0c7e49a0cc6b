"""Generate a whole phantom cohort on disk: images, label maps, manifest.csv and truth.json.

Layout of the output folder (``<id>`` is ``EP0001`` ..., ``<tp>`` is ``pre`` or ``post``)::

    manifest.csv                    the cohort manifest (esoct check passes on it)
    truth.json                      everything true by construction, and the models behind it
    images/<id>_<tp>.nii.gz         CT, int16 HU
    labels/<id>_<tp>.nii.gz         organ labels: 0 bg, 1 tumour, 2 aorta, 3 esophagus, 4 node, 5 pericardium
    labels_reader2/<id>_pre.nii.gz  a second reader's outline of the tumour
    layers/<id>_<tp>.nii.gz         wall layers: 1 mucosa, 2 submucosa, 3 muscularis propria, 4 adventitia, 5 lumen
    anatomy/<id>_<tp>.nii.gz        full anatomy codes (esoct.phantom.labels)
    dicom/<id>_<tp>/                with ``dicom=True``: the CT as a DICOM series
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from esoct.io.imageio import write_image
from esoct.phantom import labels as L
from esoct.phantom import survival
from esoct.phantom.centers import DEFAULT_CENTERS, Z_EXTENT_MM, CenterProfile
from esoct.phantom.scan import reader2_mask, render_scan
from esoct.phantom.spec import LAYER_THICKNESS_MM, T_PREVALENCE, layer_boundaries_mm, patient_rng, sample_patient, stage_group

MANIFEST_COLUMNS = [
    "patient_id", "center", "image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2",
    "age", "sex", "location", "cT", "cN", "cM", "stage", "pT", "lnm", "os_months", "os_event",
]


def assign_centers(n_patients: int, seed: int, centers=DEFAULT_CENTERS) -> list[CenterProfile]:
    """Deterministic centre of each patient, drawn by the centres' weights."""
    rng = np.random.default_rng([int(seed), 987654])
    w = np.array([c.weight for c in centers], dtype=float)
    idx = rng.choice(len(centers), size=n_patients, p=w / w.sum())
    return [centers[i] for i in idx]


def _location(z_center: float) -> str:
    third = Z_EXTENT_MM / 3
    return "lower" if z_center < third else "middle" if z_center < 2 * third else "upper"


def _write_scan(out: Path, pid: str, tp: str, scan, dicom: bool, seed: int, manufacturer: str) -> dict:
    name = f"{pid}_{tp}.nii.gz"
    files = {
        "image": write_image(scan.image, out / "images" / name),
        "labels": write_image(scan.labels, out / "labels" / name),
        "layers": write_image(scan.layers, out / "layers" / name),
        "anatomy": write_image(scan.anatomy, out / "anatomy" / name),
    }
    if dicom:
        from esoct.io.dicom import write_dicom_series

        folder = out / "dicom" / f"{pid}_{tp}"
        write_dicom_series(scan.image, folder, patient_id=pid, series_description=f"esoct phantom {tp}-treatment CT",
                           uid_seed=f"esoct-phantom-{seed}-{pid}-{tp}", manufacturer=manufacturer)
        files["dicom"] = folder
    return {k: v.relative_to(out).as_posix() for k, v in files.items()}


def make_patient(out: Path, seed: int, index: int, center: CenterProfile, dicom: bool = False, full_res: bool = False) -> dict:
    """Render and write one patient's pre and post scans; return its truth record (no survival yet)."""
    spec = sample_patient(seed, index, center)
    pid = spec.patient_id
    pre = render_scan(spec, center, "pre", full_res=full_res, seed=seed)
    files_pre = _write_scan(out, pid, "pre", pre, dicom, seed, center.manufacturer)
    reader2 = write_image(reader2_mask(pre.labels, seed, index), out / "labels_reader2" / f"{pid}_pre.nii.gz")
    files_pre["labels_reader2"] = reader2.relative_to(out).as_posix()
    post = render_scan(spec, center, "post", full_res=full_res, seed=seed)
    files_post = _write_scan(out, pid, "post", post, dicom, seed, center.manufacturer)
    t = pre.tumour
    return {
        "patient_id": pid,
        "index": index,
        "center": center.name,
        "age": spec.age,
        "sex": spec.sex,
        "location": _location(t.z_center),
        "cT": spec.cT,
        "cN": spec.cN,
        "pT": f"T{t.t_stage}",
        "t_stage": t.t_stage,
        "t_stage_audit_pre": pre.t_stage_audit,
        "ypT_audit_post": post.t_stage_audit,
        "invasion_depth_mm": round(t.depth_mm, 3),
        "t4_target": t.t4_target,
        "lnm": spec.lnm,
        "tumour_volume_ml_pre": round(pre.tumour_volume_ml, 4),
        "tumour_volume_ml_post": round(post.tumour_volume_ml, 4),
        "volume_reduction": round(1 - post.tumour_volume_ml / pre.tumour_volume_ml, 4) if pre.tumour_volume_ml else None,
        "response_drawn": round(spec.response, 4),
        "texture_trait": round(t.texture_trait, 4),
        "tumour": _round(asdict(t)),
        "lumen_radius_mm": round(spec.lumen_r, 3),
        "nodes": pre.nodes,
        "post_shift_mm": [round(v, 3) for v in spec.post_shift_mm],
        "files": {"pre": files_pre, "post": files_post},
    }


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] if isinstance(v, tuple) else v) for k, v in d.items()}


def _add_survival(records: list[dict], seed: int) -> None:
    for rec in records:
        lp = survival.linear_predictor(
            rec["t_stage"], rec["lnm"], rec["tumour_volume_ml_pre"], rec["volume_reduction"] or 0.0, rec["texture_trait"], rec["age"]
        )
        time, event = survival.draw_survival(lp, patient_rng(seed, rec["index"], stream=5))
        rec["survival"] = {"linear_predictor": round(lp, 5), "os_months": time, "os_event": event}


def _manifest_row(rec: dict) -> dict:
    f = rec["files"]
    return {
        "patient_id": rec["patient_id"],
        "center": rec["center"],
        "image_pre": f["pre"]["image"],
        "mask_pre": f["pre"]["labels"],
        "image_post": f["post"]["image"],
        "mask_post": f["post"]["labels"],
        "mask_pre_reader2": f["pre"]["labels_reader2"],
        "age": rec["age"],
        "sex": rec["sex"],
        "location": rec["location"],
        "cT": rec["cT"],
        "cN": rec["cN"],
        "cM": "M0",
        "stage": stage_group(rec["cT"], rec["cN"]),
        "pT": rec["pT"],
        "lnm": rec["lnm"],
        "os_months": rec["survival"]["os_months"],
        "os_event": rec["survival"]["os_event"],
    }


def _work(args):
    out, seed, index, center, dicom, full_res = args
    try:
        return make_patient(Path(out), seed, index, center, dicom, full_res)
    except Exception as exc:  # a failed patient is recorded, the others go on
        return {"index": index, "patient_id": f"EP{index + 1:04d}", "error": f"{type(exc).__name__}: {exc}"}


def generate_cohort(
    out: str | Path,
    n_patients: int,
    seed: int = 0,
    *,
    centers: tuple[CenterProfile, ...] = DEFAULT_CENTERS,
    dicom: bool = False,
    full_res: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write a phantom cohort of ``n_patients`` to ``out``.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    n_patients : int
        Number of patients, each with a pre- and a post-treatment scan.
    seed : int
        Cohort seed: the same seed gives byte-identical files.
    centers : tuple of CenterProfile
        Acquisition centres and their share of patients.
    dicom : bool
        Also write each CT as a DICOM series.
    full_res : bool
        512 x 512 in-plane matrix instead of the centres' default (about 2 mm) pixels.
    workers : int, optional
        Processes to use (default: number of CPUs, at most 8). Results do not depend on it.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        The truth record written to ``truth.json``.

    Examples
    --------
    >>> truth = generate_cohort("cohort", 20, seed=1)  # doctest: +SKIP
    >>> truth["summary"]["censoring_rate"]  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from esoct.errors import InputError

    if n_patients < 1:
        raise InputError(f"--patients must be at least 1, got {n_patients}")
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError("the output folder is an existing file", out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    assigned = assign_centers(n_patients, seed, centers)
    jobs = [(str(out), seed, i, assigned[i], dicom, full_res) for i in range(n_patients)]
    workers = workers or min(os.cpu_count() or 1, 8)
    bar = tqdm(total=n_patients, desc="phantom patients", unit="patient", disable=not progress)
    results = []
    if workers <= 1 or n_patients == 1:
        for job in jobs:
            results.append(_work(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for res in pool.map(_work, jobs, chunksize=1):
                results.append(res)
                bar.update()
    bar.close()
    records = sorted((r for r in results if "error" not in r), key=lambda r: r["index"])
    failed = [r for r in results if "error" in r]
    _add_survival(records, seed)
    _write_manifest(out / "manifest.csv", records)
    truth = _truth(records, failed, seed, centers, dicom, full_res)
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


def _write_manifest(path: Path, records: list[dict]) -> None:
    import pandas as pd

    pd.DataFrame([_manifest_row(r) for r in records], columns=MANIFEST_COLUMNS).to_csv(path, index=False, lineterminator="\n")


def _truth(records, failed, seed, centers, dicom, full_res) -> dict:
    lp = np.array([r["survival"]["linear_predictor"] for r in records])
    time = np.array([r["survival"]["os_months"] for r in records])
    event = np.array([r["survival"]["os_event"] for r in records])
    oracle = survival.harrell_c(lp, time, event) if event.any() and len(records) > 1 else None
    return {
        "generator": "esoct.phantom",
        "seed": seed,
        "n_patients": len(records),
        "dicom": dicom,
        "full_res": full_res,
        "centers": [c.to_dict() for c in centers],
        "label_maps": {
            "labels": {"folder": "labels", "classes": {str(k): v for k, v in L.ORGAN_LABELS.items()},
                       "note": "pericardium covers the pericardial sac and the heart inside it"},
            "layers": {"folder": "layers", "classes": {str(k): v for k, v in L.WALL_LAYERS.items()}},
            "anatomy": {"folder": "anatomy", "classes": {str(k): v for k, v in L.ANATOMY_NAMES.items()}},
            "labels_reader2": {"folder": "labels_reader2", "note": "second reader: tumour outline perturbed by one voxel"},
        },
        "t_stage_rule": {
            "layer_thickness_mm": list(LAYER_THICKNESS_MM),
            "layer_outer_depth_mm": [round(v, 3) for v in layer_boundaries_mm()],
            "T1": "deepest tumour voxel in mucosa or submucosa (layers 1-2)",
            "T2": "reaches the muscularis propria (layer 3), not the adventitia",
            "T3": "reaches the adventitia or beyond the wall (layer 4 or 0), no contact with aorta, trachea or pericardium",
            "T4": "a tumour voxel face-adjacent to the aorta, pericardium/heart or trachea (anatomy codes "
            + ", ".join(str(c) for c in L.T4_STRUCTURES) + ")",
            "prevalence": dict(zip(["T1", "T2", "T3", "T4"], T_PREVALENCE)),
        },
        "survival_model": survival.model_description(),
        "summary": {
            "oracle_c_index": None if oracle is None else round(oracle, 4),
            "censoring_rate": round(float(1 - event.mean()), 4) if len(event) else None,
            "lnm_rate": round(float(np.mean([r["lnm"] for r in records])), 4) if records else None,
            "t_stage_counts": {f"T{k}": int(sum(r["t_stage"] == k for r in records)) for k in range(1, 5)},
            "center_counts": {c.name: int(sum(r["center"] == c.name for r in records)) for c in centers},
        },
        "failed": failed,
        "patients": records,
    }
