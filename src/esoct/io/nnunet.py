"""Export a cohort as an nnU-Net v2 raw dataset, and import nnU-Net's predictions back to patient ids.

Layout written by :func:`export_nnunet_dataset` (nnU-Net v2's "raw" format)::

    Dataset<NNN>_<Name>/
        dataset.json                 channel_names {"0": "CT"}, labels, numTraining, file_ending
        imagesTr/<case>_0000.nii.gz  CT of each training case (channel 0000)
        labelsTr/<case>.nii.gz       its label map (uint8, nn-TransEC classes), on the image's grid
        imagesTs/<case>_0000.nii.gz  CT of each test case (optional, no label)
        case_map.csv                 case,patient_id,split: how to map nnU-Net's files back

A case identifier is the patient's pseudonymous ``patient_id`` with every character outside
``[A-Za-z0-9-]`` replaced by ``-`` (nnU-Net splits file names on ``_``); nothing else about the
patient (no name, no DICOM id, no date) reaches a file name or ``dataset.json``.
Paths are explicit arguments: nothing reads nnU-Net's ``nnUNet_raw`` environment variables.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.imageio import read_image, write_image
from esoct.io.volume import Volume

#: nnU-Net v2 ``labels`` of nn-TransEC (name -> value, background first).
NNUNET_LABELS: dict[str, int] = {"background": 0, "tumour": 1, "aorta": 2, "esophagus": 3, "lymph_node": 4, "pericardium": 5}

FILE_ENDING = ".nii.gz"
CASE_MAP = "case_map.csv"

_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def case_identifier(patient_id: str) -> str:
    """nnU-Net-safe case identifier of a pseudonymous patient id.

    Parameters
    ----------
    patient_id : str
        The manifest's ``patient_id``.

    Returns
    -------
    str
        ``patient_id`` with characters outside ``[A-Za-z0-9-]`` replaced by ``-``.

    Examples
    --------
    >>> case_identifier("EP_0001 b")
    'EP-0001-b'
    """
    case = _UNSAFE.sub("-", str(patient_id).strip())
    if not case.strip("-"):
        raise InputError(f"patient_id {patient_id!r} gives an empty nnU-Net case identifier")
    return case


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset<NNN>_<name>``, checking nnU-Net's rules (id 1-999, name of letters, digits and ``-``)."""
    if not isinstance(dataset_id, (int, np.integer)) or not 1 <= int(dataset_id) <= 999:
        raise InputError(f"nnU-Net dataset id must be an integer in 1..999, got {dataset_id!r}")
    if not _NAME.match(str(name)):
        raise InputError(f"nnU-Net dataset name must be letters, digits and '-' (no '_' or spaces), got {name!r}")
    return f"Dataset{int(dataset_id):03d}_{name}"


@dataclass
class NnunetExport:
    """What :func:`export_nnunet_dataset` wrote.

    Attributes
    ----------
    folder : Path
        The ``Dataset<NNN>_<Name>`` folder.
    train_cases, test_cases : dict
        Patient id -> case identifier of the exported training and test cases.
    failures : dict
        Patient id -> why it was not exported.
    """

    folder: Path
    train_cases: dict = field(default_factory=dict)
    test_cases: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every patient was exported."""
        return not self.failures


def export_nnunet_dataset(
    manifest,
    out_root: str | Path,
    dataset_id: int,
    name: str = "EsophagusCT",
    *,
    train_patients: Sequence[str] | None = None,
    test_patients: Sequence[str] | None = None,
    image_column: str = "image_pre",
    mask_column: str = "mask_pre",
    labels: dict[str, int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> NnunetExport:
    """Write a cohort as an nnU-Net v2 raw dataset.

    Parameters
    ----------
    manifest : str, Path or esoct.io.manifest.Manifest
        The cohort.
    out_root : str or Path
        Folder that receives ``Dataset<NNN>_<name>`` (nnU-Net's ``nnUNet_raw``).
    dataset_id : int
        nnU-Net dataset id, 1-999.
    name : str
        Dataset name: letters, digits and ``-``.
    train_patients : sequence of str, optional
        Patients for ``imagesTr``/``labelsTr`` (default: every patient not in ``test_patients``).
    test_patients : sequence of str, optional
        Patients whose CT goes to ``imagesTs`` (no label written).
    image_column, mask_column : str
        Manifest columns of the CT and its label map.
    labels : dict name -> int, optional
        ``dataset.json`` labels (default :data:`NNUNET_LABELS`); mask values outside them are
        refused.
    overwrite : bool
        Replace files of an existing dataset folder (otherwise an existing folder is refused).
    progress : bool
        Show a progress bar.

    Returns
    -------
    NnunetExport
        A patient that cannot be exported (unreadable file, mask off the image grid, unknown
        label value) is recorded in ``failures`` with its reason; the others are written and
        ``numTraining`` counts only them.

    Raises
    ------
    InputError
        Bad id or name, an existing folder without ``overwrite``, unknown patients, a patient
        in both splits, or two patients whose case identifiers collide.
    """
    from esoct.io.manifest import Manifest, load_manifest
    from esoct.study.runner import run_per_patient

    man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    labels = dict(NNUNET_LABELS if labels is None else labels)
    folder = Path(out_root) / dataset_folder_name(dataset_id, name)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise InputError("nnU-Net dataset folder exists and is not empty (pass overwrite=True to replace its files)", folder)
    all_patients = man.patients
    test = [str(p) for p in (test_patients or [])]
    train = [str(p) for p in train_patients] if train_patients is not None else [p for p in all_patients if p not in set(test)]
    unknown = sorted(set(train + test) - set(all_patients))
    if unknown:
        raise InputError(f"patients not in the manifest: {', '.join(unknown)}", man.path)
    both = sorted(set(train) & set(test))
    if both:
        raise InputError(f"patients in both the training and the test split: {', '.join(both)}", man.path)
    cases = {p: case_identifier(p) for p in train + test}
    seen: dict[str, str] = {}
    for p, c in cases.items():
        if c in seen:
            raise InputError(f"patients {seen[c]!r} and {p!r} both map to nnU-Net case {c!r}; make their ids differ in letters or digits", man.path)
        seen[c] = p

    for sub in ("imagesTr", "labelsTr") + (("imagesTs",) if test else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    allowed = set(labels.values())
    test_set = set(test)

    def work(pid: str) -> str:
        return _export_case(man, pid, cases[pid], folder, pid in test_set, image_column, mask_column, allowed)

    run = run_per_patient(train + test, work, desc="nnU-Net export", progress=progress)
    export = NnunetExport(
        folder=folder,
        train_cases={p: cases[p] for p in train if p in run.results},
        test_cases={p: cases[p] for p in test if p in run.results},
        failures=dict(run.failures),
    )
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": len(export.train_cases),
        "file_ending": FILE_ENDING,
        "name": str(name),
        "description": "nn-TransEC label maps exported by esoct",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n", encoding="utf-8")
    with open(folder / CASE_MAP, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "patient_id", "split"])
        writer.writerows([c, p, "train"] for p, c in export.train_cases.items())
        writer.writerows([c, p, "test"] for p, c in export.test_cases.items())
    return export


def _export_case(man, pid: str, case: str, folder: Path, is_test: bool, image_column: str, mask_column: str, allowed: set) -> str:
    image_path = man.resolve(pid, image_column)
    if image_path is None:
        raise InputError(f"{image_column} is empty", man.path, pid)
    image = read_image(image_path, patient=pid)
    if is_test:
        write_image(image, folder / "imagesTs" / f"{case}_0000{FILE_ENDING}")
        return case
    mask_path = man.resolve(pid, mask_column)
    if mask_path is None:
        raise InputError(f"{mask_column} is empty (training cases need a label map)", man.path, pid)
    mask = read_image(mask_path, patient=pid)
    differences = image.geometry_differences(mask)
    if differences:
        raise InputError(f"mask grid differs from {image_column} (mask vs image): " + "; ".join(differences), mask_path, pid)
    values = np.unique(mask.array)
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        raise InputError(f"mask values {bad[:10]} are not labels of dataset.json ({sorted(allowed)})", mask_path, pid)
    # the label map takes the image's exact geometry (they agree within 1e-3 mm) so nnU-Net's check passes
    write_image(image, folder / "imagesTr" / f"{case}_0000{FILE_ENDING}")
    labels = Volume(mask.array.astype(np.uint8), image.spacing, image.origin, image.direction)
    write_image(labels, folder / "labelsTr" / f"{case}{FILE_ENDING}")
    return case


def check_nnunet_dataset(folder: str | Path) -> list[str]:
    """Check an nnU-Net v2 raw dataset without nnU-Net: names, dataset.json, labels and geometry.

    Parameters
    ----------
    folder : str or Path
        ``Dataset<NNN>_<Name>`` folder.

    Returns
    -------
    list of str
        One line per problem; empty when the dataset is sound. Checked: ``dataset.json`` keys
        (``channel_names``, ``labels`` with background 0 and consecutive values, ``numTraining``,
        ``file_ending``), one ``imagesTr/<case>_0000`` per ``labelsTr/<case>`` and their count
        equal to ``numTraining``, no other channel file, label values among ``labels``, and
        image and label on the same grid (size, spacing, origin, direction within 1e-3).
    """
    folder = Path(folder)
    problems: list[str] = []
    ds_path = folder / "dataset.json"
    if not ds_path.is_file():
        return [f"{ds_path}: missing"]
    ds = json.loads(ds_path.read_text(encoding="utf-8"))
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in ds:
            problems.append(f"dataset.json: key {key!r} missing")
    if problems:
        return problems
    ending = ds["file_ending"]
    values = sorted(int(v) for v in ds["labels"].values())
    if ds["labels"].get("background") != 0:
        problems.append("dataset.json: labels must map 'background' to 0")
    if values != list(range(len(values))):
        problems.append(f"dataset.json: label values must be consecutive from 0, got {values}")
    n_channels = len(ds["channel_names"])
    labels = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").glob(f"*{ending}"))
    images = sorted(p.name[: -len(ending)] for p in (folder / "imagesTr").glob(f"*{ending}"))
    if len(labels) != int(ds["numTraining"]):
        problems.append(f"numTraining is {ds['numTraining']} but labelsTr holds {len(labels)} label maps")
    expected = {f"{c}_{k:04d}" for c in labels for k in range(n_channels)}
    for name in sorted(set(images) - expected):
        problems.append(f"imagesTr/{name}{ending}: no matching label map or unexpected channel")
    for name in sorted(expected - set(images)):
        problems.append(f"imagesTr/{name}{ending}: missing")
    for case in labels:
        image_file = folder / "imagesTr" / f"{case}_0000{ending}"
        if not image_file.is_file():
            continue
        image = read_image(image_file)
        label = read_image(folder / "labelsTr" / f"{case}{ending}")
        differences = image.geometry_differences(label)
        if differences:
            problems.append(f"labelsTr/{case}{ending}: grid differs from its image: " + "; ".join(differences))
        extra = sorted(set(np.unique(label.array).tolist()) - set(values))
        if extra:
            problems.append(f"labelsTr/{case}{ending}: values {extra} not in dataset.json labels")
    for path in (folder / "imagesTs").glob(f"*{ending}") if (folder / "imagesTs").is_dir() else []:
        if not re.search(r"_\d{4}$", path.name[: -len(ending)]):
            problems.append(f"imagesTs/{path.name}: name must end in _<channel>{ending}")
    return problems


@dataclass
class NnunetPredictions:
    """nnU-Net predictions mapped back to patients.

    Attributes
    ----------
    volumes : dict
        Patient id -> predicted label map (a :class:`Volume` on the source image's exact grid);
        empty when ``out_dir`` was given.
    paths : dict
        Patient id -> file written under ``out_dir`` (``<patient_id>.nii.gz``).
    failures : dict
        Patient id (or case, when it maps to no patient) -> reason.
    """

    volumes: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every prediction was imported."""
        return not self.failures


def read_case_map(source) -> dict[str, str]:
    """Case identifier -> patient id, from an export's ``case_map.csv`` (or its dataset folder).

    Parameters
    ----------
    source : str or Path
        ``case_map.csv`` or the ``Dataset<NNN>_<Name>`` folder holding it.

    Returns
    -------
    dict
    """
    path = Path(source)
    if path.is_dir():
        path = path / CASE_MAP
    if not path.is_file():
        raise InputError("case map not found (it is written by export_nnunet_dataset)", path)
    with open(path, newline="") as fh:
        return {row["case"]: row["patient_id"] for row in csv.DictReader(fh)}


def import_nnunet_predictions(
    predictions_dir: str | Path,
    manifest,
    case_map=None,
    *,
    image_column: str = "image_pre",
    out_dir: str | Path | None = None,
    file_ending: str = FILE_ENDING,
    atol: float = 1e-3,
) -> NnunetPredictions:
    """Read nnU-Net's predicted label maps (``<case>.nii.gz``) and map them to patient ids.

    Parameters
    ----------
    predictions_dir : str or Path
        nnU-Net's output folder (other files there, e.g. ``plans.json``, are ignored).
    manifest : str, Path or esoct.io.manifest.Manifest
        The cohort the dataset was exported from.
    case_map : str, Path or dict, optional
        The export's ``case_map.csv`` or dataset folder, or a dict case -> patient id
        (default: case identifiers are matched to :func:`case_identifier` of the manifest's ids).
    image_column : str
        The source image each prediction must lie on.
    out_dir : str or Path, optional
        Write each prediction as ``<patient_id>.nii.gz`` here and keep only the paths.
    file_ending : str
        nnU-Net's ``file_ending``.
    atol : float
        Geometry tolerance (mm for spacing and origin, unitless for direction).

    Returns
    -------
    NnunetPredictions
        A prediction whose grid differs from its source image (size, spacing, origin or
        direction), or whose case maps to no patient, is recorded in ``failures`` with the
        reason (naming both files); the others are imported.
    """
    from esoct.io.manifest import Manifest, load_manifest

    man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    if case_map is None:
        mapping = {case_identifier(p): p for p in man.patients}
    elif isinstance(case_map, dict):
        mapping = {str(k): str(v) for k, v in case_map.items()}
    else:
        mapping = read_case_map(case_map)
    folder = Path(predictions_dir)
    if not folder.is_dir():
        raise InputError("nnU-Net predictions folder does not exist", folder)
    result = NnunetPredictions()
    out = None if out_dir is None else Path(out_dir)
    known = set(man.patients)
    for path in sorted(folder.glob(f"*{file_ending}")):
        case = path.name[: -len(file_ending)]
        pid = mapping.get(case)
        if pid is None or pid not in known:
            result.failures[case] = f"file {path}: case {case!r} maps to no patient of the manifest"
            continue
        try:
            result_volume = _import_case(path, man, pid, image_column, atol)
        except InputError as exc:
            result.failures[pid] = str(exc if exc.patient else exc.for_patient(pid))
            continue
        if out is not None:
            result.paths[pid] = write_image(result_volume, out / f"{pid}{FILE_ENDING}")
        else:
            result.volumes[pid] = result_volume
    return result


def _import_case(path: Path, man, pid: str, image_column: str, atol: float) -> Volume:
    source = man.resolve(pid, image_column)
    if source is None:
        raise InputError(f"{image_column} is empty: nothing to check the prediction against", man.path, pid)
    prediction = read_image(path, patient=pid)
    image = read_image(source, patient=pid)
    differences = image.geometry_differences(prediction, atol=atol)
    if differences:
        raise InputError(
            f"prediction is not on the grid of {image_column} {source} (prediction vs image): " + "; ".join(differences),
            path,
            pid,
        )
    array = np.asarray(prediction.array)
    if np.issubdtype(array.dtype, np.floating):
        if np.any(array != np.round(array)):
            raise InputError("prediction values are not integer labels", path, pid)
    return Volume(array.astype(np.uint8), image.spacing, image.origin, image.direction, {"source": path.name})
