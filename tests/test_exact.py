"""The exact engine: JVP/VJP consistency, the float filter's rigour, kink adjoints, forward values.

- the dot-product test ``c . (J d) == (J^T c) . d``, exact with rationals, at
  points without kinks (JAX's JVP/transpose check, here with no tolerance);
- the rigorous float64 filter never hides an exact kink: networks in binary64
  with cancellation, huge and subnormal values, inexact inputs, and a frozen
  bias solved exactly so a unit sits on a kink;
- kink adjoints (with and without the parameter adjoints demanded) equal the
  oracle's hand-written reverse pass.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oracle import Oracle, make_act
from strategies import networks

from formal.core.activations import parse_preset
from formal.core.qarray import QArray
from formal.engine.forward import (
    KinkNode,
    exact_forward,
    float_filter,
    forward,
    jvp,
    output_seeds,
    output_value,
    reverse,
)
from formal.engine.verdict import check
from formal.io.formalnet import from_dict

F = Fraction


def _rand_fraction(rnd, scale: int = 4) -> Fraction:
    return F(rnd.randint(-scale * 4, scale * 4), rnd.choice([1, 2, 3, 4, 8]))


@settings(max_examples=60)
@given(networks(force=False), st.randoms(use_true_random=False))
def test_jvp_vjp_dot_product_exact(doc, rnd):
    """For random d (W) and cotangent c (n_obj): c . (J d) == (J^T c) . d, exactly."""
    net = from_dict(doc)
    fwd = exact_forward(net, parse_preset("pytorch"))
    assume(not fwd.kinks)
    par = net.parameterization()
    W = par.size
    n_obj = net.objective_matrix().shape[0]
    dirs = [{j: _rand_fraction(rnd) for j in range(W)} for _ in range(3)]
    cots = [[_rand_fraction(rnd) for _ in range(n_obj)] for _ in range(3)]
    Jd = jvp(fwd, dirs).to_fractions()  # (R, n_obj)
    obj = net.objective_matrix().to_fractions()  # (n_obj, B * n_out)
    seeds_shape = output_seeds(net).shape[1:]
    rows = []
    for c in cots:
        flat = [sum((c[o] * obj[o, k] for o in range(n_obj)), F(0)) for k in range(obj.shape[1])]
        rows.append(flat)
    import numpy as np

    seeds = QArray.from_fractions(np.array(rows, dtype=object).reshape((len(cots),) + seeds_shape))
    rev = reverse(fwd, {net.output: seeds})
    JTc = par.collect(rev.params, len(cots)).to_fractions()  # (R, W)
    for r, d in enumerate(dirs):
        for s, c in enumerate(cots):
            lhs = sum((c[o] * Jd[r, o] for o in range(n_obj)), F(0))
            rhs = sum((JTc[s, j] * d[j] for j in range(W)), F(0))
            assert lhs == rhs


# ---------------------------------------------------------------------------
# the float filter


def _b64_values() -> st.SearchStrategy[Fraction]:
    """Binary64 members: small dyadics, huge and subnormal powers of two, 1 + ulp."""
    small = st.sampled_from([F(0), F(1), F(-1), F(1, 2), F(-3, 4), F(3), F(1, 1024)])
    pow2 = st.builds(lambda k, s: s * F(2) ** k, st.integers(-1074, 600), st.sampled_from([1, -1]))
    near1 = st.builds(
        lambda k, s: s * (1 + F(1, 2**52)) * F(2) ** k,
        st.integers(-60, 60),
        st.sampled_from([1, -1]),
    )
    return st.one_of(small, pow2, near1)


def _inputs() -> st.SearchStrategy[Fraction]:
    return st.one_of(
        st.sampled_from(
            [F(0), F(1), F(1, 3), F(1, 10), F(-2, 7), F(10**20 + 1), F(1, 3 * 2**1000)]
        ),
        st.fractions(min_value=-100, max_value=100, max_denominator=1000),
    )


@st.composite
def b64_kinked(draw) -> dict[str, Any]:
    """A binary64 network whose first-layer unit 0 sits exactly on a kink through a frozen bias."""
    act_spec = draw(
        st.sampled_from(
            [
                "relu",
                "hardtanh",
                "relu6",
                "hardsigmoid",
                "abs",
                {"name": "hardtanh", "min": "1/3", "max": "7"},
            ]
        )
    )
    act = make_act(act_spec)[0]
    n_in = draw(st.integers(1, 3))
    units = draw(st.integers(1, 2))
    X = [draw(_inputs()) for _ in range(n_in)]
    W = [[draw(_b64_values()) for _ in range(n_in)] for _ in range(units)]
    c = draw(st.sampled_from(act.kinks))
    bias = [c - sum((w * x for w, x in zip(W[0], X)), F(0))] + [
        draw(_inputs()) for _ in range(units - 1)
    ]
    doc: dict[str, Any] = {
        "format": "formal-net/1",
        "numbers": "binary64",
        "inputs": [[str(x) for x in X]],
        "layers": [{"type": "dense", "units": units, "bias": True, "activation": act_spec}],
        "params": {
            "0.weight": [[str(w) for w in row] for row in W],
            "0.bias": [str(b) for b in bias],
        },
        "trainable": ["0.weight"],
    }
    if draw(st.booleans()):  # a second layer whose input carries the first layer's float error
        doc["layers"].append({"type": "dense", "units": 1, "bias": True, "activation": "relu"})
        w2 = [draw(_b64_values()) for _ in range(units)]
        z = [act.value(sum((w * x for w, x in zip(W[u], X)), F(0)) + bias[u]) for u in range(units)]
        doc["params"]["1.weight"] = [[str(w) for w in w2]]
        doc["params"]["1.bias"] = [
            str(-sum((w * v for w, v in zip(w2, z)), F(0)))
        ]  # second kink at 0
    return doc


@settings(max_examples=150)
@given(b64_kinked())
def test_float_filter_never_hides_an_exact_kink(doc):
    net = from_dict(doc)
    assert float_filter(net) is False
    fwd = forward(net, parse_preset("pytorch"))
    assert fwd.exact and fwd.kinks
    v = check(net, "pytorch")
    assert v.kink_neurons == len(Oracle(doc).kink_units()) >= 1
    assert v.method != "no-kinks"


@settings(max_examples=150)
@given(b64_kinked(), st.sampled_from([F(1, 2**60), F(-1, 2**60), F(1, 2**1074), F(3, 2**30)]))
def test_float_filter_sound_near_kinks(doc, delta):
    """Move the kinked unit slightly off its kink: the filter must agree with exact arithmetic."""
    b = F(doc["params"]["0.bias"][0]) + delta
    doc["params"]["0.bias"][0] = str(b)
    if "1.bias" in doc["params"]:
        del doc["layers"][1], doc["params"]["1.weight"], doc["params"]["1.bias"]
    net = from_dict(doc)
    exact_kinks = Oracle(doc).kink_units()
    if float_filter(net):
        assert exact_kinks == []
    assert len(exact_forward(net, parse_preset("pytorch")).kinks) == len(exact_kinks)


@settings(max_examples=60)
@given(networks())
def test_float_filter_agrees_with_exact_kinks(doc):
    net = from_dict(doc)
    if float_filter(net):
        assert Oracle(doc).kink_units() == []
        fwd = forward(net, parse_preset("pytorch"))
        assert not fwd.exact and not fwd.kinks


# ---------------------------------------------------------------------------
# kink adjoints and values


@settings(max_examples=60)
@given(networks(overrides=True))
def test_kink_adjoints_match_oracle(doc):
    """The adjoint of each kink unit's output (AD with the preset's proxies), per objective row."""
    net = from_dict(doc)
    o = Oracle(doc)
    assert (
        list(output_value(exact_forward(net, parse_preset("pytorch"))).to_fractions()) == o.value()
    )
    for preset in ["pytorch", "right", "lambda=1/2"]:
        fwd = exact_forward(net, parse_preset(preset))
        _, kadj = o.ad(preset)
        seeds = {net.output: output_seeds(net)}
        full = reverse(fwd, seeds, want_params=True).kink_adjoints
        lean = reverse(fwd, seeds, want_params=False).kink_adjoints
        assert (full == lean).all()
        for i, k in enumerate(fwd.kinks):
            layer = int(k.node.split(".")[0])
            assert list(full[:, i]) == kadj[(layer, k.sample, k.index)]
        v = check(net, preset)
        assert [list(r.adjoint) for r in v.kinks] == [
            list(full[:, i]) for i in range(len(fwd.kinks))
        ]


def test_kink_node_maps():
    act = KinkNode("a", 0, 0, "act", (0,), F(0), d_minus=F(1, 4), d_plus=F(1))
    assert act.apply([F(2)]) == 2 and act.apply([F(-2)]) == F(-1, 2) and act.apply([F(0)]) == 0
    tie = KinkNode("m", 0, 0, "tie", (0, 1, 2), F(5))
    assert tie.apply([F(1), F(3), F(-2)]) == 3


def test_float_filter_overflow_falls_back_quietly():
    """Regression: float64 overflow in the filter (2^200 * 2^1000) used to emit a numpy
    RuntimeWarning (an error under pytest's filterwarnings); it must just fall back to exact."""
    big = str(2**1000)
    doc: dict[str, Any] = {
        "format": "formal-net/1",
        "numbers": "binary64",
        "inputs": [[str(2**200), 0]],
        "layers": [{"type": "dense", "units": 1, "bias": True, "activation": "relu"}],
        "params": {"0.weight": [[big, 0]], "0.bias": [str(-(2**1200))]},  # frozen: need not be in M
        "trainable": ["0.weight"],
    }
    net = from_dict(doc)
    assert float_filter(net) is False
    v = check(net, "pytorch", gradient=True)
    assert v.kink_neurons == 1 and v.in_ndf is True
    doc["params"]["0.bias"] = ["1"]
    v = check(from_dict(doc), "pytorch", gradient=True)
    assert v.kink_neurons == 0 and v.gradient == ((F(2**200), 0),)
