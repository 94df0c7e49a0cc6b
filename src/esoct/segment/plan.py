"""nnU-Net-style dataset fingerprint and training plan for nn-TransEC, as JSON files a person can read and edit.

A :class:`Fingerprint` summarises a training cohort (what nnU-Net calls the data fingerprint,
extended by nn-TransEC with tumour box sizes and T-stage counts); :func:`make_plan` turns it into
a :class:`Plan` by the rules below. Both save to and load from JSON; an edited plan loads back,
and a key that is not a field is refused with a message naming it.

Plan rules (our own code, after nnU-Net v2's ``ExperimentPlanner`` and nn-TransEC section 3.3)
---------------------------------------------------------------------------------------------
1. **Target spacing**: the per-axis median of the cases' spacings. Anisotropy rule (nnU-Net):
   when the coarsest median axis is more than ``anisotropy_threshold`` (3) times the next
   coarsest *and* that axis has fewer than 1/3 as many voxels (median shape) as the smallest
   other axis, its target becomes the 10th percentile of the cases' spacings on that axis
   (never finer than the other axes' target), so thin-slice scans are not blurred by the
   resampling of a few thick-slice ones. ``Plan.anisotropic_axis`` records the axis (or None).
2. **Median shape**: the per-axis median of ``shape * spacing / target_spacing``, rounded.
3. **Topology** for a patch: repeatedly halve every axis that (a) has at least
   ``2 * min_edge`` = 8 voxels and (b) whose current spacing is less than twice the smallest
   current spacing among such axes (a lone axis needs ``3 * min_edge`` voxels); stop when none
   is left. Each round is a stage with stride 2 on the pooled axes and 1 elsewhere; the first
   stage has stride 1. Convolution kernels are 3 on axes within twice the finest current
   spacing (once 3, always 3), else 1; the bottleneck kernel is 3. The patch is then padded up to
   a multiple of ``2 ** n_pool`` per axis. Features per stage: ``base_features * 2 ** s``
   capped at ``max_features`` (32 doubling to 320).
4. **Patch and batch size**: the first patch has the aspect ratio of ``1 / target_spacing`` and
   the voxel count of 256^3, clipped to the median shape. While the activation memory of
   ``min_batch_size`` patches exceeds ``memory_budget_mb``, the axis whose patch is largest
   relative to the median shape shrinks by its divisibility step and the topology is redone.
   Batch size = ``floor(budget / memory of one patch)``, capped so one batch covers at most
   ``max_dataset_fraction`` (5 %) of the cohort's voxels, never below ``min_batch_size`` (2).
   Activation memory (:func:`estimate_activation_bytes`) of one patch:
   ``bytes_per_activation * ACTIVATIONS_PER_FEATURE_VOXEL * sum_s(prod(patch / 2**pool_s) * features_s)``
   with ``ACTIVATIONS_PER_FEATURE_VOXEL = 10``: per stage, two encoder and two decoder
   convolutions each keep their convolution and normalisation outputs for the backward pass
   (8) plus the skip concatenation of the decoder (2). With 2 bytes (mixed precision) it is an
   estimate of what the activations take, not of the CUDA context or the weights: leave headroom
   in the budget for those.
5. **KRT crop size** (z, y, x voxels): the 95th percentile over cases of the tumour (label 1)
   bounding-box extent in mm, plus ``krt_margin_mm`` on both sides, divided by the target
   spacing, rounded up to a multiple of ``2 ** n_pool`` per axis so that the classification
   encoder (the segmentation encoder's topology) divides it exactly. The paper's box is
   128 x 64 x 64 (``KRT_REFERENCE_SIZE``); the paper derives its box from the tumour shapes too.
6. **Intensity normalisation** (CT, nnU-Net's ``CTNormalization``): clip to the 0.5 and 99.5
   percentiles of the foreground (label > 0) intensities, then z-score with the foreground
   mean and SD (computed before clipping, as nnU-Net does).
7. **Classification loss weights** alpha_2 (nn-TransEC eq. 4) from the T-stage counts.
   ``alpha_rule="rank_reversed"`` (default): the stage with the k-th largest share of patients
   gets the k-th smallest share as its weight (ties share the mean), so the weights sum to 1 and
   fall as the share rises. The paper states only that alpha_2 is "negatively correlated with the
   percentages" and gives [0.20, 0.16, 0.10, 0.54] for 169 patients whose largest and smallest
   stage shares are 54.44 % and 10.06 %; counts T1..T4 = 27, 33, 92, 17 (consistent with those
   shares) give exactly those weights under this rule, and no other simple rule we tried does.
   ``alpha_rule="inverse_frequency"``: ``(1 / n_t) / sum(1 / n_t)``. Stages with no patient get
   weight 0 under both rules. ``gamma_2 = 2`` (Lin et al. 2017), as in the paper.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from esoct.errors import InputError

#: nnU-Net dataset.json-style label map of nn-TransEC.
LABELS: dict[str, int] = {"background": 0, "tumour": 1, "aorta": 2, "esophagus": 3, "lymph_node": 4, "pericardium": 5}

#: T stages of the classification target.
T_STAGES: tuple[str, ...] = ("T1", "T2", "T3", "T4")

#: nn-TransEC's KRT box (z, y, x voxels), "pre-defined by heuristic rules" in the paper.
KRT_REFERENCE_SIZE: tuple[int, int, int] = (128, 64, 64)

#: Stored activation values per feature-map voxel and feature of one stage (see rule 4).
ACTIVATIONS_PER_FEATURE_VOXEL = 10

_FINGERPRINT_FORMAT = "esoct-fingerprint-1"
_PLAN_FORMAT = "esoct-plan-1"


# ---------------------------------------------------------------- JSON helpers


def _to_jsonable(value):
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(value, indent: int = 0) -> str:
    """JSON with one key per line and short lists (of numbers, or of such lists) kept on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        flat = json.dumps(value)
        if len(flat) <= 100 and not any(isinstance(v, dict) for v in value):
            return flat
        return "[\n" + ",\n".join(inner + _dumps(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def _read_json(source, kind: str) -> tuple[dict, str]:
    """Parse ``source`` (a JSON file path or a JSON string) into a dict; return it and how to name it."""
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{kind} JSON file does not exist", path)
        text, name = path.read_text(encoding="utf-8"), str(path)
    else:
        text, name = str(source), f"{kind} JSON text"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", name) from None
    if not isinstance(data, dict):
        raise InputError(f"a {kind} JSON must be an object, found {type(data).__name__}", name)
    return data, name


def _check_keys(cls, data: dict, name: str, fmt: str, kind: str) -> dict:
    data = dict(data)
    found = data.pop("format", None)
    if found != fmt:
        raise InputError(f"not a {kind} file: 'format' is {found!r}, expected {fmt!r}", name)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(
            f"unknown {kind} key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"(misspelt or from another version?); known keys: {', '.join(known)}",
            name,
        )
    missing = [k for k in known if k not in data and _required(cls, k)]
    if missing:
        raise InputError(f"{kind} keys missing: {', '.join(missing)}", name)
    return data


def _required(cls, name: str) -> bool:
    f = cls.__dataclass_fields__[name]
    return f.default is MISSING and f.default_factory is MISSING


def _write(text: str, path) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")


def _triple(value, name: str, cast=float) -> tuple:
    try:
        out = tuple(cast(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three numbers (z, y, x), got {value!r}") from None
    if len(out) != 3:
        raise InputError(f"{name} must be three numbers (z, y, x), got {value!r}")
    return out


# ---------------------------------------------------------------- fingerprint


@dataclass
class Fingerprint:
    """What the planner needs to know about a training cohort (all lists in patient order).

    Attributes
    ----------
    patients : list of str
        Pseudonymous ids of the cases that were read.
    centers : list of str
        Their acquisition centre (manifest ``center``).
    spacings : list of tuple
        Voxel spacing of each case, mm, ``(z, y, x)``, rounded to 1e-6 mm (NIfTI stores
        float32, so 2.2 would otherwise read back as 2.2000000477).
    shapes : list of tuple
        Array shape of each case, ``(z, y, x)``.
    intensity : dict
        Foreground (label > 0) CT values, HU: ``percentile_00_5``, ``percentile_50_0``,
        ``percentile_99_5`` (from up to ``intensity_samples_per_case`` voxels per case drawn
        with ``seed``, pooled, like nnU-Net), and ``mean``, ``std`` (population SD), ``min``,
        ``max``, ``n_voxels`` over all foreground voxels exactly.
    class_voxel_counts : dict name -> int
        Voxels of each class over the cohort.
    class_fractions : dict name -> float
        Each class's share of all labelled (label > 0) voxels.
    cases_with_class : dict name -> int
        Number of cases where the class is present.
    tumour_box_mm : list of tuple or None
        Extent of each case's tumour (label 1) bounding box, mm, ``(z, y, x)`` (voxel count x
        spacing); None when the case has no tumour voxel.
    t_stage_counts : dict
        Patients per pathological T stage (manifest ``pT``), ``T1``..``T4``.
    t_stage_missing : int
        Cases without a ``pT`` value.
    failures : dict
        Patient id -> why the case could not be read (those cases are left out above).
    labels : dict name -> int
        The label map's classes.
    image_column, mask_column : str
        Manifest columns that were read.
    intensity_samples_per_case : int
        Foreground voxels sampled per case for the percentiles.
    seed : int
        Seed of that sampling.
    """

    patients: list
    centers: list
    spacings: list
    shapes: list
    intensity: dict
    class_voxel_counts: dict
    class_fractions: dict
    cases_with_class: dict
    tumour_box_mm: list
    t_stage_counts: dict
    t_stage_missing: int = 0
    failures: dict = field(default_factory=dict)
    labels: dict = field(default_factory=lambda: dict(LABELS))
    image_column: str = "image_pre"
    mask_column: str = "mask_pre"
    intensity_samples_per_case: int = 10_000
    seed: int = 0

    def __post_init__(self):
        self.spacings = [_triple(s, "spacing") for s in self.spacings]
        self.shapes = [_triple(s, "shape", int) for s in self.shapes]
        self.tumour_box_mm = [None if b is None else _triple(b, "tumour_box_mm") for b in self.tumour_box_mm]
        n = len(self.patients)
        for name in ("centers", "spacings", "shapes", "tumour_box_mm"):
            if len(getattr(self, name)) != n:
                raise InputError(f"fingerprint {name} has {len(getattr(self, name))} entries for {n} patients")

    @property
    def n_cases(self) -> int:
        """Number of cases read."""
        return len(self.patients)

    @property
    def median_spacing(self) -> tuple[float, float, float]:
        """Per-axis median spacing, mm, ``(z, y, x)``."""
        return tuple(float(v) for v in np.median(np.asarray(self.spacings), axis=0))

    @property
    def median_shape(self) -> tuple[int, int, int]:
        """Per-axis median array shape before resampling, ``(z, y, x)``."""
        return tuple(int(round(v)) for v in np.median(np.asarray(self.shapes), axis=0))

    def spacings_by_center(self) -> dict[str, list[tuple[float, float, float]]]:
        """Distinct spacings (mm, ``(z, y, x)``) of each centre, sorted."""
        out: dict[str, set] = {}
        for c, s in zip(self.centers, self.spacings):
            out.setdefault(str(c), set()).add(tuple(s))
        return {c: sorted(v) for c, v in sorted(out.items())}

    def to_json(self, path: str | Path | None = None) -> str:
        """The fingerprint as JSON text; also written to ``path`` when given.

        Parameters
        ----------
        path : str or Path, optional
            File to write (folders created).

        Returns
        -------
        str
        """
        text = _dumps({"format": _FINGERPRINT_FORMAT, **_to_jsonable(asdict(self))})
        _write(text, path)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> "Fingerprint":
        """Load a fingerprint from a JSON file or JSON text.

        Raises
        ------
        InputError
            Not a fingerprint, unknown or missing keys, or malformed values (naming the file).
        """
        data, name = _read_json(source, "fingerprint")
        data = _check_keys(cls, data, name, _FINGERPRINT_FORMAT, "fingerprint")
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(exc.problem, name) from None


def extract_fingerprint(
    manifest,
    *,
    image_column: str = "image_pre",
    mask_column: str = "mask_pre",
    labels: dict[str, int] | None = None,
    intensity_samples_per_case: int = 10_000,
    seed: int = 0,
    progress: bool = True,
    failures_csv: str | Path | None = None,
) -> Fingerprint:
    """Compute the dataset fingerprint of a training cohort, one patient at a time.

    Parameters
    ----------
    manifest : str, Path or esoct.io.manifest.Manifest
        The cohort manifest (only the training patients: every case counts).
    image_column, mask_column : str
        Manifest columns of the CT and its nn-TransEC label map.
    labels : dict name -> int, optional
        Classes of the label map (default :data:`LABELS`).
    intensity_samples_per_case : int
        Foreground voxels drawn per case for the intensity percentiles (all when fewer).
    seed : int
        Seed of that draw (each case gets its own stream from ``(seed, case index)``).
    progress : bool
        Show a tqdm progress bar.
    failures_csv : str or Path, optional
        Also write the failed patients and their reasons here.

    Returns
    -------
    Fingerprint
        Failed cases (unreadable file, mask not on the image grid, no labelled voxel) are
        listed in ``failures`` with their reason and left out of every statistic.

    Raises
    ------
    InputError
        No case could be read.
    """
    from esoct.io.manifest import Manifest, load_manifest, normalise_t_stage
    from esoct.study.runner import run_per_patient

    man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    labels = dict(LABELS if labels is None else labels)
    patients = man.patients
    index_of = {p: i for i, p in enumerate(patients)}

    def work(pid: str) -> dict:
        return _case_fingerprint(man, pid, image_column, mask_column, labels, intensity_samples_per_case,
                                 np.random.default_rng([int(seed), index_of[pid]]))

    run = run_per_patient(patients, work, desc="fingerprint", progress=progress, failures_csv=failures_csv)
    done = [p for p in patients if p in run.results]
    if not done:
        raise InputError(f"no case could be read for the fingerprint ({len(run.failures)} failed)", man.path)
    cases = [run.results[p] for p in done]
    counts = {name: int(sum(c["counts"][name] for c in cases)) for name in labels if labels[name] > 0}
    total = sum(counts.values())
    stages = {t: 0 for t in T_STAGES}
    missing = 0
    for p in done:
        value = man.row(p).get("pT")
        try:
            stages[normalise_t_stage(value)] += 1
        except (ValueError, TypeError):
            missing += 1
    return Fingerprint(
        patients=done,
        centers=[c["center"] for c in cases],
        spacings=[c["spacing"] for c in cases],
        shapes=[c["shape"] for c in cases],
        intensity=_pool_intensity(cases),
        class_voxel_counts=counts,
        class_fractions={k: (v / total if total else 0.0) for k, v in counts.items()},
        cases_with_class={name: int(sum(c["counts"][name] > 0 for c in cases)) for name in counts},
        tumour_box_mm=[c["tumour_box_mm"] for c in cases],
        t_stage_counts=stages,
        t_stage_missing=missing,
        failures=dict(run.failures),
        labels=labels,
        image_column=image_column,
        mask_column=mask_column,
        intensity_samples_per_case=int(intensity_samples_per_case),
        seed=int(seed),
    )


def _case_fingerprint(man, pid, image_column, mask_column, labels, n_samples, rng) -> dict:
    from scipy import ndimage

    from esoct.io.imageio import read_image

    row = man.row(pid)
    paths = {}
    for column in (image_column, mask_column):
        path = man.resolve(row, column)
        if path is None:
            raise InputError(f"{column} is empty", man.path, pid)
        paths[column] = path
    image = read_image(paths[image_column], patient=pid)
    mask = read_image(paths[mask_column], patient=pid)
    differences = image.geometry_differences(mask)
    if differences:
        raise InputError(f"mask grid differs from {image_column} (mask vs image): " + "; ".join(differences),
                         paths[mask_column], pid)
    lab = np.asarray(mask.array)
    if np.issubdtype(lab.dtype, np.floating):
        if np.any(lab != np.round(lab)):
            raise InputError("mask values are not integers", paths[mask_column], pid)
    lab = lab.astype(np.int64, copy=False)
    foreground = lab > 0
    values = np.asarray(image.array)[foreground].astype(np.float64)
    if values.size == 0:
        raise InputError("mask has no labelled voxel (label > 0)", paths[mask_column], pid)
    bins = np.bincount(lab[foreground], minlength=max(labels.values()) + 1)
    counts = {name: int(bins[k]) if k < len(bins) else 0 for name, k in labels.items() if k > 0}
    tumour = labels.get("tumour", 1)
    box = ndimage.find_objects((lab == tumour).view(np.uint8))
    spacing = tuple(round(float(s), 6) for s in image.spacing)
    tumour_box = None
    if box and box[0] is not None:
        tumour_box = tuple(round((sl.stop - sl.start) * s, 6) for sl, s in zip(box[0], spacing))
    sample = values if values.size <= n_samples else rng.choice(values, size=n_samples, replace=False)
    mean = float(values.mean())
    return {
        "center": str(row.get("center", "")),
        "spacing": spacing,
        "shape": tuple(int(s) for s in image.shape),
        "counts": counts,
        "tumour_box_mm": tumour_box,
        "n": int(values.size),
        "mean": mean,
        "m2": float(((values - mean) ** 2).sum()),
        "min": float(values.min()),
        "max": float(values.max()),
        "sample": sample,
    }


def _pool_intensity(cases: list[dict]) -> dict:
    """Exact pooled mean/SD (Chan's parallel update) and percentiles of the pooled samples."""
    n, mean, m2 = 0, 0.0, 0.0
    for c in cases:
        delta = c["mean"] - mean
        total = n + c["n"]
        mean += delta * c["n"] / total
        m2 += c["m2"] + delta**2 * n * c["n"] / total
        n = total
    sample = np.concatenate([c["sample"] for c in cases])
    p005, p50, p995 = np.percentile(sample, [0.5, 50.0, 99.5])
    return {
        "percentile_00_5": float(p005),
        "percentile_50_0": float(p50),
        "percentile_99_5": float(p995),
        "mean": float(mean),
        "std": float(math.sqrt(m2 / n)),
        "min": float(min(c["min"] for c in cases)),
        "max": float(max(c["max"] for c in cases)),
        "n_voxels": int(n),
        "n_sampled": int(sample.size),
    }


# ---------------------------------------------------------------- plan rules


def target_spacing(spacings, shapes, anisotropy_threshold: float = 3.0) -> tuple[tuple[float, float, float], int | None]:
    """Target spacing by rule 1 (median, nnU-Net's anisotropy rule).

    Parameters
    ----------
    spacings : array-like, shape (n_cases, 3)
        Spacings, mm, ``(z, y, x)``.
    shapes : array-like, shape (n_cases, 3)
        Array shapes, ``(z, y, x)``.
    anisotropy_threshold : float
        Ratio of the coarsest to the next coarsest median spacing (and of voxel counts) above
        which the coarse axis is treated as anisotropic.

    Returns
    -------
    spacing : tuple of float
        Target spacing, mm, ``(z, y, x)``.
    anisotropic_axis : int or None
        The axis that took the 10th percentile, or None.
    """
    sp = np.asarray(spacings, dtype=float).reshape(-1, 3)
    sizes = np.asarray(shapes, dtype=float).reshape(-1, 3)
    target = np.percentile(sp, 50, axis=0)
    median_size = np.percentile(sizes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(3) if i != worst]
    aniso_spacing = target[worst] > anisotropy_threshold * max(target[i] for i in others)
    aniso_voxels = median_size[worst] * anisotropy_threshold < min(median_size[i] for i in others)
    if not (aniso_spacing and aniso_voxels):
        return tuple(float(v) for v in target), None
    low = float(np.percentile(sp[:, worst], 10))
    coarsest_other = max(target[i] for i in others)
    # never finer than the other axes (nnU-Net adds 1e-5 so the axis stays the coarsest)
    target[worst] = coarsest_other + 1e-5 if low < coarsest_other else low
    return tuple(float(v) for v in target), worst


def network_topology(spacing, patch_size, min_edge: int = 4, max_pool: int = 999):
    """U-Net pooling topology of a patch by rule 3.

    Parameters
    ----------
    spacing : sequence of float
        Target spacing, mm, ``(z, y, x)``.
    patch_size : sequence of int
        Patch before padding, voxels, ``(z, y, x)``.
    min_edge : int
        Smallest feature-map edge (voxels) allowed after pooling.
    max_pool : int
        Most poolings per axis.

    Returns
    -------
    n_pool : tuple of int
        Poolings per axis.
    strides : list of tuple
        Stride of each stage (first ``(1, 1, 1)``).
    kernel_sizes : list of tuple
        Convolution kernel of each stage.
    patch : tuple of int
        Patch padded up to a multiple of ``2 ** n_pool`` per axis.
    """
    current_spacing = [float(s) for s in spacing]
    size = [int(v) for v in patch_size]
    current = list(size)
    n_pool = [0, 0, 0]
    kernel = [1, 1, 1]
    strides = [(1, 1, 1)]
    kernels = []
    while True:
        valid = [i for i in range(3) if current[i] >= 2 * min_edge and n_pool[i] < max_pool]
        if not valid:
            break
        finest = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest < 2]
        if len(valid) == 1 and current[valid[0]] < 3 * min_edge:
            break
        finest_all = min(current_spacing)
        kernel = [3 if kernel[d] == 3 or current_spacing[d] / finest_all < 2 else 1 for d in range(3)]
        kernels.append(tuple(kernel))
        stride = [1, 1, 1]
        for i in valid:
            stride[i] = 2
            n_pool[i] += 1
            current_spacing[i] *= 2
            current[i] = int(math.ceil(current[i] / 2))
        strides.append(tuple(stride))
    kernels.append((3, 3, 3))
    step = [2**p for p in n_pool]
    padded = tuple(int(math.ceil(s / d) * d) for s, d in zip(size, step))
    return tuple(n_pool), strides, kernels, padded


def features_per_stage(n_stages: int, base_features: int = 32, max_features: int = 320) -> list[int]:
    """Feature channels of each stage: ``base * 2**s`` capped at ``max_features``."""
    return [min(max_features, base_features * 2**s) for s in range(n_stages)]


def estimate_activation_bytes(patch_size, strides, features, batch_size: int = 1, bytes_per_activation: int = 2) -> float:
    """Activation memory of a U-Net training step, bytes (rule 4).

    Parameters
    ----------
    patch_size : sequence of int
        Patch, voxels, ``(z, y, x)``.
    strides : list of tuple
        Stage strides (first ``(1, 1, 1)``).
    features : list of int
        Feature channels of each stage.
    batch_size : int
        Patches per step.
    bytes_per_activation : int
        2 with mixed precision, 4 in float32.

    Returns
    -------
    float
        ``batch * bytes * ACTIVATIONS_PER_FEATURE_VOXEL * sum_s(voxels_s * features_s)``.
    """
    size = np.asarray(patch_size, dtype=float)
    total = 0.0
    for stride, f in zip(strides, features):
        size = np.ceil(size / np.asarray(stride))
        total += float(np.prod(size)) * f
    return batch_size * bytes_per_activation * ACTIVATIONS_PER_FEATURE_VOXEL * total


def class_loss_weights(t_stage_counts: dict, rule: str = "rank_reversed") -> dict[str, float]:
    """Classification focal-loss weights alpha_2 from T-stage counts (rule 7).

    Parameters
    ----------
    t_stage_counts : dict
        Patients per stage, keys ``T1``..``T4``.
    rule : {"rank_reversed", "inverse_frequency"}
        See the module docstring.

    Returns
    -------
    dict
        Weight per stage, summing to 1 over the stages that have patients (0 for the others).

    Examples
    --------
    >>> w = class_loss_weights({"T1": 27, "T2": 33, "T3": 92, "T4": 17})
    >>> [round(w[t], 2) for t in ("T1", "T2", "T3", "T4")]
    [0.2, 0.16, 0.1, 0.54]
    """
    if rule not in ("rank_reversed", "inverse_frequency"):
        raise InputError(f"alpha rule must be 'rank_reversed' or 'inverse_frequency', got {rule!r}")
    counts = {t: int(t_stage_counts.get(t, 0)) for t in T_STAGES}
    if any(v < 0 for v in counts.values()):
        raise InputError(f"T-stage counts must be >= 0, got {counts}")
    present = [t for t in T_STAGES if counts[t] > 0]
    if not present:
        raise InputError("no patient has a T stage: cannot derive classification loss weights")
    out = {t: 0.0 for t in T_STAGES}
    if rule == "inverse_frequency":
        inv = {t: 1.0 / counts[t] for t in present}
        total = sum(inv.values())
        out.update({t: v / total for t, v in inv.items()})
        return out
    n = sum(counts[t] for t in present)
    shares = np.array([counts[t] / n for t in present])
    ascending = np.sort(shares)
    for t, s in zip(present, shares):
        # positions (0 = largest) this share occupies in descending order; ties share them
        larger = int(np.sum(shares > s))
        ties = int(np.sum(shares == s))
        out[t] = float(ascending[larger : larger + ties].mean())
    return out


# ---------------------------------------------------------------- plan


@dataclass
class Plan:
    """Training plan of the nn-TransEC segmentation network (editable JSON; rules in the module docstring).

    Attributes
    ----------
    target_spacing : tuple of float
        Resampling target, mm, ``(z, y, x)``.
    anisotropic_axis : int or None
        Axis that took the 10th-percentile spacing (rule 1), or None.
    median_shape : tuple of int
        Median case shape after resampling, ``(z, y, x)``.
    patch_size : tuple of int
        Training patch, voxels, ``(z, y, x)``.
    batch_size : int
        Patches per step.
    n_stages : int
        Encoder stages (resolutions).
    n_pool_per_axis : tuple of int
        Poolings per axis, ``(z, y, x)``.
    strides : list of tuple
        Stride of each stage, ``(z, y, x)``; the first is ``(1, 1, 1)``.
    kernel_sizes : list of tuple
        Convolution kernel of each stage, ``(z, y, x)``.
    features_per_stage : list of int
        Channels of each stage.
    krt_crop_size : tuple of int
        KRT classification box, voxels at ``target_spacing``, ``(z, y, x)``.
    normalization : dict
        ``scheme`` ("CT"), ``clip_low``, ``clip_high`` (HU), ``mean``, ``std`` (HU).
    class_loss_weights : dict
        alpha_2 per T stage.
    alpha_rule : str
        Rule that produced them.
    focal_gamma : float
        gamma_2 of the classification focal loss.
    estimated_memory_mb : float
        Activation memory of one batch by :func:`estimate_activation_bytes`, MiB.
    memory_budget_mb : float
        Budget the patch and batch were fitted to, MiB.
    bytes_per_activation : int
        Used in the estimate.
    base_features, max_features : int
        Feature rule (rule 3).
    krt_margin_mm : float
        Margin added on each side of the tumour box (rule 5), mm.
    krt_reference_size : tuple of int
        The paper's box, for comparison.
    labels : dict name -> int
        Classes of the label maps.
    n_training_cases : int
        Cases in the fingerprint.
    """

    target_spacing: tuple
    anisotropic_axis: int | None
    median_shape: tuple
    patch_size: tuple
    batch_size: int
    n_stages: int
    n_pool_per_axis: tuple
    strides: list
    kernel_sizes: list
    features_per_stage: list
    krt_crop_size: tuple
    normalization: dict
    class_loss_weights: dict
    alpha_rule: str = "rank_reversed"
    focal_gamma: float = 2.0
    estimated_memory_mb: float = 0.0
    memory_budget_mb: float = 8000.0
    bytes_per_activation: int = 2
    base_features: int = 32
    max_features: int = 320
    krt_margin_mm: float = 10.0
    krt_reference_size: tuple = KRT_REFERENCE_SIZE
    labels: dict = field(default_factory=lambda: dict(LABELS))
    n_training_cases: int = 0

    def __post_init__(self):
        self.target_spacing = _triple(self.target_spacing, "target_spacing")
        if min(self.target_spacing) <= 0:
            raise InputError(f"target_spacing must be positive, got {self.target_spacing}")
        for name in ("median_shape", "patch_size", "n_pool_per_axis", "krt_crop_size", "krt_reference_size"):
            setattr(self, name, _triple(getattr(self, name), name, int))
        self.strides = [_triple(s, "stride", int) for s in self.strides]
        self.kernel_sizes = [_triple(k, "kernel size", int) for k in self.kernel_sizes]
        self.features_per_stage = [int(f) for f in self.features_per_stage]
        self.batch_size, self.n_stages = int(self.batch_size), int(self.n_stages)
        if self.anisotropic_axis not in (None, 0, 1, 2):
            raise InputError(f"anisotropic_axis must be null or an axis 0, 1, 2 (z, y, x), got {self.anisotropic_axis!r}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (len(self.strides) == len(self.kernel_sizes) == len(self.features_per_stage) == self.n_stages):
            raise InputError(
                f"n_stages is {self.n_stages} but there are {len(self.strides)} strides, {len(self.kernel_sizes)} "
                f"kernel sizes and {len(self.features_per_stage)} feature counts: edit them together"
            )
        step = [2**p for p in self.n_pool_per_axis]
        for name in ("patch_size", "krt_crop_size"):
            bad = [int(v) for v, d in zip(getattr(self, name), step) if v % d]
            if bad:
                raise InputError(f"{name} {getattr(self, name)} must be a multiple of 2**n_pool_per_axis = {tuple(step)}")
        unknown = set(self.class_loss_weights) - set(T_STAGES)
        if unknown:
            raise InputError(f"class_loss_weights has unknown stages {sorted(unknown)}; expected {T_STAGES}")

    def to_json(self, path: str | Path | None = None) -> str:
        """The plan as JSON text; also written to ``path`` when given.

        Parameters
        ----------
        path : str or Path, optional
            File to write (folders created).

        Returns
        -------
        str
        """
        text = _dumps({"format": _PLAN_FORMAT, **_to_jsonable(asdict(self))})
        _write(text, path)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> "Plan":
        """Load a (possibly hand-edited) plan from a JSON file or JSON text.

        Raises
        ------
        InputError
            Not a plan, an unknown or missing key (naming it and the known ones), or values that
            break the plan's consistency (e.g. a patch not divisible by ``2 ** n_pool``).
        """
        data, name = _read_json(source, "plan")
        data = _check_keys(cls, data, name, _PLAN_FORMAT, "plan")
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(exc.problem, name) from None


def make_plan(
    fingerprint: Fingerprint,
    *,
    memory_budget_mb: float = 8000.0,
    base_features: int = 32,
    max_features: int = 320,
    min_batch_size: int = 2,
    bytes_per_activation: int = 2,
    anisotropy_threshold: float = 3.0,
    min_edge: int = 4,
    max_dataset_fraction: float = 0.05,
    krt_margin_mm: float = 10.0,
    krt_percentile: float = 95.0,
    alpha_rule: str = "rank_reversed",
    focal_gamma: float = 2.0,
    spacing=None,
    patch_size=None,
) -> Plan:
    """Derive the training plan from a fingerprint by the rules of the module docstring.

    Parameters
    ----------
    fingerprint : Fingerprint
        Of the training cohort.
    memory_budget_mb : float
        Activation memory a training step may use, MiB (rule 4).
    base_features, max_features : int
        Channels of the first stage and the cap (32 and 320 in nnU-Net).
    min_batch_size : int
        Smallest batch (2, as in the paper's Table 6).
    bytes_per_activation : int
        2 with mixed precision, 4 in float32.
    anisotropy_threshold : float
        Rule 1's ratio.
    min_edge : int
        Smallest bottleneck feature-map edge, voxels.
    max_dataset_fraction : float
        Largest share of the cohort's voxels one batch may cover.
    krt_margin_mm : float
        Margin on each side of the tumour box, mm (rule 5).
    krt_percentile : float
        Percentile of the tumour box extents (rule 5).
    alpha_rule : {"rank_reversed", "inverse_frequency"}
        Rule 7.
    focal_gamma : float
        gamma_2 of the classification focal loss.
    spacing : sequence of 3 float, optional
        Override of rule 1: this target spacing, mm ``(z, y, x)`` (a study file's or a cascade
        stage's); the rest of the plan follows from it.
    patch_size : sequence of 3 int, optional
        Override of rule 4's patch, voxels ``(z, y, x)``: the topology (rule 3) is derived from it
        and it is padded to a multiple of ``2 ** n_pool``; the batch size still follows the budget.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        The budget cannot hold ``min_batch_size`` patches of the smallest topology.
    """
    if spacing is None:
        spacing, aniso_axis = target_spacing(fingerprint.spacings, fingerprint.shapes, anisotropy_threshold)
    else:
        spacing, aniso_axis = _triple(spacing, "spacing"), None
    sp_cases = np.asarray(fingerprint.spacings, dtype=float)
    shp_cases = np.asarray(fingerprint.shapes, dtype=float)
    resampled = shp_cases * sp_cases / np.asarray(spacing)
    median_shape = tuple(int(v) for v in np.round(np.median(resampled, axis=0)))
    budget = float(memory_budget_mb) * 2**20

    inv = 1.0 / np.asarray(spacing)
    initial = inv * (256**3 / np.prod(inv)) ** (1 / 3)
    patch = [int(min(round(a), m)) for a, m in zip(initial, median_shape)]
    patch = [max(p, 1) for p in patch]
    n_pool, strides, kernels, padded = network_topology(spacing, patch, min_edge)
    feats = features_per_stage(len(strides), base_features, max_features)

    def memory(p, s, f, b):
        return estimate_activation_bytes(p, s, f, b, bytes_per_activation)

    if patch_size is not None:
        n_pool, strides, kernels, padded = network_topology(spacing, _triple(patch_size, "patch_size", int), min_edge)
        feats = features_per_stage(len(strides), base_features, max_features)
    while patch_size is None and memory(padded, strides, feats, min_batch_size) > budget:
        axis = int(np.argmax([p / m for p, m in zip(padded, median_shape)]))
        step = 2 ** n_pool[axis]
        if padded[axis] - step < 1:
            raise InputError(
                f"memory budget {memory_budget_mb} MiB cannot hold {min_batch_size} patches of the smallest topology "
                f"(needs {memory(padded, strides, feats, min_batch_size) / 2**20:.0f} MiB)"
            )
        patch = list(padded)
        patch[axis] = max(padded[axis] - step, 1)
        n_pool, strides, kernels, padded = network_topology(spacing, patch, min_edge)
        feats = features_per_stage(len(strides), base_features, max_features)

    one = memory(padded, strides, feats, 1)
    batch = int(budget // one)
    dataset_voxels = float(np.prod(resampled, axis=1).sum())
    cap = int(round(dataset_voxels * max_dataset_fraction / float(np.prod(padded))))
    batch = max(min(batch, cap), min_batch_size)

    krt = _krt_crop_size(fingerprint, spacing, n_pool, krt_margin_mm, krt_percentile)
    inten = fingerprint.intensity
    normalization = {
        "scheme": "CT",
        "clip_low": inten["percentile_00_5"],
        "clip_high": inten["percentile_99_5"],
        "mean": inten["mean"],
        "std": inten["std"],
    }
    return Plan(
        target_spacing=spacing,
        anisotropic_axis=aniso_axis,
        median_shape=median_shape,
        patch_size=padded,
        batch_size=batch,
        n_stages=len(strides),
        n_pool_per_axis=n_pool,
        strides=strides,
        kernel_sizes=kernels,
        features_per_stage=feats,
        krt_crop_size=krt,
        normalization=normalization,
        class_loss_weights=class_loss_weights(fingerprint.t_stage_counts, alpha_rule),
        alpha_rule=alpha_rule,
        focal_gamma=float(focal_gamma),
        estimated_memory_mb=round(memory(padded, strides, feats, batch) / 2**20, 1),
        memory_budget_mb=float(memory_budget_mb),
        bytes_per_activation=int(bytes_per_activation),
        base_features=int(base_features),
        max_features=int(max_features),
        krt_margin_mm=float(krt_margin_mm),
        labels=dict(fingerprint.labels),
        n_training_cases=fingerprint.n_cases,
    )


def _krt_crop_size(fingerprint: Fingerprint, spacing, n_pool, margin_mm: float, percentile: float) -> tuple[int, int, int]:
    boxes = np.asarray([b for b in fingerprint.tumour_box_mm if b is not None], dtype=float).reshape(-1, 3)
    step = [2**p for p in n_pool]
    if boxes.size == 0:
        warnings.warn(f"no case has a tumour voxel: KRT crop size falls back to the paper's {KRT_REFERENCE_SIZE}",
                      stacklevel=3)
        return tuple(int(math.ceil(r / d) * d) for r, d in zip(KRT_REFERENCE_SIZE, step))
    extent = np.percentile(boxes, percentile, axis=0) + 2 * margin_mm
    voxels = np.ceil(extent / np.asarray(spacing) - 1e-9)
    return tuple(int(math.ceil(v / d) * d) for v, d in zip(voxels, step))


def compute_plan(
    manifest,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    fingerprint_kwargs: dict | None = None,
    **plan_kwargs,
) -> tuple[Fingerprint, Plan]:
    """Fingerprint a training cohort and plan from it; optionally save both as JSON.

    Parameters
    ----------
    manifest : str, Path or Manifest
        Training cohort.
    out_dir : str or Path, optional
        Writes ``fingerprint.json``, ``plan.json`` and ``fingerprint_failures.csv``
        (``patient_id,reason``; only the header when every case was read) here.
    progress : bool
        Progress bar while fingerprinting.
    fingerprint_kwargs : dict, optional
        Passed to :func:`extract_fingerprint`.
    **plan_kwargs
        Passed to :func:`make_plan`.

    Returns
    -------
    (Fingerprint, Plan)
    """
    out = None if out_dir is None else Path(out_dir)
    failures_csv = None if out is None else out / "fingerprint_failures.csv"
    fp = extract_fingerprint(manifest, progress=progress, failures_csv=failures_csv, **(fingerprint_kwargs or {}))
    plan = make_plan(fp, **plan_kwargs)
    if out is not None:
        fp.to_json(out / "fingerprint.json")
        plan.to_json(out / "plan.json")
    return fp, plan
