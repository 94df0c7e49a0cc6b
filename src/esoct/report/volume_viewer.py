"""Whole-volume viewer: NiiVue, vendored and inlined, for `esoct view` and the study report.

A viewer shows one CT in three planes (axial, coronal, sagittal) with any number of label maps as
outlines (reference in green, each further map -- a prediction -- in its own colour) and a
Grad-CAM heat map, each layer switchable. Everything is inside the HTML: NiiVue's browser build
(:data:`NIIVUE_FILE`, BSD-2, see ``vendor/NOTICE.md``) and every volume as gzipped NIfTI in base64,
so a page opens offline and can be mailed as one file.

Why NiiVue: it is the WebGL2 NIfTI viewer the neuro- and medical-imaging community maintains
(multiplanar views, world-space reslicing of overlays, window/level by right-drag); writing our own
slice renderer would repeat it badly. Volumes are resampled onto the displayed CT grid here with
SimpleITK (labels nearest-neighbour, heat maps linear), so what is drawn is on one grid whatever
the inputs were, and the CT is shrunk to at most ``max_inplane`` voxels in-plane to keep pages small.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.preprocess.resample import resample_like

NIIVUE_VERSION = "0.69.0"
NIIVUE_FILE = Path(__file__).parent / "vendor" / f"niivue-{NIIVUE_VERSION}.umd.js"

#: CT display window: soft tissue (level 40, width 400 HU).
CT_RANGE_HU = (-160.0, 240.0)

#: NiiVue colour maps of the label layers in order: reference, then predictions; and their CSS swatches.
LABEL_COLOURS = (("green", "#00e000"), ("red", "#ff2020"), ("blue", "#3060ff"), ("violet", "#c040ff"), ("gold", "#ffc000"))

#: Largest in-plane size of the displayed CT (voxels); larger CTs are resampled down.
MAX_INPLANE = 512


@dataclass
class ViewerLayer:
    """One volume of a viewer.

    Attributes
    ----------
    name : str
        Shown in the legend.
    volume : Volume
        On the displayed CT grid.
    colormap : str
        NiiVue colour map name.
    opacity : float
    cal_min, cal_max : float
        Display range; overlay voxels below ``cal_min`` are transparent.
    swatch : str
        CSS colour of the legend entry.
    """

    name: str
    volume: Volume
    colormap: str
    opacity: float
    cal_min: float
    cal_max: float
    swatch: str = "#888888"


def niivue_script() -> str:
    """``<script>`` element holding NiiVue's browser build (defines the global ``niivue``)."""
    if not NIIVUE_FILE.is_file():
        raise InputError("the vendored NiiVue build is missing; reinstall esoct", NIIVUE_FILE)
    return f"<script>{NIIVUE_FILE.read_text(encoding='utf-8')}</script>"


def display_grid(image: Volume, max_inplane: int = MAX_INPLANE) -> Volume:
    """The CT as displayed: shrunk in-plane (linear) so that neither in-plane axis exceeds ``max_inplane``."""
    import SimpleITK as sitk

    z, y, x = image.array.shape
    factor = max(y, x) / float(max_inplane)
    if factor <= 1.0:
        return image
    size = (int(round(x / factor)), int(round(y / factor)), z)  # SimpleITK order x, y, z
    sitk_image = sitk.Cast(image.to_sitk(), sitk.sitkFloat32)
    spacing = (image.spacing[2] * x / size[0], image.spacing[1] * y / size[1], image.spacing[0])
    origin_shift = np.asarray(image.direction, float).reshape(3, 3) @ (
        (np.asarray(spacing) - np.asarray(image.spacing[::-1])) / 2.0)
    out = sitk.Resample(sitk_image, size, sitk.Transform(), sitk.sitkLinear,
                        tuple(np.asarray(sitk_image.GetOrigin()) + origin_shift), spacing, sitk_image.GetDirection(),
                        -1024.0)
    return Volume.from_sitk(sitk.Cast(out, sitk.sitkInt16))


#: 4-neighbourhood within an axial slice.
_IN_PLANE_CROSS = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)


def outline(labels: Volume) -> Volume:
    """In-plane (axial) outline of the foreground of a label map: 1 on its border voxels, else 0.

    Axial outlines stay thin lines in every plane (a 3D border would fill the top and bottom
    slices of each structure in the axial view).
    """
    from scipy import ndimage

    array = np.asarray(labels.array)
    border = np.zeros(array.shape, bool)
    for value in np.unique(array[array > 0]):  # per class: borders between touching classes are drawn too
        one = array == value
        border |= one & ~ndimage.binary_erosion(one, structure=_IN_PLANE_CROSS)
    return labels.with_array(border.astype(np.uint8))


def viewer_layers(image: Volume, labels: Sequence[tuple[str, Volume]] = (), heat: Volume | None = None, *,
                  heat_name: str = "Grad-CAM", max_inplane: int = MAX_INPLANE) -> list[ViewerLayer]:
    """The layers of a viewer, all on the displayed CT grid.

    Parameters
    ----------
    image : Volume
        CT in HU, ``(z, y, x)``.
    labels : sequence of (str, Volume)
        Label maps (any grid; 0 = background), drawn as outlines: the first in green (the
        reference), the others in red, blue, violet, gold.
    heat : Volume, optional
        A map in [0, 1] (Grad-CAM) on any grid, drawn as a warm overlay above 0.2.
    heat_name : str
    max_inplane : int
        Largest in-plane size of the displayed CT.

    Returns
    -------
    list of ViewerLayer
        CT first.
    """
    if len(labels) > len(LABEL_COLOURS):
        raise InputError(f"at most {len(LABEL_COLOURS)} label maps can be shown at once, got {len(labels)}")
    grid = display_grid(image, max_inplane)
    layers = [ViewerLayer("CT", grid, "gray", 1.0, *CT_RANGE_HU, swatch="#808080")]
    for (name, lab), (cmap, swatch) in zip(labels, LABEL_COLOURS):
        layers.append(ViewerLayer(name, outline(resample_like(lab, grid, is_label=True, default_value=0)), cmap, 1.0,
                                  0.5, 1.0, swatch))
    if heat is not None:
        warm = resample_like(heat, grid, interpolator="linear", default_value=0.0)
        layers.append(ViewerLayer(heat_name, warm.with_array(np.clip(warm.array, 0, 1).astype(np.float32)), "warm",
                                  0.5, 0.2, 1.0, "#ff8000"))
    return layers


def nifti_gz(volume: Volume) -> bytes:
    """The volume as gzipped NIfTI bytes (SimpleITK writes its geometry into the header)."""
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        sitk.WriteImage(volume.to_sitk(), str(path), useCompression=True)
        return path.read_bytes()


def _focus_mm(layers: list[ViewerLayer]) -> list[float] | None:
    """NiiVue (RAS) world position of the centre of the first outline layer, or None."""
    for layer in layers[1:]:
        idx = np.argwhere(layer.volume.array > 0)
        if len(idx) and layer.colormap != "warm":
            lps = layer.volume.index_to_physical(idx.mean(axis=0))
            return [-float(lps[0]), -float(lps[1]), float(lps[2])]
    return None


VIEWER_CSS = """
figure.esoct-niivue{margin:1em 0;border:1px solid #ccc;border-radius:4px;padding:.5em;background:#fafafa}
figure.esoct-niivue .esoct-niivue-canvas{height:520px;background:#000}
figure.esoct-niivue canvas{width:100%;height:100%;display:block}
figure.esoct-niivue .esoct-niivue-controls{font-size:.9em;margin-top:.4em}
figure.esoct-niivue .esoct-niivue-controls label{margin-right:1.2em;cursor:pointer}
figure.esoct-niivue .swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:middle}
figure.esoct-niivue .esoct-niivue-hint{color:#666;display:block;margin-top:.3em}
"""

#: Starts every viewer of the page (runs after NiiVue's script); sets data-status="ready" or "error".
VIEWER_INIT_JS = r"""
(function(){
  function bytes(b64){const s=atob(b64);const a=new Uint8Array(s.length);for(let i=0;i<s.length;i++)a[i]=s.charCodeAt(i);return a.buffer;}
  function start(fig){
    const data=JSON.parse(fig.querySelector('script.esoct-niivue-data').textContent);
    const nv=new niivue.Niivue({backColor:[0,0,0,1],multiplanarShowRender:0,show3Dcrosshair:false,isRadiologicalConvention:true,
                                crosshairColor:[1,1,0,0.5],isResizeCanvas:true,logLevel:'error'});
    fig.esoctNiivue=nv;
    return nv.attachToCanvas(fig.querySelector('canvas')).then(async function(){
      for(const L of data.layers){
        nv.addVolume(await niivue.NVImage.loadFromUrl({url:L.name+'.nii.gz',name:L.name+'.nii.gz',buffer:bytes(L.data),
          colormap:L.colormap,opacity:L.opacity,cal_min:L.cal_min,cal_max:L.cal_max,trustCalMinMax:true}));
      }
      nv.setSliceType(nv.sliceTypeMultiplanar);
      if(data.focus){nv.scene.crosshairPos=nv.mm2frac(data.focus);nv.drawScene();}
      fig.querySelectorAll('input[data-layer]').forEach(function(box){
        box.addEventListener('change',function(){const i=+box.dataset.layer;nv.setOpacity(i,box.checked?data.layers[i].opacity:0);
          fig.dataset.hidden=Array.from(fig.querySelectorAll('input[data-layer]')).filter(b=>!b.checked).map(b=>b.dataset.layer).join(',');});
      });
      const hook=/test-toggle=([\d,]+)/.exec(location.hash);  // browser tests: switch layers off as clicks would
      if(hook){hook[1].split(',').forEach(function(i){const box=fig.querySelector('input[data-layer="'+i+'"]');
        if(box){box.checked=false;box.dispatchEvent(new Event('change'));}});}
      fig.dataset.volumes=String(nv.volumes.length);
      fig.dataset.dims=JSON.stringify(nv.volumes.map(v=>Array.from(v.hdr.dims.slice(1,4))));
      fig.dataset.status='ready';
    }).catch(function(e){fig.dataset.status='error';fig.dataset.error=String(e&&e.message||e);});
  }
  document.querySelectorAll('figure.esoct-niivue').forEach(start);
})();
"""


def viewer_figure(layers: list[ViewerLayer], title: str, element_id: str = "esoct-niivue-0") -> str:
    """The ``<figure>`` of one viewer (needs :func:`niivue_script` and :data:`VIEWER_INIT_JS` on the page)."""
    payload = {"layers": [{"name": layer.name, "colormap": layer.colormap, "opacity": layer.opacity,
                           "cal_min": layer.cal_min, "cal_max": layer.cal_max,
                           "data": base64.b64encode(nifti_gz(layer.volume)).decode("ascii")} for layer in layers],
               "focus": _focus_mm(layers)}
    boxes = "".join(
        f'<label><input type="checkbox" checked data-layer="{i}"> <span class="swatch" style="background:{layer.swatch}">'
        f'</span> {html.escape(layer.name)}</label>' for i, layer in enumerate(layers) if i > 0)
    data = json.dumps(payload).replace("</", "<\\/")
    return (f'<figure class="esoct-niivue" id="{html.escape(element_id)}" data-status="loading">'
            f'<figcaption>{html.escape(title)}</figcaption><div class="esoct-niivue-canvas"><canvas></canvas></div>'
            f'<div class="esoct-niivue-controls">{boxes}<span class="esoct-niivue-hint">Axial, coronal and sagittal '
            f'planes (radiological convention: right side of the patient on the left). Click to move the '
            f'crosshair; scroll on a plane to step through slices; right-drag to change the window (soft tissue, '
            f'-160 to 240 HU, at start).</span></div>'
            f'<script type="application/json" class="esoct-niivue-data">{data}</script></figure>')


def viewer_page(figures: Sequence[str], title: str) -> str:
    """A complete HTML page holding the given viewer figures, NiiVue and the start script."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:sans-serif;margin:1em 2em}}{VIEWER_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{''.join(figures)}{niivue_script()}<script>{VIEWER_INIT_JS}</script>"
            f"</body></html>")


def write_view(scan: str | Path, out: str | Path, *, labels: Sequence[str | Path] = (), names: Sequence[str] = (),
               gradcam: str | Path | None = None, max_inplane: int = MAX_INPLANE, title: str | None = None) -> Path:
    """Write the one-file viewer page of a CT with its label maps and Grad-CAM (``esoct view``).

    Parameters
    ----------
    scan : str or Path
        CT: NIfTI/NRRD/MHA file or DICOM folder.
    out : str or Path
        HTML file to write.
    labels : sequence of str or Path
        Label maps (reference first), any grid in the same patient space.
    names : sequence of str
        Legend names of ``labels`` (default: "reference", then the file names).
    gradcam : str or Path, optional
        A heat map in [0, 1] (NIfTI), e.g. a saved 3D Grad-CAM.
    max_inplane : int
        Largest in-plane size shown.
    title : str, optional
        Page title (default: the scan's file name).

    Returns
    -------
    Path
    """
    from esoct.io.imageio import read_image

    image = read_image(scan)
    names = list(names) + [("reference" if i == 0 else Path(p).name.split(".")[0]) for i, p in
                           enumerate(labels)][len(names):]
    label_volumes = [(n, read_image(p)) for n, p in zip(names, labels)]
    heat = read_image(gradcam) if gradcam is not None else None
    layers = viewer_layers(image, label_volumes, heat, max_inplane=max_inplane)
    title = title or Path(scan).name
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(viewer_page([viewer_figure(layers, title)], f"esoct view: {title}"), encoding="utf-8")
    return out
