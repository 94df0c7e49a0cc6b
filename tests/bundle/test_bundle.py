"""esoct export: bundle layout, bundle.json, checksums, refusal of changed files and other versions."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from esoct.bundle.export import export_bundle
from esoct.bundle.manifest import load_bundle, overall_checksum, sha256_file
from esoct.cli import main
from esoct.errors import InputError


def test_export_writes_every_component_with_checksums(study):
    bundle = study["bundle"]
    doc = json.loads((bundle / "bundle.json").read_text())
    assert doc["format"] == "esoct-bundle/1"
    assert doc["study"] == {"name": "bundle-test", "seed": 5}
    assert sorted(doc["components"]) == ["lnm", "segmentation", "survival", "tstage", "tstage4"]
    assert sorted(doc["files"]) == [
        "lnm/model.skops", "segmentation/segmenter.pt", "survival/model.skops",
        "tstage/resnet/fold-1/best.pt", "tstage/resolstm/fold-1/best.pt", "tstage/resolstm/fold-2/best.pt",
        "tstage4/fold-1/model.pt", "tstage4/fold-2/model.pt",
    ]
    # every file is a byte copy of the study's model, and its sha256 is recorded
    for rel, digest in doc["files"].items():
        src = study["study"] / "models" / rel
        assert (bundle / rel).read_bytes() == src.read_bytes()
        assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    lines = "\n".join(f"{doc['files'][r]}  {r}" for r in sorted(doc["files"]))
    assert doc["checksum"] == hashlib.sha256(lines.encode()).hexdigest() == overall_checksum(doc["files"])
    # settings and versions
    assert doc["components"]["tstage"]["settings"]["models"]["resolstm"]["class_names"] == ["T1-2", "T3-4"]
    assert doc["components"]["tstage"]["settings"]["models"]["resolstm"]["preset"]["image_size"] == 32
    assert doc["components"]["tstage4"]["settings"]["krt"]["size_zyx"] == [16, 32, 32]
    assert doc["components"]["lnm"]["settings"]["columns"] == ["original_shape_MeshVolume", "original_shape_Sphericity"]
    assert doc["components"]["segmentation"]["settings"]["patch_size"] == [16, 32, 32]
    for pkg in ("python", "numpy", "torch", "monai", "SimpleITK", "scikit-learn", "scikit-survival", "pyradiomics",
                "pydicom", "highdicom"):
        assert doc["packages"][pkg]
    # no patient data, no training leftovers
    names = {p.name for p in bundle.rglob("*")}
    assert "cohort.csv" not in names and "last.pt" not in names
    assert load_bundle(bundle).checksum == doc["checksum"]


def test_tampered_weights_are_refused_naming_the_file(study, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(study["bundle"], copy)
    target = copy / "tstage4" / "fold-2" / "model.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"checksum mismatch for bundle file tstage4/fold-2/model\.pt"):
        load_bundle(copy)
    target.unlink()
    with pytest.raises(InputError, match=r"tstage4/fold-2/model\.pt is missing"):
        load_bundle(copy)


def test_other_esoct_version_is_refused(study, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(study["bundle"], copy)
    doc = json.loads((copy / "bundle.json").read_text())
    doc["esoct_version"] = "9.7.1"
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"bundle was made with esoct 9\.7\.1, this is esoct .*re-export it"):
        load_bundle(copy)
    assert load_bundle(copy, allow_version_mismatch=True).manifest["esoct_version"] == "9.7.1"
    code = main(["predict", "--bundle", str(copy), "--input", str(study["image"]), "--out", str(tmp_path / "o"), "-q"])
    assert code == 2
    assert "bundle was made with esoct 9.7.1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_edited_manifest_is_refused(study, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(study["bundle"], copy)
    doc = json.loads((copy / "bundle.json").read_text())
    doc["files"]["lnm/model.skops"] = sha256_file(copy / "survival" / "model.skops")
    shutil.copy(copy / "survival" / "model.skops", copy / "lnm" / "model.skops")  # swapped model, file hash fits
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="overall checksum"):
        load_bundle(copy)


def test_export_cli_refuses_existing_output_and_empty_study(study, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", str(study["study"]), "--out", str(out)]) == 0
    assert "bundle written to" in capsys.readouterr().out
    assert main(["export", str(study["study"]), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(study["study"]), "--out", str(out), "--force"]) == 0
    empty = tmp_path / "empty_study"
    empty.mkdir()
    with pytest.raises(InputError, match="no trained model"):
        export_bundle(empty, tmp_path / "b2")
    assert not (tmp_path / "b2").exists()
