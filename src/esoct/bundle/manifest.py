"""``bundle.json``: what a model bundle holds, the package versions that made it, and sha256 checksums.

A bundle is one directory::

    bundle.json                         this manifest
    segmentation/segmenter.pt           3D U-Net segmenter (optional)
    tstage/<kind>/fold-<k>/best.pt      ResoLSTM-Depth / ResNet T1-2 vs T3-4 fold models (optional)
    tstage4/fold-<k>/model.pt           nn-TransEC 4-class T-stage fold models (optional)
    lnm/model.skops                    radiomics lymph-node-metastasis model (optional)
    survival/model.skops               radiomics survival risk model (optional)

``bundle.json`` lists every file with its sha256, and one overall checksum: the sha256 of the
sorted lines ``"<sha256>  <relative path>"`` joined by newlines. :func:`load_bundle` refuses a
bundle whose files are missing or changed, or that was made by another esoct major.minor version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from esoct.errors import InputError

#: Format of ``bundle.json``.
FORMAT = "esoct-bundle/1"
MANIFEST_NAME = "bundle.json"

#: Components in the order predict runs them.
COMPONENTS = ("segmentation", "tstage", "tstage4", "lnm", "survival")

#: (name in bundle.json, distribution name) of the packages whose versions are recorded.
PACKAGES = (
    ("numpy", "numpy"), ("torch", "torch"), ("monai", "monai"), ("SimpleITK", "SimpleITK"),
    ("scikit-learn", "scikit-learn"), ("scikit-survival", "scikit-survival"), ("pyradiomics", "pyradiomics"),
    ("pydicom", "pydicom"), ("highdicom", "highdicom"), ("skops", "skops"), ("pandas", "pandas"),
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of python and of the packages a bundle depends on (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in PACKAGES:
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def esoct_version() -> str:
    """The running esoct version."""
    import esoct

    return esoct.__version__


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def overall_checksum(files: dict[str, str]) -> str:
    """sha256 over the sorted lines ``"<sha256>  <path>"`` of ``files`` (relative path -> sha256)."""
    lines = "\n".join(f"{files[rel]}  {rel}" for rel in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def make_manifest(root: str | Path, components: dict, study: dict) -> dict:
    """The ``bundle.json`` document of a bundle directory whose files are already in place.

    Parameters
    ----------
    root : str or Path
        Bundle directory.
    components : dict
        Component name -> ``{"files": [relative paths], "settings": {...}}``.
    study : dict
        ``name`` and ``seed`` of the study the models come from.

    Returns
    -------
    dict
    """
    root = Path(root)
    files = {rel: sha256_file(root / rel) for comp in components.values() for rel in comp["files"]}
    return {
        "format": FORMAT,
        "esoct_version": esoct_version(),
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "study": dict(study),
        "components": components,
        "packages": package_versions(),
        "files": files,
        "checksum": overall_checksum(files),
    }


def write_manifest(root: str | Path, manifest: dict) -> Path:
    """Write ``bundle.json`` into ``root`` (atomically)."""
    path = Path(root) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


@dataclass
class Bundle:
    """A loaded, verified model bundle.

    Attributes
    ----------
    root : Path
        The bundle directory.
    manifest : dict
        The parsed ``bundle.json``.
    """

    root: Path
    manifest: dict

    @property
    def checksum(self) -> str:
        """The bundle's overall sha256 checksum."""
        return self.manifest["checksum"]

    @property
    def components(self) -> dict:
        """Component name -> ``{"files", "settings"}`` of the components present."""
        return self.manifest.get("components", {})

    def has(self, component: str) -> bool:
        """Whether the bundle holds ``component``."""
        return component in self.components

    def path(self, rel: str) -> Path:
        """Absolute path of a bundle file given relative to the bundle root."""
        return self.root / rel

    def files(self, component: str) -> list[Path]:
        """Absolute paths of ``component``'s files (empty when absent)."""
        return [self.path(rel) for rel in self.components.get(component, {}).get("files", [])]


def read_manifest(root: str | Path) -> dict:
    """Parse ``bundle.json`` of ``root``, with a clear error when it is missing or not a bundle manifest."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("bundle directory does not exist", root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"not a model bundle: no {MANIFEST_NAME} (make one with `esoct export`)", root)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the bundle manifest ({exc})", path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"not an esoct bundle manifest (expected format {FORMAT!r})", path)
    return doc


def verify_files(root: str | Path, manifest: dict) -> None:
    """Check every listed file's sha256 and the overall checksum; raise naming the first bad file.

    Raises
    ------
    InputError
        A file is missing or its checksum differs, or the file list does not give the overall checksum.
    """
    root = Path(root)
    files = manifest.get("files", {})
    for rel in sorted(files):
        path = root / rel
        if not path.is_file():
            raise InputError(f"bundle file {rel} is missing; the bundle is incomplete, re-export it", path)
        if sha256_file(path) != files[rel]:
            raise InputError(f"checksum mismatch for bundle file {rel}: the file was changed or damaged after export; "
                             "re-export the bundle", path)
    if overall_checksum(files) != manifest.get("checksum"):
        raise InputError("the bundle's overall checksum does not match its file list: bundle.json was edited",
                         root / MANIFEST_NAME)
    listed = {rel for comp in manifest.get("components", {}).values() for rel in comp.get("files", [])}
    unlisted = sorted(listed - set(files))
    if unlisted:
        raise InputError(f"bundle component file {unlisted[0]} has no checksum in bundle.json", root / MANIFEST_NAME)


def check_version(manifest: dict, root: str | Path, allow_mismatch: bool = False) -> None:
    """Refuse a bundle made by another esoct major.minor version (unless ``allow_mismatch``)."""
    made, running = str(manifest.get("esoct_version", "unknown")), esoct_version()
    if _major_minor(made) != _major_minor(running) and not allow_mismatch:
        raise InputError(f"bundle was made with esoct {made}, this is esoct {running}; re-export it with this version "
                         "(or pass --allow-version-mismatch at your own risk)", Path(root) / MANIFEST_NAME)


def load_bundle(root: str | Path, *, allow_version_mismatch: bool = False) -> Bundle:
    """Open a bundle directory after checking its version and every file's checksum.

    Parameters
    ----------
    root : str or Path
        Directory written by :func:`esoct.bundle.export.export_bundle`.
    allow_version_mismatch : bool
        Accept a bundle from another esoct major.minor version.

    Returns
    -------
    Bundle

    Raises
    ------
    InputError
        Not a bundle, another esoct version, or a missing or changed file (named).
    """
    root = Path(root)
    manifest = read_manifest(root)
    check_version(manifest, root, allow_version_mismatch)
    verify_files(root, manifest)
    return Bundle(root, manifest)
