"""The study file: the example validates, every mistake is reported at once, `esoct init/run` work end to end."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from esoct.cli import main
from esoct.study.config import EXAMPLE, StudyFileError, load_study, write_example


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("study_cohort")
    generate_cohort(root / "cohort", 30, seed=4, workers=1, progress=False)
    return root


def _write(root, doc) -> object:
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    return path


def test_the_example_is_valid_and_fills_defaults(cohort):
    manifest = pd.read_csv(cohort / "cohort" / "manifest.csv")
    text = EXAMPLE.replace("test_centers: [C]", f"test_centers: [{sorted(manifest['center'].unique())[-1]}]")
    text = text.replace("folds: 5\n    epochs: 15", "folds: 2\n    epochs: 15")  # 30 patients: two T4
    config = load_study(_write(cohort, text))
    assert config.enabled_tasks == ["segmentation", "tstage_binary", "tstage_4class", "lnm", "survival"]
    assert config.task("tstage_4class")["krt_size"] == [32, 32, 32] and config.settings["scale"]["scheduler"] == "local"
    assert config.manifest == (cohort / "cohort" / "manifest.csv").resolve()
    assert config.task("survival")["n_estimators"] == 400 and config.task("tstage_binary")["folds"] == 5
    minimal = load_study(_write(cohort, {"cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["C"]},
                                         "tasks": {"tstage_4class": {"folds": 2}}}))
    assert minimal.settings["seed"] == 0 and minimal.task("tstage_binary")["preset"] == "fast"


def test_every_mistake_is_reported_at_once(cohort):
    doc = {
        "cohort": {"manifest": "cohort/nowhere.csv", "test_centres": ["C"]},
        "seed": "zero",
        "radiomics": {"params": "missing.yaml"},
        "tasks": {"tstage_binary": {"models": ["resolstm", "vit"], "folds": 1}, "survival": {"n_estimator": 10}},
    }
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, doc))
    problems = err.value.problems
    expected = [
        "cohort.test_centres: unknown key (did you mean 'test_centers'?)",
        "seed: must be int, got 'zero' (str)",
        "tasks.tstage_binary.models: ['vit'] not allowed; choose from ['resnet', 'resolstm']",
        "tasks.tstage_binary.folds: must be at least 2, got 1",
        "tasks.survival.n_estimator: unknown key (did you mean 'n_estimators'?)",
    ]
    for e in expected:
        assert e in problems, (e, problems)
    assert any(p.startswith("cohort.manifest: file not found") for p in problems)
    assert any(p.startswith("radiomics.params: file not found") for p in problems)
    assert len(problems) == 7
    assert "7 problem(s)" in str(err.value) and str(cohort / "study.yaml") in str(err.value)


def test_segmentation_cascade_keys_are_checked_and_become_the_settings(cohort):
    from esoct.study.run import cascade_settings

    doc = {"cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["C"]},
           "tasks": {"tstage_4class": {"folds": 2},
                     "segmentation": {"stage2_patch": [32, 64], "min_node_mm3": -1, "spacing": [5, 2, 2],
                                      "loss": "dice"}}}
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, doc))
    problems = err.value.problems
    assert "tasks.segmentation.min_node_mm3: must be at least 0, got -1" in problems
    assert "tasks.segmentation.loss: ['dice'] not allowed; choose from ['ce_dice', 'focal_dice']" in problems
    assert "tasks.segmentation.spacing: unknown key (did you mean 'stage1_spacing'?)" in problems \
        or "tasks.segmentation.spacing: unknown key (did you mean 'stage2_spacing'?)" in problems
    doc["tasks"]["segmentation"] = {"stage2_patch": [32, 64]}
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, doc))
    assert err.value.problems == ["tasks.segmentation.stage2_patch: must be three positive numbers (z, y, x), got [32, 64]"]
    doc["tasks"]["segmentation"] = {"stage2_spacing": [5, 1.5, 1.5], "node_weight": 3, "margin_mm": [5, 30, 20]}
    s = cascade_settings(load_study(_write(cohort, doc)).task("segmentation"))
    assert s.stage2_spacing == (5, 1.5, 1.5) and s.stage1_spacing is None and s.stage2_patch is None
    assert s.class_weights == {1: 2.0, 4: 3.0} and s.margin() == (5.0, 30.0, 20.0) and s.min_node_mm3 == 30.0
    assert s.loss == "ce_dice"


def test_impossible_split_is_refused(cohort):
    manifest = pd.read_csv(cohort / "cohort" / "manifest.csv")
    doc = {"cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["Mars"]},
           "tasks": {"tstage_binary": {"folds": 20}, "tstage_4class": {"folds": 2, "krt_size": [32, 0]}}}
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, doc))
    centres = sorted(manifest["center"].astype(str).unique())
    assert f"cohort.test_centers: ['Mars'] not in the manifest's centres {centres}" in err.value.problems
    assert any("20 folds need at least 20 patients of T1-2" in p for p in err.value.problems)
    assert "tasks.tstage_4class.krt_size: must be three positive numbers (z, y, x), got [32, 0]" in err.value.problems
    doc = {"cohort": {"manifest": "cohort/manifest.csv", "test_centers": centres},
           "tasks": {"tstage_4class": {"folds": 6}}}
    with pytest.raises(StudyFileError, match="6 folds need at least 6 patients of T4"):
        load_study(_write(cohort, doc))
    with pytest.raises(StudyFileError, match="needs an external test centre and at least one training centre"):
        load_study(_write(cohort, doc))


def test_bad_yaml_and_missing_file(cohort, tmp_path):
    with pytest.raises(StudyFileError, match="not valid YAML"):
        load_study(_write(tmp_path, "cohort: [unclosed"))
    with pytest.raises(Exception, match="study file not found"):
        load_study(tmp_path / "none.yaml")


def test_cli_init_check_and_run_with_a_failing_task(cohort, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    assert main(["init", str(path)]) == 0
    assert path.read_text() == EXAMPLE
    assert main(["init", str(path)]) == 2  # refuses to overwrite
    write_example(path, overwrite=True)
    manifest = pd.read_csv(cohort / "cohort" / "manifest.csv")
    doc = {
        "seed": 1,
        "cohort": {"manifest": str(cohort / "cohort" / "manifest.csv"),
                   "test_centers": [sorted(manifest["center"].astype(str).unique())[-1]]},
        "radiomics": {"params": str(tmp_path / "params.yaml"), "workers": 1},
        "tasks": {"tstage_binary": {"enabled": False}, "segmentation": {"enabled": False},
                  "tstage_4class": {"enabled": False}, "lnm": {"enabled": False},
                  "survival": {"n_estimators": 10, "n_bootstrap": 20, "cv": 2}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}},
        "featureClass": {"firstorder": None, "shape": None}}))
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "--check"]) == 0
    checked = capsys.readouterr().out
    assert "valid; tasks: survival" in checked
    # the time estimate: one line per task with what it counted (the radiomics cost probed on patient 1)
    line = next(ln for ln in checked.splitlines() if ln.strip().startswith("survival"))
    assert "s per scan measured" in line and "90 scans" in line, checked
    assert re.search(r"^  total\s+\d+ (s|min)$", checked, re.M), checked
    from esoct.study.estimate import estimate_study

    (estimate,), _ = estimate_study(load_study(path))
    estimated = estimate.seconds
    assert main(["run", str(path), "--check", "--scheduler", "local"]) == 0
    out = tmp_path / "study"
    code = main(["run", str(path), "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    took = json.loads((out / "results" / "run.json").read_text())["tasks"]["survival"]["seconds"]
    assert took / 3 < estimated < took * 3, (estimated, took)
    assert (out / "study.yaml").read_text() == path.read_text() and (out / "cohort.csv").is_file()
    metrics = json.loads((out / "results" / "survival" / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and "survival: ok" in printed
    # a broken radiomics parameter file: the task fails, is recorded, and the exit code says so
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"featureClass": {"nosuchclass": None}}))
    code = main(["run", str(path), "--out", str(out), "-q"])
    assert code == 1
    assert (out / "results" / "survival" / "error.txt").is_file()
    assert "survival:" in capsys.readouterr().out
    # what the first run computed is kept, set aside because it belongs to the old settings
    assert (out / "previous" / "survival" / "results" / "table2.csv").is_file()
    assert not (out / "results" / "survival" / "table2.csv").exists()


def test_cli_reports_study_file_mistakes_with_exit_code_2(cohort, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"cohort": {"manifest": "x.csv"}, "taskz": {}}))
    assert main(["run", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "taskz: unknown key (did you mean 'tasks'?)" in err and "cohort.manifest: file not found" in err


def test_survival_endpoint_must_be_a_column_pair_of_the_manifest(cohort):
    doc = {"cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["C"]},
           "tasks": {"tstage_4class": {"folds": 2}, "survival": {"endpoint": "dfs"}}}
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, doc))
    assert ("tasks.survival.endpoint: 'dfs' needs the manifest column(s) ['dfs_months', 'dfs_event']; "
            "endpoints in the manifest: os") in err.value.problems
    doc["tasks"]["survival"]["endpoint"] = "DFS-1"
    with pytest.raises(StudyFileError, match="endpoint names are lower-case letters and digits"):
        load_study(_write(cohort, doc))
    doc["tasks"]["survival"]["endpoint"] = "os"
    assert load_study(_write(cohort, doc)).task("survival")["endpoint"] == "os"


def test_workers_widths_model_lists_and_duplicate_keys_are_checked(cohort):
    doc = {"cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["C"]},
           "radiomics": {"workers": 0},
           "tasks": {"tstage_binary": {"models": []}, "tstage_4class": {"folds": 2},
                     "survival": {"deep_width": 0}}}
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, doc))
    problems = err.value.problems
    assert "radiomics.workers: must be at least 1, got 0" in problems
    assert "tasks.tstage_binary.models: must name at least one, got an empty list" in problems
    assert "tasks.survival.deep_width: must be greater than 0, got 0" in problems
    text = "cohort:\n  manifest: cohort/manifest.csv\n  test_centers: [C]\nseed: 1\nseed: 2\n"
    with pytest.raises(StudyFileError) as err:
        load_study(_write(cohort, text))
    assert len(err.value.problems) == 1 and "key 'seed' appears twice (lines 4 and 5)" in err.value.problems[0]


def test_a_second_run_into_the_same_study_directory_is_refused(cohort, tmp_path, capsys):
    """Issue 17.1: another process holding the study directory -> exit 2 naming it; a killed holder frees it."""
    import subprocess
    import sys

    from esoct.errors import StudyLockedError
    from esoct.study.lock import study_lock

    manifest = pd.read_csv(cohort / "cohort" / "manifest.csv")
    path = _write(tmp_path, {"cohort": {"manifest": str(cohort / "cohort" / "manifest.csv"),
                                        "test_centers": [sorted(manifest["center"].astype(str).unique())[-1]]},
                             "tasks": {t: {"enabled": False} for t in ("segmentation", "tstage_binary", "tstage_4class",
                                                                        "lnm", "survival")}})
    out = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from esoct.study.lock import study_lock\n"
                               "with study_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(120)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", str(path), "--out", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert "in use by another esoct process" in err and f"pid {holder.pid}" in err, err
        assert not (out / "results").exists()  # nothing was written by the refused run
        with pytest.raises(StudyLockedError, match=str(holder.pid)):
            with study_lock(out):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the operating system drops the lock
        holder.wait()
    assert main(["run", str(path), "--out", str(out), "-q"]) == 0
    assert (out / "cohort.csv").is_file() and (out / "study.yaml").is_file()


def test_check_refuses_splits_the_tasks_cannot_run(cohort, tmp_path):
    """Issue 17.9: survival with < 5 test patients and LNM with too few of a class for the LASSO's
    inner folds are refused by the study file (so by `run --check`), not minutes into the run."""
    table = pd.read_csv(cohort / "cohort" / "manifest.csv", dtype={"patient_id": str})
    for column in ("image_pre", "mask_pre", "image_post", "mask_post"):
        if column in table.columns:
            table[column] = [str((cohort / "cohort" / v).resolve()) if isinstance(v, str) else v for v in table[column]]
    test_centre = sorted(table["center"].astype(str).unique())[-1]
    in_test = table.index[table["center"].astype(str) == test_centre]
    table.loc[in_test[3:], "center"] = "A" if test_centre != "A" else "B"  # 3 test patients are left
    train = table.index[table["center"].astype(str) != test_centre]
    table.loc[train, "lnm"] = 0
    table.loc[train[:3], "lnm"] = 1  # 3 positives: 3 outer x 3 inner folds need 5 (2/3 of them in each inner CV)
    table.to_csv(tmp_path / "manifest.csv", index=False)
    doc = {"cohort": {"manifest": str(tmp_path / "manifest.csv"), "test_centers": [test_centre]},
           "tasks": {"tstage_binary": {"enabled": False}, "segmentation": {"enabled": False},
                     "tstage_4class": {"enabled": False}, "lnm": {"folds": 3}}}
    with pytest.raises(StudyFileError) as err:
        load_study(_write(tmp_path, doc))
    problems = "\n".join(err.value.problems)
    assert f"the test centre(s) ['{test_centre}'] have 3 patient(s) with OS; at least 5 are needed" in problems
    assert "3 outer folds with the LASSO's 3 inner folds need at least 5 training-centre patients with lnm = 1, " \
           "the manifest has 3" in problems
    table.loc[train[:5], "lnm"] = 1
    table.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(StudyFileError) as err:
        load_study(_write(tmp_path, doc))
    assert not any("lnm" in p for p in err.value.problems)  # 5 positives are enough
