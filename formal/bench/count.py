"""Bench rows of the group "count": enumeration throughput, conditional vs brute force."""

from __future__ import annotations

import time
from typing import Any

from formal.bench.runner import bench_row
from formal.count.bias import count_conditional
from formal.count.counting import exhaustive, sample_points, with_point
from formal.engine.verdict import check
from formal.theorems.evidence import mlp
from formal.theorems.openquestion import bias_free_net


def _h_net():

    return mlp("fp(2,1)", [["1"]], [2], "relu", name="1-2-1 relu, x = 1, fp(2,1)")


def _per_point_baseline(net, n: int = 60, seed: int = 0) -> float:
    """Seconds per point of the core's check on random points of Omega (pytorch preset)."""

    pts = sample_points(net, n, seed)
    t0 = time.perf_counter()
    for p in pts:
        check(with_point(net, p), "pytorch")
    return (time.perf_counter() - t0) / n


def _enumeration_row(
    net, presets: tuple[str, ...], target: float
) -> tuple[Any, float, float, dict[str, Any]]:
    """Time exhaustive counting against one check per point and preset: (ex, rate, per, row)."""

    t0 = time.perf_counter()
    ex = exhaustive(net, presets, cross_check=0)
    secs = time.perf_counter() - t0
    per = _per_point_baseline(net) * len(presets)
    base = per * ex.omega
    rate = ex.omega / secs
    row = {
        "seconds": secs,
        "baseline_seconds": base,
        "ratio": secs / base,
        "target": f"ratio <= {target}",
        "ok": secs / base <= target,
        "points_per_second": round(rate),
    }
    return ex, rate, per, row


@bench_row("count-enumeration-throughput", "count")
def bench_enumeration() -> dict[str, Any]:
    """Exhaustive exact counting of a 1-2-1 ReLU net over fp(2,1)^6 (1,771,561 points)."""
    ex, rate, per, row = _enumeration_row(_h_net(), ("pytorch",), 0.01)
    row["detail"] = (
        f"{ex.omega} points, {rate:,.0f} points/s; |ndf| = {ex.ndf}; baseline = check per point "
        f"({per * 1e3:.2f} ms, measured on 60 points) x |Omega|"
    )
    return row


@bench_row("count-enumeration-bias-free", "count")
def bench_enumeration_bias_free() -> dict[str, Any]:
    """Exhaustive counting of a bias-free 1-1-2-1 ReLU net (kink-heavy: dead units), fp(2,1)^5."""

    net = bias_free_net("fp(2,1)", "1", (1, 2), "relu", "relu")
    ex, rate, _, row = _enumeration_row(net, ("pytorch", "left", "right", "lambda=1/2"), 0.05)
    row["detail"] = (
        f"{ex.omega} points x 4 presets, {rate:,.0f} points/s, {ex.kink_points} with kinks; "
        "baseline = 4 checks per point x |Omega|"
    )
    return row


@bench_row("count-conditional-vs-enumeration", "count")
def bench_conditional() -> dict[str, Any]:
    """The same exact |ndf_Omega| by brute-force enumeration and by conditional bias counting."""

    net = _h_net()
    t0 = time.perf_counter()
    ex = exhaustive(net, ("pytorch",), cross_check=0)
    brute = time.perf_counter() - t0
    t0 = time.perf_counter()
    cc = count_conditional(net)
    cond = time.perf_counter() - t0
    same = cc.ndf == ex.ndf and cc.space == "omega"
    return {
        "seconds": cond,
        "baseline_seconds": brute,
        "ratio": cond / brute,
        "target": "ratio <= 0.05, same count",
        "ok": same and cond / brute <= 0.05,
        "detail": f"|ndf| = {ex.ndf} of {ex.omega} (brute force) vs {cc.ndf} (conditional: "
        f"11^4 weight points x closed form over 11^2 biases); equal = {same}",
    }


__all__ = ["bench_enumeration", "bench_enumeration_bias_free", "bench_conditional"]
