"""``results/<task>/report.json``: what the report shows of a task (title, text, tables, figures).

Each task pipeline knows which of its files a paper would print; it says so here, and
:mod:`esoct.report.html` renders whatever is listed (files that do not exist are left out).
"""

from __future__ import annotations

import json
from pathlib import Path


def write_report_spec(res_dir: str | Path, title: str, order: int, text: str, tables: list[tuple[str, str]],
                      figures: list[tuple[str, str, str]]) -> Path:
    """Write ``report.json`` of one task.

    Parameters
    ----------
    res_dir : str or Path
        ``results/<task>/``.
    title : str
        Section heading.
    order : int
        Position of the section in the report.
    text : str
        One paragraph saying what was done (plain text).
    tables : list of (file, caption)
        CSV files relative to ``res_dir``.
    figures : list of (file, caption, kind)
        PNG files relative to ``res_dir``; ``kind`` names the figure type (roc, km, ...).

    Returns
    -------
    Path
    """
    res_dir = Path(res_dir)
    doc = {"title": title, "order": int(order), "text": text,
           "tables": [{"file": f, "caption": c} for f, c in tables if (res_dir / f).is_file()],
           "figures": [{"file": f, "caption": c, "kind": k} for f, c, k in figures if (res_dir / f).is_file()]}
    path = res_dir / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path
