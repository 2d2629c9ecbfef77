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
fill ``last_times``; the frame waits on a blocking-sync event, so the waiting
thread sleeps instead of spinning a core. Outputs are views of the pinned host
buffers: copy them if you keep them past the next ``infer()`` (and before
``close()``). On an integrated GPU (Jetson: CPU and GPU share DRAM) the pinned
buffers are mapped into the device's address space and handed to TensorRT
directly (zero-copy): no device buffers, no H2D/D2H copies.

Thread-safety rules:

* One backend instance = one ``IExecutionContext`` + one stream: use it from one
  thread at a time (the pipeline gives inference its own thread). The context is
  not thread-safe; two threads need two backends.
* CUDA work runs in the device's primary context (shared with TensorRT's own CUDA
  runtime calls, PyTorch and CuPy). Each public call pushes it on the calling
  thread and pops it after, so the thread that opens the backend need not be the
  one that runs it.
* ``close()`` must not race with ``infer()``: the caller joins the thread that
  runs ``infer()`` first (the pipeline leaves the backend open when its infer
  thread does not stop). ``close()`` synchronizes the stream, drops the
  execution context and engine, and only then frees the buffers.
* One ``trt.Logger`` serves the whole process (:func:`process_logger`): the
  plugin library keeps a raw pointer to the logger it was first given.

CUDA graph (``cuda_graph=True``): only for static shapes (an input whose profile
has min == max counts as static); cuda-python is imported at ``open()``. The
first ``infer`` runs the engine normally (warm-up), the second runs it and then
captures one ``execute_async_v3`` with cuda-python on the same stream; later
frames replay it with ``cudaGraphLaunch``. A failed capture is logged once, the
CUDA error is cleared, and the backend runs on without a graph.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from segrt.errors import BackendError, EngineError, SegrtError
from segrt.runtime import cuda_cudart, cuda_pycuda
from segrt.runtime.backends.base import Backend, TensorSpec
from segrt.runtime.trt_api import import_tensorrt, trt_path
from segrt.runtime.trt_buffers import BufferPlan, IOTensor, check_input, numpy_dtype, plan_buffers

if TYPE_CHECKING:  # annotations only; never imported at run time
    import tensorrt as trt

#: Versions each path claims; checked against NVIDIA's compiled bindings by tests/test_trt_bindings_*.py.
TRT_PATHS = {"runtime": ("10.3", "10.16", "11.4")}

_logger_lock = threading.Lock()
_LOGGER: list = []  # the process-wide trt.Logger, created once


@trt_path("runtime")
def process_logger(trt) -> trt.ILogger:
    """The one ``trt.Logger`` of this process, with TensorRT's plugins registered against it.

    ``init_libnvinfer_plugins`` stores the raw logger pointer in a global the plugins log
    through later, so the logger must outlive every engine: never create one per build/backend.
    """
    with _logger_lock:
        if not _LOGGER:
            logger = trt.Logger(trt.Logger.WARNING)
            trt.init_libnvinfer_plugins(logger, "")  # ROIAlign_TRT etc. for detection graphs
            _LOGGER.append(logger)
        return _LOGGER[0]


@trt_path("runtime")
def dla_core_count(trt) -> int:
    """DLA cores this device has (Jetson Orin: 0-2; 0 everywhere else)."""
    return int(trt.Runtime(process_logger(trt)).num_DLA_cores)


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine (``.engine`` plan file)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], *, device: int = 0, cuda_graph: bool = False,
                 engine_host_code_allowed: bool = False, dla_core: int | None = None,
                 zero_copy: bool | None = None) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.device = int(device)
        self.cuda_graph = bool(cuda_graph)
        self.engine_host_code_allowed = bool(engine_host_code_allowed)  # version-compatible plans
        self.dla_core = None if dla_core is None else int(dla_core)  # the core a DLA engine was built for
        self.zero_copy = zero_copy  # None: decided at open() (True on an integrated GPU)
        self._zero_copy = False
        self.graph_error = ""       # why the CUDA graph was given up, when it was
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
        self._infer_thread: threading.Thread | None = None  # the thread inside infer(), if any

    # -- life cycle ----------------------------------------------------------------
    def _open(self) -> None:
        if not self.engine_path.is_file():
            raise BackendError(f"{self.engine_path} does not exist", hint="build it with: segrt build BUNDLE")
        if self.cuda_graph:
            cuda_cudart.cudart()  # BackendUnavailableError now, not on the second frame
        self._trt = import_tensorrt()
        try:
            self._ctx = cuda_pycuda.primary_context(self.device)
            with cuda_pycuda.current(self._ctx):
                self._zero_copy = (cuda_pycuda.is_integrated(self.device) if self.zero_copy is None
                                   else bool(self.zero_copy))
                self._load()
                self._allocate()
                self._stream = cuda_pycuda.Stream()
                # start, h2d, compute: timing only; the last one is waited on every frame: blocking sync.
                self._events = (cuda_pycuda.Event(), cuda_pycuda.Event(), cuda_pycuda.Event(),
                                cuda_pycuda.Event(blocking=True))
        except SegrtError:
            self._release()
            raise
        except Exception as exc:  # PyCUDA errors (out of memory, no context), TensorRT's RuntimeError
            self._release()
            raise BackendError(f"cannot open {self.engine_path.name} on CUDA device {self.device}: "
                               f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._release()
            raise

    @trt_path("runtime")
    def _load(self) -> None:
        trt = self._trt
        self._runtime = trt.Runtime(process_logger(trt))
        if self.engine_host_code_allowed:
            self._runtime.engine_host_code_allowed = True
        if self.dla_core is not None:  # the core the engine runs on is the runtime's, set before deserializing
            self._runtime.DLA_core = self.dla_core
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
            if is_input and any(d < 0 for d in shape):  # min == max counts as static (trt_buffers)
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
            self._host[b.name] = cuda_pycuda.pagelocked(b.max_shape, b.dtype, mapped=self._zero_copy)
            if self._zero_copy:  # integrated GPU: TensorRT reads and writes the pinned buffer itself
                address = cuda_pycuda.mapped_device_pointer(self._host[b.name])
            else:
                self._dev[b.name] = cuda_pycuda.DeviceBuffer(b.nbytes)
                address = int(self._dev[b.name])
            if not self._context.set_tensor_address(b.name, address):
                raise EngineError(f"engine rejected the device address for {b.name!r}")
            if b.is_input:
                self._cur_shape[b.name] = b.max_shape
        self._inputs = tuple(TensorSpec(t.name, t.shape, numpy_dtype(t.dtype, t.name)) for t in tensors if t.is_input)
        self._outputs = tuple(TensorSpec(t.name, t.shape, numpy_dtype(t.dtype, t.name))
                              for t in tensors if not t.is_input)
        if self.cuda_graph and not self._plan.static:
            raise EngineError("--cuda-graph needs static shapes; this engine has a dynamic profile",
                              hint="run without --cuda-graph")

    def close(self) -> None:
        """Release everything; refused while another thread is inside ``infer()`` (join it first)."""
        busy = self._infer_thread
        if busy is not None and busy is not threading.current_thread():
            raise BackendError(f"close() while infer() runs on thread {busy.name}",
                               hint="stop and join the thread that runs inference first (the pipeline does)")
        super().close()

    def _close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Synchronize the stream, drop the graph, context, engine and runtime, then free the buffers."""
        if self._ctx is None:
            return
        with cuda_pycuda.current(self._ctx):
            try:
                if self._stream is not None:
                    self._stream.synchronize()  # nothing queued may still read or write the buffers
            finally:
                if self._graph is not None:
                    self._graph.release()
                self._graph = None
                # TensorRT objects inside the context: context before engine before runtime.
                self._context = None
                self._engine = None
                self._runtime = None
                for buf in self._dev.values():
                    buf.free()
                self._dev.clear()
                self._host.clear()
                self._stream, self._events = None, ()
        self._warm = False
        self._ctx = None

    # -- inference -----------------------------------------------------------------
    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        plan = self._plan
        missing = [s.name for s in plan.inputs if s.name not in inputs]
        if missing:
            raise BackendError(f"missing input(s) {missing}; the engine takes {[s.name for s in plan.inputs]}")
        self._infer_thread = threading.current_thread()
        try:
            with cuda_pycuda.current(self._ctx):
                return self._run(inputs)
        finally:
            self._infer_thread = None

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
        if not self._zero_copy:
            for name, host in staged.items():
                stream.htod(self._dev[name], host)
        stream.record(e_h2d)
        self._enqueue(context, stream)
        stream.record(e_compute)
        out = {}
        for spec in plan.outputs:
            shape = spec.max_shape if not spec.dynamic else tuple(int(d) for d in context.get_tensor_shape(spec.name))
            host = self._host[spec.name].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            if not self._zero_copy:
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
        if self.cuda_graph and self._warm and not self.graph_error:
            stream.synchronize()
            self._graph = cuda_cudart.capture_or_none(stream.handle, lambda: context.execute_async_v3(stream.handle),
                                                      self.engine_path.name)
            if self._graph is None:  # logged once there; this frame already ran outside the capture
                self.graph_error = "capture failed"
        self._warm = True

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"backend": self.name, "engine": self.engine_path.name, "device": self.device,
                                "cuda_graph": self.cuda_graph and not self.graph_error,
                                "zero_copy": self._zero_copy}
        if self.dla_core is not None:
            d["dla_core"] = self.dla_core
        if self._trt is not None:
            d["tensorrt"] = str(getattr(self._trt, "__version__", "?"))
        if self._plan is not None:
            d["pinned_bytes"] = self._plan.host_bytes
        return d
