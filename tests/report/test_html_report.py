"""The study report: a fake study directory from a phantom cohort gives a self-contained HTML file
with the cohort table, the task sections, a failed task marked, the case viewer and the methods."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from esoct.cli import main
from esoct.errors import InputError
from esoct.report.html import write_report
from esoct.report.viewer import encode_case, heat_colours, window_to_uint8

SEED = 11
FOLDS_TSTAGE = 4
CV_SURVIVAL = 3
VIEWER_Z = 30  # slices in the viewer crop (< MAX_SLICES, so every slice is encoded)

TABLE_T = pd.DataFrame({"model": ["ResoLSTM-Depth", "ResNet-18"], "AUC": [0.8123, 0.7456],
                        "AUC 95% CI": ["0.71-0.90", "0.63-0.85"]})
TABLE_S = pd.DataFrame({"model": ["clinical", "fusion"], "C-index": [0.6543, 0.7321]})


def _png(path: Path, seed: int) -> Path:
    """A small matplotlib line plot saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(3, 2), dpi=80)
    ax.plot(np.cumsum(rng.normal(size=20)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def make_study(root: Path) -> dict:
    """Build a study directory under ``root``; return what was put in it."""
    from esoct.io.imageio import read_image
    from esoct.phantom.cohort import generate_cohort

    generate_cohort(root / "cohort", 8, seed=SEED, workers=1, progress=False)
    study = root / "study"
    results = study / "results"
    results.mkdir(parents=True)
    shutil.copyfile(root / "cohort" / "manifest.csv", study / "cohort.csv")
    manifest = pd.read_csv(study / "cohort.csv", dtype={"patient_id": str, "center": str})
    test_center = sorted(manifest["center"].unique())[-1]
    settings = {
        "name": "phantom-report-study", "seed": SEED,
        "cohort": {"manifest": "cohort/manifest.csv", "test_centers": [test_center]},
        "radiomics": {"params": None, "workers": 1},
        "tasks": {
            "tstage": {"enabled": True, "models": ["resolstm", "resnet"], "preset": "fast", "folds": FOLDS_TSTAGE},
            "survival": {"enabled": True, "n_estimators": 50, "n_bootstrap": 20, "cv": CV_SURVIVAL,
                         "deep_features": False},
            "lnm": {"enabled": True, "folds": 5, "classifier": "random_forest"},
            "segmentation": {"enabled": False, "stage2_epochs": 3},
        },
    }
    (study / "study.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    run = {"tasks": {"tstage": {"status": "ok", "seconds": 12.5}, "survival": {"status": "ok", "seconds": 30.1},
                     "lnm": {"status": "RuntimeError: no lymph node segmented", "seconds": 1.0}},
           "esoct_version": "0.1.0", "started": "2026-01-01T10:00:00", "finished": "2026-01-01T10:05:00"}
    (results / "run.json").write_text(json.dumps(run))

    tdir = results / "tstage"
    tdir.mkdir()
    TABLE_T.to_csv(tdir / "table1.csv", index=False)
    _png(tdir / "figures" / "roc.png", 1)
    _png(tdir / "figures" / "confusion.png", 2)
    (tdir / "report.json").write_text(json.dumps({
        "title": "T-stage, T1-2 vs T3-4 (ResoLSTM-Depth)", "order": 1, "text": "Five models & <friends>.",
        "tables": [{"file": "table1.csv", "caption": "Discrimination per model"}],
        "figures": [{"file": "figures/roc.png", "caption": "ROC per fold", "kind": "roc"},
                    {"file": "figures/confusion.png", "caption": "Confusion matrix", "kind": "confusion"}]}))
    sdir = results / "survival"
    sdir.mkdir()
    TABLE_S.to_csv(sdir / "cindex.csv", index=False)
    _png(sdir / "figures" / "km.png", 3)
    (sdir / "report.json").write_text(json.dumps({
        "title": "Overall survival", "order": 0, "text": "Random survival forests.",
        "tables": [{"file": "cindex.csv", "caption": "C-index"}],
        "figures": [{"file": "figures/km.png", "caption": "Kaplan-Meier by median risk", "kind": "km"}]}))
    ldir = results / "lnm"
    ldir.mkdir()
    (ldir / "error.txt").write_text(
        f"Traceback (most recent call last):\n  File \"{study}/x.py\", line 1, in <module>\n"
        "RuntimeError: no lymph node segmented\n")

    pid = manifest["patient_id"].iloc[0]
    image = read_image(root / "cohort" / manifest["image_pre"].iloc[0]).array.astype(np.float32)
    labels = read_image(root / "cohort" / manifest["mask_pre"].iloc[0]).array.astype(np.uint8)
    spacing = read_image(root / "cohort" / manifest["image_pre"].iloc[0]).spacing
    zz, yy, xx = np.nonzero(labels == 1)
    zc, yc, xc = (int(np.median(a)) for a in (zz, yy, xx))
    z0 = int(np.clip(zc - VIEWER_Z // 2, 0, image.shape[0] - VIEWER_Z))
    y0, x0 = max(0, yc - 48), max(0, xc - 48)
    crop = np.s_[z0:z0 + VIEWER_Z, y0:y0 + 96, x0:x0 + 96]
    image, labels = image[crop], labels[crop]
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(image.shape), (zc - z0, yc - y0, xc - x0))))
    gradcam = np.exp(-(dist / 12.0) ** 2).astype(np.float32)
    (results / "viewer").mkdir()
    np.savez_compressed(results / "viewer" / f"{pid}.npz", image=image, labels=labels, gradcam=gradcam,
                        spacing=np.asarray(spacing, dtype=float), title=np.array([f"{pid} (phantom)"]))
    return {"study": study, "n_figures": 3, "viewer_slices": image.shape[0], "pid": pid,
            "viewer_labels": labels, "test_center": test_center}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    info = make_study(tmp_path_factory.mktemp("report"))
    info["report"] = write_report(info["study"])
    info["html"] = info["report"].read_text(encoding="utf-8")
    return info


def _open_tag(text: str, section_id: str) -> str:
    """The opening tag of the element with id ``section_id``."""
    at = text.index(f'id="{section_id}"')
    return text[text.rindex("<", 0, at):text.index(">", at) + 1]


def _section(text: str, section_id: str) -> str:
    start = text.index(f'id="{section_id}"')
    return text[start:text.index("</section>", start)]


def test_report_written_to_default_place(study):
    assert study["report"] == study["study"] / "report.html"
    assert study["html"].startswith("<!DOCTYPE html>")
    assert "phantom-report-study" in study["html"]


def test_report_is_self_contained(study):
    text = study["html"]
    assert "http://" not in text and "https://" not in text
    srcs = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', text)
    assert srcs, "no src/href found at all"
    assert all(s.startswith(("data:", "#")) for s in srcs), [s for s in srcs if not s.startswith(("data:", "#"))]
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert str(study["study"].parent) not in text  # no absolute path of the study directory


def test_tables_and_figures_embedded(study):
    text = study["html"]
    for value in ("ResoLSTM-Depth", "0.8123", "0.7456", "0.71-0.90", "0.6543", "0.7321", "fusion"):
        assert f"<td>{value}</td>" in text, value
    figures = re.findall(r'<img class="esoct-figure"[^>]*src="data:image/png;base64,([^"]+)"', text)
    assert len(figures) == study["n_figures"]
    for b64 in figures:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.size == (240, 160)
    assert "Five models &amp; &lt;friends&gt;." in text  # text escaped
    # sections ordered by `order`: survival (0) before tstage (1)
    assert text.index('id="task-survival"') < text.index('id="task-tstage"')


def test_cohort_table_has_p_values(study):
    cohort = _section(study["html"], "cohort")
    assert "<th>p-value</th>" in cohort and "<th>test used</th>" in cohort
    manifest = pd.read_csv(study["study"] / "cohort.csv", dtype={"center": str})
    n_test = int((manifest["center"] == study["test_center"]).sum())
    assert f"<th>test ({study['test_center']})</th>" in cohort
    assert f"<td>{len(manifest)}</td>" in cohort and f"<td>{n_test}</td>" in cohort
    for variable in ("age", "sex", "pT", "lnm", "os_months"):
        assert f"<td>{variable}</td>" in cohort


def test_failed_task_marked(study):
    text = study["html"]
    failed = _section(text, "task-lnm")
    assert 'data-status="failed"' in _open_tag(text, "task-lnm") and "esoct-failed" in _open_tag(text, "task-lnm")
    assert "FAILED: RuntimeError: no lymph node segmented" in failed
    assert "Traceback (most recent call last)" in failed
    assert "&lt;study&gt;/x.py" in failed  # absolute path scrubbed
    assert "1 failed" in text[:text.index('id="cohort"')]
    assert 'data-status="ok"' in _open_tag(text, "task-tstage")


def test_methods_name_seed_folds_and_versions(study):
    methods = _section(study["html"], "methods")
    assert f"seed {SEED}" in methods
    assert f"{FOLDS_TSTAGE}-fold patient-level stratified cross-validation" in methods
    assert f"{CV_SURVIVAL}-fold cross-validation on the training set" in methods
    assert "ResoLSTM-Depth" in methods and "50 trees" in methods and "20 bootstrap" in methods
    assert "<code>classifier</code>: random_forest" in methods  # unrecognised setting as key: value
    assert 'data-task="segmentation"' not in methods  # disabled task left out
    assert "longitudinal.yaml" in methods and "<code>binWidth</code>: 25" in methods
    assert "external test set" in methods and "The cohort comprised 8 patients" in methods
    for package in ("numpy", "pandas", "scikit-learn", "SimpleITK", "highdicom"):
        assert f"<td>{package}</td>" in methods
    import numpy

    assert f"<td>{numpy.__version__}</td>" in methods


def test_viewer_encodes_every_slice(study):
    text = study["html"]
    payloads = re.findall(r'<script type="application/json" class="esoct-viewer-data">(.*?)</script>', text, re.S)
    assert len(payloads) == 1
    data = json.loads(payloads[0])
    n = study["viewer_slices"]
    assert data["slices"] == list(range(n))
    assert set(data["layers"]) >= {"ct", "tumour", "gradcam"}
    assert all(len(v) == n for v in data["layers"].values())
    assert all(data["layers"]["ct"])
    labels = study["viewer_labels"]
    has_tumour = [(labels[z] == 1).any() for z in range(n)]
    assert [bool(s) for s in data["layers"]["tumour"]] == has_tumour
    assert data["start"] == int(np.argmax((labels == 1).sum(axis=(1, 2))))
    with Image.open(io.BytesIO(base64.b64decode(data["layers"]["ct"][0]))) as im:
        assert im.mode == "L" and im.size == (labels.shape[2], labels.shape[1])
    with Image.open(io.BytesIO(base64.b64decode(data["layers"]["gradcam"][data["start"]]))) as im:
        assert im.mode == "RGBA"
    assert f'data-n="{n}"' in text and f'data-slice="{data["start"]}"' in text
    assert 'data-toggle="gradcam"' in text and 'data-toggle="tumour"' in text


def test_encode_case_subsamples_and_downsamples():
    rng = np.random.default_rng(0)
    image = rng.normal(40, 100, size=(100, 300, 200)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[60:70, 100:150, 80:120] = 1
    labels[:, 10:20, 10:20] = 2
    case = encode_case(image, labels, spacing=(2.5, 0.8, 0.8))
    assert case.n_slices == 64 and case.slices[0] == 0 and case.slices[-1] == 99
    assert (case.width, case.height) == (128, 192)
    assert case.z_mm[-1] == pytest.approx(99 * 2.5)
    assert set(case.layers) == {"ct", "tumour", "aorta"}
    assert 60 <= case.slices[case.start] < 70
    assert window_to_uint8(np.array([-160.0, 40.0, 240.0, 1000.0])).tolist() == [0, 128, 255, 255]
    heat = heat_colours(np.array([0.0, 0.5, 1.0]))
    assert heat.tolist() == [[0, 0, 128, 0], [128, 255, 128, 100], [128, 0, 0, 200]]  # jet, alpha 200 * value


def test_missing_inputs(tmp_path):
    with pytest.raises(InputError, match="study directory not found"):
        write_report(tmp_path / "nope")
    with pytest.raises(InputError, match="study.yaml is missing"):
        write_report(tmp_path)


def test_cli(study, tmp_path, capsys):
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(study["study"]), "--out", str(out)]) == 0
    assert out.is_file() and str(out.resolve()) in capsys.readouterr().out
    assert main(["report", str(study["study"])]) == 0
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "study directory not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2


def test_fallback_without_report_json(study, tmp_path):
    """A results folder without report.json shows its CSVs and PNGs under their file names."""
    study_dir = tmp_path / "s"
    shutil.copytree(study["study"], study_dir, ignore=shutil.ignore_patterns("viewer", "report.html"))
    (study_dir / "results" / "tstage" / "report.json").unlink()
    text = write_report(study_dir).read_text()
    section = _section(text, "task-tstage")
    assert "<h2>tstage</h2>" in section and "<td>0.8123</td>" in section
    assert section.count('<img class="esoct-figure"') == 2 and "roc.png" in section
    assert 'id="viewer"' not in text
