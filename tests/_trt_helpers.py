"""The TensorRT binding conformance checker (used by tests/test_trt_bindings_*.py).

Three parts:

1. :func:`binding_identifiers`: the identifier set of NVIDIA's compiled
   ``tensorrt_bindings/tensorrt.so``. pybind11 stores every class, method,
   property and enum-member name as a NUL-terminated string; the linker merges
   a string into the tail of a longer one ("INPUT" lives inside
   "CONDITIONAL_INPUT"), so a name counts as present when it is a whole string
   or the tail of one. Names in docstrings do not count (11.4 still mentions
   "FP16" in prose but has no ``FP16`` string: ``BuilderFlag.FP16`` is gone).
2. :func:`scan_source`: an AST walk of a TensorRT module. It reads the module's
   ``TRT_PATHS`` mapping (path -> claimed releases) and each function's
   ``@trt_path(...)`` marker, and collects every attribute used on the ``trt``
   module and on TensorRT objects (values derived from ``trt`` by attribute
   access or calls, parameters annotated ``trt.X``, ``self.x`` attributes
   assigned such values, methods of classes deriving from a TensorRT class,
   constant names given to getattr/hasattr/setattr).
3. :func:`check_uses`: every collected name against the identifier set of each
   release its function claims; a miss is reported with file, line and release.

Wheels are fetched once with ``pip download`` into ``$SEGRT_CACHE/trt-bindings``
(default ``~/.cache/segrt/trt-bindings``) and their identifier sets cached
beside them as text, so a rerun reads three small files.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

#: release key -> the PyPI requirement whose wheel holds that release's compiled bindings
BINDING_WHEELS = {
    "10.3": "tensorrt-cu12-bindings==10.3.0",
    "10.16": "tensorrt-cu12-bindings==10.16.1.11",
    "11.4": "tensorrt-cu13-bindings==11.4.0.106",
}
#: Attributes of the ``tensorrt`` *package* (tensorrt/__init__.py), not of the compiled module.
PACKAGE_LEVEL = frozenset({"__version__"})

_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
REPO = Path(__file__).resolve().parents[1]


# -- 1. identifier sets ----------------------------------------------------------------
class IdentifierSet:
    """Identifiers of one tensorrt.so, with tail lookup for linker-merged strings."""

    def __init__(self, strings: Iterable[str]) -> None:
        self.strings = frozenset(strings)
        self._tails: dict[str, bool] = {}
        by_last: dict[str, list[str]] = {}
        for s in self.strings:
            by_last.setdefault(s[-1], []).append(s)
        self._by_last = by_last

    def __contains__(self, name: str) -> bool:
        if name in self.strings:
            return True
        hit = self._tails.get(name)
        if hit is None:
            hit = any(s.endswith(name) for s in self._by_last.get(name[-1:], ()))
            self._tails[name] = hit
        return hit

    def __len__(self) -> int:
        return len(self.strings)


def binding_identifiers(so_bytes: bytes) -> IdentifierSet:
    """Whole NUL-terminated strings of ``so_bytes`` that are identifiers."""
    return IdentifierSet(s.decode("ascii") for s in so_bytes.split(b"\x00") if _IDENT.fullmatch(s))


def cache_dir() -> Path:
    base = os.environ.get("SEGRT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "segrt") / "trt-bindings"


class BindingsUnavailable(Exception):
    """The wheel could not be fetched (no index reachable); tests skip with this message."""


def _wheel_for(req: str, where: Path) -> Path | None:
    name, _, version = req.partition("==")
    stem = name.replace("-", "_") + "-" + version + "-"
    hits = sorted(where.glob(stem + "*.whl"))
    return hits[0] if hits else None


def fetch_wheel(req: str, where: Path, timeout: float = 120.0) -> Path:
    """The cached wheel for ``req``, downloading it with pip if needed."""
    where.mkdir(parents=True, exist_ok=True)
    hit = _wheel_for(req, where)
    if hit is not None:
        return hit
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux2014_x86_64", "-d", str(where), req]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BindingsUnavailable(f"pip download {req} failed: {exc}") from exc
    hit = _wheel_for(req, where)
    if proc.returncode != 0 or hit is None:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BindingsUnavailable(f"cannot download {req} (package index unreachable?): {last[0]}")
    return hit


def release_identifiers(release: str) -> IdentifierSet:
    """Identifier set of ``release``'s compiled bindings (cached as text beside the wheel)."""
    where = cache_dir()
    txt = where / f"tensorrt-{release}.identifiers.txt"
    if txt.is_file():
        return IdentifierSet(txt.read_text().split())
    wheel = fetch_wheel(BINDING_WHEELS[release], where)
    with zipfile.ZipFile(wheel) as z:
        so = [n for n in z.namelist() if n.endswith("/tensorrt.so") or n == "tensorrt.so"]
        if not so:
            raise BindingsUnavailable(f"{wheel.name} holds no tensorrt.so")
        ids = binding_identifiers(z.read(so[0]))
    tmp = txt.with_suffix(".part")
    tmp.write_text("\n".join(sorted(ids.strings)) + "\n")
    tmp.replace(txt)
    return ids


# -- 2. the AST walk -----------------------------------------------------------------
@dataclass(frozen=True)
class Use:
    name: str
    line: int
    function: str
    paths: tuple[str, ...]


@dataclass
class Scan:
    file: str
    declared: dict[str, tuple[str, ...]] = field(default_factory=dict)  # TRT_PATHS
    declared_line: int = 0
    uses: list[Use] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # undeclared TRT use, unknown path, dynamic getattr
    marked: dict[str, tuple[str, ...]] = field(default_factory=dict)  # function -> paths

    @property
    def used_paths(self) -> set[str]:
        return {p for ps in self.marked.values() for p in ps}


def _marker_paths(fn: ast.AST) -> tuple[str, ...] | None:
    for d in getattr(fn, "decorator_list", ()):
        if isinstance(d, ast.Call):
            f = d.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fname == "trt_path":
                return tuple(a.value for a in d.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return None


def _rooted_at_trt(expr: ast.AST | None) -> bool:
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return isinstance(expr, ast.Name) and expr.id in _ALIASES


class _Taint:
    """Which expressions hold the trt module or TensorRT objects inside one function."""

    def __init__(self, names: set[str], self_attrs: set[str]) -> None:
        self.names = names
        self.self_attrs = self_attrs

    def tainted(self, e: ast.AST) -> bool:
        if isinstance(e, ast.Name):
            return e.id in self.names
        if isinstance(e, ast.Attribute):
            if isinstance(e.value, ast.Name) and e.value.id == "self":
                return e.attr in self.self_attrs
            return self.tainted(e.value)
        if isinstance(e, ast.Call):
            if isinstance(e.func, ast.Name) and e.func.id == "import_tensorrt":
                return True  # the lazy import returns the tensorrt module
            return self.tainted(e.func)
        if isinstance(e, ast.IfExp):
            return self.tainted(e.body) or self.tainted(e.orelse)
        return False


def _targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        out = []
        for t in node.targets:
            out.extend(t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])
        return out
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return [node.target]
    return []


def _propagate(fn: ast.AST, taint: _Taint) -> bool:
    """One pass of assignments inside ``fn``; True when something new became tainted."""
    changed = False
    for node in ast.walk(fn):
        value = getattr(node, "value", None) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) else None
        if value is None:
            continue
        pairs: list[tuple[ast.AST, ast.AST]] = []
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple)
                and isinstance(value, ast.Tuple) and len(value.elts) == len(node.targets[0].elts)):
            pairs = list(zip(node.targets[0].elts, value.elts))  # a, b = x, y
        elif taint.tainted(value):
            pairs = [(t, value) for t in _targets(node)]
        for t, v in pairs:
            if not taint.tainted(v):
                continue
            if isinstance(t, ast.Name) and t.id not in taint.names:
                taint.names.add(t.id)
                changed = True
            elif (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                  and t.attr not in taint.self_attrs):
                taint.self_attrs.add(t.attr)
                changed = True
    return changed


_ALIASES: set[str] = {"trt"}


def _module_aliases(tree: ast.AST) -> set[str]:
    """``trt`` plus every name ``import tensorrt [as X]`` binds in the module."""
    names = {"trt"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "tensorrt" or a.name.startswith("tensorrt."):
                    names.add(a.asname or "tensorrt")
    return names


def _initial_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set(_ALIASES)
    a = fn.args
    for arg in a.posonlyargs + a.args + a.kwonlyargs:
        if _rooted_at_trt(arg.annotation):
            names.add(arg.arg)
    return names


def _collect(fn: ast.AST, taint: _Taint) -> list[tuple[str, int]]:
    """Attribute names used on TensorRT values inside ``fn`` (nested code included)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and taint.tainted(node.value):
            found.append((node.attr, node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "hasattr", "setattr", "delattr") and node.args and taint.tainted(node.args[0]):
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                found.append((node.args[1].value, node.lineno))
            else:
                found.append(("<dynamic attribute name>", node.lineno))
        elif isinstance(node, ast.ClassDef) and any(taint.tainted(b) for b in node.bases):
            # Overrides of a TensorRT class (calibrator callbacks): a misspelt override is never called.
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.append((item.name, item.lineno))
        # annotations like ``config: trt.IBuilderConfig`` are Attribute nodes rooted at trt: covered above
    return [(n, ln) for n, ln in found if not (n.startswith("__") and n.endswith("__")) or n in PACKAGE_LEVEL]


def scan_source(source: str, filename: str) -> Scan:
    """Collect TRT_PATHS, markers and TensorRT attribute uses of one module's source."""
    tree = ast.parse(source, filename)
    scan = Scan(filename)
    _ALIASES.clear()
    _ALIASES.update(_module_aliases(tree))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "TRT_PATHS" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                scan.errors.append(f"{filename}:{node.lineno}: TRT_PATHS must be a literal mapping")
                continue
            scan.declared = {str(k): tuple(str(v) for v in vs) for k, vs in value.items()}
            scan.declared_line = node.lineno

    def visit_function(fn, owner: str, self_attrs: set[str]) -> None:
        paths = _marker_paths(fn)
        taint = _Taint(_initial_names(fn), self_attrs)
        while _propagate(fn, taint):
            pass
        uses = _collect(fn, taint)
        qual = f"{owner}{fn.name}"
        if paths is not None:
            scan.marked[qual] = paths
            for p in paths:
                if p not in scan.declared:
                    scan.errors.append(f"{filename}:{fn.lineno}: {qual} is marked @trt_path({p!r}) "
                                       f"but TRT_PATHS declares no such path")
        for name, line in uses:
            if paths is None and name in PACKAGE_LEVEL:
                continue  # reading tensorrt.__version__ needs no path
            if paths is None:
                scan.errors.append(f"{filename}:{line}: {qual} uses TensorRT attribute {name!r} "
                                   f"but has no @trt_path marker")
            elif name == "<dynamic attribute name>":
                scan.errors.append(f"{filename}:{line}: {qual}: getattr with a computed name hides it from the check")
            else:
                scan.uses.append(Use(name, line, qual, paths))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit_function(node, "", set())
        elif isinstance(node, ast.ClassDef):
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            self_attrs: set[str] = set()
            before = -1
            while before != len(self_attrs):  # self.x assigned a TensorRT value in any method taints it in all
                before = len(self_attrs)
                for m in methods:
                    t = _Taint(_initial_names(m), self_attrs)
                    while _propagate(m, t):
                        pass
            for m in methods:
                visit_function(m, node.name + ".", self_attrs)
        elif not isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Expr)):
            uses = _collect(node, _Taint(set(_ALIASES), set()))
            for name, line in uses:
                scan.errors.append(f"{filename}:{line}: module-level TensorRT use {name!r} outside a marked function")
    return scan


# -- 3. the check ------------------------------------------------------------------------
@dataclass(frozen=True)
class Miss:
    file: str
    line: int
    release: str
    name: str
    function: str
    path: str

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}: {self.name!r} (in {self.function}, path {self.path!r}) "
                f"is not in TensorRT {self.release}'s compiled bindings")


def check_uses(scan: Scan, identifiers: Mapping[str, IdentifierSet]) -> list[Miss]:
    """Every use against every release its function's paths claim."""
    misses = []
    for use in scan.uses:
        if use.name in PACKAGE_LEVEL:
            continue
        for path in use.paths:
            for release in scan.declared.get(path, ()):
                ids = identifiers.get(release)
                if ids is not None and use.name not in ids:
                    misses.append(Miss(scan.file, use.line, release, use.name, use.function, path))
    return misses


def package_files(root: Path = REPO) -> list[Path]:
    """The package's .py files (not tests, virtualenvs, build output), without walking .venv."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in (
                "tests", "build", "dist", "segrt.egg-info", "benchmarks", "weights")]
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out)


def trt_modules(root: Path = REPO) -> list[Path]:
    """Package modules that touch TensorRT (import it, mark functions, or declare TRT_PATHS)."""
    out = []
    for p in package_files(root):
        rel = p.relative_to(root)
        text = p.read_text(errors="replace")
        if rel.as_posix() == "runtime/trt_api.py":
            continue  # defines the marker and the lazy import
        if re.search(r"^\s*(import tensorrt|from tensorrt)|@trt_path\(|^TRT_PATHS\s*=|import_tensorrt\(", text,
                     flags=re.M):
            out.append(p)
    return out
