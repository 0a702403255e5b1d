"""Floating-point AD: rounding per operation, orders, fma, touches classified exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from fwnets import every_layer_net

from formal.core.activations import get_activation, parse_preset
from formal.core.builders import dense_network, exact_from_float
from formal.core.network import Network, Node
from formal.core.numbers import FORMATS
from formal.engine.forward import exact_forward, gradient_ad
from formal.errors import InvalidArgument
from formal.floatad import classify, float_ad
from formal.floatad.arith import arithmetic
from formal.floatad.passes import float_backward, float_forward

U32 = Fraction(1, 2**24)  # half an ulp of 1 in binary32


# ---------------------------------------------------------------------------
# an independent reference: Fractions rounded after every operation


def _rnd(fmt: str):
    f = FORMATS[fmt]

    def r(q: Fraction) -> Fraction:
        v = f.round_nearest_even(q)
        assert v is not None
        return v

    return r


def _ref_sum(terms: list[Fraction], rnd, order: str) -> Fraction:
    if order == "sequential":
        acc = terms[0]
        for t in terms[1:]:
            acc = rnd(acc + t)
        return acc
    level = list(terms)
    while len(level) > 1:
        nxt = [rnd(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _ref_act(name: str, x: Fraction, rnd) -> tuple[Fraction, Fraction]:
    """(value, derivative off the kinks / pytorch proxy at them) of the activations used."""
    if name == "relu":
        return (x if x > 0 else Fraction(0)), Fraction(1 if x > 0 else 0)
    if name == "hardtanh":
        return min(max(x, Fraction(-1)), Fraction(1)), Fraction(1 if -1 < x < 1 else 0)
    if name == "leaky_relu":
        a = rnd(Fraction(1, 100))
        return (x if x > 0 else rnd(x * a)), (Fraction(1) if x > 0 else a)
    return x, Fraction(1)


def _reference(ws, bs, xs, acts, fmt: str, order: str):
    """Forward and reverse of a dense net (objective: sum), rounded per op in Fractions."""
    rnd = _rnd(fmt)
    W = [[[Fraction(float(v)) for v in row] for row in w] for w in ws]
    Bv = [[Fraction(float(v)) for v in b] for b in bs]
    h = [[Fraction(float(v)) for v in row] for row in xs]
    hs, ds = [h], []
    for w, b, a in zip(W, Bv, acts):
        pre = [
            [
                rnd(_ref_sum([rnd(wj[k] * hb[k]) for k in range(len(hb))], rnd, order) + b[j])
                for j, wj in enumerate(w)
            ]
            for hb in h
        ]
        pairs = [[_ref_act(a, v, rnd) for v in row] for row in pre]
        h = [[p[0] for p in row] for row in pairs]
        ds.append([[p[1] for p in row] for row in pairs])
        hs.append(h)
    adj = [[Fraction(1)] * len(h[0]) for _ in h]
    grads: dict[str, list] = {}
    for i in reversed(range(len(W))):
        adj = [[rnd(adj[b][j] * ds[i][b][j]) for j in range(len(adj[b]))] for b in range(len(adj))]
        prev = hs[i]
        grads[f"{i}.weight"] = [
            [
                _ref_sum([rnd(adj[b][j] * prev[b][k]) for b in range(len(adj))], rnd, order)
                for k in range(len(prev[0]))
            ]
            for j in range(len(W[i]))
        ]
        grads[f"{i}.bias"] = [
            _ref_sum([adj[b][j] for b in range(len(adj))], rnd, order) for j in range(len(W[i]))
        ]
        adj = [
            [
                _ref_sum([rnd(adj[b][j] * W[i][j][k]) for j in range(len(W[i]))], rnd, order)
                for k in range(len(prev[0]))
            ]
            for b in range(len(adj))
        ]
    return grads


@pytest.mark.parametrize("fmt", ["binary64", "binary32", "binary16", "bfloat16"])
@pytest.mark.parametrize("order", ["sequential", "pairwise"])
@pytest.mark.parametrize("act", ["relu", "hardtanh", "leaky_relu"])
def test_float_ad_equals_a_fraction_reference_rounded_per_op(fmt, order, act):
    rng = np.random.default_rng(3)
    dt = FORMATS[fmt].numpy_dtype()
    widths, batch = [5, 6, 4, 1], 3
    ws = [rng.standard_normal((o, i)).astype(dt) for i, o in zip(widths[:-1], widths[1:])]
    bs = [(rng.standard_normal(o) * 0.5).astype(dt) for o in widths[1:]]
    xs = rng.standard_normal((batch, widths[0])).astype(dt)
    acts = [act, act, "identity"]
    net = dense_network(ws, bs, xs, acts, numbers=fmt, objective="sum")
    r = classify(net, fmt, "pytorch", order)
    want = _reference(ws, bs, xs, acts, fmt, order)
    for name, g in want.items():
        got = [Fraction(float(v)) for v in np.asarray(r.gradient[name][0]).reshape(-1)]
        flat = [v for row in g for v in row] if isinstance(g[0], list) else g
        assert got == flat, name


@pytest.mark.parametrize("fmt", ["binary64", "binary32", "binary16", "bfloat16"])
def test_fma_is_one_rounding(fmt):
    rng = np.random.default_rng(5)
    ar = arithmetic(fmt, "sequential", fma=True)
    dt = ar.dtype
    a = rng.standard_normal(400).astype(dt)
    b = rng.standard_normal(400).astype(dt)
    c = (rng.standard_normal(400) * 4).astype(dt)
    # products close to -c: cancellation, where a double rounding would show
    c[:200] = (-(a[:200].astype(np.float64) * b[:200].astype(np.float64))).astype(dt)
    got = ar.fma_op(a, b, c)
    rnd = _rnd(fmt)
    for i in range(400):
        q = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        assert Fraction(float(got[i])) == rnd(q), i


def test_bfloat16_rounding_of_wide_values_is_correct():
    # 1 + 2^-8 + 2^-30 is just above the midpoint of 1 and 1 + 2^-7: it rounds up; a cast
    # through binary32 (what ml_dtypes does) would round to the midpoint and then to 1
    ar = arithmetic("bfloat16")
    x = np.array([1 + 2.0**-8 + 2.0**-30])
    assert float(ar.from_wide(x)[0]) == 1 + 2.0**-7


def test_orders_differ_where_they_should():
    # 1 + u + u + u (u = 2^-24): sequentially each u is lost; pairwise (1+u) + (u+u) keeps 2u
    terms = np.array([[1.0, 2.0**-24, 2.0**-24, 2.0**-24]], dtype=np.float32)
    seq = arithmetic("binary32", "sequential").sum_terms(terms)
    pair = arithmetic("binary32", "pairwise").sum_terms(terms)
    assert float(seq[0]) == 1.0
    assert float(pair[0]) == 1 + 2.0**-23


def test_fma_needs_the_sequential_order():
    with pytest.raises(InvalidArgument, match="sequential"):
        arithmetic("binary32", "pairwise", fma=True)
    with pytest.raises(InvalidArgument, match="format"):
        arithmetic("e4m3")


# ---------------------------------------------------------------------------
# touches classified with the exact engine


def _three_units() -> Network:
    """Layer 0 (binary32): unit 0 exactly on 0; unit 1 rounds onto 0 (1 + 2^-30 - 1);
    unit 2 is 0 exactly but the float sum loses 2u (1 + u + u - (1 + 2u))."""
    e = Fraction(1, 2**30)
    w1 = [[1, 2, 0], [1, e, 0], [1, U32, U32]]
    b1 = [-3, -1, -(1 + 2 * U32)]
    return dense_network(
        [w1, [[1, 1, 1]]],
        [b1, [0]],
        [[1, 1, 1]],
        ["relu", "relu"],
        numbers="binary32",
        objective="sum",
    )


def test_touches_exact_spurious_missed():
    r = classify(_three_units(), "binary32", "pytorch", "sequential")
    status = {t.label: t.status for t in r.touches}
    assert status["0.act[0]"] == "exact"
    assert status["0.act[1]"] == "spurious"  # float 0, exact 2^-30
    assert status["0.act[2]"] == "missed"  # float -2^-23, exact 0
    assert r.float_touches == r.exact + r.spurious
    assert r.exact_kinks == r.exact + r.missed
    missed = next(t for t in r.touches if t.status == "missed")
    assert missed.float_value == -2 * U32 and missed.exact_value == 0


def test_binary64_sees_no_rounding_here():
    r = classify(_three_units(), "binary64", "pytorch", "sequential")
    assert r.spurious == 0 and r.missed == 0
    assert r.exact == r.float_touches == 2  # units 0 and 2, both exactly 0


def _pool_net(x: list[list[float]], bias: float) -> Network:
    """x (1, 3, 1, 2) -> 1x1 conv (weights 1) + bias -> maxpool over the 1x2 row."""
    xs = np.array(x, dtype=np.float32).reshape(1, 3, 1, 2)
    w = np.ones((1, 3, 1, 1), dtype=np.float32)
    b = np.array([bias], dtype=np.float32)
    conv = (("strides", (1, 1)), ("pads", (0, 0, 0, 0)), ("dilations", (1, 1)), ("groups", 1))
    pool = (("kernel", (1, 2)), ("strides", (1, 2)), ("pads", (0, 0, 0, 0)))
    nodes = (
        Node("x", "input", (), (3, 1, 2)),
        Node("p:w", "param", (), w.shape, (("name", "w"),)),
        Node("p:b", "param", (), b.shape, (("name", "b"),)),
        Node("c", "conv2d", ("x", "p:w"), (1, 1, 2), conv),
        Node("bv", "view", ("p:b",), (1, 1, 1)),
        Node("y", "add", ("c", "bv"), (1, 1, 2)),
        Node("pool", "maxpool2d", ("y",), (1, 1, 1), pool),
        Node("out", "reshape", ("pool",), (1,)),
    )
    params = {"w": exact_from_float(w), "b": exact_from_float(b)}
    return Network(
        nodes, "out", exact_from_float(xs), params, FORMATS["binary32"], ("w", "b"), ("w", "b")
    )


def test_max_pool_ties():
    u = 2.0**-24
    # channels (x0, x1, x2) per pixel; pixel values are x0 + x1 + x2 + bias
    # w0 + b and w1 + b at w0 = w1 = 1: tied exactly, different functions of w
    exact_tie = _pool_net([[1, 0], [0, 1], [0, 0]], 0.0)
    r = classify(exact_tie, "binary32", "pytorch", "sequential")
    assert [(t.kind, t.status) for t in r.touches] == [("tie", "exact")]
    # the same pixel twice: the same function of w, no kink (left out, counted apart)
    same = classify(_pool_net([[1, 1], [0, 0], [0, 0]], 0.0), "binary32", "pytorch")
    assert same.touches == () and same.identical_ties == 1 and same.float_touches == 0
    # 1 + 2^-23 + 2 and 1 + 2 round to the same binary32 (3 + 2^-23 is a tie, to even: 3)
    spurious = _pool_net([[1, 1 + 2 * u], [0, 0], [0, 0]], 2.0)
    r = classify(spurious, "binary32", "pytorch", "sequential")
    assert [(t.kind, t.status) for t in r.touches] == [("tie", "spurious")]
    # 1 + u + u loses both u's sequentially, 1 + 2u does not: exactly tied, not in float
    missed = _pool_net([[1, 1 + 2 * u], [u, 0], [u, 0]], 0.0)
    r = classify(missed, "binary32", "pytorch", "sequential")
    assert [(t.kind, t.status) for t in r.touches] == [("tie", "missed")]
    # the tie rule: first sends the gradient to pixel 0, last to pixel 1
    for rule, pixel in (("first", 0), ("last", 1)):
        ff = float_forward(exact_tie, arithmetic("binary32"), parse_preset(f"pytorch,tie={rule}"))
        assert int(ff.states["pool"][0, 0]) == pixel


# ---------------------------------------------------------------------------
# every layer type, against the exact engine where float arithmetic is exact


@pytest.mark.parametrize("act", ["relu", "relu6", "hardtanh", "abs", "leaky_relu"])
@pytest.mark.parametrize("preset", ["pytorch", "jax", "right", "pytorch,tie=last"])
def test_every_layer_type_equals_exact_ad_when_no_rounding_happens(act, preset):
    net = every_layer_net(act)
    pre = parse_preset(preset)
    fwd = exact_forward(net, pre)
    assert fwd.kinks  # kinks and ties present: the proxies and tie rules are exercised
    want = gradient_ad(fwd).to_fractions()  # (n_obj, W): vector objective, 2 samples x 2
    ff = float_forward(net, arithmetic("binary64", "sequential"), pre)
    shape = (net.batch,) + net.node(net.output).shape
    n = int(np.prod(shape))
    grads = float_backward(ff, np.eye(n).reshape((n,) + shape))
    par = net.parameterization()
    for g in range(par.size):
        name, flat = par.slot(g)
        got = [Fraction(float(v)) for v in grads[name].reshape(n, -1)[:, flat]]
        assert got == list(want[:, g]), par.label(g)
    r = classify(net, "binary64", pre, "sequential")
    assert r.spurious == 0 and r.missed == 0 and r.exact == len(fwd.kinks)


def test_float_ad_gradient_changes_with_the_preset_at_a_touch():
    net = _three_units()
    ar = arithmetic("binary32", "sequential")
    left = float_ad(net, ar, "pytorch")
    right = float_ad(net, ar, "right")
    assert {t.index for t in left.touches if t.node == "0.act"} == {0, 1}
    # relu'(0) = 0 vs 1 at the touched units 0 and 1: their bias gradients differ
    assert left.gradient["0.bias"][0].tolist() == [0.0, 0.0, 0.0]
    assert right.gradient["0.bias"][0].tolist()[:2] == [1.0, 1.0]


def test_mse_objective():
    # y = w x + b on 2 samples, targets t: loss = ((w x0 + b - t0)^2 + (w x1 + b - t1)^2) / 2
    net = dense_network([[[2]]], [[1]], [[1], [3]], ["identity"], numbers="binary64")
    t = np.array([[0.0], [5.0]])
    r = float_ad(net, arithmetic("binary64"), "pytorch", objective="mse", targets=t)
    assert float(r.output[0]) == (9 + 4) / 2  # residuals 3 and 2
    assert r.gradient["0.bias"][0].tolist() == [3.0 + 2.0]  # 2/N * residual, summed
    assert r.gradient["0.weight"][0].tolist() == [[3.0 * 1 + 2.0 * 3]]
    with pytest.raises(InvalidArgument, match="targets"):
        float_ad(net, arithmetic("binary64"), objective="mse", targets=np.zeros((3, 1)))


def _tensor_ops_net() -> Network:
    """matmul, const, mul, sub, neg, scale, reshape, transpose, pad, view, act: small integers."""
    from formal.core.qarray import QArray

    x = exact_from_float(np.array([[1.0, -2.0, 3.0], [0.0, 1.0, -1.0]]))
    w = exact_from_float(np.array([[1.0, 2.0], [0.0, -1.0], [2.0, 1.0]]))
    m = exact_from_float(np.array([2.0, -1.0]))
    s = exact_from_float(np.array([7.0, 2.0]))
    c = QArray.from_fractions([1, 3])
    relu = get_activation("relu")
    nodes = (
        Node("x", "input", (), (3,)),
        Node("p:w", "param", (), (3, 2), (("name", "w"),)),
        Node("mm", "matmul", ("x", "p:w"), (2,)),
        Node("p:m", "param", (), (2,), (("name", "m"),)),
        Node("mu", "mul", ("mm", "p:m"), (2,)),
        Node("k", "const", (), (2,), (("value", c),)),
        Node("p:s", "param", (), (2,), (("name", "s"),)),
        Node("su", "sub", ("mu", "p:s"), (2,)),
        Node("ad", "add", ("su", "k"), (2,)),
        Node("ng", "neg", ("ad",), (2,)),
        Node("sc", "scale", ("ng",), (2,), (("value", QArray.from_fractions([2, 1])),)),
        Node("rs", "reshape", ("sc",), (2, 1)),
        Node("tr", "transpose", ("rs",), (1, 2), (("perm", (1, 0)),)),
        Node("pd", "pad", ("tr",), (1, 4), (("pads", ((0, 0), (1, 1))), ("value", 0))),
        Node("vw", "view", ("pd",), (4,)),
        Node("a", "act", ("vw",), (4,), (("activation", relu),)),
    )
    params = {"w": w, "m": m, "s": s}
    names = ("w", "m", "s")
    return Network(nodes, "a", x, params, FORMATS["binary64"], names, names)


def test_tensor_ops_equal_exact_ad_when_no_rounding_happens():
    net = _tensor_ops_net()
    pre = parse_preset("pytorch")
    fwd = exact_forward(net, pre)
    assert fwd.kinks  # a pre-activation is exactly 0
    want = gradient_ad(fwd).to_fractions()
    ff = float_forward(net, arithmetic("binary64", "pairwise"), pre)
    shape = (net.batch,) + net.node(net.output).shape
    n = int(np.prod(shape))
    grads = float_backward(ff, np.eye(n).reshape((n,) + shape))
    par = net.parameterization()
    for g in range(par.size):
        name, flat = par.slot(g)
        got = [Fraction(float(v)) for v in grads[name].reshape(n, -1)[:, flat]]
        assert got == list(want[:, g]), par.label(g)
    assert [t.status for t in classify(net, "binary64", pre).touches] == ["exact"] * len(fwd.kinks)
