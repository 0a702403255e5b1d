"""Forward and reverse passes of a Network in a working precision, every operation rounded.

:func:`float_forward` evaluates every node in the :class:`Arithmetic`'s dtype
and records the *float kink touches*: entries of an activation whose float
pre-activation equals a kink exactly, and max-pool windows whose float
maximum is attained by two or more entries (only at nodes that depend on a
trainable parameter, like the engine's kink nodes).  :func:`float_backward`
runs reverse mode from output seeds, with the preset's proxies at the touches
and its tie rule at max-pool ties, and returns the gradient of each trainable
tensor in the same precision.

Reductions (``linear``, ``matmul``, ``conv2d`` (im2col, reduction index in
(channel, kernel row, kernel column) order), ``avgpool2d`` (window sum, then
one division), bias and broadcast sums in reverse mode) use the arithmetic's
order; transposes of products in reverse mode are matrix products in the
same order (``dx = adj @ W``, ``dW = adj^T @ x``, summing over the batch last
to first... in index order).  Max-pool scatter and conv input adjoints
accumulate sequentially in window order (``numpy.add.at``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from formal.core.activations import Preset
from formal.core.graph import is_batched, trainable_dependence
from formal.core.network import Network, Node
from formal.errors import InvalidArgument, MissingRule
from formal.floatad.acts import Style, backward, forward, kink_masks
from formal.floatad.arith import Arithmetic
from formal.ops.conv import avg_divisors, conv_tables, gather_padded, geometry, scatter_add
from formal.ops.pool import tie_rule

TouchKind = Literal["act", "tie"]


@dataclass(frozen=True, slots=True)
class FloatTouch:
    """A float kink touch: ``node[sample, index]`` (per-sample flat index of the op's output).

    ``value`` is the float pre-activation (= the kink) or the tied float
    maximum; ``inputs`` the tied window entries (per-sample flat indices of
    the max-pool input), or the unit itself for an activation.
    """

    node: str
    sample: int
    index: int
    kind: TouchKind
    value: Fraction
    inputs: tuple[int, ...]


@dataclass
class FloatForward:
    """Values of every node in the working precision, the kink touches and the ops' states."""

    net: Network
    arith: Arithmetic
    preset: Preset
    style: Style
    values: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)
    touches: list[FloatTouch] = field(default_factory=list)


def _lead(net: Network, node: Node) -> int:
    return 1 if is_batched(net, node.name) else 0


def machine_params(net: Network, ar: Arithmetic) -> dict[str, np.ndarray]:
    """Every parameter tensor rounded (nearest even) to the format, as dtype arrays."""
    return {name: ar.from_exact(q.to_fractions()) for name, q in net.params.items()}


def float_forward(
    net: Network,
    arith: Arithmetic,
    preset: Preset,
    *,
    style: Style = "pytorch",
    params: Mapping[str, np.ndarray] | None = None,
    inputs: np.ndarray | None = None,
) -> FloatForward:
    """The forward pass in ``arith``; ``params``/``inputs`` default to the net's, rounded."""
    ar = arith
    ps = (
        machine_params(net, ar) if params is None else {k: np.asarray(v) for k, v in params.items()}
    )
    for name, v in ps.items():
        if v.dtype != ar.dtype:
            raise InvalidArgument(f"expected dtype {ar.dtype} for parameter {name}, got {v.dtype}")
    x0 = ar.from_exact(net.inputs.to_fractions()) if inputs is None else np.asarray(inputs)
    if x0.dtype != ar.dtype:
        raise InvalidArgument(f"expected dtype {ar.dtype} for the inputs, got {x0.dtype}")
    ff = FloatForward(net, ar, preset, style)
    dep = trainable_dependence(net)
    vals = ff.values
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for node in net.nodes:
            ins = [vals[i] for i in node.inputs]
            vals[node.name] = _forward_op(ff, node, ins, ps, x0, dep[node.name])
    return ff


def _forward_op(
    ff: FloatForward,
    node: Node,
    ins: list[np.ndarray],
    ps: Mapping[str, np.ndarray],
    x0: np.ndarray,
    depends: bool,
) -> np.ndarray:
    ar, net, op = ff.arith, ff.net, node.op
    dt = ar.dtype
    if op == "input":
        return x0
    if op == "param":
        return ps[node.attr("name")]
    if op == "const":
        return ar.from_exact(node.attr("value").to_fractions())
    if op in ("linear", "matmul"):
        x, w = ins
        wm = w.T if op == "linear" else w
        y = ar.matmul(x.reshape(-1, x.shape[-1]), wm)
        return y.reshape(x.shape[:-1] + (wm.shape[1],))
    if op == "add":
        return (ins[0] + ins[1]).astype(dt)
    if op == "sub":
        return (ins[0] - ins[1]).astype(dt)
    if op == "mul":
        return (ins[0] * ins[1]).astype(dt)
    if op == "neg":
        return -ins[0]
    if op == "scale":
        return (ins[0] * ar.from_exact(node.attr("value").to_fractions())).astype(dt)
    if op in ("reshape", "view"):
        x = ins[0]
        return x.reshape(x.shape[: _lead(net, node)] + node.shape)
    if op == "transpose":
        lead = _lead(net, node)
        return np.transpose(ins[0], _perm(node, lead))
    if op == "pad":
        lead = _lead(net, node)
        widths = [(0, 0)] * lead + [tuple(p) for p in node.attr("pads")]
        fill = ar.const(node.attr("value", 0))
        return np.pad(ins[0], widths, constant_values=fill).astype(dt)
    if op == "rsqrt_scale":
        r = ar.from_exact(node.attr("value").to_fractions())
        return (ins[0] / np.sqrt(r)).astype(dt)
    if op == "conv2d":
        return _conv_forward(ar, node, ins[0], ins[1])
    if op == "avgpool2d":
        x = ins[0]
        idx, oh, ow = geometry(node, x.shape[1:])
        B, C = x.shape[0], x.shape[1]
        win = gather_padded(x.reshape(B, -1), idx.reshape(-1), dt.type(0))
        win = win.reshape(B, C, oh * ow, -1)
        s = ar.sum_terms(win, axis=-1)
        div = avg_divisors(node, x.shape[1:]).astype(dt)
        return (s / div).astype(dt).reshape(B, C, oh, ow)
    if op == "act":
        act = node.attr("activation")
        x = ins[0]
        if depends:
            for c, mask in kink_masks(act, x, ar):
                for b, i in zip(*np.nonzero(mask.reshape(x.shape[0], -1))):
                    ff.touches.append(FloatTouch(node.name, int(b), int(i), "act", c, (int(i),)))
        return forward(act, x, ar, ff.style)
    if op == "maxpool2d":
        return _maxpool_forward(ff, node, ins[0], depends)
    raise MissingRule(f"op {op!r} (node {node.name!r}) has no float AD rule")


def _perm(node: Node, lead: int) -> tuple[int, ...]:
    return tuple(range(lead)) + tuple(int(i) + lead for i in node.attr("perm"))


def _conv_perm(ar: Arithmetic, w_shape: tuple[int, ...]) -> np.ndarray:
    """Column order of the im2col reduction: (row, column, channel) for ``hwc``, else natural."""
    _, Cg, kh, kw = w_shape
    K = kh * kw
    if ar.conv_reduction == "chw":
        return np.arange(Cg * K, dtype=np.int64)
    return np.array([c * K + k for k in range(K) for c in range(Cg)], dtype=np.int64)


def _conv_geometry(
    ar: Arithmetic, node: Node, x: np.ndarray, w: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, int, int, int]:
    """im2col tables and flat weights, columns in the arithmetic's convolution reduction order.

    Measured on CPU (docs/floatad.md): JAX (XLA) and PyTorch with a batch of 2
    or more (oneDNN) reduce with the channel innermost (``hwc``), PyTorch with
    a batch of 1 channel outermost (``chw``); both as a sequential fma.
    """
    CO = w.shape[0]
    tables, oh, ow, g = conv_tables(node, x.shape[1:], w.shape)
    perm = _conv_perm(ar, w.shape)
    return [t[:, perm] for t in tables], w.reshape(CO, -1)[:, perm], oh, ow, g


def _conv_forward(ar: Arithmetic, node: Node, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    B = x.shape[0]
    CO = w.shape[0]
    tables, wflat, oh, ow, g = _conv_geometry(ar, node, x, w)
    og = CO // g
    flat = x.reshape(B, -1)
    outs = []
    for gi, tab in enumerate(tables):
        cols = gather_padded(flat, tab, ar.dtype.type(0)).reshape(B * oh * ow, tab.shape[1])
        y = ar.matmul(cols, wflat[gi * og : (gi + 1) * og].T)
        outs.append(y.reshape(B, oh, ow, og))
    y = np.concatenate(outs, axis=-1) if g > 1 else outs[0]
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _maxpool_forward(ff: FloatForward, node: Node, x: np.ndarray, depends: bool) -> np.ndarray:
    B, C = x.shape[0], x.shape[1]
    idx, oh, ow = geometry(node, x.shape[1:])
    table = idx.reshape(C * oh * ow, -1)  # (n_out, K) flat input indices, -1 in padding
    valid = table >= 0
    win = gather_padded(x.reshape(B, -1), table, ar_neg_inf(ff.arith))  # (B, n_out, K)
    best = win.max(axis=-1)
    eq = (win == best[..., None]) & valid[None]
    K = table.shape[1]
    first = eq.argmax(axis=-1)
    last = K - 1 - eq[..., ::-1].argmax(axis=-1)
    rules = np.array([tie_rule(node, ff.preset, j) == "first" for j in range(table.shape[0])])
    choice = np.where(rules[None, :], first, last)
    chosen = np.take_along_axis(np.broadcast_to(table, eq.shape), choice[..., None], -1)[..., 0]
    ff.states[node.name] = chosen  # (B, n_out) flat input index AD sends the gradient to
    if depends and K > 1:
        ties = eq.sum(axis=-1) > 1
        for b, j in zip(*np.nonzero(ties)):
            tied = tuple(int(t) for t in table[j][eq[b, j]])
            v = Fraction(float(best[b, j]))
            ff.touches.append(FloatTouch(node.name, int(b), int(j), "tie", v, tied))
    return best.reshape(B, C, oh, ow)


def ar_neg_inf(ar: Arithmetic) -> Any:
    """-inf in the working dtype (padding never wins a max)."""
    return ar.dtype.type(-np.inf)


# ---------------------------------------------------------------------------
# reverse mode


def _unbroadcast(ar: Arithmetic, adj: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum an adjoint (R, *full) down to (R, *shape) in the arithmetic's order."""
    R = adj.shape[0]
    body = adj.shape[1:]
    target = (1,) * (len(body) - len(shape)) + tuple(shape)
    keep = [i for i, (a, t) in enumerate(zip(body, target)) if not (t == 1 and a != 1)]
    summed = [i for i in range(len(body)) if i not in keep]
    if not summed:
        return adj.reshape((R,) + tuple(shape))
    moved = np.moveaxis(
        adj, [1 + i for i in summed], list(range(len(body) + 1 - len(summed), len(body) + 1))
    )
    lead = moved.shape[: 1 + len(keep)]
    out = ar.sum_terms(moved.reshape(lead + (-1,)), axis=-1)
    return out.reshape((R,) + tuple(shape))


def float_backward(ff: FloatForward, seeds: np.ndarray) -> dict[str, np.ndarray]:
    """Reverse mode from output seeds (R, B, *out_shape): gradient (R, *shape) of each trainable
    tensor, in the working precision (a tensor used twice accumulates in node order)."""
    net, ar = ff.net, ff.arith
    dt = ar.dtype
    dep = trainable_dependence(net)
    adj: dict[str, np.ndarray] = {net.output: np.asarray(seeds, dtype=dt)}
    grads: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for node in reversed(net.nodes):
            a = adj.pop(node.name, None)
            if a is None or not dep[node.name]:
                continue
            if node.op == "param":
                name = node.attr("name")
                if name in net.trainable:
                    grads[name] = a if name not in grads else (grads[name] + a).astype(dt)
                continue
            ins = [ff.values[i] for i in node.inputs]
            contribs = _backward_op(ff, node, ins, a)
            for name, c in zip(node.inputs, contribs):
                if c is None or not dep[name]:
                    continue
                prev = adj.get(name)
                adj[name] = c.astype(dt) if prev is None else (prev + c).astype(dt)
    return grads


def _backward_op(
    ff: FloatForward, node: Node, ins: list[np.ndarray], a: np.ndarray
) -> list[np.ndarray | None]:
    ar, net, op = ff.arith, ff.net, node.op
    dt = ar.dtype
    R = a.shape[0]
    if op in ("linear", "matmul"):
        x, w = ins
        wm = w.T if op == "linear" else w  # y = x @ wm
        n, m = wm.shape
        a2 = a.reshape(-1, m)
        dx = ar.matmul(a2, wm.T).reshape((R,) + x.shape)
        x2 = x.reshape(-1, n)
        rows = [ar.matmul(x2.T, a[r].reshape(-1, m)) for r in range(R)]  # (n, m) each
        dwm = np.stack(rows) if rows else np.zeros((0, n, m), dtype=dt)
        dw = np.swapaxes(dwm, 1, 2) if op == "linear" else dwm
        return [dx, np.ascontiguousarray(dw)]
    if op in ("add", "sub", "mul"):
        out: list[np.ndarray | None] = []
        for k, x in enumerate(ins):
            if op == "mul":
                g = (a * ins[1 - k]).astype(dt)
            else:
                g = -a if (op == "sub" and k == 1) else a
            out.append(_unbroadcast(ar, g, x.shape))
        return out
    if op == "neg":
        return [-a]
    if op == "scale":
        return [(a * ar.from_exact(node.attr("value").to_fractions())).astype(dt)]
    if op in ("reshape", "view"):
        return [a.reshape((R,) + ins[0].shape)]
    if op == "transpose":
        perm = _perm(node, _lead(net, node))
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        return [np.transpose(a, (0,) + tuple(i + 1 for i in inv))]
    if op == "pad":
        lead = _lead(net, node)
        sl = tuple(
            slice(b, b + d)
            for (b, _), d in zip(
                [(0, 0)] * lead + [tuple(p) for p in node.attr("pads")], ins[0].shape
            )
        )
        return [a[(slice(None),) + sl]]
    if op == "rsqrt_scale":
        r = ar.from_exact(node.attr("value").to_fractions())
        return [(a / np.sqrt(r)).astype(dt)]
    if op == "act":
        act = node.attr("activation")
        x = ins[0]
        y = ff.values[node.name]
        return [backward(node, act, x, y, a, ar, ff.preset, ff.style)]
    if op == "maxpool2d":
        x = ins[0]
        B = x.shape[0]
        chosen = ff.states[node.name]  # (B, n_out)
        dx = np.zeros((R, B, int(np.prod(x.shape[1:]))), dtype=dt)
        af = a.reshape(R, B, -1)
        for b in range(B):
            scatter_add(dx[:, b], chosen[b], af[:, b])
        return [dx.reshape((R,) + x.shape)]
    if op == "avgpool2d":
        x = ins[0]
        B, C = x.shape[0], x.shape[1]
        idx, oh, ow = geometry(node, x.shape[1:])
        div = avg_divisors(node, x.shape[1:]).astype(dt)
        g = (a.reshape(R, B, C, oh * ow) / div).astype(dt)
        K = idx.shape[-1]
        vals = np.broadcast_to(g[..., None], (R, B, C, oh * ow, K)).reshape(R * B, -1)
        dx = np.zeros((R * B, int(np.prod(x.shape[1:]))), dtype=dt)
        scatter_add(dx, idx.reshape(-1), vals)
        return [dx.reshape((R,) + x.shape)]
    if op == "conv2d":
        return _conv_backward(ar, node, ins[0], ins[1], a)
    raise MissingRule(f"op {op!r} (node {node.name!r}) has no float AD reverse rule")


def _filter_grad(ar: Arithmetic, ag: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Weight gradient (og, KK) from adjoints (B, P, og) and im2col columns (B, P, KK)."""
    og, kk = ag.shape[-1], cols.shape[-1]
    if ar.filter_grad == "sample_major":
        return ar.matmul(ag.reshape(-1, og).T, cols.reshape(-1, kk))
    if ar.filter_grad == "position_major":
        a2 = ag.transpose(1, 0, 2).reshape(-1, og)
        return ar.matmul(a2.T, cols.transpose(1, 0, 2).reshape(-1, kk))
    per = np.stack([ar.matmul(ag[b].T, cols[b]) for b in range(ag.shape[0])], axis=-1)
    return ar.sum_terms(per, axis=-1)


def _conv_backward(
    ar: Arithmetic, node: Node, x: np.ndarray, w: np.ndarray, a: np.ndarray
) -> list[np.ndarray | None]:
    dt = ar.dtype
    R, B = a.shape[0], x.shape[0]
    CO, Cg, kh, kw = w.shape
    tables, wflat, oh, ow, g = _conv_geometry(ar, node, x, w)
    og = CO // g
    P = oh * ow
    flat = x.reshape(B, -1)
    dx = np.zeros((R * B, flat.shape[1]), dtype=dt)
    dw = np.zeros((R, CO, wflat.shape[1]), dtype=dt)
    at = a.reshape(R, B, CO, P).transpose(0, 1, 3, 2)  # (R, B, P, CO)
    for gi, tab in enumerate(tables):
        wg = wflat[gi * og : (gi + 1) * og]  # (og, KK)
        ag = at[..., gi * og : (gi + 1) * og]  # (R, B, P, og)
        dcols = ar.matmul(ag.reshape(-1, og), wg).reshape(R * B, P * tab.shape[1])
        scatter_add(dx, tab.reshape(-1), dcols)
        cols = gather_padded(flat, tab, dt.type(0)).reshape(B, P, tab.shape[1])
        for r in range(R):
            dw[r, gi * og : (gi + 1) * og] = _filter_grad(ar, ag[r], cols)
    inv = np.argsort(_conv_perm(ar, w.shape))
    return [dx.reshape((R,) + x.shape), dw[:, :, inv].reshape((R,) + w.shape)]


__all__ = [
    "FloatForward",
    "FloatTouch",
    "TouchKind",
    "float_backward",
    "float_forward",
    "machine_params",
]
