"""The catalogue of named cases (tests/catalogue.py): exact verdicts, numbers, methods,
witnesses."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from catalogue import CASES, NOT_FALSE, NOT_TRUE, ROUNDING_W, axis_trap_g, by_name
from oracle import Oracle

from formal.core.activations import parse_preset
from formal.core.numbers import BINARY32
from formal.engine.forward import exact_forward, gradient_ad, output_value
from formal.engine.verdict import check, directional
from formal.io.formalnet import from_dict

PAIRS = [(c, p) for c in CASES for p in c.expect]


def _rows(q) -> tuple[tuple[Fraction, ...], ...]:
    return tuple(tuple(Fraction(v) for v in r) for r in q.to_fractions())


def _claim(actual, expected, what: str) -> None:
    if expected == NOT_TRUE:
        assert actual is not True, f"{what} certified although it is false"
    elif expected == NOT_FALSE:
        assert actual is not False, f"{what} denied although it holds"
    else:
        assert actual is expected, what


@pytest.mark.parametrize(("case", "preset"), PAIRS, ids=[f"{c.name}-{p}" for c, p in PAIRS])
def test_catalogue_verdict(case, preset):
    exp = case.expect[preset]
    net = from_dict(case.doc, source=case.name)
    assert tuple(net.parameterization().labels) == case.labels
    v = check(net, preset, gradient=True)
    assert v.differentiable is exp.differentiable
    assert v.in_ndf is (not exp.differentiable)
    assert v.ad_correct is exp.ad_correct
    assert v.in_inc is (exp.differentiable and not exp.ad_correct)
    assert v.method in exp.methods
    assert v.kink_neurons == case.kink_neurons
    assert v.parameters == len(case.labels)
    assert v.hypothesis_h is case.hypothesis_h
    assert v.numbers == case.doc["numbers"]
    if exp.differentiable:
        assert v.gradient == exp.gradient
    ad = _rows(gradient_ad(exact_forward(net, parse_preset(preset))))
    assert ad == exp.ad
    if v.ad_gradient is not None:
        assert v.ad_gradient == exp.ad
    assert (
        tuple(output_value(exact_forward(net, parse_preset(preset))).to_fractions()) == case.value
    )
    _claim(v.bouligand, exp.bouligand, "bouligand")
    _claim(v.clarke, exp.clarke, "clarke")
    if v.bouligand is True:
        assert v.clarke is True  # Bouligand subgradients are Clarke subgradients
    want = case.witness.get(preset)
    if want:
        w = v.witness
        assert w is not None
        assert w.kind == want["kind"]
        for key in ("param", "output"):
            if key in want:
                assert getattr(w, key) == want[key]
        for key in ("d1", "d2"):
            if key in want:
                assert dict(getattr(w, key)) == want[key]
        vals = dict(w.values)
        for key, val in want.items():
            if key in ("ad", "gradient", "df_d1", "df_d2", "df_d1_plus_d2"):
                assert vals[key] == val, key
        js = v.to_json()["witness"]
        for key in ("ad", "gradient", "df_d1", "df_d2", "df_d1_plus_d2"):
            if key in want:
                assert js[key] == str(want[key])  # exact strings in JSON


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_catalogue_agrees_with_oracle(case):
    """The hand-computed truths are also what the independent oracle computes."""
    o = Oracle(case.doc)
    assert tuple(o.labels) == case.labels
    assert tuple(o.value()) == case.value
    dec = o.decide()
    for preset, exp in case.expect.items():
        assert dec.differentiable is exp.differentiable
        if exp.differentiable:
            assert dec.gradient == exp.gradient
        assert o.ad(preset)[0] == exp.ad


@pytest.mark.parametrize("preset", ["pytorch", "left", "right", "lambda=1/2", "jax"])
def test_axis_trap_witness_follows_the_formula(preset):
    """Every direction in the witness is evaluated by |d1 + d2| - |d1| - |d2| by hand."""
    case = by_name("axis-trap")
    net = from_dict(case.doc)
    v = check(net, preset)
    w = v.witness
    assert w is not None
    assert w.kind == "non-additive"
    d1 = dict(w.d1)
    d2 = dict(w.d2)
    zero = Fraction(0)
    a1, b1 = d1.get("0.weight[0,0]", zero), d1.get("0.weight[1,0]", zero)
    a2, b2 = d2.get("0.weight[0,0]", zero), d2.get("0.weight[1,0]", zero)
    vals = dict(w.values)
    assert vals["df_d1"] == axis_trap_g(a1, b1)
    assert vals["df_d2"] == axis_trap_g(a2, b2)
    assert vals["df_d1_plus_d2"] == axis_trap_g(a1 + a2, b1 + b2)
    assert vals["df_d1_plus_d2"] != vals["df_d1"] + vals["df_d2"]


def test_axis_trap_axes_alone_look_linear():
    """f'(w; +-e_j) = 0 on both axes: checking the axes alone would wrongly say differentiable."""
    net = from_dict(by_name("axis-trap").doc)
    fwd = exact_forward(net, parse_preset("pytorch"))
    F = Fraction
    vals = directional(
        fwd, [{0: F(1)}, {0: F(-1)}, {1: F(1)}, {1: F(-1)}, {0: F(1), 1: F(1)}, {0: F(1), 1: F(-1)}]
    )
    assert vals == [[0], [0], [0], [0], [0], [-2]]


def test_rounding_trap_is_real_in_float32():
    """float32 computes w * 10 == 1.0 exactly (a spurious kink of hardtanh);
    exactly it is 1 + 2^-26."""
    w32 = np.float32(float.fromhex("0x1.99999ap-4"))
    assert Fraction(float(w32)) == ROUNDING_W and BINARY32.contains(ROUNDING_W)
    prod = w32 * np.float32(10)
    assert prod.dtype == np.float32 and prod == np.float32(1.0)
    assert ROUNDING_W * 10 == 1 + Fraction(1, 2**26)
    v = check(from_dict(by_name("rounding-trap").doc), "pytorch")
    assert v.kink_neurons == 0 and v.method == "no-kinks"


@pytest.mark.parametrize(
    "p", [Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(1), Fraction(3)]
)
def test_e1_ad_is_minus_p_squared(p):
    v = check(from_dict(by_name("e1").doc), f"value={p}", gradient=True)
    ad = _rows(gradient_ad(exact_forward(from_dict(by_name("e1").doc), parse_preset(f"value={p}"))))
    assert ad == ((-p * p, Fraction(0)),)
    assert v.gradient == ((0, 0),)
    assert v.in_inc is (p != 0)


def test_cusp_regression_no_false_bouligand_claim():
    """Regression: a differentiable point where AD != grad used to be reported with
    bouligand = clarke = False, although here AD is a Bouligand subgradient (see catalogue)."""
    v = check(from_dict(by_name("cusp").doc), "pytorch")
    assert v.in_inc is True
    assert v.bouligand is not False and v.clarke is not False
    assert v.to_json()["bouligand"] is not False


@pytest.mark.parametrize(("case", "preset"), PAIRS, ids=[f"{c.name}-{p}" for c, p in PAIRS])
def test_json_exact_quantities_are_strings(case, preset):
    """to_json: every exact quantity is a "p/q" string that reads back to the same rational."""
    import json

    v = check(from_dict(case.doc), preset, gradient=True)
    doc = json.loads(json.dumps(v.to_json()))
    for k_json, k in zip(doc["kinks"], v.kinks):
        assert [Fraction(a) for a in k_json["adjoint"]] == list(k.adjoint)
        assert Fraction(k_json["kink"]) == k.value
    if v.gradient is not None:
        assert [[Fraction(x) for x in r] for r in doc["gradient"]] == [list(r) for r in v.gradient]
        assert all(isinstance(x, str) for r in doc["gradient"] for x in r)
    if v.witness is not None:
        for key, val in v.witness.values:
            assert doc["witness"][key] == str(val)
    assert doc["parameters"] == len(case.labels) and doc["method"] == v.method
