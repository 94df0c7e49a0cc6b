"""Issue 17.4: a bundle whose checksums were recomputed around a planted payload runs no code.

Each payload, if it ran, would create a marker file; the tests check the refusal and that the
marker was never made.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
import torch

from esoct.bundle.manifest import overall_checksum, sha256_file
from esoct.cli import main
from esoct.errors import InputError
from esoct.train.checkpoint import safe_load


class PicklePayload:
    """Unpickling this calls ``Path(marker).touch()``: what joblib/pickle/torch.load(weights_only=False) would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class SetstatePayload:
    """skops would call ``__setstate__`` of a trusted type: here it would create the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __getstate__(self):
        return {"marker": self.marker}

    def __setstate__(self, state):
        pathlib.Path(state["marker"]).touch()
        self.__dict__.update(state)


def _rehash(bundle: pathlib.Path) -> None:
    """Recompute every checksum of bundle.json, as whoever planted a payload would."""
    doc = json.loads((bundle / "bundle.json").read_text())
    doc["files"] = {rel: sha256_file(bundle / rel) for rel in doc["files"]}
    doc["checksum"] = overall_checksum(doc["files"])
    (bundle / "bundle.json").write_text(json.dumps(doc))


def test_checkpoint_with_a_pickle_payload_is_refused(study, tmp_path):
    from esoct.classify.model_file import load_classifier
    from esoct.segment.inference import load_segmenter

    marker = tmp_path / "ran"
    state = safe_load(study["bundle"] / "segmentation" / "segmenter.pt")
    assert load_segmenter(study["bundle"] / "segmentation" / "segmenter.pt").n_classes == 6  # the clean file loads
    state["extra"]["note"] = PicklePayload(marker)
    planted = tmp_path / "segmenter.pt"
    torch.save(state, planted)
    with pytest.raises(InputError, match="not a segmentation checkpoint"):
        load_segmenter(planted)
    doc = safe_load(study["bundle"] / "tstage4" / "fold-1" / "model.pt")
    doc["note"] = PicklePayload(marker)
    torch.save(doc, tmp_path / "model.pt")
    with pytest.raises(InputError, match="not a readable classifier file"):
        load_classifier(tmp_path / "model.pt")
    assert not marker.exists()


def test_radiomics_model_with_an_untrusted_type_or_pickle_is_refused(study, tmp_path):
    import joblib
    import skops.io as sio

    from esoct.io.model_store import load_model

    marker = tmp_path / "ran"
    doc = load_model(study["bundle"] / "lnm" / "model.skops")
    assert doc["columns"] and hasattr(doc["estimator"], "predict_proba")  # the clean file loads
    sio.dump(dict(doc, note=SetstatePayload(marker)), tmp_path / "model.skops")
    with pytest.raises(InputError, match=r"does not trust: .*SetstatePayload"):
        load_model(tmp_path / "model.skops")
    joblib.dump({"estimator": PicklePayload(marker)}, tmp_path / "model.joblib")
    with pytest.raises(InputError, match="can run code"):
        load_model(tmp_path / "model.joblib")
    shutil.copy(tmp_path / "model.joblib", tmp_path / "renamed.skops")  # a pickle under the skops name
    with pytest.raises(InputError, match="not a readable skops model file"):
        load_model(tmp_path / "renamed.skops")
    assert not marker.exists()


def test_predict_with_a_planted_bundle_runs_nothing(study, tmp_path, capsys):
    import skops.io as sio

    from esoct.io.model_store import load_model

    marker = tmp_path / "ran"
    bundle = tmp_path / "bundle"
    shutil.copytree(study["bundle"], bundle)
    doc = load_model(bundle / "lnm" / "model.skops")
    sio.dump(dict(doc, note=SetstatePayload(marker)), bundle / "lnm" / "model.skops")
    state = safe_load(bundle / "segmentation" / "segmenter.pt")
    state["extra"]["note"] = PicklePayload(marker)
    torch.save(state, bundle / "segmentation" / "segmenter.pt")
    _rehash(bundle)
    out = tmp_path / "out"
    code = main(["predict", "--bundle", str(bundle), "--input", str(study["image"]), "--out", str(out), "-q"])
    assert code != 0
    assert not marker.exists()
    text = capsys.readouterr().err + ((out / "prediction.json").read_text() if (out / "prediction.json").is_file() else "")
    assert "not a segmentation checkpoint" in text or "does not trust" in text, text
