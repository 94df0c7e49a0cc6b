"""Per-patient phantom parameters: clinical data, anatomy, tumour, lymph nodes and response.

Everything random about a patient is drawn here, from one generator seeded by
``(cohort seed, patient index)``, so a patient does not depend on how many
others are generated or on the order in which workers run.

Coordinates are the phantom's local frame, in mm: ``x`` to the patient's left,
``y`` posterior (LPS), ``z`` superior, measured from the lowest slice; the body
axis is at ``x = y = 0``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from esoct.phantom.centers import Z_EXTENT_MM, CenterProfile

# Thickness of the esophageal wall layers, mm (mucosa, submucosa, muscularis propria, adventitia).
# Thicker than anatomy so that each layer spans at least one voxel centre at 2 mm pixels.
LAYER_THICKNESS_MM = (1.6, 1.6, 2.6, 1.6)

# T-stage prevalence of surgical ESCC cohorts (T1, T2, T3, T4).
T_PREVALENCE = (0.15, 0.25, 0.45, 0.15)


def layer_boundaries_mm() -> tuple[float, float, float, float]:
    """Outer boundary of each wall layer, as depth from the mucosal (lumen) surface, mm."""
    return tuple(float(v) for v in np.cumsum(LAYER_THICKNESS_MM))


@dataclass
class NodeSpec:
    """One mediastinal lymph node.

    ``center`` is ``(x, y, z)`` in local mm; ``semi_axes`` ``(x, y, z)`` mm;
    ``irregularity`` is the relative amplitude of surface undulation;
    ``heterogeneity_hu`` the amplitude of internal texture; ``necrosis`` whether
    a hypodense centre is present.
    """

    station: str
    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    metastatic: bool
    irregularity: float
    heterogeneity_hu: float
    necrosis: bool
    hu: float
    phase: tuple[float, ...]


@dataclass
class TumourSpec:
    """The primary tumour, defined by invasion depth from the mucosal surface.

    Depths are mm from the lumen surface; ``half_width_rad`` is the half of the
    circumferential extent; ``length_mm`` the cranio-caudal length. The tumour's
    bulk infiltrates the wall to ``bulk_depth_mm``; its deepest point, which
    decides T, is a focal extension of ``focal_length_mm`` x ``2 * focal_half_width_rad``
    about angle ``focal_theta`` reaching ``depth_mm`` (for T1-T2 the focus is no
    deeper than the bulk). Real T3 tumours breach the adventitia focally, which
    is why volume alone is a poor T3 marker. ``thickening`` (>= 1) is how much the
    tumour's expansile growth thickens the wall at its centre, independent of T.
    """

    t_stage: int
    z_center: float
    length_mm: float
    theta0: float
    half_width_rad: float
    depth_mm: float
    bulk_depth_mm: float
    focal_theta: float
    focal_half_width_rad: float
    focal_length_mm: float
    thickening: float
    t4_target: str | None
    irregularity: float
    phases: tuple[float, ...]
    hu: float
    texture_trait: float
    texture_hu: float
    texture_scale_mm: float


@dataclass
class PatientSpec:
    """All parameters of one phantom patient (see module docstring for the frame)."""

    patient_id: str
    index: int
    center: str
    age: float
    sex: str
    # body and skeleton
    body_a: float
    body_b: float
    fat_mm: float
    spine_y: float
    spine_r: float
    # esophagus
    eso_x0: float
    eso_x_amp: float
    eso_phase: float
    eso_y: float
    lumen_r: float
    # neighbours
    aorta_r: float
    aorta_angle: float
    aorta_gap: float
    trachea_r: float
    trachea_gap: float
    carina_z: float
    arch_z: float
    heart_zc: float
    heart_semi: tuple[float, float, float]
    heart_gap: float
    aorta_hu: float
    tumour: TumourSpec
    lnm: int
    nodes: list[NodeSpec] = field(default_factory=list)
    response: float = 0.0
    post_shift_mm: tuple[float, float] = (0.0, 0.0)
    cT: str = ""
    cN: str = ""

    @property
    def outer_r(self) -> float:
        """Outer radius of the esophageal wall, mm."""
        return self.lumen_r + sum(LAYER_THICKNESS_MM)

    def eso_center(self, z):
        """Esophageal centreline ``(x, y)`` at local height ``z`` (mm; scalar or array)."""
        z = np.asarray(z, dtype=float)
        x = self.eso_x0 + self.eso_x_amp * np.sin(2 * math.pi * z / 260.0 + self.eso_phase)
        return x, np.full_like(x, self.eso_y)

    def aorta_center(self, z):
        """Descending aorta centre ``(x, y)`` at height ``z``, mm: beside the esophagus, left-posterior."""
        ex, ey = self.eso_center(z)
        d = self.outer_r + self.aorta_gap + self.aorta_r
        return ex + d * math.cos(self.aorta_angle), ey + d * math.sin(self.aorta_angle)

    def trachea_center(self, z):
        """Trachea centre ``(x, y)`` at height ``z``, mm: anterior to the esophagus."""
        ex, ey = self.eso_center(z)
        return ex - 3.0, ey - (self.outer_r + self.trachea_gap + self.trachea_r)

    def to_dict(self) -> dict:
        """Plain-dict form for truth.json (floats rounded to 4 decimals)."""
        return _round(asdict(self))


def _round(obj):
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v) for v in obj]
    return obj


def patient_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Generator for one patient: independent of cohort size and worker order."""
    return np.random.default_rng([int(seed), int(index), int(stream)])


def sample_patient(seed: int, index: int, center: CenterProfile) -> PatientSpec:
    """Draw every parameter of patient number ``index`` of a cohort.

    Parameters
    ----------
    seed : int
        Cohort seed.
    index : int
        0-based patient number; the id is ``EP{index+1:04d}``.
    center : CenterProfile
        The centre that scans this patient.

    Returns
    -------
    PatientSpec
    """
    rng = patient_rng(seed, index)
    scale = center.body_scale * float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2))
    sex = "M" if rng.random() < 0.78 else "F"  # ESCC is predominantly male
    age = float(np.clip(rng.normal(63, 8), 40, 85))
    body_a = 148.0 * scale * (1.04 if sex == "M" else 0.95)
    body_b = 103.0 * scale * float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.12))
    fat_mm = float(np.clip(rng.normal(14, 6), 5, 30))
    cavity_b = body_b - fat_mm - 12.0
    spine_r = 16.5 * scale
    spine_y = cavity_b - 38.0
    lumen_r = float(rng.uniform(3.0, 8.0))
    outer_r = lumen_r + sum(LAYER_THICKNESS_MM)
    spine_gap = float(rng.uniform(2.5, 6.0))
    eso_y = spine_y - spine_r - spine_gap - outer_r
    carina_z = float(rng.uniform(115, 140))
    heart_semi = tuple(float(v) * scale for v in (rng.uniform(55, 66), rng.uniform(40, 48), rng.uniform(62, 75)))
    spec = PatientSpec(
        patient_id=f"EP{index + 1:04d}",
        index=index,
        center=center.name,
        age=round(age, 1),
        sex=sex,
        body_a=body_a,
        body_b=body_b,
        fat_mm=fat_mm,
        spine_y=spine_y,
        spine_r=spine_r,
        eso_x0=float(rng.uniform(0.0, 9.0)),
        eso_x_amp=float(rng.uniform(2.0, 7.0)),
        eso_phase=float(rng.uniform(0, 2 * math.pi)),
        eso_y=eso_y,
        lumen_r=lumen_r,
        aorta_r=float(rng.uniform(10.0, 14.0)) * scale,
        aorta_angle=math.radians(float(rng.uniform(5, 35))),
        aorta_gap=float(rng.uniform(3.0, 7.0)),
        trachea_r=float(rng.uniform(8.0, 10.5)),
        trachea_gap=float(rng.uniform(3.0, 6.0)),
        carina_z=carina_z,
        arch_z=float(min(carina_z + rng.uniform(30, 45), Z_EXTENT_MM - 14)),
        heart_zc=float(rng.uniform(20, 45)),
        heart_semi=heart_semi,
        heart_gap=float(rng.uniform(3.0, 7.0)),
        aorta_hu=float(center.aorta_hu + rng.normal(0, 25)),
        tumour=_sample_tumour(rng, carina_z),
        lnm=0,
    )
    if spec.tumour.t4_target is not None:
        _aim_at_target(spec)
    spec.lnm = _sample_lnm(rng, spec.tumour)
    spec.nodes = _sample_nodes(rng, spec)
    spec.response = float(np.clip(rng.beta(2.2, 2.0), 0.02, 0.9))
    spec.post_shift_mm = (float(rng.normal(0, 2.5)), float(rng.normal(0, 2.5)))
    spec.cT, spec.cN = _clinical_staging(rng, spec.tumour.t_stage, spec.lnm)
    return spec


def _sample_tumour(rng: np.random.Generator, carina_z: float) -> TumourSpec:
    t_stage = int(rng.choice(4, p=T_PREVALENCE)) + 1
    b = layer_boundaries_mm()
    target = None
    length = float(np.clip(rng.lognormal(math.log(45), 0.45), 14, 110))
    z_lo, z_hi = 15 + length / 2, Z_EXTENT_MM - 15 - length / 2
    theta0 = float(rng.uniform(-math.pi, math.pi))
    if t_stage == 1:
        depth = float(rng.uniform(0.75 * b[0], b[1] - 0.15))
    elif t_stage == 2:
        depth = float(rng.uniform(b[1] + 0.5, b[2] - 0.15))
    elif t_stage == 3:
        depth = float(b[3] + rng.uniform(1.8, 6.0))
    else:
        depth = float(b[3] + 4.0)  # replaced by the distance to the target once the anatomy exists
        target = str(rng.choice(["aorta", "trachea", "pericardium"], p=[0.45, 0.25, 0.30]))
        if target == "trachea":
            z_lo = max(z_lo, carina_z + 12)
        elif target == "aorta":
            z_hi = min(z_hi, carina_z + 15)
        else:
            z_hi = min(z_hi, 75.0)
    z_center = float(rng.uniform(z_lo, max(z_lo, z_hi)))
    # circumferential extent: from a quarter to the whole circumference
    half_width = float(math.pi * np.clip(rng.beta(1.6, 1.3), 0.22, 1.0))
    bulk = depth if t_stage <= 2 else float(rng.uniform(b[1] + 0.5, b[2] - 0.15))
    focal_theta = theta0 + float(rng.uniform(-0.6, 0.6)) * half_width
    focal_half = float(min(rng.uniform(0.3, 0.8), half_width))
    focal_length = float(length * rng.uniform(0.3, 0.7))
    trait = float(rng.normal())
    return TumourSpec(
        t_stage=t_stage,
        z_center=z_center,
        length_mm=length,
        theta0=theta0,
        half_width_rad=half_width,
        depth_mm=depth,
        bulk_depth_mm=bulk,
        focal_theta=focal_theta,
        focal_half_width_rad=focal_half,
        focal_length_mm=focal_length,
        thickening=float(1.0 + 2.4 * rng.beta(1.4, 2.0)),
        t4_target=target,
        irregularity=float(rng.uniform(0.08, 0.25)),
        phases=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, 6)),
        hu=float(rng.normal(48, 6)),
        texture_trait=trait,
        texture_hu=float(np.clip(10 + 5 * trait, 3, 26)),
        texture_scale_mm=float(np.clip(3.0 - 0.6 * trait, 1.2, 5.0)),
    )


def t4_target_angle(spec: PatientSpec, target: str, z: float) -> float:
    """Direction (rad, atan2 of y over x) from the esophageal centre at height ``z`` to a T4 target."""
    ex, ey = (float(v) for v in spec.eso_center(z))
    if target == "aorta":
        return spec.aorta_angle
    if target == "trachea":
        tx, ty = spec.trachea_center(z)
        return math.atan2(float(ty) - ey, float(tx) - ex)
    heart_y = spec.eso_y - spec.outer_r - spec.heart_gap - spec.heart_semi[1]
    return math.atan2(heart_y - ey, 18.0 - ex)


def _aim_at_target(spec: PatientSpec) -> None:
    """Turn a T4 tumour's deepest focus (and its bulk with it) towards its target structure."""
    t = spec.tumour
    angle = t4_target_angle(spec, t.t4_target, t.z_center)
    t.theta0 = angle + (t.theta0 - t.focal_theta)
    t.focal_theta = angle


def _sample_lnm(rng: np.random.Generator, tumour: TumourSpec) -> int:
    logit = -0.35 + 0.75 * (tumour.t_stage - 2.5) + 0.6 * math.log(tumour.length_mm / 45.0)
    return int(rng.random() < 1 / (1 + math.exp(-logit)))


_STATIONS = ("right_rln", "left_rln", "subcarinal", "paraesophageal", "paratracheal", "lower_paraesophageal")


def _sample_nodes(rng: np.random.Generator, spec: PatientSpec) -> list[NodeSpec]:
    n_nodes = int(rng.integers(3, 8))
    n_meta = int(rng.integers(1, 4)) if spec.lnm else 0
    stations = list(rng.choice(_STATIONS, size=n_nodes, replace=True))
    if "right_rln" not in stations:
        stations[0] = "right_rln"  # every patient has a node along the right recurrent laryngeal nerve
    meta_idx = set(rng.choice(n_nodes, size=min(n_meta, n_nodes), replace=False).tolist()) if n_meta else set()
    nodes = []
    for i, station in enumerate(stations):
        metastatic = i in meta_idx
        if metastatic:  # larger, rounder, more irregular and heterogeneous: a weak, real signal
            short = float(rng.uniform(3.2, 6.5))
            ratio = float(rng.uniform(1.0, 1.45))
            irregularity = float(rng.uniform(0.08, 0.28))
            heterogeneity = float(rng.uniform(7, 18))
            necrosis = bool(rng.random() < 0.35)
        else:
            short = float(rng.uniform(2.4, 5.0))
            ratio = float(rng.uniform(1.2, 2.0))
            irregularity = float(rng.uniform(0.0, 0.12))
            heterogeneity = float(rng.uniform(3, 9))
            necrosis = False
        center = _node_position(rng, spec, station)
        nodes.append(
            NodeSpec(
                station=str(station),
                center=center,
                semi_axes=(short, short * float(rng.uniform(0.9, 1.1)), short * ratio),
                metastatic=metastatic,
                irregularity=irregularity,
                heterogeneity_hu=heterogeneity,
                necrosis=necrosis,
                hu=float(rng.normal(32, 6)),
                phase=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, 6)),
            )
        )
    return nodes


def _node_position(rng: np.random.Generator, spec: PatientSpec, station: str) -> tuple[float, float, float]:
    """A first-choice node position; the rasteriser nudges it into mediastinal fat if needed."""
    ro = spec.outer_r
    if station in ("right_rln", "left_rln", "paratracheal"):
        z = float(rng.uniform(spec.carina_z + 8, Z_EXTENT_MM - 10))
        ex, ey = spec.eso_center(z)
        tx, ty = spec.trachea_center(z)
        side = -1.0 if station != "left_rln" else 1.0  # right is -x in LPS
        if station == "paratracheal":
            return (float(tx + side * (spec.trachea_r + 10)), float(ty - 4), z)
        # tracheo-esophageal groove: between trachea and esophagus, to the side
        return (float(ex + side * (ro + 6)), float((ey + ty) / 2), z)
    if station == "subcarinal":
        z = float(rng.uniform(spec.carina_z - 28, spec.carina_z - 8))
        ex, ey = spec.eso_center(z)
        return (float(ex - 2), float(ey - ro - 8), z)
    z = float(rng.uniform(20, spec.carina_z - 5)) if station == "lower_paraesophageal" else float(rng.uniform(20, 170))
    ex, ey = spec.eso_center(z)
    ang = float(rng.uniform(0, 2 * math.pi))
    return (float(ex + (ro + 8) * math.cos(ang)), float(ey + (ro + 8) * math.sin(ang)), z)


def _clinical_staging(rng: np.random.Generator, t_stage: int, lnm: int) -> tuple[str, str]:
    """Clinical (CT-based) cT/cN: the pathological truth seen through an imperfect reader."""
    u = rng.random()
    ct = t_stage + (-1 if u < 0.15 else 1 if u > 0.85 else 0)
    ct = int(np.clip(ct, 1, 4))
    cn = lnm if rng.random() < 0.75 else 1 - lnm
    return f"T{ct}", f"N{cn}"


def stage_group(ct: str, cn: str, cm: str = "M0") -> str:
    """Simplified clinical stage group (I-IVA) from cT, cN and cM.

    A documented simplification of AJCC 8th clinical staging for ESCC:
    M1 -> IV; T4 -> IVA when N+ else III; N+ -> III; T3N0 or T2N0 -> II; T1N0 -> I.
    """
    t = int(ct[1])
    n = int(cn[1])
    if cm == "M1":
        return "IV"
    if t == 4:
        return "IVA" if n else "III"
    if n:
        return "III"
    return "II" if t >= 2 else "I"
