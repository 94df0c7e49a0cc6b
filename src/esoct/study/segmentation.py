"""The segmentation task of a study: a plan-driven two-stage cascade trained on the training centres.

Steps (:mod:`esoct.segment.cascade_training`): stage 1 planned by nnU-Net's lowres rule on the
training centres' fingerprint and trained on their whole CTs (aorta, esophagus, pericardium);
stage-2 crops along stage 1's esophagus, dilated by the node-station margin; stage 2 planned on
those crops and trained on them (tumour, esophagus, lymph nodes, with stage 1's organs as input
channels). Study-file overrides enter the plans, so ``stage{1,2}_plan.json`` describe exactly what
was trained. Every test-centre patient is then segmented (stage 1 -> crop -> stage 2 -> paste ->
post-processing) and scored: Dice, IoU, HD95 and ASSD per class for the final map and for stage 1
alone, volume agreement, and lymph nodes per node (:mod:`esoct.evaluate.node_detection`).

Outputs: ``models/segmentation/{cascade.json, stage1.pt, stage2.pt, stage1_plan.json, stage2_plan.json}``;
``results/segmentation/``: ``labels/`` (final and stage-1 label maps on each input grid),
``per_patient.csv``, ``summary.csv``, ``stage1_summary.csv``, ``volume_agreement.csv``,
``nodes.csv`` (one row per reference node), ``node_predictions.csv``, ``node_detection.csv``
(sensitivity by short axis, false positives per patient), ``froc.csv``, ``stations.csv`` (when the
cohort's ``truth.json`` names node stations), ``metrics.json``, ``figures/`` and ``nnunet/`` (the
training centres' CTs and the stage-2 crops as two nnU-Net v2 raw data sets).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.segment.cascade_training import CascadeSettings

CLASSES = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph node", 5: "pericardium"}
STAGE1_CLASSES = {2: "aorta", 3: "esophagus (+ tumour)", 5: "pericardium"}
NNUNET_IDS = {"full": 501, "crops": 502}


@dataclass
class SegmentationStudy:
    """What :func:`run_segmentation_study` produced."""

    per_patient: pd.DataFrame
    summary: pd.DataFrame
    failures: dict = field(default_factory=dict)
    model_dir: Path | None = None
    nodes: dict = field(default_factory=dict)


def train_patients_and_test(manifest, test_centers, max_train: int) -> tuple[list[str], list[str]]:
    """Training-centre patients (at most ``max_train``, file order) and every test-centre patient."""
    centre = manifest.table.set_index("patient_id")["center"].astype(str)
    test = [p for p in manifest.patients if centre[p] in {str(c) for c in test_centers}]
    train = [p for p in manifest.patients if p not in set(test)][: int(max_train)]
    if not test:  # no external centre: hold out the last fifth
        k = max(1, len(train) // 5)
        train, test = train[:-k], train[-k:]
    return train, test


def run_segmentation_study(
    manifest_path: str | Path,
    out: str | Path,
    *,
    test_centers=(),
    settings: CascadeSettings | None = None,
    seed: int = 0,
    progress: bool = True,
    scheduler=None,
) -> SegmentationStudy:
    """Plan, train and evaluate the segmentation cascade of a study (see the module docstring).

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest (baseline CT and nn-TransEC label map per patient).
    out : str or Path
        Study directory.
    test_centers : sequence of str
        Held-out centres (empty: the last fifth of the patients).
    settings : CascadeSettings, optional
    seed : int
    progress : bool
    scheduler : str or distributed.Client, optional
        Dask scheduler for the inference on the test patients (:mod:`esoct.scale.dask`).

    Returns
    -------
    SegmentationStudy
    """
    from esoct.io.manifest import load_manifest
    from esoct.segment.cascade import CASCADE_FILE, write_cascade
    from esoct.report.segmentation_figures import plot_learning_curves
    from esoct.segment.cascade_training import fit_cascade

    s = settings or CascadeSettings()
    out = Path(out)
    res_dir, model_dir = out / "results" / "segmentation", out / "models" / "segmentation"
    res_dir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(manifest_path)
    train_ids, test_ids = train_patients_and_test(manifest, test_centers, s.max_train_patients)
    work = out / "cache" / "segmentation"
    training = {}
    if not (model_dir / CASCADE_FILE).is_file():
        fit = fit_cascade(manifest, train_ids, work, s, seed=seed, progress=progress)
        write_cascade(model_dir, fit.cascade.settings(), work / "stage1" / "checkpoint.pt",
                      work / "stage2" / "checkpoint.pt", fit.plans)
        training = {"seconds": fit.seconds, "failures": fit.failures,
                    "epochs": {k: len(v) for k, v in fit.histories.items()}}
        plot_learning_curves({k.replace("stage", "stage "): v for k, v in fit.histories.items()},
                             res_dir / "figures" / "learning_curves.png", loss=s.loss)
        _export_nnunet(manifest, train_ids, test_ids, work / "crops" / "manifest.csv", res_dir / "nnunet")
    per_patient, stage1, failures = _segment_and_score(model_dir, manifest, test_ids, res_dir, progress, scheduler)
    summary, agreement = _summaries(per_patient)
    summary.to_csv(res_dir / "summary.csv", index=False)
    _summaries(stage1)[0].to_csv(res_dir / "stage1_summary.csv", index=False)
    agreement.to_csv(res_dir / "volume_agreement.csv", index=False)
    nodes = _node_tables(manifest, [p for p in test_ids if p not in failures], res_dir)
    pd.DataFrame(sorted(failures.items()), columns=["patient_id", "reason"]).to_csv(res_dir / "failures.csv",
                                                                                   index=False)
    plans = {k: json.loads((model_dir / f"{k}_plan.json").read_text()) for k in ("stage1", "stage2")
             if (model_dir / f"{k}_plan.json").is_file()}
    (res_dir / "metrics.json").write_text(json.dumps({
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(s).items()
                     if k != "class_weights"} | {"class_weights": {str(k): v for k, v in s.class_weights.items()}},
        "plans": {k: {"spacing": p["target_spacing"], "patch": p["patch_size"], "features": p["features_per_stage"]}
                  for k, p in plans.items()},
        "training": training, "train_patients": train_ids, "test_patients": test_ids, "seed": seed,
        "summary": summary.to_dict("records"), "nodes": nodes, "failures": failures}, indent=1, default=float))
    _figure(per_patient, res_dir / "figures" / "volume_agreement.png")
    return SegmentationStudy(per_patient, summary, failures, model_dir, nodes)


def _export_nnunet(manifest, train_ids, test_ids, crop_manifest: Path, folder: Path) -> None:
    """The training centres' CTs and the stage-2 crops as nnU-Net v2 raw data sets (for GPU users)."""
    from esoct.io.manifest import load_manifest
    from esoct.io.nnunet import export_nnunet_dataset

    export_nnunet_dataset(manifest, folder, NNUNET_IDS["full"], "EsophagusCT", train_patients=train_ids,
                          test_patients=test_ids, overwrite=True, progress=False)
    crops = load_manifest(crop_manifest)
    export_nnunet_dataset(crops, folder, NNUNET_IDS["crops"], "EsophagusCTCascadeCrops", train_patients=crops.patients,
                          test_patients=[], overwrite=True, progress=False)


def _segment_and_score(model_dir: Path, manifest, patients, res_dir: Path, progress: bool, scheduler=None):
    """Segment the test patients (on Dask when ``scheduler`` is given; finished ones are skipped) and score both stages."""
    from esoct.evaluate.segmentation import segmentation_table
    from esoct.io.imageio import read_image
    from esoct.segment.cascade import stage1_targets
    from esoct.segment.cohort import output_path, segment_cohort, stage1_path
    from esoct.study.runner import run_per_patient

    labels_dir = res_dir / "labels"
    inference = segment_cohort(model_dir, manifest.path, labels_dir, patients=patients, scheduler=scheduler,
                               progress=progress)
    done = [p for p in patients if p not in inference.failures]

    def score(pid: str):
        final = segmentation_table(manifest.resolve(pid, "mask_pre"), output_path(labels_dir, pid), CLASSES, patient=pid)
        first = None
        if stage1_path(labels_dir, pid).is_file():
            ref = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
            first = segmentation_table(ref.with_array(stage1_targets(ref.array)), stage1_path(labels_dir, pid),
                                       STAGE1_CLASSES, patient=pid)
        return final, first

    scored = run_per_patient(done, score, desc="scoring", progress=False)
    ok = [p for p in done if p in scored.results]
    per_patient = pd.concat([scored.results[p][0] for p in ok], ignore_index=True) if ok else pd.DataFrame()
    firsts = [scored.results[p][1] for p in ok if scored.results[p][1] is not None]
    stage1 = pd.concat(firsts, ignore_index=True) if firsts else pd.DataFrame()
    per_patient.to_csv(res_dir / "per_patient.csv", index=False)
    stage1.to_csv(res_dir / "stage1_per_patient.csv", index=False)
    return per_patient, stage1, {**inference.failures, **scored.failures}


def _truth_nodes(manifest) -> dict:
    """patient -> (node centres (x, y, z) in the phantom's local mm, stations), from a phantom's ``truth.json``."""
    path = Path(manifest.path).parent / "truth.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {p["patient_id"]: ([n["center_local_mm"] for n in p["nodes"]], [n["station"] for n in p["nodes"]])
                for p in doc["patients"]}
    except (ValueError, KeyError, TypeError):
        return {}


def _node_tables(manifest, patients, res_dir: Path) -> dict:
    """Per-node detection of the test patients: CSV tables, FROC figure and the summary (see the module docstring)."""
    from esoct.evaluate.node_detection import (assign_stations, detection_summary, froc, match_nodes,
                                               sensitivity_at_fp, station_table)
    from esoct.io.imageio import read_image
    from esoct.report.segmentation_figures import plot_froc
    from esoct.segment.cohort import output_path

    if not patients:
        return {}
    truth = _truth_nodes(manifest)
    nodes, preds = [], []
    for pid in patients:
        ref = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
        pred = read_image(output_path(res_dir / "labels", pid), patient=pid)
        stations = None
        if pid in truth:  # the phantom's local frame: x, y as LPS, z from the first slice
            centres, names = truth[pid]
            o = ref.origin
            stations = assign_stations(ref.array, ref.spacing, (o[2], o[1], o[0]),
                                       [(o[2] + c[2], c[1], c[0]) for c in centres], names)
        n, p = match_nodes(ref.array, pred.array, ref.spacing, patient=pid, stations=stations)
        nodes.append(n)
        preds.append(p)
    nodes, preds = pd.concat(nodes, ignore_index=True), pd.concat(preds, ignore_index=True)
    summary = detection_summary(nodes, preds, n_patients=len(patients))
    curve = froc(nodes, preds, n_patients=len(patients), min_short_axis_mm=5.0)
    nodes.drop(columns=["matched_components"]).to_csv(res_dir / "nodes.csv", index=False)
    preds.drop(columns=["matched_nodes"]).to_csv(res_dir / "node_predictions.csv", index=False)
    curve.to_csv(res_dir / "froc.csv", index=False)
    rows = [{"short axis": "all", "nodes": int(summary["n_nodes"]), "detected": int(summary["n_detected"]),
             "sensitivity (95 % CI)": _ci_text(summary["sensitivity"], summary["sensitivity_ci"])},
            {"short axis": ">= 5 mm", "nodes": summary["n_nodes_5mm"],
             "detected": int((nodes["detected"] & (nodes["short_axis_mm"] >= 5.0)).sum()),
             "sensitivity (95 % CI)": _ci_text(summary["sensitivity_5mm"], summary["sensitivity_5mm_ci"])}]
    for name, b in summary["sensitivity_by_size"].items():
        rows.append({"short axis": f"{name} mm", "nodes": int(b["n"]), "detected": int(b["detected"]),
                     "sensitivity (95 % CI)": f"{b['sensitivity']:.3f}" if b["n"] else "n/a"})
    table = pd.DataFrame(rows)
    table["false positives / patient"] = round(float(summary["fp_per_patient"]), 3)
    table.to_csv(res_dir / "node_detection.csv", index=False)
    if stations is not None or truth:
        station_table(nodes).round({"sensitivity": 3, "median_short_axis_mm": 1}).to_csv(res_dir / "stations.csv",
                                                                                        index=False)
    plot_froc(curve, res_dir / "figures" / "froc.png")
    return {k: v for k, v in summary.items()} | {"sensitivity_5mm_at_1fp": sensitivity_at_fp(curve, 1.0)}


def _ci_text(value: float, ci) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def _summaries(per_patient: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from esoct.evaluate.segmentation import cohort_volume_agreement

    if per_patient.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows = []
    for name, part in per_patient.groupby("name", sort=False):
        row = {"class": name, "n": int(len(part))}
        for col in ("dice", "iou", "hd95_mm", "assd_mm"):
            v = part[col].astype(float)
            finite = v[np.isfinite(v)]
            text = f"{finite.mean():.3f} ({finite.std(ddof=1) if len(finite) > 1 else 0.0:.3f})" if len(finite) else "n/a"
            if len(finite) < len(v):  # a class missing from the prediction has no surface distance
                text += f" [{len(v) - len(finite)} of {len(v)} undefined]"
            row[col] = text
        rows.append(row)
    agreement = cohort_volume_agreement(per_patient)
    return pd.DataFrame(rows), agreement


def _figure(per_patient: pd.DataFrame, path: Path) -> None:
    from esoct.report.agreement_figure import plot_volume_agreement

    if per_patient.empty:
        return
    volumes = {}
    for name in ("tumour", "aorta", "esophagus"):
        part = per_patient[per_patient["name"] == name]
        if len(part) >= 3:
            volumes[name] = (part["volume_ref_ml"].to_numpy(float), part["volume_pred_ml"].to_numpy(float))
    if volumes:
        plot_volume_agreement(volumes, path=path)
