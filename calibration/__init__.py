"""segrt.calibration: FP16 and INT8 (Q/DQ) ONNX behind accuracy gates, on any CPU.

Entry point: :func:`segrt.calibration.api.quantize_bundle` (``segrt quantize``). Modules:

* ``fp16``: the FP16 pass on the ONNX graph, and an FP32 emulation of FP16 rounding for checks;
* ``sampling`` / ``reader``: calibration and held-out frames from any runtime source, through
  the runtime's own preprocessing (even sampling, de-duplication, coverage);
* ``collect``: streamed activation ranges (minmax / entropy / percentile) with bounded memory;
* ``qdq``: symmetric per-channel INT8 Q/DQ for TensorRT (ONNX Runtime's quantizer + FP16 remainder);
* ``gate`` / ``evaluate``: segmentation metrics against FP32 and labels, the gate;
* ``sensitivity``: which layers to keep out of low precision when the gate fails;
* ``cache``: TensorRT's legacy calibration cache format, and batches for its calibrators;
* ``trt_legacy``: the TensorRT 10.x ``IInt8*Calibrator`` built on ``cache`` and ``reader``.

Importing this package imports nothing heavy; each module imports what it needs.
"""
