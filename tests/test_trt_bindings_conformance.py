"""Check segrt's TensorRT code against NVIDIA's real compiled bindings for 10.3, 10.16 and 11.4.

The wheels ``tensorrt-cu12-bindings==10.3.0``, ``==10.16.1.11`` and
``tensorrt-cu13-bindings==11.4.0.106`` (about 1.3 MB each) hold
``tensorrt_bindings/tensorrt.so``; its string table names every class, method,
property and enum member. Every attribute segrt uses on TensorRT, collected from
the source by an AST walk, must be there for every release its code path claims
(``TRT_PATHS`` + ``@trt_path``). Downloads are cached (``$SEGRT_CACHE`` or
``~/.cache/segrt/trt-bindings``); without a reachable index these tests skip
with the reason. Warm: under a second; cold: three small downloads.
"""
from __future__ import annotations

import textwrap

import pytest

from _trt_helpers import (BINDING_WHEELS, REPO, BindingsUnavailable, check_uses, release_identifiers, scan_source,
                          trt_modules)
from segrt.runtime.trt_api import CHECKED_RELEASES

ALL = ("10.3", "10.16", "11.4")


@pytest.fixture(scope="module")
def identifiers():
    try:
        return {r: release_identifiers(r) for r in BINDING_WHEELS}
    except BindingsUnavailable as exc:
        pytest.skip(f"TensorRT binding wheels unavailable: {exc}")


def _scans():
    return {p.relative_to(REPO).as_posix(): scan_source(p.read_text(), p.relative_to(REPO).as_posix())
            for p in trt_modules()}


def test_wheels_are_the_releases_checked():
    assert set(BINDING_WHEELS) == set(CHECKED_RELEASES)


def test_identifier_sets_look_like_tensorrt(identifiers):
    for release, ids in identifiers.items():
        assert len(ids) > 5000, release
        for name in ("Builder", "ICudaEngine", "IExecutionContext", "execute_async_v3", "OnnxParser"):
            assert name in ids, (release, name)
    # The removals the code paths are built around (TENSORRT.md section 1), seen in the binaries:
    for name in ("FP16", "int8_calibrator", "IInt8EntropyCalibrator2", "EXPLICIT_BATCH", "platform_has_fast_fp16",
                 "set_calibration_profile"):
        assert name in identifiers["10.3"] and name in identifiers["10.16"], name
        assert name not in identifiers["11.4"], name
    # Added after 10.3:
    assert "SAME_COMPUTE_CAPABILITY" not in identifiers["10.3"]
    assert "SAME_COMPUTE_CAPABILITY" in identifiers["10.16"] and "ADJUST_FOR_DLA" in identifiers["10.16"]


def test_every_tensorrt_name_exists_in_every_release_its_path_claims(identifiers):
    scans = _scans()
    assert {"export/engine_from_onnx.py", "runtime/backends/tensorrt.py", "calibration/trt_legacy.py"} <= set(scans)
    misses = [str(m) for s in scans.values() for m in check_uses(s, identifiers)]
    assert not misses, "\n".join(misses)
    total = sum(len(s.uses) for s in scans.values())
    assert total > 80  # the walk really sees the code (about 130 uses today)


def test_paths_claim_the_required_releases():
    scans = _scans()
    build = scans["export/engine_from_onnx.py"].declared
    assert build["strongly_typed"] == ALL
    assert build["common"] == ALL
    assert build["legacy_calibrator"] == ("10.3", "10.16")
    assert scans["calibration/trt_legacy.py"].declared == {"legacy_calibrator": ("10.3", "10.16")}
    assert scans["runtime/backends/tensorrt.py"].declared == {"runtime": ALL}


def test_legacy_path_could_not_claim_11(identifiers):
    """The 10.x-only claim is forced by the binaries, not a choice: claiming 11.4 would fail."""
    missing = set()
    for s in _scans().values():
        for u in s.uses:
            if "legacy_calibrator" in u.paths and u.name not in identifiers["11.4"]:
                missing.add(u.name)
    assert {"FP16", "int8_calibrator", "set_calibration_profile", "IInt8EntropyCalibrator2",
            "IInt8MinMaxCalibrator", "get_batch"} <= missing


# -- the markers and TRT_PATHS stay in sync with the code (no network needed) -----------------
def test_markers_and_declarations_in_sync():
    for file, s in _scans().items():
        assert not s.errors, "\n".join(s.errors)
        if s.uses or s.marked:
            assert s.declared, f"{file} uses TensorRT but declares no TRT_PATHS"
        assert set(s.declared) == s.used_paths, (
            f"{file}: TRT_PATHS declares {sorted(s.declared)}, functions use {sorted(s.used_paths)}")
        for path, releases in s.declared.items():
            assert releases and set(releases) <= set(CHECKED_RELEASES), (file, path, releases)


def test_every_function_using_tensorrt_is_marked():
    snippet = textwrap.dedent("""
        TRT_PATHS = {"runtime": ("10.3",)}
        def helper(trt):
            return trt.Logger()
    """)
    s = scan_source(snippet, "snippet.py")
    assert any("helper uses TensorRT attribute 'Logger' but has no @trt_path marker" in e for e in s.errors)
    # whatever the module is called locally: import tensorrt as X, or X = import_tensorrt()
    other = textwrap.dedent("""
        import tensorrt as nv
        def a():
            return nv.Builder
        def b():
            rt = import_tensorrt()
            engine = rt.Runtime(None).deserialize_cuda_engine(b"")
            return engine.num_io_tensors
    """)
    errors = scan_source(other, "other.py").errors
    for name in ("'Builder'", "'Runtime'", "'deserialize_cuda_engine'", "'num_io_tensors'"):
        assert any(name in e and "no @trt_path marker" in e for e in errors), name


def test_unknown_path_and_dynamic_getattr_are_errors():
    snippet = textwrap.dedent("""
        TRT_PATHS = {"runtime": ("10.3",)}
        @trt_path("runtme")
        def a(trt):
            return trt.Runtime
        @trt_path("runtime")
        def b(trt, name):
            return getattr(trt.BuilderFlag, name)
    """)
    errors = scan_source(snippet, "snippet.py").errors
    assert any("no such path" in e and "'runtme'" in e for e in errors)
    assert any(":8:" in e and "computed name" in e for e in errors)


# -- the checker fails where it must ---------------------------------------------------------
SNIPPET = textwrap.dedent("""\
    TRT_PATHS = {"strongly_typed": ("10.3", "10.16", "11.4"), "runtime": ("10.3", "10.16", "11.4")}

    @trt_path("strongly_typed")
    def configure(trt, config: trt.IBuilderConfig):
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)

    class Runner:
        @trt_path("runtime")
        def open(self, trt):
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(b"")
            self.context = self.engine.create_execution_context()

        @trt_path("runtime")
        def run(self, stream):
            return self.context.execute_async_v4(stream)
""")


def test_removed_api_on_a_path_claiming_11_is_reported_with_file_line_release(identifiers):
    misses = check_uses(scan_source(SNIPPET, "snippet.py"), identifiers)
    fp16 = [m for m in misses if m.name == "FP16"]
    assert [(m.file, m.line, m.release, m.path) for m in fp16] == [("snippet.py", 5, "11.4", "strongly_typed")]
    assert str(fp16[0]) == ("snippet.py:5: 'FP16' (in configure, path 'strongly_typed') is not in "
                            "TensorRT 11.4's compiled bindings")


def test_method_typo_is_caught_on_every_release(identifiers):
    misses = check_uses(scan_source(SNIPPET, "snippet.py"), identifiers)
    typo = sorted((m.line, m.release, m.function) for m in misses if m.name == "execute_async_v4")
    assert typo == [(16, r, "Runner.run") for r in sorted(ALL)]
    # and nothing else in the snippet is flagged: the rest is valid on all three
    assert {m.name for m in misses} == {"FP16", "execute_async_v4"}


def test_misspelt_calibrator_override_is_caught(identifiers):
    snippet = textwrap.dedent("""\
        TRT_PATHS = {"legacy_calibrator": ("10.3", "10.16")}
        @trt_path("legacy_calibrator")
        def make(trt):
            class C(trt.IInt8EntropyCalibrator2):
                def get_batch(self, names):
                    return None
                def read_calibration_cahce(self):
                    return None
            return C
    """)
    misses = check_uses(scan_source(snippet, "snippet.py"), identifiers)
    assert sorted((m.name, m.line, m.release) for m in misses) == [
        ("read_calibration_cahce", 7, "10.16"), ("read_calibration_cahce", 7, "10.3")]
