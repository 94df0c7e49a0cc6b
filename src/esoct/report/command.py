"""`esoct report` and `esoct view`: the sub-commands (registered by esoct.cli)."""

from __future__ import annotations

from pathlib import Path


def _cmd_report(args) -> int:
    from esoct.report.html import write_report

    path = write_report(args.study_dir, args.out)
    print(f"report written to {path.resolve()}")
    return 0


def _cmd_view(args) -> int:
    from esoct.report.volume_viewer import write_view

    out = args.out or f"{Path(args.scan).name.split('.')[0]}_view.html"
    path = write_view(args.scan, out, labels=args.labels or [], names=args.names or [], gradcam=args.gradcam,
                      max_inplane=args.max_size)
    print(f"viewer written to {path.resolve()} (open it in a browser; it needs no network)")
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0


def register(sub) -> None:
    """Add the ``report`` and ``view`` sub-commands to the ``esoct`` parser's sub-parsers."""
    s = sub.add_parser("report", help="write the self-contained HTML report of a study directory",
                       description="Write one HTML file (no network needed to open it) with the cohort table, every "
                                   "task's tables and figures, the case viewer and the methods; failed tasks are "
                                   "marked. Exit code 2 when the folder is not a study directory.")
    s.add_argument("study_dir", help="study directory left by esoct run (holds study.yaml)")
    s.add_argument("--out", default=None, help="report file (default STUDY_DIR/report.html)")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser("view", help="write a whole-volume viewer (one offline HTML file) of a CT and its label maps",
                       description="Axial, coronal and sagittal planes of a CT (NiiVue, inlined) with each label map as "
                                   "outlines (the first, the reference, in green; the others in red, blue, violet, "
                                   "gold) and an optional Grad-CAM heat map; every layer can be switched off.",
                       epilog="example: esoct view ct.nii.gz --labels reference.nii.gz predicted.nii.gz "
                              "--names reference cascade --out case.html")
    s.add_argument("scan", help="CT: NIfTI/NRRD/MHA file or DICOM folder")
    s.add_argument("--labels", nargs="+", default=None, help="label maps, reference first")
    s.add_argument("--names", nargs="+", default=None, help="legend names of the label maps")
    s.add_argument("--gradcam", default=None, help="heat map in [0, 1] (NIfTI), e.g. a 3D Grad-CAM")
    s.add_argument("--out", default=None, help="HTML file (default SCAN_view.html)")
    s.add_argument("--max-size", type=int, default=512, help="largest in-plane size shown, voxels (default 512)")
    s.add_argument("--open", action="store_true", help="open it in the default browser")
    s.set_defaults(func=_cmd_view)

