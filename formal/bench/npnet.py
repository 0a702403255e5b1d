"""A plain numpy float64 forward + backward pass of a loaded network: the conv bench baseline.

Convolutions go through im2col (a gather into (B, P, K) window columns and
one BLAS product), max-pools through a gather and argmax, dense layers
through one product; the backward pass computes every parameter's gradient
of the sum of the outputs, like a training step.  Index tables are built
once, before timing (a framework caches them too).  Supported ops: input,
param, const, conv2d (one group), view, reshape, add, sub, act (ReLU),
linear, maxpool2d; others raise :class:`~formal.errors.UnsupportedOp`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from formal.core.floatbound import to_float
from formal.core.graph import is_batched
from formal.core.network import Network
from formal.errors import UnsupportedOp
from formal.ops.conv import conv_tables, gather_padded, geometry, scatter_add


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...], batched: bool) -> np.ndarray:
    full = g.shape
    target = ((full[0],) + shape) if batched else shape
    if len(full) > len(target):
        g = g.sum(axis=tuple(range(len(full) - len(target))))
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, target)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True).reshape(target) if axes else g.reshape(target)


def numpy_pass(net: Network) -> Callable[[], dict[str, np.ndarray]]:
    """A function running the float64 forward + backward pass of ``net`` (returns gradients)."""
    x0 = to_float(net.inputs)[0]
    params = {name: to_float(q)[0] for name, q in net.params.items()}
    B = x0.shape[0]
    tables: dict[str, Any] = {}
    for node in net.nodes:
        shape_in = net.node(node.inputs[0]).shape if node.inputs else ()
        if node.op == "conv2d":
            w = params[net.node(node.inputs[1]).attr("name")]
            tabs, oh, ow, groups = conv_tables(node, shape_in, w.shape)
            if groups != 1:
                raise UnsupportedOp("numpy baseline: grouped convolutions")
            tables[node.name] = tabs[0]
        elif node.op == "maxpool2d":
            idx, oh, ow = geometry(node, shape_in)
            tables[node.name] = idx.reshape(-1, idx.shape[-1])
        elif node.op == "act":
            if node.attr("activation").name != "relu":
                raise UnsupportedOp("numpy baseline: only ReLU activations")
        elif node.op not in ("input", "param", "const", "view", "reshape", "add", "sub", "linear"):
            raise UnsupportedOp(f"numpy baseline: op {node.op!r}")
    batched = {n.name: is_batched(net, n.name) for n in net.nodes}

    def run() -> dict[str, np.ndarray]:
        v: dict[str, np.ndarray] = {}
        keep: dict[str, Any] = {}
        for node in net.nodes:
            op, ins = node.op, [v[i] for i in node.inputs]
            if op == "input":
                v[node.name] = x0
            elif op == "param":
                v[node.name] = params[node.attr("name")]
            elif op == "const":
                v[node.name] = node.attr("value").to_float()
            elif op in ("view", "reshape"):
                lead = (B,) if batched[node.name] else ()
                v[node.name] = ins[0].reshape(lead + node.shape)
            elif op == "add":
                v[node.name] = ins[0] + ins[1]
            elif op == "sub":
                v[node.name] = ins[0] - ins[1]
            elif op == "act":
                keep[node.name] = ins[0] > 0
                v[node.name] = np.maximum(ins[0], 0)
            elif op == "linear":
                v[node.name] = ins[0] @ ins[1].T
            elif op == "conv2d":
                tab = tables[node.name]
                cols = gather_padded(ins[0].reshape(B, -1), tab)  # (B, P, K)
                keep[node.name] = cols
                y = cols @ ins[1].reshape(ins[1].shape[0], -1).T  # (B, P, CO)
                v[node.name] = y.transpose(0, 2, 1).reshape((B,) + node.shape)
            else:  # maxpool2d
                tab = tables[node.name]
                win = gather_padded(ins[0].reshape(B, -1), tab, -np.inf)  # (B, n_out, K)
                arg = win.argmax(axis=-1)
                keep[node.name] = np.take_along_axis(
                    np.broadcast_to(tab, win.shape), arg[..., None], axis=-1
                )[..., 0]
                v[node.name] = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0].reshape(
                    (B,) + node.shape
                )
        grads: dict[str, np.ndarray] = {net.output: np.ones_like(v[net.output])}
        out: dict[str, np.ndarray] = {}

        def give(name: str, g: np.ndarray) -> None:
            if net.node(name).op in ("input", "const"):
                return
            grads[name] = grads[name] + g if name in grads else g

        for node in reversed(net.nodes):
            g = grads.pop(node.name, None)
            if g is None:
                continue
            op, names = node.op, node.inputs
            if op == "param":
                out[node.attr("name")] = g
            elif op in ("view", "reshape"):
                give(names[0], g.reshape(v[names[0]].shape))
            elif op in ("add", "sub"):
                for k, name in enumerate(names):
                    part = _unbroadcast(g, net.node(name).shape, batched[name])
                    give(name, -part if (op == "sub" and k == 1) else part)
            elif op == "act":
                give(names[0], g * keep[node.name])
            elif op == "linear":
                give(names[1], g.T @ v[names[0]])
                give(names[0], g @ v[names[1]])
            elif op == "conv2d":
                w = v[names[1]]
                gy = g.reshape(B, w.shape[0], -1).transpose(0, 2, 1)  # (B, P, CO)
                cols = keep[node.name]
                give(names[1], np.einsum("bpo,bpk->ok", gy, cols).reshape(w.shape))
                if net.node(names[0]).op != "input":
                    gc = gy @ w.reshape(w.shape[0], -1)  # (B, P, K)
                    gx = np.zeros((B, int(np.prod(v[names[0]].shape[1:]))))
                    scatter_add(gx, tables[node.name], gc)  # col2im
                    give(names[0], gx.reshape(v[names[0]].shape))
            else:  # maxpool2d
                gx = np.zeros((B, int(np.prod(v[names[0]].shape[1:]))))
                np.put_along_axis(gx, keep[node.name], g.reshape(B, -1), axis=1)
                give(names[0], gx.reshape(v[names[0]].shape))
        return out

    return run


__all__ = ["numpy_pass"]
