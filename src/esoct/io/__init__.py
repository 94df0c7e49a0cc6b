"""Reading and writing CT: Volume, NIfTI/NRRD, DICOM series, cohort manifest."""

from esoct.io.imageio import read_image, write_image
from esoct.io.manifest import check_manifest, load_manifest
from esoct.io.volume import Volume

__all__ = ["Volume", "check_manifest", "load_manifest", "read_image", "write_image"]
