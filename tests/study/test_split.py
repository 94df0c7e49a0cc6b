"""Single-centre designs: seeded random and temporal hold-out splits, checked by the study file and run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from esoct.errors import InputError
from esoct.study.split import DEVELOPMENT, HOLDOUT, holdout_patients, write_split_manifest


def _table(n=20):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n)], "center": "A",
                         "os_event": [1] * 14 + [0] * (n - 14),
                         "diagnosis_date": pd.date_range("2015-01-01", periods=n, freq="90D").strftime("%Y-%m-%d")
                         [rng.permutation(n)]})


def test_random_holdout_is_seeded_sized_and_stratified():
    t = _table()
    a = holdout_patients(t, "random", fraction=0.3, seed=1, stratify="os_event")
    assert a == holdout_patients(t, "random", fraction=0.3, seed=1, stratify="os_event")
    assert a != holdout_patients(t, "random", fraction=0.3, seed=2, stratify="os_event")
    assert len(a) == 6  # ceil(0.3 * 20)
    events = t.set_index("patient_id").loc[a, "os_event"]
    assert int(events.sum()) in (4, 5)  # 14 of 20 had the event: 0.7 * 6 = 4.2


def test_temporal_holdout_takes_the_latest_patients_and_keeps_ties_together():
    t = _table()
    held = holdout_patients(t, "temporal", fraction=0.25, date_column="diagnosis_date")
    dates = pd.to_datetime(t.set_index("patient_id")["diagnosis_date"])
    assert len(held) == 5 and dates[held].min() > dates.drop(held).max()
    t.loc[t["patient_id"] == dates.drop(held).idxmax(), "diagnosis_date"] = str(dates[held].min().date())
    tied = holdout_patients(t, "temporal", fraction=0.25, date_column="diagnosis_date")
    assert len(tied) == 6 and set(held) < set(tied)


def test_split_errors_name_the_problem():
    t = _table()
    with pytest.raises(InputError, match="date_column"):
        holdout_patients(t, "temporal", fraction=0.3)
    t.loc[3, "diagnosis_date"] = "soon"
    with pytest.raises(InputError, match="P03"):
        holdout_patients(t, "temporal", fraction=0.3, date_column="diagnosis_date")
    with pytest.raises(InputError, match="between 0 and 1"):
        holdout_patients(t, "random", fraction=1.5)


@pytest.fixture(scope="module")
def single_centre(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("single_centre")
    generate_cohort(root / "cohort", 24, seed=3, workers=1, progress=False)
    path = root / "cohort" / "manifest.csv"
    table = pd.read_csv(path, dtype={"patient_id": str})
    table["center"] = "A"
    table["diagnosis_date"] = pd.date_range("2016-01-01", periods=len(table), freq="60D").strftime("%Y-%m-%d")
    table.to_csv(path, index=False)
    return root


def _study(root, cohort: dict):
    doc = {"cohort": {"manifest": "cohort/manifest.csv", **cohort},
           "tasks": {"segmentation": {"enabled": False}, "tstage_binary": {"enabled": False},
                     "tstage_4class": {"enabled": False}, "lnm": {"enabled": False}}}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_study_file_checks_the_split_and_run_writes_the_split_manifest(single_centre, tmp_path):
    from esoct.study.config import StudyFileError, load_study
    from esoct.study.run import apply_split

    with pytest.raises(StudyFileError) as err:
        load_study(_study(single_centre, {"test_centers": ["A"]}))
    assert any("survival task needs an external test centre" in p for p in err.value.problems)
    with pytest.raises(StudyFileError) as err:
        load_study(_study(single_centre, {"split": "temporal", "test_centers": ["A"]}))
    assert err.value.problems == ["cohort.test_centers: ['A'] given with split: temporal; name test centres only "
                                  "with split: centre"]
    with pytest.raises(StudyFileError) as err:
        load_study(_study(single_centre, {"split": "temporal"}))
    assert err.value.problems == ["cohort.split: the temporal split needs cohort.date_column (a column of "
                                  "diagnosis or scan dates)"]
    config = load_study(_study(single_centre, {"split": "temporal", "date_column": "diagnosis_date",
                                               "test_fraction": 0.25}))
    run_config = apply_split(config, tmp_path)
    assert run_config.settings["cohort"]["test_centers"] == [HOLDOUT] and config.settings["cohort"]["test_centers"] == []
    table = pd.read_csv(run_config.manifest, dtype={"patient_id": str})
    assert (table["center"] == HOLDOUT).sum() == 6 and set(table["center"]) == {DEVELOPMENT, HOLDOUT}
    assert (table["site"] == "A").all()
    assert table.loc[table["center"] == HOLDOUT, "patient_id"].tolist() == table["patient_id"].tolist()[-6:]
    from esoct.io.manifest import load_manifest

    manifest = load_manifest(run_config.manifest)  # absolute image paths: readable from the study directory
    assert all(manifest.resolve(p, "image_pre").is_file() for p in manifest.patients)


def test_methods_text_describes_a_temporal_split(tmp_path):
    from esoct.report.methods import cohort_sentences

    cohort = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "center": [DEVELOPMENT, DEVELOPMENT, HOLDOUT, HOLDOUT],
                           "site": "A", "diagnosis_date": ["2016-01-01", "2017-01-01", "2018-03-01", "2019-05-02"]})
    text = " ".join(cohort_sentences({"cohort": {"split": "temporal", "test_fraction": 0.5,
                                                 "date_column": "diagnosis_date"}}, cohort))
    assert "from 1 centre(s)" in text and "latest 50% of the patients by diagnosis_date (n = 2 (diagnosed " \
        "2018-03-01 to 2019-05-02)" in text and "earlier patients (n = 2)" in text


def test_write_split_manifest_keeps_an_existing_site_column(single_centre, tmp_path):
    path = tmp_path / "m.csv"
    table = pd.read_csv(single_centre / "cohort" / "manifest.csv", dtype={"patient_id": str})
    table["image_pre"] = [str((single_centre / "cohort" / p).resolve()) for p in table["image_pre"]]
    table["mask_pre"] = [str((single_centre / "cohort" / p).resolve()) for p in table["mask_pre"]]
    for c in ("image_post", "mask_post", "mask_pre_reader2"):
        if c in table:
            table[c] = [None if pd.isna(v) else str((single_centre / "cohort" / v).resolve()) for v in table[c]]
    table.insert(2, "site", "St Elsewhere")
    table.to_csv(path, index=False)
    out = write_split_manifest(path, [table["patient_id"][0]], tmp_path / "split" / "m.csv")
    back = pd.read_csv(out, dtype={"patient_id": str})
    assert (back["site"] == "St Elsewhere").all() and back["center"].tolist()[:2] == [HOLDOUT, DEVELOPMENT]
