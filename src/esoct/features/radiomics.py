"""Radiomics extraction of one image and mask with PyRadiomics, with per-family failure reporting."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume

log = logging.getLogger("esoct")

PARAMS_DIR = Path(__file__).resolve().parent / "params"
DEFAULT_PARAMS = PARAMS_DIR / "longitudinal.yaml"
SHAPE_FAMILIES = ("shape", "shape2D")
AXES_ZYX = ("z", "y", "x")


@dataclass
class RadiomicsResult:
    """What one extraction produced.

    Attributes
    ----------
    features : dict
        PyRadiomics feature name (``original_firstorder_Entropy``) -> float.
    failures : dict
        Feature family (``shape``, ``original_glcm``, ``wavelet-LLH_glszm`` or a feature
        class name when the whole class failed) -> reason, in plain words.
    warnings : list of str
        Problems that did not stop extraction (e.g. the mask touches the volume border).
    diagnostics : dict
        PyRadiomics' ``diagnostics_*`` entries (versions, settings, ROI geometry).
    """

    features: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    diagnostics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every feature family was computed."""
        return not self.failures


class RadiomicsExtractor:
    """PyRadiomics feature extraction on :class:`~esoct.io.volume.Volume` pairs.

    Parameters
    ----------
    params : str, Path or dict, optional
        A PyRadiomics parameter file (its own YAML/JSON schema with ``setting``,
        ``imageType``, ``featureClass``) or the same structure as a dict. Default: the
        longitudinal survival paper's set, ``esoct/features/params/longitudinal.yaml``.
    verbose : bool
        Keep PyRadiomics' own log messages (default: only errors, and the ``radiomics``
        logger set to ERROR so no log records are built during extraction).

    Attributes
    ----------
    params : dict
        The resolved parameters (``setting`` with PyRadiomics' defaults filled in,
        ``imageType``, ``featureClass``); rebuilding an extractor from it gives the same features.
    settings_hash : str
        SHA-256 of the resolved parameters and the PyRadiomics version, for caching.

    References
    ----------
    .. [1] van Griethuysen JJM et al. Computational radiomics system to decode the radiographic
       phenotype. Cancer Research 77(21):e104-e107, 2017.
    .. [2] Zwanenburg A et al. The Image Biomarker Standardization Initiative: standardized
       quantitative radiomics for high-throughput image-based phenotyping. Radiology 295:328-338, 2020.

    Examples
    --------
    >>> ex = RadiomicsExtractor({"featureClass": {"firstorder": None}})  # doctest: +SKIP
    >>> ex.extract(image, mask, patient="EP0001")["original_firstorder_Mean"]  # doctest: +SKIP
    """

    def __init__(self, params: str | Path | dict | None = None, *, verbose: bool = False):
        quiet_pyradiomics(not verbose)
        extractor = _validated(DEFAULT_PARAMS if params is None else params)
        self._extractor = extractor
        self.params = {
            "setting": dict(extractor.settings),
            "imageType": copy.deepcopy(extractor.enabledImagetypes),
            "featureClass": copy.deepcopy(extractor.enabledFeatures),
        }
        self.settings_hash = settings_hash(self.params)

    # -- public ------------------------------------------------------------------
    def extract(self, image: Volume, mask: Volume, label: int | None = None, patient: str | None = None) -> dict:
        """Extract features of one ROI.

        Parameters
        ----------
        image : Volume
            The image (e.g. CT in HU).
        mask : Volume
            Label map on the same grid.
        label : int, optional
            Label value of the ROI (default: the parameter file's ``label``, 1 = tumour).
        patient : str, optional
            Pseudonymous patient id, named in messages.

        Returns
        -------
        dict
            Feature name (PyRadiomics' own, e.g. ``original_firstorder_Entropy``) -> float.
            Families that could not be computed are absent and logged as warnings; use
            :meth:`extract_detailed` to get their reasons.

        Raises
        ------
        InputError
            When no feature at all could be computed (e.g. an empty mask), naming the
            patient and every family's reason.
        """
        result = self.extract_detailed(image, mask, label=label, patient=patient)
        if not result.features and result.failures:
            reasons = "; ".join(f"{family}: {why}" for family, why in result.failures.items())
            raise InputError(f"no radiomics feature could be computed ({reasons})", patient=patient)
        return result.features

    def extract_detailed(
        self, image: Volume, mask: Volume, label: int | None = None, patient: str | None = None
    ) -> RadiomicsResult:
        """Extract features and report, per feature family, what could not be computed.

        Never raises for bad data: an empty mask, a one-voxel ROI, a constant ROI or an
        image and mask of different geometry are reported in ``failures``; what can be
        computed (e.g. shape of a one-voxel ROI, shape of a mask whose image grid differs)
        is computed.

        Parameters
        ----------
        image, mask, label, patient
            As in :meth:`extract`.

        Returns
        -------
        RadiomicsResult
        """
        label = int(self.params["setting"].get("label", 1) if label is None else label)
        result = RadiomicsResult()
        geometry = image.geometry_differences(mask)
        roi = _roi_summary(mask.array, label, None if geometry else image.array)
        result.warnings.extend(_roi_warnings(roi, label))
        if geometry and not self.params["setting"].get("correctMask", False):
            self._extract_shape_only(
                mask, label, result, "image and mask grids differ (mask vs image): " + "; ".join(geometry)
            )
        else:
            self._extract_all(image, mask, label, roi, result)
        for warning in result.warnings:
            log.warning("%s", _who(patient) + warning)
        for family, reason in result.failures.items():
            log.warning("%s%s: %s", _who(patient), family, reason)
        return result

    @property
    def families(self) -> list[str]:
        """Enabled feature classes, in parameter-file order."""
        return list(self.params["featureClass"])

    # -- internals -----------------------------------------------------------------
    def _extract_all(self, image: Volume, mask: Volume, label: int, roi: dict, result: RadiomicsResult) -> None:
        image_s, mask_s = image.to_sitk(), mask.to_sitk()
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                vector = self._extractor.execute(image_s, mask_s, label=label)
        except Exception:  # noqa: BLE001 - the whole-ROI path failed: go family by family, recording why
            self._extract_by_family(image_s, mask_s, label, roi, result)
            return
        _collect(vector, result)
        result.failures.update(_nan_families(result.features, roi))

    def _extract_by_family(self, image_s, mask_s, label: int, roi: dict, result: RadiomicsResult) -> None:
        """One sub-extraction per feature family, so one family's failure keeps the others."""
        for family in self.families:
            sub = self._sub_extractor(family)
            try:
                with np.errstate(divide="ignore", invalid="ignore"):
                    vector = sub.execute(image_s, mask_s, label=label)
            except Exception as exc:  # noqa: BLE001 - reported per family, never raised
                reason = _explain(exc, roi, label, family)
                if family in SHAPE_FAMILIES and roi["voxels"] > 0:
                    try:
                        vector = _shape_direct(sub, mask_s, label, family)
                    except Exception as exc2:  # noqa: BLE001 - reported, never raised
                        result.failures[family] = f"{reason} (direct shape: {_first_line(exc2)})"
                        continue
                else:
                    result.failures[family] = reason
                    continue
            _collect(vector, result)
        result.failures.update(_nan_families(result.features, roi))

    def _extract_shape_only(self, mask: Volume, label: int, result: RadiomicsResult, reason: str) -> None:
        mask_s = mask.to_sitk()
        for family in self.families:
            if family in SHAPE_FAMILIES:
                try:
                    _collect(_shape_direct(self._sub_extractor(family), mask_s, label, family), result)
                except Exception as exc:  # noqa: BLE001 - reported, never raised
                    result.failures[family] = _explain(exc, _roi_summary(mask.array, label), label, family)
            else:
                result.failures[family] = reason

    def _sub_extractor(self, family: str):
        params = copy.deepcopy(self.params)
        params["featureClass"] = {family: params["featureClass"][family]}
        return _prevalidated(params)

    @classmethod
    def from_resolved(
        cls, params: dict, settings_hash_: str | None = None, *, verbose: bool = False
    ) -> RadiomicsExtractor:
        """Rebuild an extractor from another one's :attr:`params` without validating them again.

        Worker processes use this: validation (pykwalify) takes a large part of a
        small scan's time, and the parameters were validated where they were read.
        """
        quiet_pyradiomics(not verbose)
        self = cls.__new__(cls)
        self._extractor = _prevalidated(params)
        self.params = copy.deepcopy(params)
        self.settings_hash = settings_hash_ or settings_hash(self.params)
        return self


# -- helpers ----------------------------------------------------------------------
def _validated(source: str | Path | dict):
    """A PyRadiomics extractor from a parameter file or dict, checked against PyRadiomics' schema."""
    import pykwalify.errors
    from radiomics import featureextractor

    path = None if isinstance(source, dict) else Path(source)
    if path is not None and not path.is_file():
        raise InputError("PyRadiomics parameter file does not exist", path)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)  # its own log repeats the error below
    try:
        if path is None:
            return featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(source))
        return featureextractor.RadiomicsFeatureExtractor(str(path))
    except pykwalify.errors.PyKwalifyException as exc:
        problem = getattr(exc, "msg", None) or _first_line(exc)
        raise InputError(f"invalid PyRadiomics parameters: {problem}", path) from None


def _prevalidated(params: dict):
    """A PyRadiomics extractor set from resolved (already validated) parameters."""
    from radiomics import featureextractor

    params = copy.deepcopy(params)
    extractor = featureextractor.RadiomicsFeatureExtractor()
    extractor.settings = params["setting"]
    extractor.enabledImagetypes = params["imageType"]
    extractor.enabledFeatures = params["featureClass"]
    return extractor


def quiet_pyradiomics(quiet: bool = True) -> None:
    """Silence PyRadiomics' logger (only errors reach stderr) or restore its defaults."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR if quiet else logging.WARNING)
    logging.getLogger("radiomics").setLevel(logging.ERROR if quiet else logging.INFO)


def settings_hash(params: dict) -> str:
    """SHA-256 hex digest of resolved PyRadiomics parameters and the PyRadiomics version.

    Parameters
    ----------
    params : dict
        ``{"setting": ..., "imageType": ..., "featureClass": ...}`` as resolved by
        :class:`RadiomicsExtractor`.

    Returns
    -------
    str
    """
    import radiomics

    payload = {"params": params, "pyradiomics": radiomics.__version__}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _collect(vector: dict, result: RadiomicsResult) -> None:
    for name, value in vector.items():
        if name.startswith("diagnostics_"):
            result.diagnostics[name] = value
        else:
            result.features[name] = _as_float(value)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _family_of(name: str) -> str:
    """``original_glcm_Contrast`` -> ``original_glcm``; shape features -> ``shape``."""
    image_type, cls, _ = name.split("_", 2)
    return cls if cls in SHAPE_FAMILIES else f"{image_type}_{cls}"


def _nan_families(features: dict, roi: dict) -> dict:
    """Families with NaN values, with a reason (a constant ROI is the usual cause)."""
    counts: dict[str, list[int]] = {}
    for name, value in features.items():
        family = _family_of(name)
        total_nan = counts.setdefault(family, [0, 0])
        total_nan[0] += 1
        total_nan[1] += int(math.isnan(value))
    out = {}
    for family, (total, nans) in counts.items():
        if nans:
            out[family] = f"{nans} of {total} features are NaN{_nan_hint(family, roi)}"
    return out


def _nan_hint(family: str, roi: dict) -> str:
    if family in SHAPE_FAMILIES:
        if roi.get("bbox") and sum(hi > lo for lo, hi in roi["bbox"]) < 3:
            return " (the ROI is flat or a single voxel: it has no 3D principal axes)"
        return ""
    return " (the ROI has a constant intensity)" if roi.get("constant") else ""


def _roi_summary(array: np.ndarray, label: int, image: np.ndarray | None = None) -> dict:
    """Voxel count, bounding box ``[(lo, hi)]`` per axis (z, y, x) and constancy of the ROI."""
    inside = array == label
    voxels = int(np.count_nonzero(inside))
    bbox, constant = None, False
    if voxels:
        bbox = []
        for k in range(3):
            hit = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != k)))
            bbox.append((int(hit[0]), int(hit[-1])))
        if image is not None:
            values = image[inside]
            constant = bool(values.min() == values.max())
    return {"voxels": voxels, "bbox": bbox, "shape": array.shape, "constant": constant}


def _roi_warnings(roi: dict, label: int) -> list[str]:
    if not roi["bbox"]:
        return []
    out = []
    touching = [AXES_ZYX[k] for k, (lo, hi) in enumerate(roi["bbox"]) if lo == 0 or hi == roi["shape"][k] - 1]
    if touching:
        out.append(
            f"mask label {label} touches the volume border along {', '.join(touching)}: the ROI may be cut off, "
            "so shape features (volume, surface, diameters) can be underestimated"
        )
    if roi["constant"] and roi["voxels"] > 1:
        out.append(
            "the ROI has a constant intensity: first-order spread and every texture family (glcm, glrlm, glszm, "
            "gldm, ngtdm) see a single grey level, so their values are degenerate"
        )
    return out


def _explain(exc: Exception, roi: dict, label: int, family: str) -> str:
    """PyRadiomics' exception in the user's terms."""
    text = _first_line(exc)
    if roi["voxels"] == 0 or "No labels found" in text or "not present in mask" in text:
        return f"mask has no voxel with label {label}: nothing to compute"
    if roi["voxels"] == 1 or "1 segmented voxel" in text:
        return f"the ROI is a single voxel: {family} needs at least two voxels"
    if "too few dimensions" in text:
        return f"the ROI is too thin for {family} ({text})"
    if "geometry mismatch" in text or "size mismatch" in text:
        return "image and mask grids differ; enable correctMask in the parameter file to resample the mask"
    return f"{type(exc).__name__}: {text}"


def _shape_direct(extractor, mask_s, label: int, family: str) -> dict:
    """Shape features from the mask alone (no ROI-size checks, no image needed)."""
    import SimpleITK as sitk

    settings = dict(extractor.settings, label=label)
    image_s = sitk.Cast(mask_s, sitk.sitkFloat32)
    image_s, mask_s = extractor.loadImage(image_s, mask_s, None, **settings)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask_s)
    if label not in stats.GetLabels():
        raise ValueError(f"No labels found: label {label} not present in mask")
    start_size = stats.GetBoundingBox(label)
    dim = mask_s.GetDimension()
    bbox = np.ravel([(start_size[k], start_size[k] + start_size[k + dim] - 1) for k in range(dim)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return extractor.computeShape(image_s, mask_s, bbox, **settings)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _who(patient: str | None) -> str:
    return f"patient {patient}: " if patient else ""
