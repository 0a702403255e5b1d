"""Bench rows of counting (issue 3): enumeration throughput, conditional vs brute force."""

from __future__ import annotations

import time
from typing import Any

from formal.bench.runner import bench_row


def _h_net():
    from formal.theorems.evidence import mlp

    return mlp("fp(2,1)", [["1"]], [2], "relu", name="1-2-1 relu, x = 1, fp(2,1)")


def _per_point_baseline(net, n: int = 60, seed: int = 0) -> float:
    """Seconds per point of the core's check on random points of Omega (pytorch preset)."""
    from formal.count.counting import sample_points, with_point
    from formal.engine.verdict import check

    pts = sample_points(net, n, seed)
    t0 = time.perf_counter()
    for p in pts:
        check(with_point(net, p), "pytorch")
    return (time.perf_counter() - t0) / n


@bench_row("count-enumeration-throughput", "3")
def bench_enumeration() -> dict[str, Any]:
    """Exhaustive exact counting of a 1-2-1 ReLU net over fp(2,1)^6 (1,771,561 points)."""
    from formal.count.counting import exhaustive

    net = _h_net()
    t0 = time.perf_counter()
    ex = exhaustive(net, ("pytorch",), cross_check=0)
    secs = time.perf_counter() - t0
    per = _per_point_baseline(net)
    base = per * ex.omega
    rate = ex.omega / secs
    return {
        "seconds": secs,
        "baseline_seconds": base,
        "ratio": secs / base,
        "target": "ratio <= 0.01",
        "ok": secs / base <= 0.01,
        "points_per_second": round(rate),
        "detail": f"{ex.omega} points, {rate:,.0f} points/s; |ndf| = {ex.ndf}; baseline = check per point "
        f"({per * 1e3:.2f} ms, measured on 60 points) x |Omega|",
    }


@bench_row("count-enumeration-bias-free", "3")
def bench_enumeration_bias_free() -> dict[str, Any]:
    """Exhaustive counting of a bias-free 1-1-2-1 ReLU net (kink-heavy: dead units) over fp(2,1)^5."""
    from formal.count.counting import exhaustive
    from formal.theorems.openquestion import bias_free_net

    net = bias_free_net("fp(2,1)", "1", (1, 2), "relu", "relu")
    t0 = time.perf_counter()
    ex = exhaustive(net, ("pytorch", "left", "right", "lambda=1/2"), cross_check=0)
    secs = time.perf_counter() - t0
    per = _per_point_baseline(net) * 4
    base = per * ex.omega
    rate = ex.omega / secs
    return {
        "seconds": secs,
        "baseline_seconds": base,
        "ratio": secs / base,
        "target": "ratio <= 0.05",
        "ok": secs / base <= 0.05,
        "points_per_second": round(rate),
        "detail": f"{ex.omega} points x 4 presets, {rate:,.0f} points/s, {ex.kink_points} with kinks; baseline = "
        "4 checks per point x |Omega|",
    }


@bench_row("count-conditional-vs-enumeration", "3")
def bench_conditional() -> dict[str, Any]:
    """The same exact |ndf_Omega| by brute-force enumeration and by conditional counting over the biases."""
    from formal.count.bias import count_conditional
    from formal.count.counting import exhaustive

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
        "detail": f"|ndf| = {ex.ndf} of {ex.omega} (brute force) vs {cc.ndf} (conditional: 11^4 weight points x "
        f"closed form over 11^2 biases); equal = {same}",
    }


__all__ = ["bench_enumeration", "bench_enumeration_bias_free", "bench_conditional"]
