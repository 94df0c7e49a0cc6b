"""T-stage classification from CT: the nn-TransEC KRT crop, multitask classifier, cross-validation, ablations, Grad-CAM.

``esoct.classify.krt`` is torch-free; ``multitask``, ``ablation`` and ``gradcam3d`` import torch
themselves, so ``import esoct.classify`` stays light.
"""
