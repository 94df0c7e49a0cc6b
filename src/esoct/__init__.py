"""esoct: CT-based esophageal cancer analysis, from DICOM to the paper's tables.

``import esoct`` stays light: torch, MONAI and PyRadiomics are imported only by
the modules that need them.
"""

from esoct.errors import EsoctError, InputError
from esoct.io.volume import Volume

__version__ = "0.1.0"

__all__ = ["EsoctError", "InputError", "Volume", "__version__"]
