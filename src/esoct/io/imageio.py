"""Read and write CT volumes: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) and DICOM folders."""

from __future__ import annotations

from pathlib import Path

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

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read image: {_first_line(exc)}", path, patient) from None
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, found {image.GetDimension()}D", path, patient)
    return Volume.from_sitk(image, meta={"source": path.name})


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
