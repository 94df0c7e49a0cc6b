"""The ``esoct`` command line: info, check, phantom, roi and demo.

Exit codes: 0 success; 1 the check found problems or some patients failed;
2 bad input (missing file, unreadable scan, bad arguments).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from pathlib import Path

from esoct.errors import EsoctError, Terminated

EXIT_OK, EXIT_PROBLEMS, EXIT_BAD_INPUT = 0, 1, 2
#: Shell conventions: 128 + SIGINT (2), 128 + SIGTERM (15).
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _cmd_info(args) -> int:
    from esoct.io.inspect import describe_scan, format_description

    desc = describe_scan(args.path, series_uid=args.series)
    print(json.dumps(desc, indent=2) if args.json else format_description(desc))
    return EXIT_OK


def _cmd_check(args) -> int:
    from esoct.io.manifest import check_manifest

    report = check_manifest(args.manifest, check_images=not args.no_images, progress=not args.quiet)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _cmd_phantom(args) -> int:
    from esoct.phantom.cohort import generate_cohort

    truth = generate_cohort(
        args.out, args.patients, seed=args.seed, dicom=args.dicom, full_res=args.full_res,
        workers=args.workers, progress=not args.quiet,
    )
    s = truth["summary"]
    print(
        f"wrote {truth['n_patients']} patients to {args.out}: manifest.csv, truth.json, images/, labels/, layers/, anatomy/"
        + (", dicom/" if args.dicom else "")
    )
    print(f"T stages {s['t_stage_counts']}, centres {s['center_counts']}, censoring {s['censoring_rate']}, "
          f"oracle C-index {s['oracle_c_index']}")
    if truth["failed"]:
        for f in truth["failed"]:
            print(f"failed: {f['patient_id']}: {f['error']}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _cmd_roi(args) -> int:
    from esoct.study.roi_extraction import extract_cohort_rois

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    run = extract_cohort_rois(args.manifest, args.out, kinds=kinds, timepoint=args.timepoint,
                              krt_spacing=(args.krt_spacing,) * 3, progress=not args.quiet)
    print(f"ROIs for {len(run.results)} patients written to {args.out} ({len(run.skipped)} already done, "
          f"{len(run.failures)} failed)")
    for reason in run.failures.values():
        print(f"failed: {reason}", file=sys.stderr)
    return EXIT_OK if run.ok else EXIT_PROBLEMS


def _cmd_import(args) -> int:
    from esoct.io.dicom_import import import_dicom_tree

    report = import_dicom_tree(args.dicom_root, args.out, roi_map=args.roi_map, clinical=args.clinical,
                               clinical_id_column=args.clinical_id_column, series_rule=args.series_rule,
                               key=args.key, progress=not args.quiet)
    print(report.to_text())
    if report.key.resolve().parent == Path(args.out).resolve():
        print(f"note: {report.key} links pseudonyms to PatientIDs: move it out of the cohort folder before sharing it",
              file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _cmd_demo(args) -> int:
    from esoct.study.demo import run_demo

    return run_demo(args.out, n_patients=args.patients, seed=args.seed, progress=not args.quiet)


def _cmd_init(args) -> int:
    from esoct.study.config import write_example

    path = write_example(args.path, overwrite=args.force)
    print(f"example study file written to {path}; edit cohort.manifest, then: esoct run {path} --out STUDY_DIR")
    return EXIT_OK


def _cmd_run(args) -> int:
    from esoct.study.config import load_study
    from esoct.study.run import run_study

    config = load_study(args.study)
    if args.check:
        print(f"{args.study}: valid; tasks: {', '.join(config.enabled_tasks) or 'none'}")
        if config.enabled_tasks:
            from esoct.study.estimate import estimate_study, format_estimates

            print(format_estimates(*estimate_study(config)))
        return EXIT_OK
    run = run_study(config, args.out, progress=not args.quiet, scheduler=args.scheduler)
    for task, status in run.status.items():
        failed = run.failed_patients.get(task) or []
        note = f"; {len(failed)} patient(s) failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}" if failed else ""
        print(f"{task}: {status} ({run.seconds[task]:.0f} s{note})")
    if args.report:
        from esoct.report.html import write_report

        print(f"report: {write_report(run.out)}")
    print(f"study directory: {run.out}")
    return EXIT_OK if run.ok else EXIT_PROBLEMS


#: Modules that add their own sub-commands through ``register(subparsers)``.
_COMMAND_MODULES = ("esoct.report.command", "esoct.bundle.command")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``esoct`` program (one sub-command per task)."""
    p = argparse.ArgumentParser(prog="esoct", description="CT-based esophageal cancer analysis toolkit.")
    p.add_argument("--version", action="version", version=f"esoct {__import__('esoct').__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("info", help="describe a CT scan (file or DICOM folder)",
                       description="Print size, spacing, origin, direction, HU range, series description and problems "
                                   "of a scan. No patient-identifying field is shown.")
    s.add_argument("path", help="NIfTI/NRRD file or DICOM folder")
    s.add_argument("--series", help="SeriesInstanceUID to read when a folder holds several series")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("check", help="validate a cohort manifest and every file it names",
                       description="Report every problem of a cohort manifest in one pass; exit code 0 only when clean.")
    s.add_argument("manifest", help="cohort manifest CSV")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--no-images", action="store_true", help="check the table only, do not open images")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_check)

    s = sub.add_parser("phantom", help="generate a synthetic thorax-CT cohort with known ground truth",
                       description="Write a phantom cohort: NIfTI per patient and time point, label maps, "
                                   "manifest.csv and truth.json (and DICOM with --dicom).")
    s.add_argument("--patients", type=int, default=20, help="number of patients (default 20)")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--dicom", action="store_true", help="also write each CT as a DICOM series")
    s.add_argument("--full-res", action="store_true", help="512 x 512 in-plane matrix (default: about 2 mm pixels)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_phantom)

    s = sub.add_parser("roi", help="extract the papers' ROIs for every patient of a manifest",
                       description="ResoLSTM-Depth slice sequences, 2.5D slabs and nn-TransEC KRT boxes; resumes and "
                                   "records failed patients in failures.csv.")
    s.add_argument("manifest", help="cohort manifest CSV")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--kinds", default="slices,slab,krt", help="comma-separated: slices, slab, krt (default all)")
    s.add_argument("--timepoint", choices=("pre", "post"), default="pre")
    s.add_argument("--krt-spacing", type=float, default=1.0, help="isotropic spacing of the KRT box, mm (default 1)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_roi)

    s = sub.add_parser("import", help="import a DICOM tree (CT + RTSTRUCT/SEG + clinical table) into a cohort",
                       description="Index a PACS export, choose the CT series per patient and time point, convert "
                                   "RTSTRUCT / DICOM SEG contours to label maps, join the clinical table and write "
                                   "manifest.csv with pseudonymous ids, a separate key file and import_report.json. "
                                   "Every skipped file and series and every problem is listed.")
    s.add_argument("dicom_root", help="top folder of the DICOM export")
    s.add_argument("--out", required=True, help="cohort folder to write")
    s.add_argument("--roi-map", default=None, help="YAML: esoct class -> ROI name patterns (default: built-in)")
    s.add_argument("--clinical", default=None, help="clinical CSV, one row per patient (OS, DFS, centre...)")
    s.add_argument("--clinical-id-column", default="patient_id", help="its column holding the DICOM PatientID")
    s.add_argument("--series-rule", default="most-slices",
                   help="CT series per study: most-slices (default), thinnest, or description:REGEX (e.g. venous)")
    s.add_argument("--key", default=None, help="pseudonym key file (default OUT/key.csv)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_import)

    s = sub.add_parser("demo", help="run the whole study on a built-in phantom cohort and write its report",
                       description="Generate a phantom cohort (three centres), check it, run every task of a "
                                   "CPU-sized study (centre C as the external test cohort) and write report.html.")
    s.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    s.add_argument("--patients", type=int, default=60, help="phantom patients (default 60; at least about 50 so that "
                                                             "every T stage has a patient per fold)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("init", help="write a commented example study file",
                       description="Write an example YAML study file with every key explained.")
    s.add_argument("path", nargs="?", default="study.yaml", help="where to write it (default study.yaml)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(func=_cmd_init)

    s = sub.add_parser("run", help="run the tasks of a study file into a study directory",
                       description="Validate a study file (every mistake reported at once), then run its enabled "
                                   "tasks; a failed task is recorded and the others still run.")
    s.add_argument("study", help="YAML study file (see esoct init)")
    s.add_argument("--out", default="study", help="study directory (default ./study)")
    s.add_argument("--check", action="store_true",
                   help="only validate the study file and the split, and print each task's estimated wall time")
    s.add_argument("--scheduler", default=None,
                   help='Dask scheduler for the cohort-wide stages: "local" (a cluster on this machine), an address '
                        "such as tcp://host:8786, or none (no Dask); default: the study file's scale.scheduler")
    s.add_argument("--report", action="store_true", help="also write report.html into the study directory")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_run)

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``esoct`` program; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="esoct: %(levelname)s: %(message)s")
    if not args.verbose:  # Dask's scheduler and nanny announce themselves at INFO; keep the terminal for esoct
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    previous = _sigterm_unwinds()
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:  # Ctrl-C (130) or SIGTERM (143): one line, no traceback
        print(f"esoct {args.command}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}; "
              "what was completed is kept and a rerun resumes", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except EsoctError as exc:
        print(f"esoct {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        print(f"esoct {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated()


def _sigterm_unwinds():
    """Make SIGTERM raise :class:`esoct.errors.Terminated` in the main thread; return the old handler.

    By default SIGTERM ends Python without unwinding, which leaves a process pool's workers
    running as orphans; raised as an exception it passes through the same clean-up as Ctrl-C.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":
    sys.exit(main())
