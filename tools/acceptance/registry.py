"""The acceptance steps: what each needs, their order, how they run, and the JSON they make.

A step is a thin function ``fn(ctx) -> (status, detail[, data])``. Before it runs, the
registry checks what the step ``needs`` (``cpu``, ``cuda`` = cuda-python and a device,
``pycuda``, ``tensorrt`` = TensorRT and a GPU) against :class:`AcceptanceContext`
and records a skip with the reason instead. A step that raises is recorded as a
failure with the exception and the line it came from; nothing stops the run.
"""
from __future__ import annotations

import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from segrt.tools.doctor import FAIL, PASS, SKIP

SCHEMA = "segrt-acceptance/1"
NEEDS = ("cpu", "cuda", "pycuda", "tensorrt")
StepFn = Callable[[Any], tuple]


@dataclass(frozen=True)
class Step:
    name: str
    needs: str          # one of NEEDS
    fn: StepFn
    what: str           # one line: what the step proves

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ValueError(f"step {self.name!r}: needs must be one of {NEEDS}, not {self.needs!r}")


@dataclass
class StepResult:
    name: str
    needs: str
    status: str
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


def select_steps(steps: tuple[Step, ...], *, no_tensorrt: bool) -> tuple[Step, ...]:
    """All steps, or with ``no_tensorrt`` only the CUDA-only ones (cuda-python, PyCUDA)."""
    return tuple(s for s in steps if s.needs in ("cuda", "pycuda")) if no_tensorrt else steps


def run_step(step: Step, ctx) -> StepResult:
    why = ctx.missing(step.needs)
    if why:
        return StepResult(step.name, step.needs, SKIP, why)
    t0 = time.perf_counter()
    try:
        status, detail, *rest = step.fn(ctx)
    except Exception as exc:  # a failing step is a result to report, never the end of the run
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return StepResult(step.name, step.needs, FAIL,
                          f"{type(exc).__name__}: {exc} ({Path(tb.filename).name}:{tb.lineno})".splitlines()[0],
                          time.perf_counter() - t0)
    if status not in (PASS, FAIL, SKIP):
        raise ValueError(f"step {step.name!r} returned status {status!r}")
    return StepResult(step.name, step.needs, status, detail, time.perf_counter() - t0, rest[0] if rest else {})


def run_steps(steps: tuple[Step, ...], ctx, echo: Callable[[str], None] | None = None) -> list[StepResult]:
    results = []
    for step in steps:
        r = run_step(step, ctx)
        results.append(r)
        if echo:
            echo(format_result(r))
    return results


def format_result(r: StepResult) -> str:
    mark = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip"}[r.status]
    return f"  [{mark}] {r.name:<34} {r.detail}" + (f"  ({r.seconds:.1f} s)" if r.seconds >= 0.05 else "")


def report(results: list[StepResult], *, no_tensorrt: bool, seconds: float, facts: dict[str, Any]) -> dict[str, Any]:
    """The JSON a user attaches to a bug report."""
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP)}
    return {
        "schema": SCHEMA,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(), "machine": platform.machine(),
        "mode": "no-tensorrt" if no_tensorrt else "full",
        "seconds": round(seconds, 2),
        "summary": counts,
        "ok": counts[FAIL] == 0,
        "facts": facts,
        "steps": [asdict(r) for r in results],
    }
