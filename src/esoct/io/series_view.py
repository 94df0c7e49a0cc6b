"""One series of a DICOM folder as a folder of its own: the manifest's ``<column>_series`` cells.

A PACS export often holds several CT series per study folder (non-contrast, arterial, venous
phase). Without a choice esoct reads the CT series with the most slices. A manifest that names
the series per patient -- a column ``image_pre_series`` (or ``image_post_series``) holding the
SeriesInstanceUID or the SeriesNumber -- gets exactly that series everywhere: `esoct check`,
segmentation, radiomics, ROI extraction and the nnU-Net export all receive the path of a *series
view*, a folder of links to that series' files only, so no reader has to be told about series.

Why links in a cache folder and not a ``series`` argument on every reader: the image path travels
through worker processes, Dask tasks, caches and exports; a path that already means one series
needs no change in any of them. The views live under ``$ESOCT_CACHE/series`` (default
``~/.cache/esoct/series``), one per (folder, series), named by a hash (no identifying text). Where
the file system refuses symbolic links the files are copied.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from esoct.errors import InputError

#: Suffix of a manifest column naming the series of the image column before it.
SERIES_SUFFIX = "_series"


def cache_root() -> Path:
    """Folder holding the series views: ``$ESOCT_CACHE/series`` or ``~/.cache/esoct/series``."""
    base = os.environ.get("ESOCT_CACHE") or Path.home() / ".cache" / "esoct"
    return Path(base) / "series"


def series_view(folder: str | Path, series: str, patient: str | None = None) -> Path:
    """The folder of links to one series of a DICOM folder (made on first use).

    Parameters
    ----------
    folder : str or Path
        A folder holding one or more DICOM series (searched recursively).
    series : str
        SeriesInstanceUID, or the SeriesNumber (digits) of the series.
    patient : str, optional
        Pseudonymous id, named in errors.

    Returns
    -------
    Path
        A folder holding only that series' files (links, or copies where links are refused).

    Raises
    ------
    InputError
        No such series in the folder (listing the series it holds), or a number matching several.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError("a series is named for this cell, but the path is not a DICOM folder", folder, patient)
    return _view(folder, str(series).strip(), folder.stat().st_mtime_ns, patient)


@functools.lru_cache(maxsize=256)
def _view(folder: Path, series: str, mtime_ns: int, patient: str | None) -> Path:
    files = _series_files(folder, series, patient)
    key = hashlib.sha256(f"{folder}\n{series}".encode()).hexdigest()[:24]
    target = cache_root() / key
    if _is_current(target, files):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    for i, f in enumerate(files):
        link = tmp / f"{i:05d}.dcm"
        try:
            link.symlink_to(f)
        except OSError:  # file systems without symbolic links (some Windows setups)
            shutil.copy2(f, link)
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _series_files(folder: Path, series: str, patient: str | None) -> list[Path]:
    from esoct.io.dicom import list_series

    found = list_series(folder)
    match = [s for s in found if s.series_uid and s.series_uid == series]
    if not match and series.isdigit():
        match = [s for s in found if s.series_number is not None and int(s.series_number) == int(series)]
        if len(match) > 1:
            raise InputError(f"SeriesNumber {series} names {len(match)} series; give the SeriesInstanceUID instead",
                             folder, patient)
    if not match:
        listing = "; ".join(f"{s.series_uid or '(no UID)'} (number {s.series_number}, {s.modality}, "
                            f"{s.n_slices} slices, {s.series_description or 'no description'})" for s in found)
        raise InputError(f"no series {series!r} (SeriesInstanceUID or SeriesNumber) in the folder; it holds: "
                         f"{listing or 'no image series'}", folder, patient)
    return [Path(f).resolve() for f in match[0].files]


def _is_current(target: Path, files: list[Path]) -> bool:
    if not target.is_dir():
        return False
    links = sorted(target.iterdir())
    if len(links) != len(files):
        return False
    return all(link.is_symlink() and Path(os.readlink(link)) == f for link, f in zip(links, files)) or \
        all(not link.is_symlink() for link in links)
