"""Run one bundle component on one patient: segmentation, T-stage (binary, 4-class), LNM, survival risk.

Each ``predict_*`` function takes the CT and the label map as :class:`~esoct.io.volume.Volume`
(arrays ``(z, y, x)``, HU), loads the component's models from the verified bundle and returns a
JSON-ready dict. Fold models are ensembled by averaging their class probabilities (nnU-Net).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esoct.bundle.manifest import Bundle
from esoct.errors import InputError
from esoct.io.volume import Volume

TUMOUR_LABEL = 1
LABEL_NAMES = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph node", 5: "pericardium"}


class NoTumour(InputError):
    """The label map has no tumour voxel, so a tumour-based component cannot run."""


def require_tumour(labels: Volume) -> None:
    """Raise :class:`NoTumour` when ``labels`` has no voxel of label 1."""
    if not np.any(np.asarray(labels.array) == TUMOUR_LABEL):
        raise NoTumour("no voxel of label 1 (tumour) in the segmentation")


def label_summary(labels: Volume) -> dict:
    """Volume in ml of each label present (label name -> ml)."""
    arr = np.asarray(labels.array)
    ml = labels.voxel_volume_mm3 / 1000.0
    return {LABEL_NAMES.get(int(v), f"label {int(v)}"): round(float((arr == v).sum() * ml), 3)
            for v in np.unique(arr) if v != 0}


#: Plausibility limits of a predicted label map (:func:`segmentation_sanity`). Mediastinal node counts in
#: esophageal-cancer CT series stay well under 25 visible nodes; esophageal tumours rarely exceed 150 ml.
SANITY_LIMITS = {"max_nodes": 25, "max_node_ml": 60.0, "max_tumour_ml": 300.0}


def segmentation_sanity(labels: Volume, limits: dict | None = None) -> dict:
    """Node count and volumes of a predicted label map against :data:`SANITY_LIMITS`.

    A map that fails is noise to the components downstream (minutes of radiomics on hundreds of
    spurious "nodes", survival features of a tumour the size of the heart), so ``esoct predict``
    skips them and says why.

    Parameters
    ----------
    labels : Volume
        uint8 label map ``(z, y, x)`` with the nn-TransEC classes.
    limits : dict, optional
        Overrides of :data:`SANITY_LIMITS`.

    Returns
    -------
    dict
        ``status`` ("ok" or "failed"), ``nodes`` (26-connected components of label 4),
        ``node_ml``, ``tumour_ml`` and ``problems`` (one sentence each).
    """
    from scipy import ndimage

    lim = {**SANITY_LIMITS, **(limits or {})}
    arr = labels.array
    ml = labels.voxel_volume_mm3 / 1000.0
    n_nodes = int(ndimage.label(arr == 4, structure=np.ones((3, 3, 3)))[1])
    node_ml, tumour_ml = float((arr == 4).sum() * ml), float((arr == 1).sum() * ml)
    problems = []
    if n_nodes > lim["max_nodes"]:
        problems.append(f"{n_nodes} lymph-node components (more than {lim['max_nodes']}): the segmentation is not plausible")
    if node_ml > lim["max_node_ml"]:
        problems.append(f"lymph nodes total {node_ml:.1f} ml (more than {lim['max_node_ml']:g} ml)")
    if tumour_ml > lim["max_tumour_ml"]:
        problems.append(f"tumour of {tumour_ml:.1f} ml (more than {lim['max_tumour_ml']:g} ml)")
    return {"status": "failed" if problems else "ok", "nodes": n_nodes, "node_ml": round(node_ml, 3),
            "tumour_ml": round(tumour_ml, 3), "problems": problems}


def segment(bundle: Bundle, image: Volume) -> Volume:
    """Label map of ``image`` by the bundle's segmenter (the cascade, or one network), uint8 on the input grid.

    Parameters
    ----------
    bundle : Bundle
        Must hold ``segmentation``.
    image : Volume
        CT in HU, ``(z, y, x)``.

    Returns
    -------
    Volume
        Same shape, spacing, origin and direction as ``image``.
    """
    from esoct.segment.cascade import CASCADE_FILE, load_segmentation

    files = {f.name: f for f in bundle.files("segmentation")}
    model = load_segmentation(files[CASCADE_FILE] if CASCADE_FILE in files else files["segmenter.pt"])
    labels, _ = model.predict(image)
    return labels


# --------------------------------------------------------------------------- binary T stage (2D slices)


def tstage_sequences(image: Volume, labels: Volume, size: int, class_names, case_id: str = "case"):
    """The ResoLSTM-Depth input of one patient as a one-patient :class:`~esoct.tstage.data.SequenceSet`.

    Same pipeline as the study (``resolstm_inputs`` at 224 px, head to foot, HU [-145, 225]
    min-max), then resized to ``size`` x ``size`` pixels as the model's preset.
    """
    from esoct.preprocess.roi.pipelines import resolstm_inputs
    from esoct.tstage.data import make_sequence_set

    seq = resolstm_inputs(image, labels, patient=case_id)
    return make_sequence_set([case_id], [seq.images], [0], z_mm=[seq.z_mm], class_names=class_names,
                             size=int(size), on_error="raise")


def load_tstage_models(bundle: Bundle) -> dict[str, list]:
    """Kind (``resolstm``, ``resnet``) -> fold models (eval mode, CPU), in fold order."""
    from esoct.tstage.train import load_model

    models: dict[str, list] = {}
    for path in bundle.files("tstage"):
        kind = Path(path).parent.parent.name
        models.setdefault(kind, []).append(load_model(path, device="cpu"))
    return models


def predict_tstage(bundle: Bundle, image: Volume, labels: Volume, case_id: str = "case") -> tuple[dict, dict]:
    """Binary T stage (T1-2 vs T3-4) by each model kind's fold ensemble.

    Returns
    -------
    result : dict
        ``{"status": "ok", "models": {kind: {"folds", "class_names", "probabilities", "predicted"}}}``.
    inputs : dict
        Kind -> ``(fold models, SequenceSet)`` for Grad-CAM.
    """
    from esoct.tstage.train import predict_proba

    require_tumour(labels)
    result, inputs = {"status": "ok", "models": {}}, {}
    for kind, models in load_tstage_models(bundle).items():
        names = tuple(models[0].class_names) or ("T1-2", "T3-4")
        size = int((models[0].preset or {}).get("image_size", 224))
        seqs = tstage_sequences(image, labels, size, names, case_id)
        proba = np.mean([predict_proba(m, seqs, amp=False)[0] for m in models], axis=0)
        result["models"][kind] = {
            "folds": len(models), "class_names": list(names),
            "probabilities": {n: float(p) for n, p in zip(names, proba)},
            "predicted": names[int(np.argmax(proba))], "n_slices": int(len(seqs.images[0])),
        }
        inputs[kind] = (models, seqs)
    return result, inputs


# --------------------------------------------------------------------------- 4-class T stage (3D KRT box)


def tstage4_input(image: Volume, labels: Volume, krt: dict, case_id: str = "case"):
    """KRT box around the tumour and its normalised tensor ``(1, 1, Z, Y, X)`` for a 4-class classifier.

    Parameters
    ----------
    krt : dict
        ``size_zyx`` (voxels), ``spacing_zyx`` (mm, or None for the image grid), ``normalization``.
    """
    import torch

    from esoct.classify.krt import krt_crop, normalize_ct

    spacing = krt.get("spacing_zyx")
    box = krt_crop(image, labels, tuple(krt["size_zyx"]), spacing_zyx=None if spacing is None else tuple(spacing),
                   fallback_label=None, patient=case_id)
    x = torch.from_numpy(normalize_ct(box.image.array, krt.get("normalization")))[None, None]
    return box, x


def predict_tstage4(bundle: Bundle, image: Volume, labels: Volume, case_id: str = "case") -> tuple[dict, tuple]:
    """4-class T stage (T1..T4) by the fold ensemble of nn-TransEC classifiers on the KRT box.

    Returns
    -------
    result : dict
        ``status``, ``folds``, ``class_names``, ``probabilities`` (T1..T4), ``predicted``.
    inputs : tuple
        ``(fold models, KrtBox, input tensor)`` for Grad-CAM.
    """
    import torch

    from esoct.classify.model_file import load_classifier
    from esoct.models.multitask import T_STAGES

    require_tumour(labels)
    loaded = [load_classifier(p, device="cpu") for p in bundle.files("tstage4")]
    box, x = tstage4_input(image, labels, loaded[0][1]["krt"], case_id)
    with torch.no_grad():
        proba = np.mean([torch.softmax(m(x).float(), dim=1)[0].numpy() for m, _ in loaded], axis=0)
    names = list(T_STAGES[: len(proba)])
    result = {"status": "ok", "folds": len(loaded), "class_names": names,
              "probabilities": {n: float(p) for n, p in zip(names, proba)}, "predicted": names[int(np.argmax(proba))]}
    return result, ([m for m, _ in loaded], box, x)


# --------------------------------------------------------------------------- radiomics models


def load_radiomics_model(bundle: Bundle, task: str) -> dict:
    """The model document of ``task`` (``"lnm"`` or ``"survival"``); checksums verified before, types allow-listed."""
    from esoct.io.model_store import load_model

    return load_model(bundle.files(task)[0])


def radiomics_row(doc: dict, image: Volume, labels: Volume, case_id: str = "case"):
    """One-row DataFrame of the model's ``columns``: tumour radiomics (PyRadiomics names), and lymph-node
    features (``node_*``, :func:`esoct.features.nodes.node_features`) when the model uses them."""
    import pandas as pd

    from esoct.features.radiomics import RadiomicsExtractor

    features = {}
    if doc.get("radiomics_params") is not None:  # a nodes-only model has no tumour radiomics
        features = RadiomicsExtractor(doc["radiomics_params"]).extract(image, labels, label=int(doc.get("label", 1)),
                                                                       patient=case_id)
    if doc.get("node_settings") is not None:
        from esoct.features.nodes import NodeSettings, node_features

        nodes = node_features(image, labels, case_id, settings=NodeSettings(**doc["node_settings"]))
        features = {**features, **nodes.features}
    missing = [c for c in doc["columns"] if c not in features]
    if missing:
        raise InputError(f"the radiomics extraction did not give the model's feature(s) {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}", patient=case_id)
    return pd.DataFrame([[float(features[c]) for c in doc["columns"]]], columns=list(doc["columns"]))


def predict_lnm(bundle: Bundle, image: Volume, labels: Volume, case_id: str = "case") -> dict:
    """Lymph-node-metastasis probability (``estimator.predict_proba[:, 1]``), positive at or above the threshold."""
    require_tumour(labels)
    doc = load_radiomics_model(bundle, "lnm")
    p = float(doc["estimator"].predict_proba(radiomics_row(doc, image, labels, case_id))[0, 1])
    threshold = float(doc["threshold"])
    return {"status": "ok", "probability": p, "threshold": threshold,
            "predicted": "positive" if p >= threshold else "negative", "model": doc.get("description", "")}


def predict_survival(bundle: Bundle, image: Volume, labels: Volume, case_id: str = "case") -> dict:
    """Survival risk score (``estimator.predict``, higher is worse) and group (high risk at or above the threshold)."""
    require_tumour(labels)
    doc = load_radiomics_model(bundle, "survival")
    score = float(np.asarray(doc["estimator"].predict(radiomics_row(doc, image, labels, case_id))).ravel()[0])
    threshold = float(doc["threshold"])
    return {"status": "ok", "risk_score": score, "threshold": threshold,
            "risk_group": "high risk" if score >= threshold else "low risk", "model": doc.get("description", "")}


def _no_extra(func):
    def run(bundle: Bundle, image: Volume, labels: Volume, case_id: str = "case") -> tuple[dict, None]:
        return func(bundle, image, labels, case_id), None

    run.__doc__ = func.__doc__
    return run


#: Components that need the tumour, in the order predict runs them.
ORDER = ("tstage", "tstage4", "lnm", "survival")

#: Component -> ``runner(bundle, image, labels, case_id) -> (result dict, Grad-CAM inputs or None)``.
RUNNERS = {"tstage": predict_tstage, "tstage4": predict_tstage4, "lnm": _no_extra(predict_lnm),
           "survival": _no_extra(predict_survival)}
