"""`esoct run`: execute the enabled tasks of a validated study file into a study directory.

The runner only sequences the task pipelines (:mod:`esoct.study.survival`, :mod:`esoct.tstage.cv`);
each caches its own work, so a second run reuses what is complete. A task that fails is recorded
in ``results/<task>/error.txt`` and in the returned summary, and the other tasks still run.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from esoct.study.config import StudyConfig

log = logging.getLogger("esoct")


@dataclass
class StudyRun:
    """What :func:`run_study` did: per task ``"ok"`` or the error, and the wall time in seconds."""

    out: Path
    status: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every task completed."""
        return all(s == "ok" for s in self.status.values())


def run_study(config: StudyConfig, out: str | Path, *, progress: bool = True) -> StudyRun:
    """Run every enabled task of ``config`` into the study directory ``out``.

    Parameters
    ----------
    config : StudyConfig
        From :func:`esoct.study.config.load_study`.
    out : str or Path
        Study directory (DESIGN.md layout); ``study.yaml`` and ``cohort.csv`` are copied into it.
    progress : bool
        Show progress bars.

    Returns
    -------
    StudyRun
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config.path, out / "study.yaml")
    shutil.copyfile(config.manifest, out / "cohort.csv")
    run = StudyRun(out)
    for task in config.enabled_tasks:
        start = time.perf_counter()
        error_file = out / "results" / task / "error.txt"
        try:
            _TASKS[task](config, out, progress)
            run.status[task] = "ok"
            error_file.unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - a failed task is recorded and the others run
            run.status[task] = f"{type(exc).__name__}: {exc}"
            error_file.parent.mkdir(parents=True, exist_ok=True)
            error_file.write_text(traceback.format_exc())
            log.error("task %s failed: %s", task, exc)
        run.seconds[task] = time.perf_counter() - start
    return run


def _survival(config: StudyConfig, out: Path, progress: bool) -> None:
    from esoct.study.survival import run_survival_study

    s, task = config.settings, config.task("survival")
    deep = None
    if task["deep_features"]:
        from esoct.features.deep import DeepFeatureExtractor

        deep = DeepFeatureExtractor(head="cox", width=float(task["deep_width"]), epochs=task["deep_epochs"],
                                    seed=s["seed"])
    run_survival_study(config.manifest, out, test_centers=s["cohort"]["test_centers"], params=s["radiomics"]["params"],
                       deep=deep, n_estimators=task["n_estimators"], n_bootstrap=task["n_bootstrap"], cv=task["cv"],
                       seed=s["seed"], workers=s["radiomics"]["workers"], progress=progress)


def _tstage_binary(config: StudyConfig, out: Path, progress: bool) -> None:
    import pandas as pd

    from esoct.study.roi_extraction import extract_cohort_rois
    from esoct.tstage.cv import cross_validate
    from esoct.tstage.data import load_roi_sequences
    from esoct.tstage.presets import get_preset

    task = config.task("tstage_binary")
    preset = get_preset(task["preset"])
    rois = out / "cache" / "rois"
    roi_run = extract_cohort_rois(config.manifest, rois, kinds=("slices",), progress=progress)
    manifest = pd.read_csv(config.manifest, dtype={"patient_id": str})
    seqs = load_roi_sequences(rois, dict(zip(manifest["patient_id"], manifest["pT"])), size=preset.image_size,
                              failures=roi_run.failures)
    cross_validate(seqs, out, preset=preset, models=tuple(task["models"]), n_splits=task["folds"],
                   seed=config.settings["seed"], progress=progress)


_TASKS = {"tstage_binary": _tstage_binary, "survival": _survival}
