"""formal.check against the independent sympy oracle (tests/oracle/) on random small networks.

For every hypothesis-generated network (kinks forced, zero weights and
inputs, dead units, ties, frozen tensors, B in 1..2) and several presets:

- ``differentiable`` / ``in_ndf`` agree with the oracle's cell decision;
- when differentiable, ``gradient`` equals the oracle's gradient and
  ``ad_correct`` / ``in_inc`` agree with the oracle's own AD with proxies;
- every non-additive witness is recomputed from the definition of the
  directional derivative (germs of ``f(w + t d)``) and must match;
- ``bouligand`` / ``clarke`` claims are checked against the gradients of the
  linear pieces of ``d -> f'(w; d)`` (an AD value claimed Bouligand must be
  one of them; one claimed Clarke must be in their convex hull).
"""

from __future__ import annotations

import ast
import json
import random
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oracle import (
    Oracle,
    OracleBudget,
    axis_directions,
    in_convex_hull,
    lp_solve,
    strictly_feasible,
)
from strategies import KINKED, WIDE_GRID, WIDE_INPUTS, image_networks, networks

from formal.core.activations import parse_preset
from formal.engine.forward import exact_forward, gradient_ad, output_value
from formal.engine.verdict import check, directional
from formal.io.formalnet import from_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "formal" / "examples"
PRESETS = ["pytorch", "left", "right", "lambda=1/2", "jax"]
F = Fraction


def _oracle(doc, *, complete: bool = False) -> Oracle:
    o = Oracle(doc)
    try:
        o.decide(complete=complete)
    except OracleBudget:
        assume(False)  # exponentially many cells: too slow for a unit test, rare
    return o


def _flat(rows) -> list[Fraction]:
    return [x for r in rows for x in r]


def assert_matches_oracle(doc, o: Oracle, preset: str, *, count_kinks: bool = True) -> None:
    """One network, one preset: every field of the verdict that the oracle can decide.

    (``count_kinks=False`` for max-pool networks: the engine also counts ties, after
    merging entries that are provably the same function.)
    """
    net = from_dict(doc)
    assert net.parameterization().labels == o.labels
    v = check(net, preset, gradient=True)
    dec = o.decide()
    oad, _ = o.ad(preset)
    ad = tuple(
        tuple(r) for r in gradient_ad(exact_forward(net, parse_preset(preset))).to_fractions()
    )
    assert ad == oad, f"AD with {preset}"
    assert v.differentiable is dec.differentiable, (v.method, v.reason)
    assert v.in_ndf is (not dec.differentiable)
    assert v.parameters == o.W
    if count_kinks:
        kinked = [k for k in o.kink_units() if o.depends(k[0])]
        assert v.kink_neurons == len(kinked)
    if dec.differentiable:
        assert dec.gradient is not None
        assert v.gradient == dec.gradient
        assert v.ad_correct is (oad == dec.gradient)
        assert v.in_inc is (oad != dec.gradient)
        if v.ad_correct:
            assert v.bouligand is True and v.clarke is True
        else:
            assert v.witness is not None
            assert v.witness.kind == "ad-mismatch"
            o_idx = o.output_labels.index(v.witness.output)
            j = o.labels.index(v.witness.param)
            vals = dict(v.witness.values)
            assert vals["ad"] == oad[o_idx][j] and vals["gradient"] == dec.gradient[o_idx][j]
            assert vals["ad"] != vals["gradient"]
    else:
        assert v.ad_correct is False and v.in_inc is False
        w = v.witness
        assert w is not None
        assert w.kind == "non-additive"
        i = o.output_labels.index(w.output)
        d1, d2 = dict(w.d1), dict(w.d2)
        dsum = dict(d1)
        for k, x in d2.items():
            dsum[k] = dsum.get(k, F(0)) + x
        vals = dict(w.values)
        assert o.directional_labels(d1)[i] == vals["df_d1"]
        assert o.directional_labels(d2)[i] == vals["df_d2"]
        assert o.directional_labels(dsum)[i] == vals["df_d1_plus_d2"]
        assert vals["df_d1_plus_d2"] != vals["df_d1"] + vals["df_d2"]
    if v.bouligand is True or v.clarke is True:
        try:
            full = o.decide(complete=True)
        except OracleBudget:
            return  # too many cells to list; the other claims were checked
        pieces = [_flat(L) for L in full.piece_gradients()]
        if v.bouligand is True:
            assert _flat(oad) in pieces, "AD claimed in the Bouligand subdifferential"
        if v.clarke is True and len(pieces) <= 24:
            assert in_convex_hull(_flat(oad), pieces), "AD claimed in the Clarke subdifferential"


# ---------------------------------------------------------------------------


@settings(max_examples=70)
@given(networks(overrides=True))
def test_check_matches_oracle(doc):
    o = _oracle(doc)
    for preset in PRESETS:
        assert_matches_oracle(doc, o, preset)


def _name(spec) -> str:
    return spec if isinstance(spec, str) else spec["name"]


NO_HARDTANH = [a for a in KINKED if _name(a) != "hardtanh"] + ["identity"]


@settings(max_examples=25)
@given(networks(activations=NO_HARDTANH))
def test_check_matches_oracle_other_presets(doc):
    """TensorFlow (no hardtanh convention), the PyTorch version presets.

    Also value=p and lambda outside [0, 1].
    """
    o = _oracle(doc)
    for preset in ["tensorflow", "pytorch-2.6", "pytorch-2.13", "value=3", "lambda=2"]:
        assert_matches_oracle(doc, o, preset)


@settings(max_examples=25)
@given(networks(formats=["binary64"], grid=WIDE_GRID, input_grid=WIDE_INPUTS, max_width=2))
def test_check_matches_oracle_wide_binary64(doc):
    """binary64 parameters from 2^-1074 to 2^1000: exact cancellation and huge denominators."""
    o = _oracle(doc)
    for preset in ["pytorch", "right", "lambda=1/2"]:
        assert_matches_oracle(doc, o, preset)


@settings(max_examples=20)
@given(image_networks())
def test_check_matches_oracle_conv_maxpool(doc):
    """conv2d / max-pool / avg-pool / residual nets.

    Max-pools with ties, tie rules first/last and per-layer overrides.
    """
    o = _oracle(doc)
    for preset in ["pytorch", "pytorch,tie=last", "right", "lambda=1/2"]:
        assert_matches_oracle(doc, o, preset, count_kinks=False)


@settings(max_examples=40)
@given(networks(), st.randoms(use_true_random=False))
def test_directional_derivatives_match_definition(doc, rnd):
    """The engine's exact JVP with one-sided kink rules equals the t-coefficient of f(w + t d)."""
    net = from_dict(doc)
    o = Oracle(doc)
    fwd = exact_forward(net, parse_preset("pytorch"))
    assert list(output_value(fwd).to_fractions()) == o.value() == o.sympy_value()
    W = o.W
    dirs: list[dict[int, Fraction]] = []
    for j in range(W):
        dirs += [{j: F(1)}, {j: F(-1)}]
    for _ in range(4):
        dirs.append(
            {
                j: F(rnd.randint(-4, 4), rnd.choice([1, 2, 4]))
                for j in rnd.sample(range(W), min(W, 3))
            }
        )
    got = directional(fwd, dirs)
    for d, row in zip(dirs, got):
        assert row == o.directional(d), d


@settings(max_examples=40)
@given(networks(), st.randoms(use_true_random=False))
def test_oracle_decision_is_consistent_with_lemma_d(doc, rnd):
    """Self-check of the oracle: its two independent computations agree.

    Differentiable => d -> f'(w; d) (from germs) is additive on the axes, their
    negations and random pairs, and f'(w; e_j) is the gradient's j-th entry.
    Not differentiable => some full-dimensional cell's linear map differs
    from the axis values, and every germ value is one of the cells' values.
    """
    o = _oracle(doc, complete=True)
    dec = o.decide(complete=True)
    W = o.W
    axes = axis_directions(W)
    rand = [[F(rnd.randint(-3, 3), rnd.choice([1, 2])) for _ in range(W)] for _ in range(4)]
    pairs = [(e, [-x for x in e]) for e in axes] + [
        (rand[i], rand[j]) for i in range(4) for j in range(i + 1, 4)
    ]
    cell_maps = {L for L in dec.piece_gradients()}
    for d in rand + axes:
        g = o.directional(d)
        assert any(
            g == [sum((a * x for a, x in zip(row, d)), F(0)) for row in L] for L in cell_maps
        )
    if dec.differentiable:
        assert dec.gradient is not None
        assert o.additivity_violations(pairs) == []
        for j, e in enumerate(axes):
            assert o.directional(e) == [row[j] for row in dec.gradient]
    else:
        assert len(cell_maps) >= 2


def test_oracle_lp_certificates():
    """The oracle's exact LP: Gordan alternatives and convex hulls on hand-checked instances."""
    e = [F(1), F(0)]
    assert strictly_feasible([(F(1), F(0)), (F(0), F(1))])
    assert strictly_feasible([(F(-1), F(0))])  # d = (-1, 0)
    assert not strictly_feasible([(F(1), F(0)), (F(-1), F(0))])
    assert not strictly_feasible(
        [(F(1), F(1)), (F(1), F(-1)), (F(-1), F(0))]
    )  # sum of first two = -2 * third
    assert strictly_feasible([(F(1), F(1)), (F(1), F(-1)), (F(1), F(0))])
    assert strictly_feasible([(F(0), F(0))])  # zero forms are dropped
    assert in_convex_hull(e, [[F(0), F(0)], [F(2), F(0)]])
    assert not in_convex_hull([F(1), F(1)], [[F(0), F(0)], [F(2), F(0)]])
    assert not in_convex_hull([F(0)], [[F(1)]])
    assert lp_solve([[F(1), F(1)]], [F(-1)]) is None  # x >= 0 cannot sum to -1
    x = lp_solve([[F(1), F(2)], [F(3), F(-1)]], [F(5), F(1)])
    assert x == [F(1), F(2)]


def test_oracle_sees_the_axis_trap():
    """Axis directions alone do not refute differentiability of |w1 + w2| - |w1| - |w2|.

    The oracle does.
    """
    o = Oracle(json.loads((EXAMPLES / "axis-trap.json").read_text()))
    axes = axis_directions(o.W)
    assert o.additivity_violations([(e, [-x for x in e]) for e in axes]) == []
    assert [o.directional(e) for e in axes] == [[F(0)], [F(0)]]
    assert o.directional([F(1), F(-1)]) == [F(-2)]
    assert o.decide().differentiable is False


@pytest.mark.parametrize("seed", range(3))
def test_random_near_kink_inputs_are_not_kinks(seed):
    """A pre-activation one binary16 ulp away from a kink is not a kink.

    The oracle and the engine agree.
    """
    rnd = random.Random(seed)
    ulp = F(1, 128)
    for act in ["relu", "relu6", "hardtanh", "hardsigmoid", "abs"]:
        c = {"relu": 0, "relu6": 6, "hardtanh": 1, "hardsigmoid": 3, "abs": 0}[act]
        delta = rnd.choice([ulp, -ulp]) * (max(1, abs(c)))
        doc = {
            "format": "formal-net/1",
            "numbers": "binary16",
            "inputs": [[1]],
            "layers": [{"type": "dense", "units": 1, "bias": True, "activation": act}],
            "params": {"0.weight": [[str(F(c) + delta)]], "0.bias": ["0"]},
        }
        o = Oracle(doc)
        v = check(from_dict(doc), "pytorch", gradient=True)
        assert o.kink_units() == [] and v.kink_neurons == 0 and v.method == "no-kinks"
        assert v.gradient == o.decide().gradient


def test_oracle_is_independent_of_formal():
    """The oracle package imports nothing from formal: its verdicts are computed independently."""
    for path in sorted((Path(__file__).resolve().parent / "oracle").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "formal" or n.startswith("formal.") for n in names), (path, names)
