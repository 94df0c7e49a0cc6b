"""The study report in a real headless browser (Debian's chromium): it renders, and the case viewer
scrolls and toggles the Grad-CAM layer through the same handlers a user triggers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esoct.report.html import write_report

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1280, 4000)


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Run headless chromium (harmless dbus errors on stderr are ignored)."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed: run make browser")
    from test_html_report import make_study

    root = tmp_path_factory.mktemp("browser")
    info = make_study(root)
    info["report"] = write_report(info["study"])
    info["profile"] = root / "profile"
    return info


def _dom(report: dict, fragment: str = "") -> str:
    url = report["report"].resolve().as_uri() + fragment
    result = _chromium(["--dump-dom", url], report["profile"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "</html>" in result.stdout
    return result.stdout


def _viewer_tag(dom: str) -> str:
    """The opening tag of the first case viewer."""
    match = re.search(r'<figure class="esoct-viewer"[^>]*>', dom)
    assert match, "no case viewer in the DOM"
    return match.group(0)


def _attr(tag: str, name: str) -> str:
    match = re.search(rf'\b{name}="([^"]*)"', tag)
    assert match, f"{name} not in {tag}"
    return match.group(1)


def test_screenshot_renders(report):
    shot = report["report"].parent / "shot.png"
    result = _chromium([f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                        report["report"].resolve().as_uri()], report["profile"])
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == WINDOW
        grey = np.asarray(im.convert("L"), dtype=float)
    assert grey.std() > 20  # not blank
    dark = (grey < 60).mean(axis=1)
    # the page has text everywhere and one large dark block: the CT slices of the viewer (black background)
    assert (dark > 0.2).sum() > 150, "the viewer's image is not visible in the screenshot"


def test_dom_after_scripts(report):
    dom = _dom(report)
    tag = _viewer_tag(dom)
    start, n = int(_attr(tag, "data-start")), int(_attr(tag, "data-n"))
    assert n == report["viewer_slices"] and int(_attr(tag, "data-slice")) == start
    assert _attr(tag, "data-gradcam") == "off"
    assert "tumour" in _attr(tag, "data-visible").split()
    assert len(re.findall(r'<img class="esoct-figure"', dom)) == report["n_figures"]
    layers = re.findall(r'<img class="esoct-layer" data-layer="(\w+)"[^>]*>', dom)
    assert "ct" in layers and "gradcam" in layers
    ct = re.search(r'<img class="esoct-layer" data-layer="ct"[^>]*>', dom).group(0)
    assert 'src="data:image/png;base64,' in ct and "hidden" not in ct
    assert "<td>0.8123</td>" in dom and "<th>p-value</th>" in dom
    assert f"slice {start + 1} / {n}" in dom


def test_wheel_scrolls_the_viewer(report):
    tag = _viewer_tag(_dom(report, "#test-scroll=3"))
    start, n = int(_attr(tag, "data-start")), int(_attr(tag, "data-n"))
    assert start + 3 < n
    assert int(_attr(tag, "data-slice")) == start + 3


def test_gradcam_toggle(report):
    dom = _dom(report, "#test-scroll=2&test-toggle=gradcam")
    tag = _viewer_tag(dom)
    assert _attr(tag, "data-gradcam") == "on"
    assert "gradcam" in _attr(tag, "data-visible").split()
    assert int(_attr(tag, "data-slice")) == int(_attr(tag, "data-start")) + 2
    cam = re.search(r'<img class="esoct-layer" data-layer="gradcam"[^>]*>', dom).group(0)
    assert "hidden" not in cam and 'src="data:image/png;base64,' in cam
    data = json.loads(re.search(r'class="esoct-viewer-data">(.*?)</script>', dom, re.S).group(1))
    assert data["layers"]["gradcam"][int(_attr(tag, "data-slice"))] in cam
