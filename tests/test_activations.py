"""Activations: kinks, one-sided derivatives, every preset's proxy at every kink.

Also their exact and float values.

The expected numbers are typed in from docs/theory.md section 1 (and the table in
formal/activations.py's docstring); the oracle's sympy formulas
(tests/oracle/) give an independent evaluation of values and D-/D+.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import X, make_act

from formal.core.activations import (
    PRESETS,
    activation_names,
    get_activation,
    parse_preset,
    parse_proxy_override,
)
from formal.core.network import Node
from formal.core.qarray import QArray
from formal.errors import InvalidArgument
from formal.ops.activation import ActRule

F = Fraction

# name, params, kinks, D- at each kink, D+ at each kink
TABLE = [
    ("relu", {}, [0], [0], [1]),
    ("leaky_relu", {"slope": "1/100"}, [0], [F(1, 100)], [1]),
    ("leaky_relu", {"slope": "1/4"}, [0], [F(1, 4)], [1]),
    ("leaky_relu", {"slope": "-1/2"}, [0], [F(-1, 2)], [1]),
    ("leaky_relu", {"slope": "2"}, [0], [2], [1]),
    ("relu6", {}, [0, 6], [0, 1], [1, 0]),
    ("hardtanh", {}, [-1, 1], [0, 1], [1, 0]),
    ("hardtanh", {"min": "-1/2", "max": "2"}, [F(-1, 2), 2], [0, 1], [1, 0]),
    ("hardtanh", {"min": "1/3", "max": "5"}, [F(1, 3), 5], [0, 1], [1, 0]),
    ("clip", {"min": "0", "max": "1"}, [0, 1], [0, 1], [1, 0]),
    ("hardsigmoid", {}, [-3, 3], [0, F(1, 6)], [F(1, 6), 0]),
    ("hardswish", {}, [-3, 3], [0, F(3, 2)], [F(-1, 2), 1]),
    ("abs", {}, [0], [-1], [1]),
]
IDS = [f"{n}{'(' + ','.join(p.values()) + ')' if p else ''}" for n, p, *_ in TABLE]


def _spec(name: str, params: dict) -> object:
    return {"name": name, **params} if params else name


@pytest.mark.parametrize(("name", "params", "kinks", "dm", "dp"), TABLE, ids=IDS)
def test_kinks_and_one_sided_derivatives(name, params, kinks, dm, dp):
    act = get_activation(name, **params)
    assert act.kinks == tuple(F(k) for k in kinks)
    assert [act.d_minus(c) for c in act.kinks] == [F(x) for x in dm]
    assert [act.d_plus(c) for c in act.kinks] == [F(x) for x in dp]
    ref, _ = make_act(_spec(name, params))  # the same numbers from the sympy formula's germs
    assert [ref.d_minus(c) for c in act.kinks] == [F(x) for x in dm]
    assert [ref.d_plus(c) for c in act.kinks] == [F(x) for x in dp]
    # off the kinks the two one-sided derivatives agree: the kinks are exactly where they differ
    grid = sorted({F(k) for k in kinks} | {F(i, 4) for i in range(-40, 41)})
    for x in grid:
        differ = ref.d_minus(x) != ref.d_plus(x)
        assert differ is (x in act.kinks), x
        if x not in act.kinks:
            assert act.derivative(x) == ref.d_plus(x)
    with pytest.raises(InvalidArgument, match="off the kinks"):
        act.derivative(act.kinks[0])


def test_smooth_activations_have_no_kinks():
    assert get_activation("identity").kinks == ()
    assert get_activation("leaky_relu", slope="1").kinks == ()  # slope 1 is the identity
    for name in ("sigmoid", "tanh"):
        act = get_activation(name)
        assert act.kinks == () and act.transcendental
        with pytest.raises(InvalidArgument, match="piecewise-polynomial"):
            act.value(F(0))
    assert {
        "relu",
        "relu6",
        "hardtanh",
        "clip",
        "hardsigmoid",
        "hardswish",
        "abs",
        "leaky_relu",
    } <= set(activation_names())


def test_activation_parameter_errors():
    with pytest.raises(InvalidArgument, match="expected an activation"):
        get_activation("gelu")
    with pytest.raises(InvalidArgument, match="expected parameters"):
        get_activation("relu", slope="1")
    with pytest.raises(InvalidArgument, match="min < max"):
        get_activation("hardtanh", min=1, max=1)


# ---------------------------------------------------------------------------
# proxies: one row per (preset, activation, kink), from docs/theory.md section 1

H = F(1, 2)
PROXY_ROWS = [
    # pytorch (>= 2.7, >= 2.14)
    ("pytorch", "relu", {}, 0, 0),
    ("pytorch", "leaky_relu", {"slope": "1/4"}, 0, F(1, 4)),
    ("pytorch", "relu6", {}, 0, 0),
    ("pytorch", "relu6", {}, 6, 0),
    ("pytorch", "hardtanh", {}, -1, 0),
    ("pytorch", "hardtanh", {}, 1, 0),
    ("pytorch", "hardtanh", {"min": "-1/2", "max": "2"}, F(-1, 2), 0),
    ("pytorch", "hardtanh", {"min": "-1/2", "max": "2"}, 2, 0),
    ("pytorch", "hardsigmoid", {}, -3, 0),
    ("pytorch", "hardsigmoid", {}, 3, 0),
    ("pytorch", "hardswish", {}, -3, 0),
    ("pytorch", "hardswish", {}, 3, 1),
    ("pytorch", "abs", {}, 0, 0),
    ("pytorch", "clip", {"min": "0", "max": "1"}, 0, 0),
    ("pytorch", "clip", {"min": "0", "max": "1"}, 1, 0),
    # pytorch before 2.7: hardswish -1/2, 3/2; up to 2.13: clamp passes 1
    ("pytorch-2.6", "hardswish", {}, -3, F(-1, 2)),
    ("pytorch-2.6", "hardswish", {}, 3, F(3, 2)),
    ("pytorch-2.6", "relu", {}, 0, 0),
    ("pytorch-2.6", "clip", {}, -1, 1),
    ("pytorch-2.13", "clip", {}, -1, 1),
    ("pytorch-2.13", "clip", {}, 1, 1),
    ("pytorch-2.13", "hardswish", {}, -3, 0),
    ("pytorch-2.13", "hardswish", {}, 3, 1),
    # jax
    ("jax", "relu", {}, 0, 0),
    ("jax", "leaky_relu", {"slope": "1/4"}, 0, 1),
    ("jax", "relu6", {}, 0, 0),
    ("jax", "relu6", {}, 6, 0),
    ("jax", "hardtanh", {}, -1, 1),
    ("jax", "hardtanh", {}, 1, 1),
    ("jax", "hardsigmoid", {}, -3, 0),
    ("jax", "hardsigmoid", {}, 3, 0),
    ("jax", "hardswish", {}, -3, 0),
    ("jax", "hardswish", {}, 3, 1),
    ("jax", "abs", {}, 0, 1),
    ("jax", "clip", {}, -1, H),
    ("jax", "clip", {}, 1, H),
    # tensorflow
    ("tensorflow", "relu", {}, 0, 0),
    ("tensorflow", "leaky_relu", {"slope": "1/4"}, 0, F(1, 4)),
    ("tensorflow", "relu6", {}, 0, 0),
    ("tensorflow", "relu6", {}, 6, 0),
    ("tensorflow", "hardsigmoid", {}, -3, 0),
    ("tensorflow", "hardsigmoid", {}, 3, 0),
    ("tensorflow", "hardswish", {}, -3, 0),
    ("tensorflow", "hardswish", {}, 3, 1),
    ("tensorflow", "abs", {}, 0, 0),
    ("tensorflow", "clip", {}, -1, 1),
    ("tensorflow", "clip", {}, 1, 1),
    # left / right / lambda / value, on a few activations
    ("left", "hardswish", {}, -3, 0),
    ("left", "hardswish", {}, 3, F(3, 2)),
    ("left", "abs", {}, 0, -1),
    ("right", "hardswish", {}, -3, F(-1, 2)),
    ("right", "hardswish", {}, 3, 1),
    ("right", "abs", {}, 0, 1),
    ("right", "leaky_relu", {"slope": "1/4"}, 0, 1),
    ("left", "leaky_relu", {"slope": "1/4"}, 0, F(1, 4)),
    ("lambda=1/2", "relu", {}, 0, H),
    ("lambda=1/2", "abs", {}, 0, 0),
    ("lambda=1/4", "relu", {}, 0, F(3, 4)),
    ("lambda=1/4", "hardsigmoid", {}, 3, F(1, 24)),
    ("lambda=2", "relu", {}, 0, -1),
    ("lambda=1/3", "hardswish", {}, 3, F(1, 2) + F(2, 3)),
    ("value=7/3", "relu", {}, 0, F(7, 3)),
    ("value=-1", "hardtanh", {}, 1, -1),
    ("pytorch,tie=last", "relu6", {}, 6, 0),
    ("jax,tie=last", "abs", {}, 0, 1),
]


@pytest.mark.parametrize(
    ("preset", "name", "params", "kink", "proxy"),
    PROXY_ROWS,
    ids=[f"{r[0]}-{r[1]}-{r[3]}" for r in PROXY_ROWS],
)
def test_preset_proxy_at_kink(preset, name, params, kink, proxy):
    act = get_activation(name, **params)
    assert parse_preset(preset).proxy(act, kink) == F(proxy)


@pytest.mark.parametrize(
    ("preset", "name", "params", "kink", "proxy"),
    PROXY_ROWS,
    ids=[f"{r[0]}-{r[1]}-{r[3]}" for r in PROXY_ROWS],
)
def test_proxy_kind(preset, name, params, kink, proxy):
    """Preset.kind classifies the proxy against [D-, D+]."""
    act = get_activation(name, **params)
    lo, hi = act.d_minus(F(kink)), act.d_plus(F(kink))
    kind = parse_preset(preset).kind(act, kink)
    p = F(proxy)
    expected = (
        "left"
        if p == lo
        else "right"
        if p == hi
        else "between"
        if min(lo, hi) <= p <= max(lo, hi)
        else "outside"
    )
    assert kind == expected


def test_presets_without_a_convention_or_off_kink():
    with pytest.raises(InvalidArgument, match="no convention for activation hardtanh"):
        PRESETS["tensorflow"].proxy(get_activation("hardtanh"), -1)
    with pytest.raises(InvalidArgument, match="expected a kink"):
        PRESETS["pytorch"].proxy(get_activation("relu"), 1)
    for bad in ["torch", "lambda=", "value=x", "pytorch,tie=middle", "pytorch,order=first"]:
        with pytest.raises(InvalidArgument):
            parse_preset(bad)
    assert parse_preset("pytorch,tie=last").tie == "last"
    assert parse_preset("pytorch").tie == "first"


def test_proxy_overrides():
    relu6 = get_activation("relu6")
    assert parse_proxy_override(["1/2", "3"], relu6)(relu6, F(6)) == 3
    assert parse_proxy_override("right", relu6)(relu6, F(0)) == 1
    assert parse_proxy_override("-1/2", relu6)(relu6, F(0)) == F(-1, 2)
    with pytest.raises(InvalidArgument, match="one per kink"):
        parse_proxy_override(["1"], relu6)


# ---------------------------------------------------------------------------
# values: exact apply() against the sympy formulas; float apply against exact

ALL = [_spec(n, p) for n, p, *_ in TABLE] + ["identity"]
rationals = st.fractions(min_value=-12, max_value=12, max_denominator=64)


def _formal(spec):
    return (
        get_activation(spec)
        if isinstance(spec, str)
        else get_activation(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    )


@settings(max_examples=40)
@given(st.sampled_from(ALL), st.lists(rationals, min_size=1, max_size=6))
def test_exact_apply_matches_sympy_formula(spec, xs):
    act = _formal(spec)
    ref, _ = make_act(spec)
    xs = xs + [F(c) for c in act.kinks] + [F(c) + F(1, 2**40) for c in act.kinks]
    y = QArray.from_fractions(np.array(xs, dtype=object).reshape(1, -1))
    got = act.apply(y).to_fractions().ravel().tolist()
    formula = ref.formula(X)
    for x, v in zip(xs, got):
        sym = formula.subs(X, sp.Rational(x.numerator, x.denominator))
        assert sym.is_Rational and v == F(int(sym.p), int(sym.q)), (x, v, sym)
        assert act.value(x) == v


@settings(max_examples=60)
@given(
    st.sampled_from(ALL),
    st.lists(st.floats(-20, 20, allow_nan=False, allow_subnormal=True), min_size=1, max_size=8),
    st.sampled_from([0.0, 1e-12, 1e-3]),
)
def test_float_activation_within_its_error_bound(spec, ys, e):
    """ActRule's float filter: |z - rho(y')| <= err for every exact y' with |y' - y| <= e.

    (e is the input error), and an exact kink within e of y is always flagged as suspect.
    """
    act = _formal(spec)
    y = np.array([ys], dtype=np.float64)
    errs = np.full_like(y, e)
    node = Node("a", "act", ("x",), (y.shape[1],), (("activation", act),))
    z, err, suspect = ActRule().float_filter(node, [y], [errs], None)  # type: ignore[arg-type]
    exact_near_kink = any(abs(F(v) - c) <= F(e) for v in ys for c in act.kinks)
    if exact_near_kink:
        assert suspect
    if suspect:
        return  # the engine falls back to exact arithmetic; no bound is claimed
    for v, zf, bound in zip(ys, z.ravel(), err.ravel()):
        for shift in (F(0), F(e), -F(e)):
            yp = F(v) + shift
            assert abs(F(float(zf)) - act.value(yp)) <= F(float(bound)), (v, shift)


@pytest.mark.parametrize("spec", ALL, ids=str)
def test_slope_matches_derivative_off_kinks(spec):
    act = _formal(spec)
    ref, _ = make_act(spec)
    xs = [F(i, 3) for i in range(-30, 31) if F(i, 3) not in act.kinks]
    y = QArray.from_fractions(np.array(xs, dtype=object).reshape(1, -1))
    slopes = act.slope(y, act.piece_map(y)).to_fractions().ravel().tolist()
    assert slopes == [ref.d_plus(x) for x in xs]
    # the float filter's error bound multiplies input errors by act.lipschitz
    assert all(abs(s) <= act.lipschitz for s in slopes)
    for c in act.kinks:
        assert abs(act.d_minus(c)) <= act.lipschitz and abs(act.d_plus(c)) <= act.lipschitz
