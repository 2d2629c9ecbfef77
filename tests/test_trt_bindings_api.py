"""The CUDA bindings segrt calls: cuda-python names checked on the installed module, PyCUDA
names against its documented API, and PyCUDA confined to runtime/cuda_pycuda.py."""
from __future__ import annotations

import ast
import os

import pytest

from _trt_helpers import BINDING_WHEELS, REPO, BindingsUnavailable, fetch_wheel, package_files

#: PyCUDA's documented API that segrt may use, with where it is documented.
#: doc/driver.rst (inducer/pycuda): module functions, Device, Context, Stream, Event, DeviceAllocation.
PYCUDA_DOCUMENTED = {
    "init": "driver.rst: function init(flags=0)",
    "Error": "driver.rst: exception Error (base of all PyCUDA errors)",
    "Device": "driver.rst: class Device(number)",
    "Device.count": "driver.rst: Device staticmethod count()",
    "Device.name": "driver.rst: Device method name()",
    "Device.compute_capability": "driver.rst: Device method compute_capability() -> (major, minor)",
    "Device.retain_primary_context": "driver.rst: Device method retain_primary_context() (CUDA 7.0, PyCUDA 2020.1)",
    "Context": "driver.rst: class Context",
    "Context.push": "driver.rst: Context method push()",
    "Context.pop": "driver.rst: Context staticmethod pop()",
    "pagelocked_empty": "driver.rst: function pagelocked_empty(shape, dtype, order='C', mem_flags=0)",
    "mem_alloc": "driver.rst: function mem_alloc(bytes) -> DeviceAllocation",
    "DeviceAllocation.free": "driver.rst: DeviceAllocation method free(); int(alloc) is the pointer",
    "memcpy_htod": "driver.rst: function memcpy_htod(dest, src)",
    "memcpy_htod_async": "driver.rst: function memcpy_htod_async(dest, src, stream=None); src page-locked",
    "memcpy_dtoh_async": "driver.rst: function memcpy_dtoh_async(dest, src, stream=None); dest page-locked",
    "Stream": "driver.rst: class Stream(flags=0)",
    "Stream.synchronize": "driver.rst: Stream method synchronize()",
    "Stream.handle": "src/wrapper/wrap_cudadrv.cpp: Stream .add_property('handle', &cl::handle_int)",
    "Event": "driver.rst: class Event(flags=0)",
    "Event.record": "driver.rst: Event method record(stream=None)",
    "Event.synchronize": "driver.rst: Event method synchronize()",
    "Event.time_till": "driver.rst: Event method time_till(event) -> ms, use as start.time_till(end)",
    "event_flags": "driver.rst: class event_flags (flags for Event)",
    "event_flags.DEFAULT": "driver.rst: event_flags attribute DEFAULT",
    "event_flags.BLOCKING_SYNC": "driver.rst: event_flags attribute BLOCKING_SYNC (synchronize() sleeps, no spin)",
    "host_alloc_flags": "driver.rst: class host_alloc_flags (flags for pagelocked memory)",
    "host_alloc_flags.DEVICEMAP": "driver.rst: host_alloc_flags attribute DEVICEMAP (mapped pinned memory)",
    "device_attribute": "driver.rst: class device_attribute",
    "device_attribute.INTEGRATED": "driver.rst: device_attribute attribute INTEGRATED (CUDA 2.2+)",
    "Device.get_attribute": "driver.rst: Device method get_attribute(attr)",
}
CUDA_PYCUDA = REPO / "runtime" / "cuda_pycuda.py"
CUDA_CUDART = REPO / "runtime" / "cuda_cudart.py"


def test_pycuda_is_confined_to_cuda_pycuda():
    offenders = []
    for p in package_files():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m == "pycuda" or m.startswith("pycuda.") for m in mods) and p != CUDA_PYCUDA:
                offenders.append(f"{p.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


def _pycuda_uses() -> list[tuple[str, int]]:
    """Qualified PyCUDA names used in cuda_pycuda.py: ``cuda.X`` / ``driver().X`` and methods of the
    objects they return, tracked through the attributes the module stores them in."""
    tree = ast.parse(CUDA_PYCUDA.read_text())
    kinds: dict[str, str] = {}  # local / self attr name -> PyCUDA class held
    ctor = {"Device": "Device", "Stream": "Stream", "Event": "Event", "mem_alloc": "DeviceAllocation"}
    uses = []

    def root(e: ast.AST) -> str | None:
        if isinstance(e, ast.Name) and e.id == "cuda":
            return "module"
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "driver":
            return "module"
        return None

    def kind_of(e: ast.AST) -> str | None:
        if isinstance(e, ast.Call):
            f = e.func
            if isinstance(f, ast.Attribute):
                if root(f.value) == "module":
                    return ctor.get(f.attr)
                if f.attr == "retain_primary_context":
                    return "Context"
                base = kind_of(f.value)
                if base == "Device" and f.attr == "retain_primary_context":
                    return "Context"
        if isinstance(e, ast.Name):
            return kinds.get(e.id)
        if isinstance(e, ast.Attribute):
            return kinds.get("." + e.attr)
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            k = kind_of(node.value)
            for t in node.targets:
                if k and isinstance(t, ast.Name):
                    kinds[t.id] = k
                elif k and isinstance(t, ast.Attribute):
                    kinds["." + t.attr] = k
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if root(node.value) == "module":
                uses.append((node.attr, node.lineno))
            elif isinstance(node.value, ast.Attribute) and root(node.value.value) == "module":
                uses.append((f"{node.value.attr}.{node.attr}", node.lineno))
            else:
                k = kind_of(node.value)
                if k:
                    uses.append((f"{k}.{node.attr}", node.lineno))
    return uses


def test_pycuda_calls_are_documented():
    uses = _pycuda_uses()
    names = {n for n, _ in uses}
    undocumented = [f"runtime/cuda_pycuda.py:{ln}: {n}" for n, ln in uses if n not in PYCUDA_DOCUMENTED]
    assert not undocumented, "\n".join(undocumented)
    # the walk sees the calls that matter (guards against it silently seeing nothing)
    assert {"Device.retain_primary_context", "Context.pop", "pagelocked_empty", "memcpy_htod_async",
            "memcpy_dtoh_async", "Stream.handle", "Event.time_till", "DeviceAllocation.free"} <= names


def test_pycuda_walk_catches_a_typo(tmp_path, monkeypatch):
    bad = CUDA_PYCUDA.read_text().replace("time_till(", "time_untill(")
    p = tmp_path / "cuda_pycuda.py"
    p.write_text(bad)
    monkeypatch.setattr(__import__(__name__), "CUDA_PYCUDA", p)
    assert ("Event.time_untill" in {n for n, _ in _pycuda_uses()})


def _cudart_chains() -> list[tuple[tuple[str, ...], int]]:
    """Attribute chains used on the cuda-python runtime module in cuda_cudart.py (``rt.X.Y``)."""
    tree = ast.parse(CUDA_CUDART.read_text())
    holders = {"rt", "runtime"}  # names bound to cudart() / the imported module
    chains = []
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child._parent = node  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or isinstance(node._parent, ast.Attribute):  # type: ignore[attr-defined]
            continue
        parts = []
        e: ast.AST = node
        while isinstance(e, ast.Attribute):
            parts.append(e.attr)
            e = e.value
        parts.reverse()
        if isinstance(e, ast.Name) and e.id in holders:
            chains.append((tuple(parts), node.lineno))
        elif isinstance(e, ast.Name) and e.id == "self" and parts[0] == "_rt" and len(parts) > 1:
            chains.append((tuple(parts[1:]), node.lineno))
    return chains


def test_cuda_python_names_exist_on_the_installed_bindings():
    rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda.bindings) not installed")
    chains = _cudart_chains()
    used = {c[0] for c, _ in chains}
    assert {"cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGraphInstantiate", "cudaGraphLaunch",
            "cudaGraphExecDestroy", "cudaGraphDestroy", "cudaGetErrorName", "cudaStreamCaptureMode",
            "cudaGetLastError", "cudaSetDevice", "cudaGetDeviceCount", "cudaGetDeviceProperties"} <= used
    missing = []
    for chain, line in chains:
        obj = rt
        for part in chain:
            if not hasattr(obj, part):
                missing.append(f"runtime/cuda_cudart.py:{line}: cuda.bindings.runtime.{'.'.join(chain)}")
                break
            obj = getattr(obj, part)
    assert not missing, "\n".join(missing)
    prop = rt.cudaDeviceProp()
    for field in ("name", "major", "minor"):  # read by device_info()
        assert hasattr(prop, field)


def test_cuda_python_device_count_never_raises_and_is_zero_without_a_gpu():
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda.bindings) not installed")
    from segrt.runtime.cuda_cudart import device_count

    n = device_count()  # must not raise, with or without a driver
    assert isinstance(n, int) and n >= 0
    if not (os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl-gpu")):
        assert n == 0  # no GPU device node here: no device can be counted


def test_unreachable_index_is_a_clear_skip_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_NO_INPUT", "1")
    with pytest.raises(BindingsUnavailable, match="cannot download tensorrt-cu12-bindings==10.3.0"):
        fetch_wheel(BINDING_WHEELS["10.3"], tmp_path, timeout=60)
    assert not list(tmp_path.glob("*.whl"))
    assert os.environ["PIP_INDEX_URL"].startswith("http://127.0.0.1")
