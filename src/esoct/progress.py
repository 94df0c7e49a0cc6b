"""Progress bars: one look for every long step, nested under the study's bar.

`esoct run` shows one bar over the tasks of the study; every long step inside a task (training
epochs with the running loss, per-patient extraction, cross-validation folds) shows an inner bar
with its ETA under it, and the inner bar disappears when its step ends. A step run on its own
(`esoct radiomics`, `esoct train ...`) keeps its bar on screen.

:func:`inner_progress` is how a study says "show the inner bars": the tasks pass
``progress=inner_progress()`` to the functions they call.
"""

from __future__ import annotations

import contextlib
import contextvars

_INNER = contextvars.ContextVar("esoct_inner_progress", default=False)

#: What every bar shows: description, count, bar, elapsed < remaining (ETA), rate, postfix.
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} |{bar}| {elapsed}<{remaining}{postfix}"


def progress_bar(iterable=None, *, total: int | None = None, desc: str, unit: str, enabled: bool = True,
                 initial: int = 0):
    """A tqdm bar with an ETA that nests under an open bar and vanishes when it ends (``leave=None``).

    Parameters
    ----------
    iterable : iterable, optional
    total : int, optional
        Number of units (default ``len(iterable)``).
    desc, unit : str
        Shown as ``desc: n/total unit``.
    enabled : bool
        False: no output at all.
    initial : int
        Units already done (a resumed run).

    Returns
    -------
    tqdm.auto.tqdm
    """
    from tqdm.auto import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled, leave=None,
                bar_format=BAR_FORMAT if total else None, mininterval=0.5, dynamic_ncols=True)


def inner_progress() -> bool:
    """Whether the study running this code shows inner bars (False outside a study)."""
    return _INNER.get()


@contextlib.contextmanager
def showing_inner_progress(enabled: bool = True):
    """Within this block :func:`inner_progress` is ``enabled``."""
    token = _INNER.set(bool(enabled))
    try:
        yield
    finally:
        _INNER.reset(token)
