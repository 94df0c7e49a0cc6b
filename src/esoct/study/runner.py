"""Run one function per patient: skip what is done, record failures with their reason, never stop early."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from esoct.errors import InputError

log = logging.getLogger("esoct")


@dataclass
class CohortRun:
    """Outcome of a per-patient run.

    ``results`` maps patient id to what the function returned; ``failures`` maps
    patient id to the reason it failed; ``skipped`` lists patients already done.
    """

    results: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no patient failed."""
        return not self.failures


def run_per_patient(
    patients: Iterable[str],
    work: Callable[[str], object],
    *,
    done: Callable[[str], bool] | None = None,
    failures_csv: str | Path | None = None,
    desc: str = "patients",
    progress: bool = True,
) -> CohortRun:
    """Call ``work(patient_id)`` for every patient, keeping going after failures.

    Parameters
    ----------
    patients : iterable of str
        Patient ids in the order to process.
    work : callable
        Does one patient; raises on failure.
    done : callable, optional
        ``done(patient_id)`` is True when the patient's output already exists
        (an interrupted run resumes by skipping those).
    failures_csv : path, optional
        Where to write ``patient_id,reason`` rows for failed patients.
    desc : str
        Progress-bar label.
    progress : bool
        Show a progress bar.

    Returns
    -------
    CohortRun
    """
    from tqdm.auto import tqdm

    run = CohortRun()
    patients = list(patients)
    for pid in tqdm(patients, desc=desc, unit="patient", disable=not progress):
        if done is not None and done(pid):
            run.skipped.append(pid)
            continue
        try:
            run.results[pid] = work(pid)
        except InputError as exc:
            err = exc if exc.patient else exc.for_patient(pid)
            run.failures[pid] = str(err)
            log.warning("%s", err)
        except Exception as exc:  # keep the cohort going; the reason is recorded
            run.failures[pid] = f"patient {pid}: {type(exc).__name__}: {exc}"
            log.warning("%s", run.failures[pid])
    if failures_csv is not None:
        _write_failures(Path(failures_csv), run.failures)
    return run


def _write_failures(path: Path, failures: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "reason"])
        for pid, reason in failures.items():
            w.writerow([pid, reason])
