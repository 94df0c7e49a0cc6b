"""What a cached result was computed from: the identity of its input files and its settings.

Every per-patient cache (radiomics, deep-feature slabs, ROI and KRT crops) stores the key of
its inputs beside the result and recomputes when the key differs, so editing a manifest (a new
mask, a different series) or a setting never reuses a stale crop. A file's identity is its
resolved path, size and modification time (nanoseconds): cheap enough for every cache lookup
and changed by any rewrite; hashing the content of every CT on every lookup would cost seconds
per patient.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_fingerprint(path: str | Path | None) -> list:
    """Path, size and modification time of a file, or of every file of a DICOM folder.

    Parameters
    ----------
    path : str, Path or None
        A file or a folder (its files, links followed: a series view's links count as their targets).

    Returns
    -------
    list
        JSON-serialisable; ``[path, "missing"]`` when nothing is there.
    """
    if path is None:
        return [None]
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    if p.is_dir():
        files = [f for f in sorted(p.iterdir()) if f.is_file()]
        return [str(p.resolve())] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    return [str(p), "missing"]


def input_key(paths, settings=None) -> str:
    """SHA-256 (hex) of the fingerprints of ``paths`` and of ``settings`` (anything JSON can write).

    Parameters
    ----------
    paths : sequence of str, Path or None
        The input files in a fixed order (e.g. image, mask).
    settings : object, optional
        What else the result depends on (sizes, spacings, label, parameter hash).

    Returns
    -------
    str
    """
    doc = [[file_fingerprint(p) for p in paths], settings]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
