"""Acquisition profiles of the phantom's centres: what differs from scanner to scanner."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CenterProfile:
    """How one centre acquires its CT scans.

    Parameters
    ----------
    name : str
        Centre identifier written to the manifest's ``center`` column.
    pixel_mm : float
        In-plane pixel spacing (x and y), mm, at default resolution.
    slice_mm : float
        Slice spacing and thickness, mm.
    noise_hu : float
        Standard deviation of the image noise, HU.
    aorta_hu : float
        Mean enhancement of the aortic blood pool (contrast timing), HU.
    body_scale : float
        Mean patient size factor of this centre's population (1 = average).
    weight : float
        Share of the cohort's patients scanned here.
    manufacturer : str
        Written to the DICOM Manufacturer tag.
    """

    name: str
    pixel_mm: float
    slice_mm: float
    noise_hu: float
    aorta_hu: float
    body_scale: float
    weight: float
    manufacturer: str

    def to_dict(self) -> dict:
        """Return the profile as a plain dict (for truth.json)."""
        return asdict(self)


DEFAULT_CENTERS: tuple[CenterProfile, ...] = (
    CenterProfile("A", pixel_mm=2.0, slice_mm=5.0, noise_hu=12.0, aorta_hu=260.0, body_scale=1.00, weight=0.5,
                  manufacturer="esoct phantom scanner A (arterial phase)"),
    CenterProfile("B", pixel_mm=1.8, slice_mm=2.5, noise_hu=18.0, aorta_hu=170.0, body_scale=0.94, weight=0.25,
                  manufacturer="esoct phantom scanner B (thin slices, venous phase)"),
    CenterProfile("C", pixel_mm=2.2, slice_mm=5.0, noise_hu=8.0, aorta_hu=215.0, body_scale=1.06, weight=0.25,
                  manufacturer="esoct phantom scanner C (late arterial)"),
)

FIELD_OF_VIEW_MM = 360.0
"""Square in-plane field of view of every phantom scan, mm."""

Z_EXTENT_MM = 200.0
"""Cranio-caudal coverage of every phantom scan (thoracic esophagus), mm."""

FULL_RES_MATRIX = 512
"""In-plane matrix at full resolution (pixel = FIELD_OF_VIEW_MM / 512)."""
