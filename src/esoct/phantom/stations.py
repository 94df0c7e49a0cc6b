"""How far the phantom's lymph-node stations reach beyond the esophagus: the cascade's crop margin.

The cascade's second stage (:mod:`esoct.segment.cascade`) works on a box around the esophagus
found by the first stage, dilated by a margin so that the periesophageal and recurrent-laryngeal-
nerve (RLN) node stations fall inside it. The margin is derived here from the station rules of
:func:`esoct.phantom.spec.sample_patient` rather than guessed: many patients are drawn (only
their parameters, nothing is rasterised) and, per axis, the largest distance by which a node's
extent (centre +- semi-axis) leaves the box of the esophageal wall (outer radius, over the whole
scanned length) is taken. The stations that reach farthest are the paratracheal nodes, lateral to
the trachea (in x) and anterior to it (in y); the RLN nodes sit in the tracheo-esophageal groove.
"""

from __future__ import annotations

import math

import numpy as np

from esoct.phantom.centers import DEFAULT_CENTERS, Z_EXTENT_MM

#: Added to the sampled maximum, mm: the rasteriser may nudge a node into fat by a few mm.
SAFETY_MM = 6.0


def node_reach_mm(n_patients: int = 3000, seed: int = 0) -> dict:
    """Largest distance, per axis and station, by which a node leaves the esophageal-wall box.

    Parameters
    ----------
    n_patients : int
        Patients drawn (parameters only).
    seed : int
        Cohort seed of the draw.

    Returns
    -------
    dict
        ``"zyx"``: the maximum over every node of ``(z, y, x)`` reach, mm (0 when inside);
        ``"by_station"``: station -> ``(z, y, x)`` maximum reach, mm.
    """
    from esoct.phantom.spec import sample_patient

    by_station: dict[str, np.ndarray] = {}
    for i in range(int(n_patients)):
        spec = sample_patient(seed, i, DEFAULT_CENTERS[i % len(DEFAULT_CENTERS)])
        zs = np.linspace(0.0, Z_EXTENT_MM, 81)
        ex, ey = spec.eso_center(zs)
        ro = spec.outer_r
        lo = np.array([0.0, float(ey[0]) - ro, float(ex.min()) - ro])  # (z, y, x)
        hi = np.array([Z_EXTENT_MM, float(ey[0]) + ro, float(ex.max()) + ro])
        for node in spec.nodes:
            x, y, z = node.center
            sx, sy, sz = node.semi_axes
            c, s = np.array([z, y, x]), np.array([sz, sy, sx])
            reach = np.maximum(np.maximum(lo - (c - s), (c + s) - hi), 0.0)
            prev = by_station.get(node.station, np.zeros(3))
            by_station[node.station] = np.maximum(prev, reach)
    overall = np.max(np.stack(list(by_station.values())), axis=0)
    return {"zyx": tuple(float(v) for v in overall),
            "by_station": {k: tuple(round(float(v), 2) for v in r) for k, r in sorted(by_station.items())}}


def station_margin_mm(n_patients: int = 3000, seed: int = 0) -> tuple[float, float, float]:
    """The cascade crop margin ``(z, y, x)`` mm: node reach (:func:`node_reach_mm`) + :data:`SAFETY_MM`, rounded up.

    On the default phantom this gives ``(6, 33, 24)`` mm: the paratracheal station reaches
    26 mm anterior to and 17 mm beside the esophageal-wall box, the RLN stations 9 and 12 mm;
    along z every node lies within the esophagus' extent (the safety margin alone).
    """
    reach = node_reach_mm(n_patients, seed)["zyx"]
    return tuple(float(math.ceil(r + SAFETY_MM)) for r in reach)


#: The margin used by default (from :func:`station_margin_mm` on the default phantom; a test checks it).
DEFAULT_MARGIN_MM: tuple[float, float, float] = (6.0, 33.0, 24.0)
