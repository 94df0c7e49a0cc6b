"""CT intensity transforms: HU clipping, display windows, min-max scaling and z-score."""

from __future__ import annotations

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume


def _split(x) -> tuple[np.ndarray, Volume | None]:
    """Return ``(array, volume_or_None)`` for an array or a Volume."""
    if isinstance(x, Volume):
        return x.array, x
    return np.asarray(x), None


def _join(values: np.ndarray, volume: Volume | None):
    """Wrap ``values`` (float32) back into ``volume``'s geometry when there is one."""
    values = np.asarray(values, dtype=np.float32)
    return values if volume is None else volume.with_array(values)


def clip_hu(x, low: float = -145.0, high: float = 225.0):
    """Clip CT values to ``[low, high]`` Hounsfield units.

    The default range ``[-145, 225]`` HU is the ResoLSTM-Depth setting.

    Parameters
    ----------
    x : numpy.ndarray or Volume
        CT values in HU, any shape (a Volume is ``(z, y, x)``).
    low, high : float
        Bounds in HU, ``low < high``.

    Returns
    -------
    numpy.ndarray or Volume
        Same kind as ``x`` (a Volume keeps its geometry), float32 values in ``[low, high]``.
    """
    if not low < high:
        raise ValueError(f"clip_hu needs low < high, got [{low}, {high}] HU")
    arr, vol = _split(x)
    return _join(np.clip(arr.astype(np.float32, copy=False), low, high), vol)


def window(x, center: float = 50.0, width: float = 350.0):
    """Apply a CT display window: clip to ``[center - width/2, center + width/2]`` HU.

    The default (centre 50, width 350, i.e. ``[-125, 225]`` HU) is the standard mediastinal
    window of the longitudinal survival paper. Values are clipped, not rescaled.

    Parameters
    ----------
    x : numpy.ndarray or Volume
        CT values in HU.
    center, width : float
        Window level and width in HU, ``width > 0``.

    Returns
    -------
    numpy.ndarray or Volume
        Same kind as ``x``, float32 values in HU.
    """
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width} HU")
    return clip_hu(x, center - width / 2.0, center + width / 2.0)


def minmax(x, low: float | None = None, high: float | None = None):
    """Scale values linearly to ``[0, 1]``.

    With ``low``/``high`` given, those fixed bounds are used instead of the data's minimum
    and maximum: after ``clip_hu(x, -145, 225)`` call ``minmax(x, -145, 225)`` so that
    -145 HU maps to 0 and 225 HU to 1 in every patient, whatever the ROI contains. Values
    outside fixed bounds are clipped to ``[0, 1]``. A bound left as ``None`` is taken from
    the data. Constant input (``high == low``) gives zeros, never NaN.

    Parameters
    ----------
    x : numpy.ndarray or Volume
        Values, any shape.
    low, high : float, optional
        Fixed values mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray or Volume
        Same kind as ``x``, float32 values in ``[0, 1]``.
    """
    arr, vol = _split(x)
    arr = arr.astype(np.float32, copy=False)
    if arr.size == 0:
        return _join(arr, vol)
    lo = float(np.min(arr)) if low is None else float(low)
    hi = float(np.max(arr)) if high is None else float(high)
    if hi < lo:
        raise ValueError(f"minmax needs low <= high, got low={lo}, high={hi}")
    if hi == lo:
        return _join(np.zeros_like(arr), vol)
    out = (arr - np.float32(lo)) / np.float32(hi - lo)
    return _join(np.clip(out, 0.0, 1.0), vol)


def zscore(x, mask=None):
    """Standardise to zero mean and unit standard deviation.

    Parameters
    ----------
    x : numpy.ndarray or Volume
        Values, any shape.
    mask : numpy.ndarray or Volume, optional
        Same shape as ``x``; when given, the mean and (population) standard deviation are
        computed over the voxels where ``mask != 0`` only, then applied to every voxel.

    Returns
    -------
    numpy.ndarray or Volume
        Same kind as ``x``, float32: ``(x - mean) / std``.

    Raises
    ------
    InputError
        The mask selects no voxel, or the selected values are constant (std 0).
    """
    arr, vol = _split(x)
    arr = arr.astype(np.float32, copy=False)
    if mask is None:
        values = arr
    else:
        m, _ = _split(mask)
        if m.shape != arr.shape:
            raise ValueError(f"zscore mask shape {m.shape} differs from image shape {arr.shape}")
        values = arr[m != 0]
        if values.size == 0:
            raise InputError("z-score mask selects no voxel")
    mean = float(np.mean(values, dtype=np.float64))
    std = float(np.std(values, dtype=np.float64))
    if not std > 0:
        where = "inside the mask" if mask is not None else "in the image"
        raise InputError(f"cannot z-score: values {where} are constant ({mean:g}), standard deviation 0")
    return _join((arr - np.float32(mean)) / np.float32(std), vol)
