"""``triton://HOST:PORT/MODEL``: frames go to a Triton Inference Server over HTTP.

It speaks the KServe v2 inference protocol with Triton's binary tensor extension
(triton-inference-server/server ``docs/protocol/extension_binary_data.md``): one JSON header, then
the raw tensor bytes, no base64. The client is the standard library's ``http.client`` on one
kept-alive connection (a backend is used by one thread at a time), so no extra package is needed
and it runs wherever the runtime runs (a Jetson included).

Failures are one line each: no answer within ``timeout_s``; a server that is gone (the request is
retried on a fresh connection with backoff, then a :class:`BackendUnavailableError`); a model
that is not ready at ``open()``; a request the server rejects (its own message, e.g. a shape or
dtype mismatch). ``last_times`` splits a request into upload (``h2d_ms``), the wait for the answer
(``compute_ms``: network, the server's queue and its compute) and download + decode (``d2h_ms``).
"""
from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import numpy as np

from segrt.errors import BackendError, BackendUnavailableError, ConfigError
from segrt.runtime.backends.base import Backend, StageTimes, TensorSpec

SCHEME = "triton://"
#: KServe v2 datatype <-> numpy
WIRE_TYPES = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
              "FP32": np.float32}
_WIRE_FROM_NUMPY = {np.dtype(v): k for k, v in WIRE_TYPES.items()}


@dataclass(frozen=True)
class TritonAddress:
    host: str
    port: int
    model: str

    @property
    def label(self) -> str:
        return f"{SCHEME}{self.host}:{self.port}/{self.model}"


def address_from_uri(uri: str) -> TritonAddress:
    """``triton://HOST:PORT/MODEL`` -> its parts; a clear error names what is missing."""
    if not uri.startswith(SCHEME):
        raise ConfigError(f"not a Triton URI: {uri!r}", hint="use triton://HOST:PORT/MODEL")
    parts = urlsplit("http://" + uri[len(SCHEME):])
    model = parts.path.strip("/")
    if not parts.hostname or not model or "/" in model:
        raise ConfigError(f"bad Triton URI {uri!r}", hint="use triton://HOST:PORT/MODEL, e.g. triton://127.0.0.1:8000/seg")
    try:
        port = parts.port or 8000
    except ValueError as exc:
        raise ConfigError(f"bad port in {uri!r}", hint="use triton://HOST:PORT/MODEL") from exc
    return TritonAddress(parts.hostname, port, model)


class TritonBackend(Backend):
    """A remote backend: inference on a Triton server; the model's I/O come from the server's metadata."""

    name = "triton"

    def __init__(self, uri: str, *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2) -> None:
        super().__init__()
        self.address = address_from_uri(uri)
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ConfigError("triton backend: need timeout > 0, retries >= 0, backoff >= 0")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._conn: http.client.HTTPConnection | None = None
        self._batched = False
        self._phases = (0.0, 0.0, 0.0)

    # -- connection ------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange; a dropped connection is retried on a new one with backoff.

        ``self._phases`` gets the last exchange's (send, wait, receive) milliseconds."""
        label = self.address.label
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.address.host, self.address.port, timeout=self.timeout_s)
            try:
                t0 = time.perf_counter()
                self._conn.request(method, path, body=body, headers=dict(headers or {}))
                t1 = time.perf_counter()
                resp = self._conn.getresponse()
                t2 = time.perf_counter()
                data = resp.read()
                self._phases = ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3)
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (socket.timeout, TimeoutError) as exc:
                self._drop()
                raise BackendError(f"{label}: no answer within {self.timeout_s:g} s",
                                   hint="the server is overloaded or stuck; raise the timeout or add instances") from exc
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop()
                if attempt == self.retries:
                    raise BackendUnavailableError(
                        f"{label}: server unreachable after {self.retries + 1} attempts ({type(exc).__name__})",
                        hint="check that tritonserver is running and the address is right") from exc
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _server_message(body: bytes) -> str:
        try:
            return str(json.loads(body.decode("utf-8")).get("error", "")).strip() or body[:200].decode("utf-8", "replace")
        except (ValueError, UnicodeDecodeError):
            return body[:200].decode("utf-8", "replace")

    # -- life cycle ------------------------------------------------------------------
    def _open(self) -> None:
        a = self.address
        status, _, body = self._request("GET", f"/v2/models/{a.model}/ready")
        if status != 200:
            self._drop()
            raise BackendUnavailableError(f"{a.label}: model not ready ({self._server_message(body) or status})",
                                          hint="check the server's log: the model failed to load or is still loading")
        status, _, body = self._request("GET", f"/v2/models/{a.model}")
        if status != 200:
            self._drop()
            raise BackendError(f"{a.label}: no model metadata ({self._server_message(body)})")
        meta = json.loads(body)

        def spec(t: Mapping) -> TensorSpec:
            if t["datatype"] not in WIRE_TYPES:
                raise BackendError(f"{a.label}: tensor {t['name']!r} has unsupported datatype {t['datatype']}")
            shape = tuple(int(d) for d in t["shape"])
            return TensorSpec(t["name"], shape, np.dtype(WIRE_TYPES[t["datatype"]]))

        ins, outs = [spec(t) for t in meta["inputs"]], [spec(t) for t in meta["outputs"]]
        # A batching model reports its batch axis as -1; segrt sends one frame per request.
        self._batched = bool(ins) and ins[0].shape[:1] == (-1,)
        if self._batched:
            ins = [TensorSpec(s.name, (1, *s.shape[1:]), s.dtype) for s in ins]
            outs = [TensorSpec(s.name, (1, *s.shape[1:]), s.dtype) for s in outs]
        self._inputs, self._outputs = tuple(ins), tuple(outs)

    def _close(self) -> None:
        self._drop()

    # -- inference -------------------------------------------------------------------
    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        label = self.address.label
        known = {s.name: s for s in self._inputs}
        unknown = sorted(set(inputs) - set(known))
        if unknown:
            raise BackendError(f"{label}: unknown input(s) {', '.join(unknown)}", hint=f"inputs are {', '.join(known)}")
        header: dict = {"inputs": [], "outputs": [{"name": s.name, "parameters": {"binary_data": True}}
                                                  for s in self._outputs]}
        blobs = []
        for name, arr in inputs.items():
            wire = _WIRE_FROM_NUMPY.get(arr.dtype)
            if wire is None:
                raise BackendError(f"{label}: input {name!r} has dtype {arr.dtype}, which Triton cannot take",
                                   hint=f"send {known[name].dtype}")
            data = np.ascontiguousarray(arr).tobytes()
            header["inputs"].append({"name": name, "shape": list(arr.shape), "datatype": wire,
                                     "parameters": {"binary_data_size": len(data)}})
            blobs.append(data)
        head = json.dumps(header).encode()
        status, hdrs, body = self._request(
            "POST", f"/v2/models/{self.address.model}/infer", b"".join([head, *blobs]),
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
        if status != 200:
            raise BackendError(f"{label}: the server rejected the request: {self._server_message(body)}",
                               hint="send what the model's metadata says (see its input spec)")
        t_decode = time.perf_counter()
        out = self._outputs_from_response(hdrs, body)
        send, wait, recv = self._phases
        # h2d: uploading the request; compute: waiting for the answer (network + the server's queue and
        # compute); d2h: downloading and decoding it. The wait is the network+queue stage bench reports.
        self.last_times = StageTimes(h2d_ms=send, compute_ms=wait,
                                     d2h_ms=recv + (time.perf_counter() - t_decode) * 1e3,
                                     extra={"network_queue_compute_ms": wait})
        return out

    def _outputs_from_response(self, hdrs: Mapping[str, str], body: bytes) -> dict[str, np.ndarray]:
        n = int(hdrs.get("inference-header-content-length", len(body)))
        meta = json.loads(body[:n])
        result, offset = {}, n
        for o in meta["outputs"]:
            size = int(o.get("parameters", {}).get("binary_data_size", 0))
            dtype = WIRE_TYPES[o["datatype"]]
            if size:
                arr = np.frombuffer(body, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset)
                offset += size
            else:
                arr = np.asarray(o["data"], dtype=dtype)
            result[o["name"]] = arr.reshape(o["shape"])
        return result

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "server": self.address.label, "timeout_s": self.timeout_s,
                "retries": self.retries}
