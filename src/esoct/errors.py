"""Exception types that name the patient, the file and the problem."""

from __future__ import annotations

from pathlib import Path


class EsoctError(Exception):
    """Base class of every error esoct raises on purpose."""


class InputError(EsoctError, ValueError):
    """Bad input data, reported in the user's terms.

    Parameters
    ----------
    problem : str
        What is wrong, in plain words.
    path : str or Path, optional
        The file or folder concerned.
    patient : str, optional
        The pseudonymous patient id (never a DICOM PatientName/PatientID).
    """

    def __init__(self, problem: str, path: str | Path | None = None, patient: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.patient = patient
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.patient is not None:
            parts.append(f"patient {self.patient}")
        if self.path is not None:
            parts.append(f"file {self.path}")
        where = ", ".join(parts)
        return f"{where}: {self.problem}" if where else self.problem

    def for_patient(self, patient: str) -> "InputError":
        """Return the same error, now naming ``patient``."""
        return InputError(self.problem, self.path, patient)


class StudyLockedError(EsoctError):
    """Another esoct process is writing into the same study directory."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received: unwinds like Ctrl-C, so worker pools are stopped and partial files discarded."""
