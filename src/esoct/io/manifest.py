"""The cohort manifest: a CSV with one row per patient, and its validation (``esoct check``).

Columns are described in DESIGN.md ("The cohort manifest"). Paths in the CSV are
relative to the manifest's folder unless they are absolute.

Row numbers
-----------
Every row number esoct reports is the line a user sees in a spreadsheet or a text
editor: the header is line 1 and the first patient is line 2. Blank lines count,
so the numbers stay right for a hand-edited file. ``Manifest.table`` is indexed
by that number (index name ``"row"``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.io.imageio import read_image
from esoct.io.volume import Volume

REQUIRED_COLUMNS = ("patient_id", "center", "image_pre", "mask_pre")
IMAGE_COLUMNS = ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2")
MASK_COLUMNS = tuple(c for c in IMAGE_COLUMNS if c.startswith("mask"))
CLINICAL_COLUMNS = ("age", "sex", "location", "cT", "cN", "cM", "stage", "pT", "lnm", "os_months", "os_event")
T_STAGES = ("T1", "T2", "T3", "T4")
SEXES = ("M", "F")
LOCATIONS = ("upper", "middle", "lower")
TUMOUR_LABEL = 1
MAX_AGE_YEARS = 120

_T_STAGE_ALIASES = {"T1A": "T1", "T1B": "T1", "T4A": "T4", "T4B": "T4"}


# -- the manifest -------------------------------------------------------------------
@dataclass
class Manifest:
    """A cohort manifest read from CSV.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per patient, every column of the CSV (extra ones kept), ``patient_id``
        as str. Indexed by the row's line number in the file (header = line 1).
    root : Path
        The manifest's folder; relative paths in the CSV are resolved against it.
    path : Path
        The manifest file.
    """

    table: pd.DataFrame
    root: Path
    path: Path

    @property
    def patients(self) -> list[str]:
        """Patient ids in file order (rows with an empty id left out)."""
        return [p for p in self.table["patient_id"] if not _is_empty(p)]

    def row(self, patient_id: str) -> pd.Series:
        """The manifest row of ``patient_id``.

        Raises
        ------
        InputError
            Unknown or duplicated patient id.
        """
        matches = self.table[self.table["patient_id"] == str(patient_id)]
        if len(matches) == 0:
            raise InputError("patient not in the manifest", self.path, str(patient_id))
        if len(matches) > 1:
            rows = ", ".join(str(r) for r in matches.index)
            raise InputError(f"patient_id appears on several rows ({rows})", self.path, str(patient_id))
        return matches.iloc[0]

    def resolve(self, row_or_patient_id: pd.Series | str, column: str) -> Path | None:
        """Absolute path of an image or mask cell.

        Parameters
        ----------
        row_or_patient_id : pandas.Series or str
            A row of :attr:`table` or a patient id.
        column : str
            A path column, e.g. ``"image_pre"``.

        Returns
        -------
        Path or None
            The path, made absolute against :attr:`root` when relative; None when the
            cell is empty or the column (one of ``IMAGE_COLUMNS``) is absent.
        """
        row = row_or_patient_id if isinstance(row_or_patient_id, pd.Series) else self.row(row_or_patient_id)
        if column not in row.index:
            if column in IMAGE_COLUMNS:
                return None
            raise KeyError(f"column {column!r} is not in the manifest {self.path}")
        path = _resolve_cell(self.root, row[column])
        series = _series_cell(row, column)
        if path is None or series is None:
            return path
        from esoct.io.series_view import series_view

        return series_view(path, series, patient=_patient(row))


def load_manifest(path: str | Path) -> Manifest:
    """Read a cohort manifest CSV.

    Parameters
    ----------
    path : str or Path
        The CSV file (UTF-8, a spreadsheet's byte-order mark is accepted).

    Returns
    -------
    Manifest

    Raises
    ------
    InputError
        The file is missing or not CSV, or a required column is missing (naming both).
    """
    path = Path(path).resolve()
    table = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(_missing_columns_message(missing, table), path)
    return Manifest(table=table, root=path.parent, path=path)


def normalise_t_stage(value) -> str:
    """Map a T stage written as ``T3``, ``t3``, ``T4b``, ``3`` or ``3.0`` to ``"T1"``..``"T4"``.

    Raises
    ------
    ValueError
        Anything else (``T0``, ``Tis``, ``TX``, ``T5``, empty...).
    """
    text = str(value).strip().upper()
    if re.fullmatch(r"[1-4](\.0)?", text):
        text = "T" + text[0]
    text = _T_STAGE_ALIASES.get(text, text)
    if text not in T_STAGES:
        raise ValueError(f"unknown T stage {value!r} (expected T1..T4, T1a/b, T4a/b or 1..4)")
    return text


# -- the check report -----------------------------------------------------------------
@dataclass
class Problem:
    """One thing wrong with a cohort.

    Attributes
    ----------
    row : int or None
        Line number in the CSV (header = 1, first patient = 2); None for problems
        of the whole file, such as a missing column.
    patient : str or None
        The pseudonymous patient id of that row, when it has one.
    column : str or None
        The manifest column concerned.
    file : str or None
        The image/mask file concerned (absolute path), or the manifest itself.
    message : str
        What is wrong, in plain words.
    severity : str
        ``"error"`` (the cohort cannot be used as is) or ``"warning"``.
    """

    row: int | None
    patient: str | None
    column: str | None
    file: str | None
    message: str
    severity: str = "error"

    def to_text(self) -> str:
        """One line: severity, row, patient, column and message."""
        where = [f"row {self.row}" if self.row is not None else "manifest"]
        if self.patient is not None:
            where.append(f"patient {self.patient}")
        if self.column is not None:
            where.append(self.column)
        return f"{self.severity}: {', '.join(where)}: {self.message}"


@dataclass
class CheckReport:
    """Every problem found in a cohort by :func:`check_manifest`.

    Attributes
    ----------
    problems : list of Problem
        Sorted by row; whole-file problems first.
    n_patients : int
        Number of data rows in the manifest.
    manifest : Path or None
        The checked file.
    """

    problems: list[Problem] = field(default_factory=list)
    n_patients: int = 0
    manifest: Path | None = None

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity ``"error"``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems of severity ``"warning"``."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        """``"N problems in M patients (E errors, W warnings)"`` or ``"cohort is clean: N patients"``."""
        if not self.problems:
            return f"cohort is clean: {_plural(self.n_patients, 'patient')}"
        n_rows = len({p.row for p in self.problems if p.row is not None})
        return (
            f"{_plural(len(self.problems), 'problem')} in {_plural(n_rows, 'patient')} "
            f"({_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')})"
        )

    def to_text(self) -> str:
        """One line per problem, then the summary line."""
        return "\n".join([p.to_text() for p in self.problems] + [self.summary()])

    def to_dict(self) -> dict:
        """JSON-ready dict: manifest, n_patients, ok, summary and the problems."""
        return {
            "manifest": None if self.manifest is None else str(self.manifest),
            "n_patients": self.n_patients,
            "ok": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "summary": self.summary(),
            "problems": [asdict(p) for p in self.problems],
        }


# -- checking a cohort ----------------------------------------------------------------
def check_manifest(path: str | Path, *, check_images: bool = True, progress: bool = False) -> CheckReport:
    """Check a whole cohort and report every problem found, never stopping at the first.

    Checks the columns (required ones present), each row's identifiers and clinical
    values (see DESIGN.md), that every image and mask exists and is readable, and that
    each mask is a label map on its image's grid (same size, spacing, origin and
    direction within 1e-3 mm) with at least one voxel > 0.

    A mask holding labels but no tumour voxel (label 1) is a *warning*, not an error:
    lymph-node-only or organ-only label maps are legitimate for some studies.
    ``image_post`` without ``mask_post`` is a warning too; everything else is an error.

    Parameters
    ----------
    path : str or Path
        The manifest CSV.
    check_images : bool
        Read every image and mask (slow for large cohorts: each file is read once).
        When False only the existence of the files is checked.
    progress : bool
        Show a progress bar (one step per patient) on stderr.

    Returns
    -------
    CheckReport

    Raises
    ------
    InputError
        The manifest itself is missing or not a CSV file.
    """
    path = Path(path).resolve()
    table = _read_table(path)
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        message = _missing_columns_message(missing, table)
        problems += [Problem(None, None, c, str(path), message) for c in missing]

    scanner = _Scanner(mask_paths=_mask_paths(table, path.parent)) if check_images else None
    first_row_of = {}
    rows = table.iterrows()
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, total=len(table), desc="checking cohort", unit="patient")
    for line, row in rows:
        patient = None if _is_empty(row.get("patient_id")) else str(row["patient_id"])
        problems += [
            Problem(line, patient, column, file, message, severity)
            for column, file, message, severity in _check_row(row, path.parent, first_row_of, scanner)
        ]
        if patient is not None:
            first_row_of.setdefault(patient, line)
    problems.sort(key=lambda p: -1 if p.row is None else p.row)
    return CheckReport(problems=problems, n_patients=len(table), manifest=path)


def _check_row(row: pd.Series, root: Path, first_row_of: dict, scanner: "_Scanner | None"):
    """Yield ``(column, file, message, severity)`` for everything wrong in one row."""
    yield from _check_identity(row, first_row_of)
    yield from _check_clinical(row)
    yield from _check_files(row, root, scanner)


def _check_identity(row: pd.Series, first_row_of: dict):
    for column in ("patient_id", "center"):
        if column in row.index and _is_empty(row[column]):
            yield column, None, f"{column} is empty", "error"
    patient = row.get("patient_id")
    if not _is_empty(patient) and str(patient) in first_row_of:
        yield "patient_id", None, f"duplicate patient_id {patient!r}: also on row {first_row_of[str(patient)]}", "error"


# clinical validators: take a non-empty cell, return what is wrong or None
def _check_age(value) -> str | None:
    age = _as_number(value)
    if age is None or not 0 <= age <= MAX_AGE_YEARS:
        return f"age must be a number of years in 0-{MAX_AGE_YEARS}, got {value!r}"
    return None


def _check_binary(column: str):
    def check(value) -> str | None:
        if _as_number(value) not in (0.0, 1.0):
            return f"{column} must be 0 or 1, got {value!r}"
        return None

    return check


def _check_months(column: str):
    def check(value) -> str | None:
        months = _as_number(value)
        if months is None or months < 0:
            return f"{column} must be a time >= 0 in months, got {value!r}"
        return None

    return check


def _check_choice(column: str, choices: tuple[str, ...], upper: bool):
    def check(value) -> str | None:
        text = str(value).strip()
        if (text.upper() if upper else text.lower()) not in choices:
            return f"{column} must be one of {'/'.join(choices)}, got {value!r}"
        return None

    return check


def _check_t_stage(value) -> str | None:
    try:
        normalise_t_stage(value)
    except ValueError as exc:
        return str(exc)
    return None


_CLINICAL_CHECKS = {
    "age": _check_age,
    "sex": _check_choice("sex", SEXES, upper=True),
    "location": _check_choice("location", LOCATIONS, upper=False),
    "cT": _check_t_stage,
    "pT": _check_t_stage,
    "lnm": _check_binary("lnm"),
}


def _check_clinical(row: pd.Series):
    from esoct.survival.endpoints import endpoint_columns, manifest_endpoints

    checks = dict(_CLINICAL_CHECKS)
    pairs = [endpoint_columns(e) for e in manifest_endpoints(row.index, partial=True)]  # os, dfs... (time, event)
    for time_col, event_col in pairs:
        checks[time_col], checks[event_col] = _check_months(time_col), _check_binary(event_col)
    for column, check in checks.items():
        if column in row.index and not _is_empty(row[column]):
            message = check(row[column])
            if message:
                yield column, None, message, "error"
    for time_col, event_col in pairs:
        has_time, has_event = (c in row.index and not _is_empty(row[c]) for c in (time_col, event_col))
        if has_time != has_event:
            given, empty = (time_col, event_col) if has_time else (event_col, time_col)
            yield empty, None, f"{empty} is empty but {given} is given: survival needs both", "error"


def _check_files(row: pd.Series, root: Path, scanner: "_Scanner | None"):
    """Existence of every image/mask cell, then (with a scanner) readability and mask checks."""
    found = {}  # column -> resolved path of files that exist
    for column in IMAGE_COLUMNS:
        if column not in row.index:
            continue
        written = row[column]
        if _is_empty(written):
            if column in REQUIRED_COLUMNS:
                yield column, None, f"{column} is empty", "error"
            continue
        resolved = _resolve_cell(root, written)
        if not resolved.exists():
            yield column, str(resolved), f"file not found: {str(written).strip()!r} (looked for {resolved})", "error"
            continue
        series = _series_cell(row, column)
        if series is not None:
            from esoct.io.series_view import series_view

            try:
                resolved = series_view(resolved, series, patient=_patient(row))
            except InputError as exc:
                yield f"{column}_series", str(resolved), exc.problem, "error"
                continue
        found[column] = resolved
    yield from _check_pairs(row)
    if scanner is None:
        return
    summaries = {}
    for column, resolved in found.items():
        summary = scanner.summary(resolved, patient=_patient(row))
        if summary.error is not None:
            yield column, str(resolved), f"cannot read {str(row[column]).strip()!r}: {summary.error}", "error"
        else:
            summaries[column] = summary
    for column in MASK_COLUMNS:
        if column in summaries:
            image_column = image_column_for(column)
            image = summaries.get(image_column)
            yield from _check_mask(column, str(found[column]), summaries[column], image, image_column)


def _check_pairs(row: pd.Series):
    """A mask needs its image; a post-treatment image should have its mask."""
    for mask_column in MASK_COLUMNS:
        image_column = image_column_for(mask_column)
        has_mask = mask_column in row.index and not _is_empty(row[mask_column])
        has_image = image_column in row.index and not _is_empty(row[image_column])
        if has_mask and not has_image and image_column not in REQUIRED_COLUMNS:
            yield mask_column, None, f"{mask_column} is given but {image_column} is empty", "error"
    if "image_post" in row.index and not _is_empty(row["image_post"]):
        if "mask_post" not in row.index or _is_empty(row["mask_post"]):
            yield "mask_post", None, "image_post is given but mask_post is empty", "warning"


def _check_mask(column: str, file: str, mask: "_FileSummary", image: "_FileSummary | None", image_column: str):
    """Label-map checks of one readable mask, and its grid against its image's."""
    if mask.non_integer:
        yield column, file, "mask values are not integers: a label map holds class numbers 0..5", "error"
    if mask.negative:
        yield column, file, "mask has negative values: a label map holds class numbers 0..5", "error"
    if not mask.labels:
        yield column, file, "mask is empty: no voxel > 0", "error"
    elif TUMOUR_LABEL not in mask.labels:
        present = ", ".join(f"{v:g}" for v in mask.labels)
        yield column, file, f"mask has no tumour voxel (label {TUMOUR_LABEL}); labels present: {present}", "warning"
    if image is not None:
        differences = image.geometry.geometry_differences(mask.geometry)
        if differences:
            yield column, file, f"mask grid differs from {image_column} (mask vs image): " + "; ".join(differences), "error"


def image_column_for(mask_column: str) -> str:
    """The image column a mask column is drawn on: ``mask_pre_reader2`` -> ``image_pre``."""
    return "image" + re.sub(r"_reader\d+$", "", mask_column)[len("mask") :]


# -- reading images once ---------------------------------------------------------------
@dataclass(frozen=True)
class _FileSummary:
    """What the checks need from one image file, without keeping its voxels.

    ``geometry`` is a Volume whose array is a zero-stride view of the right shape
    (no memory), so ``Volume.geometry_differences`` can be used as is.
    """

    geometry: Volume | None = None
    error: str | None = None
    labels: tuple[float, ...] = ()  # distinct values > 0, masks only
    non_integer: bool = False
    negative: bool = False


class _Scanner:
    """Reads each file at most once per check and remembers a summary of it."""

    def __init__(self, mask_paths: set[Path]):
        self.mask_paths = mask_paths
        self.cache: dict[Path, _FileSummary] = {}

    def summary(self, path: Path, patient: str | None) -> _FileSummary:
        if path not in self.cache:
            self.cache[path] = self._read(path, patient)
        return self.cache[path]

    def _read(self, path: Path, patient: str | None) -> _FileSummary:
        try:
            volume = read_image(path, patient=patient)
        except InputError as exc:
            return _FileSummary(error=exc.problem)
        except (RuntimeError, ValueError, OSError) as exc:
            return _FileSummary(error=_first_line(exc))
        stub = np.broadcast_to(np.zeros((), dtype=np.uint8), volume.shape)
        geometry = Volume(stub, volume.spacing, volume.origin, volume.direction)
        if path not in self.mask_paths:
            return _FileSummary(geometry=geometry)
        array = volume.array
        non_integer = bool(np.issubdtype(array.dtype, np.floating) and np.any(array != np.round(array)))
        return _FileSummary(
            geometry=geometry,
            labels=tuple(float(v) for v in np.unique(array[array > 0])),
            non_integer=non_integer,
            negative=bool(np.any(array < 0)),
        )


def _mask_paths(table: pd.DataFrame, root: Path) -> set[Path]:
    """Resolved paths of every cell of a mask column (their label statistics are computed)."""
    paths = set()
    for column in MASK_COLUMNS:
        if column in table.columns:
            paths.update(p for p in (_resolve_cell(root, v) for v in table[column]) if p is not None)
    return paths


# -- small helpers ---------------------------------------------------------------------
def _read_table(path: Path) -> pd.DataFrame:
    """Read the CSV; index = line number (header = 1); fully blank lines dropped."""
    if not path.is_file():
        raise InputError("manifest file does not exist", path)
    try:
        table = pd.read_csv(
            path, dtype={"patient_id": str, "image_pre_series": str, "image_post_series": str}, encoding="utf-8-sig", skipinitialspace=True, skip_blank_lines=False
        )
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest as CSV: {_first_line(exc)}", path) from None
    table.columns = [str(c).strip() for c in table.columns]
    table.index = pd.RangeIndex(2, len(table) + 2, name="row")
    table = table.dropna(how="all")
    if "patient_id" in table.columns:
        table["patient_id"] = table["patient_id"].map(lambda v: v.strip() if isinstance(v, str) else v)
    return table


def _missing_columns_message(missing: list[str], table: pd.DataFrame) -> str:
    message = f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
    message += f" (found: {', '.join(table.columns) or 'none'})"
    if len(table.columns) == 1 and ";" in table.columns[0]:
        message += "; the file looks separated by ';', esoct expects ','"
    return message


def _series_cell(row: pd.Series, column: str) -> str | None:
    """The series named for an image column (``image_pre_series``...), or None."""
    if column not in IMAGE_COLUMNS or column in MASK_COLUMNS:
        return None
    value = row.get(f"{column}_series")
    if _is_empty(value):
        return None
    if isinstance(value, float) and value.is_integer():  # a SeriesNumber read as a float by pandas
        value = int(value)
    return str(value).strip()


def _resolve_cell(root: Path, value) -> Path | None:
    if _is_empty(value):
        return None
    path = Path(str(value).strip()).expanduser()
    return path if path.is_absolute() else root / path


def _is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _as_number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _patient(row: pd.Series) -> str | None:
    value = row.get("patient_id")
    return None if _is_empty(value) else str(value)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
