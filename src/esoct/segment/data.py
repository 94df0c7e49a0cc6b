"""Training data for the segmentation network: preprocessing, cases, foreground-biased patches, augmentation.

* :class:`Preprocessing` -- resample to the training spacing and clip + z-score the CT with
  the plan's constants (the same object is stored in the checkpoint and used at inference).
* :func:`load_case` / :func:`load_cases` -- read a patient's CT and label map from a manifest,
  check them, preprocess them.
* :class:`Augmentation` -- nnU-Net's augmentation parameters, built into MONAI dictionary transforms.
* :class:`PatchDataset` -- a ``torch.utils.data.Dataset`` of random patches; a third of them
  (``foreground_fraction``) centred on a voxel of a randomly chosen foreground class present in
  the case, as nnU-Net's oversampling. Every sample is a pure function of
  ``(seed, epoch, index)``, so a resumed run draws the same patches.

Arrays are ``(z, y, x)``; patches are tensors ``(C, Z, Y, X)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from esoct.errors import InputError
from esoct.io.volume import Volume

DEFAULT_N_CLASSES = 6
LOCATIONS_PER_CLASS = 10000


# -- preprocessing -----------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """Resampling and CT normalisation of the segmentation network (nnU-Net's "CT" scheme).

    Parameters
    ----------
    spacing_zyx : tuple of 3 float
        Target voxel size, mm, ``(z, y, x)`` (the plan's median spacing).
    clip_low, clip_high : float
        HU bounds (the plan's 0.5 and 99.5 foreground percentiles).
    mean, std : float
        HU mean and standard deviation of the foreground, for the z-score.
    """

    spacing_zyx: tuple
    clip_low: float
    clip_high: float
    mean: float
    std: float

    def __post_init__(self):
        spacing = tuple(float(s) for s in self.spacing_zyx)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise InputError(f"spacing_zyx must be three positive numbers (z, y, x) in mm, got {self.spacing_zyx}")
        if not self.clip_low < self.clip_high:
            raise InputError(f"clip_low must be below clip_high, got [{self.clip_low}, {self.clip_high}] HU")
        if not self.std > 0:
            raise InputError(f"normalisation std must be positive, got {self.std} HU")
        object.__setattr__(self, "spacing_zyx", spacing)
        for name in ("clip_low", "clip_high", "mean", "std"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_plan(cls, plan) -> "Preprocessing":
        """From an :class:`esoct.segment.plan.Plan` (``target_spacing`` and ``normalization``)."""
        n = plan.normalization
        return cls(tuple(plan.target_spacing), n["clip_low"], n["clip_high"], n["mean"], n["std"])

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["spacing_zyx"]), d["clip_low"], d["clip_high"], d["mean"], d["std"])

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        d = asdict(self)
        d["spacing_zyx"] = list(self.spacing_zyx)
        return d

    @property
    def background(self) -> float:
        """Normalised value of ``clip_low`` (used to pad images)."""
        return (self.clip_low - self.mean) / self.std

    def normalise(self, array: np.ndarray) -> np.ndarray:
        """Clip to ``[clip_low, clip_high]`` HU and z-score; float32, same shape."""
        a = np.clip(np.asarray(array, dtype=np.float32), self.clip_low, self.clip_high)
        return ((a - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32, copy=False)

    def image(self, volume: Volume) -> Volume:
        """CT (HU) -> resampled (3rd-order B-spline) and normalised float32 Volume at ``spacing_zyx``."""
        from esoct.preprocess.resample import resample

        if not np.allclose(volume.spacing, self.spacing_zyx, atol=1e-4):
            volume = resample(volume, self.spacing_zyx)
        return volume.with_array(self.normalise(volume.array))

    def labels(self, labels: Volume) -> Volume:
        """Label map -> resampled (nearest neighbour) uint8 Volume at ``spacing_zyx``."""
        from esoct.preprocess.resample import resample

        labels = labels.with_array(labels.array.astype(np.uint8))
        if not np.allclose(labels.spacing, self.spacing_zyx, atol=1e-4):
            labels = resample(labels, self.spacing_zyx, is_label=True)
        return labels


# -- cases -------------------------------------------------------------------------------
@dataclass
class Case:
    """One preprocessed training case.

    Attributes
    ----------
    patient_id : str
    image : Volume
        Normalised CT at the training spacing, float32 ``(z, y, x)``.
    labels : Volume
        Label map on the same grid, uint8.
    extra : numpy.ndarray or None
        Extra input channels ``(K, z, y, x)`` on the same grid (the cascade's stage-1 softmax).
    """

    patient_id: str
    image: Volume
    labels: Volume
    extra: np.ndarray | None = None


def check_label_map(labels: np.ndarray, n_classes: int, path=None, patient: str | None = None) -> None:
    """Raise :class:`InputError` unless ``labels`` holds integers in ``0..n_classes - 1``."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(f"label map holds non-integer values; expected class numbers 0..{n_classes - 1}", path, patient)
    values = np.unique(arr)
    bad = [v for v in values.tolist() if not 0 <= v < n_classes]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:10])
        raise InputError(f"label map holds unexpected labels {shown}; expected class numbers 0..{n_classes - 1}", path, patient)


def load_case(
    manifest,
    patient_id: str,
    preprocessing: Preprocessing,
    *,
    n_classes: int = DEFAULT_N_CLASSES,
    image_column: str = "image_pre",
    mask_column: str = "mask_pre",
) -> Case:
    """Read, check and preprocess one patient's CT and label map.

    Parameters
    ----------
    manifest : esoct.io.manifest.Manifest
        The cohort.
    patient_id : str
        Row to read.
    preprocessing : Preprocessing
        Spacing and normalisation.
    n_classes : int
        Labels must be in ``0..n_classes - 1``.
    image_column, mask_column : str
        Manifest columns.

    Returns
    -------
    Case

    Raises
    ------
    InputError
        Missing cell or file, unreadable file, a mask on another grid than its image,
        or unexpected labels -- naming the patient and the file.
    """
    from esoct.io.imageio import read_image

    pid = str(patient_id)
    paths = {}
    for column in (image_column, mask_column):
        path = manifest.resolve(pid, column)
        if path is None:
            raise InputError(f"manifest cell {column} is empty", manifest.path, pid)
        paths[column] = path
    image = read_image(paths[image_column], patient=pid)
    labels = read_image(paths[mask_column], patient=pid)
    differences = image.geometry_differences(labels)
    if differences:
        raise InputError(f"mask grid differs from {image_column} (mask vs image): " + "; ".join(differences), paths[mask_column], pid)
    check_label_map(labels.array, n_classes, paths[mask_column], pid)
    return Case(pid, preprocessing.image(image), preprocessing.labels(labels))


def load_cases(
    manifest,
    patients: Sequence[str],
    preprocessing: Preprocessing,
    *,
    n_classes: int = DEFAULT_N_CLASSES,
    image_column: str = "image_pre",
    mask_column: str = "mask_pre",
    progress: bool = True,
) -> tuple[list[Case], dict]:
    """Load several patients with :func:`load_case`, keeping going past bad ones.

    Returns
    -------
    cases : list of Case
        In the order of ``patients``, failed ones left out.
    failures : dict
        ``{patient_id: reason}``.

    Raises
    ------
    InputError
        When no patient could be loaded.
    """
    from esoct.study.runner import run_per_patient

    run = run_per_patient(
        patients,
        lambda pid: load_case(manifest, pid, preprocessing, n_classes=n_classes, image_column=image_column, mask_column=mask_column),
        desc="loading cases",
        progress=progress,
    )
    cases = [run.results[p] for p in patients if p in run.results]
    if not cases:
        reasons = "; ".join(run.failures.values())[:500]
        raise InputError(f"no training case could be loaded ({len(run.failures)} failed): {reasons}", manifest.path)
    return cases, run.failures


# -- augmentation ------------------------------------------------------------------------
@dataclass(frozen=True)
class Augmentation:
    """nnU-Net's default augmentation (Isensee et al. 2021), as MONAI dictionary transforms.

    Probabilities are per patch; ranges follow nnU-Net v2's 3D defaults.

    Parameters
    ----------
    p_rotation : float
        Rotation probability; angles uniform in ``+-rotation_deg`` about the (z, y, x) axes.
        For thick-slice data set ``rotation_deg=(30, 0, 0)`` (in-plane only, nnU-Net's 2D-style rule).
    p_scaling : float
        Zoom probability; factor uniform in ``scaling``.
    p_noise, noise_std : Gaussian noise, SD uniform in ``[0, noise_std]`` (normalised units).
    p_blur, blur_sigma : Gaussian blur, sigma (voxels) uniform in ``blur_sigma`` per axis.
    p_brightness, brightness : multiplicative brightness, factor uniform in ``brightness``.
    p_contrast, contrast : contrast around the mean, factor in ``1 +- contrast``, range preserved.
    p_gamma, gamma : gamma correction with statistics retained; ``p_gamma_inverted`` on the inverted image.
    p_mirror, mirror_axes : flip each of these axes (0 = z, 1 = y, 2 = x) with ``p_mirror``.
    """

    p_rotation: float = 0.2
    rotation_deg: tuple = (30.0, 30.0, 30.0)
    p_scaling: float = 0.2
    scaling: tuple = (0.7, 1.4)
    p_noise: float = 0.1
    noise_std: float = 0.1
    p_blur: float = 0.2
    blur_sigma: tuple = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: tuple = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: float = 0.25
    p_gamma: float = 0.3
    p_gamma_inverted: float = 0.1
    gamma: tuple = (0.7, 1.5)
    p_mirror: float = 0.5
    mirror_axes: tuple = (0, 1, 2)

    @classmethod
    def off(cls) -> "Augmentation":
        """No augmentation at all."""
        return cls(p_rotation=0, p_scaling=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0, p_gamma=0, p_gamma_inverted=0, p_mirror=0)

    def margin(self, patch_size: Sequence[int]) -> tuple[int, int, int]:
        """Extra voxels per side cropped around a patch so that rotation and zoom-out rarely see padding."""
        if self.p_rotation <= 0 and self.p_scaling <= 0:
            return (0, 0, 0)
        return tuple(int(math.ceil(p * 0.25)) for p in patch_size)

    def build(self, patch_size: Sequence[int], has_extra: bool = False):
        """The MONAI ``Compose`` for keys ``image`` (and ``extra``) and ``label``; output spatial size ``patch_size``."""
        from monai.transforms import (
            Compose,
            RandAdjustContrastd,
            RandAffined,
            RandFlipd,
            RandGaussianNoised,
            RandGaussianSmoothd,
            RandScaleIntensityd,
            RandScaleIntensityFixedMeand,
        )

        spatial = ["image", "label"] + (["extra"] if has_extra else [])
        modes = ["bilinear", "nearest"] + (["bilinear"] if has_extra else [])
        pads = ["border", "zeros"] + (["zeros"] if has_extra else [])
        rad = tuple(math.radians(float(a)) for a in self.rotation_deg)
        lo, hi = self.scaling
        t = [
            # always run: it also cuts the patch out of the larger crop (identity when not triggered)
            RandAffined(spatial, spatial_size=tuple(patch_size), prob=self.p_rotation, rotate_range=rad, mode=modes, padding_mode=pads),
            RandAffined(spatial, prob=self.p_scaling, scale_range=[(lo - 1.0, hi - 1.0)] * 3, mode=modes, padding_mode=pads),
            RandGaussianNoised("image", prob=self.p_noise, std=self.noise_std),
            RandGaussianSmoothd("image", sigma_x=self.blur_sigma, sigma_y=self.blur_sigma, sigma_z=self.blur_sigma, prob=self.p_blur),
            RandScaleIntensityd("image", factors=(self.brightness[0] - 1.0, self.brightness[1] - 1.0), prob=self.p_brightness),
            RandScaleIntensityFixedMeand("image", factors=self.contrast, preserve_range=True, prob=self.p_contrast),
            RandAdjustContrastd("image", gamma=self.gamma, invert_image=True, retain_stats=True, prob=self.p_gamma_inverted),
            RandAdjustContrastd("image", gamma=self.gamma, retain_stats=True, prob=self.p_gamma),
        ]
        t += [RandFlipd(spatial, prob=self.p_mirror, spatial_axis=int(a)) for a in self.mirror_axes]
        return Compose(t)


def _plain(x) -> torch.Tensor:
    """A plain tensor from a numpy array, tensor or MONAI MetaTensor (no metadata travels on)."""
    if isinstance(x, torch.Tensor):
        return x.as_tensor() if hasattr(x, "as_tensor") else x
    return torch.as_tensor(np.asarray(x))


# -- patches -----------------------------------------------------------------------------
def crop_padded(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """Cut ``size`` voxels from ``start`` out of the last three axes, padding outside with ``fill``."""
    lead = array.shape[:-3]
    out = np.full(lead + tuple(int(s) for s in size), fill, dtype=array.dtype)
    spatial = np.asarray(array.shape[-3:])
    start = np.asarray(start, dtype=int)
    size = np.asarray(size, dtype=int)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, spatial)
    if np.all(hi > lo):
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        src = tuple(slice(a, b) for a, b in zip(lo, hi))
        out[(Ellipsis,) + dst] = array[(Ellipsis,) + src]
    return out


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches from preprocessed cases, nnU-Net style.

    Parameters
    ----------
    cases : list of Case
        Preprocessed cases (:func:`load_cases`).
    patch_size : tuple of 3 int
        Patch ``(z, y, x)`` in voxels at the training spacing.
    samples_per_epoch : int
        ``len(dataset)``: iterations per epoch times batch size.
    foreground_fraction : float
        Share of patches centred on a foreground voxel (nnU-Net: 0.33). The class is drawn
        uniformly among the foreground classes present, then a voxel of that class.
    augmentation : Augmentation or None
        None or :meth:`Augmentation.off` for none.
    background : float
        Image value used to pad outside the volume (``Preprocessing.background``).
    seed : int
        Sample ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.
    class_weights : dict, optional
        Label -> relative weight of drawing that class for a foreground patch (absent labels
        weigh 1); e.g. ``{1: 4}`` centres foreground patches on the tumour four times as often as
        on each organ. Default: uniform over the classes present.

    Notes
    -----
    Items are dicts: ``"image"`` float32 ``(1 + K, Z, Y, X)`` (CT plus the K extra channels),
    ``"label"`` int64 ``(1, Z, Y, X)``, ``"patient_id"`` str, ``"foreground"`` bool.
    """

    def __init__(
        self,
        cases: list[Case],
        patch_size: Sequence[int],
        samples_per_epoch: int,
        *,
        foreground_fraction: float = 1.0 / 3.0,
        augmentation: Augmentation | None = None,
        background: float = 0.0,
        seed: int = 0,
        class_weights: dict | None = None,
    ):
        if not cases:
            raise InputError("PatchDataset needs at least one case")
        if class_weights is not None and (not class_weights or min(float(w) for w in class_weights.values()) <= 0):
            raise InputError(f"class_weights must map labels to positive draw weights, got {class_weights!r}")
        self.class_weights = None if class_weights is None else {int(k): float(v) for k, v in class_weights.items()}
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise InputError(f"patch_size must be three positive ints (z, y, x), got {patch_size}")
        extras = {None if c.extra is None else c.extra.shape[0] for c in self.cases}
        if len(extras) != 1:
            raise InputError("either every case has extra channels (same number) or none does")
        self.n_extra = extras.pop() or 0
        self.samples_per_epoch = int(samples_per_epoch)
        self.foreground_fraction = float(foreground_fraction)
        self.augmentation = augmentation
        self.background = float(background)
        self.seed = int(seed)
        self.epoch = 0
        self._locations = [self._class_locations(c, k) for k, c in enumerate(self.cases)]
        active = augmentation is not None and augmentation != Augmentation.off()
        self._transform = augmentation.build(self.patch_size, self.n_extra > 0) if active else None
        self._margin = augmentation.margin(self.patch_size) if active else (0, 0, 0)

    def _class_locations(self, case: Case, k: int) -> dict:
        """Up to ``LOCATIONS_PER_CLASS`` voxel indices of each foreground class (seeded subsample)."""
        rng = np.random.default_rng([self.seed, 7, k])
        out = {}
        lab = case.labels.array
        for c in np.unique(lab):
            if c == 0:
                continue
            idx = np.argwhere(lab == c)
            if len(idx) > LOCATIONS_PER_CLASS:
                idx = idx[rng.choice(len(idx), LOCATIONS_PER_CLASS, replace=False)]
            out[int(c)] = idx
        return out

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patches are drawn (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _start(self, shape, size, rng, centre=None) -> np.ndarray:
        """Box start: random, or around ``centre``; boxes stay inside unless the volume is smaller."""
        shape, size = np.asarray(shape), np.asarray(size)
        lo = np.minimum(0, shape - size)
        hi = np.maximum(0, shape - size)
        if centre is None:
            return np.array([rng.integers(a, b + 1) for a, b in zip(lo, hi)])
        return np.clip(np.asarray(centre) - size // 2, lo, hi)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        k = int(rng.integers(len(self.cases)))
        case = self.cases[k]
        locations = self._locations[k]
        foreground = bool(rng.random() < self.foreground_fraction) and bool(locations)
        centre = None
        if foreground:
            classes = sorted(locations)
            if self.class_weights is None:
                cls = classes[int(rng.integers(len(classes)))]
            else:
                w = np.array([self.class_weights.get(c, 1.0) for c in classes])
                cls = classes[int(rng.choice(len(classes), p=w / w.sum()))]
            centre = locations[cls][int(rng.integers(len(locations[cls])))]
        size = np.asarray(self.patch_size) + 2 * np.asarray(self._margin)
        start = self._start(case.image.shape, self.patch_size, rng, centre) - np.asarray(self._margin)
        data = {
            "image": crop_padded(case.image.array[None], start, size, self.background),
            "label": crop_padded(case.labels.array[None], start, size, 0),
        }
        if case.extra is not None:
            data["extra"] = crop_padded(case.extra.astype(np.float32, copy=False), start, size, 0.0)
        if self._transform is not None:
            self._transform.set_random_state(seed=int(rng.integers(2**31 - 1)))
            data = self._transform(data)
        image = _plain(data["image"]).float()
        if case.extra is not None:
            image = torch.cat([image, _plain(data["extra"]).float()], dim=0)
        label = _plain(data["label"]).round().long()
        return {"image": image.contiguous(), "label": label.contiguous(), "patient_id": case.patient_id, "foreground": foreground}
