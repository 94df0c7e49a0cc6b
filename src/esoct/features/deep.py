"""Deep features of the 2.5D tumour slab: a ResNet-18 trained inside the training fold, global-average-pooled, PCA(10).

The longitudinal survival paper feeds the 7-slice slab of each scan (largest tumour
cross-section +- 3 slices as channels, see :func:`esoct.preprocess.roi.pipelines.longitudinal_inputs`)
to a CNN and keeps 10 principal components of its pooled features per time point (DL_pre,
DL_post; DL_longitudinal = both). This module builds the slab dataset of a manifest (cached),
trains the network on the training patients only, and returns out-of-fold feature tables whose
columns (``dl_pre_pca_1..``, ``dl_post_pca_1..``) plug into :mod:`esoct.survival.presets`.

torch and MONAI are imported here only; ``import esoct.features`` does not import this module.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted
from torch import nn

from esoct.errors import InputError

log = logging.getLogger("esoct")

#: Time points of the longitudinal study, in table order.
TIMEPOINTS = ("pre", "post")
#: Slab settings of :func:`~esoct.preprocess.roi.pipelines.longitudinal_inputs` (the paper's).
DEFAULT_SLAB_SETTINGS = {
    "window_hu": (50.0, 350.0),
    "spacing_zyx": (1.0, 1.0, 1.0),
    "n_adjacent": 3,
    "size": 224,
    "label": 1,
    "crop_margin_mm": 20.0,
}
_CACHE_VERSION = "slab-1"  # bump when the slab computation changes
_HEADS = ("classification", "cox")


# --------------------------------------------------------------------------------------------
# Cox loss
# --------------------------------------------------------------------------------------------
def cox_ph_loss(risk: torch.Tensor, event: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """Negative log Cox partial likelihood (Breslow ties), averaged over events.

    .. math::

        L = -\\frac{1}{d} \\sum_{i: \\delta_i = 1} \\Big[\\eta_i - \\log \\sum_{j: t_j \\ge t_i} e^{\\eta_j}\\Big]

    with ``d`` the number of events. Breslow's approximation gives every tied event the full
    risk set of its time. Vectorised in O(N log N): times are sorted descending, the risk-set
    log-sums are a cumulative ``logcumsumexp`` and tied times take the value at the end of their
    tie group (``searchsorted``). Within a mini-batch the risk set is the batch's patients (the
    usual DeepSurv practice). With no event the loss is 0 (still connected to ``risk``).

    Parameters
    ----------
    risk : torch.Tensor, (N,) or (N, 1)
        Log-risk (linear predictor) of each patient; higher = earlier event.
    event : torch.Tensor, (N,)
        1/True for an observed event, 0/False for censoring.
    time : torch.Tensor, (N,)
        Follow-up time (any unit, e.g. months).

    Returns
    -------
    torch.Tensor
        Scalar loss; ``loss * d`` equals minus the Breslow log partial likelihood.

    References
    ----------
    .. [1] Cox DR. Regression models and life-tables. J R Stat Soc B 1972;34:187-220.
    .. [2] Breslow N. Covariance analysis of censored survival data. Biometrics 1974;30:89-99.
    .. [3] Katzman JL et al. DeepSurv: personalized treatment recommender system using a Cox
       proportional hazards deep neural network. BMC Med Res Methodol 2018;18:24.
    """
    risk = risk.reshape(-1)
    event = event.reshape(-1).to(risk.device, torch.bool)
    time = time.reshape(-1).to(risk.device, risk.dtype)
    if not (len(risk) == len(event) == len(time)):
        raise ValueError(f"risk, event and time lengths differ: {len(risk)}, {len(event)}, {len(time)}")
    n_events = int(event.sum())
    if n_events == 0:
        return risk.sum() * 0.0
    order = torch.argsort(time, descending=True, stable=True)
    t_desc, eta_desc = time[order], risk[order]
    log_cum = torch.logcumsumexp(eta_desc, dim=0)
    # Risk set of position k: all j with t_j >= t_k, i.e. up to the last of its ties in descending order.
    last = torch.searchsorted(-t_desc, -t_desc, right=True) - 1
    log_risk_set = log_cum[last]
    ev = event[order]
    return -(eta_desc[ev] - log_risk_set[ev]).sum() / n_events


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------
class DeepFeatureExtractor(TransformerMixin, BaseEstimator):
    """Train a 2D ResNet-18 on 2.5D slabs, then output PCA components of its pooled features.

    ``fit`` trains the network from scratch (or from a local weights file) on the given
    slabs only, with a classification head (cross-entropy) or a Cox head (negative log
    partial likelihood, :func:`cox_ph_loss`), Adam, mini-batches and random horizontal /
    vertical flips; then computes the global-average-pooled features of the same slabs with
    the trained network (eval mode, no augmentation) and fits :class:`~esoct.select.pca.PCAFeatures`
    on them. ``transform`` never refits: new slabs go through the trained network and the
    training PCA. Everything data-dependent is fitted on the slabs passed to ``fit``, so fit
    it on the training fold only (see :func:`cross_fitted_deep_features`).

    Parameters
    ----------
    head : {"cox", "classification"}
        Training objective: ``"cox"`` takes a scikit-survival structured array (event, time);
        ``"classification"`` any labels (binary or multiclass, cross-entropy).
    width : float
        Backbone channel multiplier: 1.0 is ResNet-18 (F = 512 features); 0.125 gives F = 64.
    weights : str or Path, optional
        Local backbone weights file (see :func:`esoct.models.backbones.load_backbone_weights`);
        the network starts from it instead of a random initialisation. With ``epochs=0`` the
        network is used as a frozen feature extractor (as the paper uses CrossFormer).
    epochs : int
        Training epochs (0: no training).
    lr : float
        Adam learning rate.
    batch_size : int
        Mini-batch size (patients). A last batch of one patient is dropped each epoch.
    weight_decay : float
        Adam weight decay (L2).
    augment : bool
        Random flips along H and W (each with probability 0.5, per slab) during training.
    n_components : int or None
        Principal components kept (the paper: 10); ``None`` returns the F pooled features.
    standardize : bool
        Standardise the pooled features before the PCA (training-fold mean and std).
    prefix : str
        Output column prefix: ``prefix1 .. prefixK`` (e.g. ``"dl_pre_pca_"``).
    device : str, optional
        ``"cpu"``, ``"cuda"``...; default CUDA when available (:func:`esoct.train.device.pick_device`).
    seed : int
        Seed of the initialisation, shuffling and augmentation: the same seed gives identical
        features (bit for bit on CPU with a fixed thread count; on CUDA cuDNN is made
        deterministic but some pooling backward kernels are not, so expect float-level
        differences there).
    num_threads : int, optional
        CPU threads torch uses during ``fit`` and ``transform`` (restored afterwards); default
        torch's current setting. Fix it to get the same bits on machines with other core counts;
        1 is fastest on a busy shared machine.
    progress : bool
        Show a progress bar over epochs.

    Attributes
    ----------
    model_ : torch.nn.Module
        Trained backbone (on CPU); ``model_(x)`` maps ``(N, C, H, W)`` to ``(N, F)``.
    head_ : torch.nn.Linear
        Trained head (F -> classes, or F -> 1 log-risk without bias).
    pca_ : PCAFeatures or None
        PCA fitted on the training slabs' pooled features.
    classes_ : ndarray
        Class labels (classification head).
    n_deep_features_ : int
        F, pooled features per slab.
    input_shape_ : tuple of int
        ``(C, H, W)`` of the training slabs; ``transform`` requires the same.
    history_ : list of float
        Mean training loss of each epoch.
    weights_info_ : dict or None
        What :func:`load_backbone_weights` adapted or ignored.
    """

    def __init__(
        self,
        head: str = "cox",
        width: float = 1.0,
        weights: str | Path | None = None,
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 16,
        weight_decay: float = 0.0,
        augment: bool = True,
        n_components: int | None = 10,
        standardize: bool = True,
        prefix: str = "dl_pca_",
        device: str | None = None,
        seed: int = 0,
        num_threads: int | None = None,
        progress: bool = False,
    ):
        self.head = head
        self.width = width
        self.weights = weights
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.augment = augment
        self.n_components = n_components
        self.standardize = standardize
        self.prefix = prefix
        self.device = device
        self.seed = seed
        self.num_threads = num_threads
        self.progress = progress

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X, y):
        """Train the network on ``X`` and fit the PCA on its pooled features of ``X``.

        Parameters
        ----------
        X : array-like, (N, C, H, W) float
            Slabs: N patients, C channels (7 slices head to foot), H x W pixels, values as
            produced by :func:`longitudinal_inputs` (window z-scores; no further scaling).
        y : array-like (N,) or structured array (N,)
            Class labels (classification head) or a scikit-survival structured array
            ``(event, time)`` (Cox head; time in any unit).

        Returns
        -------
        self
        """
        from esoct.models.backbones import resnet18_2d
        from esoct.select.pca import PCAFeatures
        from esoct.train.device import pick_device, seeded_generator

        if self.head not in _HEADS:
            raise InputError(f"head must be one of {_HEADS}, got {self.head!r}")
        if int(self.epochs) < 0 or int(self.batch_size) < 1:
            raise InputError(f"need epochs >= 0 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        x = _check_slabs(X, what="X")
        if len(x) < 2:
            raise InputError(f"training needs at least 2 slabs, got {len(x)}")
        target = self._encode_target(y, len(x))
        device = pick_device(self.device)
        self.input_shape_ = tuple(x.shape[1:])
        fork = [device.index or 0] if device.type == "cuda" else []
        with _threads(self.num_threads), torch.random.fork_rng(devices=fork), torch.backends.cudnn.flags(
            enabled=True, benchmark=False, deterministic=True
        ):
            torch.manual_seed(self.seed)
            backbone = resnet18_2d(in_channels=x.shape[1], width=self.width)
            self.weights_info_ = None
            if self.weights is not None:
                from esoct.models.backbones import load_backbone_weights

                self.weights_info_ = load_backbone_weights(backbone, self.weights)
            n_out = len(self.classes_) if self.head == "classification" else 1
            head = nn.Linear(backbone.out_features, n_out, bias=self.head == "classification")
            backbone.to(device)
            head.to(device)
            gen = seeded_generator(self.seed + 1)
            self.history_ = self._train(backbone, head, torch.from_numpy(x), target, device, gen)
        self.model_ = backbone.cpu().eval()
        self.head_ = head.cpu().eval()
        self.n_deep_features_ = int(backbone.out_features)
        features = self.backbone_features(x)
        if self.n_components is None:
            self.pca_ = None
        else:
            self.pca_ = PCAFeatures(self.n_components, prefix=self.prefix, standardize=self.standardize).fit(features)
        return self

    def _encode_target(self, y, n: int) -> dict:
        if self.head == "cox":
            event, time = _survival_arrays(y, n)
            if not event.any():
                raise InputError("all training patients are censored: the Cox head cannot learn")
            return {"event": torch.from_numpy(event), "time": torch.from_numpy(time)}
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != n:
            raise InputError(f"y must hold one label per slab: {labels.shape} labels for {n} slabs")
        if pd.isna(labels).any():
            raise InputError(f"y has {int(pd.isna(labels).sum())} missing label(s)")
        self.classes_, codes = np.unique(labels, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(f"the classification head needs at least 2 classes, y has only {self.classes_.tolist()}")
        return {"label": torch.from_numpy(codes.astype(np.int64))}

    def _train(self, backbone, head, x, target, device, gen) -> list:
        from tqdm.auto import tqdm

        params = list(backbone.parameters()) + list(head.parameters())
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        n, history = len(x), []
        backbone.train()
        head.train()
        for _ in tqdm(range(int(self.epochs)), desc="deep features", unit="epoch", disable=not self.progress):
            perm = torch.randperm(n, generator=gen)
            batches = list(torch.split(perm, int(self.batch_size)))
            if len(batches) > 1 and len(batches[-1]) == 1:
                batches = batches[:-1]  # batch norm needs more than one slab
            losses = []
            for idx in batches:
                if self.head == "cox" and not bool(target["event"][idx].any()):
                    continue  # no event: no partial likelihood in this batch
                xb = _flip(x[idx], gen) if self.augment else x[idx]
                out = head(backbone(xb.to(device)))
                if self.head == "cox":
                    loss = cox_ph_loss(out, target["event"][idx], target["time"][idx])
                else:
                    loss = nn.functional.cross_entropy(out, target["label"][idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)) if losses else float("nan"))
        return history

    # -- transform -------------------------------------------------------------------------
    def backbone_features(self, X) -> np.ndarray:
        """Global-average-pooled features of the trained network (before the PCA).

        Parameters
        ----------
        X : array-like, (N, C, H, W) float
            Slabs shaped as the training slabs; each goes through the network alone (eval mode),
            so its features do not depend on the other slabs passed with it.

        Returns
        -------
        ndarray, (N, F) float64
        """
        check_is_fitted(self, "model_")
        return self._forward(X, self.model_)

    def transform(self, X) -> np.ndarray:
        """PCA components of the pooled features (no refitting).

        Parameters
        ----------
        X : array-like, (N, C, H, W) float
            Slabs shaped as the training slabs.

        Returns
        -------
        ndarray, (N, n_components) float64
            Columns named by :meth:`get_feature_names_out`; (N, F) pooled features when
            ``n_components`` is None.
        """
        features = self.backbone_features(X)
        return features if self.pca_ is None else self.pca_.transform(features)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names ``prefix1 .. prefixK``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "model_")
        if self.pca_ is not None:
            return self.pca_.get_feature_names_out()
        return np.array([f"{self.prefix}{i + 1}" for i in range(self.n_deep_features_)], dtype=object)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of the classification head.

        Parameters
        ----------
        X : array-like, (N, C, H, W) float

        Returns
        -------
        ndarray, (N, n_classes) float64
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self, "head_")
        if self.head != "classification":
            raise InputError("predict_proba needs the classification head; this extractor was trained with 'cox'")
        logits = self._forward(X, nn.Sequential(self.model_, self.head_))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_risk(self, X) -> np.ndarray:
        """Log-risk of the Cox head (higher = earlier event).

        Parameters
        ----------
        X : array-like, (N, C, H, W) float

        Returns
        -------
        ndarray, (N,) float64
        """
        check_is_fitted(self, "head_")
        if self.head != "cox":
            raise InputError("predict_risk needs the Cox head; this extractor was trained with 'classification'")
        return self._forward(X, nn.Sequential(self.model_, self.head_))[:, 0]

    def _forward(self, X, module: nn.Module) -> np.ndarray:
        from esoct.train.device import pick_device

        x = _check_slabs(X, what="X")
        if tuple(x.shape[1:]) != self.input_shape_:
            raise InputError(
                f"slabs are {tuple(x.shape[1:])} (C, H, W) but the network was trained on {self.input_shape_}"
            )
        device = pick_device(self.device)
        module.to(device).eval()
        outs = []
        try:
            with _threads(self.num_threads), torch.no_grad():
                # One slab at a time: a patient's features never depend on which other slabs are
                # transformed with it (batched convolutions round differently, ~1e-6 in float32).
                for slab in torch.from_numpy(x).split(1):
                    outs.append(module(slab.to(device)).double().cpu().numpy())
        finally:
            module.cpu()
        return np.concatenate(outs, axis=0)


@contextmanager
def _threads(n: int | None):
    """Run with ``n`` torch CPU threads (``None``: unchanged), then restore the previous count."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each slab along W and along H, each with probability 0.5 (channels = z keep their order)."""
    n = len(x)
    flip_w = (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1)
    flip_h = (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1)
    x = torch.where(flip_w, x.flip(-1), x)
    return torch.where(flip_h, x.flip(-2), x)


def _check_slabs(X, what: str) -> np.ndarray:
    """``X`` as a C-contiguous float32 (N, C, H, W) array, checked finite."""
    x = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if x.ndim != 4:
        raise InputError(f"{what} must be slabs of shape (N, C, H, W), got an array of shape {x.shape}")
    if len(x) == 0:
        raise InputError(f"{what} holds no slab")
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise InputError(f"{what}: slab(s) {np.flatnonzero(bad)[:5].tolist()} hold NaN or infinite values")
    return x


def _survival_arrays(y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Event (bool) and time (float) of a scikit-survival structured array of length ``n``, checked."""
    if not isinstance(y, np.ndarray) or y.dtype.names is None or len(y.dtype.names) != 2:
        raise InputError(
            "the Cox head needs y as a scikit-survival structured array (event, time), "
            "e.g. sksurv.util.Surv.from_arrays(event, time)"
        )
    event_field, time_field = y.dtype.names
    raw = np.asarray(y[event_field])
    if raw.dtype != bool and not np.isin(raw, (0, 1)).all():
        raise InputError(f"y: the event field {event_field!r} must be 0/1 or boolean")
    event, time = np.array(raw, dtype=bool), np.array(y[time_field], dtype=np.float64)
    if len(event) != n:
        raise InputError(f"y has {len(event)} patients but X has {n} slabs")
    bad = ~(np.isfinite(time) & (time >= 0))
    if bad.any():
        raise InputError(f"y: time {time_field!r} must be finite and >= 0 (row {int(np.flatnonzero(bad)[0])})")
    return event, time


# --------------------------------------------------------------------------------------------
# Slab dataset of a manifest
# --------------------------------------------------------------------------------------------
@dataclass
class SlabDataset:
    """2.5D slabs of a cohort, per time point.

    Attributes
    ----------
    slabs : dict of str to ndarray
        ``{timepoint: (N_tp, C, H, W) float32}``: window z-scores (see
        :func:`~esoct.preprocess.roi.pipelines.longitudinal_inputs`), C = 2 * n_adjacent + 1.
    patient_ids : dict of str to list of str
        Patient of each row of ``slabs[timepoint]``, in manifest order.
    failures : pandas.DataFrame
        ``patient_id, timepoint, reason`` of every scan that gave no slab.
    settings : dict
        The slab settings used.
    computed, cached : int
        Slabs computed in this run and read from the cache.
    """

    slabs: dict
    patient_ids: dict
    failures: pd.DataFrame
    settings: dict
    computed: int = 0
    cached: int = 0

    def get(self, timepoint: str, patients) -> np.ndarray:
        """Slabs of ``patients`` at ``timepoint``, rows in the given order.

        Parameters
        ----------
        timepoint : str
            ``"pre"`` or ``"post"``.
        patients : sequence of str

        Returns
        -------
        ndarray, (len(patients), C, H, W) float32

        Raises
        ------
        InputError
            A patient has no slab at that time point (naming the patient and the reason).
        """
        index = {p: i for i, p in enumerate(self.patient_ids.get(timepoint, []))}
        missing = [p for p in patients if p not in index]
        if missing:
            reason = self._reason(missing[0], timepoint)
            raise InputError(f"no {timepoint} slab ({reason})", patient=str(missing[0]))
        return self.slabs[timepoint][[index[p] for p in patients]]

    def has(self, timepoint: str) -> set:
        """Patients with a slab at ``timepoint``."""
        return set(self.patient_ids.get(timepoint, []))

    def _reason(self, patient: str, timepoint: str) -> str:
        rows = self.failures[(self.failures["patient_id"] == patient) & (self.failures["timepoint"] == timepoint)]
        return rows["reason"].iloc[0] if len(rows) else "no scan at this time point"


def build_slab_dataset(
    manifest,
    cache_dir: str | Path,
    *,
    timepoints: tuple[str, ...] = TIMEPOINTS,
    settings: dict | None = None,
    failures_csv: str | Path | None = None,
    progress: bool = True,
) -> SlabDataset:
    """Compute (or read from the cache) the 2.5D slab of every patient and time point.

    Each scan goes through :func:`~esoct.preprocess.roi.pipelines.longitudinal_inputs`:
    window (50, 350) HU -> z-score with the scan's own windowed mean and std -> 1 mm
    isotropic B-spline resampling around the tumour -> the largest-area slice +- 3 slices,
    cropped to the tumour's bounding rectangle and resized (nearest neighbour) to
    ``size x size``. No statistic is shared between patients, so the slabs can be computed
    once for all folds. Each slab is cached as ``<cache_dir>/<patient>_<tp>_<key>.npy``, the key
    hashing the settings and the image and mask files' path, size and modification time: a
    rerun reads them back, a changed file or setting recomputes. A scan that fails (unreadable
    file, empty tumour mask...) is recorded with its reason and the others go on; a time point
    whose image and mask cells are both empty is skipped (post-treatment scans are optional,
    a missing pre-treatment scan is a failure).

    Parameters
    ----------
    manifest : str, Path or Manifest
        Cohort manifest (see DESIGN.md).
    cache_dir : str or Path
        Slab cache folder (created).
    timepoints : tuple of str
        Time points to build (``image_<tp>`` / ``mask_<tp>`` columns).
    settings : dict, optional
        Overrides of :data:`DEFAULT_SLAB_SETTINGS` (``window_hu`` (centre, width) HU,
        ``spacing_zyx`` mm, ``n_adjacent``, ``size`` pixels, ``label``, ``crop_margin_mm``).
    failures_csv : str or Path, optional
        Where to write ``patient_id,timepoint,reason`` (header only when nothing failed).
    progress : bool
        Show a progress bar per time point.

    Returns
    -------
    SlabDataset
    """
    from esoct.io.manifest import Manifest, load_manifest
    from esoct.study.runner import run_per_patient

    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    unknown = set(settings or {}) - set(DEFAULT_SLAB_SETTINGS)
    if unknown:
        raise InputError(f"unknown slab setting(s) {sorted(unknown)}; known: {sorted(DEFAULT_SLAB_SETTINGS)}")
    settings = {**DEFAULT_SLAB_SETTINGS, **(settings or {})}
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    slabs, ids, failures = {}, {}, []
    counts = {"computed": 0, "cached": 0}
    for tp in timepoints:
        present = []
        for pid in manifest.patients:
            try:
                image, mask = manifest.resolve(pid, f"image_{tp}"), manifest.resolve(pid, f"mask_{tp}")
            except InputError as err:  # e.g. a patient id on two rows
                failures.append((pid, tp, str(err)))
                continue
            if image is None and mask is None:
                if tp == "pre":
                    failures.append((pid, tp, f"patient {pid}: image_pre and mask_pre are empty"))
                continue
            if image is None or mask is None:
                given, empty = ("image", "mask") if mask is None else ("mask", "image")
                failures.append((pid, tp, f"patient {pid}: {given}_{tp} is given but {empty}_{tp} is empty"))
                continue
            present.append((pid, image, mask))
        paths = {pid: (image, mask) for pid, image, mask in present}

        def work(pid, tp=tp, paths=paths):
            return _slab_cached(pid, tp, *paths[pid], settings, cache, counts)

        run = run_per_patient(list(paths), work, desc=f"slabs {tp}", progress=progress)
        failures += [(pid, tp, reason) for pid, reason in run.failures.items()]
        done = [pid for pid in paths if pid in run.results]
        ids[tp] = done
        if done:
            slabs[tp] = np.stack([run.results[pid] for pid in done])
        else:
            c = 2 * int(settings["n_adjacent"]) + 1
            slabs[tp] = np.zeros((0, c, settings["size"], settings["size"]), np.float32)
    table = pd.DataFrame(failures, columns=["patient_id", "timepoint", "reason"])
    if failures_csv is not None:
        Path(failures_csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(failures_csv, index=False)
    return SlabDataset(slabs, ids, table, settings, counts["computed"], counts["cached"])


def _slab_cached(pid: str, tp: str, image: Path, mask: Path, settings: dict, cache: Path, counts: dict) -> np.ndarray:
    """One scan's slab, from the cache or computed and cached (atomic write)."""
    from esoct.io.fingerprint import input_key

    key = input_key([image, mask], [_CACHE_VERSION, settings])[:20]
    path = cache / f"{_safe(pid)}_{tp}_{key}.npy"
    if path.is_file():
        try:
            slab = np.load(path)
            counts["cached"] += 1
            return slab
        except (OSError, ValueError):
            log.warning("slab cache file %s is unreadable; recomputing", path)
    from esoct.io.imageio import read_image
    from esoct.preprocess.roi.pipelines import longitudinal_inputs

    volume = read_image(image, patient=pid)
    labels = read_image(mask, patient=pid)
    slab = longitudinal_inputs(volume, labels, patient=pid, **settings).channels.astype(np.float32)
    if not np.isfinite(slab).all():
        raise InputError(f"{tp} slab has non-finite values", image, pid)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, slab)
    os.replace(tmp, path)
    counts["computed"] += 1
    return slab


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text))


# --------------------------------------------------------------------------------------------
# DL_pre / DL_post / DL_longitudinal
# --------------------------------------------------------------------------------------------
@dataclass
class DeepFeatureTables:
    """The paper's three deep-feature sets, one row per patient.

    Attributes
    ----------
    dl_pre, dl_post : pandas.DataFrame
        ``patient_id`` (and ``fold`` when cross-fitted), then ``dl_pre_pca_1..K`` /
        ``dl_post_pca_1..K``: the patients with a slab at that time point.
    dl_longitudinal : pandas.DataFrame
        Both sets side by side, for the patients with both slabs. Column prefixes
        ``dl_pre_`` and ``dl_post_`` are those of :data:`esoct.survival.presets.FEATURE_GROUPS`
        (DL_Pre, DL_Post, DL_Longitudinal).
    extractors : dict
        Fitted :class:`DeepFeatureExtractor` per time point (``{tp: ...}``), or per fold and
        time point (``{(fold, tp): ...}``) when cross-fitted with ``keep_models``.
    excluded : pandas.DataFrame
        ``patient_id, timepoint, reason`` of training patients left out of training
        (no slab, no outcome), of patients without features and (cross-fitted) of scans
        whose slab failed.
    train_patients : dict
        Patients each network and PCA was fitted on, keyed as ``extractors`` (always kept).
    """

    dl_pre: pd.DataFrame
    dl_post: pd.DataFrame
    dl_longitudinal: pd.DataFrame
    extractors: dict = field(default_factory=dict, repr=False)
    train_patients: dict = field(default_factory=dict, repr=False)
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "timepoint", "reason"]))


def manifest_targets(manifest, target: str = "survival", endpoint: str = "os") -> pd.DataFrame | pd.Series:
    """Training targets of every manifest patient, indexed by ``patient_id``.

    Parameters
    ----------
    manifest : str, Path or Manifest
    target : str
        ``"survival"``: a DataFrame with ``event`` (bool, from ``<endpoint>_event``) and ``time``
        (months, from ``<endpoint>_months``); any other name: that column as a Series of labels
        (e.g. ``"lnm"``, ``"pT"``).
    endpoint : str
        Time-to-event endpoint of the survival target (``os``, ``dfs``, ``pfs``...; see
        :mod:`esoct.survival.endpoints`).

    Returns
    -------
    pandas.DataFrame or pandas.Series
        Missing values stay NaN (those patients are not used for training).
    """
    from esoct.io.manifest import Manifest, load_manifest

    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    table = manifest.table.set_index(manifest.table["patient_id"].astype(str))
    if table.index.duplicated().any():
        dup = table.index[table.index.duplicated()][0]
        raise InputError("patient_id appears on several rows of the manifest", manifest.path, dup)
    if target == "survival":
        from esoct.survival.endpoints import endpoint_columns

        time_col, event_col = endpoint_columns(endpoint)
        missing = [c for c in (event_col, time_col) if c not in table.columns]
        if missing:
            raise InputError(f"the manifest lacks the survival column(s) {missing}", manifest.path)
        event = pd.to_numeric(table[event_col], errors="coerce")
        time = pd.to_numeric(table[time_col], errors="coerce")
        return pd.DataFrame({"event": event, "time": time})
    if target not in table.columns:
        raise InputError(f"the manifest has no column {target!r} to train on", manifest.path)
    return table[target]


def _fit_targets(targets, patients: list, head: str) -> tuple[list, object, list]:
    """Patients with a usable target, their y (structured array or labels) and the others."""
    if head == "cox":
        if not isinstance(targets, pd.DataFrame) or not {"event", "time"} <= set(targets.columns):
            raise InputError(
                "the Cox head needs targets as a DataFrame with 'event' and 'time' columns indexed by patient_id"
            )
        sub = targets.reindex(patients)
        ok = sub["event"].isin([0, 1, True, False]) & np.isfinite(sub["time"].astype(float)) & (sub["time"] >= 0)
        keep = [p for p, k in zip(patients, ok) if k]
        y = np.empty(len(keep), dtype=[("event", bool), ("time", float)])
        y["event"] = sub.loc[keep, "event"].astype(bool).to_numpy()
        y["time"] = sub.loc[keep, "time"].astype(float).to_numpy()
    else:
        sub = targets.reindex(patients)
        keep = [p for p, v in zip(patients, sub) if not pd.isna(v)]
        y = sub.loc[keep].to_numpy()
    dropped = [p for p in patients if p not in set(keep)]
    return keep, y, dropped


def longitudinal_deep_features(
    slabs: SlabDataset,
    targets,
    train_ids,
    apply_ids=None,
    *,
    estimator: DeepFeatureExtractor | None = None,
    timepoints: tuple[str, ...] = TIMEPOINTS,
) -> DeepFeatureTables:
    """Fit one network + PCA per time point on the training patients and tabulate DL_pre, DL_post, DL_longitudinal.

    One network per time point, as the paper extracts "Pre-CT-Features" and "Post-CT-Features"
    separately and reduces each set to 10 components: the pre- and post-treatment tumours
    look different (shrunken, fibrotic after chemoradiotherapy) and a network per time point
    learns what is prognostic in each, with the same seed and settings. DL_longitudinal is
    the concatenation of both sets (20 columns), as in the paper.

    Parameters
    ----------
    slabs : SlabDataset
        From :func:`build_slab_dataset`.
    targets : pandas.DataFrame or pandas.Series
        Indexed by ``patient_id`` (see :func:`manifest_targets`): ``event``/``time`` columns
        for the Cox head, labels for the classification head. Training patients without a
        target are left out of training (listed in ``excluded``) but still get features.
    train_ids : sequence of str
        Patients the networks and PCAs are fitted on.
    apply_ids : sequence of str, optional
        Patients to compute features for (default: every patient with a slab).
    estimator : DeepFeatureExtractor, optional
        Template (cloned per time point with ``prefix="dl_<tp>_pca_"``); default the Cox head.
    timepoints : tuple of str
        Time points to fit.

    Returns
    -------
    DeepFeatureTables
    """
    estimator = DeepFeatureExtractor(head="cox") if estimator is None else estimator
    train_ids = [str(p) for p in train_ids]
    tables, extractors, fitted_on, excluded = {}, {}, {}, []
    for tp in timepoints:
        have = slabs.has(tp)
        train = [p for p in train_ids if p in have]
        excluded += [(p, tp, f"no {tp} slab: not used for training") for p in train_ids if p not in have]
        keep, y, dropped = _fit_targets(targets, train, estimator.head)
        excluded += [(p, tp, "no training target: not used for training") for p in dropped]
        if not keep:
            raise InputError(f"no training patient has a {tp} slab and a target")
        try:
            ext = clone(estimator).set_params(prefix=f"dl_{tp}_pca_").fit(slabs.get(tp, keep), y)
        except InputError as err:
            problem = f"{tp} network on {len(keep)} training patients: {err.problem}"
            raise InputError(problem, err.path, err.patient) from err
        apply = slabs.patient_ids.get(tp, []) if apply_ids is None else [str(p) for p in apply_ids]
        missing = [p for p in apply if p not in have]
        excluded += [(p, tp, f"no {tp} slab: no features") for p in missing]
        apply = [p for p in apply if p in have]
        values = ext.transform(slabs.get(tp, apply)) if apply else np.zeros((0, len(ext.get_feature_names_out())))
        table = pd.DataFrame(values, columns=list(ext.get_feature_names_out()))
        table.insert(0, "patient_id", apply)
        tables[tp] = table
        extractors[tp] = ext
        fitted_on[tp] = keep
    empty = pd.DataFrame(columns=["patient_id"])
    pre, post = tables.get("pre", empty), tables.get("post", empty)
    return DeepFeatureTables(
        dl_pre=pre,
        dl_post=post,
        dl_longitudinal=pre.merge(post, on="patient_id", how="inner"),
        extractors=extractors,
        excluded=pd.DataFrame(excluded, columns=["patient_id", "timepoint", "reason"]),
        train_patients=fitted_on,
    )


def cross_fitted_deep_features(
    manifest,
    folds: pd.DataFrame,
    *,
    slabs: SlabDataset | None = None,
    cache_dir: str | Path | None = None,
    slab_settings: dict | None = None,
    estimator: DeepFeatureExtractor | None = None,
    target: str = "survival",
    timepoints: tuple[str, ...] = TIMEPOINTS,
    keep_models: bool = False,
    progress: bool = True,
) -> DeepFeatureTables:
    """Out-of-fold deep features: each patient's features come from networks and PCAs that never saw it.

    For every fold ``k`` of ``folds`` the networks (one per time point) and their PCAs are
    fitted on the patients outside fold ``k`` (:func:`longitudinal_deep_features`) and
    applied to the patients of fold ``k``; the folds' rows are stacked. Note that the PCA
    axes differ between folds (each fold has its own network), so the out-of-fold columns
    are comparable within a fold only; use them for cross-validated evaluation, and
    :func:`longitudinal_deep_features` on the whole training cohort for a final model applied
    to an external test cohort.

    Parameters
    ----------
    manifest : str, Path or Manifest
        Cohort manifest.
    folds : pandas.DataFrame
        ``patient_id`` and ``fold`` columns (:func:`esoct.train.folds.load_or_make_folds`).
    slabs : SlabDataset, optional
        Precomputed slabs; default :func:`build_slab_dataset` with ``cache_dir``.
    cache_dir : str or Path, optional
        Slab cache (needed when ``slabs`` is not given).
    slab_settings : dict, optional
        Passed to :func:`build_slab_dataset`.
    estimator : DeepFeatureExtractor, optional
        Template; default ``DeepFeatureExtractor(head="cox")``.
    target : str
        ``"survival"`` (os_event, os_months; Cox head) or a manifest column (classification head).
    timepoints : tuple of str
        Time points.
    keep_models : bool
        Keep every fold's fitted extractors in ``extractors`` (memory: ~45 MB per ResNet-18).
    progress : bool
        Progress bars.

    Returns
    -------
    DeepFeatureTables
        Tables with a ``fold`` column after ``patient_id``, rows in manifest order.
    """
    from esoct.io.manifest import Manifest, load_manifest
    from esoct.train.folds import fold_split

    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    if not isinstance(folds, pd.DataFrame) or not {"patient_id", "fold"} <= set(folds.columns):
        raise InputError("folds must be a DataFrame with 'patient_id' and 'fold' columns (see esoct.train.folds)")
    folds = folds.assign(patient_id=folds["patient_id"].astype(str))
    unknown = sorted(set(folds["patient_id"]) - set(map(str, manifest.patients)))
    if unknown:
        raise InputError(f"{len(unknown)} fold patient(s) are not in the manifest, e.g. {unknown[0]!r}", manifest.path)
    if slabs is None:
        if cache_dir is None:
            raise InputError("give either slabs or a cache_dir to build them")
        slabs = build_slab_dataset(
            manifest, cache_dir, timepoints=timepoints, settings=slab_settings, progress=progress
        )
    if estimator is None:
        estimator = DeepFeatureExtractor(head="cox" if target == "survival" else "classification")
    if (target == "survival") != (estimator.head == "cox"):
        raise InputError(f"target {target!r} does not fit the estimator's {estimator.head!r} head")
    targets = manifest_targets(manifest, target)
    parts = {tp: [] for tp in timepoints}
    extractors, fitted_on, excluded = {}, {}, [slabs.failures]
    for k in sorted(folds["fold"].unique()):
        train, test = fold_split(folds, k)
        try:
            tables = longitudinal_deep_features(slabs, targets, train, test, estimator=estimator, timepoints=timepoints)
        except InputError as err:
            raise InputError(f"fold {k}: {err.problem}", err.path, err.patient) from err
        for tp in timepoints:
            part = getattr(tables, f"dl_{tp}")
            part.insert(1, "fold", int(k))
            parts[tp].append(part)
            fitted_on[(int(k), tp)] = tables.train_patients[tp]
            if keep_models:
                extractors[(int(k), tp)] = tables.extractors[tp]
        excluded.append(tables.excluded)
    order = {p: i for i, p in enumerate(map(str, manifest.patients))}
    out = {}
    for tp in timepoints:
        table = pd.concat(parts[tp], ignore_index=True)
        out[tp] = table.sort_values("patient_id", key=lambda s: s.map(order)).reset_index(drop=True)
    empty = pd.DataFrame(columns=["patient_id", "fold"])
    pre, post = out.get("pre", empty), out.get("post", empty)
    return DeepFeatureTables(
        dl_pre=pre,
        dl_post=post,
        dl_longitudinal=pre.merge(post, on=["patient_id", "fold"], how="inner"),
        extractors=extractors,
        train_patients=fitted_on,
        excluded=pd.concat([e for e in excluded if len(e)] or [excluded[0]], ignore_index=True).drop_duplicates(
            ignore_index=True
        ),
    )
