"""Theorem objects.

Hypotheses on networks, their evidence on independent small cases, loud failures.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from formal.core.activations import parse_preset
from formal.core.builders import zero_mlp as mlp
from formal.count.counting import (
    count_exact,
    exhaustive,
    members_scaled,
    t3_bound,
    tightness_density,
)
from formal.engine.batch import dense_chain
from formal.engine.patterns import explain
from formal.examples import load_example
from formal.theorems.catalogue import Recorder, Theorem, catalogue, get, run_all
from formal.theorems.evidence_cases import convex_member
from formal.theorems.openquestion import bias_free_net, zero_input_hook

ROOT = Path(__file__).resolve().parents[1]


def test_catalogue_names_proofs_and_tests():
    names = [t.name for t in catalogue()]
    for want in (
        "Lemma D",
        "Lemma Z",
        "T1",
        "T2",
        "T3",
        "T3 tightness",
        "T4",
        "T4 (B >= 2)",
        "Bias-free bound",
        "E1",
        "Lemma 2",
        "Lemma 3",
        "Lemma 7",
        "f1-f3",
        "T5",
        "Open question",
    ):
        assert want in names
    for t in catalogue():
        proof = ROOT / t.proof
        assert proof.is_file(), t.proof
        text = proof.read_text()
        assert "**Check.**" in text and t.test in text, (
            t.proof
        )  # each proof names its check and its test
        assert t.statement and t.hypotheses


def test_hypotheses_are_checked_on_networks():
    assert get("T1").applies(load_example("tiny-mlp"))[0] is True
    ok, why = get("T1").applies(load_example("e1"))
    assert ok is False and "bias" in why
    assert get("T1").applies(load_example("lemma3"))[0] is False  # B = 2
    assert get("T4").applies(load_example("lemma3"))[0] is False  # the proved part needs H
    assert get("T4 (B >= 2)").applies(load_example("lemma3"))[0] is True  # distinct biases
    assert get("Bias-free bound").applies(load_example("e1"))[0] is True
    assert get("Bias-free bound").applies(load_example("lemma2"))[0] is False  # tied
    assert get("Lemma Z").applies(load_example("lemma2"))[0] is True


def test_failed_evidence_is_a_failed_check():
    def bad(rec: Recorder, budget: str) -> None:
        rec.expect(1 + 1 == 3, "arithmetic")

    def crash(rec: Recorder, budget: str) -> None:
        raise RuntimeError("boom")

    def empty(rec: Recorder, budget: str) -> None:
        pass

    for fn in (bad, crash, empty):
        res = Theorem("X", "x", "s", "h", "p", "t", fn).check("quick")
        assert res.status == "fail" and not res.passed
        assert any(not e.ok for e in res.evidence)
    with pytest.raises(ValueError):
        Theorem("X", "x", "s", "h", "p", "t", bad).check("medium")


def test_run_all_only_selects():
    res = run_all("quick", only=["Lemma 2", "f1"])
    assert [r.name for r in res] == ["Lemma 2", "f1-f3"] and all(r.passed for r in res)


def test_lemma_d():
    """The axis trap: linear on both axes, yet not differentiable; both deciders agree."""
    from formal.engine.forward import exact_forward
    from formal.engine.verdict import check, directional

    net = load_example("axis-trap")
    fwd = exact_forward(net, parse_preset("pytorch"))
    d = directional(
        fwd,
        [
            {0: Fraction(1)},
            {0: Fraction(-1)},
            {1: Fraction(1)},
            {1: Fraction(-1)},
            {0: Fraction(1), 1: Fraction(-1)},
        ],
    )
    assert [row[0] for row in d] == [0, 0, 0, 0, -2]
    chain = dense_chain(net)
    assert chain is not None
    rep = explain(chain, np.array([0, 0]), 1, [parse_preset("pytorch")])
    assert not rep.differentiable and check(net).in_ndf is True
    res = get("Lemma D").check("quick")
    assert res.passed and "f'(e1 - e2) = -2" in res.evidence[0].text


def test_lemma_z():
    res = get("Lemma Z").check("quick")
    assert res.passed
    import re

    m = re.search(r"(\d+) kink points", res.evidence[-1].text)
    assert m is not None
    n = int(m.group(1))
    assert n >= 10


def test_t1_t2_t3():
    """Independent small case: 2-1-1 HardTanh with biases, B = 1, over fp(2,2)^5."""
    net = mlp("fp(2,2)", [["1", "-3/2"]], [1], "hardtanh", out_bias=True)
    presets = ("pytorch", "left", "right", "lambda=1/3", "value=-5")
    ex = exhaustive(net, presets, cross_check=6)
    assert all(v == 0 for v in ex.inc.values())  # T1
    bound = t3_bound(net)
    assert bound is not None
    assert 0 < Fraction(ex.ndf, ex.omega) <= bound == Fraction(2, 23)  # T3
    from formal.engine.patterns import t2_criterion

    vals, q = members_scaled(net.numbers)
    rng = np.random.default_rng(0)
    w = vals[rng.integers(0, len(vals), size=(4000, net.param_count()))]
    # bias = kink - w x for half the points, so that kinks are frequent
    chain = dense_chain(net)
    assert chain is not None
    from formal.engine.patterns import decide

    bv = decide(chain, w, q, [parse_preset("pytorch")])
    assert np.array_equal(t2_criterion(chain, w, q), bv.ndf)  # T2


def test_tightness():
    for N in (1, 2):
        res = count_exact(mlp("fp(2,2)", [["0"]], [N], "relu"), cross_check=2) if N == 1 else None
        if res is not None:
            assert res.density_ndf == tightness_density(23, [(N, 1)])
    # formula vs bound: first-order agreement
    for M in (55, 253, 63487):
        for N in (1, 10, 100):
            f = tightness_density(M, [(N, 1)])
            assert f <= Fraction(N, M) and Fraction(N, M) - f <= Fraction(N, M) ** 2


def test_t4():
    net = mlp("fp(2,2)", [["1"]], [2], "relu")
    labels = net.parameterization().labels
    vals, q = members_scaled(net.numbers)
    # both hidden units on the kink: b_i = -w_i
    w = {
        "0.weight[0,0]": 3 * q // 2,
        "0.weight[1,0]": -q,
        "0.bias[0]": -3 * q // 2,
        "0.bias[1]": q,
        "1.weight[0,0]": 2 * q,
        "1.weight[0,1]": -q // 4,
    }
    row = np.array([w[lab] for lab in labels], dtype=np.int64)
    presets = [parse_preset(p) for p in ("pytorch", "left", "right", "lambda=1/2")]
    chain = dense_chain(net)
    assert chain is not None
    rep = explain(chain, row, q, presets)
    assert len(rep.kinks) == 2 and len(rep.feasible) == 4 and not rep.differentiable
    for p in ("pytorch", "left", "right"):
        assert rep.ad[p] in set(rep.bouligand)
    assert rep.ad["lambda=1/2"] not in set(rep.bouligand)
    assert convex_member(rep.bouligand, rep.ad["lambda=1/2"])
    bogus = ((Fraction(10**6),) * len(labels),)
    assert not convex_member(rep.bouligand, bogus)


def test_bias_free_bound():
    net = bias_free_net("fp(2,1)", "0", (1, 1), "relu", "identity")
    ex = exhaustive(net, ("pytorch", "right"), hooks=[zero_input_hook], cross_check=2)
    M, W = 11, net.param_count()
    assert ex.extra["zero_inputs[0,0]"] == M**W  # input 0: the first layer's inputs are always zero
    bound = 2 * M ** (W - 1) + ex.extra["zero_inputs[0,0]"] + ex.extra["zero_inputs[1,0]"]
    assert ex.ndf + max(ex.inc.values()) <= bound


def test_named_cases():
    res = run_all("quick", only=["E1", "Lemma 3", "Lemma 7"])
    assert [r.status for r in res] == ["pass", "pass", "pass"]
    assert any("-p^2" in e.text for e in res[0].evidence)


def test_t5():
    for act, preset, zero in (
        ("relu", "pytorch", True),
        ("relu6", "pytorch", True),
        ("hardsigmoid", "pytorch", True),
        ("relu", "right", False),
    ):
        total = 0
        for arch in ((1,), (1, 1), (2,)):
            net = bias_free_net("fp(2,1)", "1", arch, act, act)
            total += exhaustive(net, (preset,), cross_check=1).inc[preset]
        assert (total == 0) is zero, (act, preset, total)


def test_t4_b2_is_cited_not_passed():
    """T4 for B >= 2 rests on a published proof: status cited, not pass, unless evidence fails."""
    (res,) = run_all("quick", only=["T4 (B"])
    assert res.status == "cited" and not res.passed and not res.failed
    assert any("ICLR 2024" in e.text for e in res.evidence)

    def bad(rec: Recorder, budget: str) -> None:
        rec.expect(False, "sample disagrees")

    assert Theorem("X", "x", "s", "h", "p", "t", bad, cited="paper").check().status == "fail"


def test_t5_frozen_bias_is_no_anchor():
    """A frozen bias at a non-zero kink: AD wrong at a differentiable point, T5 does not apply."""
    from formal.engine.verdict import check
    from formal.theorems.evidence_nets import FROZEN_CASES, frozen_bias_net

    t5 = get("T5")
    for acts, b1, b2 in FROZEN_CASES:
        net = frozen_bias_net(acts, b1, b2, frozen=True)
        v = check(net, "lambda=1/2", gradient=True)
        assert v.differentiable is True and v.in_inc is True  # AD != gradient
        assert v.gradient is not None and v.ad_gradient is not None
        assert v.gradient[0][0] == 0 and v.ad_gradient[0][0] != 0
        ok, why = t5.applies(net)
        assert ok is False and "frozen" in why
        ok, _ = t5.applies(frozen_bias_net(acts, b1, b2, frozen=False))
        assert ok is True
    # relu6 with a bias frozen at its kink 6: only part (ii) (zero-side proxies)
    net = frozen_bias_net(("relu6", "relu6"), None, 6, frozen=True)
    ok, why = t5.applies(net)
    assert ok is True and "part (ii) only" in why
    assert check(net, "pytorch").in_inc is False and check(net, "lambda=1/2").in_inc is True


def test_lemma7_runs_the_network():
    """Lemma 7 is decided by formal.check on a conv + shared bias + max-pool network."""
    from formal.engine.verdict import check
    from formal.theorems.evidence_nets import LEMMA7_RULES, lemma7_net

    net = lemma7_net()
    assert {n.op for n in net.nodes} >= {"conv2d", "maxpool2d"}
    for _label, preset, tie, ad in LEMMA7_RULES:
        v = check(lemma7_net(tie=tie), preset, gradient=True)
        assert v.differentiable is True and v.gradient == ((1, 0),)
        got = v.ad_gradient[0] if v.ad_gradient is not None else (1, 0)
        assert tuple(got) == ad
    (res,) = run_all("quick", only=["Lemma 7"])
    assert res.passed and sum("formal.check" in e.text for e in res.evidence) >= 5


def test_tightness_evidence_names_independent_sources():
    (res,) = run_all("quick", only=["T3 tightness"])
    assert res.passed
    texts = [e.text for e in res.evidence]
    assert any(t.startswith("exhaustive engine verdicts") for t in texts)
    sampled = [t for t in texts if t.startswith("sampled engine verdicts")]
    assert {"binary16", "bfloat16", "binary32"} <= {t.split()[3] for t in sampled}
    assert all("0 strata differ" in t for t in sampled)
