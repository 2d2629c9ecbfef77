"""TensorRT backend: deserialize a plan, run it with ``execute_async_v3`` on one CUDA stream.

Same interface as the ONNX Runtime backend (:class:`~segrt.runtime.backends.base.Backend`).
Written for TensorRT 10.x and 11.x alike: every TensorRT name it uses exists in the
compiled bindings of 10.3, 10.16 and 11.4 (``TRT_PATHS`` and the binding conformance
test). It has never run: no GPU was available while it was written.

Memory: at ``open()`` every input is set to its profile MAX, the output shapes
are read back, and one page-locked host buffer plus one device buffer per I/O
tensor is allocated for that worst case (:mod:`segrt.runtime.trt_buffers`).
Per frame nothing is allocated: inputs are copied into the pinned buffer,
H2D / compute / D2H are queued on one stream, and CUDA events around each stage
fill ``last_times``. Outputs are views of the pinned host buffers: copy them
if you keep them past the next ``infer()``.

Thread-safety rules:

* One backend instance = one ``IExecutionContext`` + one stream: use it from one
  thread at a time (the pipeline gives inference its own thread). The context is
  not thread-safe; two threads need two backends.
* CUDA work runs in the device's primary context (shared with TensorRT's own CUDA
  runtime calls, PyTorch and CuPy). Each public call pushes it on the calling
  thread and pops it after, so the thread that opens the backend need not be the
  one that runs it.
* ``close()`` must not race with ``infer()``.

CUDA graph (``cuda_graph=True``): only for static shapes; the first ``infer`` runs
the engine normally (warm-up), then one ``execute_async_v3`` is captured with
cuda-python on the same stream and replayed with ``cudaGraphLaunch``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from segrt.errors import BackendError, EngineError
from segrt.runtime import cuda_pycuda
from segrt.runtime.backends.base import Backend, TensorSpec
from segrt.runtime.trt_api import import_tensorrt, trt_path
from segrt.runtime.trt_buffers import BufferPlan, IOTensor, check_input, numpy_dtype, plan_buffers

if TYPE_CHECKING:  # annotations only; never imported at run time
    import tensorrt as trt

#: Versions each path claims; checked against NVIDIA's compiled bindings by tests/test_trt_bindings_*.py.
TRT_PATHS = {"runtime": ("10.3", "10.16", "11.4")}


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine (``.engine`` plan file)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], *, device: int = 0, cuda_graph: bool = False,
                 engine_host_code_allowed: bool = False) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.device = int(device)
        self.cuda_graph = bool(cuda_graph)
        self.engine_host_code_allowed = bool(engine_host_code_allowed)  # version-compatible plans
        self._trt = None
        self._ctx = None            # CUDA primary context
        self._runtime = None
        self._engine = None
        self._context = None
        self._stream = None
        self._plan: BufferPlan | None = None
        self._profiles: dict[str, tuple] = {}
        self._host: dict[str, np.ndarray] = {}
        self._dev: dict[str, cuda_pycuda.DeviceBuffer] = {}
        self._cur_shape: dict[str, tuple[int, ...]] = {}
        self._events: tuple = ()
        self._graph = None
        self._warm = False

    # -- life cycle ----------------------------------------------------------------
    def _open(self) -> None:
        if not self.engine_path.is_file():
            raise BackendError(f"{self.engine_path} does not exist", hint="build it with: segrt build BUNDLE")
        self._trt = import_tensorrt()
        self._ctx = cuda_pycuda.primary_context(self.device)
        try:
            with cuda_pycuda.current(self._ctx):
                self._load()
                self._allocate()
                self._stream = cuda_pycuda.Stream()
                self._events = tuple(cuda_pycuda.Event() for _ in range(4))
        except BaseException:
            self._release()
            raise

    @trt_path("runtime")
    def _load(self) -> None:
        trt = self._trt
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")  # ROIAlign_TRT etc. for detection graphs
        self._runtime = trt.Runtime(logger)
        if self.engine_host_code_allowed:
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:  # version / SM mismatch: TensorRT logged why
            raise EngineError(f"TensorRT could not deserialize {self.engine_path.name} (built for another "
                              "TensorRT version or GPU, or corrupt)", hint="rebuild it: segrt build BUNDLE")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"cannot create an execution context for {self.engine_path.name} (out of GPU memory?)")

    @trt_path("runtime")
    def _io_tensors(self) -> list[IOTensor]:
        """Describe the engine's I/O; set inputs to their MAX so output shapes resolve."""
        trt = self._trt
        engine, context = self._engine, self._context
        tensors = []
        for i in range(int(engine.num_io_tensors)):
            name = str(engine.get_tensor_name(i))
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            profile = None
            if is_input and any(d < 0 for d in shape):
                mn, opt, mx = engine.get_tensor_profile_shape(name, 0)
                profile = (tuple(int(d) for d in mn), tuple(int(d) for d in opt), tuple(int(d) for d in mx))
            tensors.append(IOTensor(name, is_input, str(engine.get_tensor_dtype(name).name), shape, profile))
        for t in tensors:
            if t.is_input and t.profile is not None:
                if not context.set_input_shape(t.name, t.profile[2]):
                    raise EngineError(f"engine rejected the profile MAX shape for {t.name!r}")
        unresolved = [str(n) for n in context.infer_shapes()]
        if unresolved:
            raise EngineError(f"engine cannot resolve shapes of {unresolved} from its inputs")
        return [t if t.is_input else IOTensor(t.name, False, t.dtype, t.shape, None,
                                              tuple(int(d) for d in context.get_tensor_shape(t.name)))
                for t in tensors]

    @trt_path("runtime")
    def _allocate(self) -> None:
        tensors = self._io_tensors()
        self._plan = plan_buffers(tensors)
        self._profiles = {t.name: t.profile for t in tensors if t.is_input}
        for b in self._plan.buffers:
            self._host[b.name] = cuda_pycuda.pagelocked(b.max_shape, b.dtype)
            self._dev[b.name] = cuda_pycuda.DeviceBuffer(b.nbytes)
            if not self._context.set_tensor_address(b.name, int(self._dev[b.name])):
                raise EngineError(f"engine rejected the device address for {b.name!r}")
            if b.is_input:
                self._cur_shape[b.name] = b.max_shape
        self._inputs = tuple(TensorSpec(t.name, t.shape, numpy_dtype(t.dtype, t.name)) for t in tensors if t.is_input)
        self._outputs = tuple(TensorSpec(t.name, t.shape, numpy_dtype(t.dtype, t.name))
                              for t in tensors if not t.is_input)
        if self.cuda_graph and not self._plan.static:
            raise EngineError("--cuda-graph needs static shapes; this engine has a dynamic profile",
                              hint="run without --cuda-graph")

    def _close(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._ctx is None:
            return
        with cuda_pycuda.current(self._ctx):
            if self._graph is not None:
                self._graph.release()
            for buf in self._dev.values():
                buf.free()
            # Drop TensorRT objects inside the context: context before engine before runtime.
            self._context = self._engine = self._runtime = None
            self._dev.clear()
            self._host.clear()
            self._stream, self._events, self._graph = None, (), None
        self._warm = False
        self._ctx = None

    # -- inference -----------------------------------------------------------------
    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        plan = self._plan
        missing = [s.name for s in plan.inputs if s.name not in inputs]
        if missing:
            raise BackendError(f"missing input(s) {missing}; the engine takes {[s.name for s in plan.inputs]}")
        with cuda_pycuda.current(self._ctx):
            return self._run(inputs)

    @trt_path("runtime")
    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        plan, context, stream = self._plan, self._context, self._stream
        e_start, e_h2d, e_compute, e_d2h = self._events
        staged = {}
        for spec in plan.inputs:
            arr = np.asarray(inputs[spec.name])
            check_input(spec, arr, self._profiles.get(spec.name))
            shape = tuple(arr.shape)
            if spec.dynamic and shape != self._cur_shape[spec.name]:
                if not context.set_input_shape(spec.name, shape):
                    raise EngineError(f"engine rejected input shape {shape} for {spec.name!r}")
                self._cur_shape[spec.name] = shape
            host = self._host[spec.name].reshape(-1)[: arr.size].reshape(shape)
            np.copyto(host, arr)
            staged[spec.name] = host
        stream.record(e_start)
        for name, host in staged.items():
            stream.htod(self._dev[name], host)
        stream.record(e_h2d)
        self._enqueue(context, stream)
        stream.record(e_compute)
        out = {}
        for spec in plan.outputs:
            shape = spec.max_shape if not spec.dynamic else tuple(int(d) for d in context.get_tensor_shape(spec.name))
            host = self._host[spec.name].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            stream.dtoh(host, self._dev[spec.name])
            out[spec.name] = host
        stream.record(e_d2h)
        e_d2h.synchronize()
        self.last_times.h2d_ms = e_start.ms_until(e_h2d)
        self.last_times.compute_ms = e_h2d.ms_until(e_compute)
        self.last_times.d2h_ms = e_compute.ms_until(e_d2h)
        return out

    @trt_path("runtime")
    def _enqueue(self, context: trt.IExecutionContext, stream: cuda_pycuda.Stream) -> None:
        if self._graph is not None and self._graph.ready:
            self._graph.launch()
            return
        if not context.execute_async_v3(stream.handle):
            raise EngineError(f"TensorRT failed to enqueue {self.engine_path.name}")
        if self.cuda_graph and self._warm:
            from segrt.runtime.cuda_cudart import CudaGraph  # noqa: PLC0415 - cuda-python only when asked
            stream.synchronize()
            self._graph = CudaGraph(stream.handle)
            self._graph.capture(lambda: context.execute_async_v3(stream.handle))
        self._warm = True

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"backend": self.name, "engine": self.engine_path.name, "device": self.device,
                                "cuda_graph": self.cuda_graph}
        if self._trt is not None:
            d["tensorrt"] = str(getattr(self._trt, "__version__", "?"))
        if self._plan is not None:
            d["pinned_bytes"] = self._plan.host_bytes
        return d
