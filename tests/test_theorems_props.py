"""T1, T2, T4 and Lemma Z (docs/theory.md sections 2-3) as properties of random networks.

Networks come from tests/strategies.py with kinks forced.  Under hypothesis H
(B = 1, every kinked unit with its own trainable bias):

- T1: ``in_inc`` is never true, whatever the preset;
- T2: ``in_ndf`` iff some kink neuron has a non-zero adjoint (read from the
  verdict's ``kinks[...].adjoint``), for every preset, and the independent
  oracle agrees on differentiability;
- T4: one-sided proxies give a Bouligand subgradient, proxies between D- and
  D+ a Clarke subgradient (checked against the oracle's piece gradients).

Lemma Z, any network (here bias-free ones, where inc can be non-empty): all
kink adjoints zero => differentiable and AD correct (oracle-confirmed); hence
``ndf ∪ inc`` only contains points with a non-zero kink adjoint.
"""

from __future__ import annotations

from hypothesis import assume, given, settings
from oracle import Oracle, OracleBudget, in_convex_hull
from strategies import KINKED, bias_free_networks, h_networks, networks

from formal.engine.verdict import check
from formal.io.formalnet import from_dict

H_PRESETS = [
    "pytorch",
    "pytorch-2.6",
    "pytorch-2.13",
    "jax",
    "left",
    "right",
    "lambda=1/2",
    "lambda=2",
    "value=3",
]
NO_HARDTANH = [a for a in KINKED if (a if isinstance(a, str) else a["name"]) != "hardtanh"] + [
    "identity"
]


def _nonzero_adjoint(v) -> bool:
    return any(a != 0 for k in v.kinks for a in k.adjoint)


def _decide(o: Oracle, complete: bool = False, budget: int = 600):
    try:
        return o.decide(complete=complete, budget=budget)
    except OracleBudget:
        assume(False)


@settings(max_examples=60)
@given(h_networks(overrides=True))
def test_t1_t2_under_h(doc):
    net = from_dict(doc)
    o = Oracle(doc)
    dec = _decide(o)
    ndf = []
    for preset in H_PRESETS:
        v = check(net, preset)
        assert v.hypothesis_h is True, v.hypothesis_reason
        assert v.in_inc is False  # T1
        assert v.in_ndf is _nonzero_adjoint(v)  # T2
        assert v.method in ("no-kinks", "adjoint-zero", "bias-criterion")
        ndf.append(v.in_ndf)
    assert len(set(ndf)) == 1  # the criterion does not depend on the proxies
    assert ndf[0] is (not dec.differentiable)


@settings(max_examples=25)
@given(h_networks(activations=NO_HARDTANH))
def test_t1_tensorflow_under_h(doc):
    v = check(from_dict(doc), "tensorflow")
    assert v.in_inc is False and v.in_ndf is _nonzero_adjoint(v)


@settings(max_examples=30)
@given(h_networks())
def test_t4_bouligand_and_clarke_under_h(doc):
    """Under H, one-sided proxies: AD is a piece gradient of d -> f'(w; d).

    lambda in [0, 1]: AD is in their hull.
    """
    net = from_dict(doc)
    o = Oracle(doc)
    dec = _decide(o)
    assume(not dec.differentiable)
    full = _decide(o, complete=True, budget=150)
    pieces = [[x for r in L for x in r] for L in full.piece_gradients()]
    for preset in ["left", "right", "pytorch", "jax"]:
        v = check(net, preset)
        ad = [x for r in o.ad(preset)[0] for x in r]
        if _one_sided(o, preset):
            assert v.bouligand is True and v.clarke is True
        if v.bouligand is True:
            assert ad in pieces
    v = check(net, "lambda=1/2")
    assert v.clarke is True
    if len(pieces) <= 24:
        assert in_convex_hull([x for r in o.ad("lambda=1/2")[0] for x in r], pieces)


def _one_sided(o: Oracle, preset: str) -> bool:
    """Is every proxy used at a kink (of a layer that depends on w) D- or D+ there?"""
    for i, _, u, c in o.kink_units():
        act = o.layers[i].act
        if o.depends(i) and o.proxy_at(preset, i, u, c) not in (act.d_minus(c), act.d_plus(c)):
            return False
    return True


@settings(max_examples=60)
@given(bias_free_networks(overrides=True))
def test_lemma_z_bias_free(doc):
    """All kink adjoints zero => differentiable with AD = grad (confirmed by the oracle)."""
    net = from_dict(doc)
    o = Oracle(doc)
    for preset in ["pytorch", "right", "lambda=1/2", "jax"]:
        v = check(net, preset, gradient=True)
        if v.kinks and not _nonzero_adjoint(v):
            dec = _decide(o)
            assert v.differentiable is True and v.ad_correct is True and v.method == "adjoint-zero"
            assert dec.differentiable and dec.gradient == o.ad(preset)[0] == v.gradient
        if v.in_ndf or v.in_inc:
            assert _nonzero_adjoint(v)


@settings(max_examples=40)
@given(networks())
def test_ndf_and_inc_need_a_nonzero_kink_adjoint(doc):
    """ndf ∪ inc ⊆ {some kink node has a non-zero adjoint}, for any network and preset."""
    net = from_dict(doc)
    for preset in ["pytorch", "right", "lambda=1/2"]:
        v = check(net, preset)
        if v.in_ndf or v.in_inc:
            assert _nonzero_adjoint(v)
        if not v.kinks:
            assert v.method == "no-kinks" and v.differentiable and v.ad_correct
