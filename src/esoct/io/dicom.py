"""DICOM CT series: find the series in a folder, read one into a Volume (HU), write one from a Volume.

Reading uses pydicom for headers and pixels: slices are sorted by their position
along the slice normal (never by file name or InstanceNumber), RescaleSlope and
RescaleIntercept are applied per slice, and irregular spacing, missing or
duplicate slices are reported in words. No patient-identifying field is kept.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_HEADER_TAGS = (
    "SOPClassUID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality", "Manufacturer",
    "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
    "SliceThickness", "ConvolutionKernel", "NumberOfFrames",
)
_POSITION_TOL_MM = 1e-3  # two slices closer than this along the normal are duplicates
_TILT_TOL_MM = 0.1  # largest in-plane drift of slice positions before we call it a gantry tilt


# -- data classes ---------------------------------------------------------------
@dataclass
class SeriesInfo:
    """What one series of a folder is, without any patient-identifying field.

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID; may be ``""`` in anonymised exports.
    series_description, modality, manufacturer : str
        As in the headers (``""`` when absent).
    n_slices : int
        Number of image files of the series.
    rows, columns : int
        Image size of the first slice: rows = y, columns = x.
    slice_thickness : float or None
        Nominal SliceThickness in mm (may differ from the slice spacing).
    convolution_kernel : str
        Reconstruction kernel(s), joined by ``"/"``.
    series_number : int or None
    frame_of_reference_uid : str
    files : list of Path
        The files, sorted along the slice normal (feet to head for axial CT).
    """

    series_uid: str
    series_description: str
    modality: str
    manufacturer: str
    n_slices: int
    rows: int
    columns: int
    slice_thickness: float | None
    convolution_kernel: str = ""
    series_number: int | None = None
    frame_of_reference_uid: str = ""
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (no file list)."""
        return {
            "series_uid": self.series_uid,
            "series_description": self.series_description,
            "modality": self.modality,
            "manufacturer": self.manufacturer,
            "n_slices": self.n_slices,
            "rows": self.rows,
            "columns": self.columns,
            "slice_thickness": self.slice_thickness,
            "convolution_kernel": self.convolution_kernel,
            "series_number": self.series_number,
        }


@dataclass
class DicomSeries:
    """A series read into a Volume, with what is known about it and the problems found.

    Attributes
    ----------
    volume : Volume
        Hounsfield units (int16 when every value is an integer, else float32),
        array ``(z, y, x)`` with z along the slice normal.
    info : SeriesInfo
        The series read (``files`` are the slices actually used, in z order).
    problems : list of str
        Plain sentences: irregular spacing, missing or duplicate slices...
    all_series : list of SeriesInfo
        Every image series found in the folder, the chosen one included.
    """

    volume: Volume
    info: SeriesInfo
    problems: list[str] = field(default_factory=list)
    all_series: list[SeriesInfo] = field(default_factory=list)


@dataclass
class _Slice:
    path: Path
    position: np.ndarray
    orientation: np.ndarray
    header: object


@dataclass
class _FolderScan:
    groups: dict[tuple, list[_Slice]]
    unreadable: list[Path] = field(default_factory=list)
    n_multiframe: int = 0


# -- scanning a folder ------------------------------------------------------------
def _sniff(path: Path) -> str:
    """'part10' (DICM preamble), 'raw' (looks like a DICOM data set without preamble) or 'other'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return "other"
    if head[128:132] == b"DICM":
        return "part10"
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00"):  # group 0002 or 0008, little endian
        return "raw"
    return "other"


def _read_header(path: Path, kind: str):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS), force=kind == "raw")
    except Exception:  # noqa: BLE001 - pydicom raises many types on broken files
        return None


def _is_image(ds) -> bool:
    return all(t in ds and not ds[t].is_empty for t in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"))


def _group_key(ds) -> tuple:
    number = ds.get("SeriesNumber", None)
    return (str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("FrameOfReferenceUID", "") or ""),
            "" if number in (None, "") else str(number))


def _scan(folder: Path, files: list[Path] | None = None) -> _FolderScan:
    scan = _FolderScan(groups={})
    paths = sorted(p for p in folder.rglob("*") if p.is_file()) if files is None else sorted(Path(f) for f in files)
    for path in paths:
        kind = _sniff(path)
        if kind == "other":
            continue
        ds = _read_header(path, kind)
        if ds is None:
            if kind == "part10":
                scan.unreadable.append(path)
            continue
        if not _is_image(ds):
            continue  # DICOMDIR, structured reports, RT structures...
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            scan.n_multiframe += 1
            continue
        try:
            position = np.asarray(ds.ImagePositionPatient, dtype=float).reshape(3)
            orientation = np.asarray(ds.ImageOrientationPatient, dtype=float).reshape(6)
        except (ValueError, TypeError):
            scan.unreadable.append(path)
            continue
        scan.groups.setdefault(_group_key(ds), []).append(_Slice(path, position, orientation, ds))
    return scan


def _normal(orientation: np.ndarray) -> np.ndarray:
    n = np.cross(orientation[:3], orientation[3:])
    return n / np.linalg.norm(n)


def _orientation_key(orientation: np.ndarray) -> tuple:
    return tuple(np.round(orientation, 3) + 0.0)  # + 0.0 folds -0.0 into 0.0


def _main_orientation(slices: list[_Slice]) -> np.ndarray:
    counts = Counter(_orientation_key(s.orientation) for s in slices)
    key = counts.most_common(1)[0][0]
    return next(s.orientation for s in slices if _orientation_key(s.orientation) == key)


def _sorted(slices: list[_Slice]) -> list[_Slice]:
    n = _normal(_main_orientation(slices))
    return sorted(slices, key=lambda s: (float(s.position @ n), s.path.name))


def _text(ds, tag: str) -> str:
    from pydicom.multival import MultiValue

    value = ds.get(tag, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "/".join(str(v) for v in value)
    return str(value)


def _info(slices: list[_Slice]) -> SeriesInfo:
    ds = slices[0].header
    thickness = ds.get("SliceThickness", None)
    number = ds.get("SeriesNumber", None)
    return SeriesInfo(
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality"),
        manufacturer=_text(ds, "Manufacturer"),
        n_slices=len(slices),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        slice_thickness=None if thickness in (None, "") else float(thickness),
        convolution_kernel=_text(ds, "ConvolutionKernel"),
        series_number=None if number in (None, "") else int(number),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        files=[s.path for s in slices],
    )


def _ranked(scan: _FolderScan) -> list[list[_Slice]]:
    """Groups, CT first, then most slices first (then by UID, for a stable order)."""
    groups = [_sorted(g) for g in scan.groups.values()]
    return sorted(groups, key=lambda g: (_text(g[0].header, "Modality") != "CT", -len(g), _text(g[0].header, "SeriesInstanceUID")))


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """Find the image series in a folder (searched recursively): CT first, then most slices first.

    Non-DICOM files are skipped silently; DICOM files that are not single-frame
    images with a position and an orientation (DICOMDIR, reports, RT objects)
    are not series.

    Parameters
    ----------
    folder : str or Path
        Folder to search.

    Returns
    -------
    list of SeriesInfo
        One per series, files sorted along the slice normal. A series whose
        SeriesInstanceUID is empty (as in some anonymised exports) is still found;
        series are told apart by (SeriesInstanceUID, FrameOfReferenceUID, SeriesNumber).

    Raises
    ------
    InputError
        The folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("DICOM folder does not exist", folder)
    return [_info(g) for g in _ranked(_scan(folder))]


# -- reading ------------------------------------------------------------------------
def _choose(scan: _FolderScan, series_uid: str | None, folder: Path, patient: str | None) -> tuple[list[_Slice], list[str]]:
    ranked = _ranked(scan)
    if not ranked:
        why = "no CT series found in the folder (no single-frame DICOM image with position and orientation"
        if scan.n_multiframe:
            why += f"; {scan.n_multiframe} multi-frame (enhanced) image file(s), which esoct does not read: convert them first"
        if scan.unreadable:
            why += f"; {len(scan.unreadable)} DICOM file(s) could not be read, e.g. {scan.unreadable[0].name}"
        raise InputError(why + ")", folder, patient)
    if series_uid is None:
        return ranked[0], []
    matches = [g for g in ranked if _text(g[0].header, "SeriesInstanceUID") == series_uid]
    if not matches:
        available = ", ".join(sorted({repr(_text(g[0].header, "SeriesInstanceUID")) for g in ranked}))
        raise InputError(f"no series with SeriesInstanceUID {series_uid!r}; available: {available}", folder, patient)
    notes = []
    if len(matches) > 1:
        notes.append(f"{len(matches)} series share SeriesInstanceUID {series_uid!r}; read the one with most slices")
    return matches[0], notes


def _keep_main_orientation(slices: list[_Slice]) -> tuple[list[_Slice], list[str]]:
    main = _orientation_key(_main_orientation(slices))
    kept = [s for s in slices if _orientation_key(s.orientation) == main]
    if len(kept) == len(slices):
        return slices, []
    others = sorted({_orientation_key(s.orientation) for s in slices} - {main})
    return kept, [(f"mixed slice orientations: {len(slices) - len(kept)} file(s) with ImageOrientationPatient "
                  f"{', '.join(str(list(o)) for o in others)} differ from the main one {list(main)} and were left out")]


def _check_sizes(slices: list[_Slice], folder: Path, patient: str | None) -> None:
    sizes: dict[tuple[int, int], Path] = {}
    for s in slices:
        sizes.setdefault((int(s.header.Rows), int(s.header.Columns)), s.path)
    if len(sizes) > 1:
        listed = "; ".join(f"{r} x {c} (e.g. {p.name})" for (r, c), p in sorted(sizes.items()))
        raise InputError(f"slices of one series have different sizes (rows x columns): {listed}", folder, patient)


def _spacing_problems(positions: np.ndarray) -> tuple[float | None, list[str], np.ndarray]:
    """Median slice gap (mm, None for one slice), the gaps' problems in words, and which slices to keep."""
    problems: list[str] = []
    keep = np.ones(len(positions), dtype=bool)
    if len(positions) < 2:
        return None, problems, keep
    dup = np.diff(positions) < _POSITION_TOL_MM
    if dup.any():
        where = ", ".join(f"{positions[1:][i]:.2f}" for i in np.nonzero(dup)[0][:5])
        problems.append(f"{int(dup.sum())} duplicate slice position(s) (at {where} mm along the normal); "
                        "kept the first file of each")
        keep[1:][dup] = False
    kept = positions[keep]
    if len(kept) < 2:
        return None, problems, keep
    gaps = np.diff(kept)
    median = float(np.median(gaps))
    ratio = gaps / median
    steps = np.rint(ratio).astype(int)
    if (steps >= 2).any() and np.all(np.abs(ratio - steps) < 0.1):
        at = np.nonzero(steps >= 2)[0]
        where = ", ".join(f"{int(steps[i]) - 1} after slice {i} ({kept[i]:.2f} mm)" for i in at[:5])
        problems.append(f"{int((steps - 1).sum())} missing slice(s): the gap is a multiple of the "
                        f"{median:.4g} mm spacing at {where}; the volume's z spacing is wrong beyond them")
    elif gaps.max() - gaps.min() > max(0.01 * median, _POSITION_TOL_MM):
        problems.append(f"non-uniform slice spacing: gaps from {gaps.min():.4g} to {gaps.max():.4g} mm "
                        f"(median {median:.4g} mm used)")
    return median, problems, keep


def _tilt_problems(slices: list[_Slice], normal: np.ndarray) -> list[str]:
    if len(slices) < 2:
        return []
    d = np.array([s.position - slices[0].position for s in slices])
    along = d @ normal
    drift = np.linalg.norm(d - along[:, None] * normal, axis=1)
    if drift.max() <= _TILT_TOL_MM:
        return []
    angle = np.degrees(np.arctan2(drift[-1], abs(along[-1]))) if along[-1] else 90.0
    return [(f"slice positions drift {drift.max():.2f} mm sideways from the slice normal (about {angle:.1f} degrees, "
            "gantry tilt?): the volume geometry ignores this shear")]


def _pixel_spacing_problems(slices: list[_Slice]) -> list[str]:
    values = {tuple(round(float(v), 4) for v in s.header.PixelSpacing) for s in slices if "PixelSpacing" in s.header}
    return [] if len(values) <= 1 else [f"PixelSpacing differs between slices: {sorted(values)}; used the first slice's"]


def _pixels(path: Path, shape: tuple[int, int], patient: str | None) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path, force=True)  # the header was already recognised as DICOM
        if "TransferSyntaxUID" not in ds.file_meta:  # a raw data set without the Part 10 header
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = _transfer_syntax(implicit, little)
        values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken pixel data
        raise InputError(f"cannot read the pixel data of this DICOM file: {exc}", path, patient) from None
    if values.shape != shape:
        raise InputError(f"pixel data has shape {values.shape}, expected rows x columns {shape}", path, patient)
    return values


def _transfer_syntax(implicit_vr: bool | None, little_endian: bool | None) -> str:
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    if implicit_vr:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little_endian in (None, True) else ExplicitVRBigEndian


def _to_compact_dtype(array: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer within int16's range, else float32."""
    if array.size and np.all(np.mod(array, 1) == 0) and array.min() >= -32768 and array.max() <= 32767:
        return array.astype(np.int16)
    return array.astype(np.float32)


def _z_spacing(dz: float | None, ds) -> float:
    if dz is not None and dz > 0:
        return dz
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(tag, None)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def read_dicom_series(folder: str | Path, series_uid: str | None = None, patient: str | None = None) -> DicomSeries:
    """Read a DICOM CT series from a folder into a Volume in Hounsfield units.

    Slices are sorted by their position along the slice normal (the cross
    product of the row and column cosines of ImageOrientationPatient), never by
    file name or InstanceNumber. Geometry: origin = ImagePositionPatient of the
    first sorted slice, direction columns = (row cosine, column cosine, normal),
    spacing x = PixelSpacing[1], y = PixelSpacing[0], z = median gap between
    consecutive slice positions.

    Parameters
    ----------
    folder : str or Path
        Folder holding the series (searched recursively; other files are ignored).
    series_uid : str, optional
        SeriesInstanceUID of the series to read; default the CT series with most slices.
    patient : str, optional
        Pseudonymous patient id for error messages.

    Returns
    -------
    DicomSeries
        ``volume`` (array ``(z, y, x)``, HU), ``info``, ``problems`` (sentences)
        and ``all_series`` (every series of the folder).

    Raises
    ------
    InputError
        Missing folder, no image series, unknown ``series_uid``, slices of
        different sizes, unreadable pixel data (naming the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("DICOM folder does not exist", folder, patient)
    return _read_scan(_scan(folder), folder, series_uid, patient)


def read_dicom_files(files: list[str | Path], patient: str | None = None) -> DicomSeries:
    """Read a DICOM CT series from an explicit list of files (one series, e.g. from a tree index).

    Same reading rules and result as :func:`read_dicom_series`; when the files hold several
    series, the CT series with most slices is read.

    Parameters
    ----------
    files : list of str or Path
        The series' files, in any order.
    patient : str, optional
        Pseudonymous patient id for error messages.

    Returns
    -------
    DicomSeries
    """
    files = [Path(f) for f in files]
    if not files:
        raise InputError("no DICOM files given", None, patient)
    folder = Path(os.path.commonpath([str(f.parent) for f in files]))
    return _read_scan(_scan(folder, files), folder, None, patient)


def _read_scan(scan: _FolderScan, folder: Path, series_uid: str | None, patient: str | None) -> DicomSeries:
    chosen, problems = _choose(scan, series_uid, folder, patient)
    slices, orientation_problems = _keep_main_orientation(chosen)
    problems += orientation_problems
    _check_sizes(slices, folder, patient)
    normal = _normal(slices[0].orientation)
    slices = sorted(slices, key=lambda s: (float(s.position @ normal), s.path.name))
    dz, spacing_problems, keep = _spacing_problems(np.array([float(s.position @ normal) for s in slices]))
    slices = [s for s, k in zip(slices, keep) if k]
    problems += spacing_problems + _tilt_problems(slices, normal) + _pixel_spacing_problems(slices)
    if scan.unreadable:
        problems.append(f"{len(scan.unreadable)} DICOM file(s) could not be read and were skipped, "
                        f"e.g. {scan.unreadable[0].name}")
    ds = slices[0].header
    shape = (int(ds.Rows), int(ds.Columns))
    array = _to_compact_dtype(np.stack([_pixels(s.path, shape, patient) for s in slices]))
    info = _info(slices)
    if info.modality and info.modality != "CT":
        problems.append(f"modality is {info.modality}, not CT: values are not Hounsfield units")
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing) if "PixelSpacing" in ds else (1.0, 1.0)
    if "PixelSpacing" not in ds:
        problems.append("PixelSpacing is missing: assumed 1 mm")
    orientation = slices[0].orientation
    volume = Volume(
        array,
        spacing=(_z_spacing(dz, ds), row_spacing, col_spacing),
        origin=tuple(slices[0].position),
        direction=np.column_stack([orientation[:3], orientation[3:], normal]),
        meta={"source": folder.name, "series_description": info.series_description, "modality": info.modality,
              "manufacturer": info.manufacturer},
    )
    return DicomSeries(volume, info, problems, [_info(g) for g in _ranked(scan)])


# -- writing ------------------------------------------------------------------------
def _stored_values(volume: Volume) -> tuple[np.ndarray, int]:
    """Stored pixel values (HU + 1024, rounded) and PixelRepresentation (0 uint16, 1 int16)."""
    hu = np.asarray(volume.array, dtype=np.float64)
    if not np.all(np.isfinite(hu)):
        raise ValueError("cannot write a DICOM series from a volume with NaN or infinite values")
    stored = np.rint(hu) + 1024
    lo, hi = (float(stored.min()), float(stored.max())) if stored.size else (0.0, 0.0)
    if lo >= 0 and hi <= 65535:
        return stored.astype(np.uint16), 0
    if lo >= -32768 and hi <= 32767:
        return stored.astype(np.int16), 1
    raise ValueError(f"HU range {lo - 1024:.0f}..{hi - 1024:.0f} does not fit 16-bit DICOM pixels")


def _right_handed(volume: Volume) -> Volume:
    """The same physical image with direction column z = x cross y (DICOM's slice normal)."""
    d = volume.direction
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise ValueError("cannot write a DICOM series with a non-orthonormal direction matrix")
    if np.dot(np.cross(d[:, 0], d[:, 1]), d[:, 2]) > 0:
        return volume
    last = volume.index_to_physical((volume.shape[0] - 1, 0, 0))
    flipped = np.column_stack([d[:, 0], d[:, 1], -d[:, 2]])
    return Volume(volume.array[::-1], volume.spacing, tuple(last), flipped, dict(volume.meta))


def _uids(volume: Volume, stored: np.ndarray, patient_id: str, series_description: str, uid_seed: str,
          study_uid: str | None, series_uid: str | None) -> dict[str, str]:
    from pydicom.uid import generate_uid

    digest = hashlib.sha256(np.ascontiguousarray(stored).tobytes())
    digest.update(repr((volume.spacing, volume.origin, volume.direction.round(8).tolist())).encode())
    base = [uid_seed, patient_id, series_description, digest.hexdigest()]
    return {
        "study": study_uid or generate_uid(entropy_srcs=[*base, "study"]),
        "series": series_uid or generate_uid(entropy_srcs=[*base, "series"]),
        "frame": generate_uid(entropy_srcs=[*base, "frame-of-reference"]),
        "sop_base": "|".join([*base, "sop"]),
    }


def _ds(value: float, digits: int) -> str:
    """A DICOM decimal string (at most 16 characters) with up to ``digits`` decimals."""
    for d in range(digits, -1, -1):
        text = f"{value:.{d}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text == "-0":
            text = "0"
        if len(text) <= 16:
            return text
    return f"{value:.6g}"


def _common_header(volume: Volume, uids: dict, patient_id: str, series_description: str,
                   window: tuple[float, float], manufacturer: str, pixel_representation: int) -> dict:
    """Element keyword -> value shared by every slice (order does not matter: pydicom sorts by tag)."""
    d = volume.direction
    sz, sy, sx = volume.spacing
    return {
        "SpecificCharacterSet": "ISO_IR 100",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "SOPClassUID": CT_IMAGE_STORAGE,
        "StudyDate": "20200101", "SeriesDate": "20200101", "ContentDate": "20200101",
        "StudyTime": "120000", "SeriesTime": "120000", "ContentTime": "120000",
        "AccessionNumber": "",
        "Modality": "CT",
        "Manufacturer": manufacturer,
        "ReferringPhysicianName": "",
        "SeriesDescription": series_description,
        "PatientName": patient_id,
        "PatientID": patient_id,
        "PatientBirthDate": "",
        "PatientSex": "",
        "SliceThickness": _ds(sz, 6),
        "KVP": "120",
        "SpacingBetweenSlices": _ds(sz, 6),
        "PatientPosition": "HFS",
        "StudyInstanceUID": uids["study"],
        "SeriesInstanceUID": uids["series"],
        "StudyID": "1",
        "SeriesNumber": 1,
        "AcquisitionNumber": 1,
        "ImageOrientationPatient": [_ds(v, 8) for v in (*d[:, 0], *d[:, 1])],
        "FrameOfReferenceUID": uids["frame"],
        "PositionReferenceIndicator": "",
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": volume.shape[1],
        "Columns": volume.shape[2],
        "PixelSpacing": [_ds(sy, 8), _ds(sx, 8)],
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": pixel_representation,
        "WindowCenter": _ds(window[0], 3),
        "WindowWidth": _ds(window[1], 3),
        "RescaleIntercept": "-1024",
        "RescaleSlope": "1",
        "RescaleType": "HU",
    }


def _slice_dataset(common: dict, k: int, position: np.ndarray, normal: np.ndarray, pixels: np.ndarray, sop_uid: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root; fixed so files are reproducible
    meta.ImplementationVersionName = "ESOCT"
    ds = Dataset()
    ds.file_meta = meta
    for keyword, value in common.items():
        setattr(ds, keyword, value)
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(v, 6) for v in position]
    ds.SliceLocation = _ds(float(position @ normal), 6)
    ds.PixelData = np.ascontiguousarray(pixels).astype("<u2" if pixels.dtype == np.uint16 else "<i2").tobytes()
    return ds


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    patient_id: str,
    series_description: str = "esoct phantom",
    study_uid: str | None = None,
    series_uid: str | None = None,
    uid_seed: str = "",
    window: tuple[float, float] = (40.0, 400.0),
    manufacturer: str = "esoct",
) -> list[Path]:
    """Write a Volume (HU) as a CT Image Storage series, one file per z slice.

    Deterministic: the same inputs give byte-identical files. UIDs are derived
    from ``uid_seed``, ``patient_id``, ``series_description`` and a digest of
    the voxels and geometry (so different volumes get different UIDs); dates are
    fixed (20200101), never the current time. Pixels are stored as uint16 (or
    int16 when some HU < -1024) = round(HU) + 1024, with RescaleIntercept -1024
    and RescaleSlope 1; transfer syntax Explicit VR Little Endian.

    A volume whose direction is left-handed (z column = -(x cross y)) cannot be
    described by DICOM's slice normal: its slices are written in reverse order,
    which is the same physical image; reading it back gives ``array[::-1]``.

    Parameters
    ----------
    volume : Volume
        CT in HU, array ``(z, y, x)``, spacing ``(z, y, x)`` mm, origin LPS mm.
    folder : str or Path
        Output folder (created); files are ``slice_0000.dcm`` ... in z order.
        Older ``slice_NNNN.dcm`` files beyond the new slice count are removed.
    patient_id : str
        Pseudonymous id, written to PatientID and PatientName; no other patient field has a value.
    series_description : str
        SeriesDescription.
    study_uid, series_uid : str, optional
        StudyInstanceUID / SeriesInstanceUID to use (e.g. several series in one study);
        default derived from ``uid_seed``.
    uid_seed : str
        Extra source of entropy for the derived UIDs.
    window : (float, float)
        Default display window (center, width), HU.
    manufacturer : str
        Manufacturer.

    Returns
    -------
    list of Path
        The written files, in slice order along the normal.

    Raises
    ------
    ValueError
        NaN values, HU outside the 16-bit range, or a non-orthonormal direction.
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = _right_handed(volume)
    stored, pixel_representation = _stored_values(volume)
    uids = _uids(volume, stored, patient_id, series_description, uid_seed, study_uid, series_uid)
    common = _common_header(volume, uids, patient_id, series_description, window, manufacturer, pixel_representation)
    positions = volume.index_to_physical(np.array([[k, 0, 0] for k in range(volume.shape[0])], dtype=float))
    normal = volume.direction[:, 2]
    files = []
    for k in range(volume.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[uids["sop_base"], str(k)])
        ds = _slice_dataset(common, k, positions[k], normal, stored[k], sop_uid)
        path = folder / f"slice_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    for stale in folder.glob("slice_[0-9][0-9][0-9][0-9].dcm"):
        if int(stale.stem[6:]) >= volume.shape[0]:
            stale.unlink()
    return files
