"""``formal check --subgradient``: a certified generalized gradient at every point.

Every returned vector is checked three ways:

- by the independent kernel (``formal verify`` on the certificate with the
  ``subgradient`` claim: its own polynomial evaluation along the direction, its
  own side-fixed AD);
- where f is differentiable, against the engine's exact gradient;
- by sampling, independently of the kink machinery: at points
  ``w + t d + t^2 p`` (d the certified direction, p a fixed small perturbation,
  t = 2^-12, 2^-13, ..., or smaller when needed) ``formal.check`` says f is
  differentiable and gives its exact gradient (mostly AD at a point without kink
  nodes; a kink whose unit stays on it there has adjoint or row 0).  On the open region the
  points lie in, the gradient is a polynomial in the parameters, so along the
  curve a polynomial in t; its value at t = 0 (exact Lagrange extrapolation from
  the samples, required to agree when one sample is dropped, else t is made
  smaller: samples straddling two regions do not agree) is the limit of
  gradients at differentiable points tending to w: an element of the Bouligand
  subdifferential, which must equal the returned vector.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from catalogue import CUSP_DOC, LEMMA7_DOC
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import PL_KINKED, image_networks, networks

from formal.cli.main import main
from formal.core.activations import parse_preset
from formal.core.network import Network
from formal.core.rebuild import group_values, with_groups
from formal.engine.certificate import load_document
from formal.engine.forward import forward, gradient_ad
from formal.engine.subgradient import Subgradient, attach, certificate, subgradient
from formal.engine.verdict import check
from formal.errors import InvalidArgument, UnsupportedOp
from formal.examples import example_path, load_example
from formal.io.formalnet import from_dict
from formal.verify.kernel import Rejected, verify

EXAMPLES = ("e1", "lemma2", "lemma3", "f1", "f2", "f3", "axis-trap", "tiny-mlp")
PRESETS = ("pytorch", "jax", "right")
Rows = tuple[tuple[Fraction, ...], ...]


def _doc(d: dict[str, Any]) -> dict[str, Any]:
    return load_document(json.dumps(d))


def kernel_checks(
    net: Network, doc: dict[str, Any], sg: Subgradient, proxy: str, curved: bool = False
) -> str:
    """The certificate with the claim, through JSON text, verified by the kernel.

    ``curved`` (hardswish): the verdict's own Bouligand direction is left out, as the
    kernel's check of it refuses every zero row in networks with curved pieces (even
    of kinks that do not depend on a trainable parameter); the subgradient claim is
    checked in full.
    """
    cert = json.loads(json.dumps(certificate(net, doc, sg, proxy)), parse_float=str)
    if curved:
        cert.pop("bouligand", None)
    res = verify(cert)
    assert "subgradient verified" in res.summary, res.summary
    return res.summary


def _lagrange_at_zero(ts: list[Fraction], ys: list[Fraction]) -> Fraction:
    total = Fraction(0)
    for i, (ti, yi) in enumerate(zip(ts, ys)):
        w = Fraction(1)
        for j, tj in enumerate(ts):
            if j != i:
                w *= -tj / (ti - tj)
        total += yi * w
    return total


def _samples(
    net: Network, proxy: str, d: dict[int, Fraction], p: dict[int, Fraction], ts: list[Fraction]
) -> list[Rows] | None:
    """Exact gradients at w + t d + t^2 p (None when some sample is not differentiable)."""
    base = group_values(net)
    grads: list[Rows] = []
    for t in ts:
        vals = {g: base[g] + t * d.get(g, Fraction(0)) + t * t * p[g] for g in base}
        v = check(with_groups(net, vals, check=False), proxy, gradient=True)
        if not v.differentiable or v.gradient is None:
            return None
        grads.append(v.gradient)
    return grads


def sampled_limit(net: Network, proxy: str, sg: Subgradient, degree: int) -> Rows:
    """lim grad f(w + t d + t^2 p), t -> 0+, from exact gradients at smooth sample points.

    The samples start at t = 2^-12; when they are not on one polynomial (they
    straddle two regions: t not yet small enough) smaller t are tried.
    """
    par = net.parameterization()
    index = {lab: j for j, lab in enumerate(par.labels)}
    d = {index[lab]: v for lab, v in sg.direction}
    n = 2 * degree + 2  # points for a polynomial of degree 2 * degree in t, plus one
    for seed in range(4):
        rng = random.Random(seed)
        p = {g: Fraction(rng.randint(-8, 8), 8) for g in range(par.size)}
        for start in (12, 40, 120):
            ts = [Fraction(1, 2 ** (start + i)) for i in range(n)]
            grads = _samples(net, proxy, d, p, ts)
            if grads is None:
                break  # a sample still on a kink: another perturbation
            rows, cols = len(grads[0]), len(grads[0][0])
            limit = [
                [_lagrange_at_zero(ts, [g[o][j] for g in grads]) for j in range(cols)]
                for o in range(rows)
            ]
            again = [
                [_lagrange_at_zero(ts[:-1], [g[o][j] for g in grads[:-1]]) for j in range(cols)]
                for o in range(rows)
            ]
            if limit == again:  # one polynomial through all samples
                return tuple(tuple(row) for row in limit)
    raise AssertionError("no perturbation and scale gave samples on one region")


def _depth(net: Network) -> int:
    return sum(1 for n in net.nodes if n.op == "param" and n.attr("name") in net.trainable)


def full_check(net: Network, doc: dict[str, Any], proxy: str, prefer: str, sample: bool) -> None:
    """Every property of the returned vector (module docstring)."""
    sg = subgradient(net, proxy, prefer=prefer)  # type: ignore[arg-type]
    v = sg.verdict
    assert sg.certified, sg.reason
    kernel_checks(net, doc, sg, proxy, curved="hardswish" in json.dumps(doc))
    assert sg.vector is not None
    ad = tuple(
        tuple(Fraction(x) for x in row)
        for row in gradient_ad(forward(net, parse_preset(proxy), use_filter=False)).to_fractions()
    )
    diffs = {(d.output, d.param): (d.ad, d.value) for d in sg.differs_from_ad}
    outs, labels = net.output_labels(), net.parameterization().labels
    for o, row in enumerate(sg.vector):
        for j, x in enumerate(row):
            key = (outs[o], labels[j])
            assert (key in diffs) == (x != ad[o][j])
            if key in diffs:
                assert diffs[key] == (ad[o][j], x)
    assert sg.ad_is_element == (not diffs)
    if v.differentiable:
        assert sg.kind == "gradient"
        assert sg.vector == check(net, proxy, gradient=True).gradient
    elif v.differentiable is False:
        assert sg.kind == "bouligand"
    if v.bouligand and prefer == "ad":  # AD certified a Bouligand element: it comes back
        assert sg.ad_is_element
    if sample:
        assert sampled_limit(net, proxy, sg, max(_depth(net), 1) + 1) == sg.vector


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("proxy", PRESETS)
@pytest.mark.parametrize("prefer", ("ad", "any"))
def test_named_examples(name: str, proxy: str, prefer: str) -> None:
    net = load_example(name)
    doc = load_document(example_path(name).read_text())
    full_check(net, doc, proxy, prefer, sample=prefer == "ad")


def test_e1_worked_example() -> None:
    """E1 with relu'(0) = 1: f = 0 near w, AD says df/dw1 = -1; the answer is (0, 0)."""
    sg = subgradient(load_example("e1"), "right")
    assert sg.kind == "gradient" and sg.vector == ((Fraction(0), Fraction(0)),)
    assert [(d.param, d.ad, d.value) for d in sg.differs_from_ad] == [
        ("0.weight[0,0]", Fraction(-1), Fraction(0))
    ]
    assert [s.side for s in sg.sides] == [1, -1]  # w1 up: unit 1 moves onto its D- side
    assert sg.direction == (("0.weight[0,0]", Fraction(1)),)


def test_lemma2_and_axis_trap_values() -> None:
    sg = subgradient(load_example("lemma2"), "pytorch")  # f = u: gradient 1, AD 0
    assert sg.kind == "gradient" and sg.vector == ((Fraction(1),),)
    assert not sg.ad_is_element
    sg = subgradient(load_example("axis-trap"), "pytorch", prefer="ad")
    assert sg.kind == "bouligand" and sg.ad_is_element  # AD's (0, 0) is the limit on d = (1, 1)
    assert sg.vector == ((Fraction(0), Fraction(0)),)


@pytest.mark.parametrize("proxy", ("pytorch", "pytorch,tie=last", "jax"))
def test_maxpool_ties(proxy: str) -> None:
    doc = _doc(LEMMA7_DOC)
    net = from_dict(doc)
    full_check(net, doc, proxy, "ad", sample=True)
    assert subgradient(net, proxy).vector == ((Fraction(1), Fraction(0)),)  # f = u


def test_cusp_is_ad_only_along_a_curve() -> None:
    """The cusp: AD = e_y is a Bouligand element only along w + (t, t^2, 0, 0, -2t, 0), not on
    a ray.  The engine returns the gradient 0 (first order); the kernel accepts AD's sides on
    the two-direction curve and rejects them on the ray alone."""
    doc = _doc(CUSP_DOC)
    net = from_dict(doc)
    full_check(net, doc, "pytorch", "ad", sample=True)
    sg = subgradient(net, "pytorch")
    assert sg.kind == "gradient" and all(x == 0 for x in sg.vector[0])  # type: ignore[index]
    cert = certificate(net, doc, sg, "pytorch")
    claim = {
        "kind": "bouligand",
        "directions": [{"0.weight[0,0]": "1", "1.weight[1,0]": "-2"}, {"0.weight[1,0]": "1"}],
        "sides": [1, -1],
        "vector": [["0", "1", "0", "0", "0", "0"]],
    }
    res = verify({**cert, "subgradient": claim})
    assert "a Bouligand element (2 kink(s) resolved along 2 directions" in res.summary
    with pytest.raises(Rejected, match="stays on its kink along the curve"):
        verify({**cert, "subgradient": {**claim, "directions": claim["directions"][:1]}})
    with pytest.raises(Rejected, match=r"subgradient.sides: kink 1.act\[s0,u1\] is claimed on"):
        verify({**cert, "subgradient": {**claim, "sides": [1, 1]}})


def test_tampered_claims_are_rejected() -> None:
    net = load_example("axis-trap")
    doc = load_document(example_path("axis-trap").read_text())
    cert = certificate(net, doc, subgradient(net, "pytorch"), "pytorch")
    verify(cert)
    bad = copy.deepcopy(cert)
    bad["subgradient"]["vector"][0][1] = "1"
    with pytest.raises(Rejected, match=r"subgradient.vector: entry out\[0,0\] / 0.weight\[1,0\]"):
        verify(bad)
    bad = copy.deepcopy(cert)
    bad["subgradient"]["sides"][0] = -1
    with pytest.raises(Rejected, match="claimed on side -1, the curve puts it on side 1"):
        verify(bad)
    bad = copy.deepcopy(cert)
    bad["subgradient"]["directions"] = [{"0.weight[0,0]": "1", "0.weight[1,0]": "-1"}]
    with pytest.raises(Rejected, match="stays on its kink"):  # |w1 + w2| stays at 0
        verify(bad)
    bad = copy.deepcopy(cert)
    bad["subgradient"]["kind"] = "gradient"  # f is not differentiable: no verified gradient
    with pytest.raises(Rejected, match="needs a verified differentiable verdict"):
        verify(bad)
    # E1: the kink with row 0 must be claimed 0; a gradient claim needs the gradient
    net = load_example("e1")
    doc = load_document(example_path("e1").read_text())
    cert = certificate(net, doc, subgradient(net, "pytorch"), "pytorch")
    assert cert["subgradient"]["sides"] == [-1, 0]
    verify(cert)
    bad = copy.deepcopy(cert)
    bad["subgradient"]["sides"][1] = 1
    with pytest.raises(Rejected, match=r"has row 0 \(side 0\), claimed 1"):
        verify(bad)


def test_subgradient_only_certificate() -> None:
    """Without a certifiable verdict the certificate claims only the element."""
    net = load_example("tiny-mlp")
    doc = load_document(example_path("tiny-mlp").read_text())
    sg = subgradient(net, "pytorch")
    cert = attach(None, net, sg, "pytorch", doc)
    assert cert["verdict"] == "subgradient" and cert["subgradient"]["kind"] == "bouligand"
    res = verify(json.loads(json.dumps(cert)))
    assert res.verdict == "subgradient" and "a Bouligand element" in res.summary
    with pytest.raises(InvalidArgument, match="no formal-net/1 document"):
        attach(None, net, sg, "pytorch")
    # an undecided verdict (forced here): still an element, claimed as bouligand only
    net = load_example("lemma2")
    doc = load_document(example_path("lemma2").read_text())
    v = check(net, "pytorch")
    undecided = replace(v, differentiable=None, ad_correct=None, in_ndf=None, in_inc=None)
    sg = subgradient(net, "pytorch", verdict=undecided)
    assert sg.kind == "bouligand" and sg.vector == ((Fraction(1),),)
    cert = certificate(net, doc, sg, "pytorch")
    assert cert["verdict"] == "subgradient"
    assert verify(cert).verdict == "subgradient"


@settings(max_examples=25)
@given(
    networks(max_layers=3, max_width=3, force=True, activations=PL_KINKED + ["identity"]),
    st.sampled_from(["pytorch", "jax", "right"]),
    st.sampled_from(["ad", "any"]),
)
def test_random_networks(doc: dict[str, Any], proxy: str, prefer: str) -> None:
    doc = _doc(doc)
    net = from_dict(doc)
    full_check(net, doc, proxy, prefer, sample=True)


@settings(max_examples=15)
@given(networks(max_layers=2, max_width=3, force=True), st.sampled_from(["pytorch", "jax"]))
def test_random_networks_any_activation(doc: dict[str, Any], proxy: str) -> None:
    """With hardswish (curved pieces) too: kernel-verified, the gradient where differentiable."""
    doc = _doc(doc)
    net = from_dict(doc)
    try:
        full_check(net, doc, proxy, "ad", sample=False)
    except (UnsupportedOp, InvalidArgument) as exc:  # the kernel's scope
        assert "cannot verify" in str(exc)


@settings(max_examples=10)
@given(image_networks())
def test_random_image_networks(doc: dict[str, Any]) -> None:
    doc = _doc(doc)
    net = from_dict(doc)
    full_check(net, doc, "pytorch", "ad", sample=False)


def test_cli_json_text_and_certificate(tmp_path: Path, capsys: Any) -> None:
    assert main(["check", "e1", "--proxy", "right", "--subgradient", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)["subgradient"]
    assert obj["kind"] == "gradient" and obj["vector"] == [["0", "0"]]
    assert obj["differs_from_ad"] == [
        {
            "output": "out[0,0]",
            "param": "0.weight[0,0]",
            "ad": "-1",
            "subgradient": "0",
            "difference": "1",
        }
    ]
    assert obj["direction"] == {"0.weight[0,0]": "1"} and obj["ad_is_element"] is False
    assert main(["check", "axis-trap", "--subgradient", "--prefer", "any"]) == 0
    text = capsys.readouterr().out
    assert "subgradient  bouligand (prefer any)" in text
    out = tmp_path / "cert.json"
    assert main(["check", "lemma2", "--subgradient", "--certify", "-o", str(out)]) == 0
    assert "vector of out[0,0]: 0.weight[0,0]=1" in capsys.readouterr().out
    assert json.loads(out.read_text())["subgradient"]["vector"] == [["1"]]
    assert main(["verify", str(out)]) == 0
    assert "subgradient verified: the gradient" in capsys.readouterr().out


def test_api() -> None:
    import formal

    sg = formal.subgradient("lemma3", proxy="pytorch")
    assert sg.kind == "gradient" and sg.vector == ((Fraction(1, 6),),)
    assert sg.to_json()["vector"] == [["1/6"]]
    with pytest.raises(InvalidArgument, match="prefer"):
        formal.subgradient("e1", prefer="best")  # type: ignore[arg-type]


def test_bench_network_has_the_kinks_it_names() -> None:
    """The bench rows' networks: exactly the forced kinks, in sample 0 only."""
    from formal.bench.subgradient import kinked_batch_mlp

    net = from_dict(_doc(kinked_batch_mlp(10, 3)))
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    assert len(fwd.kinks) == 10 and {k.sample for k in fwd.kinks} == {0}
