"""The ONNX importer: every supported op against onnx's reference evaluator, exact float32
attributes, M from the initializers, inputs from boxes and files, errors that name the op,
node and attribute, irrational values (sigmoid, tanh, batch norm) and the CLI."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from formal.cli.main import main
from formal.core.activations import parse_preset
from formal.engine.forward import exact_forward, float_pass, output_value
from formal.engine.verdict import check
from formal.errors import FormalError, InvalidArgument, UnsupportedOp
from formal.io.onnx import from_model, load

F = Fraction
RNG = np.random.default_rng(1)


def init(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def make(nodes, in_shape, inits=(), opset=13, elem=TensorProto.FLOAT, out="Y") -> onnx.ModelProto:
    X = helper.make_tensor_value_info("X", elem, list(in_shape))
    Y = helper.make_tensor_value_info(out, elem, None)
    graph = helper.make_graph(nodes, "g", [X], [Y], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def const(name: str, arr) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=init(name, arr))


def exact_out(net) -> np.ndarray:
    return output_value(exact_forward(net, parse_preset("pytorch"))).to_float()


def float_out(net) -> np.ndarray:
    """The float filter's own values (with their rigorous bounds), for irrational activations."""
    _, vals, _ = float_pass(net, stop_on_suspect=False)
    return vals[net.output].reshape(-1)


def agree(model: onnx.ModelProto, x: np.ndarray, *, exact: bool = True) -> None:
    outs = ReferenceEvaluator(model).run(None, {"X": x})
    assert isinstance(outs, list)
    ref = outs[0].astype(np.float64).reshape(-1)
    net = from_model(model, input=x)
    got = exact_out(net) if exact else float_out(net)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)


def x32(*shape) -> np.ndarray:
    return RNG.uniform(-1, 1, size=shape).astype(np.float32)


W = x32(4, 3)
B = x32(4)


@pytest.mark.parametrize(
    "attrs, weight, bias",
    [
        (dict(transB=1), W, B),
        (dict(transB=0), W.T.copy(), B),
        (dict(transB=1, alpha=0.5, beta=-2.0), W, B.reshape(1, 4)),
        (dict(transB=1), W, None),
    ],
)
def test_gemm_variants(attrs, weight, bias):
    inputs = ["X", "W"] + (["B"] if bias is not None else [])
    inits = [init("W", weight)] + ([init("B", bias)] if bias is not None else [])
    model = make([helper.make_node("Gemm", inputs, ["Y"], name="fc", **attrs)], [1, 3], inits)
    agree(model, x32(1, 3))
    net = from_model(model, input=x32(1, 3))
    assert set(net.param_order) == {"W"} | ({"B"} if bias is not None else set())


def test_matmul_orientations_and_elementwise_constants():
    # batched x @ W, then (+, -, *, /) by constants and by a parameter, Neg, Identity
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["h"], name="mm"),
        const("c", np.float32(3.0)),
        helper.make_node("Add", ["h", "b"], ["h1"], name="add"),
        helper.make_node("Sub", ["c", "h1"], ["h2"], name="sub"),
        helper.make_node("Mul", ["h2", "g"], ["h3"], name="mulp"),
        helper.make_node("Div", ["h3", "c"], ["h4"], name="div"),
        helper.make_node("Neg", ["h4"], ["h4n"], name="neg"),
        helper.make_node("Dropout", ["h4n"], ["h5"], name="drop"),
        helper.make_node("Mul", ["h5", "c"], ["h6"], name="mulc"),
        helper.make_node("Identity", ["h6"], ["Y"], name="id"),
    ]
    model = make(nodes, [2, 3], [init("W", W.T.copy()), init("b", B), init("g", x32(4))])
    agree(model, x32(2, 3))
    # a rank-1 graph (no batch axis): W @ x as in VNN-COMP's test networks
    model = make(
        [helper.make_node("MatMul", ["W", "X"], ["h"]), helper.make_node("Relu", ["h"], ["Y"])],
        [3],
        [init("W", W)],
    )
    agree(model, x32(3))


def test_activations_against_reference():
    acts = [
        helper.make_node("Relu", ["X"], ["a"]),
        helper.make_node("LeakyRelu", ["a0"], ["b"], alpha=0.25),
        helper.make_node("HardSigmoid", ["b0"], ["c"], alpha=0.3, beta=0.4),
        helper.make_node("HardSwish", ["c0"], ["d"]),
        helper.make_node("Abs", ["d0"], ["e"]),
        helper.make_node("Clip", ["e0", "lo", "hi"], ["Y"]),
    ]
    nodes, prev = [], "X"
    for k, a in enumerate(acts):  # interleave with affine maps so every piece is exercised
        a.input[0] = prev
        nodes.append(a)
        prev = a.output[0]
        if k < len(acts) - 1:
            nodes.append(
                helper.make_node("Gemm", [prev, f"W{k}", f"B{k}"], [a.output[0] + "0"], transB=1)
            )
            prev = a.output[0] + "0"
    inits = [init(f"W{k}", 3 * x32(6, 6)) for k in range(5)] + [
        init(f"B{k}", x32(6)) for k in range(5)
    ]
    inits += [init("lo", np.float32(-0.5)), init("hi", np.float32(0.75))]
    agree(make(nodes, [4, 6], inits, opset=14), 3 * x32(4, 6))


def test_clip_opset8_attributes_and_one_sided():
    model = make([helper.make_node("Clip", ["X"], ["Y"], min=-0.25)], [1, 5], opset=8)
    agree(model, x32(1, 5))
    net = from_model(model, input=x32(1, 5))
    act = next(n for n in net.nodes if n.op == "act").attr("activation")
    assert act.kinks == (F(-1, 4),)


def test_sigmoid_tanh_values_and_verdict():
    nodes = [
        helper.make_node("Gemm", ["X", "W", "B"], ["h"], transB=1),
        helper.make_node("Sigmoid", ["h"], ["s"]),
        helper.make_node("Gemm", ["s", "W2", "B2"], ["t"], transB=1),
        helper.make_node("Tanh", ["t"], ["Y"]),
    ]
    model = make(
        nodes, [1, 3], [init("W", W), init("B", B), init("W2", x32(2, 4)), init("B2", x32(2))]
    )
    agree(model, x32(1, 3), exact=False)
    net = from_model(model, input=x32(1, 3))
    v = check(net)
    assert v.method == "no-kinks" and v.differentiable is True and v.ad_correct is True


def test_hardsigmoid_kinks_are_the_float32_attributes():
    model = make(
        [helper.make_node("HardSigmoid", ["X"], ["Y"])], [1, 1]
    )  # default alpha 0.2, beta 0.5
    net = from_model(model, input=np.zeros((1, 1), dtype=np.float32))
    act = next(n for n in net.nodes if n.op == "act").attr("activation")
    alpha = F(float(np.float32(0.2)))
    assert alpha != F(1, 5)
    assert act.kinks == (-F(1, 2) / alpha, F(1, 2) / alpha)
    assert act.pieces[1] == (F(1, 2), alpha)


def test_conv_pool_pad_reshape_transpose_against_reference():
    nodes = [
        helper.make_node(
            "Conv",
            ["X", "W", "B"],
            ["c"],
            name="conv",
            strides=[2, 1],
            pads=[1, 0, 1, 2],
            dilations=[1, 2],
            group=2,
        ),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Pad", ["r", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node(
            "MaxPool",
            ["p"],
            ["m"],
            kernel_shape=[2, 2],
            strides=[1, 2],
            pads=[1, 1, 0, 0],
            ceil_mode=1,
        ),
        helper.make_node(
            "AveragePool", ["m"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1
        ),
        helper.make_node("Transpose", ["a"], ["t"], perm=[0, 1, 3, 2]),
        helper.make_node("Conv", ["t", "W2"], ["c2"], auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["Y"]),
    ]
    inits = [
        init("W", x32(4, 2, 3, 2)),
        init("B", x32(4)),
        init("W2", x32(3, 4, 3, 3)),
        init("pads", np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64)),
        init("shape", np.array([1, -1], dtype=np.int64)),
    ]
    agree(make(nodes, [1, 4, 7, 8], inits), x32(1, 4, 7, 8))


def test_batchnorm_flatten_and_ops_on_parameters():
    nodes = [
        helper.make_node("BatchNormalization", ["X", "s", "b", "mean", "var"], ["n"], epsilon=0.0),
        helper.make_node("Flatten", ["n"], ["f"], axis=1),
        helper.make_node("Transpose", ["W"], ["Wt"]),
        helper.make_node("MatMul", ["f", "Wt"], ["Y"]),
    ]
    inits = [
        init("s", x32(2)),
        init("b", x32(2)),
        init("mean", x32(2)),
        init("var", np.array([0.25, 4.0], np.float32)),
        init("W", x32(3, 8)),
    ]
    model = make(
        nodes, [1, 2, 2, 2], inits, opset=14
    )  # (onnx's reference BatchNormalization_9 is not the inference formula)
    agree(model, x32(1, 2, 2, 2))
    net = from_model(model, input=x32(1, 2, 2, 2))
    assert set(net.param_order) == {"s", "b", "W"}  # running statistics are constants
    assert not any(n.op == "rsqrt_scale" for n in net.nodes)  # sqrt(var + 0) is rational


def test_batchnorm_with_irrational_scale_uses_enclosures():
    nodes = [
        helper.make_node("BatchNormalization", ["X", "s", "b", "mean", "var"], ["n"]),
        helper.make_node("Relu", ["n"], ["Y"]),
    ]
    inits = [
        init("s", np.ones(1, np.float32)),
        init("b", np.zeros(1, np.float32)),
        init("mean", np.zeros(1, np.float32)),
        init("var", np.full(1, 2.0, np.float32)),
    ]
    model = make(nodes, [1, 1, 1, 2], inits, opset=14)
    agree(model, x32(1, 1, 1, 2), exact=False)
    generic = from_model(model, input=np.array([[[[0.5, -0.25]]]], np.float32))
    assert check(generic).method == "no-kinks"
    at_kink = from_model(
        model, input=np.array([[[[0.0, 1.0]]]], np.float32)
    )  # x = mean: pre-activation 0 * k
    v = check(at_kink)
    assert v.method == "unknown" and v.differentiable is None and "irrational" in v.reason


def sigmoid_relu_model(c: float, *, twin: bool) -> onnx.ModelProto:
    """relu(sigmoid(w x) - c) (binary64), or relu(sigmoid(w x) - sigmoid(w x)) with ``twin``."""
    nodes = [helper.make_node("Mul", ["X", "w"], ["h"]), helper.make_node("Sigmoid", ["h"], ["s"])]
    if twin:
        nodes += [
            helper.make_node("Mul", ["X", "w"], ["h2"]),
            helper.make_node("Sigmoid", ["h2"], ["s2"]),
            helper.make_node("Sub", ["s", "s2"], ["d"]),
        ]
    else:
        nodes += [helper.make_node("Sub", ["s", "c"], ["d"])]
    nodes += [helper.make_node("Relu", ["d"], ["Y"])]
    inits = [init("w", np.array([1.0])), init("c", np.array([c]))]
    return make(nodes, [1, 1], inits, elem=TensorProto.DOUBLE)


def test_kink_downstream_of_sigmoid_is_decided_by_enclosures():
    x = np.array([[0.5]])
    c = float(1 / (1 + np.exp(-0.5)))  # a binary64 number within ~1e-17 of sigmoid(1/2)
    net = from_model(sigmoid_relu_model(c, twin=False), input=x)
    assert net.numbers.name == "binary64"
    v = check(net)  # the float filter cannot separate sigmoid(1/2) from c; 96-bit balls can
    assert v.method == "no-kinks" and v.differentiable is True
    twin = from_model(sigmoid_relu_model(c, twin=True), input=x)
    v = check(twin)  # sigmoid(wx) - sigmoid(wx) = 0 exactly: no enclosure excludes the kink
    assert v.method == "unknown" and v.differentiable is None
    assert "contains the kink" in v.reason


def test_numbers_follow_the_initializers():
    for dtype, name in [(np.float16, "binary16"), (np.float64, "binary64")]:
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        model = make(
            [helper.make_node("MatMul", ["X", "W"], ["Y"])],
            [1, 3],
            [init("W", W.T.astype(dtype))],
            elem=elem,
        )
        assert from_model(model, input=np.zeros((1, 3), dtype)).numbers.name == name
    mixed = make(
        [helper.make_node("MatMul", ["X", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["Y"])],
        [1, 3],
        [init("W", W.T.copy()), init("b", B.astype(np.float16))],
    )
    with pytest.raises(InvalidArgument, match="W as float32 and b as float16"):
        from_model(mixed)
    bad = make(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        [1, 3],
        [init("W", np.full((3, 4), np.nan, np.float32))],
    )
    with pytest.raises(InvalidArgument, match=r"initializer W"):
        from_model(bad)
    model = make([helper.make_node("MatMul", ["X", "W"], ["Y"])], [1, 3], [init("W", W.T.copy())])
    with pytest.raises(InvalidArgument, match=r"W\[0,0\].*binary16"):
        from_model(model, numbers="binary16")


@pytest.mark.parametrize(
    "node, what",
    [
        (
            helper.make_node("Softmax", ["X"], ["Y"], name="sm"),
            "node 'sm' (Softmax): op Softmax is not supported",
        ),
        (
            helper.make_node("LeakyRelu", ["X"], ["Y"], name="lr", gamma=2.0),
            "node 'lr' (LeakyRelu): attribute gamma = 2.0",
        ),
        (
            helper.make_node("Flatten", ["X"], ["Y"], name="fl", axis=7),
            "node 'fl' (Flatten): attribute axis = 7",
        ),
    ],
)
def test_unsupported_op_or_attribute_names_it(node, what):
    with pytest.raises(FormalError, match=what.replace("(", r"\(").replace(")", r"\)")):
        from_model(make([node], [1, 3]))


def test_unsupported_pad_mode_and_cli_exit_code(tmp_path, capsys):
    model = make(
        [helper.make_node("Pad", ["X", "pads"], ["Y"], name="padder", mode="reflect")],
        [1, 1, 2, 2],
        [init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))],
    )
    with pytest.raises(UnsupportedOp, match=r"node 'padder' \(Pad\): attribute mode = 'reflect'"):
        from_model(model)
    path = tmp_path / "pad.onnx"
    onnx.save(model, str(path))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "mode = 'reflect'" in err[0]


def test_inputs_from_box_npy_and_defaults(tmp_path):
    model = make([helper.make_node("MatMul", ["X", "W"], ["Y"])], [1, 3], [init("W", W.T.copy())])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    spec = tmp_path / "box.vnnlib"
    spec.write_text(
        "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const X_2 Real)\n"
        "(assert (<= X_0 0.1))(assert (>= X_0 0.0))(assert (<= X_1 1))(assert (>= X_1 -1))"
        "(assert (and (<= X_2 3) (>= X_2 2)))"
    )
    center = load(path, spec=spec)
    tenth = F(float(np.float32(0.1)))  # box points are rounded to the input's float32
    assert center.inputs.to_fractions().tolist() == [[F(float(np.float32(0.05))), F(0), F(5, 2)]]
    assert load(path, spec=spec, input="hi").inputs.to_fractions().tolist() == [[tenth, F(1), F(3)]]
    assert load(
        path, spec=spec, input="center", exact_input=True
    ).inputs.to_fractions().tolist() == [[F(1, 20), F(0), F(5, 2)]]
    assert load(path).inputs.to_fractions().tolist() == [[0, 0, 0]]
    npy = tmp_path / "x.npy"
    np.save(npy, np.array([[0.5, -1, 2], [1, 1, 1]], np.float32))
    assert load(path, input=str(npy)).batch == 2
    with pytest.raises(InvalidArgument, match="needs a --spec"):
        load(path, input="lo")
    np.save(npy, np.zeros(4, np.float32))
    with pytest.raises(InvalidArgument, match="expected 3 values per sample"):
        load(path, input=str(npy))


def test_cli_check_onnx_with_input_file(tmp_path, capsys):
    from test_maxpool import lemma7_model

    path = tmp_path / "lemma7.onnx"
    onnx.save(lemma7_model(), str(path))
    ones = tmp_path / "ones.npy"
    np.save(ones, np.ones((1, 1), np.float32))
    assert main(["check", str(path), "--input", str(ones), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "kink-graph-lra" and doc["in_inc"] is True and doc["parameters"] == 2
    assert doc["witness"]["ad"] == "2" and doc["witness"]["gradient"] == "1"


def test_pytorch_style_dynamic_flatten_is_folded():
    """x.view(x.size(0), -1) exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    nodes = [
        helper.make_node("Shape", ["X"], ["s"]),
        const("zero", np.array(0, np.int64)),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        const("ax", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        const("m1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Cast", ["shape"], ["shape64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["X", "shape64"], ["f"]),
        helper.make_node("Unsqueeze", ["f", "ax2"], ["u"]),
        helper.make_node("Squeeze", ["u", "ax2"], ["g"]),
        helper.make_node("Gemm", ["g", "W", "B"], ["Y"], transB=1),
    ]
    inits = [init("ax2", np.array([2], np.int64)), init("W", x32(4, 12)), init("B", B)]
    model = make(nodes, [1, 3, 2, 2], inits)
    agree(model, x32(1, 3, 2, 2))
    net = from_model(model, input=x32(1, 3, 2, 2))
    assert [n.op for n in net.nodes if n.op not in ("param", "input")] == [
        "reshape",
        "reshape",
        "reshape",
        "linear",
        "add",
    ]
    assert check(net).hypothesis_h is True
