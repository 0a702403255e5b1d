"""Network -> formal-net/1 export (formal/io/formalnet_write.py) and certificates of real nets.

The exporter must give back the same exact function: load -> export -> load has the
same exact forward values (and the same verdict, proxies and ties included) on the
named examples, random dense and image networks, and the corpus nets it can express.
Then ``formal check MODEL.onnx --certify`` works, and certificates of the corpus nets
with forced kinks (tests/kinkhit.py, as in tests/test_corpus.py) verify with the
independent kernel, while a tampered one is rejected.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kinkhit import hit_kinks
from strategies import image_networks, networks

from formal.cli.main import main
from formal.core.activations import parse_preset
from formal.core.network import Network
from formal.engine.certificate import build_certificate, load_document
from formal.engine.forward import exact_forward, output_value
from formal.engine.verdict import check
from formal.errors import UnsupportedOp
from formal.examples import example_names, load_example
from formal.io.formalnet import from_dict
from formal.io.formalnet_write import to_formalnet
from formal.io.onnx import load
from formal.verify.kernel import Rejected, verify

V = "vnncomp2021"
WORDS = {
    (True, True): "differentiable, AD correct",
    (True, False): "differentiable, AD incorrect",
    (False, False): "non-differentiable",
}


def exported(net: Network) -> tuple[dict[str, Any], Network]:
    """The exported document (through its JSON text) and the network loaded from it."""
    doc = load_document(json.dumps(to_formalnet(net)))
    return doc, from_dict(doc)


def outputs(net: Network) -> list[Any]:
    return output_value(exact_forward(net, parse_preset("pytorch"))).to_fractions().tolist()


def same_function(a: Network, b: Network) -> None:
    assert outputs(a) == outputs(b)
    assert a.param_count() == b.param_count() and a.batch == b.batch
    assert a.output_labels() == b.output_labels()


@pytest.mark.parametrize("name", example_names())
def test_named_examples_round_trip(name: str) -> None:
    net = load_example(name)
    doc, back = exported(net)
    same_function(net, back)
    assert to_formalnet(back) == doc  # a fixed point after one export


def verdict_words(net: Network, proxy: str) -> str:
    v = check(net, proxy)
    return (
        "unknown"
        if v.differentiable is None
        else WORDS[(bool(v.differentiable), bool(v.ad_correct))]
    )


@settings(max_examples=25)
@given(
    networks(max_layers=3, max_width=3, force=True, overrides=True),
    st.sampled_from(["pytorch", "jax"]),
)
def test_random_networks_round_trip(doc: dict[str, Any], proxy: str) -> None:
    net = from_dict(load_document(json.dumps(doc)))
    _, back = exported(net)
    same_function(net, back)
    assert verdict_words(net, proxy) == verdict_words(back, proxy)  # proxies and ties kept


@settings(max_examples=10)
@given(image_networks())
def test_random_image_networks_round_trip(doc: dict[str, Any]) -> None:
    net = from_dict(load_document(json.dumps(doc)))
    _, back = exported(net)
    same_function(net, back)
    assert verdict_words(net, "pytorch") == verdict_words(back, "pytorch")


def convnet(corpus: Path, name: str = "Convnet_maxpool") -> Network:
    return load(
        corpus / V / "verivital" / f"{name}.onnx",
        spec=corpus / V / "verivital" / "specs" / "prop_0_0.004.vnnlib",
    )


def resnet(corpus: Path, tmp_path: Path) -> Network:
    image = tmp_path / "image.npy"  # the fixed image of tests/test_corpus.py
    np.save(
        image, np.random.default_rng(2021).uniform(0, 1, size=(1, 3, 32, 32)).astype(np.float32)
    )
    return load(corpus / V / "cifar10_resnet" / "onnx" / "resnet_2b.onnx", input=str(image))


@pytest.mark.parametrize("name", ["Convnet_maxpool", "Convnet_avgpool"])
def test_corpus_convnets_round_trip(corpus: Path, name: str) -> None:
    net = convnet(corpus, name)
    doc, back = exported(net)
    assert [layer["type"] for layer in doc["layers"]] == [
        "conv2d",
        name[8:].replace("pool", "pool2d"),
        "flatten",
        "dense",
    ]
    assert doc["params"]["0.weight"][0][0][0] == [
        str(v) for v in net.params["conv1.0.weight"].to_fractions()[0, 0, 0]
    ]
    same_function(net, back)


def test_export_refuses_what_formal_net_cannot_express(corpus: Path, capsys: Any) -> None:
    path = corpus / V / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"
    spec = corpus / V / "acasxu" / "prop_1.vnnlib"
    with pytest.raises(UnsupportedOp, match="node 'input_Sub' \\(op 'sub'\\)"):
        to_formalnet(load(path, spec=spec))  # the input normalization
    assert main(["check", str(path), "--spec", str(spec), "--certify"]) == 2
    assert "error: cannot export to formal-net/1: node 'input_Sub'" in capsys.readouterr().err
    assert main(["check", str(path), "--spec", str(spec), "--cross-check"]) == 0
    assert "kernel decision skipped (cannot export" in capsys.readouterr().out
    # one weight used by two layers
    doc = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[1, 2]],
        "layers": [{"type": "dense", "units": 2, "bias": False}] * 2,
        "params": {"0.weight": [[1, 0], [0, 1]], "1.weight": [[1, 0], [0, 1]]},
    }
    net = from_dict(doc)
    nodes = tuple(
        dataclasses.replace(n, inputs=(n.inputs[0], "p:0.weight")) if n.name == "1.linear" else n
        for n in net.nodes
    )
    with pytest.raises(UnsupportedOp, match="parameter '0.weight' is used by two layers"):
        to_formalnet(dataclasses.replace(net, nodes=nodes, cache={}))


def certify(net: Network, proxy: str = "pytorch") -> tuple[Any, dict[str, Any]]:
    """Certificate of the exported network (as ``formal check --certify`` builds it)."""
    doc, back = exported(net)
    v = check(back, proxy)
    cert = build_certificate(back, doc, v, proxy)
    return v, json.loads(json.dumps(cert), parse_float=str)


def test_convnet_maxpool_with_forced_kinks_certificate(corpus: Path) -> None:
    moved, chosen = hit_kinks(convnet(corpus))
    assert chosen  # one unit of the convolution's ReLU layer on its kink
    v, cert = certify(moved)
    assert v.differentiable is False and cert["verdict"] == "non-differentiable"
    assert verdict_words(moved, "pytorch") == "non-differentiable"  # as on the ONNX network
    res = verify(cert)
    assert res.verdict == "non-differentiable"
    bad = copy.deepcopy(cert)
    bad["nonadditive"]["df_d1"] = bad["nonadditive"]["df_d1"] + "1"  # one number tampered
    with pytest.raises(Rejected, match="nonadditive.df_d1"):
        verify(bad)


@pytest.mark.parametrize(
    "name", ["Convnet_avgpool", pytest.param("mnist-net_256x2", marks=pytest.mark.slow)]
)
def test_more_corpus_nets_with_forced_kinks_certify(corpus: Path, name: str) -> None:
    # Convnet_avgpool: ~3 s; mnist-net_256x2 (269,322 parameters, 2 forced kinks): ~11 s
    if name == "Convnet_avgpool":
        net = convnet(corpus, name)
    else:
        net = load(
            corpus / V / "mnistfc" / f"{name}.onnx",
            spec=corpus / V / "mnistfc" / "prop_0_0.03.vnnlib",
        )
    moved, chosen = hit_kinks(net)
    assert chosen
    v, cert = certify(moved)
    assert v.differentiable is False and verify(cert).verdict == "non-differentiable"


@pytest.mark.slow
def test_resnet_2b_with_forced_kinks_certificate(corpus: Path, tmp_path: Path) -> None:
    # about a minute: the kernel's exact evaluation and four directional passes in Fractions
    # (112,006 parameters, 6 forced kinks; the engine's check of the exported net ~7 s)
    net = resnet(corpus, tmp_path)
    doc = to_formalnet(net)
    # the shortcut convolution reads layer 0's output; two residual adds
    assert [layer.get("input") for layer in doc["layers"]] == [None] * 3 + [0] + [None] * 7
    assert [layer.get("from") for layer in doc["layers"]] == [None] * 4 + [2, None, None, 4] + [
        None
    ] * 3
    moved, chosen = hit_kinks(net)
    assert len(chosen) == 6
    v, cert = certify(moved)
    assert v.differentiable is False and cert["verdict"] == "non-differentiable"
    res = verify(cert)  # the tampering test is on Convnet_maxpool (each verify is ~40 s here)
    assert res.verdict == "non-differentiable" and "Bouligand direction verified" in res.summary


def test_cli_certify_onnx(corpus: Path, tmp_path: Path, capsys: Any) -> None:
    path = corpus / V / "test" / "test_tiny.onnx"  # x = 0, B0 = 0: the hidden unit on its kink
    out = tmp_path / "cert.json"
    assert main(["check", str(path), "--certify", "--cross-check", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kernel decides non-differentiable (engine: non-differentiable): agree" in text
    cert = json.loads(out.read_text())
    assert cert["network"]["description"] == f"exported from {path}"
    assert cert["verdict"] == "non-differentiable"
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith("verified: non-differentiable")


BRANCHED = {  # layer 2 reads layer 0's output (a shortcut), layer 3 adds layer 1's
    "format": "formal-net/1",
    "numbers": "binary32",
    "inputs": [["1", "-1"]],
    "layers": [
        {"type": "dense", "units": 2, "activation": "relu"},  # pre = [1, 0]: unit 1 on its kink
        {"type": "dense", "units": 2},
        {"type": "dense", "units": 2, "input": 0},
        {"type": "add", "from": 1, "activation": "relu"},  # [0, -1] + [1, 1]: unit 1 on its kink
        {"type": "dense", "units": 1},
    ],
    "params": {
        "0.weight": [[1, 0], [0, 1]],
        "0.bias": [0, 1],
        "1.weight": [[1, 1], [1, -1]],
        "1.bias": [0, 0],
        "2.weight": [[1, 0], [0, 1]],
        "2.bias": [-1, -1],
        "4.weight": [[1, 1]],
        "4.bias": [0],
    },
}


@pytest.mark.parametrize("proxy", ["pytorch", "right"])
def test_branch_layers(proxy: str) -> None:
    from formal.verify.decide import decide
    from formal.verify.evaluate import evaluate
    from formal.verify.evaluate import outputs as kernel_outputs
    from formal.verify.net import parse

    doc = load_document(json.dumps(BRANCHED))
    net = from_dict(doc)
    assert outputs(net) == [1]  # relu([1, 1] + [0, -1]) = [1, 0] -> 1
    m = parse(doc)
    evaluate(m)
    assert kernel_outputs(m) == [1] and m.pre[3][0] == [1, 0]
    _, back = exported(net)
    same_function(net, back)
    assert to_formalnet(net)["layers"][2]["input"] == 0
    v = check(net, proxy)
    cert = build_certificate(net, doc, v, proxy)
    words = WORDS[(bool(v.differentiable), bool(v.ad_correct))]
    assert verify(json.loads(json.dumps(cert))).verdict == words
    assert decide(doc, proxy).verdict == words


def test_cli_certify_with_params_npz(tmp_path: Path, capsys: Any) -> None:
    net = load_example("tiny-mlp")  # the same values, as float32 arrays in an .npz
    arrays: dict[str, Any] = {k: q.to_float().astype(np.float32) for k, q in net.params.items()}
    npz = tmp_path / "p.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "cert.json"
    assert main(["check", "tiny-mlp", "--params", str(npz), "--certify", "-o", str(out)]) == 0
    capsys.readouterr()
    cert = json.loads(out.read_text())
    assert cert["network"]["description"] == "exported from tiny-mlp"
    assert cert["network"]["params"]["0.bias"] == ["1/4", "1/8", "2"]
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith("verified: non-differentiable")
