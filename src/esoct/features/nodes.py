"""Per-patient lymph-node features: each node's DEM entropy, fractal dimensions and shape, then aggregates.

The lymph-node class (4 in the nn-TransEC label maps, DESIGN.md) is split into connected
components, one per node. Each node gets (on its isotropically resampled neighbourhood, see
:mod:`esoct.features.elasticity`):

``volume_mm3``             voxel count x voxel volume on the input grid, mm^3
``sphericity``             ``(36 pi V^2)^(1/3) / A`` of PyRadiomics' marching-cubes mesh (1 = sphere)
``dem_mean``               mean of the differential elasticity map (DEM), per mille / mm
``dem_entropy``            first-order entropy of the DEM (PyRadiomics' definition), bits
``fd_surface``             box-counting dimension of the node's boundary voxels
``fd_dem_<t>``             box-counting dimension of the voxels with DEM >= t (several t: multi-scale)

A patient's row holds ``node_count``, ``node_total_volume_mm3`` and, for every node feature ``f``,
``node_max_<f>``, ``node_mean_<f>`` and ``node_largest_<f>`` (the value of the largest node).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from esoct.errors import InputError
from esoct.features.elasticity import DEFAULT_SIGMA_MM, dem_entropy, elasticity_map
from esoct.features.fractal import box_counting, surface
from esoct.io.volume import Volume

LYMPH_NODE = 4
NODE_FEATURES_BASE = ("volume_mm3", "sphericity", "dem_mean", "dem_entropy", "fd_surface")
AGGREGATES = ("max", "mean", "largest")


@dataclass(frozen=True)
class NodeSettings:
    """Settings of the node features (every default is documented in docs/elasticity.md).

    Attributes
    ----------
    label : int
        Lymph-node class of the label map (4).
    spacing_mm : float
        Isotropic voxel size the DEM, the fractal dimensions and the sphericity are computed on, mm.
    sigma_mm : float
        Scale of the DEM's Gaussian derivative, mm.
    context : {"mask", "image"}
        Voxels the DEM's smoothing and gradient use: the node's only (default) or the whole image
        (:func:`esoct.features.elasticity.elasticity_map`).
    bin_width : float
        Entropy bin width, per mille / mm (5: about 5 HU/mm in soft tissue, a fifth of a typical
        node's DEM of ~25, giving tens of bins as PyRadiomics advises for CT).
    thresholds : tuple of float
        DEM thresholds (per mille / mm) of the thresholded-DEM fractal dimensions: about the median
        soft-tissue DEM, twice and four times it.
    sizes_mm : tuple of float
        Box edges of every node's box counting, mm (fixed, so nodes are comparable; nodes are
        5-15 mm across, so larger boxes only count the bounding box).
    min_volume_mm3 : float
        Components smaller than this are specks, not nodes, and are left out (20 mm^3: a sphere
        3.4 mm across).
    connectivity : int
        1 (faces), 2 (faces and edges) or 3 (26-neighbourhood) for the connected components.
    """

    label: int = LYMPH_NODE
    spacing_mm: float = 1.0
    sigma_mm: float = DEFAULT_SIGMA_MM
    context: str = "mask"
    bin_width: float = 5.0
    thresholds: tuple = (20.0, 40.0, 80.0)
    sizes_mm: tuple = (1.0, 2.0, 4.0)
    min_volume_mm3: float = 20.0
    connectivity: int = 3

    @property
    def node_columns(self) -> list[str]:
        """Per-node feature names, in table order."""
        return list(NODE_FEATURES_BASE) + [f"fd_dem_{_fmt(t)}" for t in self.thresholds]

    @property
    def patient_columns(self) -> list[str]:
        """Per-patient column names (after ``patient_id``), in table order."""
        cols = ["node_count", "node_total_volume_mm3"]
        for agg in AGGREGATES:
            cols += [f"node_{agg}_{f}" for f in self.node_columns]
        return cols


@dataclass
class NodeFeatures:
    """Outcome of :func:`node_features` for one patient.

    Attributes
    ----------
    patient_id : str or None
    nodes : pandas.DataFrame
        One row per node, largest first: ``patient_id``, ``node`` (1 = largest), ``voxels``,
        ``centroid_x_mm``, ``centroid_y_mm``, ``centroid_z_mm`` (physical LPS), then the node
        features (module docstring).
    features : dict
        The patient's aggregates (``NodeSettings.patient_columns``), NaN where no node exists.
    dropped : int
        Components left out as smaller than ``min_volume_mm3``.
    """

    patient_id: str | None
    nodes: pd.DataFrame
    features: dict
    dropped: int = 0


@dataclass
class NodeCohort:
    """Outcome of :func:`node_features_cohort`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per patient that succeeded: ``patient_id`` then ``NodeSettings.patient_columns``.
    nodes : pandas.DataFrame
        Every node of every patient (``NodeFeatures.nodes`` stacked).
    failures : pandas.DataFrame
        ``patient_id, reason`` of every patient that failed; the others were computed.
    settings : dict
        The settings used.
    """

    table: pd.DataFrame
    nodes: pd.DataFrame
    failures: pd.DataFrame
    settings: dict = field(default_factory=dict)


def node_features(
    volume: Volume, label_map: Volume, patient_id: str | None = None, *, settings: NodeSettings | None = None
) -> NodeFeatures:
    """Lymph-node features of one scan.

    Parameters
    ----------
    volume : Volume
        CT in HU, array ``(z, y, x)``.
    label_map : Volume
        nn-TransEC label map on the same grid (``settings.label`` = lymph node).
    patient_id : str, optional
        Pseudonymous id, put in the tables and named in errors.
    settings : NodeSettings, optional
        Defaults: ``NodeSettings()``.

    Returns
    -------
    NodeFeatures
        A scan without lymph-node voxels gives ``node_count`` 0, an empty node table and NaN
        aggregates (no error).

    Raises
    ------
    InputError
        Image and label map grids differ (naming the label map's file when known).

    Examples
    --------
    >>> result = node_features(ct, labels, "EP0001")  # doctest: +SKIP
    >>> result.features["node_max_dem_entropy"]  # doctest: +SKIP
    """
    s = settings or NodeSettings()
    if not volume.same_geometry(label_map):
        raise InputError(
            "label map grid differs from the CT grid: " + "; ".join(volume.geometry_differences(label_map)),
            label_map.meta.get("source"), patient_id,
        )
    structure = ndimage.generate_binary_structure(3, int(s.connectivity))
    components, n = ndimage.label(label_map.array == s.label, structure)
    voxels = np.bincount(components.ravel(), minlength=n + 1)[1:]
    big = voxels * volume.voxel_volume_mm3 >= s.min_volume_mm3
    keep = [i + 1 for i in np.argsort(-voxels, kind="stable") if big[i]]
    rows = []
    if keep:
        centroids = ndimage.center_of_mass(np.ones(components.shape), components, keep)
        slices = ndimage.find_objects(components)
        for rank, (comp, centre) in enumerate(zip(keep, centroids), start=1):
            row = _one_node(volume, components, comp, slices[comp - 1], s, patient_id)
            x, y, z = volume.index_to_physical(np.asarray(centre))
            rows.append({"patient_id": patient_id, "node": rank, "voxels": int(voxels[comp - 1]),
                         "centroid_x_mm": x, "centroid_y_mm": y, "centroid_z_mm": z, **row})
    columns = ["patient_id", "node", "voxels", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm"] + s.node_columns
    nodes = pd.DataFrame(rows, columns=columns)
    return NodeFeatures(patient_id, nodes, _aggregate(nodes, s), int(n - len(keep)))


def node_features_cohort(
    manifest_path: str | Path,
    *,
    timepoint: str = "pre",
    settings: NodeSettings | None = None,
    failures_csv: str | Path | None = None,
    progress: bool = False,
) -> NodeCohort:
    """Lymph-node features of every patient of a manifest; failures recorded, the others computed.

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest CSV (``image_<timepoint>``, ``mask_<timepoint>`` columns, DESIGN.md).
    timepoint : str
        ``"pre"`` or ``"post"``.
    settings : NodeSettings, optional
    failures_csv : str or Path, optional
        Where to write ``patient_id,reason`` of the failed patients.
    progress : bool
        Show a progress bar.

    Returns
    -------
    NodeCohort
    """
    from esoct.io.imageio import read_image
    from esoct.io.manifest import load_manifest
    from esoct.study.runner import run_per_patient

    s = settings or NodeSettings()
    manifest = load_manifest(manifest_path)

    def work(pid: str) -> NodeFeatures:
        image_path = manifest.resolve(pid, f"image_{timepoint}")
        mask_path = manifest.resolve(pid, f"mask_{timepoint}")
        if image_path is None or mask_path is None:
            empty = f"image_{timepoint}" if image_path is None else f"mask_{timepoint}"
            raise InputError(f"{empty} is empty", manifest.path, pid)
        image, labels = read_image(image_path, patient=pid), read_image(mask_path, patient=pid)
        if not image.same_geometry(labels):
            raise InputError(
                f"label map grid differs from the CT's ({image_path.name}): "
                + "; ".join(image.geometry_differences(labels)),
                mask_path, pid,
            )
        return node_features(image, labels, pid, settings=s)

    run = run_per_patient(manifest.patients, work, failures_csv=failures_csv, desc="lymph nodes", progress=progress)
    done = [run.results[p] for p in manifest.patients if p in run.results]
    table = pd.DataFrame([{"patient_id": r.patient_id, **r.features} for r in done],
                         columns=["patient_id"] + s.patient_columns)
    frames = [r.nodes for r in done if len(r.nodes)]
    empty = pd.DataFrame(columns=["patient_id", "node"] + s.node_columns)
    nodes = pd.concat(frames, ignore_index=True) if frames else empty
    failures = pd.DataFrame(sorted(run.failures.items()), columns=["patient_id", "reason"])
    return NodeCohort(table, nodes, failures, asdict(s))


# -- one node -----------------------------------------------------------------------
def _one_node(volume: Volume, components: np.ndarray, comp: int, box, s: NodeSettings, pid) -> dict:
    region = np.zeros(components.shape, np.uint8)
    region[box] = components[box] == comp
    dem = elasticity_map(volume, volume.with_array(region), sigma_mm=s.sigma_mm, spacing_mm=s.spacing_mm,
                         context=s.context, patient=pid)
    inside = np.isfinite(dem.array)
    values = dem.array[inside]
    out = {
        "volume_mm3": float(region.sum()) * volume.voxel_volume_mm3,
        "sphericity": _sphericity(inside, dem.spacing),
        "dem_mean": float(values.mean()),
        "dem_entropy": dem_entropy(dem, inside, bin_width=s.bin_width),
        "fd_surface": box_counting(surface(inside), dem.spacing, sizes_mm=s.sizes_mm).dimension,
    }
    for t in s.thresholds:
        out[f"fd_dem_{_fmt(t)}"] = box_counting(inside & (np.nan_to_num(dem.array) >= t), dem.spacing,
                                                 sizes_mm=s.sizes_mm).dimension
    return out


def _sphericity(mask: np.ndarray, spacing) -> float:
    """PyRadiomics' mesh sphericity of a binary mask (marching cubes, its C extension)."""
    from radiomics import cShape

    padded = np.pad(mask, 1)
    area, vol, _ = cShape.calculate_coefficients(padded, np.asarray(spacing, dtype=float))
    return float((36 * np.pi * vol**2) ** (1 / 3) / area) if area > 0 else float("nan")


def _aggregate(nodes: pd.DataFrame, s: NodeSettings) -> dict:
    out = {"node_count": int(len(nodes)), "node_total_volume_mm3": float(nodes["volume_mm3"].sum())}
    for f in s.node_columns:
        col = nodes[f].astype(float)
        has = len(col) > 0 and col.notna().any()
        out[f"node_max_{f}"] = float(col.max()) if has else float("nan")
        out[f"node_mean_{f}"] = float(col.mean()) if has else float("nan")
    for f in s.node_columns:
        out[f"node_largest_{f}"] = float(nodes[f].iloc[0]) if len(nodes) else float("nan")
    return {c: out[c] for c in ["node_count", "node_total_volume_mm3"] + [c for c in s.patient_columns[2:]]}


def _fmt(t: float) -> str:
    return f"{t:g}".replace(".", "p").replace("-", "m")
