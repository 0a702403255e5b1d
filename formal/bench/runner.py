"""``formal bench``: speed as ratios against baselines measured in the same process.

Rows are registered in :data:`BENCH_ROWS` by the modules listed in
:data:`BENCH_MODULES`.  A row is a function returning a dict with at least
``seconds`` (ours), ``baseline_seconds``, ``ratio`` (ours / baseline) or
``seconds`` alone with a ``target`` in seconds, and a ``detail`` string.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BENCH_MODULES = (
    "formal.bench.core",
    "formal.bench.count",
    "formal.bench.smt",
    "formal.bench.models",
    "formal.bench.scale",
    "formal.bench.certify",
    "formal.bench.audit",
    "formal.bench.subgradient",
)


GROUPS: dict[str, str] = {
    "verdict": "exact verdict time of dense networks against a numpy float64 pass",
    "count": "counting: enumeration throughput, conditional counting against brute force",
    "smt": "solver queries against the naive real-arithmetic encoding",
    "models": "exact verdicts of real ONNX models against a float64 forward + backward",
    "scale": "verdicts at training scale: minibatches, convolutions, cold starts",
    "subgradient": "check --subgradient (a certified generalized gradient) against check alone",
    "audit": "a formal audit step against the plain numpy training step in the same precision",
}
"""The bench groups (what their rows measure); ``formal bench --group NAME`` selects one."""


@dataclass(frozen=True, slots=True)
class BenchRow:
    """A registered bench row: its name, the group of what it measures, the function to run."""

    name: str
    group: str
    run: Callable[[], dict[str, Any]]


BENCH_ROWS: list[BenchRow] = []


def bench_row(
    name: str, group: str
) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator registering a bench row in ``group`` (a word naming what it measures)."""

    def deco(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        BENCH_ROWS.append(BenchRow(name, group, fn))
        return fn

    return deco


def load_rows() -> list[BenchRow]:
    """Every bench row, after importing the bench modules (absent optional ones skipped)."""
    for name in BENCH_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return list(BENCH_ROWS)


def best_of(fn: Callable[[], Any], repeat: int = 5, min_time: float = 0.05) -> float:
    """Best wall time of ``fn`` over ``repeat`` rounds (each round loops to ``min_time``)."""
    best = float("inf")
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = min(best, dt / n)
    return best


__all__ = ["BENCH_ROWS", "BENCH_MODULES", "GROUPS", "BenchRow", "bench_row", "load_rows", "best_of"]
