"""Verdicts on every network of the corpus in tests/data (VNN-COMP 2021), one test per network.

For each network: the verdict at the center of its VNN-LIB box (nets without
a box: zeros for the toy nets, a fixed random image for the CIFAR ResNet, the
MNIST box for the MNIST sigmoid net), cross-checked against onnx's reference
evaluator (the importer computes the same function; every pre-activation is
away from its kinks by more than float32 error, so "no-kinks" is expected);
then the verdict at parameters moved so that one unit of each kinked layer
sits exactly on its kink (``kinkhit``: biases solved in closed form and kept
in binary32, inputs solved exactly), with the expected method (T2 under
hypothesis H for dense nets, the kink graph for shared convolution biases)
and non-differentiability confirmed by exact one-sided quotients along bias
rays.  The corpus ships with the repository (tests/data/vnncomp2021/README.md).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from kinkhit import bias_rays_nonlinear, hit_kinks, with_values
from onnx.reference import ReferenceEvaluator

from formal.core.activations import parse_preset
from formal.engine.forward import exact_forward, output_value
from formal.engine.verdict import check
from formal.io.onnx import load

V = "vnncomp2021"


def reference(path: Path, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    gin = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value or 1 for d in gin.type.tensor_type.shape.dim]
    outs = ReferenceEvaluator(model).run(names, {gin.name: x.astype(np.float32).reshape(dims)})
    assert isinstance(outs, list)
    return outs


def float_input(net) -> np.ndarray:
    return net.inputs.to_float().astype(np.float32)


def assert_matches_reference(net, path: Path) -> None:
    out_name = onnx.load(str(path)).graph.output[0].name
    ref = reference(path, float_input(net), [out_name])[0].reshape(-1).astype(np.float64)
    ours = output_value(exact_forward(net, parse_preset("pytorch"))).to_float()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def relu_margin(path: Path, x: np.ndarray) -> float:
    """Smallest |pre-activation| over every Relu input, by onnx's reference evaluator."""
    model = onnx.load(str(path))
    names = [n.input[0] for n in model.graph.node if n.op_type == "Relu"]
    return float(min(np.abs(v).min() for v in reference(path, x, names)))


def center_verdict(path: Path, spec: Path | None, **kw):
    net = load(path, spec=spec, **kw)
    v = check(net)
    assert_matches_reference(net, path)
    return net, v


def perturbed(net, expect_h: bool):
    """Kinks in every layer, the verdict there, and the independent bias-ray evidence."""
    moved, chosen = hit_kinks(net)
    v = check(moved)
    assert v.kink_neurons >= len(chosen) >= 1
    acts = {n.inputs[0]: n.name for n in moved.nodes if n.op == "act"}
    kinked = {k.label for k in v.kinks if k.kind == "act"}
    for pre, u in chosen:  # every chosen unit is reported, by its position in the layer
        shape = moved.node(pre).shape
        assert f"{acts[pre]}[{','.join(str(int(i)) for i in np.unravel_index(u, shape))}]" in kinked
    assert v.hypothesis_h is expect_h
    nonlinear = bias_rays_nonlinear(moved, chosen, first=not expect_h)
    if nonlinear:
        assert v.differentiable is False and v.in_ndf is True
        assert v.witness is not None and v.witness.kind == "non-additive"
    if expect_h:  # T2: ndf iff a kink adjoint is non-zero, witnessed by that unit's bias ray
        assert v.method in ("bias-criterion", "adjoint-zero")
        assert v.differentiable is (not nonlinear)
        assert v.ad_correct is True or v.in_ndf is True  # T1: inc is empty under H
        if v.differentiable is False:
            assert v.bouligand is True and v.clarke is True  # T4: PyTorch's ReLU'(0) = 0 = D-
    else:
        assert v.method in ("kink-graph-lra", "adjoint-zero")
    return moved, chosen, v


def corpus_file(corpus: Path, rel: str) -> Path:
    return corpus / V / rel


@pytest.mark.parametrize(
    "name, prop",
    [("ACASXU_run2a_1_1_batch_2000", "prop_1"), ("ACASXU_run2a_2_7_batch_2000", "prop_3")],
)
def test_acasxu(corpus, name, prop):
    path, spec = (
        corpus_file(corpus, f"acasxu/{name}.onnx"),
        corpus_file(corpus, f"acasxu/{prop}.vnnlib"),
    )
    net, v = center_verdict(path, spec)
    assert relu_margin(path, float_input(net)) > 1e-4
    assert v.method == "no-kinks" and v.differentiable is True and v.hypothesis_h is True
    assert v.parameters == 13_310  # weights, biases and the input offset initializer (5)
    moved, chosen, _ = perturbed(net, expect_h=True)
    assert len(chosen) == 5  # 6 hidden layers, 5 inputs to solve for: the last 5 layers


def test_mnist_256x2(corpus):
    path = corpus_file(corpus, "mnistfc/mnist-net_256x2.onnx")
    for k in range(3):
        net, v = center_verdict(path, corpus_file(corpus, f"mnistfc/prop_{k}_0.03.vnnlib"))
        assert v.method == "no-kinks" and v.parameters == 269_322 and v.hypothesis_h is True
    assert relu_margin(path, float_input(net)) > 1e-4
    moved, chosen, v = perturbed(net, expect_h=True)
    assert len(chosen) == 2


def maxpool_ties_are_identical_or_dead(path: Path, x: np.ndarray) -> int:
    """Independently (float32 reference + the image): every tied 4x4 window is a tie of
    identical 2x2 input patches or of dead ReLUs.  Returns the number of tied windows."""
    pre, post = reference(path, x, ["5", "6"])
    img = x.reshape(28, 28)
    patches = np.stack([img[:27, :27], img[:27, 1:], img[1:, :27], img[1:, 1:]], axis=-1)
    ties = 0
    for c in range(32):
        for i in range(6):
            for j in range(6):
                win = post[0, c, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
                top = np.argwhere(win == win.max())
                if len(top) < 2:
                    continue
                ties += 1
                if win.max() == 0:
                    assert all(pre[0, c, 4 * i + a, 4 * j + b] < 0 for a, b in top)
                else:
                    first = patches[4 * i + top[0][0], 4 * j + top[0][1]]
                    assert all((patches[4 * i + a, 4 * j + b] == first).all() for a, b in top)
    return ties


def test_convnet_maxpool(corpus):
    path = corpus_file(corpus, "verivital/Convnet_maxpool.onnx")
    net, v = center_verdict(path, corpus_file(corpus, "verivital/specs/prop_0_0.004.vnnlib"))
    assert relu_margin(path, float_input(net)) > 1e-5
    assert maxpool_ties_are_identical_or_dead(path, float_input(net)) > 100  # uniform background
    assert v.method == "no-kinks" and v.hypothesis_h is False and v.parameters == 11_690
    moved, chosen, v = perturbed(net, expect_h=False)
    assert any(k.kind == "tie" for k in v.kinks) or v.method == "adjoint-zero"


def test_convnet_avgpool(corpus):
    path = corpus_file(corpus, "verivital/Convnet_avgpool.onnx")
    net, v = center_verdict(path, corpus_file(corpus, "verivital/specs/prop_0_0.004.vnnlib"))
    assert relu_margin(path, float_input(net)) > 1e-5
    assert v.method == "no-kinks" and v.hypothesis_h is False and "shared" in v.hypothesis_reason
    perturbed(net, expect_h=False)


@pytest.mark.slow
def test_resnet_2b(corpus, tmp_path):
    path = corpus_file(corpus, "cifar10_resnet/onnx/resnet_2b.onnx")
    image = tmp_path / "image.npy"  # no VNN-LIB box for this net in the corpus: a fixed image
    np.save(
        image, np.random.default_rng(2021).uniform(0, 1, size=(1, 3, 32, 32)).astype(np.float32)
    )
    net, v = center_verdict(path, None, input=str(image))
    assert relu_margin(path, float_input(net)) > 1e-5
    assert v.method == "no-kinks" and v.parameters == 112_006
    moved, chosen, _ = perturbed(net, expect_h=False)
    assert len(chosen) == 6  # every ReLU layer, including those after the residual adds


def test_cifar_base_kw(corpus):
    path = corpus_file(corpus, "oval21/nets/cifar_base_kw.onnx")
    spec = "oval21/vnnlib/cifar_base_kw-img4549-eps0.00392156862745098.vnnlib"
    net, v = center_verdict(path, corpus_file(corpus, spec))
    assert relu_margin(path, float_input(net)) > 1e-5
    assert v.method == "no-kinks" and v.hypothesis_h is False and v.parameters == 105_966
    moved, chosen, _ = perturbed(net, expect_h=False)
    assert len(chosen) == 3  # both conv ReLU layers and the dense one


def test_ffnn_sigmoid(corpus):
    path = corpus_file(corpus, "eran/nets/ffnnSIGMOID__Point_6x200.onnx")
    net, v = center_verdict_float(path, corpus_file(corpus, "mnistfc/prop_0_0.03.vnnlib"))
    assert v.method == "no-kinks" and v.differentiable is True and v.ad_correct is True
    # no kinked activation at all: differentiable everywhere, at any parameters (never "unknown")
    b = net.params["2.bias"].to_fractions()
    b[:] = Fraction(0)
    from formal.core.qarray import QArray

    moved = with_values(net, {**net.params, "2.bias": QArray.from_fractions(b)})
    assert check(moved).method == "no-kinks"


def center_verdict_float(path: Path, spec: Path):
    """Sigmoid values are irrational: compare the float filter's output with the reference."""
    net = load(path, spec=spec)
    v = check(net)
    from test_onnx import float_out

    out_name = onnx.load(str(path)).graph.output[0].name
    ref = reference(path, float_input(net), [out_name])[0].reshape(-1)
    np.testing.assert_allclose(float_out(net), ref, rtol=1e-4, atol=1e-4)
    return net, v


def test_toy_nano(corpus):
    path = corpus_file(corpus, "test/test_nano.onnx")
    net, v = center_verdict(path, None)  # x = 0: relu(0 * w) is identically 0
    assert v.method == "kink-graph-lra" and v.kink_neurons == 1
    assert v.differentiable is True and v.ad_correct is True and v.hypothesis_h is False
    one = load(path, input=np.ones(1, np.float32))
    assert check(one).method == "no-kinks"
    w0 = with_values(
        one, {"Ma_MatMulcst": one.params["Ma_MatMulcst"].scale(Fraction(0))}
    )  # weight solved: w x = 0
    v = check(w0)  # f(w) = relu(w): not differentiable at 0; AD's ReLU'(0) = 0 is D- (Bouligand)
    assert v.differentiable is False and v.method == "kink-graph-lra" and v.bouligand is True


def test_toy_tiny(corpus):
    path = corpus_file(corpus, "test/test_tiny.onnx")
    net, v = center_verdict(path, None)  # x = 0, B0 = 0: the hidden unit sits on its kink
    assert v.method == "bias-criterion" and v.differentiable is False and v.bouligand is True
    assert bias_rays_nonlinear(net, [("H0", 0)])


def test_toy_small(corpus):
    path = corpus_file(corpus, "test/test_small.onnx")
    net, v = center_verdict(path, None)
    assert v.method == "no-kinks"
    moved, chosen, v = perturbed(net, expect_h=True)
    assert len(chosen) == 2 and moved.inputs.to_fractions().tolist() == [
        [0]
    ]  # biases alone suffice
