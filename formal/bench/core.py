"""Bench rows of the group "verdict": verdict time vs a numpy float64 pass."""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from formal.bench.runner import bench_row, best_of
from formal.core.builders import dense_network
from formal.core.network import Network
from formal.engine.verdict import Verdict, check


def numpy_pass(weights, biases, x) -> Any:
    """Float64 forward + backward (sum of outputs) of a dense ReLU net: the baseline."""
    zs = [x]
    ys = []
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        y = h @ w.T + (0 if b is None else b)
        ys.append(y)
        h = np.maximum(y, 0) if i < len(weights) - 1 else y
        zs.append(h)
    g = np.ones_like(h)
    grads = []
    for i in reversed(range(len(weights))):
        if i < len(weights) - 1:
            g = g * (ys[i] > 0)
        grads.append(g.T @ zs[i])
        g = g @ weights[i]
    return grads


def mnist_mlp(seed: int = 0):
    """Random float32 weights, biases and input of a 784-256-256-10 MLP (seeded)."""
    rng = np.random.default_rng(seed)
    sizes = [784, 256, 256, 10]
    weights = [
        (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
        for i, o in zip(sizes, sizes[1:])
    ]
    biases = [(rng.standard_normal(o) * 0.1).astype(np.float32) for o in sizes[1:]]
    x = rng.random((1, 784)).astype(np.float32)
    return weights, biases, x


def timed_verdict(
    net: Network, baseline: Any, target: float, proxy: str = "pytorch"
) -> dict[str, Any]:
    """Warm verdict time of ``check(net)`` against ``baseline()`` in the same process."""
    base = best_of(baseline)
    t0 = time.perf_counter()
    v = check(net, proxy)
    cold = time.perf_counter() - t0
    ours = best_of(lambda: check(net, proxy), repeat=5, min_time=0.05)
    return {
        "seconds": ours,
        "cold_seconds": cold,
        "baseline_seconds": base,
        "ratio": ours / base,
        "target": f"ratio <= {target}",
        "ok": ours / base <= target,
        "verdict": verdict_text(v),
    }


def verdict_text(v: Verdict) -> str:
    """The verdict in one line of a bench row: method, kinks, differentiable, AD correct."""
    return (
        f"method={v.method} kinks={v.kink_neurons} differentiable={v.differentiable} "
        f"ad_correct={v.ad_correct}"
    )


def _row(net: Network, weights, biases, x, target: float) -> dict[str, Any]:
    w64 = [w.astype(np.float64) for w in weights]
    b64 = [None if b is None else b.astype(np.float64) for b in biases]
    x64 = x.astype(np.float64)
    return timed_verdict(net, lambda: numpy_pass(w64, b64, x64), target)


@bench_row("mlp-784-256-256-10-no-kinks", "verdict")
def bench_no_kinks() -> dict[str, Any]:
    """(a) random binary32 MLP with biases, no kinks: the float filter decides."""
    weights, biases, x = mnist_mlp(0)
    net = dense_network(weights, biases, x, ["relu", "relu", "identity"], source="bench:mlp")
    out = _row(net, weights, biases, x, 10)
    out["detail"] = "784-256-256-10 ReLU, biases, random binary32 parameters and input; " + out.pop(
        "verdict"
    )
    return out


def forced_kink_mlp(seed: int = 1, per_layer: int = 5):
    """784-256-256-10 MLP with 5 + 5 hidden units put exactly on the ReLU kink by solving biases.

    Inputs are multiples of 1/16 and the chosen layer-1 rows use weights on a
    2^-10 grid so the solved bias is a binary32 number; the chosen layer-2 rows
    keep three non-zero weights for the same reason.
    """
    weights, biases, x = mnist_mlp(seed)
    rng = np.random.default_rng(seed + 100)
    x = (np.floor(x * 16) / 16).astype(np.float32)
    w1, b1, w2, b2 = weights[0], biases[0], weights[1], biases[1]
    coarse = rng.choice(256, per_layer + 3 * per_layer, replace=False)
    chosen1, helpers = coarse[:per_layer], coarse[per_layer:]
    for i in coarse:  # weights on a 2^-10 grid: exact sums have few bits
        w1[i] = (np.round(w1[i].astype(np.float64) * 2**10) / 2**10).astype(np.float32)
        y = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(w1[i], x[0]))
        target = Fraction(0) if i in chosen1 else Fraction(1, 2)  # kink, or output exactly 1/2
        b1[i] = np.float32(target - y)
        assert Fraction(float(b1[i])) == target - y
    chosen2 = [int(i) for i in rng.choice(256, per_layer, replace=False)]
    for n, i in enumerate(chosen2):  # three helpers with output 1/2, weights 1/4: y = 3/8
        row = np.zeros(256, dtype=np.float32)
        row[helpers[3 * n : 3 * n + 3]] = np.float32(0.25)
        w2[i] = row
        b2[i] = np.float32(-0.375)
    return weights, biases, x, [int(i) for i in chosen1], chosen2


@bench_row("mlp-784-256-256-10-10-kinks", "verdict")
def bench_forced_kinks() -> dict[str, Any]:
    """(b) the same MLP with 10 kinks forced by solving biases: exact pass + T2."""
    weights, biases, x, c1, c2 = forced_kink_mlp()
    net = dense_network(weights, biases, x, ["relu", "relu", "identity"], source="bench:mlp-kinks")
    out = _row(net, weights, biases, x, 10)
    out["detail"] = f"kinks forced at layer-1 units {c1} and layer-2 units {c2}; " + out.pop(
        "verdict"
    )
    return out


def bias_free_net(seed: int = 2):
    """A bias-free 4-8-8-1 ReLU net whose units hit the kink through cancellations and zero rows."""
    rng = np.random.default_rng(seed)
    x = np.array([[1.0, -1.0, 0.5, 0.0]], dtype=np.float32)
    w1 = (rng.integers(-4, 5, (8, 4)) / 4).astype(np.float32)
    w1[0, :] = [0.5, 0.5, 0.25, 1]  # 0.5 - 0.5 + 0.125 = 1/8 > 0
    w1[1, :] = [0.75, 0.75, 0, 2]  # cancels: kink
    w1[2, :] = [0.25, 0.25, 0, -1]  # cancels: kink
    w1[3, :] = [1, 0, -2, 3]  # 1 - 1 = 0: kink
    w2 = (rng.integers(-4, 5, (8, 8)) / 4).astype(np.float32)
    w2[0, :] = 0  # a zero row: kink for every input
    w2[1, :] = [0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0]
    w3 = (rng.integers(-4, 5, (1, 8)) / 4).astype(np.float32)
    w3[0, :2] = [1, -1]
    return [w1, w2, w3], [None, None, None], x


@bench_row("bias-free-4-8-8-1-lra", "verdict")
def bench_lra() -> dict[str, Any]:
    """(c) a bias-free 3-layer net with kinks: the kink-graph + LRA path (target < 2 s)."""
    weights, biases, x = bias_free_net()
    net = dense_network(weights, biases, x, ["relu", "relu", "identity"], source="bench:bias-free")
    t0 = time.perf_counter()
    v = check(net, "pytorch")
    seconds = time.perf_counter() - t0
    w64 = [w.astype(np.float64) for w in weights]
    base = best_of(lambda: numpy_pass(w64, biases, x.astype(np.float64)))
    return {
        "seconds": seconds,
        "baseline_seconds": base,
        "ratio": seconds / base,
        "target": "seconds < 2",
        "ok": seconds < 2,
        "detail": f"bias-free 4-8-8-1 ReLU; {verdict_text(v)}",
    }


__all__ = [
    "timed_verdict",
    "verdict_text",
    "numpy_pass",
    "mnist_mlp",
    "forced_kink_mlp",
    "bias_free_net",
]
