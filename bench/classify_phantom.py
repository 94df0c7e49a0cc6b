"""Benchmark the nn-TransEC T-stage classifier on the phantom: Table 8 and the ablation table (Tables 12-13).

Steps (all seeded; a rerun with the same ``--out`` reuses the cohort, the segmentation encoders
and every finished fold):

1. a phantom cohort from one centre (``esoct.phantom.cohort.generate_cohort``);
2. fingerprint and plan (``esoct.segment.plan.compute_plan``) with a CPU-sized network
   (``--base-features``): target spacing, KRT box size, CT normalisation, alpha_2 weights;
3. inputs per patient: the KRT crop around the tumour of the reference mask (or of a trained
   segmenter's prediction, ``--segmenter``) resampled to the plan's spacing, and the whole CT
   downsampled to the same shape ("without KRT");
4. per fold and input kind, a segmentation U-Net (residual, deep supervision, focal loss;
   ``esoct.segment.training``) trained on the training patients' inputs and label maps: its
   encoder gates the classifier and initialises it (transfer);
5. the ablation grid (plain / +residual / +gates / +transfer, on KRT crops and whole volumes),
   each a five-fold patient-level CV with the ``fast`` training preset; the full KRT variant is
   the nn-TransEC classifier whose Table 8 is printed;
6. Grad-CAM overlays of two test patients of fold 0 (PNG).

With ``--mask-control`` the plain classifier is also cross-validated on the KRT tumour mask instead
of the CT: a positive control of whether the pipeline can learn the stage signal at this size.

Run: ``.venv/bin/python bench/classify_phantom.py [--patients 64] [--out /tmp/esoct_classify]``
(a cohort needs at least 5 patients of every stage for five stratified folds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import torch_machine  # noqa: E402


def machine() -> str:
    return torch_machine()


def downsample_labels(labels: np.ndarray, size) -> np.ndarray:
    """Nearest-neighbour label map of ``size`` voxels covering the same extent."""
    from scipy import ndimage

    zoom = np.asarray(size, float) / np.asarray(labels.shape, float)
    out = ndimage.zoom(labels.astype(np.uint8), zoom, order=0, mode="nearest", grid_mode=True)
    fixed = np.zeros(tuple(size), np.uint8)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(out.shape, size))
    fixed[sl] = out[sl]
    return fixed


def fast_plan(plan, spacing_zyx, base_features: int, max_features: int):
    """The plan coarsened for a CPU: same KRT box in mm, at ``spacing_zyx``, with the topology rule redone.

    The box's physical extent (``krt_crop_size * target_spacing``) is kept; its voxel size
    becomes ``spacing_zyx``; strides and kernels follow the plan's topology rule
    (:func:`esoct.segment.plan.network_topology`) for that box, features ``base * 2**s`` capped.
    """
    from esoct.segment.plan import features_per_stage, network_topology

    extent_mm = np.asarray(plan.krt_crop_size, float) * np.asarray(plan.target_spacing, float)
    size = np.ceil(extent_mm / np.asarray(spacing_zyx, float) - 1e-9).astype(int)
    n_pool, strides, kernels, padded = network_topology(spacing_zyx, size)
    feats = features_per_stage(len(strides), base_features, max_features)
    return dataclasses.replace(plan, target_spacing=tuple(spacing_zyx), krt_crop_size=padded, patch_size=padded,
                               strides=strides, kernel_sizes=kernels, features_per_stage=feats, n_stages=len(strides),
                               n_pool_per_axis=n_pool)


def build_inputs(manifest, plan, segmenter=None):
    """KRT crops (HU and normalised), whole volumes, their label maps, T stages; failures by patient."""
    from esoct.classify.krt import krt_from_plan, normalize_ct, whole_volume
    from esoct.io.imageio import read_image

    out = {k: [] for k in ("ids", "stages", "krt_hu", "krt", "krt_labels", "whole", "whole_labels")}
    failures = {}
    for pid in manifest.patients:
        try:
            image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
            if segmenter is None:
                labels = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
            else:
                from esoct.segment.inference import predict_volume

                labels, _ = predict_volume(segmenter, image)
            box = krt_from_plan(image, labels, plan, patient=pid)
        except Exception as exc:  # a failed patient is recorded, the others go on
            failures[pid] = f"{type(exc).__name__}: {exc}"
            continue
        size = plan.krt_crop_size
        out["ids"].append(pid)
        out["stages"].append(str(manifest.row(pid)["pT"]))
        out["krt_hu"].append(box.image.array.astype(np.float32))
        out["krt"].append(normalize_ct(box.image.array, plan.normalization))
        out["krt_labels"].append(box.mask.array.astype(np.uint8))
        out["whole"].append(normalize_ct(whole_volume(image, size), plan.normalization))
        out["whole_labels"].append(downsample_labels(labels.array, size))
    return {k: (np.stack(v) if k not in ("ids", "stages") else v) for k, v in out.items()}, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=64)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default="/tmp/esoct_classify")
    ap.add_argument("--epochs", type=int, default=None, help="classifier epochs (default: the fast preset's)")
    ap.add_argument("--seg-epochs", type=int, default=6)
    ap.add_argument("--seg-iterations", type=int, default=12)
    ap.add_argument("--base-features", type=int, default=8)
    ap.add_argument("--max-features", type=int, default=32)
    ap.add_argument("--fast-spacing", default="5,4,4",
                    help="voxel size (z,y,x mm) of the CPU-sized KRT box; 'plan' keeps the plan's spacing")
    ap.add_argument("--inputs", default="krt,whole")
    ap.add_argument("--steps", default="plain,+residual,+gates,+transfer")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    ap.add_argument("--segmenter", default=None, help="trained segmenter checkpoint: KRT from its predictions")
    ap.add_argument("--mask-control", action="store_true",
                    help="also cross-validate the plain classifier on the KRT tumour mask instead of the CT "
                         "(a positive control: is there stage signal the pipeline can learn at this size?)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from esoct.classify.ablation import ablation_grid, run_ablation
    from esoct.classify.gradcam3d import grad_cam_3d, save_cam_overlays
    from esoct.classify.multitask import KrtDataset, format_table8, preset
    from esoct.io.manifest import load_manifest
    from esoct.models.multitask import T_STAGES, build_multitask_classifier
    from esoct.models.unet3d import UNet3D, UNetEncoder
    from esoct.phantom.centers import DEFAULT_CENTERS
    from esoct.phantom.cohort import generate_cohort
    from esoct.segment.data import Case, PatchDataset, Preprocessing
    from esoct.segment.plan import compute_plan
    from esoct.segment.training import TrainingConfig, train_segmentation
    from esoct.train.checkpoint import load_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    print(f"machine: {machine()}")
    t_all = time.perf_counter()

    # 1. cohort (one centre)
    t0 = time.perf_counter()
    cohort = out / f"cohort{args.patients}_seed{args.seed}"
    if not (cohort / "manifest.csv").is_file():
        centre = dataclasses.replace(DEFAULT_CENTERS[0], weight=1.0)
        generate_cohort(cohort, args.patients, seed=args.seed, centers=(centre,), workers=2, progress=False)
    manifest = load_manifest(cohort / "manifest.csv")
    times["cohort_s"] = time.perf_counter() - t0

    # 2. fingerprint and plan
    t0 = time.perf_counter()
    _, plan = compute_plan(manifest, out / "plan", progress=False, base_features=args.base_features,
                           max_features=args.max_features, memory_budget_mb=2000)
    times["plan_s"] = time.perf_counter() - t0
    print(f"plan (from the fingerprint): spacing (z, y, x) {plan.target_spacing} mm, KRT box {plan.krt_crop_size} "
          f"voxels = {tuple(float(a * b) for a, b in zip(plan.krt_crop_size, plan.target_spacing))} mm")
    if args.fast_spacing != "plan":
        plan = fast_plan(plan, tuple(float(v) for v in args.fast_spacing.split(",")), args.base_features,
                         args.max_features)
        plan.to_json(out / "plan" / "plan_fast.json")
    print(f"used: spacing (z, y, x) {plan.target_spacing} mm, KRT box {plan.krt_crop_size} voxels, "
          f"features {plan.features_per_stage}, strides {plan.strides}")
    print(f"alpha_2 ({plan.alpha_rule}): " + ", ".join(f"{t} {plan.class_loss_weights[t]:.3f}" for t in T_STAGES))

    # 3. inputs
    t0 = time.perf_counter()
    segmenter = None
    if args.segmenter:
        from esoct.segment.inference import load_segmenter

        segmenter = load_segmenter(args.segmenter)
    data, failures = build_inputs(manifest, plan, segmenter)
    times["inputs_s"] = time.perf_counter() - t0
    counts = {t: data["stages"].count(t) for t in T_STAGES}
    print(f"patients: {len(data['ids'])} usable of {args.patients} ({counts}); failures: {failures or 'none'}")
    datasets = {"krt": KrtDataset(data["krt"], data["stages"], data["ids"]),
                "whole": KrtDataset(data["whole"], data["stages"], data["ids"])}
    index = {p: i for i, p in enumerate(data["ids"])}

    # 4. segmentation encoders, one per fold and input kind, trained without the fold's test patients
    prep = Preprocessing.from_plan(plan)
    seg_cache, seg_seconds = {}, []

    def encoder_factory(residual=True):
        return UNetEncoder(1, plan.features_per_stage, plan.strides, plan.kernel_sizes, residual=residual)

    def seg_encoder_fn(fold, train_ids, kind):
        key = (fold, kind)
        if key not in seg_cache:
            t = time.perf_counter()
            images, labels = data[kind], data[f"{kind}_labels"]
            cases = [Case(p, _vol(images[index[p]], plan), _vol(labels[index[p]], plan)) for p in train_ids]
            cfg = TrainingConfig(epochs=args.seg_epochs, iterations_per_epoch=args.seg_iterations, batch_size=4,
                                 seed=args.seed + fold)
            ds = PatchDataset(cases, plan.krt_crop_size, cfg.iterations_per_epoch * cfg.batch_size,
                              background=prep.background, seed=args.seed + fold)
            net = UNet3D(1, 6, channels=plan.features_per_stage, strides=plan.strides,
                         kernel_sizes=plan.kernel_sizes, residual=True, deep_supervision=min(4, plan.n_stages - 1))
            res = train_segmentation(net, ds, out / "seg" / kind / f"fold-{fold}", cfg, preprocessing=prep,
                                     progress=False)
            seg_cache[key] = net.encoder.eval()
            seg_seconds.append(time.perf_counter() - t)
            print(f"  segmentation encoder fold {fold} ({kind}): loss {res.history[0]['loss']:.3f} -> "
                  f"{res.history[-1]['loss']:.3f}, {time.perf_counter() - t:.0f} s")
        return seg_cache[key]

    # 5. ablation grid (the full KRT variant is nn-TransEC)
    config = preset("fast", seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    config.class_weights = dict(plan.class_loss_weights)
    variants = ablation_grid(inputs=args.inputs.split(","), steps=args.steps.split(","))
    print(f"classifier: {config}")
    t0 = time.perf_counter()
    result = run_ablation(datasets, seg_encoder_fn, encoder_factory, out / "ablation", config, variants=variants,
                          n_splits=5, seed=args.seed, hidden=64)
    times["ablation_s"] = time.perf_counter() - t0
    times["segmentation_pretraining_s"] = float(sum(seg_seconds))

    full = next((v for v in variants if v.input == "krt" and v.step == "+transfer"), variants[-1])
    cv = result.runs[full.name]
    print(f"\nTable 8 -- {full.name} (pooled out-of-fold predictions, n = {len(cv.predictions)}):")
    print(format_table8(cv.metrics.table))
    print("confusion (rows true, columns predicted):")
    print(cv.metrics.confusion.to_string())
    print("\nAblation (Tables 12 and 13), macro one-vs-rest AUC with 95% bootstrap CI, stage averages:")
    print(result.to_text())

    if args.mask_control:
        from esoct.classify.multitask import cross_validate

        masks = KrtDataset((data["krt_labels"] == 1).astype(np.float32), data["stages"], data["ids"])

        def plain_fn(fold, train_ids):
            return build_multitask_classifier(None, encoder_factory, residual=False, gates=False, transfer=False,
                                              hidden=64, seed=config.seed + fold)[0]

        t0 = time.perf_counter()
        control = cross_validate(masks, plain_fn, out / "control_tumour_mask", config, n_splits=5, seed=args.seed,
                                 title="control: tumour mask input")
        times["mask_control_s"] = time.perf_counter() - t0
        print("\nPositive control -- plain classifier on the KRT tumour mask (not the CT):")
        print(format_table8(control.metrics.table))

    # 6. Grad-CAM of two test patients of fold 0 of the full variant
    t0 = time.perf_counter()
    fold0 = cv.predictions[cv.predictions["fold"] == 0]
    train0 = [p for p in data["ids"] if p not in set(fold0["patient_id"])]
    model, _ = build_multitask_classifier(seg_encoder_fn(0, train0, full.input), encoder_factory,
                                          residual=full.residual, gates=full.gates, transfer=full.transfer, hidden=64)
    load_checkpoint(out / "ablation" / full.name / "fold-0" / "checkpoint.pt", model, restore_rng=False)
    model.eval()
    right = fold0[fold0["pT"] == fold0["predicted"]]
    chosen = list(dict.fromkeys(list(right.sort_values("pT", ascending=False)["patient_id"][:1])
                                + list(fold0.sort_values("pT")["patient_id"])))[:2]
    cam_paths = []
    for pid in chosen:
        i = index[pid]
        cam = grad_cam_3d(model, data[full.input][i])
        stage = T_STAGES[cam.class_index]
        paths = save_cam_overlays(data["krt_hu"][i], cam.cam, out / "gradcam", pid, labels=data["krt_labels"][i],
                                  spacing_zyx=plan.target_spacing, window=(-200, 300),
                                  title=f"{pid} true {data['stages'][i]}, predicted {stage} (p={cam.proba.max():.2f})")
        tumour = data["krt_labels"][i] == 1
        print(f"Grad-CAM {pid}: mean map in tumour {cam.cam[tumour].mean():.2f}, outside {cam.cam[~tumour].mean():.2f}"
              f" -> {', '.join(str(p) for p in paths.values())}")
        cam_paths += [str(p) for p in paths.values()]
    times["gradcam_s"] = time.perf_counter() - t0
    times["total_s"] = time.perf_counter() - t_all
    print("\nwall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    summary = {"machine": machine(), "patients": len(data["ids"]), "stage_counts": counts, "failures": failures,
               "plan": {"spacing": plan.target_spacing, "krt": plan.krt_crop_size,
                        "features": plan.features_per_stage, "alpha": plan.class_loss_weights},
               "config": dataclasses.asdict(config), "times_s": times, "gradcam": cam_paths,
               "table8": json.loads(cv.metrics.table.to_json(orient="index")),
               "ablation": json.loads(result.table.to_json(orient="records"))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


def _vol(array, plan):
    from esoct.io.volume import Volume

    return Volume(array, spacing=plan.target_spacing)


if __name__ == "__main__":
    main()
