"""``formal bench`` rows of the group "smt" (solver queries), each against the naive encoding.

The naive encoding is what docs/method.md section 7 warns about: parameters as z3
``Float32`` variables read into real arithmetic with ``fp.to_real`` (products
of them are nonlinear real arithmetic).  It is run with a cap (default 30 s,
``FORMAL_BENCH_SMT_CAP`` to change it); when it gives no verified witness
within the cap (a time-out, or an early ``unknown``), the baseline time is
reported as the cap and the ratio ours/baseline is an upper bound.

Rows: (i) a bias kink in a binary32 784-256-10 MLP (closed form), (ii) an inc
witness in a bias-free 2-layer ReLU net with the ``right`` preset in
binary32 (search formats), (iii) a spurious kink of a binary32 dense unit
with 8 inputs (rounded semantics), (iv) inc in a bias-free 3-4-4-1 ReLU net
in binary32 with the ``pytorch`` and ``right`` presets (the bias-free stage)
against the same search without it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from formal.bench.runner import bench_row
from formal.core.activations import parse_preset
from formal.core.builders import dense_network, exact_values
from formal.core.network import Network
from formal.core.numbers import BINARY32
from formal.core.qarray import QArray
from formal.core.rebuild import with_groups
from formal.engine.forward import exact_forward
from formal.engine.verdict import check
from formal.search.search import SearchOptions, search
from formal.smt.fp import Domain, fp_value
from formal.smt.queries import checked

__all__ = [
    "dense_net",
    "naive_cap",
    "row_bias_kink",
    "row_inc",
    "row_spurious",
    "biasfree_3441",
    "row_biasfree_inc",
]

DEFAULT_CAP = 30.0


def naive_cap() -> float:
    """The naive baseline's cap in seconds (env ``FORMAL_BENCH_SMT_CAP``, default 30)."""
    try:
        return max(float(os.environ.get("FORMAL_BENCH_SMT_CAP", DEFAULT_CAP)), 0.1)
    except ValueError:
        return DEFAULT_CAP


def _scaled(k: np.ndarray, den: int) -> QArray:
    num = np.empty(k.shape, dtype=object)
    for idx in np.ndindex(*k.shape):
        num[idx] = int(k[idx])
    return QArray(num, den)


def dense_net(
    x: QArray, weights: list[QArray], biases: list[QArray | None], acts: list[str]
) -> Network:
    """A dense binary32 network of the bench rows (the one builder, source ``bench:smt``)."""
    return dense_network(weights, biases, x, acts, source="bench:smt")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _row(
    ours: float,
    status: str,
    base: float,
    base_status: str,
    cap: float,
    target: float,
    detail: str,
    **extra: Any,
) -> dict[str, Any]:
    """A bench row: our time vs the naive baseline (capped at ``cap`` when it found nothing)."""
    capped = base_status != "found"
    base = max(base, cap) if capped else base
    return {
        "seconds": ours,
        "status": status,
        "baseline_seconds": base,
        "baseline_status": base_status,
        "baseline_capped": capped,
        "ratio": ours / base if base > 0 else None,
        "ratio_is_upper_bound": capped,
        "target": target,
        "meets_target": status == "found" and ours < target,
        "ok": status == "found" and ours < target,
        "cap": cap,
        "detail": detail,
        **extra,
    }


def _naive_status(solver: z3.Solver, r: Any) -> str:
    """The naive baseline's answer: ``found`` on sat, else z3's result and why."""
    if r == z3.sat:
        return "found"
    return f"{r} ({solver.reason_unknown() if r == z3.unknown else 'no witness'})"


def _naive_solver(cap: float) -> z3.Solver:
    s = z3.Solver()
    s.set("timeout", int(cap * 1000))
    return s


def _naive_var(name: str) -> tuple[z3.FPRef, list[z3.BoolRef]]:
    x = z3.FP(name, z3.Float32())
    return x, [z3.Not(z3.fpIsNaN(x)), z3.Not(z3.fpIsInf(x)), z3.Not(z3.fpIsSubnormal(x))]


def _rv(q: Fraction) -> z3.ArithRef:
    return z3.RealVal(f"{q.numerator}/{q.denominator}")


# -- (i) bias kink, 784-256-10 --------------------------------------------------


def mlp_784(seed: int = 0, quantized: bool = True) -> Network:
    """A binary32 784-256-10 ReLU MLP with an 8-bit input image.

    ``quantized``: weights and biases k/128 (|k| <= 127), as in an int8-quantized
    model; otherwise random float32 (N(0, 1/fan_in))."""
    rng = np.random.default_rng(seed)
    x = _scaled(
        np.where(rng.uniform(size=(1, 784)) < 0.8, 0, rng.integers(1, 256, size=(1, 784))), 256
    )
    ws: list[QArray] = []
    bs: list[QArray | None] = []
    for fan_in, fan_out in ((784, 256), (256, 10)):
        if quantized:
            ws.append(_scaled(rng.integers(-8, 9, size=(fan_out, fan_in)), 128))
            bs.append(_scaled(rng.integers(-127, 128, size=(fan_out,)), 128))
        else:
            ws.append(
                exact_values(
                    rng.normal(0, 1 / np.sqrt(fan_in), (fan_out, fan_in)).astype(np.float32)
                )
            )
            bs.append(exact_values(rng.normal(0, 0.1, fan_out).astype(np.float32)))
    net = dense_net(x, ws, bs, ["relu", "identity"])
    net.parameterization()  # part of loading, as for `formal check`
    return net


def warm(net: Network) -> Network:
    """Cache the exact (flint) weight matrices, as after one exact `formal check` pass."""

    exact_forward(net, parse_preset("pytorch"))
    return net


def naive_bias_kink(net: Network, cap: float) -> tuple[str, float]:
    """Naive: one Float32 bias b of unit 0 with ``fp.to_real(b) + s == 0`` (s exact)."""
    w = net.params["0.weight"].to_fractions()[0]
    x = net.inputs.to_fractions()[0]
    s_val = sum((Fraction(a) * Fraction(b) for a, b in zip(w, x) if b), Fraction(0))
    b, dom = _naive_var("b")
    solver = _naive_solver(cap)
    solver.add(*dom)
    solver.add(z3.fpToReal(b) + _rv(s_val) == 0)
    r, dt = _timed(lambda: checked(solver, int(cap * 1000)))
    return _naive_status(solver, r), dt


@bench_row("smt-bias-kink-784-256-10", "smt")
def row_bias_kink() -> dict[str, Any]:
    """Closed-form kink search over the first-layer biases of a 784-256-10 MLP vs naive z3."""
    cap = naive_cap()
    opt = SearchOptions(find="kink", free=("0.bias",), stages=("closed-form",), timeout=60)
    cold_net = mlp_784(quantized=True)
    _, cold = _timed(lambda: search(cold_net, opt))
    net = warm(mlp_784(quantized=True))
    res, ours = _timed(lambda: search(net, opt))
    assert res.status != "found" or (res.verdict is not None and res.verdict.kink_neurons > 0)
    net_f = warm(mlp_784(quantized=False))
    res_f, ours_f = _timed(lambda: search(net_f, opt))
    base_status, base = naive_bias_kink(net, cap)
    detail = (
        f"closed form over the 256 first-layer biases (weights fixed) of an int8-style quantized "
        f"MLP: {res.status} in {ours:.4f} s "
        f"(exact weight matrices cached as after one `formal check`; {cold:.3f} s cold, building "
        f"them); "
        f"random float32 weights: {res_f.status} in {ours_f:.4f} s; "
        f"naive fp.to_real (one Float32 bias, one unit only): {base_status} after {base:.2f} s"
    )
    return _row(
        ours,
        res.status,
        base,
        base_status,
        cap,
        0.1,
        detail,
        cold_seconds=cold,
        float32_status=res_f.status,
        float32_seconds=ours_f,
    )


# -- (ii) inc witness, bias-free 2-layer ReLU net ---------------------------------------


def relu2_net(seed: int = 1, n: int = 4, h: int = 4) -> Network:
    """Bias-free ``relu(v . relu(W x))`` with binary32 random W, v and input x."""
    rng = np.random.default_rng(seed)
    x = exact_values(rng.uniform(-1, 1, (1, n)).astype(np.float32))
    w1 = exact_values(rng.normal(0, 1, (h, n)).astype(np.float32))
    w2 = exact_values(rng.normal(0, 1, (1, h)).astype(np.float32))
    return dense_net(x, [w1, w2], [None, None], ["relu", "relu"])


def naive_inc(net: Network, cap: float) -> tuple[str, float]:
    """Naive CEGIS: Float32 variables via fp.to_real, real (nonlinear) arithmetic, the E1
    pattern (a hidden unit and the output on their kinks, output weight non-zero)."""
    t0 = time.perf_counter()
    w1 = net.params["0.weight"].to_fractions()
    h, n = w1.shape
    x = net.inputs.to_fractions()[0]
    W = [[_naive_var(f"W{j}_{k}") for k in range(n)] for j in range(h)]
    V = [_naive_var(f"v{j}") for j in range(h)]
    solver = _naive_solver(cap)
    for row in W:
        for _, d in row:
            solver.add(*d)
    for _, d in V:
        solver.add(*d)
    y1 = [z3.Sum([z3.fpToReal(W[j][k][0]) * _rv(x[k]) for k in range(n)]) for j in range(h)]
    z1 = [z3.If(y > 0, y, z3.RealVal(0)) for y in y1]
    y2 = z3.Sum([z3.fpToReal(V[j][0]) * z1[j] for j in range(h)])
    solver.add(y2 == 0)
    solver.add(z3.Or([z3.And(y1[j] == 0, z3.fpToReal(V[j][0]) != 0) for j in range(h)]))
    par = net.parameterization()
    while True:
        left = cap - (time.perf_counter() - t0)
        if left <= 0:
            return "unknown (cap reached)", cap
        solver.set("timeout", int(left * 1000))
        r = checked(solver, int(left * 1000))
        if r != z3.sat:
            return _naive_status(solver, r), time.perf_counter() - t0
        m = solver.model()
        values: dict[int, Fraction] = {}
        for g, label in enumerate(par.labels):
            name, _, idx = label.partition("[")
            ij = [int(t) for t in idx.rstrip("]").split(",")]
            var = W[ij[0]][ij[1]][0] if name == "0.weight" else V[ij[1]][0]
            values[g] = Fraction(m.eval(z3.fpToReal(var), model_completion=True).as_fraction())
        net2 = with_groups(net, values)
        if check(net2, "right").in_inc is True:
            return "found", time.perf_counter() - t0
        solver.add(
            z3.Or(
                [
                    z3.Not(
                        z3.fpEQ(
                            W[j][k][0],
                            fp_value(values[par.labels.index(f"0.weight[{j},{k}]")], BINARY32),
                        )
                    )
                    for j in range(h)
                    for k in range(n)
                ]
            )
        )


@bench_row("smt-inc-relu2-right-binary32", "smt")
def row_inc() -> dict[str, Any]:
    """inc witness search on a bias-free 4-4-1 ReLU net (binary32) vs naive CEGIS."""
    cap = naive_cap()
    net = relu2_net()
    opt = SearchOptions(find="inc", proxy="right", timeout=60)
    res, ours = _timed(lambda: search(net, opt))
    assert res.status != "found" or res.verdict.in_inc is True
    base_status, base = naive_inc(net, cap)
    detail = (
        f"bias-free relu(v . relu(W x)), 4-4-1, binary32 random W, v, x; by {res.method}"
        f"{' in ' + res.search_format if res.search_format else ''}: "
        f"{res.status} in {ours:.3f} s after {res.candidates} exact check(s); naive fp.to_real "
        f"CEGIS: {base_status} after {base:.2f} s"
    )
    return _row(
        ours,
        res.status,
        base,
        base_status,
        cap,
        5.0,
        detail,
    )


# -- (iii) spurious kink, dense unit with 8 inputs ---------------------------------------


def unit8(seed: int = 2) -> Network:
    """One bias-free ReLU unit with 8 binary32 inputs and weights (random)."""
    rng = np.random.default_rng(seed)
    x = exact_values(rng.uniform(-1, 1, (1, 8)).astype(np.float32))
    w = exact_values(rng.normal(0, 1, (1, 8)).astype(np.float32))
    return dense_net(x, [w], [None], ["relu"])


def naive_spurious(net: Network, cap: float) -> tuple[str, float]:
    """Naive: Float32 weights; float y by fp.mul/fp.add (sequential), exact y by fp.to_real."""
    x = net.inputs.to_fractions()[0]
    ws = [_naive_var(f"w{k}") for k in range(len(x))]
    solver = _naive_solver(cap)
    rng = Domain(BINARY32, Fraction(1, 1 << 16), Fraction(1 << 16))
    lo = rng.lo_member
    assert lo is not None
    acc = None
    for (w, d), xv in zip(ws, x):
        solver.add(*d)
        solver.add(
            z3.Or(
                z3.fpIsZero(w),
                z3.And(
                    z3.fpGEQ(z3.fpAbs(w), fp_value(lo, BINARY32)),
                    z3.fpLEQ(z3.fpAbs(w), fp_value(rng.hi_member, BINARY32)),
                ),
            )
        )
        p = z3.fpMul(z3.RNE(), w, fp_value(Fraction(xv), BINARY32))
        acc = p if acc is None else z3.fpAdd(z3.RNE(), acc, p)
    solver.add(z3.fpIsZero(acc))
    solver.add(z3.Sum([z3.fpToReal(w) * _rv(Fraction(xv)) for (w, _), xv in zip(ws, x)]) != 0)
    r, dt = _timed(lambda: checked(solver, int(cap * 1000)))
    return _naive_status(solver, r), dt


@bench_row("smt-spurious-kink-unit8-binary32", "smt")
def row_spurious() -> dict[str, Any]:
    """Spurious float kink touch of an 8-input ReLU unit: staged, SMT only, naive."""
    cap = naive_cap()
    net = unit8()
    staged = SearchOptions(find="spurious-kink", timeout=60)
    res, ours = _timed(lambda: search(net, staged))
    smt_only = SearchOptions(
        find="spurious-kink",
        timeout=60,
        stages=("smt",),
        lo=Fraction(1, 1 << 16),
        hi=Fraction(1 << 16),
    )
    res_s, ours_s = _timed(lambda: search(net, smt_only))
    base_status, base = naive_spurious(net, cap)
    detail = (
        f"y = relu(sum_k w_k x_k), 8 binary32 inputs, sequential order: staged search {res.status} "
        f"by {res.method} in {ours:.4f} s; "
        f"SMT alone (all 8 weights free, fp.mul/fp.add RNE vs exact bit-vectors): {res_s.status} "
        f"in {ours_s:.2f} s; "
        f"naive (fp.to_real for the exact side): {base_status} after {base:.2f} s"
    )
    return _row(
        ours,
        res.status,
        base,
        base_status,
        cap,
        10.0,
        detail,
        smt_only_seconds=ours_s,
        smt_only_status=res_s.status,
        smt_only_ratio=ours_s / max(base, cap) if base_status != "found" else ours_s / base,
    )


# -- (iv) inc in a bias-free 3-4-4-1 ReLU net, pytorch and right ----------------------------


def biasfree_3441(seed: int = 0) -> Network:
    """Bias-free ``v . relu(W2 relu(W1 x))``, 3-4-4-1, random binary32 weights and input."""
    rng = np.random.default_rng(seed)
    x = exact_values(rng.uniform(-1, 1, (1, 3)).astype(np.float32))
    ws = [
        exact_values(rng.normal(0, 1, shape).astype(np.float32))
        for shape in ((4, 3), (4, 4), (1, 4))
    ]
    return dense_net(x, ws, [None, None, None], ["relu", "relu", "identity"])


@bench_row("smt-inc-biasfree-3441-binary32", "smt")
def row_biasfree_inc() -> dict[str, Any]:
    """bias-free 3-4-4-1 inc binary32 pytorch/right: staged search vs the search without the
    bias-free stage (given, theorem, closed form, SMT), capped at ``naive_cap()``."""
    cap = naive_cap()
    net = biasfree_3441()
    old_stages = tuple(st for st in SearchOptions(find="inc").stages if st != "bias-free")
    ours: dict[str, tuple[str, float, str]] = {}
    base: dict[str, tuple[str, float]] = {}
    for proxy in ("pytorch", "right"):
        opt = SearchOptions(find="inc", proxy=proxy, timeout=60)
        t0 = time.perf_counter()
        res = search(net, opt)
        dt = time.perf_counter() - t0
        if res.status == "found":
            assert res.network is not None and check(res.network, proxy).in_inc is True
        ours[proxy] = (res.status, dt, res.method)
        old = SearchOptions(find="inc", proxy=proxy, timeout=cap, stages=old_stages)
        t0 = time.perf_counter()
        res_b = search(net, old)
        dt_b = time.perf_counter() - t0
        base[proxy] = (res_b.status, dt_b)
    seconds = sum(t for _, t, _ in ours.values())
    base_seconds = sum(t for _, t in base.values())
    decided = all(st in ("found", "exhausted") for st, _, _ in ours.values())
    detail = "; ".join(
        f"{p}: {ours[p][0]} by {ours[p][2]} in {ours[p][1]:.3f} s (without the bias-free stage: "
        f"{base[p][0]} after {base[p][1]:.2f} s, cap {cap:g} s)"
        for p in ours
    )
    return {
        "seconds": seconds,
        "status": "/".join(ours[p][0] for p in ours),
        "baseline_seconds": base_seconds,
        "baseline_status": "/".join(base[p][0] for p in base),
        "ratio": seconds / base_seconds if base_seconds > 0 else None,
        "ratio_is_upper_bound": any(base[p][0] == "unknown" for p in base),
        "target": 60.0,
        "meets_target": decided and all(t < 60 for _, t, _ in ours.values()),
        "ok": decided and all(t < 60 for _, t, _ in ours.values()),
        "cap": cap,
        "detail": detail,
        **{f"{p}_status": ours[p][0] for p in ours},
        **{f"{p}_seconds": ours[p][1] for p in ours},
    }
