"""The kernel's own decision (``formal check --cross-check``) against the engine's verdicts.

The kernel (formal/verify/decide.py, its exact LP in formal/verify/lp.py) finds the
kinks, walks the sign-pattern tree and decides realizability with its own simplex;
it must reach the engine's verdict on every named example under three presets and
on random networks with forced kinks (dense chains and conv/max-pool nets).
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import image_networks, networks

from formal.cli.main import main
from formal.engine.certificate import load_document
from formal.engine.verdict import check
from formal.examples import example_path
from formal.io.formalnet import from_dict
from formal.verify.decide import DECIDE_KINKS, Skipped, decide
from formal.verify.lp import gordan, phase1, strictly_feasible

NAMED = ["e1", "lemma2", "lemma3", "f1", "f2", "f3", "axis-trap", "rounding-trap", "tiny-mlp"]
ENGINE_SAYS = {
    (True, True): "differentiable, AD correct",
    (True, False): "differentiable, AD incorrect",
    (False, False): "non-differentiable",
}
F = Fraction


def agree(doc: dict[str, Any], proxy: str) -> Any:
    """The engine's verdict and the kernel's decision on one document; they must agree."""
    doc = load_document(json.dumps(doc))
    v = check(from_dict(doc), proxy, gradient=True)
    try:
        d = decide(doc, proxy)
    except Skipped:
        return None
    if v.differentiable is None:  # the engine left it unknown: nothing to compare
        return d
    assert d.verdict == ENGINE_SAYS[(bool(v.differentiable), bool(v.ad_correct))], d.summary()
    if v.differentiable and v.gradient is not None:  # the same exact gradient
        assert d.gradient is not None
        assert [
            [row.get(j, F(0)) for j in range(len(r))] for row, r in zip(d.gradient, v.gradient)
        ] == [list(r) for r in v.gradient]
    return d


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("proxy", ["pytorch", "jax", "right"])
def test_named_examples(name: str, proxy: str) -> None:
    d = agree(load_document(example_path(name).read_text()), proxy)
    assert d is not None


def test_named_example_details() -> None:
    # lemma2: f(w) = relu(w) - relu(-w) = w; patterns (+,-), (-,+) realizable, two excluded
    d = decide(load_document(example_path("lemma2").read_text()), "pytorch")
    assert (d.kinks, d.patterns, d.excluded) == (2, 2, 2)
    assert d.gradient == [{0: F(1)}] and d.ad == [{}]
    # tiny-mlp: one kink whose two sides give different maps
    d = decide(load_document(example_path("tiny-mlp").read_text()), "pytorch")
    assert d.verdict == "non-differentiable" and d.differing == ((1,), (-1,))


@settings(max_examples=40)
@given(
    networks(max_layers=3, max_width=3, force=True), st.sampled_from(["pytorch", "jax", "right"])
)
def test_random_networks(doc: dict[str, Any], proxy: str) -> None:
    agree(doc, proxy)


@settings(max_examples=15)
@given(networks(max_layers=2, max_width=3, force=True, overrides=True))
def test_random_networks_with_overrides(doc: dict[str, Any]) -> None:
    agree(doc, "pytorch")


@settings(max_examples=15)
@given(image_networks(), st.sampled_from(["pytorch", "pytorch,tie=last"]))
def test_random_image_networks(doc: dict[str, Any], proxy: str) -> None:
    agree(doc, proxy)


def test_limit() -> None:
    # 13 units of relu(0 * x + 0): every one on its kink
    doc = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[1]],
        "layers": [{"type": "dense", "units": DECIDE_KINKS + 1, "activation": "relu"}],
        "params": {"0.weight": [[0]] * (DECIDE_KINKS + 1), "0.bias": [0] * (DECIDE_KINKS + 1)},
    }
    with pytest.raises(Skipped, match=f"{DECIDE_KINKS + 1} kinks > limit {DECIDE_KINKS}"):
        decide(doc, "pytorch")
    assert decide(doc, "pytorch", max_kinks=20).verdict == "non-differentiable"


# -- the exact LP ----------------------------------------------------------------------
def test_phase1_small_systems() -> None:
    # x + y = 2, x - y = 0 -> (1, 1)
    assert phase1([[F(1), F(1)], [F(1), F(-1)]], [F(2), F(0)]) == [F(1), F(1)]
    # x + y = 1, x + y = 2: infeasible
    assert phase1([[F(1), F(1)], [F(1), F(1)]], [F(1), F(2)]) is None
    # -x = 1 with x >= 0: infeasible
    assert phase1([[F(-1)]], [F(1)]) is None


def test_strictly_feasible_cases() -> None:
    e0, e1 = {0: F(1)}, {1: F(1)}
    d = strictly_feasible([e0, e1, {0: F(-1), 1: F(3)}])
    assert d is not None and d.get(0, 0) > 0 and d.get(1, 0) > 0 and 3 * d[1] > d[0]
    assert strictly_feasible([e0, {0: F(-2)}]) is None
    # three rows positively spanning a plane: no direction has all three positive
    rows = [e0, e1, {0: F(-1), 1: F(-1)}]
    assert strictly_feasible(rows) is None
    y = gordan(rows)
    assert y is not None and y[0] == y[1] == y[2] == F(1, 3)
    assert strictly_feasible([]) == {}


@settings(max_examples=60)
@given(
    st.lists(
        st.lists(st.integers(-2, 2), min_size=3, max_size=3).filter(any), min_size=1, max_size=6
    )
)
def test_strictly_feasible_against_a_grid(rows: list[list[int]]) -> None:
    forms = [{j: F(v) for j, v in enumerate(r) if v} for r in rows]
    d = strictly_feasible(forms)
    # an independent (incomplete) search: a direction on a small integer grid
    grid = [(a, b, c) for a in range(-3, 4) for b in range(-3, 4) for c in range(-3, 4)]
    found = any(all(sum(x * y for x, y in zip(r, g)) > 0 for r in rows) for g in grid)
    if found:
        assert d is not None
    if d is None:  # then Gordan multipliers exist (strictly_feasible re-checked them)
        assert gordan(forms) is not None
    else:
        assert all(sum(v * d.get(j, 0) for j, v in f.items()) > 0 for f in forms)


# -- the CLI ---------------------------------------------------------------------------
def test_cli_cross_check_reports_both(capsys: Any) -> None:
    assert main(["check", "f1", "--cross-check", "--json"]) == 0
    cross = json.loads(capsys.readouterr().out)["cross_check"]
    assert cross["agree"] is True and cross["kernel"] == "differentiable, AD incorrect"
    dec = cross["decision"]
    assert dec["verdict"] == "differentiable, AD incorrect" and dec["agree"] is True
    assert dec["kinks"] == 2 and dec["patterns"] == 2 and dec["excluded"] == 2
    assert main(["check", "axis-trap", "--cross-check"]) == 0
    out = capsys.readouterr().out
    assert "kernel decides non-differentiable (engine: non-differentiable): agree" in out


def test_cli_cross_check_skipped(tmp_path: Any, capsys: Any) -> None:
    doc = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[1]],
        "layers": [{"type": "dense", "units": DECIDE_KINKS + 1, "activation": "relu"}],
        "params": {"0.weight": [[0]] * (DECIDE_KINKS + 1), "0.bias": [0] * (DECIDE_KINKS + 1)},
    }
    p = tmp_path / "wide.json"
    p.write_text(json.dumps(doc))
    assert main(["check", str(p), "--cross-check", "--json"]) == 0
    dec = json.loads(capsys.readouterr().out)["cross_check"]["decision"]
    assert dec == {"agree": None, "skipped": f"{DECIDE_KINKS + 1} kinks > limit {DECIDE_KINKS}"}


def test_cli_disagreement_exits_1(monkeypatch: Any, capsys: Any) -> None:
    import formal.cli.check as cli_check

    real = cli_check.decide

    def wrong(doc: Any, proxy: str) -> Any:  # a kernel that reaches another verdict
        d = real(doc, proxy)
        return dataclasses.replace(d, verdict="non-differentiable")

    monkeypatch.setattr(cli_check, "decide", wrong)
    assert main(["check", "f1", "--cross-check"]) == 1
    out = capsys.readouterr().out
    assert "kernel decides non-differentiable (engine: differentiable, AD incorrect): DISAGREE" in (
        out
    )
    assert main(["check", "f1", "--cross-check", "--json"]) == 1
    cross = json.loads(capsys.readouterr().out)["cross_check"]
    assert cross["agree"] is False and cross["verified"] is True
    assert cross["decision"]["agree"] is False


def pairs(k: int) -> dict[str, Any]:
    """f = sum_i relu(w_i x) - relu(-w_i x) at w = 0 (x = 1): 2k kinks, differentiable, and
    AD with ReLU'(0) = 0 is wrong (the bench's "pairs" rows)."""
    return {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[1]],
        "layers": [
            {"type": "dense", "units": 2 * k, "bias": False, "activation": "relu"},
            {"type": "dense", "units": 1, "bias": False},
        ],
        "params": {"0.weight": [[0]] * (2 * k), "1.weight": [[1, -1] * k]},
        "trainable": ["0.weight"],
        "tied": [[f"0.weight[{2 * i},0]", f"-0.weight[{2 * i + 1},0]"] for i in range(k)],
    }


@pytest.mark.parametrize("k", [3, DECIDE_KINKS // 2])
def test_pairs_up_to_the_limit(k: int) -> None:
    d = agree(pairs(k), "pytorch")
    assert d is not None and d.verdict == "differentiable, AD incorrect"
    assert d.kinks == 2 * k and d.patterns == 2**k  # each pair: (+,-) or (-,+)
    assert d.gradient == [{i: F(1) for i in range(k)}] and d.ad == [{}]
    if k == 3:  # the average of D- and D+ is 1/2 - (-1/2) = 1 per pair: AD is right
        assert agree(pairs(k), "lambda=1/2").verdict == "differentiable, AD correct"
