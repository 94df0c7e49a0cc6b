"""Model bundles: `esoct export` writes one from a study directory, `esoct predict` runs it on one patient.

* :func:`esoct.bundle.export.export_bundle` -- study directory -> bundle directory with ``bundle.json``
* :func:`esoct.bundle.manifest.load_bundle` -- open a bundle, checking its esoct version and checksums
* :func:`esoct.bundle.predict.predict_case` -- run a bundle on one CT (NIfTI/NRRD or DICOM folder)
* :func:`esoct.bundle.dicom_seg.write_dicom_seg` -- DICOM SEG of a label map, pseudonymised by default

See ``docs/predict.md``.
"""
