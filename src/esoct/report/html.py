"""The study report: one self-contained HTML file (no network, figures and viewer inlined) per study directory."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from esoct.errors import InputError
from esoct.report.methods import methods_html
from esoct.report.viewer import MAX_CASES, VIEWER_CSS, VIEWER_JS, encode_case, load_case, viewer_html
from esoct.report.volume_viewer import VIEWER_CSS as VOLUME_VIEWER_CSS

log = logging.getLogger("esoct")

#: Rows of a CSV table shown before it is cut (with a note).
MAX_TABLE_ROWS = 60

#: Lines of a failed task's error.txt shown in the report.
ERROR_LINES = 20

#: Cohort variables described in the cohort table, in this order (those present).
COHORT_VARIABLES = ("age", "sex", "location", "stage", "cT", "cN", "pT", "lnm", "os_months", "os_event")

#: Continuous cohort variables (the rest are summarised per level).
CONTINUOUS = ("age", "os_months")

PAGE_CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #222; background: #fff;
  max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 4em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.35em; border-bottom: 2px solid #0072B2; padding-bottom: 0.15em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
h4 { font-size: 1em; margin: 1em 0 0.3em; }
.esoct-meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.88em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
thead th { background: #eef3f8; }
tbody tr:nth-child(even) { background: #f8f8f8; }
.esoct-table-wrap { overflow-x: auto; max-width: 100%; }
.esoct-caption { font-weight: bold; margin: 0.8em 0 0.2em; }
.esoct-note { color: #666; font-size: 0.85em; }
figure.esoct-figure-box { margin: 1em 0; break-inside: avoid; }
/* single-panel figures two per row; galleries and multi-panel figures keep the full width */
figure.esoct-figure-box:is([data-kind="roc"], [data-kind="confusion"], [data-kind="calibration"],
  [data-kind="decision_curve"], [data-kind="km"], [data-kind="td_cindex"], [data-kind="survshap"],
  [data-kind="tsne"]) { display: inline-block; vertical-align: top; width: calc(50% - 1em); margin-right: 1em; }
img.esoct-figure { max-width: min(100%, 820px); height: auto; border: 1px solid #eee; }
figure.esoct-figure-box figcaption { font-size: 0.9em; color: #444; }
.esoct-status-ok { color: #1a7f37; font-weight: bold; }
.esoct-status-failed { color: #b42318; font-weight: bold; }
section.esoct-failed { border-left: 4px solid #b42318; padding-left: 1em; background: #fff6f5; }
pre.esoct-error { background: #fbeaea; padding: 0.6em; overflow-x: auto; font-size: 0.8em; white-space: pre-wrap; }
.esoct-settings { font-size: 0.9em; }
nav.esoct-toc ul { columns: 2; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; } nav.esoct-toc { display: none; }
  .esoct-table-wrap { overflow: visible; }
}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the study file: {exc}", path) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"the study file must hold a mapping of keys, found a {type(data).__name__}", path)
    return data


def _read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file is absent or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _scrub(text: str, study_dir: Path) -> str:
    """Remove the absolute parts of paths: the study directory becomes ``<study>``, the home ``~``."""
    for root, short in ((study_dir.resolve(), "<study>"), (study_dir.absolute(), "<study>"), (Path.home(), "~")):
        if root.is_absolute() and len(root.parts) > 1:
            text = text.replace(str(root), short)
    return text


def _fmt_number(value: float) -> str:
    """A float for a table cell: four significant digits, no exponent for ordinary magnitudes."""
    if not np.isfinite(value):
        return ""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:.1f}"
    return f"{value:.4g}"


def csv_table_html(path: Path, caption: str = "", max_rows: int = MAX_TABLE_ROWS) -> str:
    """A CSV file as an escaped HTML table, cut after ``max_rows`` rows with a note.

    Parameters
    ----------
    path : Path
        The CSV file.
    caption : str
        Shown above the table.
    max_rows : int
        Rows shown at most.

    Returns
    -------
    str
    """
    head = f'<p class="esoct-caption">{_esc(caption)}</p>' if caption else ""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return f'{head}<p class="esoct-note">table {_esc(path.name)} could not be read: {_esc(exc)}</p>'
    note = ""
    if len(df) > max_rows:
        note = f'<p class="esoct-note">First {max_rows} of {len(df)} rows; the full table is {_esc(path.name)}.</p>'
        df = df.head(max_rows)
    body = df.to_html(index=False, escape=True, border=0, classes="esoct-table", na_rep="",
                      float_format=_fmt_number)
    return f'{head}<div class="esoct-table-wrap">{body}</div>{note}'


def figure_html(path: Path, caption: str = "", kind: str = "") -> str:
    """A PNG figure inlined as a ``data:`` URI with its caption."""
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f'<p class="esoct-note">figure {_esc(path.name)} is missing.</p>'
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return (f'<figure class="esoct-figure-box" data-kind="{_esc(kind)}"><img class="esoct-figure" '
            f'alt="{_esc(caption or path.name)}" src="data:image/png;base64,{data}">{cap}</figure>')


def _inside(base: Path, relative: str) -> Path | None:
    """``base / relative`` when it stays inside ``base``, else None."""
    path = (base / str(relative)).resolve()
    try:
        path.relative_to(base.resolve())
    except ValueError:
        return None
    return path


def _task_status(run: dict | None) -> dict:
    tasks = (run or {}).get("tasks") or {}
    return {str(k): v for k, v in tasks.items() if isinstance(v, dict)}


def _section_for(folder: Path, status: dict, study_dir: Path) -> tuple[float, str, str, str] | None:
    """``(order, title, task, html)`` of one results folder, or None when it holds nothing to show."""
    spec = _read_json(folder / "report.json") or {}
    error = folder / "error.txt"
    run_status = status.get(folder.name, {}).get("status")
    failed = error.is_file() or (run_status is not None and run_status != "ok")
    csvs = sorted(folder.glob("*.csv"))
    pngs = sorted((folder / "figures").glob("*.png"))
    if not spec and not failed and not csvs and not pngs:
        return None
    title = str(spec.get("title") or folder.name)
    order = spec.get("order", 1000)
    try:
        order = float(order)
    except (TypeError, ValueError):
        order = 1000.0
    sid = f"task-{folder.name}"
    parts = [f'<section class="esoct-task{" esoct-failed" if failed else ""}" id="{_esc(sid)}" '
             f'data-task="{_esc(folder.name)}" data-status="{"failed" if failed else "ok"}">',
             f"<h2>{_esc(title)}</h2>"]
    if failed:
        parts.append(_failure_html(error, run_status, study_dir))
    if spec.get("text"):
        parts.append(f"<p>{_esc(spec['text'])}</p>")
    if spec:
        tables = spec.get("tables") or []
        figures = spec.get("figures") or []
    else:
        tables = [{"file": p.name, "caption": p.name} for p in csvs]
        figures = [{"file": f"figures/{p.name}", "caption": p.name} for p in pngs]
    render = {"table": lambda path, item: csv_table_html(path, str(item.get("caption", ""))),
              "figure": lambda path, item: figure_html(path, str(item.get("caption", "")), str(item.get("kind", "")))}
    for what, items in (("table", tables), ("figure", figures)):
        for item in items:
            if not isinstance(item, dict) or "file" not in item:
                continue
            path = _inside(folder, item["file"])
            if path is None or not path.is_file():
                parts.append(f'<p class="esoct-note">{what} {_esc(item["file"])} is missing.</p>')
            else:
                parts.append(render[what](path, item))
    parts.append("</section>")
    return order, title, folder.name, "\n".join(parts)


def _failure_html(error: Path, run_status: str | None, study_dir: Path) -> str:
    """The failure notice of a task: the error's last line and its first lines."""
    lines = []
    if error.is_file():
        try:
            lines = error.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
    summary = run_status if run_status and run_status != "ok" else next(
        (line for line in reversed(lines) if line.strip()), "the task failed")
    shown = "\n".join(lines[:ERROR_LINES]) + ("\n..." if len(lines) > ERROR_LINES else "")
    out = (f'<p class="esoct-status-failed">FAILED: {_esc(_scrub(summary.splitlines()[0] if summary else "", study_dir))}'
           "</p><p>This task did not complete; its results below (if any) are partial.</p>")
    if shown.strip():
        out += f'<pre class="esoct-error">{_esc(_scrub(shown, study_dir))}</pre>'
    return out


def _missing_task_html(task: str, info: dict, study_dir: Path) -> str:
    """Section of a task that run.json lists as failed but that left no results folder."""
    status = _scrub(str(info.get("status", "")), study_dir)
    return (f'<section class="esoct-task esoct-failed" id="task-{_esc(task)}" data-task="{_esc(task)}" '
            f'data-status="failed"><h2>{_esc(task)}</h2><p class="esoct-status-failed">FAILED: {_esc(status)}</p>'
            "</section>")


def _header_html(settings: dict, run: dict | None, study_dir: Path) -> str:
    from esoct import __version__

    name = settings.get("name") or study_dir.name
    version = (run or {}).get("esoct_version") or __version__
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    when = [f"report written {now}", f"esoct {version}"]
    if run and run.get("started"):
        when.append(f"run started {run['started']}")
    if run and run.get("finished"):
        when.append(f"finished {run['finished']}")
    out = [f"<header><h1>{_esc(name)}</h1><p class='esoct-meta'>{_esc(' · '.join(when))}</p>"]
    status = _task_status(run)
    if status:
        rows = []
        for task, info in status.items():
            state = str(info.get("status", ""))
            ok = state == "ok"
            label = "ok" if ok else "FAILED: " + _scrub(state.splitlines()[0] if state else "", study_dir)
            seconds = info.get("seconds")
            secs = f"{float(seconds):.0f}" if isinstance(seconds, (int, float)) else ""
            rows.append(f'<tr data-task="{_esc(task)}"><td><a href="#task-{_esc(task)}">{_esc(task)}</a></td>'
                        f'<td class="esoct-status-{"ok" if ok else "failed"}">{_esc(label)}</td><td>{secs}</td></tr>')
        n_failed = sum(str(i.get("status")) != "ok" for i in status.values())
        summary = (f"{len(status)} task(s): {len(status) - n_failed} completed, {n_failed} failed."
                   if n_failed else f"{len(status)} task(s), all completed.")
        out.append(f"<p>{_esc(summary)}</p><table class='esoct-table esoct-status'><thead><tr><th>task</th>"
                   f"<th>status</th><th>time (s)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        out.append("<p class='esoct-note'>No results/run.json: the task status is unknown.</p>")
    out.append("</header>")
    return "\n".join(out)


def _cohort_html(cohort: pd.DataFrame | None, settings: dict) -> str:
    """The cohort table (Table 1): training vs test centres, or per centre, with p-values."""
    from esoct.evaluate.table1 import describe_cohort, table1_to_html

    head = '<section id="cohort"><h2>Cohort</h2>'
    if cohort is None:
        return head + "<p class='esoct-note'>No cohort.csv in the study directory.</p></section>"
    variables = [v for v in COHORT_VARIABLES if v in cohort.columns]
    df = cohort[variables].copy()
    test = [str(c) for c in ((settings.get("cohort") or {}).get("test_centers") or [])]
    group, order, text = None, None, "The whole cohort."
    if "center" in cohort.columns:
        centers = cohort["center"].astype(str)
        if test and centers.isin(test).any() and (~centers.isin(test)).any():
            train = sorted(set(centers) - set(test))
            train_name = f"training ({', '.join(train)})"
            test_name = f"test ({', '.join(sorted(set(test) & set(centers)))})"
            df["split"] = np.where(centers.isin(test), test_name, train_name)
            group, order = "split", [train_name, test_name]
            text = "Training centres against the external test centres."
        elif centers.nunique() > 1:
            df["centre"] = "centre " + centers
            group = "centre"
            text = "Patients per centre."
    continuous = [c for c in CONTINUOUS if c in df and pd.api.types.is_numeric_dtype(df[c])]
    try:
        table = describe_cohort(df, group=group, continuous=continuous, variables=variables, group_order=order)
    except InputError as exc:
        return head + f"<p class='esoct-note'>The cohort table could not be made: {_esc(exc)}</p></section>"
    note = "Continuous variables as mean (SD) or median (Q1, Q3); categorical as n (%)."
    if group is not None:
        note += (" p-values: Welch t-test or Mann-Whitney U (ANOVA or Kruskal-Wallis for more groups), chi-square or "
                 "Fisher's exact test; see the 'test used' column.")
    note = f"<p class='esoct-note'>{_esc(note)}</p>"
    return (head + f"<p>{_esc(text)} {len(cohort)} patients.</p><div class='esoct-table-wrap'>"
            + table1_to_html(table) + "</div>" + note + "</section>")


def _viewer_section(study_dir: Path) -> str:
    """Case viewer panels for up to :data:`MAX_CASES` files of ``results/viewer``."""
    files = sorted((study_dir / "results" / "viewer").glob("*.npz"))
    if not files:
        return ""
    panels = []
    for path in files[:MAX_CASES]:
        try:
            case = load_case(path)
            encoded = encode_case(case["image"], case["labels"], case["spacing"], case["gradcam"], case["title"])
        except InputError as exc:
            panels.append(f"<p class='esoct-note'>{_esc(_scrub(str(exc), study_dir))}</p>")
            continue
        panels.append(viewer_html(encoded, len(panels)))
    more = (f"<p class='esoct-note'>{len(files) - MAX_CASES} more case file(s) in results/viewer are not shown.</p>"
            if len(files) > MAX_CASES else "")
    whole = _whole_volume_viewers(study_dir, files[:MAX_CASES])
    return ('<section id="viewer"><h2>Case viewer</h2>' + whole +
            '<h3>KRT crops</h3><p>Axial slices (window 40/400 HU). Scroll with the mouse '
            "wheel over the image, the slider or the arrow keys; the check boxes show or hide the label overlays and "
            "the Grad-CAM map (red: high attention).</p>"
            f'<div class="esoct-viewers">{"".join(panels)}</div>{more}</section>')


def _whole_volume_viewers(study_dir: Path, files: list[Path]) -> str:
    """NiiVue viewers of the cases' whole CTs: reference outlines (green), the segmentation task's prediction
    (red, test-centre patients) and the KRT Grad-CAM at its place; empty when no case has ``<id>_ct.nii.gz``."""
    from esoct.io.imageio import read_image
    from esoct.report.volume_viewer import VIEWER_INIT_JS, niivue_script, viewer_figure, viewer_layers

    viewer_dir = study_dir / "results" / "viewer"
    figures = []
    for path in files:
        pid = path.stem
        ct = viewer_dir / f"{pid}_ct.nii.gz"
        if not ct.is_file():
            continue
        try:
            labels = [("reference", read_image(viewer_dir / f"{pid}_reference.nii.gz", patient=pid))]
            predicted = study_dir / "results" / "segmentation" / "labels" / f"{pid}_pre_seg.nii.gz"
            if predicted.is_file():
                labels.append(("predicted (segmentation task)", read_image(predicted, patient=pid)))
            cam = viewer_dir / f"{pid}_gradcam.nii.gz"
            heat = read_image(cam, patient=pid) if cam.is_file() else None
            layers = viewer_layers(read_image(ct, patient=pid), labels, heat, heat_name="Grad-CAM (KRT)", max_inplane=256)
            title = str(load_case(path)["title"])
            figures.append(viewer_figure(layers, title, f"esoct-niivue-{len(figures)}"))
        except InputError as exc:
            figures.append(f"<p class='esoct-note'>{_esc(_scrub(str(exc), study_dir))}</p>")
    if not any("esoct-niivue" in f for f in figures):
        return "".join(figures)
    return ("<h3>Whole volume</h3><p>Each case's whole CT in three planes (NiiVue, inlined; no network): the reference "
            "label map's outlines in green, the segmentation task's prediction in red (test-centre patients), the KRT "
            "classifier's Grad-CAM in warm colours at the crop's place; switch layers with the check boxes.</p>"
            + "".join(figures) + niivue_script() + f"<script>{VIEWER_INIT_JS}</script>")


def build_report(study_dir: str | Path) -> str:
    """The report of a study directory as one HTML string.

    Parameters
    ----------
    study_dir : str or Path
        Study directory left by ``esoct run``: ``study.yaml``, ``cohort.csv``, ``results/run.json``,
        ``results/<task>/`` (``report.json``, CSVs, ``figures/*.png``, ``error.txt`` on failure) and
        ``results/viewer/<patient_id>.npz``.

    Returns
    -------
    str
        A self-contained HTML document: inline CSS and script, figures as ``data:`` URIs, no
        external resource.

    Raises
    ------
    InputError
        When the folder or its ``study.yaml`` is missing or unreadable.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise InputError("study directory not found", study_dir)
    if not (study_dir / "study.yaml").is_file():
        raise InputError("not a study directory: study.yaml is missing", study_dir)
    settings = _read_yaml(study_dir / "study.yaml")
    full = study_dir / "results" / "settings.json"  # the validated settings, defaults filled in (esoct run)
    if full.is_file():
        try:
            settings = json.loads(full.read_text())
        except (OSError, ValueError):
            pass
    cohort = None
    if (study_dir / "cohort.csv").is_file():
        try:
            cohort = pd.read_csv(study_dir / "cohort.csv", dtype={"patient_id": str, "center": str})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            log.warning("report: cannot read cohort.csv: %s", exc)
    results = study_dir / "results"
    run = _read_json(results / "run.json")
    status = _task_status(run)
    sections = []
    if results.is_dir():
        for folder in sorted(p for p in results.iterdir() if p.is_dir() and p.name != "viewer"):
            section = _section_for(folder, status, study_dir)
            if section is not None:
                sections.append(section)
    shown = {s[2] for s in sections}
    for task, info in status.items():
        if task not in shown and str(info.get("status")) != "ok":
            sections.append((2000.0, task, task, _missing_task_html(task, info, study_dir)))
    sections.sort(key=lambda s: (s[0], s[1]))
    name = settings.get("name") or study_dir.name
    toc = "".join(f'<li><a href="#{a}">{_esc(t)}</a></li>' for a, t in
                  [("cohort", "Cohort"), *[(f"task-{_esc(s[2])}", s[1]) for s in sections]])
    viewer = _viewer_section(study_dir)
    if viewer:
        toc += '<li><a href="#viewer">Case viewer</a></li>'
    toc += '<li><a href="#methods">Methods</a></li>'
    body = "\n".join([
        _header_html(settings, run, study_dir),
        f'<nav class="esoct-toc"><h2>Contents</h2><ul>{toc}</ul></nav>',
        _cohort_html(cohort, settings),
        *[s[3] for s in sections],
        viewer,
        methods_html(settings, cohort, study_dir),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(name)}: esoct report</title><style>{PAGE_CSS}{VIEWER_CSS}{VOLUME_VIEWER_CSS}</style></head>\n"
            f"<body>\n{body}\n<script>{VIEWER_JS}</script>\n</body></html>\n")


def write_report(study_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of a study directory.

    Parameters
    ----------
    study_dir : str or Path
        Study directory left by ``esoct run`` (see :func:`build_report`).
    out : str or Path, optional
        Report file (default ``<study_dir>/report.html``); its folder is created.

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    InputError
        When the folder or its ``study.yaml`` is missing or unreadable.
    """
    text = build_report(study_dir)
    path = Path(study_dir) / "report.html" if out is None else Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
