"""Bench rows of the group "subgradient": ``check --subgradient`` against ``check`` alone.

The networks are 12-64-64-1 ReLU MLPs (binary32, dyadic weights and inputs, so a
bias solved onto a kink is exact) with 0, 10 or 100 hidden units put exactly on
the kink in sample 0 (up to 64 in layer 1, the rest in layer 2), at B = 1 and at
B = 32 (objective: the sum over the batch; the other 31 samples are random and
away from the kinks, the row reports the kink count the engine found).  The
subgradient time includes its own ``check``; its verdict is passed on, as
``formal check --subgradient`` does.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from typing import Any

from formal.bench.runner import bench_row, best_of
from formal.engine.certificate import load_document
from formal.engine.subgradient import subgradient
from formal.engine.verdict import check
from formal.io.formalnet import from_dict

_VALUES = [Fraction(v, 4) for v in range(-8, 9)]
SIZES = (12, 64, 64, 1)


def kinked_batch_mlp(kinks: int, batch: int, seed: int = 0) -> dict[str, Any]:
    """formal-net/1 document: a ReLU MLP with ``kinks`` units of sample 0 solved onto the kink."""
    rng = random.Random(seed)
    X = [[rng.choice(_VALUES) for _ in range(SIZES[0])]] + [
        [Fraction(rng.randrange(-(2**20), 2**20) | 1, 2**19) for _ in range(SIZES[0])]
        for _ in range(batch - 1)
    ]  # samples 1.. on a fine odd grid: away from every kink
    layers: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    H = X
    left = kinks
    for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        last = i == len(SIZES) - 2
        w = [[rng.choice(_VALUES) for _ in range(n_in)] for _ in range(n_out)]
        on = 0 if last else min(left, n_out)
        left -= on
        pre0 = [sum((a * b for a, b in zip(row, H[0])), Fraction(0)) for row in w]
        bias = [
            -p if u < on else -p + (Fraction(1, 2) if u % 2 else Fraction(-1, 2))
            for u, p in enumerate(pre0)
        ]
        params[f"{i}.weight"] = [[str(v) for v in row] for row in w]
        params[f"{i}.bias"] = [str(v) for v in bias]
        act = "identity" if last else "relu"
        layers.append({"type": "dense", "units": n_out, "bias": True, "activation": act})
        H = [
            [
                max(sum((a * b for a, b in zip(row, h)), Fraction(0)) + c, Fraction(0))
                for row, c in zip(w, bias)
            ]
            for h in H
        ]
    doc: dict[str, Any] = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[str(v) for v in x] for x in X],
        "layers": layers,
        "params": params,
    }
    if batch > 1:
        doc["objective"] = {"type": "sum"}
    return doc


def subgradient_row(kinks: int, batch: int) -> dict[str, Any]:
    """check time (baseline) and check + subgradient time (``--subgradient``), same process.

    ``--subgradient`` runs check and then the subgradient with check's verdict, so its
    time is measured as check's plus the subgradient step's (a check slower than a
    second is timed once).
    """
    net = from_dict(load_document(json.dumps(kinked_batch_mlp(kinks, batch))))
    v = check(net)
    t_check = v.seconds if v.seconds > 1 else best_of(lambda: check(net), repeat=3)
    sg = subgradient(net, verdict=v)
    t_step = best_of(lambda: subgradient(net, verdict=v), repeat=3)
    t_sg = t_check + t_step
    return {
        "seconds": t_sg,
        "baseline_seconds": t_check,
        "ratio": t_sg / t_check,
        "detail": (
            f"B={batch} kinks={v.kink_neurons} params={v.parameters} method={v.method} "
            f"kind={sg.kind} ad_is_element={sg.ad_is_element} lp_calls={sg.lp_calls} "
            f"check={t_check:.4f}s subgradient step={t_step:.4f}s"
        ),
    }


def _register(kinks: int, batch: int) -> None:
    def row() -> dict[str, Any]:
        return subgradient_row(kinks, batch)

    row.__doc__ = f"12-64-64-1 ReLU MLP, B = {batch}, {kinks} kinks: --subgradient vs check."
    bench_row(f"subgradient-mlp-B{batch}-{kinks}-kinks", "subgradient")(row)


for _b in (1, 32):
    for _k in (0, 10, 100):
        _register(_k, _b)

__all__ = ["kinked_batch_mlp", "subgradient_row"]
