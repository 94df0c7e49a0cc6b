"""`esoct export` and `esoct predict`: the sub-commands (registered by esoct.cli)."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_PARTIAL = 0, 1


def _cmd_export(args) -> int:
    from esoct.bundle.export import export_bundle

    manifest = export_bundle(args.study_dir, args.out, force=args.force)
    print(f"bundle written to {args.out}: {', '.join(manifest['components'])} "
          f"({len(manifest['files'])} files, checksum {manifest['checksum'][:16]}...)")
    return EXIT_OK


def _print_summary(doc: dict, out) -> None:
    for name, res in doc["components"].items():
        status = res.get("status")
        detail = ""
        if status == "ok":
            if name == "tstage":
                detail = "; ".join(f"{k}: {v['predicted']} ({max(v['probabilities'].values()):.2f})"
                                   for k, v in res["models"].items())
            elif name == "tstage4":
                detail = f"{res['predicted']} ({max(res['probabilities'].values()):.2f})"
            elif name == "lnm":
                detail = f"{res['predicted']} (p = {res['probability']:.2f})"
            elif name == "survival":
                detail = f"{res['risk_group']} (risk score {res['risk_score']:.3g})"
            elif name == "segmentation":
                detail = ", ".join(res["files"])
        elif res.get("reason"):
            detail = res["reason"]
        print(f"{name}: {status}{': ' + detail if detail else ''}")
    print(f"case {doc['case_id']}: results in {out / 'prediction.json'}")


def _problems(doc: dict) -> str:
    """The components that did not run, grouped by reason, in one sentence."""
    by_reason: dict[str, list[str]] = {}
    for name, res in doc["components"].items():
        if res.get("status") not in ("ok", "not in bundle"):
            why = res.get("status") if res.get("status") == "no tumour found" else res.get("reason", res.get("status"))
            by_reason.setdefault(str(why), []).append(name)
    dicom_seg = doc["components"].get("segmentation", {}).get("dicom_seg", {})
    if dicom_seg.get("status") == "failed":
        by_reason.setdefault(f"DICOM SEG not written: {dicom_seg.get('reason')}", []).append("segmentation")
    return "; ".join(f"{why} ({', '.join(names)})" for why, names in by_reason.items())


def _cmd_predict(args) -> int:
    from pathlib import Path

    from esoct.bundle.manifest import load_bundle
    from esoct.bundle.predict import predict_case

    bundle = load_bundle(args.bundle, allow_version_mismatch=args.allow_version_mismatch)
    doc = predict_case(bundle, args.input, args.out, series_uid=args.series, mask=args.mask, keep_phi=args.keep_phi,
                       gradcam=not args.no_gradcam, progress=not args.quiet)
    _print_summary(doc, Path(args.out))
    if doc["exit_code"] != EXIT_OK:
        print(f"esoct predict: incomplete: {_problems(doc)}; what was computed is in {args.out}", file=sys.stderr)
    return int(doc["exit_code"])


def register(sub) -> None:
    """Add the ``export`` and ``predict`` sub-commands to the ``esoct`` parser's sub-parsers."""
    s = sub.add_parser("export", help="write a model bundle from a study directory",
                       description="Copy a study directory's trained models (segmentation, T stage, 4-class T stage, "
                                   "LNM, survival) into one bundle directory with bundle.json: settings, package "
                                   "versions and sha256 checksums. No patient data (cohort.csv) is copied.")
    s.add_argument("study_dir", help="study directory (written by esoct run)")
    s.add_argument("--out", required=True, help="bundle directory to create")
    s.add_argument("--force", action="store_true", help="replace an existing bundle")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("predict", help="run a model bundle on one new patient",
                       description="Segmentation (NIfTI, and DICOM SEG for DICOM input), T-stage probabilities, "
                                   "LNM probability, survival risk group and Grad-CAM PNGs of one CT, with a JSON "
                                   "summary. Exit code 0 all done, 1 some component could not run (e.g. no tumour), "
                                   "2 bad input. No patient-identifying DICOM field is written unless --keep-phi.")
    s.add_argument("--bundle", required=True, help="bundle directory (esoct export)")
    s.add_argument("--input", required=True, help="CT: NIfTI/NRRD file or DICOM folder")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--series", help="SeriesInstanceUID to read when the folder holds several series")
    s.add_argument("--mask", help="label map on the CT grid to use instead of the bundle's segmenter")
    s.add_argument("--keep-phi", action="store_true",
                   help="keep patient fields in the DICOM SEG and the input path/SeriesInstanceUID in the JSON")
    s.add_argument("--no-gradcam", action="store_true", help="no Grad-CAM PNGs")
    s.add_argument("--allow-version-mismatch", action="store_true",
                   help="accept a bundle made by another esoct version (at your own risk)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_predict)
