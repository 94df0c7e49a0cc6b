"""A whole study through `esoct run`: every task, a second run that redoes nothing, a killed run that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")

from esoct.cli import main  # noqa: E402

SMALL_PARAMS = {"setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}},
                "featureClass": {"firstorder": None, "shape": None, "glcm": None}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("full_study")
    generate_cohort(root / "cohort", 30, seed=4, workers=1, progress=False)
    (root / "params.yaml").write_text(yaml.safe_dump(SMALL_PARAMS))
    return root


def _study(root, name, tasks, workers=1) -> str:
    doc = {"name": name, "seed": 3,
           "cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["C"]},
           "radiomics": {"params": "params.yaml", "workers": workers},
           "tasks": {t: {"enabled": False} for t in ("segmentation", "tstage_binary", "tstage_4class", "lnm",
                                                     "survival")}}
    for task, settings in tasks.items():
        doc["tasks"][task] = {"enabled": True, **settings}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


TINY = {
    "segmentation": {"stage1_epochs": 1, "stage2_epochs": 1, "iterations": 2, "max_train_patients": 4,
                     "stage1_patch": [16, 32, 32], "stage2_patch": [16, 32, 32], "base_features": 4},
    "tstage_binary": {"models": ["resolstm"], "folds": 2},
    "tstage_4class": {"folds": 2, "epochs": 1, "krt_size": [16, 16, 16], "krt_spacing": [8.0, 4.0, 4.0],
                      "viewer_cases": 2},
    "lnm": {"folds": 2},
    "survival": {"n_estimators": 10, "n_bootstrap": 20, "cv": 2},
}


def test_every_task_runs_and_a_second_run_redoes_nothing(cohort, capsys):
    import torch

    torch.set_num_threads(1)
    out = cohort / "study_all"
    path = _study(cohort, "all", TINY)
    code = main(["run", path, "--out", str(out), "--report"])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, printed
    # the study bar, and under it each long step's bar with its ETA (elapsed<remaining): training steps
    # with epoch and loss, per-patient work
    bars = captured.err
    assert "study: " in bars and "train stage1: " in bars and "train stage2: " in bars, bars[-3000:]
    assert " steps |" in bars and " patients |" in bars and "epoch 1/1 loss " in bars, bars[-3000:]
    assert "00:00<" in bars
    run = json.loads((out / "results" / "run.json").read_text())
    assert {t: v["status"] for t, v in run["tasks"].items()} == {t: "ok" for t in TINY}
    # each task's results, its report section and its model files
    for folder in ("segmentation", "tstage", "tstage4", "lnm", "survival"):
        spec = json.loads((out / "results" / folder / "report.json").read_text())
        assert spec["tables"] or spec["figures"], folder
        assert (out / "results" / folder / "done.json").is_file()
    seg_models = out / "models" / "segmentation"
    assert sorted(p.name for p in seg_models.iterdir()) == ["cascade.json", "stage1.pt", "stage1_plan.json", "stage2.pt",
                                                            "stage2_plan.json"]
    # the saved plans are what was trained: the study file's patch overrides are in them
    for stage in ("stage1", "stage2"):
        plan = json.loads((seg_models / f"{stage}_plan.json").read_text())
        assert plan["patch_size"] == [16, 32, 32] and plan["features_per_stage"][0] == 4
    nnunet = out / "results" / "segmentation" / "nnunet"
    assert sorted(p.name for p in nnunet.iterdir() if p.is_dir()) == ["Dataset501_EsophagusCT",
                                                                      "Dataset502_EsophagusCTCascadeCrops"]
    nodes = pd.read_csv(out / "results" / "segmentation" / "nodes.csv")
    assert len(nodes) > 0 and set(nodes["station"]) <= {"right_rln", "left_rln", "subcarinal", "paraesophageal",
                                                          "paratracheal", "lower_paraesophageal", ""}
    assert sorted(p.name for p in (out / "models" / "tstage4").iterdir()) == ["fold-0", "fold-1"]
    assert (out / "models" / "lnm" / "model.skops").is_file() and (out / "models" / "survival" / "model.skops").is_file()
    seg = pd.read_csv(out / "results" / "segmentation" / "per_patient.csv", dtype={"patient_id": str})
    manifest = pd.read_csv(cohort / "cohort" / "manifest.csv", dtype={"patient_id": str})
    assert set(seg["patient_id"]) == set(manifest.loc[manifest["center"] == "C", "patient_id"])
    assert seg["dice"].between(0, 1).all()
    comparison = pd.read_csv(out / "results" / "tstage" / "comparison.csv")
    assert comparison["model"].tolist() == ["ResoLSTM-Depth"] and comparison["n"].iloc[0] == len(manifest)
    lnm = pd.read_csv(out / "results" / "lnm" / "predictions.csv")
    assert set(lnm["cohort"]) == {"cv", "test"} and lnm["p_lnm"].between(0, 1).all()
    viewer = sorted((out / "results" / "viewer").glob("*.npz"))
    assert len(viewer) == 2
    with np.load(viewer[0]) as case:
        assert case["image"].shape == case["labels"].shape == case["gradcam"].shape == (16, 16, 16)
        assert 0 <= case["gradcam"].min() and case["gradcam"].max() <= 1 and (case["labels"] == 1).any()
    page = (out / "report.html").read_text()
    from esoct.report.volume_viewer import niivue_script

    assert niivue_script() in page  # the whole-volume viewer of the tstage_4class cases, inlined
    own = page.replace(niivue_script(), "")  # NiiVue's comments cite web pages; nothing else may
    assert "Lymph-node metastasis" in page and "Kaplan-Meier" in page and "http://" not in own and "https://" not in own

    # the study's models as a bundle, run on one patient with its reference label map
    bundle, case = cohort / "bundle_all", cohort / "case_all"
    assert main(["export", str(out), "--out", str(bundle)]) == 0
    row = manifest.iloc[0]
    assert main(["predict", "--bundle", str(bundle), "--input", str(cohort / "cohort" / row["image_pre"]),
                 "--mask", str(cohort / "cohort" / row["mask_pre"]), "--out", str(case), "-q"]) == 0
    capsys.readouterr()
    prediction = json.loads((case / "prediction.json").read_text())
    assert {k: v["status"] for k, v in prediction["components"].items()} == {
        k: "ok" for k in ("segmentation", "tstage", "tstage4", "lnm", "survival", "gradcam")}
    assert sum(prediction["components"]["tstage4"]["probabilities"].values()) == pytest.approx(1.0)
    assert 0 <= prediction["components"]["lnm"]["probability"] <= 1
    assert any(c.startswith("node_") for c in __import__("esoct.io.model_store", fromlist=["load_model"]).load_model(bundle / "lnm" / "model.skops")["columns"])

    # a second run: every task is reused, nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.csv")}
    code = main(["run", path, "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert code == 0 and all(f"{t}: cached" in printed for t in TINY), printed
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.csv")} == stamps
    # a changed setting reruns that task only
    doc = yaml.safe_load(open(path))
    doc["tasks"]["lnm"]["folds"] = 3
    open(path, "w").write(yaml.safe_dump(doc))
    main(["run", path, "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert "lnm: ok" in printed and "survival: cached" in printed
    assert (out / "previous" / "lnm" / "results" / "predictions.csv").is_file()  # the 2-fold run, set aside
    assert json.loads((out / "results" / "lnm" / "metrics.json").read_text())["folds"] == 3
    assert json.loads((out / "results" / "settings.json").read_text())["tasks"]["lnm"]["folds"] == 3


def test_a_killed_run_resumes_with_the_same_numbers(cohort):
    tasks = {"lnm": {"folds": 3, "features": "tumour+nodes"}}  # tumour radiomics: a stage with a per-scan cache
    clean = cohort / "study_clean"
    assert main(["run", _study(cohort, "clean", tasks), "--out", str(clean), "-q"]) == 0
    killed = cohort / "study_killed"
    path = _study(cohort, "killed", tasks)
    cmd = [sys.executable, "-m", "esoct.cli", "run", path, "--out", str(killed), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cache = killed / "features" / "cache" / "radiomics"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.is_dir() and len(list(cache.rglob("*.json"))) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    n_cached = len(list(cache.rglob("*.json")))
    assert 5 <= n_cached < 30 and not (killed / "results" / "lnm" / "done.json").exists()
    # the rerun reuses the scans extracted before the kill and ends with the clean run's numbers
    assert main(["run", path, "--out", str(killed), "-q"]) == 0
    a = pd.read_csv(clean / "results" / "lnm" / "predictions.csv")
    b = pd.read_csv(killed / "results" / "lnm" / "predictions.csv")
    pd.testing.assert_frame_equal(a, b)
    assert (clean / "results" / "lnm" / "metrics.csv").read_text() == (killed / "results" / "lnm" / "metrics.csv").read_text()


def test_a_failing_patient_is_recorded_and_the_study_goes_on(cohort, capsys):
    import shutil

    root = cohort / "broken"
    shutil.copytree(cohort / "cohort", root / "cohort")
    shutil.copy(cohort / "params.yaml", root / "params.yaml")
    manifest = pd.read_csv(root / "cohort" / "manifest.csv", dtype={"patient_id": str})
    victim = manifest["patient_id"].iloc[3]
    (root / "cohort" / manifest.loc[3, "image_pre"]).write_bytes(b"not a nifti file")
    out = root / "study"
    code = main(["run", _study(root, "broken", {"lnm": {"folds": 2}}), "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert code == 1 and "lnm: ok" in printed and f"1 patient(s) failed: {victim}" in printed
    failures = pd.read_csv(out / "results" / "lnm" / "failures.csv", dtype=str)
    assert list(failures["patient_id"]) == [victim] and victim in failures["reason"].iloc[0]
    predictions = pd.read_csv(out / "results" / "lnm" / "predictions.csv", dtype={"patient_id": str})
    assert len(predictions) == len(manifest) - 1 and victim not in set(predictions["patient_id"])
    run = json.loads((out / "results" / "run.json").read_text())
    assert run["tasks"]["lnm"]["failed_patients"] == [victim]
