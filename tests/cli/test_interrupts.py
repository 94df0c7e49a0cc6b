"""Issue 17.8: Ctrl-C and SIGTERM end esoct quietly with the shell's codes, and leave no worker behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import esoct.cli as cli
from esoct.errors import Terminated


@pytest.mark.parametrize(("exc", "code", "word"), [(KeyboardInterrupt(), 130, "interrupted"),
                                                   (Terminated(), 143, "terminated")])
def test_interrupt_exits_with_the_shell_code_and_one_line(monkeypatch, capsys, exc, code, word):
    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "_cmd_info", boom)
    assert cli.main(["info", "x.nii.gz"]) == code
    err = capsys.readouterr().err
    assert err.strip() == f"esoct info: {word}; what was completed is kept and a rerun resumes"
    assert signal.getsignal(signal.SIGTERM) is not cli._raise_terminated  # the handler is put back


_POOL_SCRIPT = textwrap.dedent("""
    import sys, time
    import esoct.features.cohort as cohort
    from esoct.cli import _sigterm_unwinds
    from esoct.errors import Terminated

    def slow(task, params):
        time.sleep(120)
        return {}

    cohort.run_task = slow
    _sigterm_unwinds()
    try:
        for _ in cohort._run_local([{"i": i} for i in range(6)], {}, 2):
            pass
    except Terminated:
        sys.exit(143)
""")


def test_sigterm_stops_the_radiomics_worker_pool():
    proc = subprocess.Popen([sys.executable, "-c", _POOL_SCRIPT])
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while len(parent.children(recursive=True)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = parent.children(recursive=True)
    assert len(workers) >= 2, "the pool's workers did not start"
    time.sleep(1.0)  # the workers are inside their task
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"
