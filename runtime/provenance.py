"""Engine provenance: what an engine was built with, and whether it can run here.

A serialized TensorRT plan runs only on the exact TensorRT version and the GPU
compute capability it was built for (``deserialize_cuda_engine`` returns None
and logs "please rebuild" otherwise). The manifest records both per engine, as
a sidecar: nothing is ever prepended to the plan (that breaks trtexec and
Polygraphy). :func:`check_engine` compares a record with this machine before
anything is deserialized, and returns a decision with the reason:

* ``ok``       deserialize and run it
* ``rebuild``  rebuild it from the bundle's ONNX (TensorRT and the ONNX are here)
* ``fallback`` run ONNX Runtime instead
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from segrt.runtime.manifest import EngineRecord
from segrt.runtime.trt_api import parse_version

OK, REBUILD, FALLBACK = "ok", "rebuild", "fallback"


@dataclass(frozen=True)
class MachineInfo:
    """This machine as the TensorRT backend sees it. None means "not present"."""

    trt_version: str | None
    gpu_name: str | None
    compute_capability: tuple[int, int] | None
    cpu_arch: str | None = None        # platform.machine(): x86_64 / aarch64
    jetson_model: str | None = None    # device-tree model ("NVIDIA Jetson AGX Orin Developer Kit"); None off Jetson
    dla_cores: int | None = None       # DLA cores here (None: unknown)


@dataclass(frozen=True)
class Decision:
    action: str          # ok / rebuild / fallback
    reason: str
    warning: str = ""    # set when running is allowed but not ideal

    @property
    def ok(self) -> bool:
        return self.action == OK


def make_record(*, precision: str, path: str, sha256: str, trt_version: str, gpu_name: str,
                compute_capability: Sequence[int], onnx_sha256: str,
                build_options: Mapping[str, Any] | None = None,
                layer_precisions: Mapping[str, int] | None = None,
                built_at: str | None = None) -> EngineRecord:
    """An EngineRecord with a UTC timestamp."""
    cc = (int(compute_capability[0]), int(compute_capability[1]))
    return EngineRecord(
        precision=precision, path=path, sha256=sha256, trt_version=str(trt_version), gpu_name=str(gpu_name),
        compute_capability=cc, onnx_sha256=onnx_sha256, build_options=dict(build_options or {}),
        built_at=built_at or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        layer_precisions=dict(layer_precisions or {}),
    )


def _cc(cc: Sequence[int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def check_engine(record: EngineRecord, machine: MachineInfo, *, engine_sha256: str | None,
                 onnx_sha256: str | None) -> Decision:
    """Can ``record``'s engine run on ``machine``?

    ``engine_sha256`` is the hash of the engine file now (None: file missing);
    ``onnx_sha256`` the hash of the bundle's ONNX it was built from (None: missing).
    """
    can_rebuild = machine.trt_version is not None and machine.gpu_name is not None and onnx_sha256 is not None

    def mismatch(why: str) -> Decision:
        if can_rebuild:
            return Decision(REBUILD, why + "; rebuilding it from the bundle's ONNX")
        missing = ("TensorRT" if machine.trt_version is None else
                   "a GPU" if machine.gpu_name is None else "the ONNX it was built from")
        return Decision(FALLBACK, why + f"; cannot rebuild without {missing}: using ONNX Runtime")

    if machine.trt_version is None:
        return Decision(FALLBACK, "TensorRT is not installed: using ONNX Runtime")
    if machine.gpu_name is None or machine.compute_capability is None:
        return Decision(FALLBACK, "no NVIDIA GPU found: using ONNX Runtime")
    if engine_sha256 is None:
        return mismatch(f"engine {record.path} is missing")
    if engine_sha256 != record.sha256:
        return mismatch(f"engine {record.path} does not match its checksum (modified or truncated)")

    opts = record.build_options or {}
    built_v, here_v = parse_version(record.trt_version), parse_version(machine.trt_version)
    if built_v != here_v:
        # A version-compatible plan embeds a lean runtime and runs on the same or a later TensorRT.
        if not (opts.get("version_compatible") and built_v < here_v):
            return mismatch(f"engine built with TensorRT {record.trt_version}, this is {machine.trt_version}")

    platform_mismatch = _platform_mismatch(opts, machine)
    if platform_mismatch:
        return mismatch(platform_mismatch)

    built_cc, here_cc = tuple(record.compute_capability), tuple(machine.compute_capability)
    hw = str(opts.get("hardware_compat") or "NONE")
    warning = ""
    if built_cc != here_cc:
        # Hardware compatibility is a discrete-GPU feature: never run such a plan on a Jetson.
        if not (hw == "AMPERE_PLUS" and built_cc >= (8, 0) and here_cc >= (8, 0) and not machine.jetson_model):
            return mismatch(f"engine built for compute capability {_cc(built_cc)} ({record.gpu_name}), "
                            f"this GPU is {_cc(here_cc)} ({machine.gpu_name})")
    elif record.gpu_name != machine.gpu_name and hw == "NONE":
        why = (f"engine built on {record.gpu_name}, running on {machine.gpu_name} "
               f"(same compute capability {_cc(here_cc)})")
        if can_rebuild:
            return Decision(REBUILD, why + ": tactics were tuned for the other GPU; rebuilding")
        warning = why + ": TensorRT runs it, but rebuild on this GPU for best speed"

    if onnx_sha256 is not None and record.onnx_sha256 and onnx_sha256 != record.onnx_sha256:
        return mismatch("the bundle's ONNX changed since the engine was built")
    return Decision(OK, f"engine {record.path} matches this machine (TensorRT {machine.trt_version}, "
                        f"{machine.gpu_name}, SM {_cc(here_cc)})", warning)


def _platform_mismatch(opts: Mapping[str, Any], machine: MachineInfo) -> str:
    """Why the engine's platform (CPU architecture, Jetson module, DLA cores) is not this one ("" if it is).

    Records written before these fields existed carry none of them: then only a
    hardware-compatible plan on a Jetson is refused (it was built on a desktop).
    """
    built_arch, here_arch = opts.get("cpu_arch"), machine.cpu_arch
    if built_arch and here_arch and built_arch != here_arch:
        return (f"engine built on a {built_arch} machine, this one is {here_arch} "
                "(plans are not portable across platforms)")
    hw = str(opts.get("hardware_compat") or "NONE")
    if hw != "NONE" and machine.jetson_model:
        return (f"engine built with hardware compatibility {hw} for desktop GPUs, "
                f"this is a Jetson ({machine.jetson_model})")
    built_jetson = opts.get("jetson_model")
    if built_jetson and machine.jetson_model and built_jetson != machine.jetson_model:
        return (f"engine built on {built_jetson}, this is {machine.jetson_model} "
                "(every Orin reports GPU \"Orin\", SM 8.7)")
    core = opts.get("dla_core")
    if core is not None and machine.dla_cores is not None and int(core) >= machine.dla_cores:
        return f"engine runs on DLA core {core}, this device has {machine.dla_cores} DLA core(s)"
    return ""


def engines_for(records: Sequence[EngineRecord], precision: str, machine: MachineInfo) -> list[EngineRecord]:
    """Engines of ``precision``: built for this TensorRT and GPU first, then same GPU name, newest first."""
    def rank(r: EngineRecord) -> tuple:
        same_trt = machine.trt_version is not None and r.trt_version == machine.trt_version
        same_cc = (machine.compute_capability is not None
                   and tuple(r.compute_capability) == tuple(machine.compute_capability))
        return (not (same_trt and same_cc), r.gpu_name != machine.gpu_name, -_timestamp(r.built_at))
    return sorted((r for r in records if r.precision == precision), key=rank)


def _timestamp(ts: str) -> float:
    try:
        return _dt.datetime.fromisoformat(ts).timestamp()
    except (TypeError, ValueError):
        return 0.0


def engine_file(bundle_path: Path, record: EngineRecord) -> Path:
    return Path(bundle_path) / record.path
