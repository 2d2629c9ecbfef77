"""Deployment targets: hand a verified bundle to NVIDIA's serving engines (Triton, DeepStream).

These modules read a bundle and write another engine's configuration; they never import torch.
"""
