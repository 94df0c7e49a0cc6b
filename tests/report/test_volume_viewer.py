"""`esoct view`: the NiiVue whole-volume viewer on the real TotalSegmentator CT, checked in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esoct.cli import main
from esoct.io.imageio import read_image, write_image
from esoct.io.volume import Volume
from esoct.report.volume_viewer import NIIVUE_VERSION, display_grid, outline, viewer_layers

CHROMIUM = Path("/usr/bin/chromium")


def test_outline_keeps_the_in_plane_border_only():
    lab = np.zeros((3, 10, 10), np.uint8)
    lab[:, 2:7, 2:7] = 1
    border = outline(Volume(lab, (2.0, 1.0, 1.0))).array
    assert border.dtype == np.uint8 and border.max() == 1
    assert border.sum() == 3 * 16  # a 5 x 5 square has 16 border pixels, on each of the 3 slices
    assert border[1, 4, 4] == 0 and border[1, 2, 4] == 1


def test_display_grid_shrinks_in_plane_and_keeps_the_field_of_view():
    ct = Volume(np.zeros((4, 300, 200), np.int16), (3.0, 0.8, 0.8), (-100.0, -50.0, 20.0))
    shown = display_grid(ct, 150)
    assert shown.array.shape == (4, 150, 100) and shown.spacing == pytest.approx((3.0, 1.6, 1.6))
    # the outer faces of the voxels (centres +- half a voxel) stay where they were
    for vol in (ct, shown):
        lo, hi = vol.physical_bounds()
        half = np.asarray(vol.spacing_xyz) / 2
        vol.meta["faces"] = (lo - half, hi + half)
    np.testing.assert_allclose(shown.meta["faces"][0], ct.meta["faces"][0], atol=1e-6)
    np.testing.assert_allclose(shown.meta["faces"][1], ct.meta["faces"][1], atol=1e-6)
    assert display_grid(ct, 512) is ct


@pytest.fixture(scope="module")
def page(tmp_path_factory, shared_data):
    """`esoct view` of the real CT with a reference (TotalSegmentator's liver and aorta, read from their own
    file) and a 'prediction' (the reference dilated in-plane by 3 voxels), plus a Grad-CAM-like heat map."""
    from scipy import ndimage

    root = tmp_path_factory.mktemp("view")
    ts = shared_data / "totalsegmentator"
    seg = read_image(ts / "example_seg.nii.gz")
    ref = np.where(seg.array == 5, 3, np.where(seg.array == 52, 2, 0)).astype(np.uint8)  # liver, aorta
    assert (ref == 3).sum() > 10_000 and (ref == 2).sum() > 500
    write_image(seg.with_array(ref), root / "reference.nii.gz")
    pred = ndimage.grey_dilation(ref, size=(1, 7, 7))
    write_image(seg.with_array(pred.astype(np.uint8)), root / "cascade.nii.gz")
    centre = np.argwhere(ref == 3).mean(axis=0)
    zz, yy, xx = np.indices(ref.shape)
    heat = np.exp(-(((zz - centre[0]) * seg.spacing[0]) ** 2 + ((yy - centre[1]) * seg.spacing[1]) ** 2
                    + ((xx - centre[2]) * seg.spacing[2]) ** 2) / (2 * 20.0 ** 2))
    write_image(seg.with_array(heat.astype(np.float32)), root / "gradcam.nii.gz")
    out = root / "case.html"
    code = main(["view", str(ts / "example_ct_sm.nii.gz"), "--labels", str(root / "reference.nii.gz"),
                 str(root / "cascade.nii.gz"), "--names", "reference", "cascade", "--gradcam",
                 str(root / "gradcam.nii.gz"), "--out", str(out)])
    assert code == 0
    return {"html": out, "root": root, "ct": read_image(ts / "example_ct_sm.nii.gz")}


def test_the_page_is_one_offline_file_with_every_layer(page):
    text = page["html"].read_text()
    assert "http://" not in text.split("<script>")[0] and 'src="http' not in text and "<link" not in text
    data = json.loads(re.search(r'class="esoct-niivue-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))
    assert [l["name"] for l in data["layers"]] == ["CT", "reference", "cascade", "Grad-CAM"]
    assert [l["colormap"] for l in data["layers"]] == ["gray", "green", "red", "warm"]
    assert len(data["focus"]) == 3
    assert "isRadiologicalConvention:true" in text  # the patient's right on the screen's left, as radiologists read
    assert 'data-layer="1"' in text and 'data-layer="3"' in text
    assert f"niivue-{NIIVUE_VERSION}" in str(Path(__file__)) or len(text) > 2_000_000  # NiiVue is inlined


def _chromium(args, profile):
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _figure_tag(dom):
    match = re.search(r'<figure class="esoct-niivue"[^>]*>', dom)
    assert match, "no viewer in the DOM"
    return match.group(0)


def _colour_pixels(png: Path) -> dict:
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    black = rgb.sum(axis=2) == 0  # the canvas has a black background; the legend (swatches, text) lies below it
    rows, cols = np.flatnonzero(black.mean(axis=1) > 0.3), np.flatnonzero(black.mean(axis=0) > 0.3)
    rgb = rgb[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {"green": int(((g > 180) & (r < 90) & (b < 90)).sum()), "red": int(((r > 200) & (g < 80) & (b < 80)).sum()),
            "grey": int(((abs(r - g) < 8) & (abs(g - b) < 8) & (r > 40) & (r < 230)).sum()),
            "warm": int(((r > 150) & (r - b > 80) & (r - g > 30)).sum())}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed: run make browser")
def test_chromium_loads_every_volume_and_draws_the_outlines(page, tmp_path):
    url = page["html"].resolve().as_uri() + "#test-toggle=3"  # Grad-CAM off: its warm colours are not counted as red
    dom = _chromium(["--dump-dom", url], tmp_path / "profile").stdout
    tag = _figure_tag(dom)
    assert 'data-status="ready"' in tag, tag
    assert 'data-volumes="4"' in tag
    dims = json.loads(re.search(r'data-dims="([^"]*)"', tag).group(1).replace("&quot;", '"'))
    z, y, x = page["ct"].array.shape
    assert dims == [[x, y, z]] * 4  # every layer on the CT's grid (NiiVue reports x, y, z)
    shot = tmp_path / "view.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,900", url], tmp_path / "p2")
    seen = _colour_pixels(shot)
    assert seen["grey"] > 20_000, seen  # the CT is drawn
    assert seen["green"] > 50 and seen["red"] > 50, seen  # reference and predicted outlines


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed: run make browser")
def test_switching_layers_off_removes_them(page, tmp_path):
    url = page["html"].resolve().as_uri() + "#test-toggle=2,3"
    tag = _figure_tag(_chromium(["--dump-dom", url], tmp_path / "profile").stdout)
    assert 'data-status="ready"' in tag and 'data-hidden="2,3"' in tag
    shot = tmp_path / "off.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,900", url], tmp_path / "p2")
    seen = _colour_pixels(shot)
    assert seen["red"] < 10 and seen["green"] > 50, seen
    heat_only = page["html"].resolve().as_uri() + "#test-toggle=1,2"
    shot = tmp_path / "heat.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,900", heat_only], tmp_path / "p3")
    seen = _colour_pixels(shot)
    assert seen["warm"] > 1000 and seen["green"] < 10, seen


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed: run make browser")
def test_the_report_shows_each_case_whole_volume(tmp_path, shared_data):
    """A study's viewer case with the whole-volume files tstage_4class writes, and the segmentation task's
    prediction: the report holds a NiiVue viewer with four layers that loads in Chromium."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_html_report import make_study

    from esoct.report.html import write_report
    from esoct.report.volume_viewer import display_grid

    info = make_study(tmp_path)
    study, pid = info["study"], info["pid"]
    ts = shared_data / "totalsegmentator"
    ct = read_image(ts / "example_ct_sm.nii.gz")
    seg = read_image(ts / "example_seg.nii.gz")
    viewer = study / "results" / "viewer"
    write_image(display_grid(ct, 64), viewer / f"{pid}_ct.nii.gz")
    write_image(seg.with_array((seg.array == 52).astype(np.uint8)), viewer / f"{pid}_reference.nii.gz")
    cam = Volume(np.ones((8, 16, 16), np.float32), (6.0, 6.0, 6.0), ct.index_to_physical((10, 30, 40)), ct.direction)
    write_image(cam, viewer / f"{pid}_gradcam.nii.gz")
    (study / "results" / "segmentation" / "labels").mkdir(parents=True, exist_ok=True)
    write_image(seg.with_array((seg.array == 5).astype(np.uint8)),
                study / "results" / "segmentation" / "labels" / f"{pid}_pre_seg.nii.gz")
    report = write_report(study)
    text = report.read_text()
    assert "<h3>Whole volume</h3>" in text and text.count('<figure class="esoct-niivue"') == 1
    data = json.loads(re.search(r'class="esoct-niivue-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))
    assert [l["name"] for l in data["layers"]] == ["CT", "reference", "predicted (segmentation task)", "Grad-CAM (KRT)"]
    tag = _figure_tag(_chromium(["--dump-dom", report.resolve().as_uri()], tmp_path / "profile").stdout)
    assert 'data-status="ready"' in tag and 'data-volumes="4"' in tag, tag
    dims = json.loads(re.search(r'data-dims="([^"]*)"', tag).group(1).replace("&quot;", '"'))
    assert dims == [[64, 53, 30]] * 4  # 122 x 101 shrunk to at most 64 in-plane


def test_view_errors_name_the_file_and_exit_2(tmp_path, capsys, shared_data):
    ct = shared_data / "totalsegmentator" / "example_ct_sm.nii.gz"
    assert main(["view", str(ct), "--labels", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "v.html")]) == 2
    err = capsys.readouterr().err
    assert "esoct view: error:" in err and "missing.nii.gz" in err
    lab = read_image(shared_data / "totalsegmentator" / "example_seg.nii.gz")
    with pytest.raises(Exception, match="at most 5 label maps"):
        viewer_layers(read_image(ct), [(str(i), lab) for i in range(6)])
