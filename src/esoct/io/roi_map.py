"""Map contour (ROI) names of RTSTRUCT / DICOM SEG to esoct's label values.

Clinics name their contours freely ("GTV_primary", "LN 2R", "Oesophagus", "Heart"). A map is an
ordered list of (esoct class, case-insensitive shell patterns); the first class with a matching
pattern wins, so node patterns come before the tumour's ``GTV*``. A YAML file overrides it::

    # roi_map.yaml: class name -> patterns (fnmatch, case-insensitive); order = priority
    lymph node: ["GTVn*", "GTV_N*", "LN*", "*node*", "*lymph*"]
    tumour: ["GTV*", "*tumo*"]
    esophagus: ["*esophag*", "*oesophag*"]
    aorta: ["*aorta*"]
    pericardium: ["heart*", "*pericard*"]
    ignore: ["couch*", "body", "external"]

Names matching ``ignore`` are dropped silently; any other unmatched name is reported.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from esoct.errors import InputError

#: esoct label values (DESIGN.md): the classes of the label maps the study reads.
CLASS_LABELS = {"tumour": 1, "aorta": 2, "esophagus": 3, "lymph node": 4, "pericardium": 5}
_CLASS_ALIASES = {"tumor": "tumour", "node": "lymph node", "lymph_node": "lymph node", "lymph nodes": "lymph node",
                  "nodes": "lymph node", "oesophagus": "esophagus", "heart": "pericardium"}

DEFAULT_PATTERNS: dict[str, list[str]] = {
    "lymph node": ["gtvn*", "gtv_n*", "gtv-n*", "gtvln*", "ln*", "*node*", "*lymph*"],
    "tumour": ["gtv*", "*tumo*", "*primary*"],
    "esophagus": ["*esophag*", "*oesophag*", "*esoph*"],
    "aorta": ["*aorta*"],
    "pericardium": ["heart*", "*pericard*", "*cardi*"],
    "ignore": ["couch*", "body", "external", "skin", "bones", "*ptv*", "*ctv*", "*itv*"],
}

#: Paint order when contours overlap: later classes overwrite earlier ones (tumour inside the esophagus).
PAINT_ORDER = ("pericardium", "aorta", "esophagus", "lymph node", "tumour")


@dataclass
class RoiMap:
    """Ordered class -> patterns map (see the module docstring).

    Examples
    --------
    >>> m = RoiMap.default()
    >>> m.classify("GTV_primary"), m.classify("LN 2R"), m.classify("Oesophagus"), m.classify("Couch")
    ('tumour', 'lymph node', 'esophagus', 'ignore')
    >>> m.classify("Spinal cord") is None
    True
    """

    patterns: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_PATTERNS.items()})

    @classmethod
    def default(cls) -> "RoiMap":
        """The built-in map (:data:`DEFAULT_PATTERNS`)."""
        return cls()

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RoiMap":
        """Read a map from YAML (class name -> list of patterns); every mistake is reported at once.

        Raises
        ------
        InputError
            Missing file, not a mapping, an unknown class name or a pattern that is not text.
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise InputError("ROI map file does not exist", path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise InputError(f"ROI map is not valid YAML: {str(exc).splitlines()[0]}", path) from exc
        if not isinstance(doc, dict):
            raise InputError("ROI map must be a mapping of class name to a list of patterns", path)
        problems, patterns = [], {}
        for name, pats in doc.items():
            cls_name = _CLASS_ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
            if cls_name not in CLASS_LABELS and cls_name != "ignore":
                problems.append(f"unknown class {name!r} (known: {', '.join([*CLASS_LABELS, 'ignore'])})")
                continue
            if isinstance(pats, str):
                pats = [pats]
            if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
                problems.append(f"class {name!r}: patterns must be a list of text")
                continue
            patterns[cls_name] = [p.strip().lower() for p in pats]
        if problems:
            raise InputError("ROI map: " + "; ".join(problems), path)
        return cls(patterns)

    def classify(self, roi_name: str) -> str | None:
        """The esoct class of ``roi_name`` (``"ignore"`` for known non-targets), None when nothing matches."""
        name = " ".join(str(roi_name).strip().lower().split())
        for cls_name, pats in self.patterns.items():
            if any(fnmatch.fnmatchcase(name, p) for p in pats):
                return cls_name
        return None

    def label(self, roi_name: str) -> int | None:
        """esoct label value of ``roi_name``; None for unmatched and ignored names."""
        cls_name = self.classify(roi_name)
        return CLASS_LABELS.get(cls_name) if cls_name else None
