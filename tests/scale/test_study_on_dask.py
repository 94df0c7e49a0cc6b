"""A study run whose cohort stages go to a real 2-worker Dask LocalCluster equals the serial run."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

pytest.importorskip("distributed")
pytest.importorskip("radiomics")

from distributed import Client, LocalCluster  # noqa: E402

from esoct.study.config import load_study  # noqa: E402
from esoct.study.run import run_study  # noqa: E402


def test_lnm_and_survival_on_a_local_cluster_equal_the_serial_run(tmp_path):
    from esoct.phantom.cohort import generate_cohort

    generate_cohort(tmp_path / "cohort", 24, seed=11, workers=1, progress=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}},
        "featureClass": {"firstorder": None, "shape": None}}))
    doc = {"seed": 2, "cohort": {"manifest": "cohort/manifest.csv", "test_centers": ["C"]},
           "radiomics": {"params": "params.yaml", "workers": 1},
           "tasks": {"segmentation": {"enabled": False}, "tstage_binary": {"enabled": False},
                     "tstage_4class": {"enabled": False}, "lnm": {"folds": 2, "features": "tumour+nodes"},
                     "survival": {"n_estimators": 10, "n_bootstrap": 20, "cv": 2}}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(doc))
    config = load_study(tmp_path / "study.yaml")
    serial = run_study(config, tmp_path / "serial", progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        on_dask = run_study(config, tmp_path / "dask", progress=False, scheduler=client)
        assert len(client.scheduler_info()["workers"]) == 2
    assert serial.status == on_dask.status == {"lnm": "ok", "survival": "ok"}
    for table in ("features/radiomics.parquet", "features/radiomics_lnm.parquet", "features/delta.parquet"):
        pd.testing.assert_frame_equal(_sorted(tmp_path / "serial" / table), _sorted(tmp_path / "dask" / table))
    for result in ("results/lnm/predictions.csv", "results/lnm/metrics.csv", "results/survival/table2.csv"):
        assert (tmp_path / "serial" / result).read_text() == (tmp_path / "dask" / result).read_text(), result


def _sorted(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    if "patient_id" not in df.columns:
        df = df.reset_index()
    return df.sort_values([c for c in ("patient_id", "timepoint") if c in df.columns]).reset_index(drop=True)
