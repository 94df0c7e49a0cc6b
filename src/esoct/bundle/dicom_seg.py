"""DICOM SEG of a label map on a DICOM CT series (highdicom), with patient fields pseudonymised by default.

One BINARY segment per label present (1 tumour, 2 aorta, 3 esophagus, 4 lymph node, 5
pericardium), each frame referencing the source slice's SOPInstanceUID, algorithm "esoct".
Without ``keep_phi`` the source headers are copied and stripped of patient-identifying fields
*before* highdicom sees them, and the SEG is stripped again after; the study, series and instance
UIDs stay, since a SEG must reference its source series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume

#: label -> (segment label, category (code, meaning), type (code, meaning)), SNOMED CT codes.
SEGMENTS = {
    1: ("tumour", ("49755003", "Morphologically Altered Structure"), ("108369006", "Neoplasm")),
    2: ("aorta", ("123037004", "Anatomical Structure"), ("15825003", "Aorta")),
    3: ("esophagus", ("123037004", "Anatomical Structure"), ("32849002", "Esophagus")),
    4: ("lymph node", ("123037004", "Anatomical Structure"), ("59441001", "Lymph node")),
    5: ("pericardium", ("123037004", "Anatomical Structure"), ("25489000", "Pericardium")),
}

#: Attributes emptied (type 2: must be present) ...
EMPTIED_FIELDS = ("PatientBirthDate", "PatientSex", "AccessionNumber", "ReferringPhysicianName", "StudyID",
                  "StudyDate", "StudyTime")
#: ... and removed (type 3).
REMOVED_FIELDS = (
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthTime", "PatientAge",
    "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName",
    "MilitaryRank", "EthnicGroup", "PatientComments", "PatientBirthName", "MedicalRecordLocator",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PerformingPhysicianName",
    "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "RequestingPhysician",
    "IssuerOfPatientID", "StationName", "DeviceSerialNumber", "RequestAttributesSequence",
    "StudyDescription", "AdmittingDiagnosesDescription", "ReferencedPatientSequence",
)


def deidentify(ds, case_id: str):
    """Pseudonymise a pydicom dataset in place (also inside sequences) and return it.

    PatientName and PatientID become ``case_id``; birth date, sex, accession number, physician
    and study identifiers are emptied; other patient, institution and staff fields are removed.
    """
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                deidentify(item, case_id)
    if "PatientName" in ds:
        ds.PatientName = f"{case_id}^"  # family-name component only
    if "PatientID" in ds:
        ds.PatientID = case_id
    for keyword in EMPTIED_FIELDS:
        if keyword in ds:
            setattr(ds, keyword, "")
    for keyword in REMOVED_FIELDS:
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def _descriptions(present: list[int], version: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="esoct", family=codes.cid7162.ArtificialIntelligence,
                                                   version=version)
    out = []
    for number, label in enumerate(present, start=1):
        name, (cat_code, cat_meaning), (type_code, type_meaning) = SEGMENTS.get(
            label, (f"label {label}", ("123037004", "Anatomical Structure"), ("91723000", "Anatomical structure")))
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=hd.sr.CodedConcept(cat_code, "SCT", cat_meaning),
            segmented_property_type=hd.sr.CodedConcept(type_code, "SCT", type_meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        ))
    return out


def sop_uids_from_file_meta(ds, path=None):
    """Fill an empty SOPClassUID / SOPInstanceUID from the file meta (MediaStorage...), in place.

    Some anonymised exports blank them in the data set (the Siemens series in ../shared/data does)
    while the file meta keeps them; a SEG must reference each slice by them.

    Raises
    ------
    InputError
        Both the data set and the file meta lack one of them (naming the file).
    """
    meta = getattr(ds, "file_meta", None)
    for tag, meta_tag in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if str(ds.get(tag, "") or "").strip():
            continue
        value = str(meta.get(meta_tag, "") or "").strip() if meta is not None else ""
        if not value:
            raise InputError(f"{tag} is empty in the data set and its file meta: a DICOM SEG cannot reference this "
                             f"slice", path)
        setattr(ds, tag, value)
    return ds


def write_dicom_seg(labels: Volume, source_files: list[str | Path], path: str | Path, *, case_id: str,
                    keep_phi: bool = False, series_description: str = "esoct segmentation") -> dict:
    """Write a DICOM SEG of ``labels`` referencing the CT slices ``source_files``.

    Parameters
    ----------
    labels : Volume
        Label map ``(z, y, x)`` on the series' grid: ``labels.array[k]`` is slice ``source_files[k]``
        (the order :func:`esoct.io.dicom.read_dicom_series` reads them, along the slice normal).
    source_files : list of str or Path
        The series' files, one per z slice.
    path : str or Path
        Output ``.dcm`` file.
    case_id : str
        Pseudonym written to PatientName and PatientID unless ``keep_phi``.
    keep_phi : bool
        Keep the source's patient fields.
    series_description : str
        SeriesDescription of the SEG.

    Returns
    -------
    dict
        ``segments`` (label -> segment number), ``frames`` (written frames), ``path``.

    Raises
    ------
    InputError
        Label map and series disagree in size, or no label at all.
    """
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    import esoct

    arr = np.asarray(labels.array)
    sources = [sop_uids_from_file_meta(pydicom.dcmread(f, stop_before_pixels=True), f) for f in source_files]
    if len(sources) != arr.shape[0] or any((int(s.Rows), int(s.Columns)) != arr.shape[1:] for s in sources):
        raise InputError(f"label map {arr.shape} does not match the DICOM series ({len(sources)} slices of "
                         f"{sources[0].Rows} x {sources[0].Columns})", Path(source_files[0]).parent)
    present = [int(v) for v in np.unique(arr) if v != 0]
    if not present:
        raise InputError("the segmentation is empty: no DICOM SEG written")
    if not keep_phi:
        sources = [deidentify(s, case_id) for s in sources]
    onehot = np.stack([arr == v for v in present], axis=-1)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=onehot, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_descriptions(present, esoct.__version__),
        series_instance_uid=generate_uid(), series_number=9901, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="esoct", manufacturer_model_name="esoct predict", software_versions=esoct.__version__,
        device_serial_number="0", series_description=series_description,
    )
    if not keep_phi:
        deidentify(seg, case_id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return {"path": path, "segments": {int(v): i for i, v in enumerate(present, start=1)},
            "frames": int(seg.NumberOfFrames)}


def read_dicom_seg_labels(path: str | Path, source_files: list[str | Path]) -> np.ndarray:
    """Label map ``(z, y, x)`` of a SEG written by :func:`write_dicom_seg`, in ``source_files`` order.

    Segment labels are mapped back to esoct label values (tumour 1 ... pericardium 5).
    """
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(path)
    uids = [str(sop_uids_from_file_meta(pydicom.dcmread(f, stop_before_pixels=True), f).SOPInstanceUID)
            for f in source_files]
    by_name = {name: label for label, (name, _, _) in SEGMENTS.items()}
    numbers = list(seg.segment_numbers)
    planes = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers, ignore_spatial_locations=True,
                                               assert_missing_frames_are_empty=True)
    out = np.zeros(planes.shape[:3], dtype=np.uint8)
    for i, n in enumerate(numbers):
        label = by_name.get(seg.get_segment_description(n).segment_label, n)
        out[planes[..., i] > 0] = label
    return out
