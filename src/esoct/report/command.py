"""`esoct report`: the sub-command (registered by esoct.cli)."""

from __future__ import annotations


def _cmd_report(args) -> int:
    from esoct.report.html import write_report

    path = write_report(args.study_dir, args.out)
    print(f"report written to {path.resolve()}")
    return 0


def register(sub) -> None:
    """Add the ``report`` sub-command to the ``esoct`` parser's sub-parsers."""
    s = sub.add_parser("report", help="write the self-contained HTML report of a study directory",
                       description="Write one HTML file (no network needed to open it) with the cohort table, every "
                                   "task's tables and figures, the case viewer and the methods; failed tasks are "
                                   "marked. Exit code 2 when the folder is not a study directory.")
    s.add_argument("study_dir", help="study directory left by esoct run (holds study.yaml)")
    s.add_argument("--out", default=None, help="report file (default STUDY_DIR/report.html)")
    s.set_defaults(func=_cmd_report)
