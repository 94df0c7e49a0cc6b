"""One writer per study directory: an inter-process lock held for the whole of ``esoct run``.

Two runs into one directory would interleave their per-patient caches and ``done.json`` files
(one run marks a task done while the other is still writing its predictions), so the second run
is refused at once with a message naming the holder. The lock is ``filelock``'s (an ``fcntl``
lock on POSIX, released by the operating system when the holder dies, so a killed run never
leaves a stale lock); a JSON file beside it says who holds it, for the message only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
from pathlib import Path

from esoct.errors import StudyLockedError

LOCK_NAME = ".esoct.lock"
HOLDER_NAME = ".esoct.lock.json"


@contextlib.contextmanager
def study_lock(out: str | Path, command: str = "esoct run"):
    """Hold the study directory ``out`` for this process; refuse when another process holds it.

    Parameters
    ----------
    out : str or Path
        Study directory (created if missing).
    command : str
        What holds the lock, written into the holder file for the other process's message.

    Raises
    ------
    esoct.errors.StudyLockedError
        Another process holds the lock (the message names its pid, host and start time).
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_NAME), timeout=0)
    holder = out / HOLDER_NAME
    try:
        lock.acquire()
    except Timeout:
        raise StudyLockedError(_locked_message(out, holder)) from None
    try:
        holder.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                      "since": _dt.datetime.now().isoformat(timespec="seconds")}))
        yield out
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _locked_message(out: Path, holder: Path) -> str:
    try:
        who = json.loads(holder.read_text())
        by = f" ({who.get('command', 'esoct')}, pid {who.get('pid')} on {who.get('host')}, since {who.get('since')})"
    except (OSError, ValueError):
        by = ""
    return (f"study directory {out} is in use by another esoct process{by}; wait for it to finish, "
            f"or run into another --out directory")
