"""PyTorch modules: 2D backbones, ResoLSTM-Depth, 3D U-Net and the multitask classifier.

Every submodule imports torch; ``import esoct`` does not import this package.
"""
