"""Two-stage segmentation cascade: the whole thorax coarse, then a box along the esophagus fine.

Like nnU-Net's ``3d_lowres -> 3d_cascade_fullres`` (and nn-TransEC Fig. 5), with the second
stage restricted to where the small structures are:

* **Stage 1** works on the whole CT at a coarse spacing and finds the large organs: aorta (2),
  esophagus (3, the tumour counted as esophagus) and pericardium (5); lymph nodes are background.
* **Crop**: the bounding box of stage 1's esophagus, dilated by ``margin_mm`` ``(z, y, x)`` so
  that the periesophageal and recurrent-laryngeal-nerve node stations lie inside it (the default
  margin is derived from the phantom's station rules, :mod:`esoct.phantom.stations`).
* **Stage 2** works on that box at the fine spacing its own plan chose, with stage 1's organs as
  one-hot input channels (nnU-Net's cascade input), and segments all five classes -- tumour,
  esophagus and lymph nodes are what it is for.
* **Paste**: inside the box the stage-2 labels replace stage 1's; outside it stage 1's aorta and
  pericardium remain. Post-processing then keeps one component per organ, drops small tumour
  islands and removes node components under ``min_node_mm3``.

Files (:func:`write_cascade`, :func:`load_segmentation`): a folder with ``cascade.json``
(margin, node and tumour thresholds, context classes), ``stage1.pt`` and ``stage2.pt``
(training checkpoints, :func:`esoct.segment.inference.load_segmenter`) and the two plans.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.segment.inference import Segmenter, predict_volume
from esoct.segment.postprocess import ESOPHAGUS, LYMPH_NODE, TUMOUR, postprocess_labels

#: Stage-1 targets: tumour voxels count as esophagus, lymph nodes as background.
STAGE1_LABEL_MAP = {TUMOUR: ESOPHAGUS, LYMPH_NODE: 0}
#: Stage-1 classes given to stage 2 as one-hot input channels (aorta, esophagus, pericardium).
CONTEXT_CLASSES = (2, 3, 5)
#: Default smallest lymph node kept, mm^3 (see :func:`esoct.segment.postprocess.postprocess_labels`).
MIN_NODE_MM3 = 30.0
CASCADE_FILE = "cascade.json"
_FORMAT = "esoct-cascade-1"


def stage1_targets(labels: np.ndarray) -> np.ndarray:
    """Stage-1 label map: tumour -> esophagus, lymph node -> background (uint8, same shape)."""
    out = np.asarray(labels).astype(np.uint8, copy=True)
    for src, dst in STAGE1_LABEL_MAP.items():
        out[out == src] = dst
    return out


def crop_box(labels: Volume, margin_mm, *, classes=(TUMOUR, ESOPHAGUS), patient: str | None = None):
    """Voxel box around the esophagus of a label map, dilated by a margin and clipped to the grid.

    Parameters
    ----------
    labels : Volume
        Label map ``(z, y, x)`` (stage 1's prediction or a reference).
    margin_mm : sequence of 3 float
        Dilation ``(z, y, x)`` on each side, mm.
    classes : sequence of int
        Labels whose bounding box is taken (tumour and esophagus).
    patient : str, optional
        Named in the error.

    Returns
    -------
    (start, size) : tuple of two int tuples
        ``(z, y, x)`` first voxel and extent of the box on ``labels``' grid.

    Raises
    ------
    InputError
        No voxel of ``classes``: stage 1 found no esophagus, there is nothing to crop around.
    """
    mask = np.isin(labels.array, list(classes))
    if not mask.any():
        raise InputError("stage 1 found no esophagus: the cascade has nothing to crop around", patient=patient)
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    pad = np.ceil(np.asarray(margin_mm, dtype=float) / np.asarray(labels.spacing, dtype=float)).astype(int)
    lo = np.maximum([i[0] for i in idx] - pad, 0)
    hi = np.minimum([i[-1] + 1 for i in idx] + pad, labels.shape)
    return tuple(int(v) for v in lo), tuple(int(v) for v in hi - lo)


def context_channels(labels: np.ndarray, classes=CONTEXT_CLASSES) -> np.ndarray:
    """One-hot float32 ``(len(classes), z, y, x)`` of the given stage-1 classes."""
    lab = np.asarray(labels)
    return np.stack([(lab == c) for c in classes]).astype(np.float32)


def paste(stage1: Volume, stage2: Volume, start) -> Volume:
    """Stage-2 labels written into stage 1's map at ``start`` (same grid); stage 1's esophagus outside the box is dropped.

    Returns
    -------
    Volume
        uint8 label map with ``stage1``'s geometry.
    """
    out = np.array(stage1.array, dtype=np.uint8, copy=True)
    out[out == ESOPHAGUS] = 0  # the esophagus is stage 2's; the box contains all of stage 1's anyway
    sl = tuple(slice(int(a), int(a) + int(n)) for a, n in zip(start, stage2.shape))
    out[sl] = stage2.array
    return stage1.with_array(out)


@dataclass
class CascadeSegmenter:
    """The two trained stages and the rules that join them (see the module docstring).

    Attributes
    ----------
    stage1, stage2 : Segmenter
        Coarse whole-CT network; fine network on the esophageal box (``1 + len(context)``
        input channels when ``context`` is true).
    margin_mm : tuple of 3 float
        Box dilation ``(z, y, x)``, mm.
    min_node_mm3 : float
        Smallest lymph-node component kept, mm^3.
    min_tumour_ml : float
        Tumour islands below this volume are removed (the largest is kept), ml.
    context : bool
        Stage 2 takes stage 1's organs as one-hot channels.
    """

    stage1: Segmenter
    stage2: Segmenter
    margin_mm: tuple = (6.0, 33.0, 24.0)
    min_node_mm3: float = MIN_NODE_MM3
    min_tumour_ml: float = 0.5
    context: bool = True
    files: dict = field(default_factory=dict)

    def settings(self) -> dict:
        """The joining rules as JSON-ready values."""
        return {"margin_mm": [float(v) for v in self.margin_mm], "min_node_mm3": float(self.min_node_mm3),
                "min_tumour_ml": float(self.min_tumour_ml), "context": bool(self.context),
                "context_classes": list(CONTEXT_CLASSES)}

    def stage2_input(self, volume: Volume, stage1_labels: Volume, start, size) -> tuple[Volume, np.ndarray | None]:
        """The CT box and its context channels on stage 2's grid (``None`` without context)."""
        box = volume.crop(start, size, fill=-1024)
        if not self.context:
            return box, None
        lab = self.stage2.preprocessing.labels(stage1_labels.crop(start, size, fill=0))
        grid_shape = self.stage2.preprocessing.image(box).shape
        if lab.shape != grid_shape:
            raise InputError(f"context channels {lab.shape} do not match the resampled box {grid_shape}")
        return box, context_channels(lab.array)

    def predict(self, volume: Volume, *, device=None, tta: bool = False, postprocess: bool = True,
                patient: str | None = None, stage1_labels: Volume | None = None) -> tuple[Volume, dict]:
        """Label map of a CT on its own grid, and what each stage did.

        Parameters
        ----------
        volume : Volume
            CT in HU ``(z, y, x)``, any spacing.
        device : str or torch.device, optional
            Where the networks run (default: where they are).
        tta : bool
            Mirroring test-time augmentation in both stages.
        postprocess : bool
            Organ / tumour / node component rules after pasting.
        patient : str, optional
            Named in errors.
        stage1_labels : Volume, optional
            Stage 1's label map of this CT (on its grid) when already computed: stage 1 is not run
            again (several stage-2 networks compared behind one stage 1).

        Returns
        -------
        labels : Volume
            uint8, same shape, spacing, origin and direction as ``volume``.
        info : dict
            ``stage1_labels`` (stage 1's label map, a Volume on the input grid), ``box_start``/
            ``box_size`` (voxels of the input grid), ``stage1_seconds``, ``stage2_seconds``,
            ``removed`` (components removed per class).
        """
        t0 = time.perf_counter()
        if stage1_labels is None:
            lab1, _ = predict_volume(self.stage1, volume, tta=tta, postprocess=True, min_tumour_ml=0.0, device=device)
        else:
            if not stage1_labels.same_geometry(volume):
                raise InputError("the given stage-1 labels are not on the CT's grid", patient=patient)
            lab1 = stage1_labels
        t1 = time.perf_counter()
        start, size = crop_box(lab1, self.margin_mm, patient=patient)
        box, extra = self.stage2_input(volume, lab1, start, size)
        lab2, _ = predict_volume(self.stage2, box, extra=extra, tta=tta, postprocess=False, device=device)
        labels = paste(lab1, lab2, start)
        report = None
        if postprocess:
            labels, report = postprocess_labels(labels, min_tumour_ml=self.min_tumour_ml, min_node_mm3=self.min_node_mm3)
        info = {"stage1_labels": lab1, "box_start": list(start), "box_size": list(size), "stage1_seconds": round(t1 - t0, 3),
                "stage2_seconds": round(time.perf_counter() - t1, 3),
                "removed": {} if report is None else {**{f"largest_kept_{k}": v for k, v in report.largest_kept.items()},
                                                      **{f"small_removed_{k}": v for k, v in report.small_removed.items()}}}
        return labels, info


@dataclass
class OneStageSegmenter:
    """A single whole-CT network behind the same ``predict`` as :class:`CascadeSegmenter`."""

    segmenter: Segmenter
    min_node_mm3: float = 0.0
    min_tumour_ml: float = 0.5

    def predict(self, volume: Volume, *, device=None, tta: bool = False, postprocess: bool = True,
                patient: str | None = None) -> tuple[Volume, dict]:
        """Label map on the input grid and ``{"seconds": ...}``; see :func:`esoct.segment.inference.predict_volume`."""
        t0 = time.perf_counter()
        labels, _ = predict_volume(self.segmenter, volume, tta=tta, postprocess=False, device=device)
        if postprocess:
            labels, _ = postprocess_labels(labels, min_tumour_ml=self.min_tumour_ml, min_node_mm3=self.min_node_mm3)
        return labels, {"seconds": round(time.perf_counter() - t0, 3)}


def write_cascade(folder: str | Path, cascade_settings: dict, stage1_checkpoint: str | Path,
                  stage2_checkpoint: str | Path, plans: dict | None = None) -> Path:
    """Write a cascade folder: ``cascade.json`` + ``stage1.pt`` + ``stage2.pt`` (+ ``stage1_plan.json``, ``stage2_plan.json``).

    Parameters
    ----------
    folder : str or Path
        Created if needed.
    cascade_settings : dict
        :meth:`CascadeSegmenter.settings`.
    stage1_checkpoint, stage2_checkpoint : str or Path
        Training checkpoints, copied (atomically).
    plans : dict, optional
        ``{"stage1": Plan, "stage2": Plan}`` written beside them.

    Returns
    -------
    Path
        The ``cascade.json`` file (written last: its presence means the folder is complete).
    """
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in (("stage1.pt", stage1_checkpoint), ("stage2.pt", stage2_checkpoint)):
        tmp = folder / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(folder / name)
    for name, plan in (plans or {}).items():
        plan.to_json(folder / f"{name}_plan.json")
    doc = {"format": _FORMAT, **cascade_settings, "stage1": "stage1.pt", "stage2": "stage2.pt"}
    tmp = folder / f".{CASCADE_FILE}.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(folder / CASCADE_FILE)
    return folder / CASCADE_FILE


def is_cascade(path: str | Path) -> bool:
    """True for a cascade folder (or its ``cascade.json``)."""
    path = Path(path)
    return (path / CASCADE_FILE).is_file() or (path.name == CASCADE_FILE and path.is_file())


def load_segmentation(path: str | Path, device=None):
    """Load a cascade folder (or its ``cascade.json``) or a single segmenter checkpoint.

    Parameters
    ----------
    path : str or Path
        A folder with ``cascade.json``, that file, or a ``.pt`` training checkpoint.
    device : str or torch.device, optional

    Returns
    -------
    CascadeSegmenter or OneStageSegmenter
        Both have ``predict(volume) -> (labels, info)``.

    Raises
    ------
    InputError
        Missing, unreadable or inconsistent files (naming the file).
    """
    from esoct.segment.inference import load_segmenter

    path = Path(path)
    if not is_cascade(path):
        return OneStageSegmenter(load_segmenter(path, device=device))
    file = path if path.name == CASCADE_FILE else path / CASCADE_FILE
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable cascade description ({exc})", file) from None
    if doc.get("format") != _FORMAT:
        raise InputError(f"not an esoct cascade file (format {doc.get('format')!r}, expected {_FORMAT!r})", file)
    stage1 = load_segmenter(file.parent / doc["stage1"], device=device)
    stage2 = load_segmenter(file.parent / doc["stage2"], device=device)
    cascade = CascadeSegmenter(stage1, stage2, tuple(doc["margin_mm"]), float(doc["min_node_mm3"]),
                               float(doc["min_tumour_ml"]), bool(doc["context"]))
    want = 1 + (len(CONTEXT_CLASSES) if cascade.context else 0)
    has = (getattr(stage2.model, "config", None) or {}).get("in_channels")
    if has is not None and has != want:
        raise InputError(f"stage 2 takes {has} input channels but the cascade gives it {want}", file)
    return cascade
