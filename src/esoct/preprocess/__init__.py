"""Preprocessing: HU windows and normalisation, resampling, and the papers' tumour ROIs."""

from esoct.preprocess.intensity import clip_hu, minmax, window, zscore
from esoct.preprocess.resample import median_spacing, resample, resample_like
from esoct.preprocess.roi import (
    KrtBox,
    RoiSequence,
    RoiSlab,
    krt_box,
    krt_inputs,
    longitudinal_inputs,
    resolstm_inputs,
    slab_25d,
    slice_sequence,
)

__all__ = [
    "KrtBox",
    "RoiSequence",
    "RoiSlab",
    "clip_hu",
    "krt_box",
    "krt_inputs",
    "longitudinal_inputs",
    "median_spacing",
    "minmax",
    "resample",
    "resample_like",
    "resolstm_inputs",
    "slab_25d",
    "slice_sequence",
    "window",
    "zscore",
]
