"""The open question of docs/theory.md section 4, answered by exhaustive enumeration.

For bias-free dense networks with B = 1 (one input x), up to two hidden
layers of at most two units, every kinked activation, and the presets
``pytorch``, ``left``, ``right``, ``lambda=1/2``: count inc_Omega exactly on a
small format and give witnesses.

Inputs X.  Bias-free first-layer pre-activations are ``w x``; scaling x by a
power of two only shifts the exponents of the first-layer weights (up to the
format's range), so x = 1 stands for every +-2^k.  x = 3 has a three-bit
mantissa (products w x leave the format's grid, and the kinks +-3 of
HardSigmoid/HardSwish become reachable at layer 1); x = 0 is the zero input
the theory's (docs/theory.md) bias-free bound singles out (every first-layer unit sits at 0).
Output layer: one unit, identity or the same activation as the hidden layers
(E1 has a kinked output).  Every witness is re-decided by the core's
``check`` before it is reported.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from tqdm import tqdm

from formal.core.activations import parse_preset
from formal.core.builders import zero_mlp
from formal.core.network import Network
from formal.core.numbers import format_exact
from formal.count.counting import exhaustive, members_scaled, with_point
from formal.engine.batch import Chain, forward, require_chain
from formal.engine.patterns import decide
from formal.engine.verdict import check

PRESETS = ("pytorch", "left", "right", "lambda=1/2")
ACTIVATIONS: dict[str, Any] = {
    "relu": "relu",
    "leaky_relu": {"name": "leaky_relu", "slope": "1/100"},
    "relu6": "relu6",
    "hardtanh": "hardtanh",
    "hardsigmoid": "hardsigmoid",
    "hardswish": "hardswish",
    "abs": "abs",
}
ARCHS: tuple[tuple[int, ...], ...] = ((1,), (2,), (1, 1), (1, 2), (2, 1), (2, 2))


def bias_free_net(numbers: str, x: str, hidden: tuple[int, ...], act: Any, out_act: Any) -> Network:
    """A bias-free dense net 1 -> hidden... -> 1 with all weights trainable (values 0)."""
    name = "x".join(map(str, (1, *hidden, 1)))
    label = act if isinstance(act, str) else act["name"]
    return zero_mlp(
        numbers,
        [[x]],
        hidden,
        act,
        bias=False,
        out_act=out_act,
        name=f"bias-free {name} {label} x={x}",
    )


def zero_input_hook(chain: Chain | None, w: np.ndarray, q: int, bv: Any) -> dict[str, int]:
    """Per (layer, sample): number of points where that layer's inputs are all 0."""
    if chain is None:
        return {}
    batch = bv.batch if bv is not None and bv.batch is not None else forward(chain, w, q, [])
    out: dict[str, int] = {}
    B = batch.x.shape[1]
    prev = np.broadcast_to(np.all(batch.x == 0, axis=2), (batch.P, B))
    for li, st in enumerate(batch.states):
        for s in range(B):
            out[f"zero_inputs[{li},{s}]"] = int(prev[:, s].sum())
        prev = np.all(st.zero_z, axis=2)
    return out


@dataclass(frozen=True, slots=True)
class Row:
    """One exhaustive run."""

    numbers: str
    arch: tuple[int, ...]
    activation: str
    output: str
    x: str
    omega: int
    parameters: int
    ndf: int
    inc: dict[str, int]
    witnesses: dict[str, tuple[Fraction, ...]]
    labels: tuple[str, ...]
    zero_inputs: dict[str, int]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this run (exact counts and witnesses as strings)."""
        return {
            "numbers": self.numbers,
            "arch": "1-" + "-".join(map(str, self.arch)) + "-1",
            "activation": self.activation,
            "output": self.output,
            "x": self.x,
            "omega": str(self.omega),
            "ndf": str(self.ndf),
            "inc": {k: str(v) for k, v in self.inc.items()},
            "witnesses": {
                k: dict(zip(self.labels, (format_exact(v) for v in w)))
                for k, w in self.witnesses.items()
            },
        }


def plan(budget: str) -> list[tuple[str, tuple[int, ...], str, str, str]]:
    """(format, hidden sizes, activation, output, x) runs for a budget.

    quick: fp(2,1) (|M| = 11), every architecture with W <= 4 parameters for
    x in {1, 3, 0} and both outputs, and W = 5 for x = 1 with an identity
    output.  full: fp(2,1) for every W <= 5 run, fp(3,2) (|M| = 55) for
    W <= 3 and for W = 4 with x = 1 and an identity output, and e4m3 (|M| =
    253) for W = 2.  The 1-2-2-1 architecture (W = 8) is sampled, not
    enumerated (see :func:`sampled`).
    """
    runs: list[tuple[str, tuple[int, ...], str, str, str]] = []
    for act in ACTIVATIONS:
        for out in ("identity", "same"):
            for x in ("1", "3", "0"):
                for arch in ARCHS:
                    W = n_params(arch)
                    if W > 5:
                        continue
                    if budget == "quick":
                        if W <= 4 or (x == "1" and out == "identity"):
                            runs.append(("fp(2,1)", arch, act, out, x))
                        continue
                    runs.append(("fp(2,1)", arch, act, out, x))
                    if W <= 3 or (W == 4 and x == "1" and out == "identity"):
                        runs.append(("fp(3,2)", arch, act, out, x))
                    if W <= 2:
                        runs.append(("e4m3", arch, act, out, x))
    return runs


def n_params(arch: tuple[int, ...]) -> int:
    return arch[0] + sum(a * b for a, b in zip(arch, arch[1:])) + arch[-1]


def run_one(
    numbers: str,
    arch: tuple[int, ...],
    act: str,
    out: str,
    x: str,
    *,
    progress: bool = False,
    cross_check: int = 2,
) -> Row:
    """Count one bias-free dense net exhaustively (ndf, inc per preset) with an inc witness each."""
    spec = ACTIVATIONS[act]
    net = bias_free_net(numbers, x, arch, spec, spec if out == "same" else "identity")
    t0 = time.perf_counter()
    ex = exhaustive(
        net,
        PRESETS,
        cross_check=cross_check,
        hooks=[zero_input_hook],
        witnesses=1,
        progress=progress,
    )
    wit = {p: tuple(ex.witnesses[f"inc:{p}"][0]) for p in PRESETS if ex.witnesses[f"inc:{p}"]}
    return Row(
        numbers,
        arch,
        act,
        out,
        x,
        ex.omega,
        net.param_count(),
        ex.ndf,
        dict(ex.inc),
        wit,
        tuple(net.parameterization().labels),
        {k: v for k, v in ex.extra.items()},
        time.perf_counter() - t0,
    )


def verify_witness(row: Row, preset: str) -> bool:
    """Re-decide a witness with the core's check: it must be in inc for the preset."""
    spec = ACTIVATIONS[row.activation]
    net = bias_free_net(
        row.numbers, row.x, row.arch, spec, spec if row.output == "same" else "identity"
    )
    v = check(with_point(net, list(row.witnesses[preset])), parse_preset(preset))
    return v.in_inc is True and v.differentiable is True


def search(budget: str = "quick", *, progress: bool = False) -> list[Row]:
    """Every run of the open-question plan at ``budget``, exhaustively counted."""
    rows = []
    runs = plan(budget)
    # a bar on stderr when it is a terminal (tqdm's disable=None), shown after 2 s
    bar = tqdm(runs, desc="open question", file=sys.stderr, disable=None, delay=2.0, leave=False)
    for r in bar:
        heavy = n_params(r[1]) >= 4 and r[4] == "1"
        rows.append(
            run_one(
                *r, progress=progress, cross_check=(1 if heavy else 0) if budget == "quick" else 4
            )
        )
    return rows


def sampled(numbers: str, act: str, out: str, x: str, n: int, *, seed: int = 0) -> Row:
    """The 1-2-2-1 architecture (W = 8, too large to enumerate): n random points, exact verdicts.

    Coordinates are 0 with probability 1/4, +-1 with probability 1/8 each,
    and otherwise uniform over M, so that kinks (and the zero inputs behind
    E1-type witnesses) are frequent.  Counts are of sampled points, not of Omega.
    """
    spec = ACTIVATIONS[act]
    net = bias_free_net(numbers, x, (2, 2), spec, spec if out == "same" else "identity")
    chain = require_chain(net)
    vals, q = members_scaled(net.numbers)
    rng = np.random.default_rng(seed)
    W = net.param_count()
    presets = [parse_preset(p) for p in PRESETS]
    t0 = time.perf_counter()
    inc = dict.fromkeys(PRESETS, 0)
    wit: dict[str, tuple[Fraction, ...]] = {}
    ndf = 0
    for s0 in range(0, n, 1 << 15):
        m = min(1 << 15, n - s0)
        u = rng.random((m, W))
        w = vals[rng.integers(0, len(vals), size=(m, W))]
        w = np.where(u < 0.25, 0, np.where(u < 0.375, q, np.where(u < 0.5, -q, w)))
        bv = decide(chain, w, q, presets)
        ndf += int(bv.ndf.sum())
        for j, p in enumerate(PRESETS):
            hits = np.flatnonzero(bv.inc[:, j] & ~bv.undecided)
            inc[p] += len(hits)
            if len(hits) and p not in wit:
                wit[p] = tuple(Fraction(int(v), q) for v in w[hits[0]])
    return Row(
        numbers,
        (2, 2),
        act,
        out,
        x,
        n,
        W,
        ndf,
        inc,
        wit,
        tuple(net.parameterization().labels),
        {},
        time.perf_counter() - t0,
    )


def summarize(rows: list[Row]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (activation, preset): points enumerated, inc total, and one witness row."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        for p in PRESETS:
            s = out.setdefault(
                (r.activation, p), {"points": 0, "inc": 0, "runs": 0, "witness": None}
            )
            s["points"] += r.omega
            s["inc"] += r.inc[p]
            s["runs"] += 1
            if r.inc[p] and s["witness"] is None:
                s["witness"] = r
    return out


__all__ = [
    "bias_free_net",
    "search",
    "summarize",
    "run_one",
    "verify_witness",
    "Row",
    "PRESETS",
    "ACTIVATIONS",
    "ARCHS",
    "plan",
    "sampled",
]
