"""Label codes of the phantom: full anatomy, nn-TransEC organ classes and esophageal wall layers."""

from __future__ import annotations

import numpy as np

# -- full anatomy map (written as <scan>_anatomy.nii.gz) ----------------------
AIR = 0
SUBCUTANEOUS_FAT = 1
MUSCLE = 2
LUNG = 3
BONE_CORTEX = 4
BONE_MARROW = 5
MEDIASTINAL_FAT = 6
MYOCARDIUM = 7
HEART_BLOOD = 8
PERICARDIUM = 9
AORTA = 10
TRACHEA_WALL = 11
AIRWAY_LUMEN = 12
ESOPHAGUS_WALL = 13
ESOPHAGUS_LUMEN = 14
TUMOUR = 15
LYMPH_NODE = 16
SPINAL_CANAL = 17
DISC = 18
LUNG_VESSEL = 19

ANATOMY_NAMES = {
    AIR: "air",
    SUBCUTANEOUS_FAT: "subcutaneous_fat",
    MUSCLE: "muscle",
    LUNG: "lung",
    BONE_CORTEX: "bone_cortex",
    BONE_MARROW: "bone_marrow",
    MEDIASTINAL_FAT: "mediastinal_fat",
    MYOCARDIUM: "myocardium",
    HEART_BLOOD: "heart_blood_pool",
    PERICARDIUM: "pericardium",
    AORTA: "aorta",
    TRACHEA_WALL: "trachea_wall",
    AIRWAY_LUMEN: "airway_lumen",
    ESOPHAGUS_WALL: "esophagus_wall",
    ESOPHAGUS_LUMEN: "esophagus_lumen",
    TUMOUR: "tumour",
    LYMPH_NODE: "lymph_node",
    SPINAL_CANAL: "spinal_canal",
    DISC: "intervertebral_disc",
    LUNG_VESSEL: "lung_vessel",
}

# -- nn-TransEC organ classes (the label map every task uses) ----------------
ORGAN_LABELS = {0: "background", 1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph_node", 5: "pericardium"}

# The pericardium class covers the pericardial sac and the heart it encloses.
_ANATOMY_TO_ORGAN = {
    TUMOUR: 1,
    AORTA: 2,
    ESOPHAGUS_WALL: 3,
    ESOPHAGUS_LUMEN: 3,
    LYMPH_NODE: 4,
    PERICARDIUM: 5,
    MYOCARDIUM: 5,
    HEART_BLOOD: 5,
}

# -- esophageal wall layers (written as <scan>_layers.nii.gz) -----------------
WALL_LAYERS = {0: "outside_wall", 1: "mucosa", 2: "submucosa", 3: "muscularis_propria", 4: "adventitia", 5: "lumen"}

# Structures whose contact with the tumour makes it T4 (fat plane lost).
T4_STRUCTURES = (AORTA, PERICARDIUM, MYOCARDIUM, TRACHEA_WALL, AIRWAY_LUMEN)


def organ_labels(anatomy: np.ndarray) -> np.ndarray:
    """Map a phantom anatomy map to the nn-TransEC organ classes.

    Parameters
    ----------
    anatomy : numpy.ndarray of uint8, shape (z, y, x)
        Anatomy codes of this module.

    Returns
    -------
    numpy.ndarray of uint8, same shape
        0 background, 1 tumour, 2 aorta, 3 esophagus, 4 lymph node, 5 pericardium.
    """
    lut = np.zeros(256, dtype=np.uint8)
    for code, organ in _ANATOMY_TO_ORGAN.items():
        lut[code] = organ
    return lut[anatomy]
