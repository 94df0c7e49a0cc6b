"""``esoct predict``: run a verified model bundle on one new patient and write every output as soon as it is done.

Outputs in the output folder::

    segmentation.nii.gz   label map on the input grid (0 background, 1 tumour .. 5 pericardium)
    segmentation.dcm      DICOM SEG referencing the input series (DICOM input only)
    gradcam/*.png         Grad-CAM overlays (unless ``gradcam=False``)
    prediction.json       every component's status and results, rewritten after each step

No patient-identifying DICOM field reaches an output or a message unless ``keep_phi``: the case
is named by a pseudonymous id derived from a hash of the series UID (DICOM) or of the file bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from esoct.bundle import components as comp
from esoct.bundle.manifest import Bundle, esoct_version
from esoct.errors import InputError
from esoct.io.volume import Volume

log = logging.getLogger("esoct")

PREDICTION_FORMAT = "esoct-prediction/1"
#: Lowest HU a CT of the thorax shows (air is about -1000); a minimum above it suggests another modality.
CT_MIN_HU = -500.0
EXIT_OK, EXIT_PARTIAL = 0, 1


@dataclass
class CaseInput:
    """One patient's scan as read for prediction.

    Attributes
    ----------
    image : Volume
        CT in HU, ``(z, y, x)``.
    kind : str
        ``"dicom"`` or ``"file"``.
    case_id : str
        Pseudonymous id (``case-`` + 12 hex digits of a sha256).
    series_uid : str or None
        SeriesInstanceUID (DICOM only).
    source_files : list of Path
        DICOM slices in z order (DICOM only).
    warnings : list of str
        Problems found while reading.
    """

    image: Volume
    kind: str
    case_id: str
    series_uid: str | None = None
    source_files: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def pseudonym(text: str | bytes) -> str:
    """``case-`` + the first 12 hex digits of the sha256 of ``text``."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "case-" + hashlib.sha256(data).hexdigest()[:12]


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def describe_series(series) -> str:
    """One line per series (UID, description, number of images): no patient field."""
    return "; ".join(f"{s.series_uid or '(no UID)'} ({s.series_description or 'no description'}, "
                     f"{s.modality or 'no modality'}, {s.n_slices} images)" for s in series)


def read_case(path: str | Path, series_uid: str | None = None) -> CaseInput:
    """Read the input scan: a NIfTI/NRRD/MetaImage file or a DICOM folder holding one CT series.

    Parameters
    ----------
    path : str or Path
        File or DICOM folder.
    series_uid : str, optional
        The series to read when the folder holds several.

    Returns
    -------
    CaseInput

    Raises
    ------
    InputError
        Missing path, several series without ``series_uid`` (they are listed), a modality other
        than CT, an unreadable file.
    """
    from esoct.io.dicom import list_series, read_dicom_series
    from esoct.io.imageio import read_image

    path = Path(path)
    if not path.exists():
        raise InputError("input file or folder does not exist", path)
    if path.is_dir():
        series = list_series(path)
        if not series:
            raise InputError("no DICOM image series found in the folder", path)
        if len(series) > 1 and series_uid is None:
            raise InputError(f"the folder holds {len(series)} series: {describe_series(series)}; choose one with "
                             "--series UID", path)
        read = read_dicom_series(path, series_uid=series_uid)
        if read.info.modality != "CT":
            raise InputError(f"the series' modality is {read.info.modality or 'missing'}, not CT: the bundle's models "
                             "were trained on CT (Hounsfield units)", path)
        uid = read.info.series_uid
        case_id = pseudonym(uid) if uid else pseudonym(b"".join(_file_digest(f) for f in read.info.files))
        image = read.volume
        return CaseInput(Volume(image.array, image.spacing, image.origin, image.direction), "dicom", case_id, uid,
                         list(read.info.files), list(read.problems))
    image = read_image(path)
    warnings = []
    low = float(np.min(image.array)) if image.array.size else 0.0
    if low > CT_MIN_HU:
        warnings.append(f"the image's minimum is {low:.0f}; a chest CT in Hounsfield units has air near -1000: "
                        "is this a CT (or a CT already normalised)?")
    return CaseInput(Volume(image.array, image.spacing, image.origin, image.direction), "file",
                     pseudonym(_file_digest(path)), warnings=warnings)


def read_mask(path: str | Path, image: Volume) -> Volume:
    """A given label map, checked to lie on the image grid; uint8 with the image's geometry."""
    from esoct.io.imageio import read_image

    mask = read_image(path)
    if mask.shape != image.shape or not mask.same_geometry(image, atol=1e-3):
        diffs = "; ".join(mask.geometry_differences(image)) or f"shape {mask.shape} vs {image.shape}"
        raise InputError(f"the label map is not on the input image's grid ({diffs})", path)
    return image.with_array(np.rint(np.asarray(mask.array)).astype(np.uint8))


class Summary:
    """``prediction.json``, rewritten after every step so a crash keeps what was done."""

    def __init__(self, out: Path, bundle: Bundle, case: CaseInput, input_path: Path, keep_phi: bool):
        self.path = out / "prediction.json"
        info = {"kind": case.kind, "shape_zyx": list(case.image.shape),
                "spacing_zyx_mm": [round(s, 6) for s in case.image.spacing], "warnings": list(case.warnings)}
        if keep_phi:
            info["path"] = str(input_path)
            if case.series_uid:
                info["series_instance_uid"] = case.series_uid
        self.doc = {
            "format": PREDICTION_FORMAT, "esoct_version": esoct_version(),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "case_id": case.case_id, "input": info,
            "bundle": {"checksum": bundle.checksum, "esoct_version": bundle.manifest.get("esoct_version"),
                       "study": bundle.manifest.get("study", {}), "components": sorted(bundle.components)},
            "components": {},
        }
        self.write()

    def set(self, name: str, value: dict) -> None:
        """Record a component's result and rewrite the file."""
        self.doc["components"][name] = value
        self.write()

    def write(self) -> None:
        """Write the JSON atomically."""
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2) + "\n")
        tmp.replace(self.path)


def _failure(exc: Exception) -> dict:
    if isinstance(exc, comp.NoTumour):
        return {"status": "no tumour found", "reason": exc.problem}
    if isinstance(exc, InputError):
        return {"status": "failed", "reason": exc.problem}
    log.debug("component failed:\n%s", traceback.format_exc())
    return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def _segmentation_step(bundle: Bundle, case: CaseInput, out: Path, mask: str | Path | None, keep_phi: bool,
                       summary: Summary) -> Volume | None:
    from esoct.io.imageio import write_image

    if mask is not None:
        labels, source = read_mask(mask, case.image), "given label map (--mask)"
    elif bundle.has("segmentation"):
        labels, source = comp.segment(bundle, case.image), "bundle segmenter"
    else:
        summary.set("segmentation", {"status": "not in bundle",
                                     "reason": "the bundle has no segmenter and no --mask was given"})
        return None
    files = [write_image(labels, out / "segmentation.nii.gz").name]
    result = {"status": "ok", "source": source, "files": files, "volumes_ml": comp.label_summary(labels),
              "sanity": comp.segmentation_sanity(labels)}
    for problem in result["sanity"]["problems"]:
        log.warning("%s: %s", case.case_id, problem)
    summary.set("segmentation", result)
    if case.kind == "dicom":
        from esoct.bundle.dicom_seg import write_dicom_seg

        try:
            seg = write_dicom_seg(labels, case.source_files, out / "segmentation.dcm", case_id=case.case_id,
                                  keep_phi=keep_phi)
            result["files"].append("segmentation.dcm")
            result["dicom_seg"] = {"frames": seg["frames"], "segments": {str(k): v for k, v in seg["segments"].items()}}
        except Exception as exc:  # noqa: BLE001 - the NIfTI is kept; the SEG failure is reported
            result["dicom_seg"] = _failure(exc)
        summary.set("segmentation", result)
    return labels


def _gradcam_step(results: dict, inputs: dict, out: Path, summary: Summary) -> None:
    from esoct.bundle.gradcam import sequence_gradcam, tstage4_gradcam

    files, problems = [], []
    if "tstage4" in inputs:
        models, box, x = inputs["tstage4"]
        names = results["tstage4"]["class_names"]
        try:
            idx = names.index(results["tstage4"]["predicted"])
            files += [p.relative_to(out).as_posix() for p in tstage4_gradcam(models, box, x, idx, out / "gradcam")]
        except Exception as exc:  # noqa: BLE001
            problems.append(f"tstage4: {_failure(exc)['reason']}")
    for kind, (models, seqs) in inputs.get("tstage", {}).items():
        res = results["tstage"]["models"][kind]
        try:
            idx = res["class_names"].index(res["predicted"])
            path = sequence_gradcam(models, seqs.images[0], idx, out / "gradcam" / f"tstage_{kind}.png",
                                    f"{kind} T stage, predicted {res['predicted']}: Grad-CAM on ResNet layer4")
            files.append(path.relative_to(out).as_posix())
        except Exception as exc:  # noqa: BLE001
            problems.append(f"tstage {kind}: {_failure(exc)['reason']}")
    if not inputs:
        has_model = any(name in results for name in ("tstage", "tstage4"))
        summary.set("gradcam", {"status": "skipped", "reason": "no T-stage model ran"} if has_model
                    else {"status": "not in bundle", "reason": "the bundle has no T-stage model"})
        return
    summary.set("gradcam", {"status": "failed" if problems and not files else "ok", "files": files,
                            **({"problems": problems} if problems else {})})


def predict_case(
    bundle: Bundle,
    input_path: str | Path,
    out: str | Path,
    *,
    series_uid: str | None = None,
    mask: str | Path | None = None,
    keep_phi: bool = False,
    gradcam: bool = True,
    progress: bool = False,
) -> dict:
    """Run every component of ``bundle`` on one patient and write the outputs to ``out``.

    Parameters
    ----------
    bundle : Bundle
        Verified bundle (:func:`esoct.bundle.manifest.load_bundle`).
    input_path : str or Path
        NIfTI/NRRD file or DICOM folder of the CT.
    out : str or Path
        Output folder (created).
    series_uid : str, optional
        Series to read from a folder with several.
    mask : str or Path, optional
        Label map on the CT grid to use instead of the bundle's segmenter.
    keep_phi : bool
        Keep patient fields in the DICOM SEG and the input path and SeriesInstanceUID in the JSON.
    gradcam : bool
        Write Grad-CAM PNGs.
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    dict
        The ``prediction.json`` document; ``exit_code`` is 0 when every component present ran,
        1 when some could not (no tumour, a failure).

    Raises
    ------
    InputError
        Unusable input (several series, not CT, unreadable, mask off the grid): nothing written.
    """
    from tqdm.auto import tqdm

    input_path, out = Path(input_path), Path(out)
    case = read_case(input_path, series_uid)
    if mask is not None:
        read_mask(mask, case.image)  # refuse a mask off the grid before writing anything
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(out, bundle, case, input_path, keep_phi)
    for w in case.warnings:
        log.warning("%s: %s", case.case_id, w)
    steps = ["segmentation", *[c for c in comp.ORDER if bundle.has(c)], *(["gradcam"] if gradcam else [])]
    bar = tqdm(total=len(steps), desc="predict", unit="step", disable=not progress)
    bar.set_postfix_str("segmentation")
    try:
        labels = _segmentation_step(bundle, case, out, mask, keep_phi, summary)
    except InputError:
        bar.close()
        raise
    except Exception as exc:  # noqa: BLE001 - recorded; the components below cannot run without labels
        summary.set("segmentation", _failure(exc))
        labels = None
    bar.update()
    results, inputs = {}, {}
    for name in comp.ORDER:
        if not bundle.has(name):
            summary.set(name, {"status": "not in bundle"})
            continue
        bar.set_postfix_str(name)
        sanity = summary.doc["components"].get("segmentation", {}).get("sanity", {})
        if labels is None:
            results[name] = {"status": "skipped", "reason": "no segmentation"}
        elif sanity.get("status") == "failed" and mask is None:
            results[name] = {"status": "skipped", "reason": "the predicted segmentation failed the sanity check: "
                                                            + "; ".join(sanity["problems"])}
        else:
            try:
                results[name], extra = comp.RUNNERS[name](bundle, case.image, labels, case.case_id)
                if extra is not None:
                    inputs[name] = extra
            except Exception as exc:  # noqa: BLE001 - recorded, the other components still run
                results[name] = _failure(exc)
        summary.set(name, results[name])
        bar.update()
    if gradcam:
        bar.set_postfix_str("gradcam")
        _gradcam_step(results, inputs, out, summary)
        bar.update()
    bar.close()
    statuses = [v.get("status") for v in summary.doc["components"].values()]
    seg_dicom = summary.doc["components"].get("segmentation", {}).get("dicom_seg", {})
    complete = all(s in ("ok", "not in bundle") for s in statuses) and seg_dicom.get("status") != "failed"
    summary.doc["exit_code"] = EXIT_OK if complete else EXIT_PARTIAL
    summary.write()
    return summary.doc
