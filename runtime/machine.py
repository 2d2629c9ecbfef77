"""What this machine computes with, as a short fingerprint: the key of a cached speed decision.

A speed measured on one machine says nothing about another, so ``--precision auto`` keys
what it measured by :func:`cpu_fingerprint` (CPU model, the SIMD flags that change which
kernels run, core count, ONNX Runtime version) or :func:`gpu_fingerprint` (GPU name,
compute capability, TensorRT version). Plain functions over ``/proc/cpuinfo`` text, so the
decisions are testable with any CPU's text.
"""
from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# Flags that select different INT8 / FP16 / FP32 kernels in ONNX Runtime and OpenVINO.
KERNEL_FLAGS = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    "amx_fp16", "avx_vnni_int8",
    # ARM (``Features`` line)
    "asimd", "asimdhp", "fphp", "asimddp", "i8mm", "sve", "sve2", "bf16",
})
# Native FP16 arithmetic (not just conversion: F16C only converts).
FP16_ARITHMETIC_FLAGS = frozenset({"avx512_fp16", "amx_fp16", "asimdhp", "fphp"})
ARM_MACHINES = ("aarch64", "arm64", "armv8l", "armv7l")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the kernels see it."""

    model: str
    arch: str  # platform.machine(): x86_64, aarch64, ...
    flags: frozenset[str]
    cores: int

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ARM_MACHINES

    @property
    def has_vnni(self) -> bool:
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def has_fp16_arithmetic(self) -> bool:
        """Native FP16 math; without it an FP16 graph runs through conversions, never faster."""
        return bool(self.flags & FP16_ARITHMETIC_FLAGS)

    def describe(self) -> str:
        simd = ", ".join(sorted(self.flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8",
                                              "avx512_fp16", "asimdhp", "asimddp", "i8mm"})) or "no AVX2"
        return f"{self.model} ({self.arch}, {self.cores} cores, {simd})"


def cpu_info_from_text(cpuinfo: str, arch: str, cores: int) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` text (x86 ``model name``/``flags``, ARM ``Features``/``CPU part``)."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if not model and key in ("model name", "Model", "Hardware", "cpu model"):
            model = value.strip()
        elif not flags and key in ("flags", "Features"):
            flags = set(value.split())
    return CpuInfo(model or platform.processor() or arch, arch, frozenset(flags & KERNEL_FLAGS), cores)


def this_cpu() -> CpuInfo:
    """This machine's CPU (``/proc/cpuinfo`` where it exists)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cpu_info_from_text(text, platform.machine(), cores)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def cpu_fingerprint(cpu: CpuInfo, runtime: str, runtime_version: str, threads: int | None) -> str:
    """``cpu:<digest>`` of what decides a CPU backend's speed."""
    return "cpu:" + _digest(cpu.model, cpu.arch, ",".join(sorted(cpu.flags)), cpu.cores, runtime,
                            runtime_version, threads or "default")


def gpu_fingerprint(gpu_name: str, compute_capability: tuple[int, int] | None, trt_version: str) -> str:
    """``gpu:<digest>`` of the GPU and TensorRT version an engine's speed depends on."""
    return "gpu:" + _digest(gpu_name, compute_capability, trt_version)


__all__ = ["CpuInfo", "cpu_info_from_text", "this_cpu", "cpu_fingerprint", "gpu_fingerprint"]
