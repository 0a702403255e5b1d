"""Max-pool ties: ICLR 2024 Lemma 7 with its three tie-breaking choices, identical-entry
pruning, the float filter's soundness, and Bouligand certificates at ties."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import formal.ops.conv  # noqa: F401
from formal.core.activations import get_activation, parse_preset
from formal.core.network import Network, Node
from formal.core.numbers import parse_format
from formal.core.qarray import QArray
from formal.engine.forward import exact_forward, float_filter
from formal.engine.verdict import check
from formal.errors import InvalidArgument
from formal.io.onnx import from_model
from formal.ops.pool import choose

F = Fraction


def lemma7_model(u: float = 0.0, b: float = 0.0) -> onnx.ModelProto:
    """Parameters theta = (u, b); pre-activations (u + b, b, -u + b, b); max-pools over
    {1, 2} and {3, 4}; output m1 - m2 (ICLR 2024, Lemma 7)."""
    X = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1])
    Y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])
    theta = numpy_helper.from_array(np.array([[u], [b]], dtype=np.float32), "theta")
    P = np.array([[1, 1], [0, 1], [-1, 1], [0, 1]], dtype=np.float32)

    def const(name: str, arr: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))

    nodes = [
        helper.make_node("Gemm", ["X", "theta"], ["ub"], name="pre", transB=1),
        const("PT", P.T.copy()),
        helper.make_node("MatMul", ["ub", "PT"], ["y"], name="mix"),
        const("shape", np.array([1, 1, 2, 2], dtype=np.int64)),
        helper.make_node("Reshape", ["y", "shape"], ["img"], name="img"),
        helper.make_node(
            "MaxPool", ["img"], ["m"], name="pool", kernel_shape=[1, 2], strides=[1, 2]
        ),
        helper.make_node("Flatten", ["m"], ["mf"], name="flat"),
        const("D", np.array([[1], [-1]], dtype=np.float32)),
        helper.make_node("MatMul", ["mf", "D"], ["Y"], name="diff"),
    ]
    graph = helper.make_graph(nodes, "lemma7", [X], [Y], [theta])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def lemma7(tie=None) -> Network:
    net = from_model(lemma7_model(), input=np.ones((1, 1), dtype=np.float32))
    if tie is None:
        return net
    nodes = tuple(
        dataclasses.replace(n, attrs=n.attrs + (("tie", tie),)) if n.op == "maxpool2d" else n
        for n in net.nodes
    )
    return dataclasses.replace(net, nodes=nodes, cache={})


@pytest.mark.parametrize(
    "preset, tie, ad",
    [
        ("pytorch", None, (2, 0)),  # first index in both windows: u + b and -u + b
        ("pytorch,tie=last", None, (0, 0)),  # second index: b and b
        ("pytorch", ("first", "last"), (1, 0)),  # mixed: u + b, then b
        ("jax", ("last", "first"), (1, 0)),  # mixed the other way: b, then -u + b
    ],
)
def test_lemma7_three_tie_choices(preset, tie, ad):
    net = lemma7(tie)
    v = check(net, preset, gradient=True)
    assert v.method == "kink-graph-lra"
    assert v.kink_neurons == 2 and all(k.kind == "tie" for k in v.kinks)
    assert v.differentiable is True and v.in_ndf is False  # f = u near (0, 0)
    assert v.gradient == ((F(1), F(0)),)
    assert v.ad_correct is (ad == (1, 0))
    assert v.in_inc is (ad != (1, 0))
    if ad != (1, 0):
        assert v.ad_gradient == ((F(ad[0]), F(ad[1])),)
        assert v.witness is not None
        assert v.witness.kind == "ad-mismatch" and v.witness.param == "theta[0,0]"


def test_lemma7_is_smooth_off_the_tie():
    net = from_model(lemma7_model(u=0.5, b=0.25), input=np.ones((1, 1), dtype=np.float32))
    v = check(net)
    assert v.method == "no-kinks" and v.differentiable is True and v.ad_correct is True


def test_choose_and_tie_override_validation():
    assert choose([False, True, True, False], "first") == 1
    assert choose([False, True, True, False], "last") == 2
    net = lemma7("middle")
    with pytest.raises(InvalidArgument, match="tie rule"):
        exact_forward(net, parse_preset("pytorch"))


def single_window(values: list, *, relu: bool = False, w: int = 1) -> Network:
    """out = max over one window of (w * x_i + b) (optionally ReLU'd): a 1x1 conv, shared bias b."""
    n = len(values)
    x = QArray.from_fractions([[[[F(v) for v in values]]]])
    wq = QArray.from_fractions(np.array([[[[F(w)]]]], dtype=object))
    b = QArray.from_fractions([F(0)])
    nodes = [
        Node("x", "input", (), (1, 1, n)),
        Node("p:w", "param", (), wq.shape, (("name", "w"),)),
        Node("p:b", "param", (), (1,), (("name", "b"),)),
        Node(
            "c",
            "conv2d",
            ("x", "p:w"),
            (1, 1, n),
            (("strides", (1, 1)), ("pads", (0, 0, 0, 0)), ("dilations", (1, 1)), ("groups", 1)),
        ),
        Node("bv", "view", ("p:b",), (1, 1, 1)),
        Node("y", "add", ("c", "bv"), (1, 1, n)),
    ]
    last = "y"
    if relu:
        nodes.append(Node("r", "act", ("y",), (1, 1, n), (("activation", get_activation("relu")),)))
        last = "r"
    nodes.append(
        Node(
            "m",
            "maxpool2d",
            (last,),
            (1, 1, 1),
            (("kernel", (1, n)), ("strides", (1, n)), ("pads", (0, 0, 0, 0))),
        )
    )
    return Network(
        tuple(nodes), "m", x, {"w": wq, "b": b}, parse_format("binary32"), ("w", "b"), ("w", "b")
    )


def test_identical_entries_are_not_a_tie():
    """Equal inputs give the same function of (w, b) at every position: max of one function."""
    net = single_window([3, 3, 3])
    fwd = exact_forward(net, parse_preset("pytorch"))
    assert fwd.kinks == []
    assert float_filter(net) is True
    v = check(net, gradient=True)
    assert v.method == "no-kinks" and v.gradient == ((F(3), F(1)),)


def test_distinct_entries_with_equal_values_are_a_tie():
    net = single_window([0, 3, 0], w=0)  # entries (b, 3 w + b, b) all equal 0 at w = b = 0
    fwd = exact_forward(net, parse_preset("pytorch"))
    assert len(fwd.kinks) == 1
    k = fwd.kinks[0]
    # entries 0 and 2 are the same function (b): merged into one representative
    assert k.kind == "tie" and k.inputs == (0, 1) and k.choice == 0
    assert float_filter(net) is False
    v = check(net)  # f = max(b, 3w + b) = b + 3 relu(w): not differentiable at w = 0
    assert v.differentiable is False and v.method == "kink-graph-lra"
    assert v.bouligand is True and v.clarke is True  # choice b: d with dw < 0 realizes it


def test_dead_relus_tie_only_with_a_live_kink():
    # y = w x + b at w = 1, b = 0: x = (-2, -1, -3): all ReLUs dead (constant 0 near w): no tie
    net = single_window([-2, -1, -3], relu=True)
    assert exact_forward(net, parse_preset("pytorch")).kinks == []
    assert float_filter(net) is True
    assert check(net).method == "no-kinks"
    # x = (-2, 0, -3): the middle unit sits on its kink and ties with the dead ones
    net = single_window([-2, 0, -3], relu=True)
    kinks = exact_forward(net, parse_preset("pytorch")).kinks
    assert sorted(k.kind for k in kinks) == ["act", "tie"]
    tie = next(k for k in kinks if k.kind == "tie")
    assert (
        tie.inputs == (0, 1) and tie.choice == 0
    )  # dead group first (AD's first index), live unit
    v = check(net)
    assert v.differentiable is False and v.witness is not None


@given(
    st.lists(st.integers(-2, 2), min_size=4, max_size=4),
    st.lists(st.integers(-2, 2), min_size=2, max_size=2),
)
def test_float_filter_never_misses_a_tie(xs, ws):
    """Soundness: whenever the exact pass finds a kink node, the float filter is suspicious."""
    w = np.array([[[[F(ws[0]), F(ws[1])]]]], dtype=object)
    x = QArray.from_fractions([[[[F(v) for v in xs]]]])
    nodes = (
        Node("x", "input", (), (1, 1, 4)),
        Node("p:w", "param", (), (1, 1, 1, 2), (("name", "w"),)),
        Node(
            "c",
            "conv2d",
            ("x", "p:w"),
            (1, 1, 3),
            (("strides", (1, 1)), ("pads", (0, 0, 0, 0)), ("dilations", (1, 1)), ("groups", 1)),
        ),
        Node("r", "act", ("c",), (1, 1, 3), (("activation", get_activation("relu")),)),
        Node(
            "m",
            "maxpool2d",
            ("r",),
            (1, 1, 2),
            (("kernel", (1, 2)), ("strides", (1, 1)), ("pads", (0, 0, 0, 0))),
        ),
    )
    net = Network(
        nodes, "m", x, {"w": QArray.from_fractions(w)}, parse_format("binary32"), ("w",), ("w",)
    )
    kinks = exact_forward(net, parse_preset("pytorch")).kinks
    if kinks:
        assert float_filter(net) is False


def test_padding_is_never_merged_with_a_constant_piece():
    """max(W * 0 + b, W * hardtanh(-5) + b) = b + max(0, -W): padding (0) and a saturated
    HardTanh (-1) are different constants, so at W = b = 0 this is a real tie."""
    x = QArray.from_fractions([[[[F(-5)]]]])
    conv = (("strides", (1, 1)), ("pads", (0, 1, 0, 0)), ("dilations", (1, 1)), ("groups", 1))
    nodes = (
        Node("x", "input", (), (1, 1, 1)),
        Node("h", "act", ("x",), (1, 1, 1), (("activation", get_activation("hardtanh")),)),
        Node("p:w", "param", (), (1, 1, 1, 1), (("name", "w"),)),
        Node("p:b", "param", (), (1,), (("name", "b"),)),
        Node("c", "conv2d", ("h", "p:w"), (1, 1, 2), conv),
        Node("bv", "view", ("p:b",), (1, 1, 1)),
        Node("y", "add", ("c", "bv"), (1, 1, 2)),
        Node(
            "m",
            "maxpool2d",
            ("y",),
            (1, 1, 1),
            (("kernel", (1, 2)), ("strides", (1, 2)), ("pads", (0, 0, 0, 0))),
        ),
    )
    params = {
        "w": QArray.from_fractions(np.zeros((1, 1, 1, 1), dtype=object)),
        "b": QArray.from_fractions([F(0)]),
    }
    net = Network(nodes, "m", x, params, parse_format("binary32"), ("w", "b"), ("w", "b"))
    v = check(net)
    assert v.kink_neurons == 1 and v.kinks[0].kind == "tie"
    assert v.differentiable is False and v.method == "kink-graph-lra"
