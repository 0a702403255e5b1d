"""Small binary32 networks with a unit forced onto a kink, for the framework comparisons."""

from __future__ import annotations

import numpy as np

from formal.core.activations import get_activation
from formal.core.builders import dense_network, exact_from_float
from formal.core.network import Network, Node
from formal.core.numbers import parse_format

KINK = {"relu": 0.0, "relu6": 6.0, "hardtanh": -1.0, "hardsigmoid": 3.0}


def _force(value: np.float32, kink: float) -> np.float32 | None:
    """A binary32 bias b with fl(value + b) == kink exactly (None when none is found)."""
    k = np.float32(kink)
    b = np.float32(k - value)
    for _ in range(8):
        s = np.float32(value + b)
        if s == k:
            return b
        b = np.nextafter(b, np.float32(np.inf) if s < k else np.float32(-np.inf))
    return None


def _float_value(net: Network, node: str, conv: str = "hwc") -> np.ndarray:
    from formal.core.activations import parse_preset
    from formal.floatad.arith import arithmetic
    from formal.floatad.passes import float_forward

    ar = arithmetic("binary32", "sequential", True, conv)
    return float_forward(net, ar, parse_preset("pytorch")).values[node]


def dense_kinked(rng: np.random.Generator, widths: list[int], batch: int, act: str) -> Network:
    """A dense net whose unit 0 of layer 0 (sample 0) is exactly on a kink in binary32.

    The bias is chosen so that fl(fl(x . w) + b) is the kink, the dot product
    computed as a sequential fma (what PyTorch, JAX and numpy compute for
    these sizes; measured in tests/test_frameworks.py).
    """
    ws = [rng.standard_normal((o, i)).astype(np.float32) for i, o in zip(widths[:-1], widths[1:])]
    bs = [rng.standard_normal(o).astype(np.float32) for o in widths[1:]]
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    acts = [act] * (len(ws) - 1) + ["identity"]
    net = dense_network(ws, bs, x, acts, numbers="binary32", objective="sum")
    pre = _float_value(net, "0.linear")
    for j in range(widths[1]):
        b = _force(pre[0, j], KINK[act])
        if b is not None:
            bs[0][j] = b
            return dense_network(ws, bs, x, acts, numbers="binary32", objective="sum")
    raise AssertionError("no unit of layer 0 can be forced onto the kink")


def conv_kinked(rng: np.random.Generator, act: str, batch: int = 1, size: int = 3) -> Network:
    """x (B, 2, S, S) -> conv 3x(2,2,2) + bias -> act -> maxpool 2x2 -> flatten -> dense 2.

    The conv bias of a channel puts one of its outputs (0, c, i, 0) exactly on the kink
    (in both reduction orders, channel innermost and outermost).
    """
    B, C, H, W, CO = batch, 2, size, size, 3
    x = rng.standard_normal((B, C, H, W)).astype(np.float32)
    w = rng.standard_normal((CO, C, 2, 2)).astype(np.float32)
    b = rng.standard_normal(CO).astype(np.float32)
    oh = ow = H - 1  # 4
    ph = pw = oh // 2  # 2
    flat = CO * ph * pw
    w2 = rng.standard_normal((2, flat)).astype(np.float32)
    b2 = rng.standard_normal(2).astype(np.float32)
    conv_attrs = (("strides", (1, 1)), ("pads", (0, 0, 0, 0)), ("dilations", (1, 1)), ("groups", 1))
    pool_attrs = (
        ("kernel", (2, 2)),
        ("strides", (2, 2)),
        ("pads", (0, 0, 0, 0)),
        ("dilations", (1, 1)),
        ("ceil_mode", False),
    )
    nodes = (
        Node("x", "input", (), (C, H, W)),
        Node("p:w", "param", (), w.shape, (("name", "0.weight"),)),
        Node("p:b", "param", (), b.shape, (("name", "0.bias"),)),
        Node("conv", "conv2d", ("x", "p:w"), (CO, oh, ow), conv_attrs),
        Node("bv", "view", ("p:b",), (CO, 1, 1)),
        Node("pre", "add", ("conv", "bv"), (CO, oh, ow)),
        Node("act", "act", ("pre",), (CO, oh, ow), (("activation", get_activation(act)),)),
        Node("pool", "maxpool2d", ("act",), (CO, ph, pw), pool_attrs),
        Node("flat", "reshape", ("pool",), (flat,)),
        Node("p:w2", "param", (), w2.shape, (("name", "1.weight"),)),
        Node("p:b2", "param", (), b2.shape, (("name", "1.bias"),)),
        Node("lin", "linear", ("flat", "p:w2"), (2,)),
        Node("out", "add", ("lin", "p:b2"), (2,)),
    )
    net = _conv_net(nodes, x, w, b, w2, b2)
    pre = _float_value(net, "conv")
    pre_chw = _float_value(net, "conv", "chw")  # PyTorch's order with a batch of 1
    for c in range(CO):
        for i in range(oh):
            bc = _force(pre[0, c, i, 0], KINK[act])
            if bc is not None and np.float32(pre_chw[0, c, i, 0] + bc) == np.float32(KINK[act]):
                b[c] = bc
                return _conv_net(nodes, x, w, b, w2, b2)
    raise AssertionError("no channel can be forced onto the kink in both orders")


def _conv_net(
    nodes: tuple[Node, ...],
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    w2: np.ndarray,
    b2: np.ndarray,
) -> Network:
    params = {
        "0.weight": exact_from_float(w),
        "0.bias": exact_from_float(b),
        "1.weight": exact_from_float(w2),
        "1.bias": exact_from_float(b2),
    }
    order = ("0.weight", "0.bias", "1.weight", "1.bias")
    return Network(
        nodes,
        "out",
        exact_from_float(x),
        params,
        parse_format("binary32"),
        order,
        order,
        objective=None,
        objective_kind="vector",
    )


def every_layer_net(act: str) -> Network:
    """conv (pad 1) -> act -> maxpool -> avgpool -> flatten -> linear; small integers."""
    rng = np.random.default_rng(2)
    xs = rng.integers(-2, 3, (2, 2, 4, 4)).astype(np.float64)
    w = rng.integers(-1, 2, (2, 2, 3, 3)).astype(np.float64)
    b = np.array([0.0, 1.0])
    w2 = rng.integers(-2, 3, (2, 2)).astype(np.float64)
    conv = (("strides", (1, 1)), ("pads", (1, 1, 1, 1)), ("dilations", (1, 1)), ("groups", 1))
    mp = (("kernel", (2, 2)), ("strides", (1, 1)), ("pads", (0, 0, 0, 0)))
    ap = (("kernel", (2, 2)), ("strides", (2, 2)), ("pads", (0, 0, 0, 0)))
    a = get_activation(act)
    nodes = (
        Node("x", "input", (), (2, 4, 4)),
        Node("p:w", "param", (), w.shape, (("name", "w"),)),
        Node("p:b", "param", (), b.shape, (("name", "b"),)),
        Node("c", "conv2d", ("x", "p:w"), (2, 4, 4), conv),
        Node("bv", "view", ("p:b",), (2, 1, 1)),
        Node("y", "add", ("c", "bv"), (2, 4, 4)),
        Node("a", "act", ("y",), (2, 4, 4), (("activation", a),)),
        Node("m", "maxpool2d", ("a",), (2, 3, 3), mp),
        Node("p", "avgpool2d", ("m",), (2, 1, 1), ap),
        Node("f", "reshape", ("p",), (2,)),
        Node("p:w2", "param", (), w2.shape, (("name", "w2"),)),
        Node("out", "linear", ("f", "p:w2"), (2,)),
    )
    params = {"w": exact_from_float(w), "b": exact_from_float(b), "w2": exact_from_float(w2)}
    names = ("w", "b", "w2")
    return Network(
        nodes, "out", exact_from_float(xs), params, parse_format("binary64"), names, names
    )
