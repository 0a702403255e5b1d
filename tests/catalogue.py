"""Named cases with hand-checked ground truth.

From docs/theory.md sections 4 and 5; Lemma 7 with conv + max-pool.

Each :class:`Case` is a formal-net/1 document plus, per proxy preset, what a
correct verdict must say.  Every number below was computed by hand; the
computation is in the case's ``proof``.  ``bouligand``/``clarke`` use
:data:`NOT_TRUE` / :data:`NOT_FALSE` where the mathematical truth is known
but the toolkit is only required not to contradict it ("not certified" is
an honest answer, a wrong certificate is not).

Parameter order (the vector w) follows formal-net/1: layers in order, weight
then bias, entries row-major, tied entries merged into their first entry,
frozen tensors left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

F = Fraction
EXAMPLES = Path(__file__).resolve().parents[1] / "formal" / "examples"

NOT_TRUE = "not-true"  # the claim would be false: True is forbidden, False/None allowed
NOT_FALSE = "not-false"  # the claim holds: False is forbidden, True/None allowed


@dataclass(frozen=True)
class Expect:
    """What check(net, preset) must answer."""

    differentiable: bool
    ad: tuple[tuple[Fraction, ...], ...]  # AD(w) with the preset's proxies (n_obj x W)
    gradient: tuple[tuple[Fraction, ...], ...] | None  # grad f(w) when differentiable
    methods: tuple[str, ...]
    bouligand: Any = None  # True / False / None (exact), or NOT_TRUE / NOT_FALSE
    clarke: Any = None

    @property
    def ad_correct(self) -> bool:
        return self.differentiable and self.ad == self.gradient


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    labels: tuple[str, ...]
    value: tuple[Fraction, ...]  # f(w), one per objective row
    kink_neurons: int
    hypothesis_h: bool
    expect: dict[str, Expect]
    proof: str
    witness: dict[str, Any] = field(default_factory=dict)  # preset -> expected witness fields


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def row(*xs: Any) -> tuple[tuple[Fraction, ...], ...]:
    return (tuple(F(x) for x in xs),)


# --- E1 --------------------------------------------------------------------------
# f(w1, w2) = relu(w2 relu(w1 x)), x = 1, at (0, -1).  For w2 < 0, w2 relu(w1) <= 0, so f = 0
# on a neighbourhood: differentiable, grad (0, 0), and the Clarke set is {(0, 0)}.  Both
# units sit on the kink (y1 = 0, y2 = -1 * 0 = 0).  AD with relu'(0) = p:
# df/dw1 = p * w2 * p * x = -p^2, df/dw2 = p * relu(w1 x) = 0.
E1_PROOF = "f = 0 near (0, -1); AD = (-p^2, 0) for relu'(0) = p"


def _e1(p: Fraction, methods=("kink-graph-lra",)) -> Expect:
    ad = row(-p * p, 0)
    ok = ad == row(0, 0)
    return Expect(True, ad, row(0, 0), methods, True if ok else NOT_TRUE, True if ok else NOT_TRUE)


E1 = Case(
    "e1",
    example("e1"),
    ("0.weight[0,0]", "1.weight[0,0]"),
    (F(0),),
    2,
    False,
    {
        "pytorch": _e1(F(0)),
        "left": _e1(F(0)),
        "right": _e1(F(1)),
        "lambda=1/2": _e1(F(1, 2)),
        "value=0": _e1(F(0)),
        "value=1/2": _e1(F(1, 2)),
        "value=1": _e1(F(1)),
        "value=2": _e1(F(2)),
    },
    E1_PROOF,
    {
        "right": {
            "kind": "ad-mismatch",
            "param": "0.weight[0,0]",
            "output": "out[0,0]",
            "ad": F(-1),
            "gradient": F(0),
        },
        "lambda=1/2": {
            "kind": "ad-mismatch",
            "param": "0.weight[0,0]",
            "ad": F(-1, 4),
            "gradient": F(0),
        },
    },
)

# --- Lemma 2 (ICLR 2024) --------------------------------------------------------------
# One parameter u (0.weight[0,0], tied to -0.weight[1,0]), X = 1: pre-activations (u, -u),
# f = relu(u) - relu(-u) = u everywhere: grad 1.  AD = p * 1 - p * (-1) = 2p.


def _lemma2(p: Fraction) -> Expect:
    ok = 2 * p == 1
    return Expect(
        True,
        row(2 * p),
        row(1),
        ("kink-graph-lra",),
        True if ok else NOT_TRUE,
        True if ok else NOT_TRUE,
    )


LEMMA2 = Case(
    "lemma2",
    example("lemma2"),
    ("0.weight[0,0]",),
    (F(0),),
    2,
    False,
    {
        "value=0": _lemma2(F(0)),
        "value=1": _lemma2(F(1)),
        "value=1/2": _lemma2(F(1, 2)),
        "pytorch": _lemma2(F(0)),
        "right": _lemma2(F(1)),
        "lambda=1/2": _lemma2(F(1, 2)),
    },
    "f(u) = relu(u) - relu(-u) = u: grad 1, AD 2p",
    {
        "value=0": {"kind": "ad-mismatch", "param": "0.weight[0,0]", "ad": F(0), "gradient": F(1)},
        "value=1": {"kind": "ad-mismatch", "param": "0.weight[0,0]", "ad": F(2), "gradient": F(1)},
    },
)

# --- Lemma 3 (ICLR 2024) --------------------------------------------------------------
# One trainable bias b, frozen weight 1, X = (3, -3), hardsigmoid hs(x) = relu6(x + 3) / 6,
# objective = batch sum: f(b) = hs(3 + b) + hs(-3 + b).  Near b = 0: b < 0 gives
# (6 + b)/6 + 0, b > 0 gives 1 + b/6: f = 1 + b/6, grad 1/6, f(0) = 1.  Sample 0 sits on
# the kink 3 (D- 1/6, D+ 0), sample 1 on the kink -3 (D- 0, D+ 1/6): AD = proxy(3) + proxy(-3).
# pytorch/jax: 0 + 0 = 0 (wrong); left: 1/6 + 0; right: 0 + 1/6; lambda=1/2: 1/12 + 1/12.


def _lemma3(ad: Fraction) -> Expect:
    ok = ad == F(1, 6)
    return Expect(
        True,
        row(ad),
        row(F(1, 6)),
        ("kink-graph-lra",),
        True if ok else NOT_TRUE,
        True if ok else NOT_TRUE,
    )


LEMMA3 = Case(
    "lemma3",
    example("lemma3"),
    ("0.bias[0]",),
    (F(1),),
    2,
    False,
    {
        "pytorch": _lemma3(F(0)),
        "jax": _lemma3(F(0)),
        "left": _lemma3(F(1, 6)),
        "right": _lemma3(F(1, 6)),
        "lambda=1/2": _lemma3(F(1, 6)),
    },
    "f(b) = 1 + b/6 near 0 (B = 2 breaks H); AD = proxy(3) + proxy(-3)",
    {
        "pytorch": {
            "kind": "ad-mismatch",
            "param": "0.bias[0]",
            "output": "objective",
            "ad": F(0),
            "gradient": F(1, 6),
        }
    },
)

# --- f1, f2, f3 (ICLR 2024 App. H); per-layer proxy overrides make every preset alike ------
# f1 = g(w) - g(-w) = w (g = relu, proxy 0): grad 1, AD 0.
# f2 = g(w) - h(w) = 0 (h = relu with proxy 1; one tensor entry tied to both units): grad 0,
#      AD = 0 - 1 = -1.
# f3 = h(-h(w)) = relu(-relu(w)) = 0: grad 0; both units on the kink; AD = 1 * (-1) * 1 = -1.
ALL_PRESETS = ("pytorch", "left", "right", "lambda=1/2", "jax")
F1 = Case(
    "f1",
    example("f1"),
    ("0.weight[0,0]",),
    (F(0),),
    2,
    False,
    {p: Expect(True, row(0), row(1), ("kink-graph-lra",), NOT_TRUE, NOT_TRUE) for p in ALL_PRESETS},
    "f1(w) = relu(w) - relu(-w) = w; proxies 0: AD 0",
)
F2 = Case(
    "f2",
    example("f2"),
    ("0.weight[0,0]",),
    (F(0),),
    2,
    False,
    {
        p: Expect(True, row(-1), row(0), ("kink-graph-lra",), NOT_TRUE, NOT_TRUE)
        for p in ALL_PRESETS
    },
    "f2(w) = relu(w) - relu(w) = 0; proxies 0 and 1: AD -1",
)
F3 = Case(
    "f3",
    example("f3"),
    ("0.weight[0,0]",),
    (F(0),),
    2,
    False,
    {
        p: Expect(True, row(-1), row(0), ("kink-graph-lra",), NOT_TRUE, NOT_TRUE)
        for p in ALL_PRESETS
    },
    "f3(w) = relu(-relu(w)) = 0; proxies 1: AD -1",
)

# --- the axis trap -------------------------------------------------------------------------
# f(w1, w2) = |w1 + w2| - |w1| - |w2| at (0, 0): f'(0; d) = |d1 + d2| - |d1| - |d2| is 0 on both
# axes (and their negations) but f'(e1 - e2) = -2: not differentiable.  AD = 0 for every
# proxy p of abs (p - p on each coordinate).  0 is the gradient of g on the orthants
# d1, d2 > 0, so AD is a Bouligand subgradient (True is right, None is allowed).


def axis_trap_g(d1: Fraction, d2: Fraction) -> Fraction:
    return abs(d1 + d2) - abs(d1) - abs(d2)


AXIS = Case(
    "axis-trap",
    example("axis-trap"),
    ("0.weight[0,0]", "0.weight[1,0]"),
    (F(0),),
    3,
    False,
    {
        p: Expect(False, row(0, 0), None, ("kink-graph-lra",), NOT_FALSE, NOT_FALSE)
        for p in ALL_PRESETS
    },
    "f'(0; d) = |d1 + d2| - |d1| - |d2|: zero on the axes, -2 at (1, -1)",
)

# --- the rounding trap -----------------------------------------------------------------------
# w = 0x1.99999ap-4 = 26843546 / 2^28 (binary32), x = 10: y = 268435460 / 2^28 = 1 + 2^-26 > 1,
# so hardtanh is constant 1 near w: no kink, grad 0.  In float32, w * 10 rounds to exactly 1.0.
ROUNDING_W = F(26843546, 2**28)
ROUNDING = Case(
    "rounding-trap",
    example("rounding-trap"),
    ("0.weight[0,0]",),
    (F(1),),
    0,
    False,
    {p: Expect(True, row(0), row(0), ("no-kinks",), True, True) for p in ALL_PRESETS},
    "y = 1 + 2^-26 exactly: not the kink 1; float32 gives 1.0",
)

# --- tiny-mlp ------------------------------------------------------------------------------
# x = (1/2, -1); W0 = [[1, 2], [3/4, 1/2], [-1, 1/8]], b0 = (1/4, 1/8, 2):
# y0 = -5/4 (dead), y1 = 3/8 - 1/2 + 1/8 = 0 (kink), y2 = -1/2 - 1/8 + 2 = 11/8.
# f = 1 * relu(y0) - 2 * relu(y1) + 1/2 * relu(y2) + 0 = 11/16.  H holds (B = 1, own biases):
# T2 with zbar_1 = -2: f'(e_b1) = -2 D+ = -2, f'(-e_b1) = -2 D- (-1) = 0: not differentiable.
# AD: unit 2 active with adjoint 1/2 -> W0[2] gets (1/4, -1/2), b0[2] gets 1/2; W1 gets
# (0, 0, 11/8), b1 gets 1; unit 1 passes -2 * p: W0[1] gets (-p, 2p), b0[1] gets -2p.
TINY_LABELS = (
    "0.weight[0,0]",
    "0.weight[0,1]",
    "0.weight[1,0]",
    "0.weight[1,1]",
    "0.weight[2,0]",
    "0.weight[2,1]",
    "0.bias[0]",
    "0.bias[1]",
    "0.bias[2]",
    "1.weight[0,0]",
    "1.weight[0,1]",
    "1.weight[0,2]",
    "1.bias[0]",
)


def _tiny(p: Fraction, bouligand: Any, clarke: Any) -> Expect:
    ad = row(0, 0, -p, 2 * p, F(1, 4), F(-1, 2), 0, -2 * p, F(1, 2), 0, 0, F(11, 8), 1)
    return Expect(False, ad, None, ("bias-criterion",), bouligand, clarke)


TINY = Case(
    "tiny-mlp",
    example("tiny-mlp"),
    TINY_LABELS,
    (F(11, 16),),
    1,
    True,
    {
        "pytorch": _tiny(F(0), True, True),
        "left": _tiny(F(0), True, True),
        "right": _tiny(F(1), True, True),
        "lambda=1/2": _tiny(F(1, 2), None, True),
    },
    "y1 = 0 with adjoint -2 under H: T2; f(w) = 11/16",
    {
        p: {
            "kind": "non-additive",
            "output": "out[0,0]",
            "d1": {"0.bias[1]": F(1)},
            "d2": {"0.bias[1]": F(-1)},
            "df_d1": F(-2),
            "df_d2": F(0),
            "df_d1_plus_d2": F(0),
        }
        for p in ("pytorch", "right")
    },
)

# --- the cusp: differentiable, AD wrong, yet AD a Bouligand subgradient --------------------------
# Parameters p = 0.weight[0,0], y = 0.weight[1,0] (identity layer, x = 1) and
# (a, b, c, d) = 1.weight; f = relu(a p + b y) - relu(c p + d y) (frozen output weights
# (1, -1)), relu proxies 1 (unit 0) and 0 (unit 1), at p = y = a = c = 0, b = d = 1.
# |f(w + e)| <= |(a - c) p + (b - d) y| = O(|e|^2):
# differentiable with grad 0.  AD = 1 * b on y, i.e. e_y.  Along w_n = w + (p = t, y = t^2, c = -2t)
# the two pre-activations are t^2 > 0 and -t^2 < 0, so near w_n f = a p + b y and
# grad f(w_n) = (a, b, p, y, 0, 0) -> (0, 1, 0, 0, 0, 0) = AD: AD is in the Bouligand (hence
# Clarke) subdifferential although AD != grad f(w).  A verdict "bouligand: false" is wrong.
CUSP_DOC = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "inputs": [[1]],
    "layers": [
        {"type": "dense", "units": 2, "bias": False, "activation": "identity"},
        {
            "type": "dense",
            "units": 2,
            "bias": False,
            "activation": {"name": "relu", "proxy": [["1"], ["0"]]},
        },
        {"type": "dense", "units": 1, "bias": False, "activation": "identity"},
    ],
    "params": {"0.weight": [[0], [0]], "1.weight": [[0, 1], [0, 1]], "2.weight": [[1, -1]]},
    "trainable": ["0.weight", "1.weight"],
}
CUSP = Case(
    "cusp",
    CUSP_DOC,
    (
        "0.weight[0,0]",
        "0.weight[1,0]",
        "1.weight[0,0]",
        "1.weight[0,1]",
        "1.weight[1,0]",
        "1.weight[1,1]",
    ),
    (F(0),),
    2,
    False,
    {
        p: Expect(
            True,
            row(0, 1, 0, 0, 0, 0),
            row(0, 0, 0, 0, 0, 0),
            ("kink-graph-lra",),
            NOT_FALSE,
            NOT_FALSE,
        )
        for p in ALL_PRESETS
    },
    "f = O(|e|^2): grad 0; AD = e_y is the limit of grad f along w + (t, t^2, 0, 0, -2t, 0)",
    {
        p: {"kind": "ad-mismatch", "param": "0.weight[1,0]", "ad": F(1), "gradient": F(0)}
        for p in ALL_PRESETS
    },
)

# --- Lemma 7 (ICLR 2024), with a 1x1 convolution and max-pools (beyond dense layers) ----------
# Image x = (1, 0, -1, 0) (1 x 1 x 4), conv weight u and bias b (one shared b): pre-activations
# (u + b, b, -u + b, b); max-pools over {1, 2} and {3, 4}; objective m1 - m2.  f = b + relu(u) -
# b - relu(-u) = u: grad (1, 0).  Both windows tie at (0, 0).  AD, first index: m1 -> u + b,
# m2 -> -u + b: (1 + 1, 1 - 1) = (2, 0); last index: both -> b: (0, 0); mixed (first, last): (1, 0).
LEMMA7_DOC: dict[str, Any] = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "input_shape": [1, 1, 4],
    "inputs": [[1, 0, -1, 0]],
    "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 1, "bias": True},
        {"type": "maxpool2d", "kernel_size": [1, 2]},
        {"type": "flatten"},
    ],
    "params": {"0.weight": [[[[0]]]], "0.bias": [0]},
    "objective": {"type": "weighted_sum", "weights": [[1, -1]]},
}
LEMMA7 = Case(
    "lemma7",
    LEMMA7_DOC,
    ("0.weight[0,0,0,0]", "0.bias[0]"),
    (F(0),),
    2,
    False,
    {
        "pytorch": Expect(True, row(2, 0), row(1, 0), ("kink-graph-lra",), NOT_TRUE, NOT_TRUE),
        "pytorch,tie=last": Expect(
            True, row(0, 0), row(1, 0), ("kink-graph-lra",), NOT_TRUE, NOT_TRUE
        ),
    },
    "f = relu(u) - relu(-u) = u; AD (2, 0) first / (0, 0) last",
    {
        "pytorch": {
            "kind": "ad-mismatch",
            "param": "0.weight[0,0,0,0]",
            "ad": F(2),
            "gradient": F(1),
        }
    },
)
LEMMA7_MIXED = Case(
    "lemma7-mixed",
    {
        **LEMMA7_DOC,
        "layers": [
            LEMMA7_DOC["layers"][0],
            {"type": "maxpool2d", "kernel_size": [1, 2], "tie": ["first", "last"]},
            LEMMA7_DOC["layers"][2],
        ],
    },
    ("0.weight[0,0,0,0]", "0.bias[0]"),
    (F(0),),
    2,
    False,
    {"pytorch": Expect(True, row(1, 0), row(1, 0), ("kink-graph-lra",), True, True)},
    "mixed tie choices: AD (1, 0) = grad",
)

CASES: tuple[Case, ...] = (
    E1,
    LEMMA2,
    LEMMA3,
    F1,
    F2,
    F3,
    AXIS,
    ROUNDING,
    TINY,
    CUSP,
    LEMMA7,
    LEMMA7_MIXED,
)


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


__all__ = [
    "Case",
    "Expect",
    "CASES",
    "NOT_TRUE",
    "NOT_FALSE",
    "by_name",
    "axis_trap_g",
    "ROUNDING_W",
]
