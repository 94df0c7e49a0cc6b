"""Cohort stages on a real 2-worker Dask LocalCluster give exactly the serial run's outputs."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")
pytest.importorskip("radiomics")
pytest.importorskip("pyarrow")
torch = pytest.importorskip("torch")

from distributed import Client, LocalCluster  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.features.cohort import extract_cohort  # noqa: E402
from esoct.io.imageio import read_image  # noqa: E402
from esoct.scale.dask import dask_client, map_patients  # noqa: E402
from esoct.study.roi_extraction import extract_cohort_rois  # noqa: E402
from esoct.study.runner import run_per_patient  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N_PATIENTS = 6
PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "shape": None},
}


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("phantom")
    generate_cohort(root / "cohort", N_PATIENTS, seed=4, workers=1, progress=False)
    return root / "cohort" / "manifest.csv"


@pytest.fixture(scope="module")
def broken(cohort, tmp_path_factory):
    """A copy of the cohort whose third patient's pre-treatment CT is garbage."""
    root = tmp_path_factory.mktemp("broken")
    shutil.copytree(cohort.parent, root / "cohort")
    manifest = root / "cohort" / "manifest.csv"
    table = pd.read_csv(manifest, dtype={"patient_id": str})
    bad = table["patient_id"][2]
    (manifest.parent / table["image_pre"][2]).write_bytes(b"not a NIfTI file")
    return manifest, bad


def test_radiomics_on_dask_equals_serial(cohort, client, tmp_path):
    serial = extract_cohort(cohort, tmp_path / "serial" / "r.parquet", params=PARAMS, workers=1, progress=False)
    dask = extract_cohort(cohort, tmp_path / "dask" / "r.parquet", params=PARAMS, scheduler=client, progress=False)
    assert dask.computed == 2 * N_PATIENTS and serial.failures.empty and dask.failures.empty
    assert len(serial.table) == 2 * N_PATIENTS
    pd.testing.assert_frame_equal(dask.table, serial.table, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(dask.parquet), pd.read_parquet(serial.parquet), check_exact=True)


def _arrays_equal(a, b) -> bool:
    if a.name.endswith(".npz"):
        with np.load(a) as x, np.load(b) as y:
            return sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)
    va, vb = read_image(a), read_image(b)
    return np.array_equal(va.array, vb.array) and va.same_geometry(vb, atol=0)


def test_rois_on_dask_equal_serial(cohort, client, tmp_path):
    kinds = ("slices", "krt")
    serial = extract_cohort_rois(cohort, tmp_path / "serial", kinds=kinds, progress=False)
    dask = extract_cohort_rois(cohort, tmp_path / "dask", kinds=kinds, scheduler=client, progress=False)
    assert serial.ok and dask.ok and list(dask.results) == list(serial.results)  # input order
    assert dask.results == serial.results
    files = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "dask").iterdir())
    assert len([f for f in files if f.endswith(("_slices.npz", "_krt_image.nii.gz"))]) == 2 * N_PATIENTS
    for name in files:
        a, b = tmp_path / "serial" / name, tmp_path / "dask" / name
        assert a.read_bytes() == b.read_bytes() or _arrays_equal(a, b), name
    # resume on Dask: everything is done, nothing is submitted
    again = extract_cohort_rois(cohort, tmp_path / "dask", kinds=kinds, scheduler=client, progress=False)
    assert sorted(again.skipped) == sorted(serial.results) and not again.results


def test_a_bad_patient_is_recorded_and_the_others_complete(broken, client, tmp_path):
    manifest, bad = broken
    serial = extract_cohort_rois(manifest, tmp_path / "serial", kinds=("slices",), progress=False)
    dask = extract_cohort_rois(manifest, tmp_path / "dask", kinds=("slices",), scheduler=client, progress=False)
    for run in (serial, dask):
        assert list(run.failures) == [bad] and bad in run.failures[bad] and "cannot read image" in run.failures[bad]
        assert len(run.results) == N_PATIENTS - 1
    assert dask.failures == serial.failures
    failures = pd.read_csv(tmp_path / "dask" / "failures.csv", dtype={"patient_id": str})
    assert failures["patient_id"].tolist() == [bad]
    radiomics = extract_cohort(manifest, tmp_path / "r" / "r.parquet", params=PARAMS, timepoints=("pre",), scheduler=client,
                               progress=False)
    assert radiomics.failures["patient_id"].tolist() == [bad] and len(radiomics.table) == N_PATIENTS - 1


def _fails_on_odd(pid: str) -> str:
    if int(pid[-1]) % 2:
        raise RuntimeError("odd")
    if pid.endswith("4"):
        raise InputError("too even")
    return pid.lower()


def test_map_patients_keeps_input_order_and_failure_wording(client, tmp_path):
    patients = [f"P{i}" for i in (5, 4, 2, 0, 3)]
    serial = run_per_patient(patients, _fails_on_odd, progress=False)
    dask = map_patients(_fails_on_odd, patients, scheduler=client, failures_csv=tmp_path / "f.csv", progress=False,
                        done=lambda pid: pid == "P0")
    assert list(dask.results.items()) == [("P2", "p2")] and dask.skipped == ["P0"]
    assert dask.failures == {p: r for p, r in serial.failures.items()}
    assert dask.failures["P5"] == "patient P5: RuntimeError: odd" and dask.failures["P4"] == "patient P4: too even"
    assert pd.read_csv(tmp_path / "f.csv")["patient_id"].tolist() == ["P5", "P4", "P3"]
    # run_per_patient delegates to Dask when given a scheduler
    assert run_per_patient(patients, _fails_on_odd, scheduler=client, progress=False).failures == serial.failures


def test_an_unreachable_scheduler_is_a_clear_error_quickly():
    start = time.monotonic()
    with pytest.raises(InputError, match="tcp://127.0.0.1:1"):
        with dask_client("tcp://127.0.0.1:1", timeout_s=3):
            pass
    assert time.monotonic() - start < 60  # generous: only guards against hanging
    with pytest.raises(InputError, match="scheduler must be"):
        with dask_client(42):
            pass


def test_an_existing_client_is_left_open(client):
    with dask_client(client) as c:
        assert c is client
    assert client.status == "running"


def _tiny_segmenter(path):
    from esoct.models.unet3d import UNet3D
    from esoct.segment.data import Preprocessing
    from esoct.segment.inference import Segmenter
    from esoct.train.checkpoint import save_checkpoint
    from esoct.train.device import seed_everything

    seed_everything(0)
    model = UNet3D(1, 6, channels=(8, 16, 16), strides=(1, 2, 2), deep_supervision=2)
    for p in model.parameters():  # a visible, non-trivial label map from an untrained network
        p.data.add_(torch.randn_like(p) * 0.05)
    segmenter = Segmenter(model, Preprocessing((8.0, 8.0, 8.0), -200.0, 300.0, 40.0, 100.0), (16, 32, 32), 6)
    save_checkpoint(path, model, epoch=1, extra={"segmenter": segmenter.to_dict()})
    return path


def test_segment_cohort_on_dask_equals_serial(cohort, client, tmp_path):
    from esoct.segment.cohort import output_path, segment_cohort

    ckpt = _tiny_segmenter(tmp_path / "checkpoint.pt")
    serial = segment_cohort(ckpt, cohort, tmp_path / "serial", postprocess=False, progress=False)
    dask = segment_cohort(ckpt, cohort, tmp_path / "dask", postprocess=False, scheduler=client, progress=False)
    assert serial.ok and dask.ok and len(dask.results) == N_PATIENTS and list(dask.results) == list(serial.results)
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    for pid, rel in zip(table["patient_id"], table["image_pre"]):
        a = read_image(output_path(tmp_path / "serial", pid))
        b = read_image(output_path(tmp_path / "dask", pid))
        image = read_image(cohort.parent / rel)
        assert np.array_equal(a.array, b.array) and a.array.dtype == np.uint8
        assert b.same_geometry(image, atol=0)
    assert len(np.unique(a.array)) > 1
    # resume: existing outputs are skipped; a missing one is redone
    output_path(tmp_path / "dask", table["patient_id"][0]).unlink()
    again = segment_cohort(ckpt, cohort, tmp_path / "dask", postprocess=False, scheduler=client, progress=False)
    assert list(again.results) == [table["patient_id"][0]] and len(again.skipped) == N_PATIENTS - 1
    with pytest.raises(InputError, match="segmentation model not found"):
        segment_cohort(tmp_path / "missing.pt", cohort, tmp_path / "x", progress=False)


def test_scheduler_local_starts_and_stops_its_own_cluster():
    run = run_per_patient(["b", "a"], str.upper, scheduler="local", workers=1, progress=False)
    assert run.results == {"b": "B", "a": "A"} and list(run.results) == ["b", "a"]
