"""Case viewer of the HTML report: axial slices, label overlays and Grad-CAM encoded as small PNGs.

A case is a cropped CT volume in HU with its nn-TransEC label map (0 background, 1 tumour,
2 aorta, 3 esophagus, 4 lymph node, 5 pericardium) and optionally a Grad-CAM map in [0, 1].
:func:`encode_case` turns it into base64 PNG strings per slice and layer; :func:`viewer_html`
writes the panel, whose plain JavaScript (:data:`VIEWER_JS`, no library, no network) stacks the
layers, scrolls with the mouse wheel, the slider or the arrow keys and toggles each layer.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError

#: CT display window (level, width) in HU: the soft-tissue window.
WINDOW_HU = (40.0, 400.0)

#: Largest in-plane size of an encoded slice, pixels.
MAX_INPLANE = 192

#: Most slices encoded per case (the z axis is subsampled evenly above it).
MAX_SLICES = 64

#: Most cases shown in one report.
MAX_CASES = 6

#: Overlay layers: (key, label value, display name, RGB colour).
LABEL_LAYERS = (
    ("tumour", 1, "tumour", (230, 25, 75)),
    ("aorta", 2, "aorta", (0, 130, 200)),
    ("esophagus", 3, "esophagus", (255, 200, 0)),
    ("node", 4, "lymph node", (60, 180, 75)),
    ("pericardium", 5, "pericardium", (145, 30, 180)),
)

#: Overlay fill opacity (0-255); the outline is drawn opaque.
FILL_ALPHA = 90


@dataclass
class EncodedCase:
    """A case ready for the viewer.

    Attributes
    ----------
    title : str
        Shown above the panel.
    slices : list of int
        Index (into the original z axis) of every encoded slice.
    z_mm : list of float
        Position of every encoded slice along z, mm from the first slice of the crop.
    layers : dict
        ``{key: [base64 PNG or "" per slice]}``: ``"ct"``, the label keys of :data:`LABEL_LAYERS`
        present in the label map and ``"gradcam"`` when given. An empty string is a slice where the
        layer has nothing to draw.
    width, height : int
        Size of the encoded PNGs, pixels (x, y).
    aspect : float
        Physical height / width of a slice, so the panel keeps the true proportions.
    start : int
        Position (into ``slices``) shown first: the slice with the most tumour.
    """

    title: str
    slices: list
    z_mm: list
    layers: dict = field(default_factory=dict)
    width: int = 0
    height: int = 0
    aspect: float = 1.0
    start: int = 0

    @property
    def n_slices(self) -> int:
        """Number of encoded slices."""
        return len(self.slices)


def load_case(path: str | Path) -> dict:
    """Read a viewer case file (``results/viewer/<patient_id>.npz``).

    Parameters
    ----------
    path : str or Path
        ``.npz`` with ``image`` float32 (z, y, x) in HU, ``labels`` uint8 (z, y, x), optional
        ``gradcam`` float32 (z, y, x) in [0, 1], ``spacing`` (3,) mm in (z, y, x) order and optional
        ``title``.

    Returns
    -------
    dict
        Keys ``image``, ``labels``, ``gradcam`` (or None), ``spacing`` (tuple, mm, z y x), ``title``.

    Raises
    ------
    InputError
        A missing array, a shape that differs between arrays, or an unreadable file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the viewer case: {exc}", path) from exc
    for key in ("image", "labels"):
        if key not in arrays:
            raise InputError(f"the viewer case has no {key!r} array (found {sorted(arrays)})", path)
    image = np.asarray(arrays["image"], dtype=np.float32)
    labels = np.asarray(arrays["labels"]).astype(np.uint8)
    gradcam = arrays.get("gradcam")
    if image.ndim != 3:
        raise InputError(f"image must be 3-D (z, y, x), got shape {image.shape}", path)
    if labels.shape != image.shape or (gradcam is not None and gradcam.shape != image.shape):
        shapes = {k: arrays[k].shape for k in ("image", "labels", "gradcam") if k in arrays}
        raise InputError(f"image, labels and gradcam must have the same shape, got {shapes}", path)
    spacing = tuple(float(s) for s in np.asarray(arrays.get("spacing", (1.0, 1.0, 1.0))).ravel()[:3])
    title = arrays.get("title")
    title = str(np.asarray(title).ravel()[0]) if title is not None and np.asarray(title).size else path.stem
    return {"image": image, "labels": labels, "gradcam": None if gradcam is None else gradcam.astype(np.float32),
            "spacing": spacing, "title": title}


def _png(array: np.ndarray, mode: str) -> str:
    """Base64 text of a PNG of ``array`` (uint8, 2-D for mode L, (h, w, 4) for RGBA)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _resize(plane: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize a 2-D float or uint8 plane to ``size`` = (width, height) with Pillow."""
    from PIL import Image

    if plane.shape[::-1] == size:
        return plane
    if nearest:
        return np.asarray(Image.fromarray(plane.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))


def window_to_uint8(hu: np.ndarray, level: float = WINDOW_HU[0], width: float = WINDOW_HU[1]) -> np.ndarray:
    """Map HU to grey levels 0-255 through the window ``level`` / ``width`` (HU).

    Parameters
    ----------
    hu : numpy.ndarray
        Intensities in HU, any shape.
    level, width : float
        Window centre and width, HU (default 40 / 400, soft tissue).

    Returns
    -------
    numpy.ndarray
        uint8, same shape: ``level - width/2`` and below are 0, ``level + width/2`` and above 255.
    """
    low = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - low) / float(width) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _overlay(mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """RGBA overlay of a binary mask: translucent fill, opaque outline, transparent elsewhere."""
    from scipy import ndimage

    rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
    rgba[mask, :3] = colour
    rgba[mask, 3] = FILL_ALPHA
    edge = mask & ~ndimage.binary_erosion(mask)
    rgba[edge, 3] = 255
    return rgba


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Jet-like RGBA colours of values in [0, 1], alpha proportional to the value.

    Parameters
    ----------
    values : numpy.ndarray
        Map in [0, 1] (clipped), any shape.

    Returns
    -------
    numpy.ndarray
        uint8 of shape ``values.shape + (4,)``: blue (low) through green and yellow to red (high);
        alpha ``200 * value``.
    """
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0, 1)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0, 1)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0, 1)
    rgba = np.stack([r, g, b, 200.0 / 255.0 * v], axis=-1)
    return np.round(rgba * 255).astype(np.uint8)


def encode_case(
    image: np.ndarray,
    labels: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    gradcam: np.ndarray | None = None,
    title: str = "",
    *,
    max_inplane: int = MAX_INPLANE,
    max_slices: int = MAX_SLICES,
) -> EncodedCase:
    """Encode a case's axial slices and layers as base64 PNGs.

    Parameters
    ----------
    image : numpy.ndarray
        CT crop in HU, (z, y, x).
    labels : numpy.ndarray
        nn-TransEC label map, (z, y, x), same shape.
    spacing : tuple of float
        Voxel size in mm, (z, y, x) order.
    gradcam : numpy.ndarray, optional
        Grad-CAM map in [0, 1], (z, y, x), same shape.
    title : str
        Panel title.
    max_inplane : int
        Largest in-plane size of an encoded slice, pixels; larger slices are downsampled
        (bilinear for the CT and Grad-CAM, nearest neighbour for the labels).
    max_slices : int
        Most slices encoded; above it the z axis is subsampled evenly (first and last kept).

    Returns
    -------
    EncodedCase
    """
    image = np.asarray(image, dtype=np.float32)
    labels = np.asarray(labels)
    nz, ny, nx = image.shape
    if nz == 0 or ny == 0 or nx == 0:
        raise InputError(f"the viewer case {title!r} is empty (shape {image.shape})")
    slices = np.unique(np.round(np.linspace(0, nz - 1, min(nz, max_slices))).astype(int)).tolist()
    scale = min(1.0, max_inplane / max(ny, nx))
    size = (max(1, int(round(nx * scale))), max(1, int(round(ny * scale))))
    present = [layer for layer in LABEL_LAYERS if (labels == layer[1]).any()]
    layers: dict[str, list[str]] = {"ct": []}
    layers.update({key: [] for key, *_ in present})
    if gradcam is not None:
        layers["gradcam"] = []
    for z in slices:
        layers["ct"].append(_png(window_to_uint8(_resize(image[z], size, nearest=False)), "L"))
        lab = _resize(labels[z].astype(np.uint8), size, nearest=True)
        for key, value, _, colour in present:
            mask = lab == value
            layers[key].append(_png(_overlay(mask, colour), "RGBA") if mask.any() else "")
        if gradcam is not None:
            heat = _resize(np.asarray(gradcam[z], dtype=np.float32), size, nearest=False)
            layers["gradcam"].append(_png(heat_colours(heat), "RGBA") if np.nanmax(heat) > 0 else "")
    tumour = [int((labels[z] == 1).sum()) for z in slices]
    start = int(np.argmax(tumour)) if max(tumour) > 0 else len(slices) // 2
    aspect = (ny * float(spacing[1])) / (nx * float(spacing[2]))
    z_mm = [round(z * float(spacing[0]), 2) for z in slices]
    return EncodedCase(title=title, slices=slices, z_mm=z_mm, layers=layers, width=size[0], height=size[1],
                       aspect=aspect, start=start)


#: Display width of a viewer panel's image, CSS pixels.
DISPLAY_WIDTH = 384


def viewer_html(case: EncodedCase, index: int) -> str:
    """HTML of one viewer panel: the stacked layers, the slider, the check boxes and the legend.

    The slices travel as JSON in a ``<script type="application/json">`` element; the first slice
    shown is also written into the ``<img>`` elements so the page prints without scripts. The panel
    element carries ``data-slice`` (current position, 0-based), ``data-start`` and ``data-n``.

    Parameters
    ----------
    case : EncodedCase
        From :func:`encode_case`.
    index : int
        Position of the panel in the report (unique element ids).

    Returns
    -------
    str
    """
    vid = f"viewer-{index}"
    width = DISPLAY_WIDTH
    height = max(1, int(round(width * case.aspect)))
    payload = {"slices": case.slices, "z_mm": case.z_mm, "layers": case.layers, "start": case.start}
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    names = {key: (name, colour) for key, _, name, colour in LABEL_LAYERS}
    imgs, boxes = [], []
    for key in case.layers:
        first = case.layers[key][case.start]
        hidden = " hidden" if key == "gradcam" else ""
        src = f' src="data:image/png;base64,{first}"' if first else ""
        imgs.append(f'<img class="esoct-layer" data-layer="{key}" alt=""{src}{hidden}>')
        if key == "ct":
            continue
        if key == "gradcam":
            label, swatch, checked = "Grad-CAM", "esoct-swatch esoct-swatch-heat", ""
            style = ""
        else:
            label, colour = names[key]
            swatch, checked = "esoct-swatch", " checked"
            style = f' style="background: rgb{colour}"'
        boxes.append(f'<label><input type="checkbox" data-toggle="{key}"{checked}> '
                     f'<span class="{swatch}"{style}></span>{html.escape(label)}</label>')
    visible = " ".join(k for k in case.layers if k != "gradcam")
    n = case.n_slices
    return f"""
<figure class="esoct-viewer" id="{vid}" tabindex="0" data-slice="{case.start}" data-start="{case.start}"
  data-n="{n}" data-visible="{visible}" data-gradcam="{'off' if 'gradcam' in case.layers else 'absent'}">
  <figcaption>{html.escape(case.title)}</figcaption>
  <div class="esoct-stack" style="width:{width}px;height:{height}px">
    {''.join(imgs)}
  </div>
  <div class="esoct-controls">
    <input type="range" class="esoct-slider" min="0" max="{n - 1}" value="{case.start}" step="1"
      aria-label="slice">
    <span class="esoct-position">slice {case.start + 1} / {n} &middot; z {case.z_mm[case.start]:.1f} mm</span>
  </div>
  <div class="esoct-toggles">{' '.join(boxes)}</div>
  <script type="application/json" class="esoct-viewer-data">{data}</script>
</figure>"""


VIEWER_CSS = """
.esoct-viewers { display: flex; flex-wrap: wrap; gap: 1.5em; }
.esoct-viewer { margin: 0; padding: 0.6em; border: 1px solid #ccc; border-radius: 4px; background: #fafafa; }
.esoct-viewer:focus { outline: 2px solid #0072B2; }
.esoct-viewer figcaption { font-weight: bold; margin-bottom: 0.4em; }
.esoct-stack { position: relative; background: #000; overflow: hidden; cursor: ns-resize; }
.esoct-stack img { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.esoct-stack img[hidden] { display: none; }
.esoct-controls { display: flex; align-items: center; gap: 0.6em; margin-top: 0.4em; }
.esoct-slider { flex: 1; }
.esoct-position { font-family: monospace; font-size: 0.9em; white-space: nowrap; }
.esoct-toggles { margin-top: 0.3em; font-size: 0.9em; }
.esoct-toggles label { margin-right: 0.8em; white-space: nowrap; }
.esoct-swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.25em;
  vertical-align: -0.1em; border: 1px solid #666; }
.esoct-swatch-heat { background: linear-gradient(to right, #00f, #0ff, #0f0, #ff0, #f00); }
@media print { .esoct-controls, .esoct-toggles input { display: none; } .esoct-viewer { break-inside: avoid; } }
"""

#: The viewer's script. ``#test-scroll=N`` in the page address dispatches N wheel events on the
#: first viewer and ``#test-toggle=KEY`` clicks its check box, so a headless browser can test it.
VIEWER_JS = r"""
(function () {
  "use strict";
  function setup(root) {
    var data = JSON.parse(root.querySelector("script.esoct-viewer-data").textContent);
    var n = data.slices.length;
    var slider = root.querySelector(".esoct-slider");
    var position = root.querySelector(".esoct-position");
    var stack = root.querySelector(".esoct-stack");
    var imgs = {};
    root.querySelectorAll("img.esoct-layer").forEach(function (img) { imgs[img.dataset.layer] = img; });
    var visible = {};
    Object.keys(imgs).forEach(function (key) { visible[key] = key !== "gradcam"; });
    var current = data.start;

    function draw() {
      Object.keys(imgs).forEach(function (key) {
        var b64 = data.layers[key][current];
        var img = imgs[key];
        if (visible[key] && b64) {
          img.src = "data:image/png;base64," + b64;
          img.hidden = false;
        } else {
          img.hidden = true;
        }
      });
      slider.value = current;
      position.textContent = "slice " + (current + 1) + " / " + n + " \u00b7 z " +
        data.z_mm[current].toFixed(1) + " mm";
      root.setAttribute("data-slice", String(current));
      root.setAttribute("data-visible", Object.keys(visible).filter(function (k) { return visible[k]; }).join(" "));
      if ("gradcam" in imgs) { root.setAttribute("data-gradcam", visible.gradcam ? "on" : "off"); }
    }
    function go(index) {
      current = Math.max(0, Math.min(n - 1, index));
      draw();
    }
    stack.addEventListener("wheel", function (event) {
      event.preventDefault();
      if (event.deltaY > 0) { go(current + 1); } else if (event.deltaY < 0) { go(current - 1); }
    }, { passive: false });
    slider.addEventListener("input", function () { go(parseInt(slider.value, 10)); });
    root.addEventListener("keydown", function (event) {
      if (event.key === "ArrowUp" || event.key === "ArrowRight") { go(current + 1); event.preventDefault(); }
      if (event.key === "ArrowDown" || event.key === "ArrowLeft") { go(current - 1); event.preventDefault(); }
    });
    root.querySelectorAll("input[data-toggle]").forEach(function (box) {
      box.addEventListener("change", function () { visible[box.dataset.toggle] = box.checked; draw(); });
    });
    draw();
  }

  function selfTest() {
    var first = document.querySelector(".esoct-viewer");
    if (!first) { return; }
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var scroll = parseInt(params.get("test-scroll") || "0", 10);
    var stack = first.querySelector(".esoct-stack");
    for (var i = 0; i < scroll; i++) {
      stack.dispatchEvent(new WheelEvent("wheel", { deltaY: 100, bubbles: true, cancelable: true }));
    }
    var toggle = params.get("test-toggle");
    if (toggle) {
      var box = first.querySelector('input[data-toggle="' + toggle + '"]');
      if (box) { box.click(); }
    }
  }

  function init() {
    document.querySelectorAll(".esoct-viewer").forEach(setup);
    selfTest();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
"""
