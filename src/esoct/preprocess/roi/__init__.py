"""Tumour ROI extraction of the three papers: 2D slice sequence, 2.5D slab and 3D KRT box.

* :func:`slice_sequence` -- ResoLSTM-Depth: one square ROI per tumour slice, head to foot.
* :func:`slab_25d` -- longitudinal survival paper: largest-area slice +- 3 slices as 7 channels.
* :func:`krt_box` -- nn-TransEC knowledge-embedded ROI tokenization: a fixed 3D box on the tumour.
* :func:`resolstm_inputs`, :func:`longitudinal_inputs`, :func:`krt_inputs` -- each paper's
  intensity settings and resampling around its ROI.

Axial slices are array index ``z`` (the first axis); "head to foot" is decided from the
direction matrix (decreasing physical LPS z), never from the array order.
"""

from esoct.preprocess.roi.krt import KrtBox, krt_box
from esoct.preprocess.roi.pipelines import krt_inputs, longitudinal_inputs, resolstm_inputs
from esoct.preprocess.roi.sequence import MARGIN_LIMITS, PAPER_MARGIN, RoiSequence, slice_sequence
from esoct.preprocess.roi.slab import RoiSlab, slab_25d

__all__ = [
    "MARGIN_LIMITS", "PAPER_MARGIN", "KrtBox", "RoiSequence", "RoiSlab", "krt_box", "krt_inputs",
    "longitudinal_inputs", "resolstm_inputs", "slab_25d", "slice_sequence",
]
