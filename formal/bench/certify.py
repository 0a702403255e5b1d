"""Bench rows of the group "certificate": certificate size and ``verify`` time vs ``check`` time.

The networks are 12-16-16-1 ReLU MLPs (binary32, dyadic weights and inputs, so a
bias solved onto a kink is exact in binary32) with 0, 10 or 20 hidden units put
exactly on the kink (10 in layer 1, 10 more in layer 2), plus a differentiable
10-kink network (five ``relu(z) - relu(-z)`` pairs, whose certificate lists
sign patterns with Gordan multipliers).
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from typing import Any

from formal.bench.runner import bench_row, best_of
from formal.engine.certificate import build_certificate, load_document
from formal.engine.verdict import check
from formal.io.formalnet import from_dict
from formal.verify.kernel import verify

_VALUES = [Fraction(v, 4) for v in range(-8, 9)]


def kinked_mlp(
    kinks: int, seed: int = 0, sizes: tuple[int, ...] = (12, 16, 16, 1)
) -> dict[str, Any]:
    """formal-net/1 document of a ReLU MLP with ``kinks`` units solved onto the kink.

    Up to ``sizes[1]`` kinks go to layer 1, the rest to layer 2; the other units'
    biases put them at pre-activation 1/2 or -1/2 (away from the kink).
    """
    rng = random.Random(seed)
    x = [rng.choice(_VALUES) for _ in range(sizes[0])]
    layers: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    h = x
    left = kinks
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        w = [[rng.choice(_VALUES) for _ in range(n_in)] for _ in range(n_out)]
        on = 0 if last else min(left, n_out)
        left -= on
        pre = [sum((a * b for a, b in zip(row, h)), Fraction(0)) for row in w]
        bias = [
            -p if u < on else -p + (Fraction(1, 2) if u % 2 else Fraction(-1, 2))
            for u, p in enumerate(pre)
        ]
        params[f"{i}.weight"] = [[str(v) for v in row] for row in w]
        params[f"{i}.bias"] = [str(v) for v in bias]
        layers.append(
            {
                "type": "dense",
                "units": n_out,
                "bias": True,
                "activation": "identity" if last else "relu",
            }
        )
        h = [max(p + b, Fraction(0)) for p, b in zip(pre, bias)]
    return {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[str(v) for v in x]],
        "layers": layers,
        "params": params,
    }


def cancelling_pairs(pairs: int) -> dict[str, Any]:
    """sum_j (relu(w_j x) - relu(-w_j x)) at w = 0: 2*pairs kinks, differentiable, AD wrong."""
    n = 2 * pairs
    w1 = [["0"] for _ in range(n)]
    w2 = [["1" if u % 2 == 0 else "-1" for u in range(n)]]
    tied = [[f"0.weight[{2 * j},0]", f"-0.weight[{2 * j + 1},0]"] for j in range(pairs)]
    return {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [["1"]],
        "layers": [
            {"type": "dense", "units": n, "bias": False, "activation": "relu"},
            {"type": "dense", "units": 1, "bias": False},
        ],
        "params": {"0.weight": w1, "1.weight": w2},
        "trainable": ["0.weight"],
        "tied": tied,
    }


def certificate_row(doc: dict[str, Any]) -> dict[str, Any]:
    """check time, certificate size, verify time (same process)."""
    doc = load_document(json.dumps(doc))
    net = from_dict(doc)
    v = check(net)
    t_check = best_of(lambda: check(net), repeat=3)
    cert = build_certificate(net, doc, v, "pytorch")
    t_cert = best_of(lambda: build_certificate(net, doc, v, "pytorch"), repeat=3)
    text = json.dumps(cert)
    parsed = json.loads(text, parse_float=str)
    res = verify(parsed)
    t_verify = best_of(lambda: verify(parsed), repeat=3)
    return {
        "seconds": t_verify,
        "baseline_seconds": t_check,
        "ratio": t_verify / t_check,
        "detail": (
            f"kinks={v.kink_neurons} verdict={cert['verdict']} bytes={len(text)} "
            f"patterns={len(cert.get('patterns', []))} excluded={len(cert.get('excluded', []))} "
            f"check={t_check:.4f}s certify={t_cert:.4f}s verify={t_verify:.4f}s: {res.verdict}"
        ),
    }


@bench_row("certificate-mlp-0-kinks", "certificate")
def bench_cert_0() -> dict[str, Any]:
    """12-16-16-1 ReLU MLP, no kinks: verify time vs check time, certificate bytes."""
    return certificate_row(kinked_mlp(0))


@bench_row("certificate-mlp-10-kinks", "certificate")
def bench_cert_10() -> dict[str, Any]:
    """The same MLP with 10 units on the kink (T2: non-differentiable)."""
    return certificate_row(kinked_mlp(10))


@bench_row("certificate-mlp-20-kinks", "certificate")
def bench_cert_20() -> dict[str, Any]:
    """The same MLP with 20 units on the kink (10 per hidden layer)."""
    return certificate_row(kinked_mlp(20))


@bench_row("certificate-pairs-10-kinks", "certificate")
def bench_cert_pairs() -> dict[str, Any]:
    """Five relu(z) - relu(-z) pairs: differentiable, 32 realizable patterns + Gordan."""
    return certificate_row(cancelling_pairs(5))


__all__ = ["kinked_mlp", "cancelling_pairs", "certificate_row"]
