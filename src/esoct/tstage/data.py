"""ROI slice sequences for T-staging: labels, loading with checks, seeded augmentation, padding collate.

A sequence is an array ``(S, H, W)`` float32 in [0, 1] (HU clipped to [-145, 225], min-max), one
square tumour ROI per tumour slice, ordered head to foot, as
:func:`esoct.preprocess.roi.pipelines.resolstm_inputs` makes it and
:func:`esoct.study.roi_extraction.extract_cohort_rois` caches it (``<id>_<tp>_slices.npz``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from esoct.errors import InputError

#: Class names of each labelling scheme, in class-index order.
CLASS_SCHEMES = {"binary": ("T1-2", "T3-4"), "four": ("T1", "T2", "T3", "T4")}

#: Fewest slices a sequence may have (an LSTM over one slice is no sequence).
MIN_SLICES = 2


def t_stage_label(pT, scheme: str = "binary", patient: str | None = None) -> int:
    """Class index of a pathological T stage.

    Parameters
    ----------
    pT : str or int
        ``"T1"`` .. ``"T4"`` (sub-stages such as ``"T1b"``, ``"T4a"`` accepted) or 1..4.
    scheme : {"binary", "four"}
        ``"binary"``: T1-2 -> 0, T3-4 -> 1 (the paper); ``"four"``: T1..T4 -> 0..3.
    patient : str, optional
        Named in the error.

    Returns
    -------
    int
    """
    if scheme not in CLASS_SCHEMES:
        raise InputError(f"unknown class scheme {scheme!r}; choose from {sorted(CLASS_SCHEMES)}")
    text = str(pT).strip().upper()
    digit = text[1:2] if text.startswith("T") else text[:1]
    if digit not in ("1", "2", "3", "4"):
        raise InputError(f"pT must be T1..T4, got {pT!r}", patient=patient)
    stage = int(digit)
    return int(stage >= 3) if scheme == "binary" else stage - 1


def orient_head_to_foot(images: np.ndarray, z_mm, patient: str | None = None, path=None) -> tuple[np.ndarray, bool]:
    """Put a slice sequence in head-to-foot order, checked from the slices' physical z.

    The ROI pipeline orders slices by decreasing LPS z (superior first; the array z index may
    run either way, the direction matrix decides, see
    :func:`esoct.preprocess.roi.sequence.slice_sequence`). A sequence whose ``z_mm`` strictly
    increases (foot to head) is reversed; one that is not strictly monotonic (repeated or
    shuffled slices) is refused.

    Parameters
    ----------
    images : numpy.ndarray, (S, H, W)
        The ROIs.
    z_mm : array-like of float, (S,)
        Physical LPS z of each ROI centre, mm (superior is larger).
    patient, path
        Named in errors.

    Returns
    -------
    images : numpy.ndarray, (S, H, W)
        Head to foot.
    reversed : bool
        Whether the input was foot to head.
    """
    z = np.asarray(z_mm, dtype=float).ravel()
    if len(z) != len(images):
        raise InputError(f"{len(images)} slices but {len(z)} z positions", path, patient)
    if len(z) < 2:
        return images, False
    step = np.diff(z)
    if (step < 0).all():
        return images, False
    if (step > 0).all():
        return images[::-1].copy(), True
    raise InputError("slice z positions are not strictly monotonic (repeated or unordered slices); "
                     "cannot order the sequence head to foot", path, patient)


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    """``(S, H, W)`` -> ``(S, size, size)`` by bilinear interpolation with antialiasing."""
    if size is None or images.shape[-2:] == (size, size):
        return np.ascontiguousarray(images, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].numpy()


@dataclass
class SequenceSet:
    """Checked ROI sequences of a cohort, one per patient.

    Attributes
    ----------
    patient_ids : list of str
    labels : numpy.ndarray, (P,) int
        Class indices (``class_names[label]``).
    images : list of numpy.ndarray, each (S_i, H, W) float32 in [0, 1]
        Head to foot, ``S_i >= 2``.
    class_names : tuple of str
    failures : dict
        ``patient_id -> reason`` for the patients left out (fewer than 2 slices, missing file,
        bad pT...). Kept with the results.
    reversed : list of str
        Patients whose stored sequence was foot to head and was reversed.
    """

    patient_ids: list
    labels: np.ndarray
    images: list
    class_names: tuple
    failures: dict = field(default_factory=dict)
    reversed: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.patient_ids)

    def subset(self, patient_ids: Sequence[str]) -> "SequenceSet":
        """The set restricted to ``patient_ids`` (in that order); failures are kept."""
        index = {p: i for i, p in enumerate(self.patient_ids)}
        missing = [p for p in patient_ids if p not in index]
        if missing:
            raise InputError(f"patients not in the sequence set: {missing[:5]}")
        idx = [index[p] for p in patient_ids]
        return SequenceSet([self.patient_ids[i] for i in idx], self.labels[idx], [self.images[i] for i in idx],
                           self.class_names, dict(self.failures), [p for p in self.reversed if p in set(patient_ids)])

    @property
    def n_slices(self) -> np.ndarray:
        """Slices per patient, ``(P,)``."""
        return np.array([len(im) for im in self.images], dtype=int)


def make_sequence_set(
    patient_ids: Sequence[str],
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    z_mm: Sequence | None = None,
    class_names: Sequence[str] = CLASS_SCHEMES["binary"],
    size: int | None = None,
    on_error: str = "record",
) -> SequenceSet:
    """Build a :class:`SequenceSet` from arrays, with the same checks as :func:`load_roi_sequences`.

    Parameters
    ----------
    patient_ids : sequence of str
    images : sequence of numpy.ndarray, each (S_i, H, W)
        Values in [0, 1]; resized to ``size`` x ``size`` when ``size`` is given.
    labels : sequence of int
        Class indices.
    z_mm : sequence of array-like, optional
        Physical z of each patient's slices (mm); when given, order is checked and foot-to-head
        sequences reversed (:func:`orient_head_to_foot`).
    class_names : sequence of str
    size : int, optional
        Output side in pixels.
    on_error : {"record", "raise"}
        A patient that fails a check (fewer than 2 slices, non-monotonic z, bad label...) is
        recorded in ``failures`` and left out, or raises :class:`~esoct.errors.InputError`.

    Returns
    -------
    SequenceSet
    """
    if on_error not in ("record", "raise"):
        raise InputError(f"on_error must be 'record' or 'raise', got {on_error!r}")
    if not (len(patient_ids) == len(images) == len(labels)):
        raise InputError(f"{len(patient_ids)} patients, {len(images)} sequences and {len(labels)} labels")
    ids, labs, ims, failures, rev = [], [], [], {}, []
    for i, (pid, im, lab) in enumerate(zip(patient_ids, images, labels)):
        pid = str(pid)
        try:
            im = _check_sequence(np.asarray(im), pid, None)
            if z_mm is not None:
                im, flipped = orient_head_to_foot(im, z_mm[i], pid)
                if flipped:
                    rev.append(pid)
            if not 0 <= int(lab) < len(class_names):
                raise InputError(f"label {lab} is not a class index of {tuple(class_names)}", patient=pid)
        except InputError as exc:
            if on_error == "raise":
                raise
            failures[pid] = str(exc)
            continue
        ids.append(pid)
        labs.append(int(lab))
        ims.append(_resize(im, size))
    return SequenceSet(ids, np.array(labs, dtype=int), ims, tuple(class_names), failures, rev)


def _check_sequence(images: np.ndarray, patient: str, path) -> np.ndarray:
    if images.ndim != 3:
        raise InputError(f"ROI sequence must be (slices, rows, columns), got shape {images.shape}", path, patient)
    if len(images) < MIN_SLICES:
        raise InputError(f"ROI sequence has {len(images)} slice(s); ResoLSTM-Depth needs at least {MIN_SLICES} "
                         "(tumour visible on one slice only?)", path, patient)
    if not np.isfinite(images).all():
        raise InputError("ROI sequence has NaN or infinite values", path, patient)
    return images


def load_roi_sequences(
    roi_dir: str | Path,
    pT: Mapping[str, object],
    *,
    scheme: str = "binary",
    timepoint: str = "pre",
    size: int | None = None,
    failures: Mapping[str, str] | None = None,
    on_error: str = "record",
) -> SequenceSet:
    """Load cached ROI sequences (``<roi_dir>/<id>_<tp>_slices.npz``) with their T-stage labels.

    Every patient is checked: the file exists and is readable, ``images`` is ``(S, H, W)`` with
    ``S >= 2``, slices are ordered head to foot by their ``z_mm`` (reversed when foot to head,
    refused when not monotonic), pT is T1..T4. A patient that fails a check is left out and its
    reason recorded in ``failures`` (``on_error="raise"`` raises instead); a patient already in
    the ROI extraction's ``failures`` (e.g. a missing or empty mask) is recorded with that reason.

    Parameters
    ----------
    roi_dir : str or Path
        Output folder of :func:`esoct.study.roi_extraction.extract_cohort_rois`.
    pT : mapping of str to str
        Patient id -> pathological T stage (the manifest's ``pT`` column).
    scheme : {"binary", "four"}
        See :func:`t_stage_label`.
    timepoint : str
        ``"pre"`` (baseline CT) or ``"post"``.
    size : int, optional
        Resize the ROIs to ``size`` x ``size`` pixels (bilinear, antialiased); None keeps 224.
    failures : mapping, optional
        Known failures (``patient_id -> reason``), e.g. read from the extraction's ``failures.csv``
        (read automatically when present in ``roi_dir``).
    on_error : {"record", "raise"}

    Returns
    -------
    SequenceSet
    """
    roi_dir = Path(roi_dir)
    known = dict(failures or {})
    fcsv = roi_dir / "failures.csv"
    if fcsv.is_file():
        import pandas as pd

        table = pd.read_csv(fcsv, dtype=str)
        known.update({str(p): str(r) for p, r in zip(table.get("patient_id", []), table.get("reason", []))})
    ids, labs, ims, bad, rev = [], [], [], {}, []
    for pid, stage in pT.items():
        pid = str(pid)
        path = roi_dir / f"{pid}_{timepoint}_slices.npz"
        try:
            if pid in known and not path.is_file():
                raise InputError(f"no ROI sequence (ROI extraction failed: {known[pid]})", path, pid)
            if not path.is_file():
                raise InputError("no ROI sequence file (run the ROI extraction; missing image or mask?)", path, pid)
            label = t_stage_label(stage, scheme, pid)
            try:
                with np.load(path) as npz:
                    im, z = npz["images"], npz["z_mm"]
            except Exception as exc:  # noqa: BLE001 - unreadable cache file
                raise InputError(f"cannot read ROI sequence ({type(exc).__name__}: {exc})", path, pid) from exc
            im = _check_sequence(im, pid, path)
            im, flipped = orient_head_to_foot(im, z, pid, path)
        except InputError as exc:
            if on_error == "raise":
                raise
            bad[pid] = str(exc)
            continue
        if flipped:
            rev.append(pid)
        ids.append(pid)
        labs.append(label)
        ims.append(_resize(im, size))
    return SequenceSet(ids, np.array(labs, dtype=int), ims, CLASS_SCHEMES[scheme], bad, rev)


# --------------------------------------------------------------------------- augmentation


def _item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, item): augmentation is reproducible and
    independent of batch order, worker count and interruptions."""
    gen = torch.Generator()
    gen.manual_seed((int(seed) * 1_000_003 + int(epoch) * 10_007 + int(index)) % (2**63 - 1))
    return gen


def augment_sequence(x: torch.Tensor, generator: torch.Generator, rotate_deg: float = 15.0, flip: bool = True) -> torch.Tensor:
    """Random rotation and flips, the same for every slice of one patient.

    Parameters
    ----------
    x : torch.Tensor, (S, C, H, W)
        One sequence.
    generator : torch.Generator
        Source of randomness.
    rotate_deg : float
        Rotation angle drawn uniformly in ``[-rotate_deg, rotate_deg]`` degrees, about the image
        centre, bilinear, zero (the bottom of the HU window) outside.
    flip : bool
        Left-right and up-down flips, each with probability 0.5.

    Returns
    -------
    torch.Tensor, (S, C, H, W)
    """
    u = torch.rand(3, generator=generator)
    if flip and u[1] < 0.5:
        x = x.flip(-1)
    if flip and u[2] < 0.5:
        x = x.flip(-2)
    if rotate_deg > 0:
        a = math.radians(float((2 * u[0] - 1) * rotate_deg))
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


class SequenceDataset(Dataset):
    """A :class:`SequenceSet` as a torch dataset, with seeded augmentation.

    Item ``i``: ``{"x": (S_i, 1, H, W) float32, "y": int, "length": S_i, "patient_id": str}``.
    Augmentation for item ``i`` in epoch ``e`` is drawn from a generator seeded by
    ``(seed, e, i)`` (:meth:`set_epoch`), so an epoch is the same however it is batched or resumed.

    Parameters
    ----------
    sequences : SequenceSet
    augment : bool
        Apply :func:`augment_sequence`.
    rotate_deg : float
    flip : bool
    seed : int
    """

    def __init__(self, sequences: SequenceSet, augment: bool = False, rotate_deg: float = 15.0,
                 flip: bool = True, seed: int = 0):
        self.sequences = sequences
        self.augment = augment
        self.rotate_deg = rotate_deg
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        x = torch.from_numpy(self.sequences.images[i])[:, None]
        if self.augment:
            x = augment_sequence(x, _item_generator(self.seed, self.epoch, i), self.rotate_deg, self.flip)
        return {"x": x, "y": int(self.sequences.labels[i]), "length": x.shape[0],
                "patient_id": self.sequences.patient_ids[i]}


def pad_collate(batch: list[dict]) -> dict:
    """Stack sequences of different lengths: zero padding after the last slice.

    Returns
    -------
    dict
        ``x`` (N, S_max, C, H, W) float32, ``lengths`` (N,) int64, ``y`` (N,) int64,
        ``patient_id`` list of str.
    """
    lengths = torch.tensor([b["length"] for b in batch], dtype=torch.int64)
    first = batch[0]["x"]
    x = first.new_zeros((len(batch), int(lengths.max()), *first.shape[1:]))
    for i, b in enumerate(batch):
        x[i, : b["length"]] = b["x"]
    return {"x": x, "lengths": lengths, "y": torch.tensor([b["y"] for b in batch], dtype=torch.int64),
            "patient_id": [b["patient_id"] for b in batch]}
