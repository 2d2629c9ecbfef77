"""What the acceptance run knows about this machine, probed once, and the tiny bundle it uses.

``missing(needs)`` says why a step cannot run here ("" when it can):

* ``cuda``: cuda-python (``cuda.bindings``) imports and the CUDA runtime sees a device;
* ``pycuda``: PyCUDA imports and its driver sees a device;
* ``tensorrt``: TensorRT, PyCUDA and a GPU, exactly as the TensorRT backend needs them
  (:func:`segrt.runtime.backends.select.probe_machine`).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from segrt.errors import SegrtError

SIZE = (32, 48)  # the tiny model's H, W (static shapes: CUDA graphs and DLA accept it)


def _cuda_python_reason() -> str:
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return "cuda-python (cuda.bindings) is not installed"
    from segrt.runtime import cuda_cudart

    try:
        n = cuda_cudart.device_count()
    except (SegrtError, RuntimeError, OSError) as exc:  # cuda-python 12 raises RuntimeError without a driver
        return f"cuda-python cannot reach a driver: {exc}"
    return "" if n > 0 else "cuda-python sees no CUDA device (no GPU or no driver)"


def _pycuda_reason() -> str:
    if importlib.util.find_spec("pycuda") is None:
        return "PyCUDA is not installed"
    from segrt.runtime import cuda_pycuda

    try:
        n = cuda_pycuda.device_count()
    except SegrtError as exc:
        return str(exc)
    return "" if n > 0 else "PyCUDA sees no CUDA device"


def _tensorrt_reason() -> str:
    from segrt.runtime.backends.select import probe_machine

    try:
        _, why = probe_machine()
    except (RuntimeError, OSError) as exc:  # older runtimes let a driverless cuda-python raise
        return f"no usable GPU: {exc}"
    return why


@dataclass
class AcceptanceContext:
    workdir: Path
    _reasons: dict[str, str] = field(default_factory=dict)
    _bundle: object | None = None

    def missing(self, needs: str) -> str:
        """Why steps that need ``needs`` cannot run here; "" when they can."""
        if needs == "cpu":
            return ""
        if needs not in self._reasons:
            probe = {"cuda": _cuda_python_reason, "pycuda": _pycuda_reason, "tensorrt": _tensorrt_reason}[needs]
            self._reasons[needs] = probe()
        return self._reasons[needs]

    def tiny_bundle(self):
        """The self-test's tiny model with FP32, FP16 and (where onnxruntime can) INT8 ONNX, made once."""
        if self._bundle is None:
            from segrt.tools.doctor import _fp16_onnx, _frames, _int8_onnx
            from segrt.tools.tiny_model import tiny_bundle

            bundle = tiny_bundle(self.workdir / "tiny", *SIZE, fused=True)
            _fp16_onnx(bundle)
            _int8_onnx(bundle, [f[:, ::-1].copy() for f in _frames(seed=11)])
            self._bundle = bundle
        return self._bundle
