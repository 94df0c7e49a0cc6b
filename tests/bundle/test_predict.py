"""esoct predict: outputs and their values, DICOM SEG, PHI policy, bad input."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from esoct.cli import main  # noqa: E402
from esoct.io.imageio import read_image, write_image  # noqa: E402

PHI_NAME, PHI_ID, PHI_BIRTH, PHI_PLACE = "Zzyzxplanted^Quentin", "PHI4242XQ", "19010203", "Plantedville General"


def _run(*args, verbose: bool = False) -> int:
    return main([*(["-v"] if verbose else []), "predict", *map(str, args), "-q"])


def _dicom_copy(src, dst, **changes):
    """Copy a DICOM series, changing header fields in every file."""
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        for k, v in changes.items():
            setattr(ds, k, v)
        ds.save_as(dst / f.name)
    return dst


@pytest.fixture(scope="module")
def nifti_run(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "out"
    code = _run("--bundle", study["bundle"], "--input", study["image"], "--out", out, "--mask", study["mask"])
    return code, out, json.loads((out / "prediction.json").read_text())


def test_nifti_outputs_geometry_and_statuses(study, nifti_run):
    code, out, doc = nifti_run
    assert code == 0 and doc["exit_code"] == 0
    image, mask = read_image(study["image"]), read_image(study["mask"])
    seg = read_image(out / "segmentation.nii.gz")
    assert seg.shape == image.shape
    assert np.allclose(seg.spacing, image.spacing) and np.allclose(seg.origin, image.origin)
    assert np.allclose(seg.direction, image.direction)
    assert np.array_equal(seg.array, mask.array)
    assert {k: v["status"] for k, v in doc["components"].items()} == {
        "segmentation": "ok", "tstage": "ok", "tstage4": "ok", "lnm": "ok", "survival": "ok", "gradcam": "ok"}
    bundle_doc = json.loads((study["bundle"] / "bundle.json").read_text())
    assert doc["bundle"]["checksum"] == bundle_doc["checksum"]
    assert doc["case_id"].startswith("case-") and "path" not in doc["input"]
    for rel in doc["components"]["gradcam"]["files"]:
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "gradcam").iterdir()) == [
        "tstage4_center.png", "tstage4_max.png", "tstage_resnet.png", "tstage_resolstm.png"]


def test_probabilities_equal_the_models_loaded_by_hand(study, nifti_run):
    import pandas as pd

    from esoct.classify.krt import krt_crop, normalize_ct
    from esoct.classify.model_file import load_classifier
    from esoct.io.model_store import load_model as load_radiomics_file
    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.preprocess.roi.pipelines import resolstm_inputs
    from esoct.tstage.data import make_sequence_set
    from esoct.tstage.train import load_model, predict_proba

    _, _, doc = nifti_run
    res = doc["components"]
    image, mask = read_image(study["image"]), read_image(study["mask"])
    models = study["study"] / "models"
    # binary T stage: mean of the fold models
    seq = resolstm_inputs(image, mask)
    seqs = make_sequence_set(["p"], [seq.images], [0], z_mm=[seq.z_mm], size=32, on_error="raise")
    for kind, folds in (("resolstm", 2), ("resnet", 1)):
        p = np.mean([predict_proba(load_model(models / "tstage" / kind / f"fold-{k}" / "best.pt"), seqs, amp=False)[0]
                     for k in range(1, folds + 1)], axis=0)
        got = res["tstage"]["models"][kind]["probabilities"]
        assert [got["T1-2"], got["T3-4"]] == pytest.approx(p, abs=1e-6)
        assert sum(got.values()) == pytest.approx(1.0)
        assert res["tstage"]["models"][kind]["predicted"] == ("T1-2", "T3-4")[int(np.argmax(p))]
    # 4-class T stage
    probs = []
    for k in (1, 2):
        model, meta = load_classifier(models / "tstage4" / f"fold-{k}" / "model.pt")
        box = krt_crop(image, mask, meta["krt"]["size_zyx"], spacing_zyx=meta["krt"]["spacing_zyx"])
        x = torch.from_numpy(normalize_ct(box.image.array, meta["krt"]["normalization"]))[None, None]
        with torch.no_grad():
            probs.append(torch.softmax(model(x), dim=1)[0].numpy())
    p4 = np.mean(probs, axis=0)
    got4 = res["tstage4"]["probabilities"]
    assert [got4[t] for t in ("T1", "T2", "T3", "T4")] == pytest.approx(p4, abs=1e-6)
    assert sum(got4.values()) == pytest.approx(1.0)
    assert res["tstage4"]["predicted"] == f"T{int(np.argmax(p4)) + 1}"
    # LNM and survival
    lnm = load_radiomics_file(models / "lnm" / "model.skops")
    feats = RadiomicsExtractor(lnm["radiomics_params"]).extract(image, mask, label=1)
    p_lnm = lnm["estimator"].predict_proba(pd.DataFrame([feats])[lnm["columns"]])[0, 1]
    assert res["lnm"]["probability"] == pytest.approx(p_lnm, rel=1e-9)
    assert res["lnm"]["predicted"] == ("positive" if p_lnm >= 0.5 else "negative")
    surv = load_radiomics_file(models / "survival" / "model.skops")
    risk = surv["estimator"].predict(pd.DataFrame([feats])[surv["columns"]])[0]
    assert res["survival"]["risk_score"] == pytest.approx(risk, rel=1e-9)
    assert res["survival"]["threshold"] == pytest.approx(surv["threshold"])
    assert res["survival"]["risk_group"] == ("high risk" if risk >= surv["threshold"] else "low risk")


def test_dicom_seg_and_no_phi_anywhere(study, tmp_path, capsys, caplog):
    from esoct.bundle.dicom_seg import read_dicom_seg_labels
    from esoct.io.dicom import read_dicom_series

    caplog.set_level(logging.DEBUG)
    src = _dicom_copy(study["dicom"], tmp_path / "in", PatientName=PHI_NAME, PatientID=PHI_ID,
                      PatientBirthDate=PHI_BIRTH, InstitutionName=PHI_PLACE, OtherPatientIDs=PHI_ID + "B")
    series = read_dicom_series(src)
    mask = read_image(study["mask"])
    assert series.volume.same_geometry(mask)
    out = tmp_path / "out"
    assert _run("--bundle", study["bundle"], "--input", src, "--out", out, "--mask", study["mask"], verbose=True) == 0
    captured = capsys.readouterr()
    # the SEG: readable by pydicom and highdicom, one segment per label, referencing the input series
    ds = pydicom.dcmread(out / "segmentation.dcm")
    assert ds.Modality == "SEG"
    seg = hd.seg.segread(out / "segmentation.dcm")
    present = [int(v) for v in np.unique(mask.array) if v]
    assert len(seg.segment_numbers) == len(present)
    assert int(ds.NumberOfFrames) == sum(int((mask.array[k] == v).any()) for k in range(mask.shape[0]) for v in present)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series.info.series_uid
    assert seg.get_segment_description(1).algorithm_identification[0].AlgorithmName == "esoct"
    assert np.array_equal(read_dicom_seg_labels(out / "segmentation.dcm", series.info.files), mask.array)
    doc = json.loads((out / "prediction.json").read_text())
    assert doc["components"]["segmentation"]["files"] == ["segmentation.nii.gz", "segmentation.dcm"]
    assert "series_instance_uid" not in doc["input"]
    # no planted patient field in any output file, on stdout/stderr or in the log
    texts = [captured.out, captured.err, caplog.text]
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert len(blobs) >= 7
    for needle in ("Zzyzxplanted", PHI_ID, PHI_BIRTH, PHI_PLACE):
        assert not any(needle in t for t in texts), needle
        assert not any(needle.encode() in b for b in blobs), needle
    assert series.info.series_uid.encode() not in (out / "prediction.json").read_bytes()
    assert ds.PatientName == doc["case_id"] + "^" and ds.PatientID == doc["case_id"]

    # with --keep-phi the SEG keeps the patient module and the JSON names the series
    out2 = tmp_path / "out_phi"
    assert _run("--bundle", study["bundle"], "--input", src, "--out", out2, "--mask", study["mask"], "--keep-phi",
                "--no-gradcam") == 0
    ds2 = pydicom.dcmread(out2 / "segmentation.dcm")
    assert str(ds2.PatientName) == PHI_NAME and ds2.PatientID == PHI_ID and ds2.PatientBirthDate == PHI_BIRTH
    doc2 = json.loads((out2 / "prediction.json").read_text())
    assert doc2["input"]["series_instance_uid"] == series.info.series_uid
    assert not (out2 / "gradcam").exists()


def test_folder_with_two_series_is_refused_listing_both(study, tmp_path, capsys):
    from esoct.io.dicom import list_series

    folder = tmp_path / "two"
    shutil.copytree(study["dicom"], folder / "a")
    shutil.copytree(study["cohort"] / "dicom" / "EP0002_pre", folder / "b")
    uids = [s.series_uid for s in list_series(folder)]
    assert len(set(uids)) == 2
    out = tmp_path / "out"
    assert _run("--bundle", study["bundle"], "--input", folder, "--out", out) == 2
    err = capsys.readouterr().err
    assert "2 series" in err and "--series" in err and all(u in err for u in uids)
    assert not out.exists()
    # choosing one works
    mask = study["cohort"] / "labels" / "EP0002_pre.nii.gz"
    uid = list_series(folder / "b")[0].series_uid
    assert _run("--bundle", study["bundle"], "--input", folder, "--series", uid, "--out", out, "--mask", mask,
                "--no-gradcam") == 0


def test_non_ct_modality_is_refused(study, tmp_path, capsys):
    src = _dicom_copy(study["dicom"], tmp_path / "mr", Modality="MR")
    assert _run("--bundle", study["bundle"], "--input", src, "--out", tmp_path / "out") == 2
    assert "modality is MR, not CT" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_mask_off_the_grid_is_refused(study, tmp_path, capsys):
    labels = read_image(study["mask"])
    other = tmp_path / "short_mask.nii.gz"  # the reference label map less its last slice: another grid
    write_image(labels.crop((0, 0, 0), (labels.shape[0] - 1, *labels.shape[1:])), other)
    assert _run("--bundle", study["bundle"], "--input", study["image"], "--mask", other, "--out", tmp_path / "o") == 2
    assert "not on the input image's grid" in capsys.readouterr().err


def test_no_tumour_exits_1_and_keeps_the_segmentation(study, tmp_path, capsys):
    # the bundle's segmenter labels everything esophagus: no tumour
    out = tmp_path / "out"
    assert _run("--bundle", study["bundle"], "--input", study["image"], "--out", out) == 1
    err = capsys.readouterr().err
    assert "no tumour found (tstage, tstage4, lnm, survival)" in err
    image, seg = read_image(study["image"]), read_image(out / "segmentation.nii.gz")
    assert seg.shape == image.shape and np.allclose(seg.origin, image.origin)
    assert np.allclose(seg.spacing, image.spacing) and np.allclose(seg.direction, image.direction)
    assert not (seg.array == 1).any() and (seg.array == 3).mean() > 0.5
    doc = json.loads((out / "prediction.json").read_text())
    assert doc["exit_code"] == 1
    statuses = {k: v["status"] for k, v in doc["components"].items()}
    assert statuses == {"segmentation": "ok", "tstage": "no tumour found", "tstage4": "no tumour found",
                        "lnm": "no tumour found", "survival": "no tumour found", "gradcam": "skipped"}
    assert doc["components"]["segmentation"]["source"] == "bundle segmenter"


def test_nifti_that_does_not_look_like_ct_is_flagged(study, tmp_path):
    image = read_image(study["image"])
    shifted = write_image(image.with_array(image.array.astype(np.float32) + 1500.0), tmp_path / "shifted.nii.gz")
    out = tmp_path / "out"
    assert _run("--bundle", study["bundle"], "--input", shifted, "--out", out, "--mask", study["mask"],
                "--no-gradcam") == 0
    warnings = json.loads((out / "prediction.json").read_text())["input"]["warnings"]
    assert len(warnings) == 1 and "is this a CT" in warnings[0]


def test_dicom_without_tumour_still_writes_the_seg(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("--bundle", study["bundle"], "--input", study["dicom"], "--out", out, "--no-gradcam") == 1
    seg = hd.seg.segread(out / "segmentation.dcm")
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == ["esophagus"]
    doc = json.loads((out / "prediction.json").read_text())
    assert doc["components"]["segmentation"]["dicom_seg"]["segments"] == {"3": 1}
    assert doc["components"]["tstage4"]["status"] == "no tumour found"
    assert "gradcam" not in doc["components"]
    assert "tstage4: no tumour found" in capsys.readouterr().out


def test_bundle_without_segmenter_needs_a_mask(study, tmp_path):
    from esoct.bundle.export import export_bundle

    study_dir = tmp_path / "study"
    shutil.copytree(study["study"] / "models" / "lnm", study_dir / "models" / "lnm")
    export_bundle(study_dir, tmp_path / "bundle")
    out = tmp_path / "out"
    assert _run("--bundle", tmp_path / "bundle", "--input", study["image"], "--out", out) == 1
    doc = json.loads((out / "prediction.json").read_text())
    assert doc["bundle"]["study"] == {"name": None, "seed": None}
    assert {k: v["status"] for k, v in doc["components"].items()} == {
        "segmentation": "not in bundle", "tstage": "not in bundle", "tstage4": "not in bundle", "lnm": "skipped",
        "survival": "not in bundle", "gradcam": "not in bundle"}
    assert not (out / "segmentation.nii.gz").exists()
    assert _run("--bundle", tmp_path / "bundle", "--input", study["image"], "--out", out, "--mask", study["mask"]) == 0
    doc = json.loads((out / "prediction.json").read_text())
    assert doc["components"]["lnm"]["status"] == "ok" and doc["components"]["segmentation"]["source"].startswith("given")


def test_segmentation_sanity_counts_nodes_and_volumes():
    from esoct.bundle.components import segmentation_sanity
    from esoct.io.volume import Volume

    arr = np.zeros((10, 60, 60), np.uint8)
    for k in range(30):  # 30 isolated 1-voxel "nodes"
        arr[(k % 5) * 2, (k // 5) * 8 + 2, 5] = 4
    arr[:, 30:40, 30:40] = 1  # 10 x 10 x 10 voxels of 5 x 2 x 2 mm = 20 ml
    doc = segmentation_sanity(Volume(arr, (5.0, 2.0, 2.0), (0.0, 0.0, 0.0)))
    assert doc["nodes"] == 30 and doc["tumour_ml"] == pytest.approx(20.0) and doc["node_ml"] == pytest.approx(0.6)
    assert doc["status"] == "failed" and doc["problems"] == [
        "30 lymph-node components (more than 25): the segmentation is not plausible"]
    doc = segmentation_sanity(Volume(arr, (5.0, 2.0, 2.0), (0.0, 0.0, 0.0)), {"max_nodes": 30, "max_tumour_ml": 10})
    assert doc["problems"] == ["tumour of 20.0 ml (more than 10 ml)"]


def test_implausible_segmentation_skips_the_downstream_components(study, tmp_path, monkeypatch):
    """Hundreds of spurious nodes: no radiomics on noise, a clear reason in prediction.json, exit 1."""
    import esoct.bundle.components as comp

    mask = read_image(study["mask"])

    def noisy(bundle, image):
        arr = mask.array.copy()
        free = np.argwhere(arr == 0)[::997][:200]
        arr[tuple(free.T)] = 4
        return mask.with_array(arr)

    monkeypatch.setattr(comp, "segment", noisy)
    out = tmp_path / "out"
    assert _run("--bundle", study["bundle"], "--input", study["image"], "--out", out) == 1
    doc = json.loads((out / "prediction.json").read_text())
    sanity = doc["components"]["segmentation"]["sanity"]
    assert sanity["status"] == "failed" and sanity["nodes"] > 25
    for name in ("tstage", "tstage4", "lnm", "survival"):
        assert doc["components"][name]["status"] == "skipped"
        assert "sanity check" in doc["components"][name]["reason"]
