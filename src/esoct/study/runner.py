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
    scheduler=None,
    workers: int | None = None,
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
    scheduler : None, "local", str or distributed.Client, optional
        Run the patients on Dask instead of one after the other here: ``"local"`` starts a
        local cluster, an address (``"tcp://host:8786"``) or a client uses that cluster (see
        :func:`esoct.scale.dask.map_patients`; ``work`` must then pickle). None: serial.
    workers : int, optional
        Worker processes of a local Dask cluster (only with ``scheduler="local"``).

    Returns
    -------
    CohortRun
    """
    from esoct.progress import progress_bar

    if scheduler is not None:
        from esoct.scale.dask import map_patients

        return map_patients(work, patients, scheduler=scheduler, workers=workers, done=done,
                            failures_csv=failures_csv, desc=desc, progress=progress)
    run = CohortRun()
    patients = list(patients)
    for pid in progress_bar(patients, desc=desc, unit="patients", enabled=progress):
        if done is not None and done(pid):
            run.skipped.append(pid)
            continue
        try:
            run.results[pid] = work(pid)
        except Exception as exc:  # keep the cohort going; the reason is recorded
            run.failures[pid] = failure_reason(pid, exc)
            log.warning("%s", run.failures[pid])
    if failures_csv is not None:
        write_failures(Path(failures_csv), run.failures)
    return run


def failure_reason(pid: str, exc: BaseException) -> str:
    """How a patient's failure is recorded: an InputError's text naming the patient, else ``patient X: Type: msg``."""
    if isinstance(exc, InputError):
        return str(exc if exc.patient else exc.for_patient(pid))
    return f"patient {pid}: {type(exc).__name__}: {exc}"


def write_failures(path: Path, failures: dict) -> None:
    """Write ``patient_id,reason`` rows (header only when nothing failed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "reason"])
        for pid, reason in failures.items():
            w.writerow([pid, reason])
