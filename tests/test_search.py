"""Witness search: every witness re-verified exactly; exhausted/not-found cross-checked by
enumerating tiny formats; float touches re-checked by numpy in the stated order;
unknown on time-outs."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from formal.core.activations import parse_preset
from formal.core.numbers import BINARY32, parse_format
from formal.core.rebuild import group_values, with_groups
from formal.engine.forward import exact_forward
from formal.engine.verdict import check
from formal.errors import InvalidArgument, NotInFormat
from formal.examples import load_example
from formal.io.formalnet import from_dict
from formal.search.search import SearchOptions, search
from formal.smt.fp import Domain, domain_members

F = Fraction
TINY = parse_format("fp(2,1)")  # members 0, +-1/2, +-1, +-3/2, +-2, +-3
NO_GIVEN = ("theorem", "closed-form", "smt")


def enumerate_sets(net, fmt, proxy, subnormals=True):
    """Every point of fmt^W (W <= 2): which ones have a kink, are in ndf, in inc (exact check)."""
    par = net.parameterization()
    vals = domain_members(Domain(fmt, subnormals=subnormals))
    sets: dict[str, set[tuple[Fraction, ...]]] = {"kink": set(), "ndf": set(), "inc": set()}
    for point in itertools.product(vals, repeat=par.size):
        v = check(with_groups(net, dict(enumerate(point)), numbers=fmt), proxy)
        assert v.in_ndf is not None and v.in_inc is not None, "tiny cases must be decided"
        if v.kink_neurons:
            sets["kink"].add(point)
        if v.in_ndf:
            sets["ndf"].add(point)
        if v.in_inc:
            sets["inc"].add(point)
    return sets


def witness_point(res):
    vals = group_values(res.network)
    return tuple(vals[g] for g in range(len(vals)))


CASES = [
    ("e1", "pytorch"),
    ("e1", "right"),
    ("axis-trap", "pytorch"),
    ("lemma2", "pytorch"),
    ("lemma2", "lambda=1/2"),
    ("f2", "pytorch"),
    ("f3", "right"),
    ("lemma3", "pytorch"),
    ("lemma3", "right"),
]


@pytest.mark.parametrize("name,proxy", CASES)
def test_search_agrees_with_enumeration_on_a_tiny_format(name, proxy):
    """found => the witness is in the enumerated set (and verified).

    exhausted => the set is empty.
    """
    net = load_example(name)
    sets = enumerate_sets(net, TINY, proxy)
    for find in ("kink", "ndf", "inc"):
        res = search(
            net,
            SearchOptions(
                find=find,
                proxy=proxy,
                numbers="fp(2,1)",
                subnormals=True,
                stages=NO_GIVEN,
                timeout=60,
            ),
        )
        assert res.status in ("found", "exhausted"), (find, res.reason)
        if res.status == "found":
            point = witness_point(res)
            assert point in sets[find], (find, point)
            assert all(TINY.contains(v) for v in point)
            assert res.network is not None
            again = check(res.network, proxy)
            assert {"kink": again.kink_neurons > 0, "ndf": again.in_ndf, "inc": again.in_inc}[
                find
            ] is True
        else:
            assert sets[find] == set(), (find, res.reason)


def test_e1_inc_pytorch_is_exhausted_in_fp32_but_found_with_right():
    """docs/theory.md section 4, open question, tiny instance.

    E1 with relu'(0) = 0 has no inc point in fp(3,2) (exhaustive, cross-checked by
    enumeration); with relu'(0) = 1 it has."""
    net = load_example("e1")
    fmt = parse_format("fp(3,2)")
    sets = enumerate_sets(net, fmt, "pytorch", subnormals=False)
    assert sets["inc"] == set()
    res = search(
        net,
        SearchOptions(find="inc", proxy="pytorch", numbers="fp(3,2)", stages=NO_GIVEN, timeout=60),
    )
    assert res.status == "exhausted", res.reason
    res = search(
        net,
        SearchOptions(find="inc", proxy="right", numbers="fp(3,2)", stages=NO_GIVEN, timeout=60),
    )
    assert res.status == "found"
    assert res.network is not None
    assert check(res.network, "right").in_inc is True


def test_inc_witness_in_binary32_via_search_format_is_lifted_exactly():
    net = load_example("e1")
    res = search(net, SearchOptions(find="inc", proxy="right", stages=("smt",), timeout=60))
    assert res.status == "found", res.reason
    assert res.search_format in ("fp(2,1)", "fp(3,2)", "e4m3")
    s_fmt = parse_format(res.search_format)
    point = witness_point(res)
    assert all(s_fmt.contains(v) and BINARY32.contains(v) for v in point)
    assert res.network is not None
    assert res.network.numbers == BINARY32
    v = check(res.network, "right")
    assert v.in_inc is True and v.differentiable is True and v.ad_correct is False
    js = res.to_json()
    assert js["verdict"]["in_inc"] is True
    assert js["bits"]["0.weight"][0][0] == BINARY32.hex_bits(point[0])


def test_exhausted_claims_in_binary32_follow_the_theory():
    """f1 = w is linear (no ndf point); lemma 3 with `right` is never incorrect; w * 10 = +-1
    has no binary32 solution."""
    r = search(load_example("f1"), SearchOptions(find="ndf", timeout=60))
    assert r.status == "exhausted", r.reason
    r = search(load_example("lemma3"), SearchOptions(find="inc", proxy="right", timeout=60))
    assert r.status == "exhausted", r.reason
    r = search(load_example("rounding-trap"), SearchOptions(find="kink", timeout=60))
    assert r.status == "exhausted" and r.method == "closed-form", r.reason


def test_closed_form_exhaustion_cross_checked_by_enumeration():
    """rounding-trap in fp(3,2): no member w has w * 10 on a kink of hardtanh (+-1)."""
    net = load_example("rounding-trap")
    res = search(net, SearchOptions(find="kink", numbers="fp(3,2)", subnormals=True, timeout=30))
    assert res.status == "exhausted"
    assert enumerate_sets(net, parse_format("fp(3,2)"), "pytorch")["kink"] == set()


def test_theorem_t1_under_hypothesis_h():
    res = search(load_example("tiny-mlp"), SearchOptions(find="inc", timeout=10))
    assert res.status == "exhausted" and res.method == "theorem-T1"


def test_bias_kink_by_closed_form_is_verified():
    net = load_example("tiny-mlp")
    res = search(
        net, SearchOptions(find="ndf", free=("0.bias",), stages=("closed-form",), timeout=30)
    )
    assert res.status == "found" and res.method == "closed-form"
    assert res.verdict is not None and res.network is not None
    assert res.verdict.in_ndf is True
    # only a bias changed, and it is a binary32 member
    old, new = group_values(net), group_values(res.network)
    changed = [g for g in old if old[g] != new[g]]
    assert len(changed) == 1 and "bias" in net.parameterization().label(changed[0])
    assert BINARY32.contains(new[changed[0]])


def test_fix_and_free_are_respected():
    net = load_example("e1")
    res = search(
        net,
        SearchOptions(find="inc", proxy="right", fix=("1.weight=-2",), stages=("smt",), timeout=30),
    )
    assert res.status == "found"
    assert res.network is not None
    assert group_values(res.network)[1] == -2
    res = search(
        net,
        SearchOptions(
            find="kink", free=("1.weight",), fix=("0.weight=1",), stages=NO_GIVEN, timeout=30
        ),
    )
    assert res.status == "found"
    assert res.network is not None
    assert group_values(res.network)[0] == 1
    with pytest.raises(NotInFormat, match=r"0\.weight\[0,0\].*1/10"):
        search(net, SearchOptions(find="inc", fix=("0.weight[0,0]=1/10",)))
    with pytest.raises(InvalidArgument, match="expected a parameter name"):
        search(net, SearchOptions(find="inc", fix=("2.weight=0",)))


def test_timeouts_give_unknown_never_a_boolean():
    res = search(load_example("axis-trap"), SearchOptions(find="inc", timeout=1e-4))
    assert res.status == "unknown" and "time" in res.reason
    assert res.verdict is None and res.network is None
    res = search(
        load_example("tiny-mlp"), SearchOptions(find="missed-kink", stages=("smt",), timeout=1.0)
    )
    assert res.status == "unknown", res.reason
    assert res.to_json()["params"] is None


# -- float kink touches ---------------------------------------------------------------------


def _unit(x, w, fmt="binary32", bias=None, act="relu"):
    layer = {"type": "dense", "units": 1, "bias": bias is not None, "activation": act}
    params: dict[str, list[Any]] = {"0.weight": [[str(v) for v in w]]}
    if bias is not None:
        params["0.bias"] = [str(bias)]
    return from_dict(
        {
            "format": "formal-net/1",
            "numbers": fmt,
            "inputs": [[str(v) for v in x]],
            "layers": [layer],
            "params": params,
        }
    )


def _by_hand(net, dtype):
    """Sequential float sum with numpy scalars, and the exact sum."""
    x = [F(v) for v in net.inputs.to_fractions()[0]]
    w = [F(v) for v in net.params["0.weight"].to_fractions()[0]]
    acc = None
    for xi, wi in zip(x, w):
        p = dtype(float(xi)) * dtype(float(wi))
        acc = p if acc is None else dtype(acc + p)
    assert acc is not None
    exact = sum((a * b for a, b in zip(x, w)), F(0))
    if "0.bias" in net.params:
        b = F(net.params["0.bias"].to_fractions()[0])
        acc = dtype(acc + dtype(float(b)))
        exact += b
    return F(float(acc)), exact


def test_spurious_touch_of_the_rounding_trap():
    res = search(load_example("rounding-trap"), SearchOptions(find="spurious-kink", timeout=30))
    assert res.status == "found"
    t = res.touch
    assert t is not None and res.network is not None
    assert t["float_value"] == "1" and t["exact_value"] != "1"
    flt, exact = _by_hand(res.network, np.float32)
    assert flt == 1 and exact != 1 and F(t["exact_value"]) == exact


def test_spurious_touch_by_smt_verified_by_numpy():
    net = _unit(["0.7", "-1.3", "0.45"], ["0.5", "0.25", "-1"])  # inputs are rounded to binary32
    res = search(
        net,
        SearchOptions(find="spurious-kink", stages=("smt",), lo=F(1, 256), hi=F(256), timeout=60),
    )
    assert res.status == "found", res.reason
    assert res.network is not None and res.touch is not None
    w = [F(v) for v in res.network.params["0.weight"].to_fractions()[0]]
    assert all(v == 0 or F(1, 256) <= abs(v) <= 256 for v in w)
    xr = [BINARY32.round_nearest_even(F(s)) for s in ("0.7", "-1.3", "0.45")]
    acc: np.float32 | None = None
    for xi, wi in zip(xr, w):
        assert xi is not None
        p = np.float32(float(xi)) * np.float32(float(wi))
        acc = p if acc is None else np.float32(acc + p)
    assert acc is not None
    assert float(acc) == 0.0  # the float pre-activation touches relu's kink
    exact = sum((F(s) * wi for s, wi in zip(("0.7", "-1.3", "0.45"), w)), F(0))
    assert exact != 0 and F(res.touch["exact_value"]) == exact
    assert res.touch["inputs_rounded"] is True


def test_missed_touch_by_smt_verified_by_numpy():
    net = _unit(["3", "5", "1"], ["1", "1", "1"], fmt="binary16")
    res = search(net, SearchOptions(find="missed-kink", stages=("smt",), timeout=60))
    assert res.status == "found", res.reason
    assert res.network is not None and res.touch is not None
    flt, exact = _by_hand(res.network, np.float16)
    assert exact == 0 and flt != 0
    assert F(res.touch["float_value"]) == flt


def test_summation_order_is_part_of_the_semantics():
    """2^24 + 1 - 2^24 - 1 = 0 exactly (a real kink).  Sequential float: -1 (a missed touch);
    pairwise: (2^24 + 1) + (-2^24 - 1) rounds to 2^24 - 2^24 = 0 (no miss)."""
    from formal.smt.rounded import reference_preactivations

    net = _unit(["1", "1", "1", "1"], ["16777216", "1", "-16777216", "-1"])
    assert exact_forward(net, parse_preset("pytorch")).values["0.linear"].to_fractions()[0, 0] == 0
    seq = reference_preactivations(net, BINARY32, "sequential")["0.act"][0]
    pair = reference_preactivations(net, BINARY32, "pairwise")["0.act"][0]
    assert (seq[1], seq[2], pair[1], pair[2]) == (-1, -1, 0, 0)  # exact-RNE and numpy agree
    r_seq = search(
        net, SearchOptions(find="missed-kink", stages=("given",), order="sequential", timeout=10)
    )
    r_pair = search(
        net, SearchOptions(find="missed-kink", stages=("given",), order="pairwise", timeout=10)
    )
    assert r_seq.status == "found"
    assert r_seq.touch is not None
    assert r_seq.touch["order"] == "sequential"
    assert (r_seq.touch["float_value"], r_seq.touch["exact_value"]) == ("-1", "0")
    assert r_pair.status != "found"
