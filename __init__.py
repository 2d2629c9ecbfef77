"""segrt: real-time image segmentation from PyTorch to ONNX Runtime and TensorRT."""
from __future__ import annotations

__version__ = "0.1.0"

from segrt.errors import SegrtError  # noqa: E402

__all__ = ["SegrtError", "__version__"]
