"""Run per-patient work on Dask: a local cluster by default, an existing one by address or client.

:func:`dask_client` gives a :class:`distributed.Client` for the three ways a user names a
cluster; :func:`map_patients` fans a per-patient function out over it with the failure
semantics of :func:`esoct.study.runner.run_per_patient` (a failing patient is recorded with its
reason, the others go on).

Workers must have the same esoct installed and see the same files (a shared file system):
tasks receive paths, not images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from esoct.errors import InputError

log = logging.getLogger("esoct")

CONNECT_TIMEOUT_S = 10
MAX_LOCAL_WORKERS = 4


@contextmanager
def dask_client(scheduler=None, workers: int | None = None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator:
    """A Dask client for ``scheduler``, closed afterwards when this function opened it.

    Parameters
    ----------
    scheduler : None, "local", str or distributed.Client
        ``None`` or ``"local"``: start a ``LocalCluster`` on loopback (worker processes, one
        thread each, no dashboard) and shut it down on exit. An address such as
        ``"tcp://host:8786"``: connect to that running scheduler (its workers are left
        running). A ``distributed.Client``: used as it is and left open.
    workers : int, optional
        Worker processes of a local cluster (default: the number of CPUs, at most 4).
        Ignored for an existing cluster.
    timeout_s : float
        Seconds to wait for an existing scheduler to answer.

    Yields
    ------
    distributed.Client

    Raises
    ------
    InputError
        The scheduler address cannot be reached (naming the address), or ``scheduler`` is of
        an unknown type.
    """
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is None or (isinstance(scheduler, str) and scheduler.strip().lower() == "local"):
        with _local_cluster(workers) as client:
            yield client
        return
    if not isinstance(scheduler, str):
        raise InputError(f"scheduler must be None, 'local', an address like 'tcp://host:8786' or a distributed.Client, "
                         f"got {type(scheduler).__name__}")
    client = _connect(scheduler.strip(), timeout_s)
    try:
        yield client
    finally:
        client.close()


def _quiet_distributed() -> None:
    """Keep Dask's INFO chatter (scheduler start, connections) off the terminal unless esoct logs at INFO.

    distributed sets its own loggers to INFO when it is imported, so this runs after the import.
    """
    if logging.getLogger("esoct").getEffectiveLevel() > logging.INFO:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                     "distributed.worker", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _local_cluster(workers: int | None):
    from distributed import Client, LocalCluster

    _quiet_distributed()

    n = int(workers or min(os.cpu_count() or 1, MAX_LOCAL_WORKERS))
    if n < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    # distributed serves its HTTP routes even without the dashboard (default port 8787 on every interface):
    # keep them on loopback, on a free port, so runs side by side do not collide
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _connect(address: str, timeout_s: float):
    from distributed import Client

    _quiet_distributed()

    try:
        return Client(address, timeout=f"{float(timeout_s)}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"cannot connect to the Dask scheduler at {address} within {timeout_s:g} s "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "is `dask scheduler` running there and reachable from here?"
        ) from None


def call_patient(work: Callable[[str], object], pid: str) -> tuple[bool, object]:
    """Run ``work(pid)`` where the task lands and never raise (runs on a Dask worker).

    Returns
    -------
    (bool, object)
        ``(True, result)``, or ``(False, reason)`` with the reason worded as
        :func:`esoct.study.runner.run_per_patient` words it.
    """
    from esoct.study.runner import failure_reason

    try:
        return True, work(pid)
    except Exception as exc:  # noqa: BLE001 - recorded for this patient; the cohort goes on
        return False, failure_reason(pid, exc)


def map_patients(
    work: Callable[[str], object],
    patients: Iterable[str],
    *,
    scheduler=None,
    workers: int | None = None,
    done: Callable[[str], bool] | None = None,
    failures_csv: str | Path | None = None,
    desc: str = "patients",
    progress: bool = True,
):
    """Call ``work(patient_id)`` for every patient on a Dask cluster, keeping going after failures.

    Parameters
    ----------
    work : callable
        Does one patient; raises on failure. Must pickle (a module-level function or a
        ``functools.partial`` of one) and must read its inputs from paths the workers see.
    patients : iterable of str
        Patient ids; ``results`` keep this order whatever the completion order.
    scheduler : None, "local", str or distributed.Client
        See :func:`dask_client`.
    workers : int, optional
        Worker processes of a local cluster.
    done : callable, optional
        ``done(patient_id)`` is True when the patient's output already exists (checked here,
        before submitting): those are skipped.
    failures_csv : path, optional
        Where to write ``patient_id,reason`` rows for failed patients.
    desc : str
        Progress-bar label.
    progress : bool
        Show a progress bar (one for the cohort).

    Returns
    -------
    esoct.study.runner.CohortRun
    """
    from distributed import as_completed
    from esoct.progress import progress_bar

    from esoct.study.runner import CohortRun, failure_reason, write_failures

    patients = [str(p) for p in patients]
    run = CohortRun()
    todo = []
    for pid in patients:
        if done is not None and done(pid):
            run.skipped.append(pid)
        else:
            todo.append(pid)
    outcome: dict = {}
    if todo:
        with dask_client(scheduler, workers) as client, progress_bar(total=len(todo), desc=desc, unit="patients",
                                                                       enabled=progress) as bar:
            futures = {client.submit(call_patient, work, pid, pure=False): pid for pid in todo}
            for future in as_completed(futures):
                pid = futures[future]
                try:
                    outcome[pid] = future.result()
                except Exception as exc:  # noqa: BLE001 - the worker died or the task did not ship
                    outcome[pid] = (False, failure_reason(pid, exc))
                finally:
                    future.release()
                bar.update(1)
    for pid in todo:  # input order, not completion order
        ok, value = outcome[pid]
        if ok:
            run.results[pid] = value
        else:
            run.failures[pid] = value
            log.warning("%s", value)
    if failures_csv is not None:
        write_failures(Path(failures_csv), run.failures)
    return run
