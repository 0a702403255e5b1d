"""Convolution, pooling and tensor ops: exact values against naive loops, exact JVP/VJP
duality, rigorous float bounds, and the formal-net/1 layer types."""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction

import numpy as np
import pytest

from formal.core.activations import get_activation, parse_preset
from formal.core.network import Network, Node
from formal.core.numbers import parse_format
from formal.core.qarray import QArray
from formal.engine.forward import (
    exact_forward,
    float_pass,
    jvp,
    output_seeds,
    reverse,
)
from formal.engine.verdict import check
from formal.errors import InvalidArgument
from formal.io.formalnet import from_dict
from formal.ops.conv import avg_divisors, window_index

PRESET = parse_preset("pytorch")


def rand_q(rng: random.Random, shape: tuple[int, ...], den: int = 8, span: int = 20) -> QArray:
    vals = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        vals[idx] = Fraction(rng.randint(-span, span), rng.choice([1, 2, den]))
    return QArray.from_fractions(vals)


def naive_conv(x: np.ndarray, w: np.ndarray, stride, pad, dil, groups) -> np.ndarray:
    """Cross-correlation by the definition (Fractions), torch layout."""
    B, C, H, W = x.shape
    CO, Cg, kh, kw = w.shape
    pt, pl, pb, pr = pad
    oh = (H + pt + pb - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (W + pl + pr - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.empty((B, CO, oh, ow), dtype=object)
    og = CO // groups
    for b, o, i, j in itertools.product(range(B), range(CO), range(oh), range(ow)):
        g = o // og
        acc = Fraction(0)
        for c, a, e in itertools.product(range(Cg), range(kh), range(kw)):
            r = i * stride[0] - pt + a * dil[0]
            s = j * stride[1] - pl + e * dil[1]
            if 0 <= r < H and 0 <= s < W:
                acc += w[o, c, a, e] * x[b, g * Cg + c, r, s]
        out[b, o, i, j] = acc
    return out


def conv_net(
    rng: random.Random,
    *,
    C=2,
    H=5,
    W=4,
    CO=4,
    k=(2, 3),
    stride=(1, 2),
    pad=(1, 0, 0, 1),
    dil=(1, 1),
    groups=2,
    B=2,
) -> Network:
    x = rand_q(rng, (B, C, H, W))
    w = rand_q(rng, (CO, C // groups, *k))
    bias = rand_q(rng, (CO,))
    oh = (H + pad[0] + pad[2] - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
    ow = (W + pad[1] + pad[3] - dil[1] * (k[1] - 1) - 1) // stride[1] + 1
    attrs = (("strides", stride), ("pads", pad), ("dilations", dil), ("groups", groups))
    nodes = (
        Node("x", "input", (), (C, H, W)),
        Node("p:w", "param", (), w.shape, (("name", "w"),)),
        Node("p:b", "param", (), bias.shape, (("name", "b"),)),
        Node("conv", "conv2d", ("x", "p:w"), (CO, oh, ow), attrs),
        Node("bv", "view", ("p:b",), (CO, 1, 1)),
        Node("y", "add", ("conv", "bv"), (CO, oh, ow)),
    )
    return Network(
        nodes, "y", x, {"w": w, "b": bias}, parse_format("binary32"), ("w", "b"), ("w", "b")
    )


@pytest.mark.parametrize(
    "cfg",
    [
        dict(),
        dict(groups=1, stride=(1, 1), pad=(0, 0, 0, 0)),
        dict(groups=1, dil=(2, 1), pad=(2, 1, 2, 1), k=(2, 2)),
        dict(C=4, CO=2, groups=2, stride=(2, 2), pad=(1, 1, 1, 1), k=(3, 3), H=6, W=6),
    ],
)
def test_conv2d_matches_the_definition(cfg):
    rng = random.Random(7)
    net = conv_net(rng, **cfg)
    fwd = exact_forward(net, PRESET)
    got = fwd.values["conv"].to_fractions()
    want = naive_conv(
        net.inputs.to_fractions(),
        net.params["w"].to_fractions(),
        net.node("conv").attr("strides"),
        net.node("conv").attr("pads"),
        net.node("conv").attr("dilations"),
        net.node("conv").attr("groups"),
    )
    assert got.shape == want.shape
    assert (got == want).all()


def duality(net: Network, rng: random.Random) -> tuple[Fraction, Fraction]:
    """<c, J d> and <J^T c, d> for a random direction d and cotangent c (exact)."""
    fwd = exact_forward(net, PRESET)
    par = net.parameterization()
    d = {j: Fraction(rng.randint(-9, 9), rng.choice([1, 3])) for j in range(par.size)}
    seeds = output_seeds(net)
    c = rand_q(rng, (1,) + seeds.shape[1:])
    rev = reverse(fwd, {net.output: c})
    grad = par.collect(rev.params, 1).to_fractions()[0]
    lhs = sum((grad[j] * v for j, v in d.items()), Fraction(0))
    out = jvp(fwd, [d]).to_fractions()[0]  # (n_obj,) with identity objective = flat output
    rhs = sum((a * b for a, b in zip(c.to_fractions().reshape(-1), out)), Fraction(0))
    return lhs, rhs


def test_conv_jvp_vjp_duality_exact():
    rng = random.Random(3)
    net = conv_net(rng)
    lhs, rhs = duality(net, rng)
    assert lhs == rhs and lhs != 0


def pool_net(op: str, rng: random.Random, **attrs) -> Network:
    x = rand_q(rng, (2, 3, 5, 6))
    w = rand_q(rng, (3, 1, 1, 1))
    a = dict(
        kernel=(2, 3),
        strides=(2, 2),
        pads=(1, 1, 1, 1),
        dilations=(1, 1),
        ceil_mode=False,
        count_include_pad=False,
    )
    a.update(attrs)
    idx, oh, ow = window_index(
        3, 5, 6, a["kernel"], a["strides"], a["pads"], a["dilations"], a["ceil_mode"]
    )
    nodes = (
        Node("x", "input", (), (3, 5, 6)),
        Node("p:w", "param", (), (3, 1, 1, 1), (("name", "w"),)),
        Node(
            "c",
            "conv2d",
            ("x", "p:w"),
            (3, 5, 6),
            (("strides", (1, 1)), ("pads", (0, 0, 0, 0)), ("dilations", (1, 1)), ("groups", 3)),
        ),
        Node("pool", op, ("c",), (3, oh, ow), tuple(a.items())),
        Node("flat", "reshape", ("pool",), (3 * oh * ow,)),
    )
    return Network(nodes, "flat", x, {"w": w}, parse_format("binary32"), ("w",), ("w",))


@pytest.mark.parametrize(
    "attrs",
    [
        dict(),
        dict(count_include_pad=True),
        dict(ceil_mode=True, count_include_pad=True),
        dict(pads=(0, 0, 0, 0), strides=(1, 1)),
    ],
)
def test_avgpool_divisors_and_values(attrs):
    rng = random.Random(11)
    net = pool_net("avgpool2d", rng, **attrs)
    node = net.node("pool")
    fwd = exact_forward(net, PRESET)
    c = fwd.values["c"].to_fractions()
    got = fwd.values["pool"].to_fractions()
    kh, kw = node.attr("kernel")
    sh, sw = node.attr("strides")
    pt, pl, pb, pr = node.attr("pads")
    H, W = 5, 6
    for b, ch, i, j in np.ndindex(*got.shape):
        rows = [i * sh - pt + a for a in range(kh)]
        cols = [j * sw - pl + e for e in range(kw)]
        inside = [(r, s) for r in rows for s in cols if 0 <= r < H and 0 <= s < W]
        if node.attr("count_include_pad"):  # torch: the window clipped to the padded extent
            div = sum(1 for r in rows for s in cols if -pt <= r < H + pb and -pl <= s < W + pr)
        else:
            div = len(inside)
        assert got[b, ch, i, j] == sum(c[b, ch, r, s] for r, s in inside) / div
    assert avg_divisors(node, (3, 5, 6)).min() >= 1
    lhs, rhs = duality(net, rng)
    assert lhs == rhs


def test_maxpool_values_and_duality_without_ties():
    rng = random.Random(5)
    net = pool_net("maxpool2d", rng)
    fwd = exact_forward(net, PRESET)
    assert not fwd.kinks  # random rationals: no ties here
    got = fwd.values["pool"].to_fractions()
    c = fwd.values["c"].to_fractions()
    idx, _, _ = window_index(3, 5, 6, (2, 3), (2, 2), (1, 1, 1, 1), (1, 1))
    for b, ch in itertools.product(range(2), range(3)):
        flat = c[b].reshape(-1)
        for p in range(idx.shape[1]):
            assert got[b, ch].reshape(-1)[p] == max(flat[i] for i in idx[ch, p] if i >= 0)
    lhs, rhs = duality(net, rng)
    assert lhs == rhs


def test_matmul_mul_view_transpose_pad_duality():
    rng = random.Random(9)
    x = rand_q(rng, (2, 3, 4))
    nodes = (
        Node("x", "input", (), (3, 4)),
        Node("p:W", "param", (), (4, 5), (("name", "W"),)),
        Node("p:g", "param", (), (5,), (("name", "g"),)),
        Node("mm", "matmul", ("x", "p:W"), (3, 5)),
        Node("gv", "view", ("p:g",), (1, 5)),
        Node("m", "mul", ("mm", "gv"), (3, 5)),
        Node("sq", "mul", ("m", "m"), (3, 5)),
        Node("t", "transpose", ("sq",), (5, 3), (("perm", (1, 0)),)),
        Node("pd", "pad", ("t",), (6, 5), (("pads", ((0, 1), (1, 1))), ("value", Fraction(1, 3)))),
    )
    net = Network(
        nodes,
        "pd",
        x,
        {"W": rand_q(rng, (4, 5)), "g": rand_q(rng, (5,))},
        parse_format("binary32"),
        ("W", "g"),
        ("W", "g"),
    )
    fwd = exact_forward(net, PRESET)
    mm = np.einsum("bij,jk->bik", x.to_fractions(), net.params["W"].to_fractions())
    want = (mm * net.params["g"].to_fractions()) ** 2
    got = fwd.values["pd"].to_fractions()
    assert (got[:, :5, 1:4] == want.transpose(0, 2, 1)).all()
    assert (got[:, 5, :] == Fraction(1, 3)).all() and (got[:, :, 0] == Fraction(1, 3)).all()
    lhs, rhs = duality(net, rng)
    assert lhs == rhs and lhs != 0


def test_float_rules_bound_their_error():
    """|float - exact| <= err for every op of a conv/pool net with non-dyadic values."""
    rng = random.Random(13)
    net = conv_net(rng, groups=1)
    relu = get_activation("relu")
    nodes = net.nodes + (
        Node("r", "act", ("y",), net.node("y").shape, (("activation", relu),)),
        Node(
            "ap",
            "avgpool2d",
            ("r",),
            (4, 2, 1),
            (
                ("kernel", (2, 2)),
                ("strides", (2, 2)),
                ("pads", (0, 0, 0, 0)),
                ("count_include_pad", False),
            ),
        ),
        Node(
            "mp",
            "maxpool2d",
            ("y",),
            (4, 2, 1),
            (("kernel", (2, 2)), ("strides", (2, 2)), ("pads", (0, 0, 0, 0))),
        ),
        Node("s", "add", ("ap", "mp"), (4, 2, 1)),
    )
    x = QArray.from_fractions(
        np.vectorize(lambda v: v / 7, otypes=[object])(net.inputs.to_fractions())
    )
    net = Network(nodes, "s", x, net.params, net.numbers, net.param_order, net.trainable)
    fwd = exact_forward(net, PRESET)
    fp = float_pass(net, stop_on_suspect=False)
    assert fp.complete
    vals, errs = fp.vals, fp.errs
    for node in net.nodes:
        exact = fwd.values[node.name].to_fractions()
        for idx in np.ndindex(*exact.shape):
            assert abs(Fraction(float(vals[node.name][idx])) - exact[idx]) <= Fraction(
                float(errs[node.name][idx])
            ), node.name


def conv_doc() -> dict:
    return {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[1, 2, 3, 4, 5, 6, 7, 8, 9]],
        "input_shape": [1, 3, 3],
        "layers": [
            {"type": "conv2d", "out_channels": 2, "kernel_size": 2, "activation": "relu"},
            {"type": "maxpool2d", "kernel_size": 2, "stride": 1},
            {"type": "flatten"},
            {"type": "dense", "units": 1},
        ],
        "params": {
            "0.weight": [[[[1, 0], [0, -1]]], [[[0, 1], [1, 0]]]],
            "0.bias": [4, -6],
            "3.weight": [[1, 1]],
            "3.bias": [0],
        },
    }


def test_formalnet_conv_layers_build_shared_bias_graph():
    net = from_dict(conv_doc())
    ops = [(n.name, n.op, n.shape) for n in net.nodes if n.op != "param"]
    assert ("0.conv", "conv2d", (2, 2, 2)) in ops and ("1.maxpool", "maxpool2d", (2, 1, 1)) in ops
    assert net.param_count() == 8 + 2 + 2 + 1
    v = check(net)
    assert v.hypothesis_h is False and "shared by broadcasting" in v.hypothesis_reason
    # channel 0: 4 + x00 - x11 = 0 at all four positions; channel 1: -6 + x01 + x10 = 0 at (0, 0)
    assert v.kink_neurons >= 5 and v.method == "kink-graph-lra"
    assert v.differentiable is False and v.witness is not None and v.witness.kind == "non-additive"


def test_formalnet_residual_add_and_avgpool():
    doc = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [[1, -2, 3, -4]],
        "input_shape": [1, 2, 2],
        "layers": [
            {"type": "conv2d", "out_channels": 1, "kernel_size": 1, "activation": "relu"},
            {"type": "add", "from": "input", "activation": "relu"},
            {"type": "avgpool2d", "kernel_size": 2},
            {"type": "flatten"},
        ],
        "params": {"0.weight": [[[[2]]]], "0.bias": ["1/2"]},
    }
    net = from_dict(doc)
    fwd = exact_forward(net, PRESET)
    # relu(relu(2 x + 1/2) + x) averaged: x = 1 -> 3.5, -2 -> 0, 3 -> 9.5, -4 -> 0
    assert fwd.values[net.output].to_fractions().reshape(-1).tolist() == [Fraction(13, 4)]


@pytest.mark.parametrize(
    "layer, field",
    [
        ({"type": "conv2d", "kernel_size": 2}, "out_channels"),
        ({"type": "conv2d", "out_channels": 2, "kernel_size": 4}, "fits the padded input"),
        ({"type": "maxpool2d", "kernel_size": 2, "tie": "middle"}, "tie"),
        ({"type": "add", "from": 3}, "from"),
        ({"type": "dense", "units": 2}, "1-D input"),
    ],
)
def test_formalnet_layer_errors_name_the_field(layer, field):
    doc = conv_doc()
    doc["layers"] = [layer]
    with pytest.raises(InvalidArgument, match=field):
        from_dict(json.loads(json.dumps(doc)))
