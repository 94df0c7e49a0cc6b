"""Ablation grid of the nn-TransEC classifier (the paper's Tables 12 and 13) into one results table.

Component steps, each adding one thing to the one before (Table 12):

1. ``plain`` -- classification encoder with plain convolution blocks, random initialisation,
   no gates, the same FC head (the paper's baseline);
2. ``+residual`` -- residual blocks;
3. ``+gates`` -- cross-task attention gates from the frozen segmentation encoder;
4. ``+transfer`` -- classification encoder initialised from the segmentation encoder (the full
   nn-TransEC classifier).

Each step runs on the KRT crop and on the whole volume downsampled to the crop's shape
(Table 13: "without / with KRT cropping"). Every variant is a full five-fold patient-level
cross-validation (:func:`esoct.classify.multitask.cross_validate`) on the same folds, so the
rows are comparable patient by patient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from esoct.classify.multitask import CVResult, KrtDataset, TrainConfig, auc_text, cross_validate
from esoct.errors import InputError
from esoct.models.multitask import build_multitask_classifier, count_parameters

#: Component steps: (key, residual, gates, transfer).
STEPS: tuple[tuple[str, bool, bool, bool], ...] = (
    ("plain", False, False, False),
    ("+residual", True, False, False),
    ("+gates", True, True, False),
    ("+transfer", True, True, True),
)

#: Input kinds: the KRT crop and the downsampled whole volume.
INPUTS: tuple[str, ...] = ("krt", "whole")


@dataclass(frozen=True)
class AblationVariant:
    """One row of the ablation table: block type, gates, transfer and input kind."""

    step: str
    residual: bool
    gates: bool
    transfer: bool
    input: str

    @property
    def name(self) -> str:
        """Folder-safe identifier, e.g. ``krt_+gates``."""
        return f"{self.input}_{self.step}".replace("+", "plus-")


def ablation_grid(inputs: Sequence[str] = INPUTS, steps: Sequence[str] | None = None) -> list[AblationVariant]:
    """The variants to run: every component step (or those named in ``steps``) for every input kind."""
    unknown = set(inputs) - set(INPUTS)
    if unknown:
        raise InputError(f"unknown input kinds {sorted(unknown)}; choose from {INPUTS}")
    keys = [s[0] for s in STEPS]
    if steps is not None and set(steps) - set(keys):
        raise InputError(f"unknown ablation steps {sorted(set(steps) - set(keys))}; choose from {keys}")
    return [AblationVariant(k, r, g, t, i) for i in inputs for (k, r, g, t) in STEPS if steps is None or k in steps]


@dataclass
class AblationResult:
    """The results table (one row per variant) and each variant's :class:`CVResult`."""

    table: pd.DataFrame
    runs: dict[str, CVResult]

    def to_text(self, digits: int = 3) -> str:
        """The table as aligned text (AUC with its CI)."""
        return format_ablation(self.table, digits)


SegEncoderFn = Callable[[int, list, str], nn.Module]


def run_ablation(
    datasets: dict[str, KrtDataset],
    seg_encoder_fn: SegEncoderFn | None,
    encoder_factory: Callable[..., nn.Module],
    out_dir: str | Path,
    config: TrainConfig,
    *,
    variants: Sequence[AblationVariant] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    hidden: int = 128,
    progress: bool = False,
    figures: bool = True,
) -> AblationResult:
    """Cross-validate every ablation variant and gather one table (Tables 12 and 13).

    Parameters
    ----------
    datasets : dict
        ``{"krt": KrtDataset, "whole": KrtDataset}``: the same patients in the same order, as
        KRT crops and as downsampled whole volumes.
    seg_encoder_fn : callable or None
        ``seg_encoder_fn(fold, train_ids, input_kind) -> encoder``: the trained segmentation
        encoder to gate with and transfer from in that fold (trained without the fold's test
        patients). Only called for variants with gates or transfer.
    encoder_factory : callable
        ``encoder_factory(residual=bool) -> encoder`` of the segmentation encoder's class and
        topology.
    out_dir : str or Path
        One sub-folder per variant (its cross-validation files), plus ``ablation.csv``.
    config : TrainConfig
        Training settings, the same for every variant.
    variants : sequence of AblationVariant, optional
        Default :func:`ablation_grid` over the input kinds present in ``datasets``.
    n_splits, seed : int
        Folds and fold seed (the same folds for every variant).
    hidden : int
        Head width.
    progress : bool
        Progress bars.
    figures : bool
        Write each variant's confusion-matrix PNG.

    Returns
    -------
    AblationResult
        ``table`` columns: ``step``, ``input``, ``residual``, ``gates``, ``transfer``, ``auc``,
        ``auc_low``, ``auc_high`` (macro one-vs-rest, pooled out-of-fold), ``precision``,
        ``recall``, ``specificity``, ``npv``, ``f1`` (stage averages), ``accuracy``,
        ``trainable_params``, ``seconds`` (classifier training, summed over the folds) and
        ``wall_seconds`` (this call, including segmentation encoders built for the variant; ~0 when
        every fold was reused).
    """
    out = Path(out_dir)
    variants = list(variants) if variants is not None else ablation_grid([k for k in INPUTS if k in datasets])
    ids = {k: d.patient_ids for k, d in datasets.items()}
    if len({tuple(v) for v in ids.values()}) > 1:
        raise InputError("the datasets of the input kinds must hold the same patients in the same order")
    rows, runs = [], {}
    for v in variants:
        if v.input not in datasets:
            raise InputError(f"variant {v.name} needs the {v.input!r} inputs, which were not given")
        if (v.gates or v.transfer) and seg_encoder_fn is None:
            raise InputError(f"variant {v.name} needs a segmentation encoder (seg_encoder_fn)")

        def model_fn(fold, train_ids, v=v):
            seg = seg_encoder_fn(fold, train_ids, v.input) if (v.gates or v.transfer) else None
            model, _ = build_multitask_classifier(seg, encoder_factory, residual=v.residual, gates=v.gates,
                                                  transfer=v.transfer, hidden=hidden, seed=config.seed + fold)
            return model

        # trainable parameters do not depend on the segmentation encoder's weights: count on a stand-in
        with torch.random.fork_rng(devices=[]):
            stand_in = encoder_factory(residual=True) if (v.gates or v.transfer) else None
            probe, _ = build_multitask_classifier(stand_in, encoder_factory, residual=v.residual, gates=v.gates,
                                                  transfer=v.transfer, hidden=hidden)
        t0 = time.perf_counter()
        cv = cross_validate(datasets[v.input], model_fn, out / v.name, config, n_splits=n_splits, seed=seed,
                            progress=progress, figures=figures, title=v.name)
        runs[v.name] = cv
        avg = cv.metrics.table.loc["average"]
        rows.append({"step": v.step, "input": v.input, "residual": v.residual, "gates": v.gates,
                     "transfer": v.transfer, **{c: float(avg[c]) for c in ("auc", "auc_low", "auc_high", "precision",
                                                                           "recall", "specificity", "npv", "f1")},
                     "accuracy": cv.metrics.accuracy, "trainable_params": count_parameters(probe),
                     "seconds": round(sum(float(r.get("seconds") or 0.0) for r in cv.fold_metrics), 1),
                     "wall_seconds": round(time.perf_counter() - t0, 1)})
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ablation.csv", index=False)
    (out / "ablation.txt").write_text(format_ablation(table) + "\n")
    return AblationResult(table, runs)


def format_ablation(table: pd.DataFrame, digits: int = 3) -> str:
    """Aligned text of the ablation table: components as ticks, macro AUC with its CI, stage averages."""
    head = (f"{'input':<6}{'res':>4}{'gate':>5}{'tran':>5}  {'avg AUC (95% CI)':<24}{'prec':>7}{'recall':>7}"
            f"{'spec':>7}{'NPV':>7}{'F1':>7}{'acc':>7}{'params':>9}{'s':>7}")
    lines = [head]
    for _, r in table.iterrows():
        tick = lambda b: "x" if b else "-"  # noqa: E731
        auc = auc_text(r, digits)
        vals = "".join(f"{r[c]:>7.{digits}f}" for c in ("precision", "recall", "specificity", "npv", "f1", "accuracy"))
        n = r["trainable_params"]
        params = "" if n is None or pd.isna(n) else f"{int(n)}"
        lines.append(f"{r['input']:<6}{tick(r['residual']):>4}{tick(r['gates']):>5}{tick(r['transfer']):>5}  "
                     f"{auc:<24}{vals}{params:>9}{r['seconds']:>7.0f}")
    return "\n".join(lines)
