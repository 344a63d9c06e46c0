"""lightning_pc: PyTorch Lightning plugin for deep learning on 3D point clouds."""

__version__ = "0.1.0.dev0"
