"""Counting on Omega.

The vectorized pattern method against the core, exact vs conditional, intervals.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from formal.core.activations import parse_preset
from formal.core.builders import zero_mlp as mlp
from formal.core.numbers import parse_format
from formal.count.bias import count_conditional, slice_good_point, split
from formal.count.counting import (
    count_exact,
    count_open,
    count_sample,
    exhaustive,
    hoeffding,
    member_at,
    members_scaled,
    rank_le,
    reformat,
    sci,
    tightness_density,
    wilson,
    with_point,
)
from formal.engine.batch import Chain, dense_chain
from formal.engine.patterns import decide, explain, t2_criterion
from formal.engine.verdict import check
from formal.errors import InvalidArgument, NotInFormat
from formal.examples import load_example
from formal.io.formalnet import from_dict

PRESETS = ("pytorch", "left", "right", "lambda=1/2", "value=3")
ACTS = [
    "relu",
    "abs",
    {"name": "leaky_relu", "slope": "1/100"},
    "relu6",
    "hardtanh",
    "hardsigmoid",
    "hardswish",
]


# ---------------------------------------------------------------------------
# ranks and members of M


@pytest.mark.parametrize("name", ["fp(2,1)", "fp(3,2)", "e4m3", "e5m2"])
def test_rank_and_open_counts_match_enumeration(name):
    fmt = parse_format(name)
    members = fmt.enumerate()
    rng = random.Random(1)
    probes = (
        members
        + [m + Fraction(1, 1000) for m in members]
        + [Fraction(rng.randint(-(10**6), 10**6), 997) for _ in range(200)]
    )
    probes += [fmt.max_value * 2, -fmt.max_value * 2, Fraction(0)]
    for x in probes:
        assert rank_le(fmt, x) == sum(1 for m in members if m <= x), x
    for _ in range(200):
        lo, hi = sorted(rng.sample(probes, 2))
        assert count_open(fmt, lo, hi) == sum(1 for m in members if lo < m < hi)
    assert count_open(fmt, None, None) == fmt.size()
    assert count_open(fmt, Fraction(0), None) == (fmt.size() - 1) // 2


@pytest.mark.parametrize("name", ["fp(2,1)", "e4m3", "e5m2", "binary16"])
def test_member_at_is_the_sorted_enumeration(name):
    fmt = parse_format(name)
    assert [member_at(fmt, i) for i in range(fmt.size())] == fmt.enumerate()


def test_member_at_binary32_ends():
    fmt = parse_format("binary32")
    P = (fmt.size() - 1) // 2
    assert member_at(fmt, P) == 0
    assert member_at(fmt, P + 1) == fmt.min_subnormal
    assert member_at(fmt, fmt.size() - 1) == fmt.max_value
    assert member_at(fmt, 0) == -fmt.max_value


def test_sci_and_intervals():
    assert sci(Fraction(12345)) == "1.234e+04" or sci(Fraction(12345)) == "1.235e+04"
    assert sci(10**400) == "1.000e+400"
    assert sci(Fraction(1, 3 * 10**500)).endswith("e-501")
    lo, hi = wilson(0, 100)
    assert lo == 0 and 0 < hi < 0.05
    lo, hi = hoeffding(0.5, 100, 1.0)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(2 * (np.log(40) / 200) ** 0.5)


# ---------------------------------------------------------------------------
# the pattern method against the core's check


def _random_net(rng: random.Random, fmt: str):
    n_in = rng.choice([1, 2])
    B = rng.choice([1, 1, 2])
    sizes = [rng.choice([1, 2]) for _ in range(rng.choice([1, 2]))] + [1]
    layers: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    width = n_in
    for i, u in enumerate(sizes):
        last = i == len(sizes) - 1
        act = rng.choice(ACTS + ["identity"]) if last else rng.choice(ACTS)
        bias = rng.random() < 0.5
        layers.append({"type": "dense", "units": u, "bias": bias, "activation": act})
        params[f"{i}.weight"] = [[0] * width for _ in range(u)]
        if bias:
            params[f"{i}.bias"] = [0] * u
        width = u
    xs = [[rng.choice(["0", "1", "-1", "1/2", "3", "-3/2"]) for _ in range(n_in)] for _ in range(B)]
    doc = {
        "format": "formal-net/1",
        "numbers": fmt,
        "inputs": xs,
        "layers": layers,
        "params": params,
    }
    if B > 1 or rng.random() < 0.3:
        doc["objective"] = {"type": "sum"}
    return from_dict(doc)


def _agree(net, points, q):
    presets = [parse_preset(p) for p in PRESETS]
    chain = dense_chain(net)
    assert chain is not None
    bv = decide(chain, np.array(points, dtype=np.int64), q, presets)
    n = 0
    for i, pt in enumerate(points):
        if bv.undecided[i]:
            continue
        n2 = with_point(net, [Fraction(v, q) for v in pt])
        for j, p in enumerate(presets):
            v = check(n2, p)
            assert v.in_ndf is not None
            assert (v.in_ndf, v.in_inc) == (bool(bv.ndf[i]), bool(bv.inc[i, j])), (
                pt,
                p.name,
                net.source,
            )
        n += int(bv.kinks[i] > 0)
    return n


@pytest.mark.parametrize("seed", range(6))
def test_pattern_method_agrees_with_check_on_random_nets(seed):
    rng = random.Random(seed)
    fmt = parse_format("fp(2,2)")
    vals, q = members_scaled(fmt)
    kinky = 0
    for _ in range(5):
        net = _random_net(rng, fmt.name)
        pool = [0, 0, q, -q] + [int(v) for v in vals]
        pts = [[rng.choice(pool) for _ in range(net.param_count())] for _ in range(12)]
        kinky += _agree(net, pts, q)
    assert kinky > 0  # the comparison covered points with kink neurons


@pytest.mark.parametrize("name", ["e1", "lemma2", "f1", "f2", "f3", "axis-trap", "tiny-mlp"])
def test_pattern_method_on_examples(name):
    net = reformat(load_example(name), parse_format("e4m3"))
    chain = dense_chain(net)
    assert chain is not None
    vals, q = members_scaled(net.numbers)
    from formal.count.counting import point_of

    pts = [[int(v * q) for v in point_of(net)]]
    rng = random.Random(len(name))
    pts += [[rng.choice([0, 0, q, -q, 2 * q]) for _ in range(net.param_count())] for _ in range(10)]
    _agree(net, pts, q)


def test_explain_e1():
    chain = dense_chain(load_example("e1"))
    assert chain is not None
    rep = explain(
        chain,
        np.array([0, -1]),
        1,
        [parse_preset(p) for p in ("pytorch", "right", "lambda=1/2")],
    )
    assert rep.differentiable
    assert rep.feasible == {(-1, 1), (1, -1)}
    assert set(rep.bouligand) == {((Fraction(0), Fraction(0)),)}
    assert rep.ad["right"] == ((Fraction(-1), Fraction(0)),)
    assert rep.ad["lambda=1/2"] == ((Fraction(-1, 4), Fraction(0)),)


# ---------------------------------------------------------------------------
# exact counts


@pytest.mark.parametrize(
    "act,x,hidden,out_bias",
    [
        ("relu", "1", [2], False),
        ("hardtanh", "3", [1], True),
        ("hardswish", "1/2", [1], True),
        ("relu6", "1", [1, 1], False),
        ("abs", "3/2", [1], True),
    ],
)
def test_conditional_equals_enumeration(act, x, hidden, out_bias):
    net = mlp("fp(2,1)", [[x]], hidden, act, out_bias=out_bias)
    ex = exhaustive(net, ("pytorch", "right"), cross_check=4)
    cc = count_conditional(net)
    assert cc.space == "omega" and cc.ndf == ex.ndf
    assert ex.inc == {"pytorch": 0, "right": 0}  # T1 on a net where H holds
    assert cc.inc == 0


def test_t2_criterion_vectorized_matches_pattern_method():
    net = mlp("fp(2,1)", [["1"]], [1, 1], "relu")
    vals, q = members_scaled(net.numbers)

    def mismatches(ch: Chain | None, w: np.ndarray, q: int, bv: Any) -> dict[str, int]:
        assert ch is not None
        return {"mis": int(np.sum(t2_criterion(ch, w, q) != bv.ndf))}

    ex = exhaustive(net, ("pytorch",), cross_check=0, hooks=[mismatches])
    assert ex.extra["mis"] == 0 and ex.ndf > 0


@pytest.mark.parametrize("N", [1, 2])
def test_tightness_family_exact(N):
    net = mlp("fp(2,1)", [["0"]], [N], "relu")
    res = count_exact(net, "pytorch", cross_check=4)
    M = 11
    assert res.density_ndf == tightness_density(M, [(N, 1)])
    assert res.density_ndf == 1 - (1 - Fraction(M - 1, M * M)) ** N
    assert res.bound is not None
    assert res.density_ndf <= res.bound == Fraction(N, M)
    # without the (1 - 1/|M|) factor (v_i != 0) the formula would be wrong
    assert res.density_ndf != 1 - (1 - Fraction(1, M)) ** N


def _slice_ndf_brute(net, vals, counted):
    """|ndf| over the slice, by full-network verdicts.

    Every counted column ranges over M, the others are at vals.
    """
    fmt = net.numbers
    members, q = members_scaled(fmt)
    labels = net.parameterization().labels
    cols = [i for i, lab in enumerate(labels) if lab.split("[")[0] in counted]
    base = [int(v * q) for v in vals]
    grid = np.array(np.meshgrid(*[members] * len(cols), indexing="ij")).reshape(len(cols), -1).T
    w = np.tile(np.array(base, dtype=np.int64), (len(grid), 1))
    w[:, cols] = grid
    chain = dense_chain(net)
    assert chain is not None
    bv = decide(chain, w, q, [parse_preset("pytorch")])
    assert not bv.undecided.any() and not bv.inc.any()
    return int(bv.ndf.sum()), len(grid)


def test_slice_with_lower_kink_matches_brute_force():
    """Conditional count with a kinked lower layer (dynamic programme) vs enumerating the slice."""
    net = mlp("fp(2,1)", [["1"]], [2, 2], "relu", out_bias=True)
    labels = net.parameterization().labels
    rng = random.Random(4)
    fmt = net.numbers
    lower = 0
    for trial in range(12):
        vals = [rng.choice(fmt.enumerate()) for _ in labels]
        vals[labels.index("0.bias[0]")] = -vals[labels.index("0.weight[0,0]")]  # unit 0 on its kink
        sp = split(with_point(net, vals))
        good = slice_good_point(sp, vals)
        ndf, size = _slice_ndf_brute(net, vals, {"1.bias", "2.bias"})
        M = fmt.size()
        assert size == M**3 and ndf == (M**2 - good) * M, (trial, vals)
        lower += 1
    assert lower == 12


def test_slice_with_lower_kink_nonlinear_piece():
    net = mlp("fp(2,1)", [["1"]], [1, 1], "hardswish", out_bias=True)
    labels = net.parameterization().labels
    fmt = net.numbers
    for w0 in (Fraction(1), Fraction(3, 2), Fraction(-2)):
        vals = [Fraction(0)] * len(labels)
        vals[labels.index("0.weight[0,0]")] = w0
        vals[labels.index("0.bias[0]")] = 3 - w0 if fmt.contains(3 - w0) else -3 - w0
        vals[labels.index("1.weight[0,0]")] = Fraction(1, 2)
        vals[labels.index("2.weight[0,0]")] = Fraction(3)
        good = slice_good_point(split(with_point(net, vals)), vals)
        ndf, size = _slice_ndf_brute(net, vals, {"1.bias", "2.bias"})
        assert ndf == (fmt.size() - good) * fmt.size()


def test_conditional_slice_on_fp8_matches_closed_form():
    net = mlp("e4m3", [["0"]], [64], "relu")
    vals = [Fraction(0) if "bias" in lab else Fraction(1) for lab in net.parameterization().labels]
    res = count_conditional(with_point(net, vals), given="net")
    assert res.space == "bias-slice" and res.omega == 253**64
    assert res.density_ndf == 1 - (1 - Fraction(1, 253)) ** 64
    assert res.ndf == 253**64 - 252**64


def test_sample_intervals_contain_exact_density():
    net = mlp("fp(2,1)", [["1/2"]], [2], "relu")
    exact = count_exact(net, "pytorch", cross_check=0).density_ndf
    res = count_sample(net, "pytorch", samples=400, seed=3)
    assert res.ci is not None
    lo, hi = res.ci["density_ndf"]
    assert lo <= float(exact) <= hi
    assert res.inc == 0 and res.method == "sample"
    net = load_example("e1")
    net = reformat(net, parse_format("fp(2,1)"))
    exact_res = count_exact(net, "right", cross_check=0)
    res = count_sample(net, "right", samples=600, seed=5)
    assert res.ci is not None
    for key, want in (
        ("density_ndf", exact_res.density_ndf),
        ("density_inc", exact_res.density_inc),
    ):
        lo, hi = res.ci[key]
        assert lo <= float(want) <= hi


def test_reformat_rejects_non_members_by_name():
    net = load_example("tiny-mlp")
    with pytest.raises(NotInFormat, match=r"parameter 0\.weight\[1,0\].*fp\(2,1\)"):
        reformat(net, parse_format("fp(2,1)"))
    assert reformat(net, parse_format("e4m3")).numbers.name == "e4m3"


def test_exact_refuses_huge_spaces():
    with pytest.raises(InvalidArgument, match="253\\^13"):
        count_exact(reformat(load_example("tiny-mlp"), parse_format("e4m3")), max_points=10**6)


def test_conditional_needs_h():
    with pytest.raises(InvalidArgument, match="hypothesis H"):
        count_conditional(load_example("e1"))


@pytest.mark.parametrize("fmt", ["binary16", "bfloat16", "binary32"])
def test_conditional_mc_interval_contains_tightness_density(fmt):
    """Issue 10: every sample sees the same slice density (v_i = 0 has probability 1/|M|), yet
    the interval must contain the exact density of the tightness family, with non-zero width."""
    from formal.count.bias import conditional_mc

    for N, samples, seed in ((1, 50, 1), (3, 60, 2)):
        net = mlp(fmt, [["0"]], [N], "relu")
        exact = tightness_density(parse_format(fmt).size(), [(N, 1)])
        res = conditional_mc(
            net, parse_preset("pytorch"), samples=samples, seed=seed, progress=False
        )
        assert res.ci is not None and res.extra["distinct_values"] == 1
        lo, hi = res.ci["density_ndf"]
        assert lo < hi  # the estimate is not provably exact
        assert lo <= float(exact) <= hi and Fraction(lo) <= exact <= Fraction(hi)
        assert float(res.density_ndf) != float(exact)  # the estimate itself misses it


def test_bernstein_interval():
    from formal.count.omega import bernstein

    assert bernstein([Fraction(0)] * 10, Fraction(0)) == (0.0, 0.0)  # provably exact
    lo, hi = bernstein([Fraction(1, 4)] * 100, Fraction(1, 2))
    assert 0 < lo < 0.25 < hi <= 0.5  # zero spread, yet positive width
    # coverage on a rare event: p = 1/1000, 200 samples usually all 0
    rng = random.Random(0)
    misses = 0
    for _ in range(200):
        vals = [Fraction(int(rng.random() < 0.001)) for _ in range(200)]
        lo, hi = bernstein(vals, Fraction(1))
        misses += not (lo <= 0.001 <= hi)
    assert misses <= 10
