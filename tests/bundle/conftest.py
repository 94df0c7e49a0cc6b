"""A fake study directory with tiny models of every bundle component, built once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("highdicom")

RADIOMICS_PARAMS = {
    "setting": {"label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"shape": ["MeshVolume", "Sphericity", "SurfaceArea"]},
}
LNM_COLUMNS = ["original_shape_MeshVolume", "original_shape_Sphericity"]
SURV_COLUMNS = ["original_shape_MeshVolume", "original_shape_SurfaceArea"]
KRT = {"size_zyx": [16, 32, 32], "spacing_zyx": [5.0, 2.0, 2.0],
       "normalization": {"scheme": "CT", "clip_low": -200.0, "clip_high": 300.0, "mean": 50.0, "std": 250.0}}


def _segmenter(path: Path) -> None:
    """An untrained tiny U-Net whose output bias makes every voxel esophagus (label 3): it never finds a tumour."""
    from esoct.models.unet3d import UNet3D
    from esoct.segment.data import Preprocessing
    from esoct.segment.inference import Segmenter
    from esoct.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = UNet3D(1, 6, channels=(4, 8), strides=(1, 2), deep_supervision=1)
    with torch.no_grad():
        net.decoder.heads[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0, 0.0]))
    seg = Segmenter(net, Preprocessing((5.0, 6.0, 6.0), -100.0, 300.0, 50.0, 100.0), (16, 32, 32), 6)
    save_checkpoint(path, net, extra={"segmenter": seg.to_dict()})


def _tstage(models: Path) -> None:
    from esoct.tstage.presets import get_preset
    from esoct.tstage.train import _save_model, make_model

    preset = get_preset("fast", image_size=32, width=0.125, hidden_size=8, num_layers=1, epochs=1)
    row = {"epoch": 1, "val_loss": 0.5, "val_accuracy": 0.5, "val_auc": 0.5}
    for kind, folds in (("resolstm", 2), ("resnet", 1)):
        for k in range(1, folds + 1):
            torch.manual_seed(10 * k + len(kind))
            path = models / "tstage" / kind / f"fold-{k}" / "best.pt"
            path.parent.mkdir(parents=True)
            _save_model(path, make_model(kind, preset, 2).eval(), ("T1-2", "T3-4"), preset, row)
            (path.parent / "last.pt").write_bytes(b"not exported")


def _tstage4(models: Path) -> None:
    from esoct.classify.model_file import save_classifier
    from esoct.models.multitask import build_multitask_classifier
    from esoct.models.unet3d import UNetEncoder

    def factory(residual=True):
        return UNetEncoder(1, [4, 8, 16], [[1, 1, 1], [2, 2, 2], [2, 2, 2]], 3, residual=residual)

    for k in (1, 2):
        model, _ = build_multitask_classifier(None, factory, residual=True, gates=False, transfer=False, hidden=16,
                                              seed=k)
        save_classifier(models / "tstage4" / f"fold-{k}" / "model.pt", model.eval(), krt=KRT)


def _radiomics_models(models: Path, cohort: Path) -> None:
    from esoct.io.model_store import save_model
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.io.imageio import read_image

    manifest = pd.read_csv(cohort / "manifest.csv")
    ex = RadiomicsExtractor(RADIOMICS_PARAMS)
    rows = [ex.extract(read_image(cohort / r.image_pre), read_image(cohort / r.mask_pre), label=1)
            for r in manifest.itertuples()]
    table = pd.DataFrame(rows)
    y = manifest["lnm"].to_numpy()
    if len(set(y)) < 2:  # both classes are needed to fit
        y = (table["original_shape_MeshVolume"] > table["original_shape_MeshVolume"].median()).astype(int).to_numpy()
    lnm = make_pipeline(StandardScaler(), LogisticRegression()).fit(table[LNM_COLUMNS], y)
    (models / "lnm").mkdir(parents=True)
    save_model({"format": "esoct-radiomics-model/1", "task": "lnm", "estimator": lnm, "columns": LNM_COLUMNS,
                 "radiomics_params": RADIOMICS_PARAMS, "label": 1, "threshold": 0.5,
                 "description": "logistic regression on 2 shape features"}, models / "lnm" / "model.skops")
    surv = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=0.1)).fit(
        table[SURV_COLUMNS], Surv.from_arrays(manifest["os_event"].astype(bool), manifest["os_months"]))
    (models / "survival").mkdir(parents=True)
    save_model({"format": "esoct-radiomics-model/1", "task": "survival", "estimator": surv, "columns": SURV_COLUMNS,
                 "radiomics_params": RADIOMICS_PARAMS, "label": 1,
                 "threshold": float(np.median(surv.predict(table[SURV_COLUMNS]))),
                 "description": "Cox model on 2 shape features"}, models / "survival" / "model.skops")


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> dict:
    """Paths of a phantom cohort (with DICOM), a study directory holding every component and its exported bundle."""
    from esoct.bundle.export import export_bundle
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("bundle")
    cohort = root / "cohort"
    generate_cohort(cohort, 6, seed=5, dicom=True, workers=1, progress=False)
    study_dir = root / "study"
    models = study_dir / "models"
    (models / "segmentation").mkdir(parents=True)
    (study_dir / "study.yaml").write_text("name: bundle-test\nseed: 5\n")
    shutil.copy(cohort / "manifest.csv", study_dir / "cohort.csv")
    _segmenter(models / "segmentation" / "segmenter.pt")
    _tstage(models)
    _tstage4(models)
    _radiomics_models(models, cohort)
    bundle = root / "bundle"
    export_bundle(study_dir, bundle)
    return {"root": root, "cohort": cohort, "study": study_dir, "bundle": bundle,
            "image": cohort / "images" / "EP0001_pre.nii.gz", "mask": cohort / "labels" / "EP0001_pre.nii.gz",
            "dicom": cohort / "dicom" / "EP0001_pre"}
