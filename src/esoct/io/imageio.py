"""Read and write CT volumes: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) and DICOM folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume

FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def read_image(path: str | Path, series_uid: str | None = None, patient: str | None = None) -> Volume:
    """Read a CT image or label map into a :class:`Volume`.

    Parameters
    ----------
    path : str or Path
        A NIfTI/NRRD/MetaImage file, or a folder holding a DICOM CT series.
    series_uid : str, optional
        For DICOM folders with several series: the SeriesInstanceUID to read
        (default: the series with the most slices).
    patient : str, optional
        Pseudonymous patient id, used only to name the patient in errors.

    Returns
    -------
    Volume
        Array ``(z, y, x)`` with spacing, origin and direction. DICOM values are
        in Hounsfield units (RescaleSlope/Intercept applied).

    Raises
    ------
    InputError
        Missing path, unknown format or unreadable file, naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file or folder does not exist", path, patient)
    if path.is_dir():
        from esoct.io.dicom import read_dicom_series

        return read_dicom_series(path, series_uid=series_uid, patient=patient).volume
    if not path.name.lower().endswith(FILE_SUFFIXES):
        # a single DICOM file is still a readable scan for SimpleITK
        if not _looks_like_dicom(path):
            raise InputError(f"unknown image format (expected one of {', '.join(FILE_SUFFIXES)} or a DICOM folder)", path, patient)
    import SimpleITK as sitk

    if path.name.lower().endswith(".gz"):
        _check_gzip_complete(path, patient)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read image: {_first_line(exc)}", path, patient) from None
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, found {image.GetDimension()}D", path, patient)
    volume = Volume.from_sitk(image, meta={"source": path.name})
    if np.issubdtype(volume.array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(volume.array)))
        if not bad and path.name.lower().endswith((".nii", ".nii.gz")):
            bad = _nifti_nonfinite(path)  # ITK's NIfTI reader turns NaN into 0: look at the stored values
        if bad:
            raise InputError(f"{bad} voxel(s) are NaN or infinite; esoct does not guess values for them", path, patient)
    return volume


def _nifti_nonfinite(path: Path) -> int:
    """Number of NaN/Inf values stored in a float NIfTI-1/2 file (0 for other data types).

    Why our own reader: ITK replaces NaN by 0 on reading, and nibabel is not a dependency; the
    header fields used (sizeof_hdr, datatype, vox_offset) are fixed by the NIfTI-1/2 standards.
    """
    import gzip
    import struct

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    for order in ("<", ">"):
        size = struct.unpack(order + "i", data[:4])[0]
        if size == 348:
            datatype, offset = struct.unpack(order + "h", data[70:72])[0], int(struct.unpack(order + "f", data[108:112])[0])
            break
        if size == 540:
            datatype, offset = struct.unpack(order + "h", data[12:14])[0], int(struct.unpack(order + "q", data[168:176])[0])
            break
    else:
        return 0
    dtype = {16: "f4", 64: "f8"}.get(datatype)
    if dtype is None:
        return 0
    item = np.dtype(order + dtype)
    usable = (len(data) - offset) // item.itemsize
    values = np.frombuffer(data, dtype=item, count=max(usable, 0), offset=offset)
    return int(np.count_nonzero(~np.isfinite(values)))


def _check_gzip_complete(path: Path, patient: str | None) -> None:
    """Refuse a truncated gzip stream (ITK reads one and fills the missing voxels with 0)."""
    import zlib

    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                decompressor.decompress(chunk)
            except zlib.error as exc:
                raise InputError(f"cannot read image: corrupt gzip data ({exc})", path, patient) from None
    if not decompressor.eof:
        raise InputError("cannot read image: the file is truncated (its gzip stream ends early); copy it again", path, patient)


def write_image(volume: Volume, path: str | Path, compress: bool = True, compression_level: int = 1) -> Path:
    """Write a :class:`Volume` to NIfTI or NRRD, keeping its geometry exactly.

    Parameters
    ----------
    volume : Volume
        What to write.
    path : str or Path
        Target file; the suffix chooses the format (.nii.gz, .nii, .nrrd).
    compress : bool
        Compress the voxel data (gzip) where the format allows it.
    compression_level : int
        zlib level 1 (fast) to 9 (small).

    Returns
    -------
    Path
        The written file.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.name.lower().endswith(FILE_SUFFIXES):
        raise ValueError(f"cannot tell the format of {path}: use one of {', '.join(FILE_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume.to_sitk(), str(path), compress, compression_level)
    return path


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages put the useful part last
    return lines[-1] if lines else type(exc).__name__
