"""``esoct export``: copy the trained models of a study directory into one self-checking bundle directory.

What is taken from the study directory (components that are absent are left out)::

    models/segmentation/cascade.json, stage1.pt, stage2.pt, stage{1,2}_plan.json
                                           -> segmentation/...   (the two-stage cascade)
    models/segmentation/segmenter.pt       -> segmentation/segmenter.pt   (a one-stage network)
    models/tstage/<kind>/fold-<k>/best.pt  -> tstage/<kind>/fold-<k>/best.pt   (kind resolstm, resnet)
    models/tstage4/fold-<k>/model.pt       -> tstage4/fold-<k>/model.pt
    models/lnm/model.skops                -> lnm/model.skops
    models/survival/model.skops           -> survival/model.skops

``study.yaml`` gives the study name and seed recorded in ``bundle.json``. ``cohort.csv`` and
everything else with patient data (features, predictions, caches) is never copied.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from esoct.bundle.manifest import MANIFEST_NAME, make_manifest, write_manifest
from esoct.errors import InputError
from esoct.segment.cascade import CASCADE_FILE

TSTAGE_KINDS = ("resolstm", "resnet")
RADIOMICS_FORMAT = "esoct-radiomics-model/1"
_FOLD = re.compile(r"^fold-(\d+)$")


def _folds(folder: Path, filename: str) -> list[Path]:
    """``folder/fold-<k>/<filename>`` that exist, by fold number."""
    if not folder.is_dir():
        return []
    found = []
    for sub in folder.iterdir():
        m = _FOLD.match(sub.name)
        if m and (sub / filename).is_file():
            found.append((int(m.group(1)), sub / filename))
    return [p for _, p in sorted(found)]


def _segmentation_settings(path: Path) -> dict:
    from esoct.train.checkpoint import safe_load

    try:
        meta = safe_load(path)["extra"]["segmenter"]
    except Exception as exc:  # noqa: BLE001 - any failure: not a segmenter checkpoint
        raise InputError(f"not a segmentation checkpoint ({type(exc).__name__}: {str(exc)[:200]})", path) from None
    return {"preprocessing": meta.get("preprocessing"), "patch_size": meta.get("patch_size"),
            "n_classes": meta.get("n_classes"), "model_config": meta.get("model_config")}


def _tstage_settings(path: Path) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"not a T-stage model file ({type(exc).__name__}: {str(exc)[:200]})", path) from None
    return {"class_names": list(state.get("class_names", ())), "preset": state.get("preset", {}),
            "config": state.get("config", {})}


def _tstage4_settings(path: Path) -> dict:
    from esoct.classify.model_file import load_classifier

    _, meta = load_classifier(path)
    return {"krt": meta["krt"], "n_classes": meta["n_classes"], "encoder": meta["encoder"], "gates": meta["gates"]}


def _radiomics_settings(path: Path, task: str) -> dict:
    from esoct.io.model_store import load_model

    doc = load_model(path)
    if not isinstance(doc, dict) or doc.get("format") != RADIOMICS_FORMAT:
        raise InputError(f"not an esoct radiomics model (expected format {RADIOMICS_FORMAT!r})", path)
    missing = [k for k in ("estimator", "columns", "radiomics_params", "threshold") if k not in doc]
    if missing:
        raise InputError(f"the {task} model lacks {', '.join(missing)}", path)
    return {"task": doc.get("task", task), "columns": list(doc["columns"]), "label": int(doc.get("label", 1)),
            "threshold": float(doc["threshold"]), "description": str(doc.get("description", "")),
            "estimator": type(doc["estimator"]).__name__, "radiomics_params": doc["radiomics_params"]}


def find_components(study_dir: str | Path) -> dict[str, dict]:
    """The model files of a study directory, by component.

    Parameters
    ----------
    study_dir : str or Path
        A study directory (``models/`` inside).

    Returns
    -------
    dict
        Component -> ``{"sources": {bundle-relative path: source Path}, "settings": dict}``;
        components without files are absent.
    """
    models = Path(study_dir) / "models"
    found: dict[str, dict] = {}
    seg_dir = models / "segmentation"
    if (seg_dir / CASCADE_FILE).is_file():  # the two-stage cascade: both networks, both plans, the joining rules
        names = [CASCADE_FILE, "stage1.pt", "stage2.pt", "stage1_plan.json", "stage2_plan.json"]
        found["segmentation"] = {
            "sources": {f"segmentation/{n}": seg_dir / n for n in names if (seg_dir / n).is_file()},
            "settings": {"cascade": json.loads((seg_dir / CASCADE_FILE).read_text()),
                         "stage1": _segmentation_settings(seg_dir / "stage1.pt"),
                         "stage2": _segmentation_settings(seg_dir / "stage2.pt")}}
    elif (seg_dir / "segmenter.pt").is_file():
        seg = seg_dir / "segmenter.pt"
        found["segmentation"] = {"sources": {"segmentation/segmenter.pt": seg}, "settings": _segmentation_settings(seg)}
        plan = seg_dir / "plan.json"  # the nnU-Net-style plan the network was configured from
        if plan.is_file():
            found["segmentation"]["sources"]["segmentation/plan.json"] = plan
    sources, kinds = {}, {}
    for kind in TSTAGE_KINDS:
        paths = _folds(models / "tstage" / kind, "best.pt")
        if paths:
            kinds[kind] = _tstage_settings(paths[0]) | {"folds": len(paths)}
            sources.update({f"tstage/{kind}/{p.parent.name}/best.pt": p for p in paths})
    if sources:
        found["tstage"] = {"sources": sources, "settings": {"models": kinds}}
    paths = _folds(models / "tstage4", "model.pt")
    if paths:
        found["tstage4"] = {"sources": {f"tstage4/{p.parent.name}/model.pt": p for p in paths},
                            "settings": _tstage4_settings(paths[0]) | {"folds": len(paths)}}
    for task in ("lnm", "survival"):
        path = models / task / "model.skops"
        if path.is_file():
            found[task] = {"sources": {f"{task}/model.skops": path}, "settings": _radiomics_settings(path, task)}
    return found


def read_study_identity(study_dir: str | Path) -> dict:
    """``name`` and ``seed`` from the study directory's ``study.yaml`` (None when absent)."""
    path = Path(study_dir) / "study.yaml"
    if not path.is_file():
        return {"name": None, "seed": None}
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"cannot read the study file ({str(exc).splitlines()[0]})", path) from None
    return {"name": doc.get("name"), "seed": doc.get("seed")}


def export_bundle(study_dir: str | Path, out: str | Path, *, force: bool = False) -> dict:
    """Write a model bundle from a study directory.

    Parameters
    ----------
    study_dir : str or Path
        Study directory written by ``esoct run``.
    out : str or Path
        Bundle directory to create.
    force : bool
        Replace an existing bundle at ``out``.

    Returns
    -------
    dict
        The written ``bundle.json`` document.

    Raises
    ------
    InputError
        Missing study directory, no model in it, unreadable model file, or ``out`` exists
        (without ``force``).
    """
    study_dir, out = Path(study_dir), Path(out)
    if not study_dir.is_dir():
        raise InputError("study directory does not exist", study_dir)
    found = find_components(study_dir)
    if not found:
        raise InputError("no trained model in the study directory (expected models/segmentation, models/tstage, "
                         "models/tstage4, models/lnm or models/survival): run the study first", study_dir)
    if out.exists():
        if not force:
            raise InputError("output folder exists; choose another or pass --force to replace it", out)
        if out.is_dir() and not (out / MANIFEST_NAME).is_file() and any(out.iterdir()):
            raise InputError("output folder exists and is not a bundle; refusing to replace it", out)
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    components = {}
    for name, comp in found.items():
        for rel, src in comp["sources"].items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
        components[name] = {"files": sorted(comp["sources"]), "settings": comp["settings"]}
    manifest = make_manifest(tmp, components, read_study_identity(study_dir))
    write_manifest(tmp, manifest)
    tmp.rename(out)
    return manifest
