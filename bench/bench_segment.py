"""Benchmark the segmentation network on a small phantom cohort: train, predict held-out patients, Dice per class.

Generates a phantom cohort, trains a small residual 3D U-Net (deep supervision, focal loss,
nnU-Net augmentation, foreground-biased patches) at a coarse spacing on the first patients,
predicts the held-out ones (Gaussian sliding window, post-processing, back to the original
grid) and prints per-class Dice, wall times and the machine. It also times one forward pass of
the paper-sized network (features 32..320, 5 stages) on a 128 x 64 x 64 patch (the paper: 96.77 ms
on a TITAN X GPU).

Run: ``.venv/bin/python bench/bench_segment.py [--patients 12] [--test 3] [--epochs 30] [--iterations 10]``
(a few minutes on 2 CPU cores; ``--threads`` sets torch's CPU threads, 1 is fastest on a shared machine).

Trivial tumour baselines (no tumour model), printed beside the network's tumour Dice:

* ``oesophagus (ref)``: call the whole reference oesophagus -- its oesophagus and tumour labels
  together -- tumour. This is what a method gets that knows the oesophagus perfectly but cannot
  tell where along it the tumour lies; its Dice is ``2|T| / (|T| + |O|)``.
* ``oesophagus (net)``: the same with the network's own oesophagus + tumour prediction.

A tumour Dice is only informative when clearly above these.

Presets (``--preset NAME``; any option given explicitly overrides the preset):

* ``quick`` (default): 5 x 4 x 4 mm, patch 24 x 48 x 48, focal loss only, foreground fraction
  1/3, 300 steps -- a few minutes; a smoke test of the pipeline, the tumour is not learnt.
* ``tumour``: the phantom's native in-plane resolution (5 x 2 x 2 mm), focal + Dice loss
  (``--dice-weight 1``), 2/3 of the patches centred on foreground with the tumour drawn
  ``--tumour-weight 4`` times as often as each other class, 1500 steps
  (``--epochs 50 --iterations 30``, lr 3e-3): about 10-15 minutes on one CPU thread.
  The tumour weighting is done in this script by aliasing the tumour's voxel list in
  ``PatchDataset``'s per-class locations (the data API has no class weights).
  Measured (12 phantom patients, 9 train / 3 held out, 2-core AMD EPYC, 1 torch thread, another
  run sharing the machine): training 796 s, inference 9 s per patient; held-out Dice tumour 0.471
  (baselines 0.187 ref / 0.172 net), aorta 0.934, oesophagus 0.915, pericardium 0.962, lymph node 0.000.
  The same at 5 x 4 x 4 mm: tumour 0.208. ``quick``: tumour 0.000, 115 s of training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import torch_machine  # noqa: E402

CLASSES = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph node", 5: "pericardium"}
TUMOUR, OESOPHAGUS = 1, 3

PRESETS = {
    "quick": {},
    "tumour": {"spacing": (5.0, 2.0, 2.0), "dice_weight": 1.0, "foreground_fraction": 2.0 / 3.0, "tumour_weight": 4,
               "epochs": 50, "iterations": 30},
}


def machine() -> str:
    return torch_machine()


def dice(pred: np.ndarray, ref: np.ndarray, label: int) -> float:
    """Dice of one class; NaN when the class is absent from both."""
    p, r = pred == label, ref == label
    denom = p.sum() + r.sum()
    return float(2 * (p & r).sum() / denom) if denom else float("nan")


def baselines(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Tumour Dice of the trivial baselines: the whole oesophagus (oesophagus + tumour labels) called tumour."""
    truth = ref == TUMOUR
    out = {}
    for name, organ in (("oesophagus (ref)", np.isin(ref, (TUMOUR, OESOPHAGUS))), ("oesophagus (net)", np.isin(pred, (TUMOUR, OESOPHAGUS)))):
        denom = organ.sum() + truth.sum()
        out[name] = float(2 * (organ & truth).sum() / denom) if denom else float("nan")
    return out


def weight_tumour(dataset, weight: int) -> None:
    """Draw foreground patch centres on the tumour ``weight`` times as often as on each other class.

    ``PatchDataset`` picks the class of a foreground patch uniformly among the keys of its per-case
    location lists; adding ``weight - 1`` aliases of the tumour's list (keys that are never labels)
    biases that draw without touching the labels.
    """
    for locations in dataset._locations:
        if TUMOUR in locations:
            for k in range(1, int(weight)):
                locations[1000 + k] = locations[TUMOUR]


def normalisation(manifest, patients) -> dict:
    """nnU-Net CT scheme from the training patients' foreground: 0.5/99.5 percentiles, mean, SD (HU)."""
    from esoct.io.imageio import read_image

    values = []
    rng = np.random.default_rng(0)
    for pid in patients:
        img = read_image(manifest.resolve(pid, "image_pre")).array
        lab = read_image(manifest.resolve(pid, "mask_pre")).array
        fg = img[lab > 0].astype(np.float64)
        values.append(rng.choice(fg, size=min(len(fg), 20000), replace=False))
    v = np.concatenate(values)
    lo, hi = np.percentile(v, [0.5, 99.5])
    return {"clip_low": float(lo), "clip_high": float(hi), "mean": float(v.mean()), "std": float(v.std())}


def main() -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    preset = pre.parse_known_args()[0].preset
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="named settings (see the docstring)")
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--test", type=int, default=3, help="held-out patients (the last ones)")
    ap.add_argument("--spacing", type=float, nargs=3, default=(5.0, 4.0, 4.0), help="training spacing z y x, mm")
    ap.add_argument("--patch", type=int, nargs=3, default=(24, 48, 48))
    ap.add_argument("--features", type=int, nargs="+", default=(8, 16, 32, 64, 64))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--dice-weight", type=float, default=0.0)
    ap.add_argument("--foreground-fraction", type=float, default=1.0 / 3.0, help="share of patches centred on foreground")
    ap.add_argument("--tumour-weight", type=int, default=1, help="foreground patches draw the tumour this many times as often")
    ap.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (8x slower)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-paper-patch", action="store_true", help="skip timing the paper-sized network")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.set_defaults(**PRESETS[preset])
    args = ap.parse_args()

    import torch

    from esoct.io.imageio import read_image
    from esoct.io.manifest import load_manifest
    from esoct.models.unet3d import UNet3D
    from esoct.phantom.cohort import generate_cohort
    from esoct.segment.data import Augmentation, PatchDataset, Preprocessing, load_cases
    from esoct.segment.inference import predict_volume
    from esoct.segment.training import TrainingConfig, train_segmentation
    from esoct.train.device import seed_everything

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_segment_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print(f"work folder: {out}")
    result = {"machine": machine(), "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k != "out"}}

    t0 = time.perf_counter()
    generate_cohort(out / "cohort", args.patients, seed=args.seed, workers=1, progress=False)
    result["generate_s"] = time.perf_counter() - t0
    manifest = load_manifest(out / "cohort" / "manifest.csv")
    patients = manifest.patients
    train_ids, test_ids = patients[: -args.test], patients[-args.test :]

    t0 = time.perf_counter()
    norm = normalisation(manifest, train_ids)
    prep = Preprocessing(tuple(args.spacing), norm["clip_low"], norm["clip_high"], norm["mean"], norm["std"])
    cases, failures = load_cases(manifest, train_ids, prep, progress=False)
    result["preprocess_s"] = time.perf_counter() - t0
    print(f"{len(cases)} training cases at {args.spacing} mm, shape {cases[0].image.shape}; normalisation {norm}")

    config = TrainingConfig(epochs=args.epochs, iterations_per_epoch=args.iterations, batch_size=args.batch,
                            learning_rate=args.lr, dice_weight=args.dice_weight, seed=args.seed)
    n_stages = len(args.features)
    strides = [1, (1, 2, 2)] + [2] * (n_stages - 2)
    seed_everything(args.seed)
    net = UNet3D(1, 6, channels=tuple(args.features), strides=strides, deep_supervision=min(4, n_stages - 1))
    data = PatchDataset(cases, tuple(args.patch), args.iterations * args.batch, augmentation=Augmentation(),
                        foreground_fraction=args.foreground_fraction, background=prep.background, seed=args.seed)
    if args.tumour_weight > 1:
        weight_tumour(data, args.tumour_weight)
    t0 = time.perf_counter()
    trained = train_segmentation(net, data, out / "run", config, preprocessing=prep, resume=False, progress=False)
    result["train_s"] = time.perf_counter() - t0
    result["loss_first_last"] = [trained.history[0]["loss"], trained.history[-1]["loss"]]
    steps = args.epochs * args.iterations
    print(f"trained {steps} steps in {result['train_s']:.1f} s ({result['train_s'] / steps:.2f} s/step); "
          f"loss {trained.history[0]['loss']:.4f} -> {trained.history[-1]['loss']:.4f}")

    rows = []
    for pid in test_ids:
        image = read_image(manifest.resolve(pid, "image_pre"))
        ref = read_image(manifest.resolve(pid, "mask_pre")).array
        t0 = time.perf_counter()
        pred, report = predict_volume(trained.segmenter, image, tta=args.tta)
        seconds = time.perf_counter() - t0
        row = {"patient": pid, "seconds": seconds, "shape": list(image.shape), "removed_components": report.n_removed}
        row.update({name: dice(pred.array, ref, k) for k, name in CLASSES.items()})
        row["tumour baselines"] = baselines(pred.array, ref)
        rows.append(row)
        print(f"  {pid} {image.shape} predicted in {seconds:.1f} s: "
              + ", ".join(f"{name} {row[name]:.3f}" for name in CLASSES.values())
              + "; tumour baselines " + ", ".join(f"{k} {v:.3f}" for k, v in row["tumour baselines"].items()))
    result["test"] = rows
    result["mean_dice"] = {name: float(np.nanmean([r[name] for r in rows])) for name in CLASSES.values()}
    result["mean_tumour_baselines"] = {k: float(np.nanmean([r["tumour baselines"][k] for r in rows])) for k in rows[0]["tumour baselines"]}
    result["predict_s_per_patient"] = float(np.mean([r["seconds"] for r in rows]))

    if not args.no_paper_patch:
        paper = UNet3D(1, 6).eval()
        x = torch.zeros(1, 1, 128, 64, 64)
        with torch.inference_mode():
            paper(x)
            t0 = time.perf_counter()
            paper(x)
        result["paper_net_forward_128x64x64_ms"] = 1000 * (time.perf_counter() - t0)
        result["paper_net_parameters_m"] = sum(p.numel() for p in paper.parameters()) / 1e6

    print("\nper-class Dice on the held-out patients (mean):")
    for name, v in result["mean_dice"].items():
        print(f"  {name:12s} {v:.3f}")
    for name, v in result["mean_tumour_baselines"].items():
        print(f"  tumour baseline, whole {name}: {v:.3f}")
    print(f"wall times: phantom {result['generate_s']:.1f} s, preprocessing {result['preprocess_s']:.1f} s, "
          f"training {result['train_s']:.1f} s, inference {result['predict_s_per_patient']:.1f} s per patient")
    if "paper_net_forward_128x64x64_ms" in result:
        print(f"paper-sized network ({result['paper_net_parameters_m']:.1f} M parameters): one 128x64x64 patch forward "
              f"{result['paper_net_forward_128x64x64_ms']:.0f} ms on this CPU (paper: 96.77 ms on a TITAN X)")
    (out / "bench_segment.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {out / 'bench_segment.json'}")


if __name__ == "__main__":
    main()
