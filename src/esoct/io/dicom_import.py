"""``esoct import``: a PACS export (a tree of DICOM studies) into an esoct cohort folder.

Steps, per patient: choose the CT series of every study (a rule: most slices, thinnest, or a
SeriesDescription pattern such as the venous phase), order the studies by date into the pre- and
post-treatment time points, convert the RTSTRUCT or DICOM SEG drawn on each chosen CT into an
esoct label map (:mod:`esoct.io.structures`, ROI names through :class:`esoct.io.roi_map.RoiMap`),
join the clinical table, and write::

    COHORT/images/P01_pre.nii.gz, labels/P01_pre.nii.gz, ...
    COHORT/manifest.csv          pseudonymous ids, centre, image/mask paths, series, clinical columns
    COHORT/import_report.json    every problem of every patient, every skipped series (no paths, no PHI)
    KEY (default COHORT/key.csv) pseudonym -> original PatientID: the only identifying file

Pseudonyms are ``P`` + a number assigned in the order of a hash of the PatientID, so they do not
reveal the order of hospital record numbers. NIfTI files carry no patient field.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import EsoctError, InputError
from esoct.io.dicom_tree import DicomIndex, PatientEntry, SeriesEntry, Skipped, index_dicom_tree
from esoct.io.roi_map import RoiMap

TIMEPOINTS = ("pre", "post")
#: Clinical columns never copied into the cohort (identifying), matched case-insensitively as substrings.
IDENTIFYING_COLUMN_PARTS = ("name", "birth", "address", "phone", "mrn", "email", "ssn", "insurance")
_MIN_CT_SLICES = 5  # fewer is a scout/localiser or a single reformatted image, never a staging CT


@dataclass
class SeriesRule:
    """How to choose the CT series of a study when it holds several.

    ``most-slices`` (default): the series with most slices, then the thinnest, then the lowest number.
    ``thinnest``: the thinnest SliceThickness, then most slices.
    ``description:REGEX``: only series whose SeriesDescription matches REGEX (case-insensitive,
    e.g. ``description:venous|portal``), then most slices.
    """

    kind: str = "most-slices"
    pattern: str = ""

    @classmethod
    def parse(cls, text: str) -> "SeriesRule":
        """Parse ``most-slices``, ``thinnest`` or ``description:REGEX``.

        Raises
        ------
        InputError
            Unknown rule or invalid regular expression.
        """
        text = (text or "most-slices").strip()
        if text in ("most-slices", "thinnest"):
            return cls(text)
        if text.startswith("description:"):
            pattern = text.split(":", 1)[1]
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise InputError(f"series rule {text!r}: invalid regular expression ({exc})") from exc
            return cls("description", pattern)
        raise InputError(f"unknown series rule {text!r}: use most-slices, thinnest or description:REGEX")

    def choose(self, candidates: list[SeriesEntry]) -> tuple[SeriesEntry | None, str]:
        """The chosen series and, when none, why."""
        pool = candidates
        if self.kind == "description":
            pool = [s for s in candidates if re.search(self.pattern, s.description, re.IGNORECASE)]
            if not pool:
                return None, f"no CT series whose description matches {self.pattern!r}"
        thickness = lambda s: s.slice_thickness if s.slice_thickness else 1e9  # noqa: E731
        number = lambda s: s.number if s.number is not None else 1 << 30  # noqa: E731
        if self.kind == "thinnest":
            key = lambda s: (thickness(s), -len(s.files), number(s))  # noqa: E731
        else:
            key = lambda s: (-len(s.files), thickness(s), number(s))  # noqa: E731
        return sorted(pool, key=key)[0], ""

    def __str__(self) -> str:
        return f"description:{self.pattern}" if self.kind == "description" else self.kind


@dataclass
class PatientImport:
    """What happened to one patient (pseudonymous: nothing here identifies them)."""

    patient_id: str
    status: str = "ok"
    timepoints: dict[str, dict] = field(default_factory=dict)
    skipped_series: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    """The result of :func:`import_dicom_tree`.

    Attributes
    ----------
    out : Path
        The cohort folder.
    manifest : Path or None
        ``manifest.csv`` (None when no patient could be imported).
    key : Path
        The pseudonym key file.
    patients : list of PatientImport
    skipped_files : list of Skipped
        Non-DICOM and unreadable files (paths relative to the DICOM root; printed, not written to the cohort).
    clinical_problems : list of str
    centers : dict of str to str
        InstitutionName (or "unknown") -> centre letter, when centres come from the DICOM (kept in memory
        and in the key file only: the cohort folder carries the letters).
    """

    out: Path
    manifest: Path | None
    key: Path
    patients: list[PatientImport] = field(default_factory=list)
    skipped_files: list[Skipped] = field(default_factory=list)
    clinical_problems: list[str] = field(default_factory=list)
    centers: dict[str, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every patient imported without a problem."""
        return all(p.status == "ok" and not p.problems for p in self.patients) and not self.clinical_problems

    def to_dict(self, *, with_paths: bool = False) -> dict:
        """JSON-ready summary; skipped file paths only with ``with_paths`` (folder names may be names)."""
        reasons: dict[str, int] = {}
        for s in self.skipped_files:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        doc = {
            "manifest": self.manifest.name if self.manifest else None,
            "n_patients": len(self.patients),
            "n_imported": sum(p.status != "failed" for p in self.patients),
            "settings": self.settings,
            "centers_from_dicom": sorted(self.centers.values()),
            "skipped_files_by_reason": reasons,
            "clinical_problems": self.clinical_problems,
            "patients": [asdict(p) for p in self.patients],
        }
        if with_paths:
            doc["skipped_files"] = [asdict(s) for s in self.skipped_files]
        return doc

    def to_text(self) -> str:
        """Every skipped file and series and every problem, one per line, for the terminal."""
        lines = []
        for s in self.skipped_files:
            lines.append(f"skipped file {s.path}: {s.reason}")
        for p in self.patients:
            for tp, info in p.timepoints.items():
                labels = ", ".join(f"{k} {v}" for k, v in info.get("voxels_by_class", {}).items()) or "no labels"
                lines.append(f"{p.patient_id} {tp}: CT {info['series']}; voxels: {labels}")
            lines += [f"{p.patient_id}: skipped series {s}" for s in p.skipped_series]
            lines += [f"{p.patient_id}: {problem}" for problem in p.problems]
            if p.status == "failed":
                lines.append(f"{p.patient_id}: FAILED")
        lines += [f"clinical table: {c}" for c in self.clinical_problems]
        n_failed = sum(p.status == "failed" for p in self.patients)
        lines.append(f"{len(self.patients) - n_failed} of {len(self.patients)} patients imported"
                     + (f", {n_failed} failed" if n_failed else "")
                     + f"; {len(self.skipped_files)} files skipped; manifest: {self.manifest}; key: {self.key}")
        return "\n".join(lines)


def pseudonyms(patient_ids: list[str], prefix: str = "P") -> dict[str, str]:
    """Original PatientID -> pseudonym (``P01``...), numbered in the order of a SHA-256 of the id.

    Examples
    --------
    >>> sorted(pseudonyms(["A", "B", "C"]).values())
    ['P1', 'P2', 'P3']
    """
    order = sorted(patient_ids, key=lambda p: hashlib.sha256(p.encode("utf-8")).hexdigest())
    width = len(str(len(order)))
    return {pid: f"{prefix}{i:0{width}d}" for i, pid in enumerate(order, start=1)}


@lru_cache(maxsize=None)  # each structure file is matched against every chosen CT of its patient
def _referenced_sop_uids(path: Path) -> frozenset[str]:
    """Every ReferencedSOPInstanceUID anywhere in an RTSTRUCT or SEG (headers of big SEGs only)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    found = set()

    def walk(d):
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
            elif elem.keyword == "ReferencedSOPInstanceUID" and elem.value:
                found.add(str(elem.value))

    walk(ds)
    return frozenset(found)


def _structures_for(patient: PatientEntry, ct: SeriesEntry) -> list[SeriesEntry]:
    """RTSTRUCT / SEG series of the patient whose references point into ``ct``'s slices."""
    out = []
    for s in patient.all_series():
        if s.kind not in ("rtstruct", "seg"):
            continue
        refs = set().union(*(_referenced_sop_uids(f) for f in s.files))
        if refs & ct.sop_uids:
            out.append(s)
    return out


def _ct_candidates(study, result: PatientImport) -> list[SeriesEntry]:
    candidates = []
    for s in study.series.values():
        if s.kind == "ct":
            if "LOCALIZER" in s.image_type.upper() or len(s.files) < _MIN_CT_SLICES:
                result.skipped_series.append(f"{s.label()}: localiser or fewer than {_MIN_CT_SLICES} slices")
            else:
                candidates.append(s)
        elif s.kind == "other":
            why = "multi-frame (enhanced) CT, which esoct does not read" if s.modality == "CT" else \
                f"modality {s.modality or 'missing'}, not CT"
            result.skipped_series.append(f"{s.label()}: {why}")
    return candidates


def _choose_timepoints(patient: PatientEntry, rule: SeriesRule, result: PatientImport) -> dict[str, SeriesEntry]:
    chosen: list[SeriesEntry] = []
    for study in patient.studies_in_time_order():
        candidates = _ct_candidates(study, result)
        if not candidates:
            continue
        series, why = rule.choose(candidates)
        if series is None:
            result.problems.append(f"a study with {len(candidates)} CT series: {why}")
            for s in candidates:
                result.skipped_series.append(f"{s.label()}: {why}")
            continue
        for s in candidates:
            if s is not series:
                result.skipped_series.append(f"{s.label()}: not chosen by the series rule {rule} "
                                             f"(chose {series.label()})")
        chosen.append(series)
    for extra in chosen[len(TIMEPOINTS):]:
        result.skipped_series.append(f"{extra.label()}: a later study; only {len(TIMEPOINTS)} time points "
                                     "(pre, post) are imported")
    return dict(zip(TIMEPOINTS, chosen))


def _import_timepoint(pid: str, tp: str, ct: SeriesEntry, patient: PatientEntry, out: Path, roi_map: RoiMap,
                      result: PatientImport) -> dict:
    from esoct.io.dicom import read_dicom_files
    from esoct.io.imageio import write_image
    from esoct.io.structures import rtstruct_to_labels, seg_to_labels

    series = read_dicom_files(ct.files, patient=pid)
    volume = replace(series.volume, meta={k: v for k, v in series.volume.meta.items() if k != "source"})  # a folder name may be a name
    result.problems += [f"{tp} CT: {p}" for p in series.problems]
    image = write_image(volume, out / "images" / f"{pid}_{tp}.nii.gz")
    info = {"series": ct.label(), "image": str(image.relative_to(out)), "slices": int(volume.shape[0]),
            "spacing_zyx_mm": [round(float(v), 4) for v in volume.spacing]}
    structures = _structures_for(patient, ct)
    if not structures:
        result.problems.append(f"{tp} CT {ct.label()}: no RTSTRUCT or SEG references it: no label map")
        return info
    labels = None
    rois: dict[str, str] = {}
    for st in structures:
        for f in st.files:
            convert = rtstruct_to_labels if st.kind == "rtstruct" else seg_to_labels
            try:
                res = convert(f, volume, list(series.info.files), roi_map, patient=pid)
            except (EsoctError, ValueError, KeyError, AttributeError) as exc:
                result.problems.append(f"{tp} {st.kind.upper()} {st.label()}: could not be converted "
                                       f"({getattr(exc, 'problem', None) or type(exc).__name__})")
                continue
            result.problems += [f"{tp} {st.kind.upper()} {st.label()}: {p}" for p in res.problems]
            rois.update(res.rois)
            if labels is None:
                labels = res.labels
            else:
                overlap = (labels.array > 0) & (res.labels.array > 0)
                if overlap.any():
                    result.problems.append(f"{tp}: {len(structures)} structure files overlap in {int(overlap.sum())} "
                                           "voxels; the later file's labels were kept there")
                labels = replace(labels, array=np.where(res.labels.array > 0, res.labels.array, labels.array))
    if labels is None:
        return info
    mask = write_image(labels, out / "labels" / f"{pid}_{tp}.nii.gz")
    from esoct.io.roi_map import CLASS_LABELS

    counts = {name: int((labels.array == v).sum()) for name, v in CLASS_LABELS.items() if (labels.array == v).any()}
    info.update({"mask": str(mask.relative_to(out)), "rois": rois, "voxels_by_class": counts})
    if "tumour" not in counts:
        result.problems.append(f"{tp}: no tumour contour (no ROI mapped to tumour): check the ROI map")
    return info


def _read_clinical(path: Path, id_column: str) -> tuple[pd.DataFrame, list[str]]:
    if not path.is_file():
        raise InputError("clinical table does not exist", path)
    table = pd.read_csv(path, dtype={id_column: str}, encoding="utf-8-sig")
    if id_column not in table.columns:
        raise InputError(f"clinical table has no column {id_column!r} (columns: {', '.join(table.columns)})", path)
    problems = []
    dropped = [c for c in table.columns if c != id_column and any(p in c.lower() for p in IDENTIFYING_COLUMN_PARTS)]
    if dropped:
        problems.append(f"column(s) {', '.join(dropped)} look identifying and were not copied into the cohort")
        table = table.drop(columns=dropped)
    dup = table[id_column][table[id_column].duplicated()].unique()
    if len(dup):
        problems.append(f"{len(dup)} patient id(s) appear on several rows; the first row was used")
        table = table.drop_duplicates(subset=id_column)
    table[id_column] = table[id_column].astype(str).str.strip()
    return table.set_index(id_column), problems


def import_dicom_tree(root: str | Path, out: str | Path, *, roi_map: RoiMap | str | Path | None = None,
                      clinical: str | Path | None = None, clinical_id_column: str = "patient_id",
                      series_rule: str | SeriesRule = "most-slices", key: str | Path | None = None,
                      prefix: str = "P", progress: bool = False) -> ImportReport:
    """Import a DICOM tree into an esoct cohort folder (see the module docstring for the layout).

    Parameters
    ----------
    root : str or Path
        Top folder of the DICOM export.
    out : str or Path
        Cohort folder to write (created).
    roi_map : RoiMap, str or Path, optional
        ROI name patterns (a YAML file or a :class:`RoiMap`); default :meth:`RoiMap.default`.
    clinical : str or Path, optional
        CSV with one row per patient, joined on ``clinical_id_column`` = the DICOM PatientID; its other
        columns (e.g. ``center``, ``age``, ``os_months``, ``os_event``, ``dfs_months``) go to the manifest,
        except columns that look identifying (:data:`IDENTIFYING_COLUMN_PARTS`).
    clinical_id_column : str
        The id column of ``clinical``.
    series_rule : str or SeriesRule
        ``most-slices``, ``thinnest`` or ``description:REGEX``.
    key : str or Path, optional
        Where to write the pseudonym key (default ``out/key.csv``; keep it away from shared copies).
    prefix : str
        Pseudonym prefix.
    progress : bool
        Show progress bars.

    Returns
    -------
    ImportReport
        A patient whose import fails is recorded with the reason and the others go on.

    Raises
    ------
    InputError
        No DICOM patient at all, or a bad ROI map, series rule or clinical table.
    """
    from tqdm.auto import tqdm

    root, out = Path(root), Path(out)
    rule = series_rule if isinstance(series_rule, SeriesRule) else SeriesRule.parse(series_rule)
    if roi_map is None:
        roi_map = RoiMap.default()
    elif not isinstance(roi_map, RoiMap):
        roi_map = RoiMap.from_yaml(roi_map)
    table, clinical_problems = (None, [])
    if clinical is not None:
        table, clinical_problems = _read_clinical(Path(clinical), clinical_id_column)
    index: DicomIndex = index_dicom_tree(root, progress=progress)
    if not index.patients:
        raise InputError(f"no DICOM patient found ({index.n_files} files looked at, "
                         f"{len(index.skipped)} skipped)", root)
    out.mkdir(parents=True, exist_ok=True)
    names = pseudonyms(list(index.patients), prefix)
    key_path = Path(key) if key is not None else out / "key.csv"
    report = ImportReport(out=out, manifest=None, key=key_path, skipped_files=index.skipped,
                          clinical_problems=clinical_problems,
                          settings={"series_rule": str(rule), "roi_map": roi_map.patterns,
                                    "clinical": Path(clinical).name if clinical else None})
    rows, institutions = [], {}
    for original in tqdm(sorted(index.patients, key=lambda p: names[p]), desc="import", unit="patient",
                         disable=not progress):
        pid = names[original]
        patient = index.patients[original]
        result = PatientImport(pid)
        report.patients.append(result)
        try:
            chosen = _choose_timepoints(patient, rule, result)
            if not chosen:
                result.status = "failed"
                result.problems.append("no usable CT series")
                continue
            for tp, ct in chosen.items():
                result.timepoints[tp] = _import_timepoint(pid, tp, ct, patient, out, roi_map, result)
            institutions[pid] = chosen[TIMEPOINTS[0]].institution or "unknown"
        except EsoctError as exc:
            result.status = "failed"
            result.problems.append(getattr(exc, "problem", None) or str(exc))
            continue
        rows.append(_manifest_row(pid, original, result, table, institutions[pid]))
    if table is not None:
        missing = sorted(set(table.index) - set(index.patients))
        if missing:
            report.clinical_problems.append(f"{len(missing)} clinical row(s) have no DICOM patient")
        no_row = [names[p] for p in index.patients if p not in table.index]
        if no_row:
            report.clinical_problems.append(f"no clinical row for {', '.join(sorted(no_row))}")
    if rows:
        manifest = pd.DataFrame(rows)
        _assign_centers(manifest, report)
        manifest = manifest.drop(columns=["_institution"])
        report.manifest = out / "manifest.csv"
        manifest.to_csv(report.manifest, index=False)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": [names[p] for p in index.patients], "original_patient_id": list(index.patients),
                  "institution": [institutions.get(names[p], "") for p in index.patients]}) \
        .sort_values("patient_id").to_csv(key_path, index=False)
    (out / "import_report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def _manifest_row(pid: str, original: str, result: PatientImport, table: pd.DataFrame | None,
                  institution: str) -> dict:
    row = {"patient_id": pid, "center": ""}
    for tp in TIMEPOINTS:
        info = result.timepoints.get(tp, {})
        row[f"image_{tp}"] = info.get("image", "")
        row[f"mask_{tp}"] = info.get("mask", "")
        row[f"series_{tp}"] = info.get("series", "")
    row["_institution"] = institution
    if table is not None and original in table.index:
        for column, value in table.loc[original].items():
            row[column] = value
    return row


def _assign_centers(manifest: pd.DataFrame, report: ImportReport) -> None:
    """Centre from the clinical table when given there, else one letter per InstitutionName."""
    empty = manifest["center"].isna() | manifest["center"].astype(str).str.strip().isin(["", "nan"])
    if not empty.any():
        return
    letters: dict[str, str] = {}
    for inst in manifest["_institution"]:
        letters.setdefault(inst, chr(ord("A") + len(letters)) if len(letters) < 26 else f"C{len(letters)}")
    manifest.loc[empty, "center"] = manifest.loc[empty, "_institution"].map(letters)
    report.centers = letters
