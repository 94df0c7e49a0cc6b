"""Five-fold patient-level cross-validation of ResoLSTM-Depth and ResNet-18, as the paper's results section.

Study directory layout written by :func:`cross_validate` (``out`` is the study directory)::

    models/tstage/<model>/fold-<k>/     last.pt, best.pt (load with esoct.tstage.train.load_model), train.log
    results/tstage/folds.json           patient -> fold, reused on rerun
    results/tstage/per_fold.csv         model, fold, n, accuracy, auc, sensitivity, specificity, f1, selected epoch
    results/tstage/predictions.csv      one row per patient and model: fold, true class, class probabilities, prediction
    results/tstage/metrics.json         per-fold table, means, pooled AUCs with DeLong CIs, DeLong test, failures
    results/tstage/failures.csv         patients left out and folds that could not be trained, with the reason
    results/tstage/tstage.log           what was run
    results/tstage/figures/*.png        ROC of the folds, confusion matrix, t-SNE, Grad-CAM (see make_figures)

A rerun with the same arguments reuses the folds and every completed fold (and resumes an
interrupted one from its last epoch). A fold that cannot be trained (e.g. its training set lacks
a class) is recorded in ``failures`` and the other folds are kept.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.train.folds import fold_split, load_or_make_folds
from esoct.tstage.data import SequenceSet, _resize
from esoct.tstage.presets import Preset, get_preset

MODEL_NAMES = {"resolstm": "ResoLSTM-Depth", "resnet": "ResNet-18"}
METRICS = ("accuracy", "auc", "sensitivity", "specificity", "f1")


@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    Attributes
    ----------
    per_fold : pandas.DataFrame
        One row per (model, fold): ``model``, ``fold`` (1-based), ``n``, the five metrics, ``best_epoch``.
    predictions : pandas.DataFrame
        Out-of-fold predictions, one row per (patient, model): ``patient_id``, ``model``, ``fold``,
        ``y_true``, ``true_class``, ``p_<class>`` for every class, ``y_pred``, ``pred_class``.
    pooled : dict
        Per model: pooled out-of-fold ``auc`` (:class:`~esoct.evaluate.bootstrap.CI`, DeLong) and
        the pooled threshold metrics.
    delong : DeLongTest or None
        ResoLSTM-Depth vs ResNet-18 on the patients both predicted (binary; for 4 classes on
        P(T3) + P(T4) against T3-4).
    failures : dict
        ``patient_id`` or ``"<model> fold <k>"`` -> reason.
    class_names : tuple of str
    out : Path
        The study directory.
    preset : Preset
    wall_seconds : float
    notes : list of str
        Caveats (e.g. model selection on the test fold).
    n_splits : int
        Number of folds.
    """

    per_fold: pd.DataFrame
    predictions: pd.DataFrame
    pooled: dict
    delong: object
    failures: dict
    class_names: tuple
    out: Path
    preset: Preset
    wall_seconds: float = 0.0
    notes: list = field(default_factory=list)
    n_splits: int = 5

    def table(self, model: str) -> pd.DataFrame:
        """The paper's Table 1 for ``model``: one row per fold and an ``Average`` row."""
        t = self.per_fold[self.per_fold["model"] == model].copy()
        t["fold"] = t["fold"].astype(str)
        mean = {"model": model, "fold": "Average", "n": int(t["n"].sum())}
        mean.update({m: float(np.nanmean(t[m])) if len(t) and not t[m].isna().all() else float("nan") for m in METRICS})
        t = pd.concat([t, pd.DataFrame([mean])], ignore_index=True)
        return t[["fold", "n", *METRICS]].rename(columns={"fold": "Fold", "accuracy": "Accuracy", "auc": "AUC",
                                                         "sensitivity": "Sensitivity", "specificity": "Specificity",
                                                         "f1": "F1"})

    def summary(self) -> str:
        """The per-fold tables, pooled AUCs with 95 % DeLong CIs and the DeLong test, as text."""
        lines = []
        for model in self.per_fold["model"].unique():
            words = {5: "five", 10: "ten"}
            lines.append(f"{MODEL_NAMES.get(model, model)} ({self.preset.name} preset), "
                         f"{words.get(self.n_splits, self.n_splits)}-fold cross-validation")
            lines.append(self.table(model).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            lines.append("")
        for model, pooled in self.pooled.items():
            auc = pooled["auc"]
            lines.append(f"pooled out-of-fold AUC {MODEL_NAMES.get(model, model)}: {auc.estimate:.3f} "
                         f"(95 % DeLong CI {auc.low:.3f}-{auc.high:.3f}), n = {pooled['n']}")
        if self.delong is not None:
            d = self.delong
            lines.append(f"DeLong test ResoLSTM-Depth vs ResNet-18: AUC {d.auc_a:.3f} vs {d.auc_b:.3f}, difference "
                         f"{d.difference.estimate:+.3f} (95 % CI {d.difference.low:+.3f} to {d.difference.high:+.3f}), "
                         f"z = {d.z:.2f}, p = {d.p_value:.4f}")
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.failures:
            lines.append(f"failures ({len(self.failures)}): " + "; ".join(f"{k}: {v}" for k, v in self.failures.items()))
        return "\n".join(lines)


def _log(path: Path, message: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def _inner_split(train: SequenceSet, fraction: float, seed: int) -> tuple[SequenceSet, SequenceSet]:
    """Stratified split of the training patients into fitting and selection (validation) patients."""
    from sklearn.model_selection import train_test_split

    ids = np.array(train.patient_ids)
    n_val = max(len(train.class_names), int(round(fraction * len(ids))))
    counts = np.bincount(train.labels, minlength=len(train.class_names))
    strat = train.labels if counts.min() >= 2 and n_val >= len(train.class_names) else None
    fit, val = train_test_split(ids, test_size=n_val, stratify=strat, random_state=seed)
    order = {p: i for i, p in enumerate(train.patient_ids)}
    fit = sorted(fit, key=order.get)
    val = sorted(val, key=order.get)
    return train.subset(fit), train.subset(val)


def fold_metrics(y: np.ndarray, proba: np.ndarray) -> dict:
    """Accuracy, AUC, sensitivity, specificity and F1 of one fold's predictions.

    Binary: the positive class is class 1 (T3-4), predicted when its probability is >= 0.5;
    AUC of that probability (NaN when the fold holds one class only). Four classes: accuracy of
    the argmax, macro one-vs-rest AUC, macro-averaged sensitivity (recall), specificity and F1.

    Parameters
    ----------
    y : numpy.ndarray, (n,) int
    proba : numpy.ndarray, (n, K)

    Returns
    -------
    dict
    """
    from sklearn.metrics import f1_score, roc_auc_score

    y = np.asarray(y, dtype=int)
    k = proba.shape[1]
    if k == 2:
        pred = (proba[:, 1] >= 0.5).astype(int)
        tp, tn = int(np.sum((pred == 1) & (y == 1))), int(np.sum((pred == 0) & (y == 0)))
        fp, fn = int(np.sum((pred == 1) & (y == 0))), int(np.sum((pred == 0) & (y == 1)))
        auc = float(roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else float("nan")
        return {"n": len(y), "accuracy": (tp + tn) / len(y), "auc": auc,
                "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
                "specificity": tn / (tn + fp) if tn + fp else float("nan"),
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")}
    pred = proba.argmax(axis=1)
    present = np.unique(y)
    try:
        auc = float(roc_auc_score(y, proba[:, present] / proba[:, present].sum(1, keepdims=True), multi_class="ovr",
                                  labels=list(present))) if len(present) > 2 else float("nan")
    except ValueError:
        auc = float("nan")
    sens, spec = [], []
    for c in present:
        tp = np.sum((pred == c) & (y == c))
        sens.append(tp / np.sum(y == c))
        neg = y != c
        spec.append(np.sum((pred != c) & neg) / neg.sum() if neg.any() else np.nan)
    return {"n": len(y), "accuracy": float(np.mean(pred == y)), "auc": auc, "sensitivity": float(np.mean(sens)),
            "specificity": float(np.nanmean(spec)),
            "f1": float(f1_score(y, pred, labels=list(present), average="macro", zero_division=0))}


def cross_validate(
    sequences: SequenceSet,
    out: str | Path,
    *,
    preset: str | Preset = "fast",
    models=("resolstm", "resnet"),
    n_splits: int = 5,
    seed: int = 0,
    folds: pd.DataFrame | None = None,
    device: str | None = None,
    weights: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> CVResult:
    """Patient-level stratified k-fold cross-validation of the T-stage models.

    For each fold k: the models are trained on the other folds' patients (with a stratified inner
    validation split for model selection when ``preset.selection == "inner"``) and predict the
    patients of fold k once. The per-fold metrics make the paper's Table 1 (:meth:`CVResult.table`);
    the pooled out-of-fold predictions give each model's AUC with its DeLong 95 % CI and the paired
    DeLong test of ResoLSTM-Depth against ResNet-18.

    Parameters
    ----------
    sequences : SequenceSet
        Checked ROI sequences (:func:`esoct.tstage.data.load_roi_sequences`) at any size; resized to
        ``preset.image_size``. Its ``failures`` are carried into the results.
    out : str or Path
        Study directory.
    preset : str or Preset
        ``"fast"`` or ``"paper"`` (:mod:`esoct.tstage.presets`) or a Preset.
    models : iterable of {"resolstm", "resnet"}
    n_splits : int
        Folds (5: 80/20 as the paper).
    seed : int
        Folds, weights, shuffling and augmentation.
    folds : pandas.DataFrame, optional
        Columns ``patient_id``, ``fold`` (0-based): use these folds instead of making (or reusing)
        stratified ones in ``results/tstage/folds.json``.
    device : str, optional
        Default: CUDA when available, else CPU.
    weights : str or Path, optional
        Local ResNet-18 weights to start every model from.
    progress : bool
    figures : bool
        Write the figures (:func:`make_figures`).

    Returns
    -------
    CVResult
    """
    from esoct.evaluate.roc import auc_ci, delong_test
    from esoct.tstage.train import predict_proba, train_fold

    t_start = time.perf_counter()
    preset = get_preset(preset)
    out = Path(out)
    res_dir = out / "results" / "tstage"
    res_dir.mkdir(parents=True, exist_ok=True)
    log_path = res_dir / "tstage.log"
    models = tuple(models)
    unknown = set(models) - set(MODEL_NAMES)
    if unknown:
        raise InputError(f"unknown model(s) {sorted(unknown)}; choose from {sorted(MODEL_NAMES)}")
    if len(sequences) == 0:
        raise InputError("no usable patient sequences: " + "; ".join(list(sequences.failures.values())[:5]))
    seqs = SequenceSet(sequences.patient_ids, sequences.labels,
                       [_resize(im, preset.image_size) for im in sequences.images], sequences.class_names,
                       dict(sequences.failures), list(sequences.reversed))
    names = seqs.class_names
    class_of = dict(zip(seqs.patient_ids, seqs.labels))
    if folds is None:
        folds = load_or_make_folds(res_dir / "folds.json", seqs.patient_ids, [names[c] for c in seqs.labels],
                                   n_splits, seed)
    else:
        folds = folds[folds["patient_id"].astype(str).isin(class_of)].copy()
        folds["patient_id"] = folds["patient_id"].astype(str)
        n_splits = int(folds["fold"].max()) + 1
    _log(log_path, f"cross-validation of {models} on {len(seqs)} patients, {n_splits} folds, preset {preset.name}, "
                   f"seed {seed}; {len(seqs.failures)} patients left out")
    failures = dict(seqs.failures)
    notes = []
    if preset.selection == "test":
        notes.append("model selected on the test fold itself (selection='test', as the paper): optimistic estimates")
    rows, preds = [], []
    for k in range(n_splits):
        train_ids, test_ids = fold_split(folds, k)
        train, test = seqs.subset(train_ids), seqs.subset(test_ids)
        absent = sorted(set(range(len(names))) - set(train.labels.tolist()))
        if absent:
            reason = (f"fold {k + 1}: training set has no patient of class {', '.join(names[c] for c in absent)}; "
                      "fold not trained")
            for kind in models:
                failures[f"{kind} fold {k + 1}"] = reason
            _log(log_path, reason)
            continue
        if preset.selection == "inner":
            fit, val = _inner_split(train, preset.val_fraction, seed + k)
        elif preset.selection == "test":
            fit, val = train, test
        else:
            fit, val = train, None
        for kind in models:
            try:
                trained = train_fold(kind, fit, val, preset, out / "models" / "tstage" / kind / f"fold-{k + 1}",
                                     seed=seed * 1000 + k, device=device, weights=weights, progress=progress,
                                     desc=f"{MODEL_NAMES[kind]} fold {k + 1}/{n_splits}")
                proba = predict_proba(trained.model, test, batch_size=preset.batch_size)
            except Exception as exc:  # noqa: BLE001 - one fold's failure must not lose the others
                reason = f"{type(exc).__name__}: {exc}"
                failures[f"{kind} fold {k + 1}"] = reason
                _log(log_path, f"{kind} fold {k + 1} failed: {reason}")
                continue
            m = fold_metrics(test.labels, proba)
            rows.append({"model": kind, "fold": k + 1, **m, "best_epoch": trained.best_epoch})
            _log(log_path, f"{kind} fold {k + 1}: " + ", ".join(f"{key} {m[key]:.3f}" for key in METRICS)
                 + f" (selected epoch {trained.best_epoch})")
            pred = proba.argmax(axis=1) if proba.shape[1] > 2 else (proba[:, 1] >= 0.5).astype(int)
            for i, pid in enumerate(test.patient_ids):
                row = {"patient_id": pid, "model": kind, "fold": k + 1, "y_true": int(test.labels[i]),
                       "true_class": names[test.labels[i]]}
                row.update({f"p_{c}": float(proba[i, j]) for j, c in enumerate(names)})
                row.update({"y_pred": int(pred[i]), "pred_class": names[pred[i]]})
                preds.append(row)
    per_fold = pd.DataFrame(rows, columns=["model", "fold", "n", *METRICS, "best_epoch"])
    predictions = pd.DataFrame(preds)
    pooled, delong = {}, None
    scores = {}
    for kind in models:
        p = predictions[predictions["model"] == kind] if len(predictions) else predictions
        if len(p) == 0 or p["y_true"].nunique() < 2:
            continue
        y, score = _binary_score(p, names)
        proba = p[[f"p_{c}" for c in names]].to_numpy()
        pooled[kind] = {**fold_metrics(p["y_true"].to_numpy(), proba), "auc": auc_ci(y, score), "n": len(p)}
        scores[kind] = p.set_index("patient_id").assign(score=score)[["score"]].assign(y=y)
    if "resolstm" in scores and "resnet" in scores:
        both = scores["resolstm"].join(scores["resnet"], lsuffix="_a", rsuffix="_b", how="inner")
        if len(both) and both["y_a"].nunique() == 2:
            delong = delong_test(both["y_a"].to_numpy(), both["score_a"].to_numpy(), both["score_b"].to_numpy())
    if len(names) > 2:
        notes.append("pooled AUCs and the DeLong test use P(T3) + P(T4) against T3-4 vs T1-2")
    result = CVResult(per_fold, predictions, pooled, delong, failures, names, out, preset,
                      time.perf_counter() - t_start, notes, n_splits)
    _write_results(result, res_dir, seqs)
    if figures and len(predictions):
        try:
            make_figures(result, seqs, res_dir / "figures", seed=seed)
        except Exception as exc:  # noqa: BLE001 - a figure problem must not lose the results
            result.failures["figures"] = f"{type(exc).__name__}: {exc}"
            _log(log_path, f"figures failed: {result.failures['figures']}")
            _write_results(result, res_dir, seqs)
    result.wall_seconds = time.perf_counter() - t_start
    _log(log_path, f"done in {result.wall_seconds:.1f} s")
    return result


def _binary_score(p: pd.DataFrame, names) -> tuple[np.ndarray, np.ndarray]:
    """Outcome and score of the binary comparison: T3-4 (class 1, or classes T3 + T4 of four)."""
    if len(names) == 2:
        return p["y_true"].to_numpy().astype(int), p[f"p_{names[1]}"].to_numpy()
    return (p["y_true"].to_numpy() >= 2).astype(int), p[[f"p_{c}" for c in names[2:]]].sum(axis=1).to_numpy()


def _plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _plain(v.item())
    return v


def _write_results(result: CVResult, res_dir: Path, seqs: SequenceSet) -> None:
    result.per_fold.to_csv(res_dir / "per_fold.csv", index=False)
    result.predictions.to_csv(res_dir / "predictions.csv", index=False)
    pd.DataFrame(sorted(result.failures.items()), columns=["patient_id", "reason"]).to_csv(res_dir / "failures.csv",
                                                                                           index=False)
    doc = {
        "preset": result.preset.to_dict(),
        "class_names": list(result.class_names),
        "n_patients": len(seqs),
        "reversed_sequences": list(seqs.reversed),
        "tables": {m: [{k: _plain(v) for k, v in r.items()} for r in result.table(m).to_dict("records")]
                   for m in result.per_fold["model"].unique()},
        "pooled": {m: {"auc": v["auc"].as_dict(), **{k: _plain(v[k]) for k in ("n", *METRICS[:1], *METRICS[2:])}}
                   for m, v in result.pooled.items()},
        "delong": None if result.delong is None else {
            "auc_resolstm": result.delong.auc_a, "auc_resnet": result.delong.auc_b, "z": _plain(result.delong.z),
            "p_value": result.delong.p_value, "difference": result.delong.difference.as_dict()},
        "failures": result.failures,
        "notes": result.notes,
        "wall_seconds": result.wall_seconds,
    }
    (res_dir / "metrics.json").write_text(json.dumps(doc, indent=1, default=_plain))


def make_figures(result: CVResult, sequences: SequenceSet, fig_dir: str | Path, *, seed: int = 0,
                 n_cases: int = 3) -> list[Path]:
    """ROC curves of the folds and the pooled confusion matrix of each model, t-SNE of the LSTM
    features and Grad-CAM of correctly and wrongly classified patients (ResoLSTM-Depth).

    Files: ``roc_<model>.png``, ``confusion_<model>.png``, ``tsne_resolstm.png``,
    ``gradcam_resolstm.png`` (and ``gradcam_resnet.png``).

    Parameters
    ----------
    result : CVResult
    sequences : SequenceSet
        The sequences the models were trained on (at ``preset.image_size``).
    fig_dir : str or Path
    seed : int
        t-SNE seed.
    n_cases : int
        Correct and wrong cases shown in each Grad-CAM figure (each).

    Returns
    -------
    list of Path
    """
    from esoct.evaluate.threshold import confusion
    from esoct.report.figures import plot_confusion, plot_roc_folds
    from esoct.tstage.explain import plot_grad_cam_cases, plot_tsne, pick_cases
    from esoct.tstage.train import load_model

    fig_dir = Path(fig_dir)
    written = []
    names = result.class_names
    for kind in result.predictions["model"].unique():
        p = result.predictions[result.predictions["model"] == kind]
        folds = []
        for k, g in p.groupby("fold"):
            y, s = _binary_score(g, names)
            if len(np.unique(y)) == 2:
                folds.append((y, s))
        if folds:
            r = plot_roc_folds(folds, title=f"{MODEL_NAMES[kind]}: ROC of the {len(folds)} folds",
                               path=fig_dir / f"roc_{kind}.png")
            written += r.paths
        cm = confusion(p["true_class"], p["pred_class"], labels=list(names)).to_numpy()
        written += plot_confusion(cm, list(names), title=f"{MODEL_NAMES[kind]} (pooled out-of-fold)",
                                  path=fig_dir / f"confusion_{kind}.png").paths
        fold_dir = result.out / "models" / "tstage" / kind
        if kind == "resolstm":
            k1 = int(p["fold"].min())
            model = load_model(fold_dir / f"fold-{k1}" / "best.pt")
            test_ids = set(p.loc[p["fold"] == k1, "patient_id"])
            written += plot_tsne(model, sequences, fig_dir / "tsne_resolstm.png", test_ids=test_ids, seed=seed,
                                 title=f"t-SNE of the LSTM features (fold {k1} model)").paths
        cases = pick_cases(p, n_cases)
        if len(cases):
            models = {int(f): load_model(fold_dir / f"fold-{int(f)}" / "best.pt") for f in cases["fold"].unique()}
            written += plot_grad_cam_cases(models, cases, sequences, fig_dir / f"gradcam_{kind}.png",
                                           title=f"Grad-CAM, {MODEL_NAMES[kind]} layer4").paths
    return written


def predict(models_dir: str | Path, sequences: SequenceSet, *, kind: str = "resolstm", fold: int | None = None,
            device: str | None = "cpu") -> pd.DataFrame:
    """Predict new patients with the trained fold models of a study.

    Parameters
    ----------
    models_dir : str or Path
        The study directory, or its ``models/tstage`` folder.
    sequences : SequenceSet
        Checked ROI sequences (resized to the models' ``image_size`` when needed).
    kind : {"resolstm", "resnet"}
    fold : int, optional
        1-based fold whose model predicts; None averages the probabilities of all fold models
        (an ensemble of the k models).
    device : str, optional

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``p_<class>`` per class, ``pred_class``.
    """
    from esoct.tstage.train import load_model, predict_proba

    root = Path(models_dir)
    if (root / "models" / "tstage").is_dir():
        root = root / "models" / "tstage"
    files = sorted((root / kind).glob("fold-*/best.pt"))
    if fold is not None:
        files = [f for f in files if f.parent.name == f"fold-{fold}"]
    if not files:
        raise InputError(f"no trained {kind} model{'' if fold is None else f' for fold {fold}'}", root / kind)
    probas, names = [], None
    for f in files:
        model = load_model(f, device=device)
        size = int(model.preset.get("image_size", sequences.images[0].shape[-1]))
        seqs = SequenceSet(sequences.patient_ids, sequences.labels, [_resize(im, size) for im in sequences.images],
                           sequences.class_names)
        probas.append(predict_proba(model, seqs))
        names = model.class_names
    proba = np.mean(probas, axis=0)
    table = pd.DataFrame({"patient_id": sequences.patient_ids})
    for j, c in enumerate(names):
        table[f"p_{c}"] = proba[:, j]
    table["pred_class"] = [names[j] for j in proba.argmax(axis=1)]
    return table
