"""The IR: parameterization (ties with signs, frozen tensors, labels), bias structure (H).

Also well-formedness.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import Oracle
from strategies import networks

from formal.core.activations import get_activation
from formal.core.network import Network, Node, Tie, bias_structure, check_well_formed
from formal.core.numbers import BINARY32
from formal.core.qarray import QArray
from formal.errors import InvalidArgument
from formal.io.formalnet import from_dict

F = Fraction


def two_layer(**kw) -> dict:
    doc = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": kw.pop("inputs", [[1, 2]]),
        "layers": [
            {
                "type": "dense",
                "units": 2,
                "bias": kw.pop("bias0", True),
                "activation": kw.pop("act0", "relu"),
            },
            {"type": "dense", "units": 1, "bias": kw.pop("bias1", False), "activation": "identity"},
        ],
        "params": {
            "0.weight": [[1, 2], [3, 4]],
            "0.bias": [5, 6],
            "1.weight": [[7, 8]],
            "1.bias": [9],
        },
    }
    if not doc["layers"][0]["bias"]:
        del doc["params"]["0.bias"]
    if not doc["layers"][1]["bias"]:
        del doc["params"]["1.bias"]
    doc.update(kw)
    return doc


# ---------------------------------------------------------------------------
# parameterization


def test_labels_and_groups_all_trainable():
    par = from_dict(two_layer()).parameterization()
    assert par.labels == [
        "0.weight[0,0]",
        "0.weight[0,1]",
        "0.weight[1,0]",
        "0.weight[1,1]",
        "0.bias[0]",
        "0.bias[1]",
        "1.weight[0,0]",
        "1.weight[0,1]",
    ]
    assert par.size == 8
    assert par.groups["0.bias"].tolist() == [4, 5] and par.signs["1.weight"].tolist() == [[1, 1]]


def test_frozen_tensors_have_no_group():
    net = from_dict(two_layer(trainable=["0.bias", "1.weight"]))
    par = net.parameterization()
    assert par.labels == ["0.bias[0]", "0.bias[1]", "1.weight[0,0]", "1.weight[0,1]"]
    assert "0.weight" not in par.groups and net.param_count() == 4
    assert net.trainable == ("0.bias", "1.weight")


def test_ties_with_signs_merge_into_the_first_entry():
    doc = two_layer()
    doc["params"]["0.weight"] = [[1, -7], [3, 4]]
    doc["tied"] = [["1.weight[0,0]", "-0.weight[0,1]"], ["0.bias[1]", "-0.bias[0]"]]
    doc["params"]["0.bias"] = [5, -5]
    par = from_dict(doc).parameterization()
    # 0.weight[0,1] comes first in parameter order: it names the group; 1.weight[0,0] = -that
    assert par.labels == [
        "0.weight[0,0]",
        "0.weight[0,1]",
        "0.weight[1,0]",
        "0.weight[1,1]",
        "0.bias[0]",
        "1.weight[0,1]",
    ]
    assert par.groups["1.weight"].tolist() == [[1, 5]] and par.signs["1.weight"].tolist() == [
        [-1, 1]
    ]
    assert par.groups["0.bias"].tolist() == [4, 4] and par.signs["0.bias"].tolist() == [1, -1]
    assert par.entries(1) == [("0.weight", 1, 1), ("1.weight", 0, -1)]
    assert par.entries(4) == [("0.bias", 0, 1), ("0.bias", 1, -1)]
    # tangents of a direction spread to every tied entry with its sign; collect sums them back
    tans = par.tangents([{1: F(2), 4: F(3)}])
    assert tans["0.weight"].to_fractions().tolist() == [[[0, 2], [0, 0]]]
    assert tans["1.weight"].to_fractions().tolist() == [[[-2, 0]]]
    assert tans["0.bias"].to_fractions().tolist() == [[3, -3]]
    adj = {
        "0.weight": QArray.from_fractions([[[1, 10], [100, 1000]]]),
        "0.bias": QArray.from_fractions([[F(1, 2), 7]]),
        "1.weight": QArray.from_fractions([[[5, 6]]]),
    }
    assert par.collect(adj, 1).to_fractions().tolist() == [[1, 10 - 5, 100, 1000, F(1, 2) - 7, 6]]


def test_chained_ties_form_one_group():
    doc = two_layer(bias0=False)
    doc["params"]["0.weight"] = [[1, -1], [1, 1]]
    doc["tied"] = [
        ["0.weight[0,0]", "-0.weight[0,1]"],
        ["0.weight[0,1]", "-0.weight[1,0]"],
        ["0.weight[1,1]", "0.weight[1,0]"],
    ]
    par = from_dict(doc).parameterization()
    assert par.labels == ["0.weight[0,0]", "1.weight[0,0]", "1.weight[0,1]"]
    assert par.groups["0.weight"].tolist() == [[0, 0], [0, 0]]
    assert par.signs["0.weight"].tolist() == [[1, -1], [1, 1]]


def test_contradictory_tie_signs_are_an_error():
    """Regression: w tied to -w (directly or around a cycle) forces w = 0.

    It used to be a free parameter.
    """
    for tied in (
        [["0.weight[0,0]", "-0.weight[0,0]"]],
        [["0.weight[0,0]", "0.weight[1,0]"], ["0.weight[1,0]", "-0.weight[0,0]"]],
    ):
        doc = two_layer(bias0=False)
        doc["params"]["0.weight"] = [[0, 1], [0, 1]]
        doc["tied"] = tied
        with pytest.raises(InvalidArgument, match="tie signs.*0.weight\\[0,0\\]"):
            from_dict(doc).parameterization()


@settings(max_examples=60)
@given(networks())
def test_parameterization_reproduces_the_entries(doc):
    """Every trainable entry equals sign * (its group's value); labels follow the oracle's."""
    net = from_dict(doc)
    par = net.parameterization()
    o = Oracle(doc)
    assert par.labels == o.labels
    for name in net.trainable:
        vals = net.params[name].to_fractions().reshape(-1)
        g, s = par.groups[name].reshape(-1), par.signs[name].reshape(-1)
        for flat in range(vals.size):
            assert vals[flat] == s[flat] * o.w[g[flat]]
    for grp in range(par.size):
        entries = par.entries(grp)
        assert entries[0][2] == 1  # the representative has sign +1
        assert par.label(grp) == o.labels[grp]


# ---------------------------------------------------------------------------
# bias structure (hypothesis H)


def test_h_holds_for_a_biased_single_input_net():
    h = bias_structure(from_dict(two_layer()))
    assert h.holds and h.bias_of == {"0.act": "0.bias"}
    assert "every kinked unit has its own trainable bias" in h.describe()


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (two_layer(inputs=[[1, 2], [3, 4]]), "B = 2 > 1"),
        (two_layer(bias0=False), "no bias added"),
        (two_layer(trainable=["0.weight", "1.weight"]), "bias 0.bias is frozen"),
    ],
    ids=["batch", "no-bias", "frozen-bias"],
)
def test_h_fails_with_a_reason(doc, reason):
    h = bias_structure(from_dict(doc))
    assert not h.holds and reason in h.reason
    assert h.describe().startswith("H fails: ")


def test_h_fails_for_tied_bias_entries():
    doc = two_layer()
    doc["params"]["0.bias"] = [5, 5]
    doc["tied"] = [["0.bias[0]", "0.bias[1]"]]
    h = bias_structure(from_dict(doc))
    assert not h.holds and "tied entries" in h.reason


def test_h_ignores_layers_without_kinks():
    h = bias_structure(from_dict(two_layer(act0="identity", bias0=False)))
    assert h.holds and h.bias_of == {}


def _ir(nodes, params, trainable=None, inputs=None):
    inputs = inputs if inputs is not None else ((F(1), F(2)),)
    q = {k: QArray.from_fractions(v) for k, v in params.items()}
    order = tuple(params)
    return Network(
        tuple(nodes),
        nodes[-1].name,
        QArray.from_fractions(list(map(list, inputs))),
        q,
        BINARY32,
        order,
        tuple(trainable if trainable is not None else order),
    )


RELU = (("activation", get_activation("relu")),)


def test_h_fails_for_a_broadcast_bias():
    nodes = [
        Node("x", "input", (), (2,)),
        Node("W", "param", (), (2, 2), (("name", "W"),)),
        Node("lin", "linear", ("x", "W"), (2,)),
        Node("b", "param", (), (1,), (("name", "b"),)),
        Node("add", "add", ("lin", "b"), (2,)),
        Node("act", "act", ("add",), (2,), RELU),
    ]
    h = bias_structure(_ir(nodes, {"W": [[1, 0], [0, 1]], "b": [0]}))
    assert not h.holds and "shared by broadcasting" in h.reason


def test_h_fails_when_the_pre_activation_or_bias_is_reused():
    base = [
        Node("x", "input", (), (2,)),
        Node("W", "param", (), (2, 2), (("name", "W"),)),
        Node("lin", "linear", ("x", "W"), (2,)),
        Node("b", "param", (), (2,), (("name", "b"),)),
        Node("add", "add", ("lin", "b"), (2,)),
        Node("act", "act", ("add",), (2,), RELU),
    ]
    reuse_pre = base + [Node("out", "add", ("act", "add"), (2,))]
    h = bias_structure(_ir(reuse_pre, {"W": [[1, 0], [0, 1]], "b": [0, 0]}))
    assert not h.holds and "pre-activation is used elsewhere" in h.reason
    reuse_bias = base + [Node("out", "add", ("act", "b"), (2,))]
    h = bias_structure(_ir(reuse_bias, {"W": [[1, 0], [0, 1]], "b": [0, 0]}))
    assert not h.holds and "used elsewhere" in h.reason


def test_h_fails_with_a_max_node():
    nodes = [
        Node("x", "input", (), (2,)),
        Node("W", "param", (), (2, 2), (("name", "W"),)),
        Node("lin", "linear", ("x", "W"), (2,)),
        Node("m", "max", ("lin",), (1,)),
    ]
    h = bias_structure(_ir(nodes, {"W": [[1, 0], [0, 1]]}))
    assert not h.holds and "max" in h.reason


# ---------------------------------------------------------------------------
# well-formedness


def test_check_well_formed_names_the_bad_node():
    x = Node("x", "input", (), (1,))
    W = Node("W", "param", (), (1, 1), (("name", "W"),))
    ok = [x, W, Node("lin", "linear", ("x", "W"), (1,))]
    check_well_formed(_ir(ok, {"W": [[1]]}, inputs=((F(1),),)))
    cases = [
        (
            [x, Node("lin", "linear", ("x", "W"), (1,)), W],
            "reads 'W', which is not defined before it",
        ),
        ([x, W, W], "defined twice"),
        (
            [x, Node("V", "param", (), (1, 1), (("name", "V"),))],
            "parameter 'V', which has no value",
        ),
    ]
    for nodes, msg in cases:
        with pytest.raises(InvalidArgument, match=msg):
            check_well_formed(_ir(nodes, {"W": [[1]]}, inputs=((F(1),),)))
    with pytest.raises(InvalidArgument, match="trainable names parameter 'Z'"):
        check_well_formed(_ir(ok, {"W": [[1]]}, trainable=["Z"], inputs=((F(1),),)))
    with pytest.raises(InvalidArgument, match="empty network"):
        check_well_formed(Network((), "x", QArray.from_fractions([[1]]), {}, BINARY32, (), ()))


def test_tie_dataclass_and_node_attrs():
    t = Tie("0.weight", (1, 0), -1)
    assert (t.param, t.index, t.sign) == ("0.weight", (1, 0), -1)
    n = Node("a", "act", ("x",), (2,), RELU)
    assert n.attr("activation").name == "relu" and n.attr("missing", 3) == 3
    assert np.array_equal(np.array(n.shape), np.array([2]))


@settings(max_examples=20)
@given(st.integers(1, 3))
def test_output_labels(batch):
    doc = two_layer(inputs=[[1, 2]] * batch)
    net = from_dict(doc)
    assert net.output_labels() == [f"out[{b},0]" for b in range(batch)]
    doc["objective"] = {"type": "sum"}
    assert from_dict(doc).output_labels() == ["objective"]
