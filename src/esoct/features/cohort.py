"""Radiomics of a whole cohort: parallel (processes or Dask), cached per patient and time point, failures recorded."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from esoct.errors import InputError

log = logging.getLogger("esoct")

ID_COLUMNS = ("patient_id", "timepoint")
FAILURE_COLUMNS = ("patient_id", "timepoint", "family", "reason")
WHOLE_SCAN = "all"  # the ``family`` of a failure that stopped the whole scan
_EXTRACTORS: dict = {}  # per-process extractors, keyed by settings hash


@dataclass
class CohortFeatures:
    """Outcome of :func:`extract_cohort`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per patient and time point: ``patient_id``, ``timepoint``, then PyRadiomics
        feature columns (NaN where a family failed).
    failures : pandas.DataFrame
        ``patient_id, timepoint, family, reason``; ``family`` is ``"all"`` when nothing of
        the scan could be extracted (unreadable file, empty mask...).
    parquet, failures_csv : Path
        The files written.
    computed, cached : int
        Scans extracted in this run and scans taken from the cache.
    seconds : float
        Wall-clock time of the run.
    warnings : list of str
        Problems that did not stop a scan (e.g. a mask touching the volume border).
    """

    table: pd.DataFrame
    failures: pd.DataFrame
    parquet: Path
    failures_csv: Path
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    warnings: list = field(default_factory=list)


def extract_cohort(
    manifest_path: str | Path,
    out_parquet: str | Path,
    *,
    params: str | Path | dict | None = None,
    timepoints: tuple[str, ...] = ("pre", "post"),
    workers: int | None = None,
    scheduler=None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    label: int | None = None,
    failures_csv: str | Path | None = None,
) -> CohortFeatures:
    """Extract PyRadiomics features for every patient and time point of a manifest.

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest CSV (``image_<tp>`` / ``mask_<tp>`` columns, see DESIGN.md).
    out_parquet : str or Path
        Parquet file to write: one row per patient and time point.
    params : str, Path or dict, optional
        PyRadiomics parameter file or dict (default: ``params/longitudinal.yaml``).
    timepoints : tuple of str
        Time points to extract; a time point whose image and mask cells are both empty is
        skipped for that patient (post-treatment scans are optional).
    workers : int, optional
        Local worker processes (default: the number of CPUs, at most the number of scans);
        1 runs in this process.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``"tcp://host:8786"``) or client: the scans run on that
        cluster instead of local processes. Workers must see the image files and have esoct
        installed; results are cached and written here.
    cache_dir : str or Path, optional
        Per-scan cache (JSON, one file per patient and time point, keyed by the image and
        mask files' size and modification time, the label and the settings hash). Default:
        ``<folder of out_parquet>/cache/radiomics``. A rerun reuses it; an interrupted run
        resumes where it stopped.
    progress : bool
        Show a progress bar.
    label : int, optional
        ROI label (default: the parameter file's ``label``, 1 = tumour).
    failures_csv : str or Path, optional
        Where failures are written (default: ``failures.csv`` next to ``out_parquet``);
        rewritten on every run, header only when nothing failed.

    Returns
    -------
    CohortFeatures

    References
    ----------
    .. [1] van Griethuysen JJM et al. Computational radiomics system to decode the radiographic
       phenotype. Cancer Research 77(21):e104-e107, 2017.
    """
    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.io.manifest import load_manifest

    start = time.perf_counter()
    out_parquet = Path(out_parquet)
    failures_csv = Path(failures_csv) if failures_csv else out_parquet.parent / "failures.csv"
    cache = Path(cache_dir) if cache_dir else out_parquet.parent / "cache" / "radiomics"
    extractor = RadiomicsExtractor(params)
    manifest = load_manifest(manifest_path)
    tasks, problems = _plan(manifest, timepoints, extractor, label)
    results, pending = {}, []
    for task in tasks:
        hit = _read_cache(cache, task)
        if hit is not None:
            results[(task["patient_id"], task["timepoint"])] = hit
        else:
            pending.append(task)
    n_cached = len(results)
    for result in _execute(pending, extractor.params, workers, scheduler, progress):
        results[(result["patient_id"], result["timepoint"])] = result
        if result["error"] is None:
            _write_cache(cache, result)
    order = [(t["patient_id"], t["timepoint"]) for t in tasks]
    table = _table([results[k] for k in order if k in results])
    failures = _failures(problems, [results[k] for k in order if k in results])
    _write_outputs(table, failures, out_parquet, failures_csv)
    return CohortFeatures(
        table,
        failures,
        out_parquet,
        failures_csv,
        len(pending),
        n_cached,
        time.perf_counter() - start,
        [w for r in results.values() for w in r.get("warnings", [])],
    )


# -- planning ---------------------------------------------------------------------
def _plan(manifest, timepoints, extractor, label) -> tuple[list[dict], list[dict]]:
    """One task per patient and time point with both files given; problems for half-given pairs."""
    tasks, problems = [], []
    for pid in manifest.patients:
        for tp in timepoints:
            image, mask = manifest.resolve(pid, f"image_{tp}"), manifest.resolve(pid, f"mask_{tp}")
            if image is None and mask is None:
                if tp == "pre":
                    problems.append(_problem(pid, tp, "image_pre and mask_pre are empty"))
                continue
            if image is None or mask is None:
                given, empty = ("image", "mask") if mask is None else ("mask", "image")
                problems.append(_problem(pid, tp, f"{given}_{tp} is given but {empty}_{tp} is empty"))
                continue
            task = {"patient_id": pid, "timepoint": tp, "image": str(image), "mask": str(mask), "label": label}
            task["settings_hash"] = extractor.settings_hash
            task["key"] = _cache_key(task)
            tasks.append(task)
    return tasks, problems


def _problem(pid: str, tp: str, reason: str) -> dict:
    return {
        "patient_id": pid,
        "timepoint": tp,
        "features": {},
        "failures": {},
        "warnings": [],
        "error": f"patient {pid} ({tp}): {reason}",
    }


def _cache_key(task: dict) -> str:
    from esoct.io.fingerprint import input_key

    return input_key([task["image"], task["mask"]], [task["settings_hash"], task["label"]])


# -- running ----------------------------------------------------------------------
def _execute(tasks: list[dict], params: dict, workers, scheduler, progress: bool):
    """Yield one result dict per task, as they complete."""
    from esoct.progress import progress_bar

    if not tasks:
        return
    bar = progress_bar(total=len(tasks), desc="radiomics", unit="scans", enabled=progress)
    if scheduler is not None:
        source = _run_dask(tasks, params, scheduler)
    else:
        n = min(workers or os.cpu_count() or 1, len(tasks))
        source = _run_local(tasks, params, n)
    try:
        for result in source:
            bar.update(1)
            yield result
    finally:
        bar.close()


def _run_local(tasks: list[dict], params: dict, workers: int):
    if workers <= 1:
        for task in tasks:
            yield run_task(task, params)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = _mp_context()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
    try:
        futures = {pool.submit(run_task, task, params): task for task in tasks}
        for future in as_completed(futures):
            yield _result_or_failure(future, futures[future])
    except BaseException:  # Ctrl-C, SIGTERM (esoct.errors.Terminated) or the consumer stopped early
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool) -> None:
    """Cancel what has not started and end the workers now, so none outlives an interrupted run.

    ``shutdown`` alone waits for every running extraction to finish (minutes on a large CT);
    Python 3.11 has no public call that ends the workers (3.14 adds ``terminate_workers``),
    hence the executor's own process table.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown clears the table
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _run_dask(tasks: list[dict], params: dict, scheduler):
    from distributed import as_completed

    from esoct.scale.dask import dask_client

    with dask_client(scheduler) as client:  # "local", an address, or a client (left open)
        futures = client.map(run_task, tasks, params=params, pure=False)
        by_key = {f.key: t for f, t in zip(futures, tasks)}
        for future in as_completed(futures):
            yield _result_or_failure(future, by_key[future.key])


def _mp_context():
    """``fork`` where it is safe and fast, else ``spawn``.

    Fork is used on Linux when this process runs no other thread (tqdm's sleeping monitor
    thread aside) and ITK creates its threads per call (SimpleITK's default "Platform"
    threader), so no lock or thread pool can be inherited half-used. With ``spawn``,
    scripts need the ``if __name__ == "__main__":`` guard.
    """
    import multiprocessing
    import sys
    import threading

    import SimpleITK as sitk

    safe = (
        sys.platform.startswith("linux")
        and all(t is threading.main_thread() or type(t).__name__ == "TMonitor" for t in threading.enumerate())
        and sitk.ProcessObject.GetGlobalDefaultThreader().lower() == "platform"
    )
    return multiprocessing.get_context("fork" if safe else "spawn")


def _result_or_failure(future, task: dict) -> dict:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a worker died or the task could not be shipped: recorded
        return _problem(task["patient_id"], task["timepoint"], f"worker failed: {type(exc).__name__}: {exc}")


def _init_worker(threads: int) -> None:
    import signal

    import SimpleITK as sitk

    # a forked worker inherits esoct's SIGTERM-raises handler, which the executor would catch and
    # report as a task result; the worker must simply end when its parent stops it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def run_task(task: dict, params: dict) -> dict:
    """Extract one scan (runs in a worker process); never raises.

    Parameters
    ----------
    task : dict
        ``patient_id``, ``timepoint``, ``image``, ``mask``, ``label``, ``settings_hash``, ``key``.
    params : dict
        Resolved PyRadiomics parameters (``RadiomicsExtractor.params``).

    Returns
    -------
    dict
        The task's ids and key plus ``features``, ``failures`` (family -> reason),
        ``warnings`` and ``error`` (None, or why nothing was extracted).
    """
    pid, tp = task["patient_id"], task["timepoint"]
    out = {k: task[k] for k in ("patient_id", "timepoint", "key")}
    out.update(features={}, failures={}, warnings=[], error=None, seconds=0.0)
    start = time.perf_counter()
    try:
        out.update(_extract_one(task, params))
    except InputError as exc:
        out["error"] = str(exc if exc.patient else exc.for_patient(f"{pid} ({tp})"))
    except Exception as exc:  # noqa: BLE001 - keep the cohort going; the reason is recorded
        out["error"] = f"patient {pid} ({tp}): {type(exc).__name__}: {exc}"
    out["seconds"] = time.perf_counter() - start
    return out


def _extract_one(task: dict, params: dict) -> dict:
    """Read one scan's image and mask and extract them with this process's extractor."""
    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.io.imageio import read_image

    pid, tp = task["patient_id"], task["timepoint"]
    extractor = _EXTRACTORS.get(task["settings_hash"])
    if extractor is None:
        extractor = RadiomicsExtractor.from_resolved(params, task["settings_hash"])
        _EXTRACTORS[task["settings_hash"]] = extractor
    who = f"{pid} ({tp})"
    image, mask = read_image(task["image"], patient=who), read_image(task["mask"], patient=who)
    result = extractor.extract_detailed(image, mask, label=task["label"], patient=who)
    out = {"features": result.features, "failures": result.failures, "warnings": result.warnings}
    if not result.features:
        reasons = "; ".join(f"{f}: {r}" for f, r in result.failures.items())
        out["error"] = f"patient {pid} ({tp}): no radiomics feature could be computed ({reasons})"
    return out


# -- cache ------------------------------------------------------------------------
def _cache_file(cache: Path, task: dict) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{task['patient_id']}_{task['timepoint']}")
    return cache / f"{safe}_{task['key'][:24]}.json"


def _read_cache(cache: Path, task: dict) -> dict | None:
    path = _cache_file(cache, task)
    if not path.is_file():
        return None
    try:
        with open(path) as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        return None  # a torn or foreign file: extract again
    return result if result.get("key") == task["key"] else None


def _write_cache(cache: Path, result: dict) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    path = _cache_file(cache, result)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a cache file


# -- outputs ----------------------------------------------------------------------
def _table(results: list[dict]) -> pd.DataFrame:
    rows = [
        {"patient_id": r["patient_id"], "timepoint": r["timepoint"], **r["features"]} for r in results if r["features"]
    ]
    if not rows:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    return pd.DataFrame.from_records(rows)


def _failures(problems: list[dict], results: list[dict]) -> pd.DataFrame:
    rows = []
    for r in problems + results:
        if r["error"] is not None:
            rows.append((r["patient_id"], r["timepoint"], WHOLE_SCAN, r["error"]))
        else:
            rows.extend((r["patient_id"], r["timepoint"], fam, reason) for fam, reason in r["failures"].items())
    for row in rows:
        log.warning("%s", row[3] if row[2] == WHOLE_SCAN else f"patient {row[0]} ({row[1]}): {row[2]}: {row[3]}")
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))


def _write_outputs(table: pd.DataFrame, failures: pd.DataFrame, out_parquet: Path, failures_csv: Path) -> None:
    out_parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_parquet.with_name(out_parquet.name + ".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out_parquet)
    failures_csv.parent.mkdir(parents=True, exist_ok=True)
    failures.to_csv(failures_csv, index=False, quoting=csv.QUOTE_MINIMAL)
