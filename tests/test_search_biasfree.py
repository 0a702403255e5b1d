"""The bias-free stage of ``formal search --find inc``: theorems (T5, zero input) and the
constructed E1-pattern witness.

Every ``found`` is re-verified by ``formal.check``; on tiny formats every answer of
the stage is compared with exhaustive enumeration of inc over the whole space
(a wrong ``exhausted`` or a wrong witness fails these tests).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from formal.core.activations import parse_preset
from formal.core.builders import dense_network, exact_values
from formal.core.network import Network
from formal.core.numbers import BINARY32, parse_format
from formal.core.rebuild import group_values, with_groups
from formal.engine.verdict import check
from formal.search.biasfree import inc_empty
from formal.search.options import SearchResult
from formal.search.search import SearchOptions, search
from formal.smt.fp import Domain, domain_members

F = Fraction
STAGE_ONLY = ("bias-free",)


def chain(
    weights: list[Any],
    acts: list[str],
    x: Any,
    numbers: str = "fp(2,1)",
    biases: list[Any] | None = None,
    trainable: list[str] | None = None,
) -> Network:
    """A dense chain (bias-free unless ``biases``)."""
    return dense_network(
        weights,
        biases or [None] * len(weights),
        x,
        acts,
        numbers=numbers,
        trainable=trainable,
        source="test:" + "/".join(acts),
    )


def net_3441(seed: int = 0, numbers: str = "binary32") -> Network:
    """A bias-free 3-4-4-1 ReLU net with random binary32 weights and input."""
    rng = np.random.default_rng(seed)
    x = exact_values(rng.uniform(-1, 1, (1, 3)).astype(np.float32))
    ws = [
        exact_values(rng.normal(0, 1, shape).astype(np.float32))
        for shape in ((4, 3), (4, 4), (1, 4))
    ]
    return dense_network(ws, [None] * 3, x, ["relu", "relu", "identity"], numbers=numbers)


def inc_points(
    net: Network, fmt_name: str, proxy: str, subnormals: bool = True
) -> set[tuple[Fraction, ...]]:
    """Every point of the whole space that is in inc (exact check)."""
    fmt = parse_format(fmt_name)
    vals = domain_members(Domain(fmt, subnormals=subnormals))
    size = net.parameterization().size
    out = set()
    for point in itertools.product(vals, repeat=size):
        v = check(with_groups(net, dict(enumerate(point)), numbers=fmt), proxy)
        assert v.in_inc is not None, "tiny cases must be decided"
        if v.in_inc:
            out.add(point)
    return out


def point_of(res: SearchResult) -> tuple[Fraction, ...]:
    assert res.network is not None
    vals = group_values(res.network)
    return tuple(vals[g] for g in range(len(vals)))


def run(net: Network, proxy: str, stages: tuple[str, ...] | None = None, **kw: Any) -> SearchResult:
    opt = SearchOptions(find="inc", proxy=proxy, timeout=60, **kw)
    if stages is not None:
        opt = SearchOptions(find="inc", proxy=proxy, timeout=60, stages=stages, **kw)
    return search(net, opt)


# -- the item of issue 9: bias-free 3-4-4-1 at binary32 -------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_3441_binary32_pytorch_is_exhausted_by_t5(seed):
    res = run(net_3441(seed), "pytorch")
    assert res.status == "exhausted" and res.method == "theorem-T5", res.reason
    assert [s["stage"] for s in res.stages] == ["given", "theorem", "bias-free"]
    assert "T5 (ii)" in res.reason


@pytest.mark.parametrize("seed", [0, 1])
def test_3441_binary32_right_finds_a_verified_witness_without_smt(seed):
    net = net_3441(seed)
    res = run(net, "right")
    assert res.status == "found" and res.method == "bias-free-witness", res.reason
    assert all(s["stage"] != "smt" for s in res.stages)
    assert res.network is not None and res.network.numbers == BINARY32
    v = check(res.network, "right")
    assert v.differentiable is True and v.ad_correct is False and v.in_inc is True
    assert all(BINARY32.contains(q) for q in point_of(res))
    # the same point is no witness for pytorch (T5 (ii)): the proxy is what makes AD wrong
    assert check(res.network, "pytorch").in_inc is False


def test_fixed_parameters_that_contradict_the_pattern_are_respected():
    """1.weight fixed at its (mixed-sign) random values: no E1 pattern at layers 0/1; the
    layer pair 1/2 does not exist (the output is the identity), so the stage gives up."""
    net = net_3441(0)
    res = run(net, "right", stages=STAGE_ONLY, fix=("1.weight",))
    assert res.status == "unknown"
    assert res.stages[-1]["stage"] == "bias-free" and res.stages[-1]["status"] == "none"
    # with the second layer fixed at negative values the pattern fits and keeps them
    neg = with_groups(
        net,
        {g: F(-2) for g in range(12, 28)},
        numbers=BINARY32,
    )
    res = run(neg, "right", stages=STAGE_ONLY, fix=("1.weight",))
    assert res.status == "found", res.reason
    assert res.network is not None
    assert res.network.params["1.weight"].to_fractions().reshape(-1).tolist() == [F(-2)] * 16
    assert check(res.network, "right").in_inc is True


def test_a_fixed_first_layer_moves_the_pattern_up_one_layer():
    """0.weight fixed: the kink path starts in layer 1, fed by the exact relu(W0 x)."""
    rng = np.random.default_rng(3)
    x = exact_values(np.array([[0.5, -0.25, 1.0]], dtype=np.float32))
    ws = [exact_values(np.abs(rng.normal(0, 1, (4, 3))).astype(np.float32))]
    ws += [exact_values(rng.normal(0, 1, s).astype(np.float32)) for s in ((4, 4), (4, 4), (1, 4))]
    net = dense_network(ws, [None] * 4, x, ["relu", "relu", "relu", "identity"])
    res = run(net, "right", stages=STAGE_ONLY, fix=("0.weight",))
    assert res.status == "found", res.reason
    assert res.network is not None
    assert res.network.params["0.weight"].to_fractions().tolist() == ws[0].to_fractions().tolist()
    assert "layer 1" in res.reason
    v = check(res.network, "right")
    assert v.differentiable is True and v.in_inc is True


# -- hypotheses of the theorems -------------------------------------------------------------


def test_theorems_refuse_networks_outside_their_hypotheses():
    pt, right, half = parse_preset("pytorch"), parse_preset("right"), parse_preset("lambda=1/2")
    net = chain([[[1]], [[1]]], ["relu", "relu"], [[1]])
    assert inc_empty(net, pt) is not None
    assert inc_empty(net, right) is None and inc_empty(net, half) is None
    two = chain([[[1]], [[1]]], ["relu", "relu"], [[1], [2]])  # B = 2
    assert inc_empty(two, pt) is None
    frozen = chain([[[1]], [[1]]], ["relu", "relu"], [[1]], trainable=["1.weight"])
    assert inc_empty(frozen, pt) is None
    ident = chain([[[1]], [[1]], [[1]]], ["identity", "relu", "identity"], [[1]])
    assert inc_empty(ident, pt) is None  # an identity layer feeds a kinked one
    leaky = chain([[[1]], [[1]]], ["leaky_relu", "relu"], [[1]])
    assert inc_empty(leaky, pt) is None
    absn = chain([[[1]], [[1]]], ["relu", "abs"], [[1]])
    assert inc_empty(absn, pt) is None  # abs with proxy 0 is not one-sided
    ht = chain([[[1]], [[1]]], ["hardtanh", "hardtanh"], [[1]])
    got = inc_empty(ht, right)
    assert got is not None and "T5 (i)" in got.reason
    ht_frozen = chain(
        [[[1]], [[1]]],
        ["relu", "hardtanh"],
        [[1]],
        biases=[None, [1]],
        trainable=["0.weight", "1.weight"],
    )
    assert inc_empty(ht_frozen, half) is None  # a bias frozen at the kink 1 anchors nothing
    zero = chain([[[1]], [[1]]], ["leaky_relu", "relu"], [[0]])
    got = inc_empty(zero, right)
    assert got is not None and got.method == "theorem-zero-input"
    hs = chain([[[1]], [[1]]], ["hardsigmoid", "relu"], [[0]])
    assert inc_empty(hs, right) is None  # hardsigmoid(0) = 1/2


# -- agreement with exhaustive enumeration ------------------------------------------------------

ENUM_CASES = [
    # (weights, activations, input, format, proxy); W = 2 with subnormals, W = 3 without
    ([[[1]], [[1]]], ["relu", "relu"], [[1]], "fp(2,1)", "pytorch"),
    ([[[1]], [[1]]], ["relu", "relu"], [[1]], "fp(2,1)", "right"),
    ([[[1]], [[1]]], ["relu", "relu"], [[-3]], "fp(2,1)", "lambda=1/2"),
    ([[[1]], [[1]]], ["relu", "leaky_relu"], [[1]], "fp(3,2)", "pytorch"),
    ([[[1]], [[1]]], ["relu6", "relu"], [[1]], "fp(2,1)", "jax"),
    ([[[1]], [[1]]], ["hardtanh", "hardtanh"], [[1]], "fp(2,1)", "right"),
    ([[[1]], [[1]]], ["relu", "relu"], [[0]], "fp(2,1)", "right"),
    ([[[1]], [[1]], [[1]]], ["relu", "relu", "identity"], [[1]], "fp(2,1)", "pytorch"),
    ([[[1]], [[1]], [[1]]], ["relu", "relu", "identity"], [[1]], "fp(2,1)", "right"),
    ([[[1]], [[1]], [[1]]], ["relu", "relu", "relu"], [[-1]], "fp(2,1)", "lambda=1/2"),
    ([[[1, 1]], [[1]]], ["relu", "relu"], [[1, 0]], "fp(2,1)", "right"),
]


@pytest.mark.parametrize("weights,acts,x,fmt,proxy", ENUM_CASES)
def test_bias_free_stage_agrees_with_enumeration(weights, acts, x, fmt, proxy):
    """The stage decides each case (found or exhausted), and the answer matches the exact
    inc set of the whole space: exhausted => empty; found => the witness is in it."""
    net = chain(weights, acts, x, numbers=fmt)
    sub = net.parameterization().size <= 2
    res = run(net, proxy, stages=STAGE_ONLY, numbers=fmt, subnormals=sub)
    assert res.status in ("found", "exhausted"), res.reason
    inc = inc_points(net, fmt, proxy, sub)
    if res.status == "exhausted":
        assert inc == set(), f"{res.method} claimed exhausted; inc has e.g. {min(inc)}"
    else:
        assert point_of(res) in inc
        assert res.network is not None and check(res.network, proxy).in_inc is True


def test_full_search_on_a_case_the_stage_cannot_decide_still_agrees():
    """leaky_relu feeding relu: no theorem, the E1 pattern is no witness (the leaky unit
    moves both ways); the later stages answer, consistently with enumeration."""
    net = chain([[[1]], [[1]]], ["leaky_relu", "relu"], [[1]], numbers="fp(2,1)")
    staged = run(net, "pytorch", stages=STAGE_ONLY, numbers="fp(2,1)", subnormals=True)
    assert staged.status == "unknown" and staged.stages[-1]["status"] == "none"
    res = run(net, "pytorch", numbers="fp(2,1)", subnormals=True)
    inc = inc_points(net, "fp(2,1)", "pytorch")
    assert res.status in ("found", "exhausted"), res.reason
    if res.status == "found":
        assert point_of(res) in inc
    else:
        assert inc == set()
