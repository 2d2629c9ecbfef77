"""A real Triton Inference Server on loopback, for tests and benchmarks (CPU, Python backend only).

``nvidia-pytriton`` 0.7.0 ships a real ``tritonserver`` binary with the Python backend only (no
ONNX Runtime or TensorRT backend). It needs numpy<2, so it lives in its own cached venv, outside
the repository (:func:`ensure_server_venv`). :class:`LocalTritonServer` starts it on 127.0.0.1 on
free ports, serving a model repository written by ``segrt deploy triton --platform python``, and
stops it by its PID (SIGTERM, then SIGKILL), also when the caller fails.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

from segrt.errors import BackendUnavailableError

VENV = Path(os.environ.get("SEGRT_TRITON_VENV", Path.home() / ".cache" / "segrt-triton-venv"))
REQUIREMENTS = ("nvidia-pytriton==0.7.0", "numpy<2", "onnxruntime>=1.20")
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{PY}" / "site-packages"


def server_root(venv: Path = VENV) -> Path:
    return _site_packages(venv) / "pytriton" / "tritonserver"


def ensure_server_venv(venv: Path = VENV) -> Path:
    """Create the server venv once (pip, from the package index); return the tritonserver folder."""
    root = server_root(venv)
    if not (root / "bin" / "tritonserver").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *REQUIREMENTS], check=True, timeout=1800)
    stub = root / "backends" / "python" / "triton_python_backend_stub"
    if not stub.is_file():  # the Python backend looks for the stub of this Python beside itself
        shutil.copy2(root / "python_backend_stubs" / PY / "triton_python_backend_stub", stub)
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalTritonServer:
    """``with LocalTritonServer(repo) as srv:`` -> ``srv.url`` is ``HOST:PORT``; stopped by PID on exit."""

    def __init__(self, repository: str | os.PathLike[str], *, venv: Path = VENV, log_path: Path | None = None,
                 start_timeout_s: float = 120.0) -> None:
        self.repository = Path(repository)
        self.venv = venv
        self.log_path = log_path or self.repository.parent / "tritonserver.log"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.http_port = 0

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> "LocalTritonServer":
        root = ensure_server_venv(self.venv)
        self.http_port, grpc_port = free_port(), free_port()
        env = dict(os.environ)
        # The stub embeds libpython: it must be this interpreter's, not an older system one.
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, str(root / "external_libs"),
                                                             env.get("LD_LIBRARY_PATH", "")) if p)
        env["PYTHONPATH"] = str(_site_packages(self.venv))
        env.pop("PYTHONHOME", None)
        cmd = [str(root / "bin" / "tritonserver"), f"--model-repository={self.repository}",
               f"--backend-directory={root / 'backends'}", "--http-address=127.0.0.1",
               f"--http-port={self.http_port}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}",
               "--allow-metrics=false", "--exit-on-error=false", "--log-verbose=0"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise BackendUnavailableError(f"tritonserver exited with {self.proc.returncode} at start",
                                              hint=f"see {self.log_path}")
            if self._ready():
                return self
            failed = self._load_failure()
            if failed:
                self.stop()
                raise BackendUnavailableError(f"tritonserver could not load a model: {failed}",
                                              hint=f"see {self.log_path}")
            time.sleep(0.2)
        self.stop()
        raise BackendUnavailableError(f"tritonserver not ready after {self.start_timeout_s:.0f} s",
                                      hint=f"see {self.log_path}")

    def _load_failure(self) -> str | None:
        """The first model-load error in the log once the server gave up loading, else None."""
        text = self.log_path.read_text(errors="replace")
        if "failed to load all models" not in text:
            return None
        for line in text.splitlines():
            if "failed to load" in line and "all models" not in line:
                return line.split("] ", 1)[-1].strip().strip('"')
        return "see the log"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=1.0) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _signal_group(self, sig: int) -> None:
        """``sig`` to the server's process group (its own session): the server and its backend stubs."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the server and its Python-backend stubs now (a crash, for failure tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 20 s, then the stubs left in its process group; idempotent."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=30)
            self._signal_group(signal.SIGKILL)  # a stub orphaned by a crash must not outlive the test
            deadline = time.monotonic() + 10.0
            while self._group_alive() and time.monotonic() < deadline:  # init reaps the orphans
                time.sleep(0.05)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
