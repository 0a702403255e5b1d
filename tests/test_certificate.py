"""formal-cert/1 certificates: every named example and random networks with forced kinks
round-trip through ``build_certificate`` (``formal check --certify``) and the kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import image_networks, networks

from formal.cli.main import main
from formal.engine.certificate import build_certificate, load_document
from formal.engine.verdict import check
from formal.examples import example_path, load_example
from formal.io.formalnet import from_dict
from formal.verify.kernel import Rejected, verify

NAMED = ["e1", "lemma2", "lemma3", "f1", "f2", "f3", "axis-trap", "rounding-trap", "tiny-mlp"]
KERNEL_SAYS = {
    (True, True): "differentiable, AD correct",
    (True, False): "differentiable, AD incorrect",
    (False, False): "non-differentiable",
}


def round_trip(doc: dict[str, Any], proxy: str) -> tuple[Any, dict[str, Any]]:
    """Verdict, certificate (built from the JSON text of doc); the kernel must verify it."""
    doc = load_document(json.dumps(doc))
    net = from_dict(doc)
    v = check(net, proxy)
    cert = build_certificate(net, doc, v, proxy)
    if v.differentiable is not None and cert["verdict"] != "too-large":
        res = verify(json.loads(json.dumps(cert), parse_float=str))
        assert res.verdict == KERNEL_SAYS[(bool(v.differentiable), bool(v.ad_correct))]
    return v, cert


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("proxy", ["pytorch", "jax", "right"])
def test_named_examples_verify(name: str, proxy: str) -> None:
    doc = load_document(example_path(name).read_text())
    v, cert = round_trip(doc, proxy)
    assert cert["verdict"] != "too-large"
    assert cert["network"] == doc
    if v.differentiable:
        assert cert["gradient"] and cert["patterns"]
        for ex in cert["excluded"]:
            assert ex["multipliers"] and all(
                "/" in m["y"] or m["y"].isdigit() for m in ex["multipliers"]
            )
    else:
        assert set(cert["nonadditive"]) >= {"d1", "d2", "df_d1", "df_d2", "df_d1_plus_d2"}


def test_certificate_contents_lemma2() -> None:
    net = load_example("lemma2")
    cert = build_certificate(
        net, load_document(example_path("lemma2").read_text()), check(net), "pytorch"
    )
    # f(w) = relu(w) - relu(-w) = w: two realizable patterns (+,-), (-,+), two excluded
    assert sorted(p["signs"] for p in cert["patterns"]) == [[-1, 1], [1, -1]]
    assert sorted(e["prefix"] for e in cert["excluded"]) == [[-1, -1], [1, 1]]
    assert cert["gradient"] == [["1"]] and cert["ad"] == [["0"]]


# a constant relu kink (no trainable parameter upstream) in a net with a curved hardswish
# kink: its zero row must not make the kernel reject the Bouligand direction
_CONSTANT_KINK = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "inputs": [["0"]],
    "layers": [
        {"type": "dense", "units": 2, "bias": False, "activation": "relu"},
        {"type": "dense", "units": 2, "bias": False, "activation": "relu"},
        {"type": "dense", "units": 1, "bias": True, "activation": "hardswish"},
    ],
    "params": {
        "0.weight": [["0"], ["0"]],
        "1.weight": [["0", "0"], ["0", "0"]],
        "2.weight": [["0", "0"]],
        "2.bias": ["-3"],
    },
    "trainable": ["2.weight", "2.bias"],
    "tied": [["2.weight[0,0]", "2.weight[0,1]"]],
}


@settings(max_examples=25)
@given(networks(max_layers=3, max_width=3, force=True), st.sampled_from(["pytorch", "jax"]))
@example(_CONSTANT_KINK, "pytorch")
def test_random_networks_round_trip(doc: dict[str, Any], proxy: str) -> None:
    round_trip(doc, proxy)


@settings(max_examples=10)
@given(image_networks())
def test_random_image_networks_round_trip(doc: dict[str, Any]) -> None:
    round_trip(doc, "pytorch")


def test_too_large(monkeypatch: Any) -> None:
    net = load_example("lemma2")
    doc = load_document(example_path("lemma2").read_text())
    cert = build_certificate(net, doc, check(net), "pytorch", limit=1)
    assert cert["verdict"] == "too-large" and cert["patterns_at_least"] == 2
    assert cert["limit"] == 1 and "patterns" not in cert
    with pytest.raises(Rejected, match="too large to certify"):
        verify(cert)


def test_cli_certify_and_cross_check(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "cert.json"
    assert main(["check", "axis-trap", "--certify", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "differentiable" in text
    cert = json.loads(out.read_text())
    assert cert["format"] == "formal-cert/1" and cert["verdict"] == "non-differentiable"
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith("verified: non-differentiable")
    assert main(["check", "f1", "--cross-check", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    cross = obj["cross_check"]
    assert cross["agree"] is True and cross["kernel"] == "differentiable, AD incorrect"
    assert cross["decision"]["verdict"] == "differentiable, AD incorrect"
    assert main(["check", "e1", "--cross-check"]) == 0
    assert "cross-check  kernel says differentiable, AD correct: agrees" in (
        capsys.readouterr().out
    )


def dense_document(net: Any) -> dict[str, Any] | None:
    """formal-net/1 form of a loaded dense chain (linear/matmul [+ bias] [+ act]); else None."""
    from formal.core.numbers import format_exact

    def text(q: Any, transpose: bool = False) -> Any:
        arr = q.to_fractions()
        if transpose:
            arr = arr.T
        return (
            [[format_exact(v) for v in row] for row in arr]
            if arr.ndim == 2
            else [format_exact(v) for v in arr]
        )

    nodes = [n for n in net.nodes if n.op not in ("input", "param")]
    layers: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    names: dict[str, str] = {}
    i = 0
    while i < len(nodes):
        n = nodes[i]
        if n.op not in ("linear", "matmul"):
            return None
        pname = n.inputs[1][2:]
        w = net.params[pname]
        k = len(layers)
        params[f"{k}.weight"] = text(w, transpose=n.op == "matmul")
        names[pname] = f"{k}.weight"
        layer: dict[str, Any] = {"type": "dense", "units": n.shape[0], "bias": False}
        i += 1
        if i < len(nodes) and nodes[i].op == "add" and nodes[i].inputs[1].startswith("p:"):
            bname = nodes[i].inputs[1][2:]
            params[f"{k}.bias"] = text(net.params[bname])
            names[bname] = f"{k}.bias"
            layer["bias"] = True
            i += 1
        if i < len(nodes) and nodes[i].op == "act":
            layer["activation"] = nodes[i].attr("activation").name
            i += 1
        layers.append(layer)
    return {
        "format": "formal-net/1",
        "numbers": net.numbers.name,
        "inputs": text(net.inputs),
        "layers": layers,
        "params": params,
        "trainable": [names[t] for t in net.trainable],
    }


@pytest.mark.parametrize("name", ["test_nano", "test_tiny", "test_small"])
def test_corpus_nets_with_forced_kinks_verify(corpus: Path, name: str) -> None:
    import numpy as np
    from kinkhit import hit_kinks

    from formal.io.onnx import load

    path = corpus / "vnncomp2021" / "test" / f"{name}.onnx"
    net = load(path, input=np.ones(1, np.float32)) if name == "test_nano" else load(path)
    if name == "test_nano":  # f(w) = relu(w x) at w = 0
        from kinkhit import with_values

        from formal.core.qarray import QArray

        w = net.params["Ma_MatMulcst"]
        moved = with_values(net, {"Ma_MatMulcst": QArray.zeros(w.shape)})
    else:
        moved, _ = hit_kinks(net)  # test_tiny already sits on its kink at x = 0
    doc = dense_document(moved)
    assert doc is not None
    v, cert = round_trip(doc, "pytorch")
    assert v.kink_neurons >= 1 and cert["verdict"] == "non-differentiable"
