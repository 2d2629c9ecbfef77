"""Steps of ``segrt quantize`` shared by its variants: the held-out evaluator, streamed
calibration with its provenance, and one clear error for a failing graph conversion."""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import onnx

from segrt.calibration.collect import CalibrationRanges, calibrate_ranges, tensors_to_calibrate
from segrt.calibration.evaluate import EvalSet, agreement_with, compare_masks, predict_masks
from segrt.calibration.gate import PrecisionAccuracy
from segrt.calibration.progress import progress_bar
from segrt.calibration.reader import SourceCalibrationReader
from segrt.calibration.sampling import FrameSampler, SplitPlan
from segrt.errors import CalibrationError, SegrtError, first_line
from segrt.runtime.bundle import Bundle
from segrt.runtime.redact import redact


class Evaluator:
    """Runs candidate models on the held-out set and compares them with FP32."""

    def __init__(self, bundle: Bundle, eval_set: EvalSet, fp32_model: onnx.ModelProto, threads: int | None,
                 progress: bool, sensitivity_frames: int) -> None:
        self.manifest = bundle.manifest
        self.eval_set = eval_set
        self.threads = threads
        self.progress = progress
        self.num_classes = self.manifest.output.num_classes
        bar = progress_bar(len(eval_set), "fp32 reference", progress)
        self.ref = predict_masks(fp32_model, self.manifest, eval_set, threads, on_frame=bar.update)
        bar.close()
        n = min(sensitivity_frames, len(eval_set))
        self.sub_idx = sorted(set(np.linspace(0, len(eval_set) - 1, n).round().astype(int).tolist()))
        self.sub = EvalSet([eval_set.inputs[i] for i in self.sub_idx], [eval_set.labels[i] for i in self.sub_idx],
                           eval_set.coverage, eval_set.input_name)
        self.sub_ref = [self.ref[i] for i in self.sub_idx]

    def fp32_row(self) -> PrecisionAccuracy:
        return PrecisionAccuracy("fp32", vs_fp32=None,
                                 vs_labels=compare_masks(self.ref, self.eval_set.labels, self.num_classes))

    def agreement(self, model: onnx.ModelProto, subset: bool = False) -> float:
        es, ref = (self.sub, self.sub_ref) if subset else (self.eval_set, self.ref)
        return agreement_with(predict_masks(model, self.manifest, es, self.threads), ref)

    def row(self, precision: str, emulated: onnx.ModelProto, artifact: onnx.ModelProto) -> PrecisionAccuracy:
        bar = progress_bar(2 * len(self.eval_set), f"evaluating {precision}", self.progress)
        emu = predict_masks(emulated, self.manifest, self.eval_set, self.threads, on_frame=bar.update)
        art = predict_masks(artifact, self.manifest, self.eval_set, self.threads, on_frame=bar.update)
        bar.close()
        return PrecisionAccuracy(
            precision,
            vs_fp32=compare_masks(emu, self.ref, self.num_classes),
            vs_labels=compare_masks(emu, self.eval_set.labels, self.num_classes),
            ort_vs_fp32=compare_masks(art, self.ref, self.num_classes),
        )


def conversion_errors(what: str):
    """Turn an unexpected failure inside a graph conversion into one clear CalibrationError."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SegrtError:
                raise
            except Exception as exc:  # onnx/ORT quantizer raise many unrelated types
                raise CalibrationError(
                    f"{what} conversion failed on this graph: {type(exc).__name__}: {first_line(exc, 300)}",
                    hint="run with -v for the traceback and report it with the model's ONNX") from exc
        return inner
    return wrap


Builder = Callable[[tuple[str, ...]], tuple[onnx.ModelProto, onnx.ModelProto, dict]]


def calibrate_for_quantize(prepared: onnx.ModelProto, bundle: Bundle, plan: SplitPlan, calib_frames: int, method: str,
               op_types: Sequence[str], threads: int | None, progress: bool) -> tuple[CalibrationRanges, dict]:
    sampler = FrameSampler(plan.calib_uri, calib_frames, index_range=plan.calib_range)
    bar = progress_bar(calib_frames, f"calibrating ({method})", progress)
    reader = SourceCalibrationReader(sampler, bundle.manifest, on_frame=bar.update)
    tensors = tensors_to_calibrate(prepared, op_types)
    try:
        ranges = calibrate_ranges(prepared, reader, tensors, method=method, threads=threads,
                                  input_shape=bundle.manifest.input.shape)
    except CalibrationError as exc:
        if sampler.coverage.kept == 0:
            raise CalibrationError(f"calibration source {plan.calib_uri} delivered no usable frames",
                                   hint="check the path/URI (an empty folder or unreadable video?); "
                                        "segrt never calibrates on random data") from exc
        raise
    finally:
        bar.close()
    cov = sampler.coverage
    prov = {
        "source": redact(plan.calib_uri), "method": method, "frames": cov.kept, "requested": cov.requested,
        "mode": cov.mode, "index_range": list(cov.index_range) if cov.index_range else None,
        "source_frames": cov.source_frames, "dedup_dropped": cov.dropped_duplicates,
        "unreadable": cov.unreadable, "diversity": cov.diversity,
        "thumbnails_sha256": cov.thumbnails_sha256, "tensors": len(ranges.amax),
        "seconds": round(cov.seconds, 1),
    }
    return ranges, prov


__all__ = ["Evaluator", "conversion_errors", "calibrate_for_quantize", "Builder"]
