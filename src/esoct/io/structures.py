"""Contours (RTSTRUCT) and segmentations (DICOM SEG) to an esoct label map on the CT grid.

RTSTRUCT polygons are filled by rt-utils (``RTStruct.get_roi_mask_by_name``), the small,
widely used library for RT structure sets: it fills each contour on the CT slice its
ContourImageSequence references. Before that, esoct checks what rt-utils would drop
silently: contours referencing a slice that is not in the series (named, per ROI), and
contours without a slice reference (matched here by their z position, as the standard
allows the reference to be absent). DICOM SEG is read by highdicom, frames matched to
the series by their source SOP instances.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.roi_map import CLASS_LABELS, PAINT_ORDER, RoiMap
from esoct.io.volume import Volume


@dataclass
class StructureResult:
    """A label map made from one RTSTRUCT or SEG, with what happened to every ROI.

    Attributes
    ----------
    labels : Volume
        uint8 label map ``(z, y, x)`` on the CT's grid (esoct label values).
    rois : dict of str to str
        ROI name -> the esoct class it went to, ``"ignore"``, or ``"unmapped"``.
    voxels : dict of str to int
        ROI name -> voxels filled.
    problems : list of str
        Sentences: unmapped names, contours on missing slices, empty ROIs.
    """

    labels: Volume
    rois: dict[str, str] = field(default_factory=dict)
    voxels: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _slice_headers(files: list[Path]):
    import pydicom

    return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _slice_positions(headers) -> np.ndarray:
    o = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(o[:3], o[3:])
    return np.array([float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=float))) for h in headers]), normal


def _attach_missing_references(ds, headers, roi_names: dict[int, str]) -> list[str]:
    """Give contours without ContourImageSequence the slice at their z (within half a slice); report the rest."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    positions, normal = _slice_positions(headers)
    half = 0.5 * (float(np.median(np.diff(positions))) if len(positions) > 1 else 1.0)
    problems = []
    for roi_contour in ds.get("ROIContourSequence", []):
        name = roi_names.get(int(roi_contour.ReferencedROINumber), f"ROI {roi_contour.ReferencedROINumber}")
        unplaced = 0
        for contour in roi_contour.get("ContourSequence", []):
            if "ContourImageSequence" in contour and len(contour.ContourImageSequence):
                continue
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            z = float(np.mean(points @ normal))
            k = int(np.argmin(np.abs(positions - z)))
            if abs(positions[k] - z) > half:
                unplaced += 1
                continue
            ref = Dataset()
            ref.ReferencedSOPClassUID = headers[k].SOPClassUID
            ref.ReferencedSOPInstanceUID = headers[k].SOPInstanceUID
            contour.ContourImageSequence = Sequence([ref])
        if unplaced:
            problems.append(f"ROI {name!r}: {unplaced} contour(s) lie outside the CT series and were dropped")
    return problems


def _missing_slice_problems(ds, sop_uids: set[str], roi_names: dict[int, str]) -> list[str]:
    problems = []
    for roi_contour in ds.get("ROIContourSequence", []):
        name = roi_names.get(int(roi_contour.ReferencedROINumber), f"ROI {roi_contour.ReferencedROINumber}")
        missing = set()
        n = 0
        for contour in roi_contour.get("ContourSequence", []):
            for ref in contour.get("ContourImageSequence", []):
                if str(ref.ReferencedSOPInstanceUID) not in sop_uids:
                    missing.add(str(ref.ReferencedSOPInstanceUID))
                    n += 1
        if missing:
            problems.append(f"ROI {name!r}: {n} contour(s) reference {len(missing)} slice(s) that are not in the "
                            "CT series (deleted or never exported); those contours were dropped")
    return problems


def _target_class(name: str, what: str, roi_map: RoiMap, result: StructureResult, problems: list[str]) -> str | None:
    """The class ``name`` goes to (recorded in ``result.rois``); None when it is ignored or unmapped."""
    cls_name = roi_map.classify(name)
    result.rois[name] = cls_name or "unmapped"
    if cls_name is None:
        problems.append(f"{what} {name!r} matches no class of the ROI map and was left out")
    return None if cls_name in (None, "ignore") else cls_name


def _on_grid(array: np.ndarray, ct: Volume) -> Volume:
    return Volume(array, spacing=ct.spacing, origin=ct.origin, direction=np.array(ct.direction, copy=True))


def _paint(shape: tuple[int, int, int], masks: dict[str, np.ndarray], classes: dict[str, str]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for cls_name in PAINT_ORDER:
        for name, mask in masks.items():
            if classes[name] == cls_name:
                out[mask] = CLASS_LABELS[cls_name]
    return out


def rtstruct_to_labels(rtstruct_path: str | Path, ct: Volume, ct_files: list[Path], roi_map: RoiMap | None = None,
                       *, patient: str | None = None) -> StructureResult:
    """Fill the contours of an RTSTRUCT into an esoct label map on the CT grid.

    Parameters
    ----------
    rtstruct_path : str or Path
        The RT Structure Set file.
    ct : Volume
        The CT it was drawn on, as :func:`esoct.io.dicom.read_dicom_series` read it (array ``(z, y, x)``).
    ct_files : list of Path
        The CT's files in ``ct``'s z order (``DicomSeries.info.files``).
    roi_map : RoiMap, optional
        ROI name -> class; default :meth:`RoiMap.default`.
    patient : str, optional
        Pseudonymous id for error messages.

    Returns
    -------
    StructureResult

    Raises
    ------
    InputError
        Not an RT Structure Set, or it references none of the CT's slices.
    """
    import pydicom
    from rt_utils.rtstruct import RTStruct

    roi_map = roi_map or RoiMap.default()
    rtstruct_path = Path(rtstruct_path)
    try:
        ds = pydicom.dcmread(rtstruct_path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"unreadable RTSTRUCT ({type(exc).__name__})", rtstruct_path, patient) from exc
    if "ROIContourSequence" not in ds or "StructureSetROISequence" not in ds:
        raise InputError("not an RT Structure Set (no ROIContourSequence / StructureSetROISequence)", rtstruct_path, patient)
    headers = _slice_headers(ct_files)
    if len(headers) != ct.shape[0]:
        raise InputError(f"{len(headers)} CT files for a volume of {ct.shape[0]} slices", rtstruct_path, patient)
    roi_names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    ds = copy.deepcopy(ds)
    problems = _attach_missing_references(ds, headers, roi_names)
    problems += _missing_slice_problems(ds, {str(h.SOPInstanceUID) for h in headers}, roi_names)
    # rt-utils' ROI lookup needs every ROIContourSequence item to carry ContourSequence
    for roi_contour in ds.ROIContourSequence:
        if "ContourSequence" not in roi_contour:
            roi_contour.ContourSequence = pydicom.sequence.Sequence([])
    if not ds.get("ReferencedFrameOfReferenceSequence"):  # optional in practice; rt-utils reads its last item
        ref = pydicom.dataset.Dataset()
        ref.FrameOfReferenceUID = str(headers[0].get("FrameOfReferenceUID", ""))
        ds.ReferencedFrameOfReferenceSequence = pydicom.sequence.Sequence([ref])
    struct = RTStruct(headers, ds)
    result = StructureResult(labels=ct)
    masks = {}
    for name in roi_names.values():
        cls_name = _target_class(name, "ROI", roi_map, result, problems)
        if cls_name is None:
            continue
        mask = np.asarray(struct.get_roi_mask_by_name(name), dtype=bool)  # (row, column, slice)
        mask = np.transpose(mask, (2, 0, 1))
        if mask.shape != ct.shape:
            raise InputError(f"ROI {name!r}: mask {mask.shape} does not match the CT {ct.shape}", rtstruct_path, patient)
        result.voxels[name] = int(mask.sum())
        if not mask.any():
            problems.append(f"ROI {name!r} ({cls_name}) is empty on this CT")
        masks[name] = mask
    result.labels = _on_grid(_paint(ct.shape, masks, result.rois), ct)
    result.problems = problems
    return result


def seg_to_labels(seg_path: str | Path, ct: Volume, ct_files: list[Path], roi_map: RoiMap | None = None,
                  *, patient: str | None = None) -> StructureResult:
    """Read a DICOM SEG (highdicom) into an esoct label map on the CT grid.

    Segments are mapped by their SegmentLabel through ``roi_map``; frames are placed on the CT slice
    whose SOPInstanceUID they reference.

    Parameters
    ----------
    seg_path : str or Path
        The DICOM SEG file.
    ct, ct_files, roi_map, patient
        As :func:`rtstruct_to_labels`.

    Returns
    -------
    StructureResult
    """
    import highdicom as hd
    import pydicom

    roi_map = roi_map or RoiMap.default()
    seg_path = Path(seg_path)
    try:
        seg = hd.seg.segread(seg_path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"unreadable DICOM SEG ({type(exc).__name__}: {exc})", seg_path, patient) from exc
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            for f in ct_files]
    referenced = {str(item.ReferencedSOPInstanceUID) for item in _seg_source_refs(seg)}
    problems = []
    missing = referenced - set(uids)
    if missing:
        problems.append(f"{len(missing)} frame source slice(s) are not in the CT series; those frames were dropped")
    numbers = list(seg.segment_numbers)
    present = [u for u in uids if u in referenced]
    result = StructureResult(labels=ct)
    if not present:
        raise InputError("the DICOM SEG references none of the CT's slices", seg_path, patient)
    planes = seg.get_pixels_by_source_instance(present, segment_numbers=numbers, ignore_spatial_locations=True,
                                               assert_missing_frames_are_empty=False)
    index = {u: k for k, u in enumerate(uids)}
    masks = {}
    for i, n in enumerate(numbers):
        name = str(seg.get_segment_description(n).segment_label)
        if _target_class(name, "segment", roi_map, result, problems) is None:
            continue
        mask = np.zeros(ct.shape, dtype=bool)
        for j, u in enumerate(present):
            mask[index[u]] = planes[j, :, :, i] > 0
        result.voxels[name] = int(mask.sum())
        masks[name] = mask
    result.labels = _on_grid(_paint(ct.shape, masks, result.rois), ct)
    result.problems = problems
    return result


def _seg_source_refs(seg):
    """Every ReferencedSOPInstanceUID item of the SEG's per-frame derivation source images."""
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in frame.get("DerivationImageSequence", []):
            yield from derivation.get("SourceImageSequence", [])
