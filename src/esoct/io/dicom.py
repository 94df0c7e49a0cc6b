"""DICOM CT series: find the series in a folder, read one into a Volume (HU), write one from a Volume.

Reading uses pydicom for headers and pixels: slices are sorted by their position
along the slice normal (never by file name or InstanceNumber), RescaleSlope and
RescaleIntercept are applied per slice, and irregular spacing, missing or
duplicate slices are reported in words. No patient-identifying field is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_HEADER_TAGS = (
    "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality", "Manufacturer", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SliceThickness",
    "ConvolutionKernel", "RescaleSlope", "RescaleIntercept",
)


@dataclass
class SeriesInfo:
    """What a folder's series is, without any patient-identifying field.

    ``files`` are sorted along the slice normal (feet to head for axial CT).
    """

    series_uid: str
    series_description: str
    modality: str
    manufacturer: str
    n_slices: int
    rows: int
    columns: int
    slice_thickness: float | None
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
        }


@dataclass
class DicomSeries:
    """A series read into a Volume, with what is known about it and the problems found."""

    volume: Volume
    info: SeriesInfo
    problems: list[str] = field(default_factory=list)


@dataclass
class _Slice:
    path: Path
    position: np.ndarray
    orientation: np.ndarray
    header: object


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError):
        return None


def _group_key(ds) -> tuple:
    iop = tuple(np.round(np.asarray(ds.ImageOrientationPatient, dtype=float), 3))
    return (str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("FrameOfReferenceUID", "") or ""),
            str(ds.get("SeriesNumber", "") or ""), iop)


def _scan(folder: Path) -> tuple[dict[tuple, list[_Slice]], int]:
    groups: dict[tuple, list[_Slice]] = {}
    n_other = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = _read_header(path)
        if ds is None or "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds or "Rows" not in ds:
            n_other += 1
            continue
        s = _Slice(path, np.asarray(ds.ImagePositionPatient, float), np.asarray(ds.ImageOrientationPatient, float), ds)
        groups.setdefault(_group_key(ds), []).append(s)
    return groups, n_other


def _normal(orientation: np.ndarray) -> np.ndarray:
    return np.cross(orientation[:3], orientation[3:])


def _info(slices: list[_Slice]) -> SeriesInfo:
    ds = slices[0].header
    thickness = ds.get("SliceThickness", None)
    return SeriesInfo(
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        n_slices=len(slices),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        slice_thickness=None if thickness in (None, "") else float(thickness),
        files=[s.path for s in slices],
    )


def _sorted(slices: list[_Slice]) -> list[_Slice]:
    n = _normal(slices[0].orientation)
    return sorted(slices, key=lambda s: (float(s.position @ n), s.path.name))


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """Find the image series in a folder (searched recursively), largest first.

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    list of SeriesInfo
        One per series, files sorted along the slice normal. A series whose
        SeriesInstanceUID is empty (as in some anonymised exports) is still found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("DICOM folder does not exist", folder)
    groups, _ = _scan(folder)
    infos = [_info(_sorted(g)) for g in groups.values()]
    return sorted(infos, key=lambda i: (-i.n_slices, i.series_uid))


def _choose(groups: dict, series_uid: str | None, folder: Path, patient: str | None) -> list[_Slice]:
    if not groups:
        raise InputError("no CT series found in the folder (no DICOM image with position and orientation)", folder, patient)
    if series_uid is None:
        return max(groups.values(), key=len)
    chosen = [s for key, g in groups.items() if key[0] == series_uid for s in g]
    if not chosen:
        available = ", ".join(sorted(repr(k[0]) for k in groups)) or "none"
        raise InputError(f"no series with SeriesInstanceUID {series_uid!r}; available: {available}", folder, patient)
    return chosen


def _spacing_problems(positions: np.ndarray) -> tuple[float, list[str], np.ndarray]:
    """Median slice gap (mm), the problems of the gaps in words, and which slices to keep."""
    problems: list[str] = []
    keep = np.ones(len(positions), dtype=bool)
    if len(positions) < 2:
        return 1.0, problems, keep
    gaps = np.diff(positions)
    dup = gaps < 1e-3
    if dup.any():
        problems.append(f"{int(dup.sum())} duplicate slice position(s); kept the first file of each")
        keep[1:][dup] = False
        gaps = np.diff(positions[keep])
    if len(gaps) == 0:
        return 1.0, problems, keep
    median = float(np.median(gaps))
    ratio = gaps / median
    missing = np.rint(ratio).astype(int) - 1
    if (missing >= 1).any() and np.all(np.abs(ratio - np.rint(ratio)) < 0.1):
        where = [f"{float(positions[keep][i]):.1f} mm" for i in np.nonzero(missing >= 1)[0]]
        problems.append(f"{int(missing.sum())} missing slice(s): gaps of a multiple of {median:.3g} mm after {', '.join(where)}")
    elif gaps.max() - gaps.min() > max(0.01 * median, 1e-3):
        problems.append(f"non-uniform slice spacing: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm (median {median:.3g} mm)")
    return median, problems, keep


def _pixels(path: Path, folder: Path, patient: str | None) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
        return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    except Exception as exc:  # pydicom raises many types for broken pixel data
        raise InputError(f"cannot read the pixel data of this DICOM file: {exc}", path, patient) from None


def read_dicom_series(folder: str | Path, series_uid: str | None = None, patient: str | None = None) -> DicomSeries:
    """Read a DICOM CT series from a folder into a Volume in Hounsfield units.

    Parameters
    ----------
    folder : str or Path
        Folder holding the series (searched recursively; other files are ignored).
    series_uid : str, optional
        SeriesInstanceUID of the series to read; default the series with most slices.
    patient : str, optional
        Pseudonymous patient id for error messages.

    Returns
    -------
    DicomSeries
        ``volume`` (array ``(z, y, x)``, z along the slice normal), ``info`` and ``problems``.

    Raises
    ------
    InputError
        Missing folder, no image series, inconsistent slice sizes, unreadable pixels.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("DICOM folder does not exist", folder, patient)
    groups, _ = _scan(folder)
    slices = _sorted(_choose(groups, series_uid, folder, patient))
    sizes = {(int(s.header.Rows), int(s.header.Columns)) for s in slices}
    if len(sizes) > 1:
        raise InputError(f"slices of one series have different sizes (rows, columns): {sorted(sizes)}", folder, patient)
    normal = _normal(slices[0].orientation)
    positions = np.array([float(s.position @ normal) for s in slices])
    dz, problems, keep = _spacing_problems(positions)
    slices = [s for s, k in zip(slices, keep) if k]
    if any(not np.allclose(s.orientation, slices[0].orientation, atol=1e-3) for s in slices):
        problems.append("slices have different ImageOrientationPatient")
    array = np.stack([_pixels(s.path, folder, patient) for s in slices])
    if np.all(np.mod(array, 1) == 0) and array.min() >= -32768 and array.max() <= 32767:
        array = array.astype(np.int16)
    else:
        array = array.astype(np.float32)
    ds = slices[0].header
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    direction = np.column_stack([slices[0].orientation[:3], slices[0].orientation[3:], normal])
    info = _info(slices)
    volume = Volume(
        array,
        spacing=(dz, row_spacing, col_spacing),
        origin=tuple(slices[0].position),
        direction=direction,
        meta={"source": folder.name, "series_description": info.series_description, "modality": info.modality,
              "manufacturer": info.manufacturer},
    )
    return DicomSeries(volume, info, problems)


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    patient_id: str,
    series_description: str = "esoct phantom",
    uid_seed: str = "",
    window: tuple[float, float] = (40.0, 400.0),
    manufacturer: str = "esoct",
) -> list[Path]:
    """Write a Volume (HU) as a CT Image Storage series, one file per z slice.

    Deterministic: the same inputs give byte-identical files (UIDs are derived
    from ``uid_seed``; no current date or time is written). Pixels are stored as
    uint16 with RescaleIntercept -1024 and RescaleSlope 1.

    Parameters
    ----------
    volume : Volume
        CT in HU, array ``(z, y, x)``.
    folder : str or Path
        Output folder (created); files are ``slice_0000.dcm`` ...
    patient_id : str
        Pseudonymous id written to PatientID and PatientName.
    series_description : str
    uid_seed : str
        Source of the Study, Series, Frame of Reference and SOP Instance UIDs.
    window : (center, width)
        Default display window, HU.
    manufacturer : str

    Returns
    -------
    list of Path
        The written files, in z order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(entropy_srcs=[uid_seed, "study"])
    series_uid = generate_uid(entropy_srcs=[uid_seed, "series"])
    frame_uid = generate_uid(entropy_srcs=[uid_seed, "frame"])
    stored = np.clip(np.rint(volume.array.astype(np.float64)) + 1024, 0, 65535).astype(np.uint16)
    d = volume.direction
    sz, sy, sx = volume.spacing
    files = []
    for k in range(volume.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "slice", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = generate_uid(entropy_srcs=["esoct"])
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = patient_id
        ds.PatientID = patient_id
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20200101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.Modality = "CT"
        ds.Manufacturer = manufacturer
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        position = volume.index_to_physical((k, 0, 0))
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*d[:, 0], *d[:, 1])]
        ds.SliceLocation = f"{float(position @ d[:, 2]):.6f}"
        ds.PixelSpacing = [f"{sy:.8f}", f"{sx:.8f}"]
        ds.SliceThickness = f"{sz:.6f}"
        ds.SpacingBetweenSlices = f"{sz:.6f}"
        ds.KVP = "120"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / f"slice_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
