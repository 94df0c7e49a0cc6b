"""Index a tree of DICOM files (a PACS export): patients, studies, series, and everything skipped.

Only headers are read (pydicom, ``stop_before_pixels``). A series is keyed by its
SeriesInstanceUID, or, where an anonymised export left that empty, by
(FrameOfReferenceUID, SeriesNumber, folder) so that it is still found. The index keeps
patient-identifying fields (PatientID, StudyDate) in memory only: the importer
(:mod:`esoct.io.dicom_import`) replaces them by pseudonyms before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from esoct.io.dicom import _sniff

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime",
    "StudyDescription", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime",
    "FrameOfReferenceUID", "SliceThickness", "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient",
    "NumberOfFrames", "ContrastBolusAgent", "ImageType", "InstitutionName",
)


@dataclass
class Skipped:
    """A file or series left out of the import, and why (a plain sentence)."""

    path: str
    reason: str


@dataclass
class SeriesEntry:
    """One series of the tree.

    Attributes
    ----------
    key : str
        SeriesInstanceUID, or a stand-in built from the frame of reference, series number and
        folder when the UID is empty.
    modality, sop_class : str
        Modality and SOPClassUID of the first file.
    description : str
        SeriesDescription.
    number : int or None
        SeriesNumber.
    files : list of Path
        Every file of the series (unsorted).
    sop_uids : set of str
        SOPInstanceUID of every file.
    frame_of_reference : str
    slice_thickness : float or None
        SliceThickness in mm.
    contrast : str
        ContrastBolusAgent ("" when absent).
    image_type : str
        ImageType joined with backslashes (e.g. ``ORIGINAL\\PRIMARY\\AXIAL``).
    institution : str
        InstitutionName (not patient-identifying; used to name centres).
    """

    key: str
    modality: str
    sop_class: str
    description: str = ""
    number: int | None = None
    files: list[Path] = field(default_factory=list)
    sop_uids: set[str] = field(default_factory=set)
    frame_of_reference: str = ""
    slice_thickness: float | None = None
    contrast: str = ""
    image_type: str = ""
    institution: str = ""
    series_uid: str = ""

    @property
    def kind(self) -> str:
        """``"ct"``, ``"rtstruct"``, ``"seg"`` or ``"other"``."""
        if self.sop_class == RTSTRUCT_STORAGE or self.modality == "RTSTRUCT":
            return "rtstruct"
        if self.sop_class == SEG_STORAGE or self.modality == "SEG":
            return "seg"
        if self.modality == "CT" and self.sop_class in (CT_IMAGE_STORAGE, ""):
            return "ct"
        return "other"

    def label(self) -> str:
        """Short, non-identifying description: ``'#3 "CT Body 3.0" (CT, 20 files)'``."""
        number = f"#{self.number} " if self.number is not None else ""
        return f'{number}"{self.description}" ({self.modality or "no modality"}, {len(self.files)} files)'


@dataclass
class StudyEntry:
    """One study: its date and time (for ordering time points) and its series."""

    uid: str
    date: str = ""
    time: str = ""
    description: str = ""
    series: dict[str, SeriesEntry] = field(default_factory=dict)


@dataclass
class PatientEntry:
    """One patient of the tree (``patient_id`` is the original PatientID: identifying)."""

    patient_id: str
    studies: dict[str, StudyEntry] = field(default_factory=dict)

    def studies_in_time_order(self) -> list[StudyEntry]:
        """Studies sorted by StudyDate, StudyTime, then UID (an undated study sorts last)."""
        return sorted(self.studies.values(), key=lambda s: (s.date or "99999999", s.time or "", s.uid))

    def all_series(self) -> list[SeriesEntry]:
        """Every series of every study."""
        return [s for st in self.studies.values() for s in st.series.values()]


@dataclass
class DicomIndex:
    """What a DICOM tree holds.

    Attributes
    ----------
    root : Path
    patients : dict of str to PatientEntry
        Keyed by the original PatientID.
    skipped : list of Skipped
        Files that are not DICOM or could not be read, with why.
    n_files : int
        Files looked at.
    """

    root: Path
    patients: dict[str, PatientEntry] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    n_files: int = 0


def _text(ds, tag: str) -> str:
    value = ds.get(tag, "")
    if value is None:
        return ""
    if tag == "ImageType":
        return "\\".join(str(v) for v in value) if not isinstance(value, str) else value
    return str(value).strip()


def _number(ds, tag: str) -> float | None:
    value = ds.get(tag, None)
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _series_key(ds, path: Path, root: Path) -> str:
    uid = _text(ds, "SeriesInstanceUID")
    if uid:
        return uid
    number = _text(ds, "SeriesNumber")
    return f"no-uid:{_text(ds, 'FrameOfReferenceUID')}:{number}:{path.parent.relative_to(root)}"


def index_dicom_tree(root: str | Path, *, progress: bool = False) -> DicomIndex:
    """Read the header of every file under ``root`` and group them by patient, study and series.

    Parameters
    ----------
    root : str or Path
        Top folder of the export (searched recursively).
    progress : bool
        Show a progress bar over files.

    Returns
    -------
    DicomIndex
        Non-DICOM and unreadable files are listed in ``skipped`` with the reason; they never stop the index.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    """
    import pydicom
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DICOM folder does not exist: {root}")
    index = DicomIndex(root=root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    index.n_files = len(files)
    for path in tqdm(files, desc="index DICOM", unit="file", disable=not progress, leave=False):
        rel = str(path.relative_to(root))
        kind = _sniff(path)
        if kind == "other":
            index.skipped.append(Skipped(rel, "not a DICOM file"))
            continue
        if path.name == "DICOMDIR":
            index.skipped.append(Skipped(rel, "DICOMDIR (a directory record, not an image)"))
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_TAGS), force=kind == "raw")
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken files
            index.skipped.append(Skipped(rel, f"unreadable DICOM ({type(exc).__name__})"))
            continue
        if "SOPInstanceUID" not in ds and "Modality" not in ds:
            index.skipped.append(Skipped(rel, "no SOPInstanceUID or Modality: not a DICOM instance"))
            continue
        pid = _text(ds, "PatientID")
        study_uid = _text(ds, "StudyInstanceUID") or "no-study-uid"
        patient = index.patients.setdefault(pid, PatientEntry(pid))
        study = patient.studies.setdefault(study_uid, StudyEntry(
            study_uid, _text(ds, "StudyDate"), _text(ds, "StudyTime"), _text(ds, "StudyDescription")))
        key = _series_key(ds, path, root)
        number = _number(ds, "SeriesNumber")
        series = study.series.setdefault(key, SeriesEntry(
            key=key, modality=_text(ds, "Modality"), sop_class=_text(ds, "SOPClassUID"),
            description=_text(ds, "SeriesDescription"), number=None if number is None else int(number),
            frame_of_reference=_text(ds, "FrameOfReferenceUID"), slice_thickness=_number(ds, "SliceThickness"),
            contrast=_text(ds, "ContrastBolusAgent"), image_type=_text(ds, "ImageType"),
            institution=_text(ds, "InstitutionName"), series_uid=_text(ds, "SeriesInstanceUID")))
        series.files.append(path)
        if _text(ds, "SOPInstanceUID"):  # anonymised exports may blank it
            series.sop_uids.add(_text(ds, "SOPInstanceUID"))
    return index
