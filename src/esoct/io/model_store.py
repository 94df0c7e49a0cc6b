"""Radiomics model files that cannot run code when loaded: skops with an allow-list of types.

``joblib``/``pickle`` files execute whatever their bytes ask for, so a bundle passed between
sites (checksums can be recomputed by whoever edits it) could carry a payload. esoct therefore
writes the LNM and survival models with :mod:`skops.io`, which rebuilds objects only from types
it is told to trust, and trusts the types of scikit-learn, scikit-survival and esoct's own
estimators (:data:`TRUSTED_PREFIXES`); a file naming any other type is refused before anything
in it is built.

A fitted :class:`esoct.survival.cox.CoxPH` is stored with what ``predict`` needs (coefficients
and feature names): its lifelines fitter and pandas summaries are left out, since skops cannot
rebuild them and the bundle never uses them.
"""

from __future__ import annotations

import copy
from pathlib import Path

from esoct.errors import InputError

#: Types (module prefixes) whose objects a model file may hold besides those skops trusts itself.
TRUSTED_PREFIXES = ("sklearn.", "sksurv.", "esoct.select.", "esoct.survival.", "numpy.dtype")

#: Attributes of a fitted CoxPH that are not written (see the module docstring).
_COX_DROPPED = ("lifelines_", "summary_", "hazard_ratios_", "baseline_cumulative_hazard_")


def save_model(doc: dict, path: str | Path) -> Path:
    """Write a model document (a dict holding ``"estimator"``) as a skops file, atomically.

    Parameters
    ----------
    doc : dict
        Plain values (str, numbers, lists, dicts, None) and the fitted ``estimator``.
    path : str or Path
        Destination (``model.skops``).

    Returns
    -------
    Path
    """
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(doc, estimator=_portable(doc["estimator"]))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        sio.dump(doc, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: str | Path) -> dict:
    """Read a model document written by :func:`save_model`, refusing any type outside the allow-list.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict

    Raises
    ------
    esoct.errors.InputError
        Not a readable skops file, a pickle/joblib file, or a file naming a type esoct does not trust.
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise InputError("model file not found", path)
    if path.suffix in (".joblib", ".pkl", ".pickle"):
        raise InputError("pickle/joblib model files are not loaded (they can run code); rerun the study task "
                         "with this esoct to write model.skops", path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise InputError(f"not a readable skops model file ({type(exc).__name__}: {str(exc)[:200]})", path) from None
    refused = sorted(t for t in untrusted if not t.startswith(TRUSTED_PREFIXES))
    if refused:
        raise InputError(f"the model file names types esoct does not trust: {', '.join(refused)}; it is not loaded",
                         path)
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot rebuild the model ({type(exc).__name__}: {str(exc)[:200]})", path) from None


def _portable(estimator):
    """A copy of ``estimator`` without the parts skops cannot write (a CoxPH's lifelines fitter)."""
    from esoct.survival.cox import CoxPH

    estimator = copy.deepcopy(estimator)
    steps = [s for _, s in getattr(estimator, "steps", [])] or [estimator]
    for step in steps:
        if isinstance(step, CoxPH):
            for name in _COX_DROPPED:
                if hasattr(step, name):
                    delattr(step, name)
    return estimator
