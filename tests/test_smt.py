"""The SMT building blocks: FP sorts and exact lifting, the exact bit-vector encoding,
the closed form, and the rounded (IEEE) semantics against two independent references."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import z3

from formal.core.activations import parse_preset
from formal.core.network import Network
from formal.core.numbers import (
    BFLOAT16,
    BINARY16,
    BINARY32,
    BINARY64,
    E4M3,
    E5M2,
    FORMATS,
    Format,
    parse_format,
)
from formal.core.rebuild import group_values, with_groups
from formal.engine.forward import exact_forward, output_seeds, reverse
from formal.examples import load_example
from formal.smt import closed_form
from formal.smt.exact_bv import NetworkEncoding, model_value, param_arrays
from formal.smt.fp import (
    Domain,
    FPVar,
    choose_search_format,
    domain_members,
    embeds,
    fp_sort,
    fp_value,
    lift_fp,
)
from formal.smt.rounded import (
    ExactRounding,
    NumpyRounding,
    Z3Arith,
    float_forward,
    product_members,
    rounding_interval_members,
)

F = Fraction
SMALL = [E4M3, E5M2, parse_format("fp(2,1)"), parse_format("fp(3,2)"), parse_format("fp(4,3)")]


# -- FP sorts and lifting -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS.values()) + SMALL, ids=lambda f: f.name)
def test_fp_value_lifts_back_exactly(fmt):
    """Every format has a z3 sort; numerals of extreme and ordinary members lift back exactly."""
    sort = fp_sort(fmt)
    assert sort.ebits() >= fmt.ebits and sort.sbits() >= fmt.mbits + 1
    for v in {
        fmt.max_value,
        -fmt.max_value,
        fmt.min_subnormal,
        fmt.min_normal,
        F(1),
        F(-3, 4),
        F(0),
    }:
        if fmt.contains(v):
            assert lift_fp(fp_value(v, fmt), fmt) == v


@pytest.mark.parametrize("fmt", SMALL, ids=lambda f: f.name)
@pytest.mark.parametrize(
    "lo,hi,sub", [(F(0), None, False), (F(0), None, True), (F(1, 4), F(8), False)]
)
def test_fpvar_enumerates_the_domain_with_exact_views(fmt, lo, hi, sub):
    """The solver's models of a searched variable are exactly the domain's members, and
    the exact view K / den and the FP view both equal the lifted bit pattern."""
    dom = Domain(fmt, lo, hi, sub)
    v = FPVar("x", dom)
    k, den = v.exact_parts()
    s = z3.Solver()
    s.add(*v.constraints())
    seen = []
    while s.check() == z3.sat:
        m = s.model()
        val = v.value(m)
        sign = -1 if m.eval(v.sign).as_long() else 1
        assert F(sign * m.eval(k).as_long(), den) == val
        assert lift_fp(m.eval(v.fp(), model_completion=True), fmt) == val
        seen.append(val)
        s.add(v.bits != m.eval(v.bits))
    assert sorted(seen) == domain_members(dom)
    assert len(seen) == len(set(seen))  # -0 never appears next to +0


def test_domain_counts_match_the_format_sizes():
    assert len(domain_members(Domain(E4M3, subnormals=True))) == E4M3.size() == 253
    assert len(domain_members(Domain(E5M2, subnormals=True))) == E5M2.size() == 247
    assert len(domain_members(Domain(E4M3))) == 253 - 14  # 7 positive and 7 negative subnormals


def test_search_formats_embed_and_are_chosen():
    assert all(embeds(E4M3, f) for f in (BINARY16, BFLOAT16, BINARY32, BINARY64))
    assert not embeds(E4M3, E5M2)  # 3 fraction bits do not fit in 2
    assert choose_search_format(BINARY32) == E4M3
    assert choose_search_format(E5M2) == E5M2  # small targets are searched whole
    assert choose_search_format(BINARY16, "fp(3,2)") == parse_format("fp(3,2)")


# -- exact bit-vector encoding -----------------------------------------------------------


def _pin(net, dom, values):
    """Encoding with every parameter a variable, pinned by constraints to ``values``."""
    par = net.parameterization()
    vs = {g: FPVar(f"w{g}", dom) for g in range(par.size)}
    enc = NetworkEncoding(net, param_arrays(net, {}, vs), parse_preset("right"))
    s = z3.Solver()
    for g, v in vs.items():
        s.add(*v.constraints())
        s.add(v.bits == dom.fmt.to_bits(values[g]))
    return enc, s


def test_exact_encoding_equals_the_exact_engine_on_random_points():
    """Pre-activations decoded from a model equal formal.exact's values (tiny-mlp, e4m3 points)."""
    net = load_example("tiny-mlp")
    dom = Domain(E4M3, subnormals=True)
    members = domain_members(dom)
    rng = random.Random(7)
    par = net.parameterization()
    for _ in range(6):
        values = {g: rng.choice(members) for g in range(par.size)}
        enc, s = _pin(net, dom, values)
        assert s.check() == z3.sat
        m = s.model()
        fwd = exact_forward(with_groups(net, values, numbers=E4M3), parse_preset("right"))
        for node in net.nodes:
            if node.op != "act":
                continue
            y = fwd.values[node.inputs[0]].to_fractions().reshape(-1)
            got = [model_value(m, v) for v in enc.values[node.inputs[0]].reshape(-1)]
            assert got == list(y)


def test_exact_encoding_adjoints_equal_ad_at_kinks():
    """At points with kinks, the encoded AD adjoints of kink entries equal formal.exact.reverse."""
    net = load_example("e1")
    dom = Domain(E4M3, subnormals=True)
    for values in ({0: F(0), 1: F(-1)}, {0: F(0), 1: F(3, 2)}, {0: F(-2), 1: F(0)}):
        enc, s = _pin(net, dom, values)
        assert s.check() == z3.sat
        m = s.model()
        adj = enc.kink_adjoints()
        net2 = with_groups(net, values)
        fwd = exact_forward(net2, parse_preset("right"))
        rev = reverse(fwd, {net2.output: output_seeds(net2)})
        assert fwd.kinks
        for i, k in enumerate(fwd.kinks):
            got = [model_value(m, a) for a in adj[(k.node, k.sample, k.index)]]
            assert got == list(rev.kink_adjoints[:, i])


# -- closed form ----------------------------------------------------------------------------


def test_closed_form_bias_candidates_equal_enumeration():
    """For one bias in fp(3,2), the closed-form candidates are exactly the values that put
    a unit on a kink (checked by enumerating every member)."""
    net = load_example("tiny-mlp")
    fmt = parse_format("fp(3,2)")
    par = net.parameterization()
    g = par.labels.index("0.bias[1]")
    vals = group_values(net)
    # put every other parameter into fp(3,2) (they are small dyadics already or rounded)
    pinned = {h: _rne(fmt, v) for h, v in vals.items()}
    base = with_groups(net, pinned, numbers=fmt)
    dom = Domain(fmt, subnormals=True)
    cands, _, complete = closed_form.candidates(base, parse_preset("pytorch"), dom, [g])
    assert complete
    brute = set()
    for v in domain_members(dom):
        fwd = exact_forward(with_groups(base, {g: v}), parse_preset("pytorch"))
        if any(k.node == "0.act" and k.index == 1 for k in fwd.kinks):
            brute.add(v)
    assert {c.value for c in cands} == brute


def test_closed_form_finds_nothing_when_the_solution_is_not_a_member():
    """rounding-trap: w * 10 = +-1 needs w = +-1/10, not in binary32; the closed form says so."""
    net = load_example("rounding-trap")
    cands, examined, complete = closed_form.candidates(
        net, parse_preset("pytorch"), Domain(BINARY32), [0]
    )
    assert (cands, examined, complete) == ([], 1, True)
    ok, why = closed_form.slots_complete(net, [0], parse_preset("pytorch"))
    assert ok, why


# -- rounded semantics --------------------------------------------------------------------


def _rne(fmt: Format, q: Fraction) -> Fraction:
    """fmt's round-to-nearest-even of q; the tests stay in range, so never None (overflow)."""
    r = fmt.round_nearest_even(q)
    assert r is not None, ("overflow", fmt.name, q)
    return r


def _random_unit(rng: np.random.Generator, n: int, fmt: Format) -> Network:
    from formal.io.formalnet import from_dict

    dt = fmt.numpy_dtype()
    x = [float(v) for v in rng.uniform(-2, 2, n).astype(dt)]
    w = [float(v) for v in rng.normal(0, 1, n).astype(dt)]
    b = float(np.asarray(rng.normal(0, 0.5), dtype=dt))
    doc = {
        "format": "formal-net/1",
        "numbers": fmt.name,
        "inputs": [[v.hex() for v in x]],
        "layers": [{"type": "dense", "units": 1, "bias": True, "activation": "relu"}],
        "params": {"0.weight": [[v.hex() for v in w]], "0.bias": [b.hex()]},
    }
    return from_dict(doc)


@pytest.mark.parametrize("fmt", [BINARY32, BINARY16, BFLOAT16], ids=lambda f: f.name)
@pytest.mark.parametrize("order", ["sequential", "pairwise"])
def test_three_rounding_backends_agree(fmt, order):
    """z3 fp.mul/fp.add (RNE), exact rationals rounded by RNE, and numpy/ml_dtypes give the
    same float pre-activation, bit for bit."""
    rng = np.random.default_rng(3)
    for _ in range(4):
        net = _random_unit(rng, 5, fmt)
        _, s_ref = float_forward(net, ExactRounding(fmt), {}, order)
        _, s_np = float_forward(net, NumpyRounding(fmt), {}, order)
        _, s_z3 = float_forward(net, Z3Arith(fmt), {}, order)
        for a, b, c in zip(s_ref, s_np, s_z3):
            z = lift_fp(z3.simplify(c.value), fmt)
            assert a.value == NumpyRounding.exact(b.value) == z


def test_sequential_sum_by_hand():
    """The stated order: fl(fl(fl(x0 w0) + fl(x1 w1)) + b), checked against numpy float32."""
    rng = np.random.default_rng(11)
    net = _random_unit(rng, 2, BINARY32)
    x = [np.float32(float(v)) for v in net.inputs.to_fractions()[0]]
    w = [np.float32(float(v)) for v in net.params["0.weight"].to_fractions()[0]]
    b = np.float32(float(net.params["0.bias"].to_fractions()[0]))
    want = np.float32(np.float32(np.float32(x[0] * w[0]) + np.float32(x[1] * w[1])) + b)
    _, sites = float_forward(net, ExactRounding(BINARY32), {}, "sequential")
    assert sites[0].value == F(float(want))


def test_rounding_interval_members_by_enumeration():
    """Members L with RNE(acc + L) == c, found by walking, equal the brute-force set (binary16)."""
    fmt = BINARY16
    dom = Domain(fmt, subnormals=True)
    members = [v for v in fmt.enumerate() if abs(v) <= 8]
    for acc, c in ((F(1, 3) + F(1, 2**12), F(0)), (F(5, 2), F(3)), (F(2**-11), F(1))):
        acc = _rne(fmt, acc)
        brute = sorted(v for v in members if fmt.round_nearest_even(acc + v) == c)
        assert brute and sorted(rounding_interval_members(fmt, dom, acc, c, limit=4096)) == brute
        x = F(3, 4)
        brute_w = sorted(
            v for v in members if fmt.round_nearest_even(x * v) == fmt.round_nearest_even(acc)
        )
        assert sorted(product_members(fmt, dom, x, _rne(fmt, acc), limit=4096)) == brute_w
