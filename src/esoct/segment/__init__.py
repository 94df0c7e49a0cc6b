"""3D segmentation of the tumour and the organs around it (nn-TransEC): dataset fingerprint, plan, U-Net, inference.

``esoct.segment.plan`` (fingerprint and plan JSON) is torch-free; the network, training and
inference modules import torch themselves, so ``import esoct.segment`` stays light.
"""
