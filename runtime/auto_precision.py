"""``--precision auto``: the fastest artifact whose gate passed, measured on this machine.

The decisions are plain functions (which artifacts may run where, which timing wins, whether a
cached decision still holds, how to say why); :func:`resolve_auto` strings them together with
a short timed run and caches the result in the manifest under a fingerprint of the machine
(:mod:`segrt.runtime.machine`), so the second run on the same machine does not measure again.
A different machine, a different runtime version or a re-quantized artifact measures again.

On a CPU the candidates are the bundle's artifacts on every CPU backend installed (ONNX
Runtime, OpenVINO); FP16 is a candidate only on a CPU with native FP16 arithmetic, and the
TensorRT-shaped ``int8`` on ONNX Runtime only when there is no ``int8-cpu``. Where TensorRT runs, the
candidates are the precisions with an engine built for this GPU.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from segrt.errors import BundleError, ConfigError, SegrtError
from segrt.runtime.bundle import Bundle
from segrt.runtime.machine import CpuInfo, cpu_fingerprint, gpu_fingerprint, this_cpu
from segrt.runtime.manifest import CPU_ONLY_PRECISIONS, Manifest

log = logging.getLogger("segrt.auto")
AUTO = "auto"
CPU_BACKENDS = ("onnxruntime", "openvino")
MEASURE_WARMUP = 2
MEASURE_ROUNDS = 4  # candidates take turns, so a change in the machine's load hits them all alike
MEASURE_PER_ROUND = 3


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` chose, the timings behind it (``precision/backend`` -> ms) and whether cached."""

    precision: str
    backend: str
    ms: Mapping[str, float]
    where: str  # "this CPU" / the GPU's name
    cached: bool = False
    skipped: Mapping[str, str] = field(default_factory=dict)  # candidate -> why it was not measured

    @property
    def key(self) -> str:
        return candidate_key(self.precision, self.backend)

    def explain(self) -> str:
        """e.g. ``int8-cpu: 47 ms vs fp32 62 ms on this CPU``."""
        return explain_choice(self.key, self.ms, self.where) + (" (cached)" if self.cached else "")


def candidate_key(precision: str, backend: str) -> str:
    return f"{precision}/{backend}"


def passed_gate(manifest: Manifest, precision: str) -> bool:
    """FP32 is the reference; any other artifact runs only when its accuracy gate passed."""
    art = manifest.artifacts.get(precision)
    if art is None:
        return False
    if precision == "fp32":
        return True
    return bool(art.accuracy and art.accuracy.get("passed"))


def cpu_candidates(manifest: Manifest, cpu: CpuInfo, backends: Sequence[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(precision, backend) pairs worth timing on this CPU, and the others with the reason."""
    skipped: dict[str, str] = {}
    precisions = []
    order = ("fp32", "fp32-unfused", "int8-cpu", "int8-cpu-unfused", "int8", "fp16")
    for p in sorted(manifest.artifacts, key=lambda k: order.index(k) if k in order else 9):
        if not passed_gate(manifest, p):
            skipped[p] = "its accuracy gate did not pass"
        elif p == "fp16" and not cpu.has_fp16_arithmetic:
            skipped[p] = "this CPU has no native FP16 arithmetic (FP16 is never faster than FP32 here)"
        else:
            precisions.append(p)
    pairs = []
    for p in precisions:
        for b in backends:
            # ONNX Runtime runs the TensorRT-shaped graph (FP16 remainder) several times slower than
            # int8-cpu; OpenVINO reads its Q/DQ natively (on LR-ASPP here it was the fastest form)
            if p == "int8" and b == "onnxruntime" and passed_gate(manifest, "int8-cpu"):
                skipped[candidate_key(p, b)] = "the TensorRT-shaped graph; int8-cpu is ONNX Runtime's CPU INT8"
            else:
                pairs.append((p, b))
    return pairs, skipped


def gpu_candidates(manifest: Manifest, engine_precisions: Iterable[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Precisions with an engine for this GPU whose gate passed; int8-cpu never (TensorRT does not build it)."""
    skipped: dict[str, str] = {}
    out = []
    for p in sorted(set(engine_precisions)):
        if p in CPU_ONLY_PRECISIONS:
            skipped[p] = "a CPU-only artifact"
        elif not passed_gate(manifest, p):
            skipped[p] = "its accuracy gate did not pass"
        else:
            out.append((p, "tensorrt"))
    return out, skipped


def fastest(ms: Mapping[str, float]) -> str:
    """The candidate key with the lowest time (ties: the first listed)."""
    if not ms:
        raise ConfigError("--precision auto found nothing it could run", hint="export or quantize the bundle first")
    return min(ms, key=lambda k: ms[k])


def explain_choice(key: str, ms: Mapping[str, float], where: str) -> str:
    """``int8-cpu: 47 ms vs fp32 62 ms on this CPU`` (the backend named only when several ran)."""
    backends = {k.split("/", 1)[1] for k in ms}

    def name(k: str) -> str:
        return k if len(backends) > 1 else k.split("/", 1)[0]

    def t(v: float) -> str:
        return f"{v:.0f} ms" if v >= 10 else f"{v:.2g} ms"

    others = sorted((k for k in ms if k != key), key=lambda k: ms[k])
    vs = ", ".join(f"{name(k)} {t(ms[k])}" for k in others)
    return f"{name(key)}: {t(ms[key])}" + (f" vs {vs}" if vs else "") + f" on {where}"


def artifact_shas(manifest: Manifest, candidates: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {p: manifest.artifacts[p].sha256 for p, _ in candidates if p in manifest.artifacts}


def cached_choice(manifest: Manifest, fingerprint: str, shas: Mapping[str, str]) -> dict | None:
    """The manifest's record for ``fingerprint`` if it was measured on exactly these artifacts."""
    rec = manifest.speed.get(fingerprint)
    if not isinstance(rec, Mapping) or dict(rec.get("artifacts") or {}) != dict(shas):
        return None
    ms = rec.get("ms")
    if not isinstance(ms, Mapping) or rec.get("choice") not in ms:
        return None
    return dict(rec)


def record_for(choice_key: str, ms: Mapping[str, float], shas: Mapping[str, str], machine: str) -> dict:
    return {"choice": choice_key, "ms": {k: round(float(v), 2) for k, v in ms.items()}, "artifacts": dict(shas),
            "machine": machine, "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


# -- measuring ----------------------------------------------------------------------------------
def interleaved_medians(calls: Mapping[str, Callable[[], object]], *, warmup: int = MEASURE_WARMUP,
                        rounds: int = MEASURE_ROUNDS, per_round: int = MEASURE_PER_ROUND) -> dict[str, float]:
    """Median ms of each call, timed in rounds that rotate the order (one untimed call before
    each block lets the previous runtime's threads go idle)."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            calls[name]()
            for _ in range(per_round):
                t0 = time.perf_counter()
                calls[name]()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {n: float(np.median(v)) for n, v in samples.items()}


def _runtime_versions(backends: Sequence[str]) -> str:
    from importlib import metadata
    parts = []
    for b in backends:
        try:
            parts.append(f"{b}={metadata.version(b)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{b}=?")
    return ",".join(parts)


def installed_cpu_backends() -> list[str]:
    from segrt.runtime.backends.openvino import openvino_available
    return ["onnxruntime"] + (["openvino"] if openvino_available() else [])


def resolve_auto(bundle: Bundle, *, backend: str = "auto", threads: int | None = None,
                 echo: Callable[[str], None] | None = None, save: bool = True,
                 measure: Callable[[Bundle, Sequence[tuple[str, str]], int | None],
                                   tuple[dict[str, float], dict[str, str]]] | None = None) -> AutoChoice:
    """Choose the precision (and, with ``backend="auto"`` on a CPU, the backend) for this machine.

    Uses the manifest's cached decision for this machine when it was measured on the same
    artifacts; otherwise times the candidates briefly, interleaved (``measure``), and caches the result
    (``save``; a read-only bundle only logs that it could not). Prints the choice and why.
    """
    from segrt.runtime.backends.select import BACKENDS, probe_machine

    say = echo or log.info
    if backend.startswith("triton://"):
        raise ConfigError("--precision auto chooses among the bundle's artifacts; a triton:// server runs the model "
                          "it serves", hint="drop --precision auto with a triton:// backend")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint="use one of: " + ", ".join(BACKENDS))
    manifest = bundle.manifest
    on_gpu = False
    if backend in ("auto", "tensorrt"):
        machine, why = probe_machine()
        engines = [e.precision for e in manifest.engines if machine.gpu_name and e.gpu_name == machine.gpu_name]
        on_gpu = not why and bool(engines)
        if backend == "tensorrt" and not on_gpu:
            raise ConfigError(f"--precision auto --backend tensorrt: {why or 'no engine for this GPU in the bundle'}",
                              hint=f"build one: segrt build {bundle.path} --precision fp16")
    if on_gpu:
        candidates, skipped = gpu_candidates(manifest, engines)
        fingerprint = gpu_fingerprint(str(machine.gpu_name), machine.compute_capability, str(machine.trt_version))
        where = str(machine.gpu_name)
    else:
        cpu = this_cpu()
        backends = installed_cpu_backends() if backend == "auto" else [backend]
        candidates, skipped = cpu_candidates(manifest, cpu, backends)
        fingerprint = cpu_fingerprint(cpu, "+".join(backends), _runtime_versions(backends), threads)
        where = "this CPU"
    if not candidates:
        raise BundleError(f"--precision auto: bundle {bundle.path} has nothing that can run here",
                          hint="export the bundle again (segrt export)")
    shas = artifact_shas(manifest, candidates)
    rec = cached_choice(manifest, fingerprint, shas)
    if rec is not None:
        p, b = rec["choice"].split("/", 1)
        choice = AutoChoice(p, b, dict(rec["ms"]), where, cached=True, skipped=skipped)
        say(f"precision auto: {choice.explain()}")
        return choice
    ms, failed = (measure or measure_candidates)(bundle, candidates, threads)
    skipped.update(failed)
    key = fastest(ms)
    p, b = key.split("/", 1)
    choice = AutoChoice(p, b, ms, where, cached=False, skipped=skipped)
    say(f"precision auto: {choice.explain()} (measured; cached in {bundle.path.name}/segrt.json)")
    if save:
        _save(bundle, fingerprint, record_for(key, ms, shas, where if on_gpu else this_cpu().describe()))
    return choice


CAMERA_FRAME = (1080, 1920)  # what the pipeline's preprocessing starts from


def frame_step(manifest: Manifest, backend, frame: np.ndarray) -> Callable[[], object]:
    """One frame of the pipeline's work for ``manifest``'s artifact: preprocess (resize, and the
    normalisation an unfused graph leaves to the runtime), infer, decode the mask (the argmax of
    an unfused graph). Fused and unfused forms are compared on this, not on the graph alone."""
    from segrt.runtime.postprocess import MaskDecoder
    from segrt.runtime.preprocess import Preprocessor

    pre = Preprocessor(manifest)
    if manifest.output.kind == "instances":
        return lambda: backend.infer(pre.pre(frame)[0])
    dec = MaskDecoder(manifest)
    mask = np.zeros((manifest.input.height, manifest.input.width), np.uint8)
    return lambda: dec.decode(backend.infer(pre.pre(frame)[0]), out=mask)


def measure_candidates(bundle: Bundle, candidates: Sequence[tuple[str, str]],
                       threads: int | None) -> tuple[dict[str, float], dict[str, str]]:
    """Median ms of one pipeline frame (pre + infer + post) per ``precision/backend`` on this
    machine, and the candidates that could not run here with the reason. Every backend is
    opened once, then timed interleaved."""
    from segrt.runtime.backends.select import backend_for_bundle

    frame = np.random.default_rng(0).integers(0, 256, (*CAMERA_FRAME, 3), dtype=np.uint8)
    opened, steps, failed = {}, {}, {}
    try:
        for p, b in candidates:
            key = candidate_key(p, b)
            try:
                be = backend_for_bundle(bundle, backend=b, precision=p, threads=threads, echo=log.debug,
                                        prefer_cpu_int8=False)
                be.open()
                opened[key] = be
                steps[key] = frame_step(bundle.manifest.for_precision(p), be, frame)
            except SegrtError as exc:
                failed[key] = f"cannot run here: {exc}"
        ms = interleaved_medians(steps)
    finally:
        for be in opened.values():
            be.close()
    return ms, failed


def _save(bundle: Bundle, fingerprint: str, record: dict) -> None:
    try:
        fresh = Bundle.open(bundle.path)  # another process may have written since we opened it
        speed = dict(fresh.manifest.speed)
        speed[fingerprint] = record
        fresh.update(fresh.manifest.replace(speed=speed))
        bundle.manifest = fresh.manifest
    except (OSError, SegrtError) as exc:
        log.warning("precision auto: could not cache the measurement in %s (%s); it will be measured again",
                    bundle.path, exc)


__all__ = ["AUTO", "AutoChoice", "cpu_candidates", "gpu_candidates", "fastest", "explain_choice", "cached_choice",
           "record_for", "resolve_auto", "interleaved_medians", "measure_candidates", "frame_step", "passed_gate"]
