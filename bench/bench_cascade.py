"""Benchmark the segmentation cascade against today's one-stage network, MONAI baselines and ablations.

Run: ``.venv/bin/python bench/bench_cascade.py --patients 100 --out DIR`` (about 100 minutes on
an otherwise idle 2-core CPU). Writes ``DIR/cascade.json`` (and learning curves, ``DIR/learning_curves.png``).

Design (issue 13): a phantom cohort in three centres; the cascade is planned and trained on
centres A + B only and every model is scored on centre C (never looked at to choose a setting:
every setting is the plan's or fixed before the run). Phase A trains stage 1 (``--stage1-epochs``)
and cuts the stage-2 crops of the training patients and predicts stage 1 on the test CTs once (2
torch threads). The loss is chosen inside the training centres (``--select-loss``): stage 2 is
trained with each candidate loss on centre A's crops for ``--select-epochs`` epochs (side by side,
one thread each) and scored on centre B; the loss with the higher mean of B's tumour Dice median
and node sensitivity (>= 5 mm) is used for everything after (ties: ``ce_dice``). Centre C plays no
part in that choice. Training lengths are epoch counts, not wall-time budgets, so that another
load on the machine changes the minutes but not the model. Phase B trains the headline cascade's
stage 2 alone (2 threads, ``--cascade-epochs``), then every
compared variant on the same crops, two at a time (one torch thread each) with the same wall-time
budget (``--budget`` minutes); the equal-budget cascade row (``cascade_equal``) is the reference of
that comparison. Every stage-2 variant sits behind the same stage 1:

* ``cascade``: the plan's residual U-Net with deep supervision and stage-1 context channels;
* ``one_stage``: today's study network (whole CT at 5 x 4 x 4 mm, patch 24 x 48 x 48, features
  8..64), trained on the whole CTs -- no crop;
* ``segresnet`` and ``swinunetr``: MONAI's networks (the baselines of nn-TransEC's Table 7 that
  MONAI ships) on the same crops, inputs and loss;
* ablations (nn-TransEC Table 11): ``no_deep_supervision``, ``no_residual``, ``no_plan`` (the
  crops at today's fixed 5 x 4 x 4 mm / 24 x 48 x 48 configuration instead of the plan's), and
  ``no_postprocessing`` (the cascade's predictions without the component rules).

Scores on centre C (reference label maps on each CT's own grid): Dice per class; tumour found
(Dice > 0.1); lymph nodes per node (:mod:`esoct.evaluate.node_detection`: hit = Dice > 0.1 or
the predicted centroid inside the node; sensitivity by short axis; false positives per patient;
FROC over the minimum node size). ``predict_seconds_512``: the whole ``esoct predict`` of one
512 x 512 x 80 phantom CT with a bundle holding the cascade, in a subprocess (wall time and peak
resident memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import torch_machine  # noqa: E402

CLASSES = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph node", 5: "pericardium"}
TARGETS = {"tumour_dice_median": 0.80, "tumour_found_rate": 0.95, "node_dice": 0.70, "node_sensitivity_5mm": 0.85,
           "node_fp_per_patient": 1.0, "organ_dice": 0.90, "train_minutes": 45.0, "predict_seconds_512": 30.0,
           "predict_peak_gb_512": 2.0}


def split(manifest):
    centre = manifest.table.set_index("patient_id")["center"].astype(str)
    test = [p for p in manifest.patients if centre[p] == "C"]
    return [p for p in manifest.patients if p not in set(test)], test


def node_truth(truth: dict) -> dict:
    """patient -> (node centres (x, y, z) local mm, stations)."""
    return {p["patient_id"]: ([n["center_local_mm"] for n in p["nodes"]], [n["station"] for n in p["nodes"]])
            for p in truth["patients"]}


def score_patient(pid, labels, reference, truth_nodes) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Dice per class and node matches of one patient (reference and labels on the same grid)."""
    from esoct.evaluate.node_detection import assign_stations, match_nodes

    row = {"patient_id": pid}
    for c, name in CLASSES.items():
        a, b = labels.array == c, reference.array == c
        denom = a.sum() + b.sum()
        row[name] = float(2 * (a & b).sum() / denom) if denom else float("nan")
    centres, stations = truth_nodes
    origin = reference.origin  # (x, y, z); the phantom's local frame has z from the first slice
    zyx = [(origin[2] + c[2], c[1], c[0]) for c in centres]
    st = assign_stations(reference.array, reference.spacing, (origin[2], origin[1], origin[0]), zyx, stations)
    nodes, preds = match_nodes(reference.array, labels.array, reference.spacing, patient=pid, stations=st)
    return row, nodes, preds


def stage1_cache(stage1, manifest, test_ids, folder: Path) -> dict:
    """Stage 1's label map of every test CT, computed once and shared by every stage-2 variant."""
    from esoct.io.imageio import read_image, write_image
    from esoct.segment.inference import predict_volume

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for pid in test_ids:
        path = folder / f"{pid}_stage1.nii.gz"
        if not path.is_file():
            image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
            write_image(predict_volume(stage1, image, postprocess=True, min_tumour_ml=0.0)[0], path)
        paths[pid] = path
    return paths


def evaluate(model, manifest, test_ids, truth_nodes, postprocess=True, stage1_paths=None) -> dict:
    from esoct.evaluate.node_detection import detection_summary, froc, sensitivity_at_fp, station_table
    from esoct.io.imageio import read_image

    rows, nodes, preds, seconds = [], [], [], []
    for pid in test_ids:
        image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
        reference = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
        t0 = time.perf_counter()
        if stage1_paths:  # stage 1 shared by the variants: read, not recomputed (its time is not counted)
            labels, _ = model.predict(image, postprocess=postprocess, patient=pid,
                                      stage1_labels=read_image(stage1_paths[pid], patient=pid))
        else:
            labels, _ = model.predict(image, postprocess=postprocess, patient=pid)
        seconds.append(time.perf_counter() - t0)
        row, n, p = score_patient(pid, labels, reference, truth_nodes[pid])
        rows.append(row)
        nodes.append(n)
        preds.append(p)
    table = pd.DataFrame(rows)
    nodes, preds = pd.concat(nodes, ignore_index=True), pd.concat(preds, ignore_index=True)
    summary = detection_summary(nodes, preds, n_patients=len(test_ids))
    curve = froc(nodes, preds, n_patients=len(test_ids), min_short_axis_mm=5.0)
    tumour = table["tumour"].to_numpy(float)
    return {
        "n_test": len(test_ids),
        "tumour_dice_median": float(np.nanmedian(tumour)),
        "tumour_found_rate": float(np.mean(np.nan_to_num(tumour) > 0.1)),
        "node_dice": float(np.nanmedian(table["lymph node"])),
        "node_sensitivity": summary["sensitivity"],
        "node_sensitivity_5mm": summary["sensitivity_5mm"],
        "node_sensitivity_5mm_ci": summary.get("sensitivity_5mm_ci"),
        "node_fp_per_patient": summary["fp_per_patient"],
        "node_sensitivity_by_size": summary["sensitivity_by_size"],
        "node_sensitivity_5mm_at_1fp": sensitivity_at_fp(curve, 1.0),
        "organ_dice": {k: float(np.nanmedian(table[k])) for k in ("aorta", "esophagus", "pericardium")},
        "dice_median": {k: float(np.nanmedian(table[k])) for k in CLASSES.values()},
        "stations": station_table(nodes).to_dict("records"),
        "froc": curve.iloc[:: max(1, len(curve) // 25)].to_dict("records"),
        "predict_seconds_per_patient": float(np.mean(seconds)),
        "per_patient": table.to_dict("records"),
    }


# ------------------------------------------------------------------ phase B: one stage-2 variant per worker


def _monai(name: str, in_channels: int):
    """A MONAI network with what esoct's training loop reads (n_classes, size_divisor, config)."""
    import torch
    from monai.networks.nets import SegResNet, SwinUNETR

    class Wrapped(torch.nn.Module):
        def __init__(self, net, divisor):
            super().__init__()
            self.net, self.n_classes, self.size_divisor = net, 6, divisor
            self.config = {"in_channels": in_channels, "n_classes": 6, "monai": name}

        def forward(self, x):
            return self.net(x)

    if name == "segresnet":
        return Wrapped(SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=6, init_filters=16), (8, 8, 8))
    return Wrapped(SwinUNETR(in_channels=in_channels, out_channels=6, feature_size=12, spatial_dims=3), (32, 32, 32))


def run_variant(name: str, args: dict) -> dict:
    """Train one variant (1 torch thread) and score it on the test centre; runs in a worker process."""
    import dataclasses

    import torch

    from esoct.io.manifest import load_manifest
    from esoct.segment.cascade import CascadeSegmenter, OneStageSegmenter
    from esoct.segment.cascade_training import CascadeSettings, fit_stage2, plan_stage2
    from esoct.segment.data import Augmentation, PatchDataset, Preprocessing, load_cases
    from esoct.segment.inference import load_segmenter
    from esoct.segment.training import TrainingConfig, train_segmentation
    from esoct.segment.cascade_training import epochs_for_budget

    torch.set_num_threads(int(args.get("threads", 1)))
    out = Path(args["out"])
    manifest = load_manifest(args["manifest"])
    crops = load_manifest(args["crops"])
    train_ids, test_ids = split(manifest)
    truth = node_truth(json.loads((Path(args["manifest"]).parent / "truth.json").read_text()))
    s = CascadeSettings(**args["settings"])
    if name == "cascade":  # the headline: a fixed epoch count
        minutes = None
        s = dataclasses.replace(s, stage2_minutes=None, stage2_epochs=int(args["cascade_epochs"]))
    else:  # the compared variants: the same wall-time budget, side by side
        minutes = args["budget"]
        s = dataclasses.replace(s, stage2_minutes=minutes)
    stage1 = load_segmenter(out / "runs" / "stage1" / "checkpoint.pt", device="cpu")
    t0 = time.perf_counter()
    result = {"name": name, "budget_minutes": minutes, "loss": s.loss}
    if name == "one_stage":  # today's study network on whole CTs
        from esoct.models.unet3d import UNet3D
        norm = args["normalization"]  # the training centres' (stage 1's plan)
        prep = Preprocessing((5.0, 4.0, 4.0), norm["clip_low"], norm["clip_high"], norm["mean"], norm["std"])
        cases, _ = load_cases(manifest, train_ids, prep, progress=False)
        net = UNet3D(1, 6, channels=(8, 16, 32, 64, 64), strides=[1, (1, 2, 2), 2, 2, 2], deep_supervision=4)
        data = PatchDataset(cases, (24, 48, 48), s.iterations * s.batch, augmentation=Augmentation(),
                            foreground_fraction=2 / 3, background=prep.background, seed=0, class_weights={1: 4.0})
        cfg = TrainingConfig(epochs=1, iterations_per_epoch=s.iterations, batch_size=s.batch, learning_rate=3e-3,
                             dice_weight=1.0, seed=0)
        cfg = dataclasses.replace(cfg, epochs=epochs_for_budget(net, data, cfg, minutes))
        res = train_segmentation(net, data, out / "runs" / name, cfg, preprocessing=prep, progress=False)
        model = OneStageSegmenter(res.segmenter, min_node_mm3=0.0)
        history = res.history
    else:
        plan = plan_stage2(crops, s)
        net = None
        if name == "no_plan":
            plan = plan_stage2(crops, dataclasses.replace(s, stage2_spacing=(5.0, 4.0, 4.0), stage2_patch=(24, 48, 48)))
        elif name == "no_deep_supervision":
            s = dataclasses.replace(s, deep_supervision=False)
        elif name == "no_residual":
            s = dataclasses.replace(s, residual=False)
        elif name in ("segresnet", "swinunetr"):
            net = _monai(name, 4 if s.context else 1)
            if name == "swinunetr":  # SwinUNETR needs multiples of 32: the plan's patch rounded up
                plan.patch_size = tuple(int(np.ceil(p / 32) * 32) for p in plan.patch_size)
        stage2, res = fit_stage2(crops, crops.patients, plan, out / "runs" / name, s, progress=False, model=net)
        model = CascadeSegmenter(stage1, stage2, s.margin(), s.min_node_mm3, context=s.context)
        history = res.history
        result["stage2_plan"] = {"spacing": list(plan.target_spacing), "patch": list(plan.patch_size),
                                 "features": list(plan.features_per_stage)}
    result["train_seconds"] = round(time.perf_counter() - t0, 1)
    result["epochs"] = len(history)
    result["steps"] = len(history) * s.iterations
    result["history"] = [round(h["loss"], 5) for h in history]
    stage1_paths = None if name == "one_stage" else {p: out / "stage1_test" / f"{p}_stage1.nii.gz" for p in test_ids}
    result.update(evaluate(model, manifest, test_ids, truth, stage1_paths=stage1_paths))
    if name == "cascade":
        result["no_postprocessing"] = evaluate(model, manifest, test_ids, truth, postprocess=False,
                                               stage1_paths=stage1_paths)
    return result


# ------------------------------------------------------------------ loss choice inside the training centres


def run_loss_candidate(loss: str, args: dict) -> dict:
    """Train stage 2 with ``loss`` on centre A's crops and score the cascade on centre B (worker process)."""
    import dataclasses

    import torch

    from esoct.io.manifest import load_manifest
    from esoct.segment.cascade import CascadeSegmenter
    from esoct.segment.cascade_training import CascadeSettings, fit_stage2, plan_stage2
    from esoct.segment.inference import load_segmenter

    torch.set_num_threads(1)
    out = Path(args["out"])
    manifest, crops = load_manifest(args["manifest"]), load_manifest(args["crops"])
    truth = node_truth(json.loads((Path(args["manifest"]).parent / "truth.json").read_text()))
    s = dataclasses.replace(CascadeSettings(**args["settings"]), loss=loss, stage2_minutes=None,
                            stage2_epochs=int(args["select_epochs"]))
    plan = plan_stage2(crops, s)
    t0 = time.perf_counter()
    stage2, res = fit_stage2(crops, args["fit_ids"], plan, out / "runs" / f"select_{loss}", s, progress=False)
    model = CascadeSegmenter(load_segmenter(out / "runs" / "stage1" / "checkpoint.pt", device="cpu"), stage2,
                             s.margin(), s.min_node_mm3, context=s.context)
    stage1_paths = {p: out / "stage1_val" / f"{p}_stage1.nii.gz" for p in args["score_ids"]}
    scores = evaluate(model, manifest, args["score_ids"], truth, stage1_paths=stage1_paths)
    keep = ("tumour_dice_median", "tumour_found_rate", "node_dice", "node_sensitivity_5mm", "node_fp_per_patient",
            "organ_dice")
    return {"loss": loss, "epochs": len(res.history), "train_seconds": round(time.perf_counter() - t0, 1),
            "history": [round(h["loss"], 5) for h in res.history], **{k: scores[k] for k in keep},
            "criterion": 0.5 * (scores["tumour_dice_median"] + scores["node_sensitivity_5mm"])}


def choose_loss(shared: dict, stage1, manifest, train_ids: list, candidates: list, epochs: int,
                workers: int) -> dict:
    """Pick the stage-2 loss on a split of the training centres: fit on A, score on B (C never seen)."""
    centre = manifest.table.set_index("patient_id")["center"].astype(str)
    fit_ids = [p for p in train_ids if centre[p] == "A"]
    score_ids = [p for p in train_ids if centre[p] == "B"]
    stage1_cache(stage1, manifest, score_ids, Path(shared["out"]) / "stage1_val")
    job = shared | {"fit_ids": fit_ids, "score_ids": score_ids, "select_epochs": epochs}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = {loss: f.result() for loss, f in {c: pool.submit(run_loss_candidate, c, job) for c in candidates}.items()}
    best = max(candidates, key=lambda c: (rows[c]["criterion"], c == "ce_dice"))
    for c, r in rows.items():
        print(f"loss {c} (fit A, score B, {r['epochs']} epochs): tumour {r['tumour_dice_median']:.3f}, node sens "
              f">=5 mm {r['node_sensitivity_5mm']:.3f}, criterion {r['criterion']:.3f}", flush=True)
    return {"chosen": best, "fit": "A", "score": "B", "n_fit": len(fit_ids), "n_score": len(score_ids),
            "epochs": epochs, "criterion": "mean of B's tumour Dice median and node sensitivity >= 5 mm",
            "candidates": rows}


# ------------------------------------------------------------------ predict timing


def predict_timing(out: Path) -> dict:
    """Whole ``esoct predict`` of a 512 x 512 x 80 phantom CT with a bundle holding the cascade (subprocess)."""
    from esoct.bundle.export import export_bundle
    from esoct.phantom.centers import DEFAULT_CENTERS
    from esoct.phantom.cohort import make_patient

    work = out / "predict512"
    if not (work / "images").is_dir():
        make_patient(work, 7, 0, DEFAULT_CENTERS[1], full_res=True)  # centre B: 2.5 mm slices -> 80
    image = sorted((work / "images").glob("*_pre.nii.gz"))[0]
    study = work / "study"
    seg = study / "models" / "segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    for f in (out / "model").iterdir():
        (seg / f.name).write_bytes(f.read_bytes())
    (study / "study.yaml").write_text("name: bench-cascade\nseed: 0\n")
    export_bundle(study, work / "bundle", force=True)
    esoct = Path(sys.executable).parent / "esoct"
    # RUSAGE_CHILDREN of this process would include the training workers' peaks: a fresh launcher
    # runs predict and reports the peak resident memory of that one child only.
    launcher = ("import resource, subprocess, sys, time; t0 = time.perf_counter(); "
                "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                "sys.stderr.write(p.stderr); "
                "print(p.returncode, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", launcher, str(esoct), "predict", "--bundle", str(work / "bundle"),
                           "--input", str(image), "--out", str(work / "prediction")], capture_output=True, text=True)
    code, seconds, peak_kb = proc.stdout.split()[-3:]
    code, seconds, peak_kb = int(code), float(seconds), int(peak_kb)
    from esoct.io.imageio import read_image

    shape = read_image(image).shape
    doc = json.loads((work / "prediction" / "prediction.json").read_text()) if code in (0, 1) else {}
    return {"seconds": round(seconds, 1), "peak_gb": round(peak_kb / 2**20, 2), "shape_zyx": list(shape),
            "exit_code": code, "components": ["segmentation (cascade)"],
            "segmentation": doc.get("components", {}).get("segmentation", {}).get("volumes_ml"), "stderr_tail": proc.stderr[-400:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--stage1-epochs", type=int, default=22, help="stage-1 epochs (20 steps of 2 patches each)")
    ap.add_argument("--cascade-epochs", type=int, default=150, help="the headline stage 2's epochs")
    ap.add_argument("--select-loss", default="ce_dice,focal_dice",
                    help="candidate losses chosen between on centre B after training on A ('' = keep ce_dice)")
    ap.add_argument("--select-epochs", type=int, default=60)
    ap.add_argument("--budget", type=float, default=6.0, help="stage-2 wall minutes of every compared variant")
    ap.add_argument("--variants", default="cascade,cascade_equal,one_stage,segresnet,swinunetr,no_deep_supervision,"
                                          "no_residual,no_plan")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_cascade_"))
    out.mkdir(parents=True, exist_ok=True)
    import torch

    from esoct.io.manifest import load_manifest
    from esoct.phantom.cohort import generate_cohort
    from esoct.segment.cascade import write_cascade
    from esoct.segment.cascade_training import (CascadeSettings, fit_stage1, plan_stage2, settings_dict, write_crops)

    t_all = time.perf_counter()
    cohort = out / "cohort"
    if not (cohort / "manifest.csv").is_file():
        generate_cohort(cohort, args.patients, args.seed, progress=False)
    manifest = load_manifest(cohort / "manifest.csv")
    train_ids, test_ids = split(manifest)
    print(f"{len(train_ids)} training patients (A+B), {len(test_ids)} test patients (C); {torch_machine()}", flush=True)
    s = CascadeSettings(stage1_epochs=args.stage1_epochs)
    t0 = time.perf_counter()
    stage1, plan1, res1 = fit_stage1(manifest, train_ids, out / "runs", s, progress=False)
    t1 = time.perf_counter()
    crop_path, _ = write_crops(manifest, train_ids, stage1, out / "runs" / "crops", s.margin(), progress=False)
    plan2 = plan_stage2(load_manifest(crop_path), s)
    t2 = time.perf_counter()
    print(f"stage 1: {t1 - t0:.0f} s ({len(res1.history)} epochs, spacing {plan1.target_spacing}, patch "
          f"{plan1.patch_size}); crops: {t2 - t1:.0f} s; stage-2 plan: spacing {plan2.target_spacing}, patch "
          f"{plan2.patch_size}", flush=True)
    shared = {"out": str(out), "manifest": str(cohort / "manifest.csv"), "crops": str(crop_path),
              "settings": {k: v for k, v in settings_dict(s).items() if k not in ("class_weights",)} | {
                  "class_weights": s.class_weights},
              "cascade_epochs": args.cascade_epochs, "budget": args.budget, "normalization": plan1.normalization}
    for k in ("stage1_spacing", "stage2_spacing", "stage1_patch", "stage2_patch", "margin_mm"):
        if shared["settings"][k] is not None:
            shared["settings"][k] = tuple(shared["settings"][k])
    candidates = [c.strip() for c in args.select_loss.split(",") if c.strip()]
    selection = None
    if len(candidates) > 1:
        t_sel = time.perf_counter()
        selection = choose_loss(shared, stage1, manifest, train_ids, candidates, args.select_epochs, args.workers)
        selection["minutes"] = round((time.perf_counter() - t_sel) / 60.0, 1)
        s = dataclasses.replace(s, loss=selection["chosen"])
        shared["settings"]["loss"] = s.loss
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    t3 = time.perf_counter()
    stage1_cache(stage1, manifest, test_ids, out / "stage1_test")
    stage1_test_seconds = time.perf_counter() - t3
    results = {}

    def report(n, job):
        try:
            results[n] = job()
            r = results[n]
            print(f"{n}: tumour {r['tumour_dice_median']:.3f} (found {r['tumour_found_rate']:.2f}), node Dice "
                  f"{r['node_dice']:.3f}, node sens >=5 mm {r['node_sensitivity_5mm']:.3f} at "
                  f"{r['node_fp_per_patient']:.2f} FP/patient, organs {r['organ_dice']}, "
                  f"{r['train_seconds']:.0f} s", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failed variant is reported, the others kept
            results[n] = {"name": n, "error": f"{type(exc).__name__}: {exc}"}
            print(f"{n}: FAILED {exc}", flush=True)

    if "cascade" in names:  # the headline cascade alone, on every core
        report("cascade", lambda: run_variant("cascade", shared | {"threads": torch.get_num_threads()}))
    with ProcessPoolExecutor(max_workers=args.workers) as pool:  # the compared variants side by side, 1 thread each
        futures = {n: pool.submit(run_variant, n, shared) for n in names if n != "cascade"}
        for n, f in futures.items():
            report(n, f.result)
    main_row = results.get("cascade", {})
    if "error" not in main_row and main_row:
        write_cascade(out / "model", {"margin_mm": list(s.margin()), "min_node_mm3": s.min_node_mm3, "min_tumour_ml": 0.5,
                                      "context": s.context, "context_classes": [2, 3, 5]},
                      out / "runs" / "stage1" / "checkpoint.pt", out / "runs" / "cascade" / "checkpoint.pt",
                      {"stage1": plan1, "stage2": plan2})
        timing = predict_timing(out)
    else:
        timing = {}
    from esoct.report.segmentation_figures import plot_learning_curves

    plot_learning_curves({"stage 1": res1.history, **{n: r.get("history") for n, r in results.items()}},
                         out / "learning_curves.png", title="Learning curves (centres A + B)",
                         loss=s.loss)
    if selection:  # each candidate's own loss: a separate figure, since the two losses have different scales
        plot_learning_curves({f"{c} (fit A)": r["history"] for c, r in selection["candidates"].items()},
                             out / "loss_selection_curves.png", title="Loss choice: stage 2 on centre A",
                             loss="each run's own loss")
    keys = ("tumour_dice_median", "tumour_found_rate", "node_dice", "node_sensitivity_5mm", "node_fp_per_patient",
            "organ_dice", "node_sensitivity_by_size", "node_sensitivity_5mm_at_1fp", "train_seconds")
    train_minutes = (t1 - t0 + t2 - t1 + main_row.get("train_seconds", 0.0)) / 60.0
    doc = {
        **{k: main_row.get(k) for k in keys},
        "train_minutes": round(train_minutes, 1),
        "predict_seconds_512": timing.get("seconds"),
        "predict_peak_gb_512": timing.get("peak_gb"),
        "predict_512": timing,
        "stage1": {"seconds": round(t1 - t0, 1), "epochs": len(res1.history), "spacing": list(plan1.target_spacing),
                   "patch": list(plan1.patch_size), "features": list(plan1.features_per_stage)},
        "stage2_plan": {"spacing": list(plan2.target_spacing), "patch": list(plan2.patch_size),
                        "features": list(plan2.features_per_stage), "margin_mm": list(s.margin())},
        "crops_seconds": round(t2 - t1, 1),
        "stage1_test_seconds": round(stage1_test_seconds, 1),
        "cascade": main_row,
        "one_stage": results.get("one_stage"),
        "baselines": {k: results.get(k) for k in ("cascade_equal", "segresnet", "swinunetr")},
        "ablations": {**{k: results.get(k) for k in ("no_deep_supervision", "no_residual", "no_plan")},
                      "no_postprocessing": main_row.get("no_postprocessing")},
        "targets": TARGETS,
        "settings": settings_dict(s) | {"cascade_epochs": args.cascade_epochs, "budget_minutes": args.budget,
                                        "stage1_epochs": args.stage1_epochs},
        "loss_selection": selection,
        "split": {"train": "A+B", "test": "C", "n_train": len(train_ids), "n_test": len(test_ids),
                  "patients": args.patients, "seed": args.seed},
        "wall_minutes": round((time.perf_counter() - t_all) / 60.0, 1),
        "machine": torch_machine(),
    }
    (out / "cascade.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(json.dumps({k: doc[k] for k in ("tumour_dice_median", "tumour_found_rate", "node_dice", "node_sensitivity_5mm",
                                          "node_fp_per_patient", "organ_dice", "train_minutes", "predict_seconds_512")},
                     default=float))
    print(f"wrote {out / 'cascade.json'}")


if __name__ == "__main__":
    main()
