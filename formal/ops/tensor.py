"""Tensor ops of real models: matmul, mul, view, transpose, pad, rsqrt_scale.

Registered in the rule tables of :mod:`formal.ops` on import (by
:mod:`formal.conv`).  All are smooth; float rules carry rigorous bounds.

=============  =========================  =====================================
op             inputs                     meaning (per sample; torch layouts)
=============  =========================  =====================================
matmul         x, W                       ``x @ W`` (W unbatched, shape (n, m))
mul            a, b                       ``a * b`` elementwise, broadcasting
view           x                          reshape to ``shape`` (also unbatched)
transpose      x                          ``attrs['perm']`` (per sample if batched)
pad            x                          constant padding ``attrs['pads']``
rsqrt_scale    x                          ``x / sqrt(attrs['value'])``: irrational,
                                          so the exact pass raises NotExact and
                                          only the float filter / ball
                                          enclosures (:mod:`formal.enclosure`) see it
=============  =========================  =====================================
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.network import Network, Node
from formal.core.qarray import QArray, int_matmul
from formal.errors import NotExact
from formal.ops.basic import ETA, EXACT, FLOAT, JVP, VJP, U, gamma, is_batched, lift, unbroadcast


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    z = np.empty(shape, dtype=object)
    z[...] = 0
    return z


def _expand(t: QArray, shape: tuple[int, ...]) -> QArray:
    if t.shape == shape:
        return t
    return QArray(np.broadcast_to(t.num, shape).copy(), t.den)


def _param_name(net: Network, name: str) -> str | None:
    n = net.node(name)
    return n.attr("name") if n.op == "param" else None


def float_dot_bound(
    a: np.ndarray, ea: np.ndarray, b: np.ndarray, eb: np.ndarray, n: int
) -> np.ndarray:
    """Rigorous bound on |fl(a @ b) - a_exact @ b_exact| for 2-D a (N, n), b (n, M)."""
    absb = np.abs(b)
    bound = (gamma(n + 2) * np.abs(a) + ea) @ absb + (n + 2) * ETA
    if np.any(eb):
        bound = bound + (np.abs(a) + ea) @ eb
    return 2.0 * bound


# ---------------------------------------------------------------------------
# matmul: x @ W with W unbatched (n, m)


def _matmul_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x, w = ins
    n = x.shape[-1]
    flat = x.num.reshape(-1, n)
    pname = _param_name(net, node.inputs[1])
    num = net.flint_param(pname).right_mul(flat) if pname else int_matmul(flat, w.num)
    return QArray(num.reshape(x.shape[:-1] + (w.shape[1],)), x.den * w.den)


def _matmul_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    x, w = ins
    xd, wd = tans
    n, m = w.shape
    out: QArray | None = None
    if xd is not None:
        flat = xd.num.reshape(-1, n)
        pname = _param_name(net, node.inputs[1])
        num = net.flint_param(pname).right_mul(flat) if pname else int_matmul(flat, w.num)
        out = QArray(num.reshape(xd.shape[:-1] + (m,)), xd.den * w.den)
    if wd is not None:
        r = wd.shape[0]
        xf = x.num.reshape(-1, n)
        prod = int_matmul(xf, wd.num.transpose(1, 0, 2).reshape(n, r * m))  # (B*L, R*m)
        prod = prod.reshape(x.shape[:-1] + (r, m))
        prod = np.moveaxis(prod, -2, 0)
        term = QArray(prod, x.den * wd.den)
        out = term if out is None else out + term
    return out


def _matmul_vjp(
    node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[Any]
) -> list[QArray | None]:
    x, w = ins
    n, m = w.shape
    r = adj.shape[0]
    out: list[QArray | None] = [None, None]
    if need[0] is not False:
        flat = adj.num.reshape(-1, m)
        pname = _param_name(net, node.inputs[1])
        num = (
            net.flint_param(pname).right_mul(flat, transpose=True)
            if pname
            else int_matmul(flat, w.num.T)
        )
        out[0] = QArray(num.reshape(adj.shape[:-1] + (n,)), adj.den * w.den)
    if need[1] is not False:
        xf = x.num.reshape(-1, n)  # (B*L, n)
        af = adj.num.reshape(r, -1, m).transpose(1, 0, 2).reshape(xf.shape[0], r * m)
        wbar = int_matmul(np.ascontiguousarray(xf.T), af).reshape(n, r, m).transpose(1, 0, 2)
        out[1] = QArray(np.ascontiguousarray(wbar), adj.den * x.den)
    return out


def _matmul_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    x, w = vals
    ex, ew = errs
    n = w.shape[0]
    xf, ef = x.reshape(-1, n), ex.reshape(-1, n)
    y = xf @ w
    bound = float_dot_bound(xf, ef, w, ew, n)
    shape = x.shape[:-1] + (w.shape[1],)
    return y.reshape(shape), bound.reshape(shape)


EXACT["matmul"] = _matmul_exact
JVP["matmul"] = _matmul_jvp
VJP["matmul"] = _matmul_vjp
FLOAT["matmul"] = _matmul_float


# ---------------------------------------------------------------------------
# mul: elementwise product (product rule), numpy broadcasting


def _target(node: Node, net: Network, rows: int) -> tuple[int, ...]:
    if is_batched(net, node.name):
        return (rows, net.batch) + node.shape
    return (rows,) + node.shape


def _mul_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    out: QArray | None = None
    batched_out = is_batched(net, node.name)
    for k in (0, 1):
        t = tans[k]
        if t is None:
            continue
        other = ins[1 - k]
        if batched_out:
            t = lift(t, is_batched(net, node.inputs[k]))
        term = t.mul(other)
        out = term if out is None else out + term
    if out is None:
        return None
    return _expand(out, _target(node, net, out.shape[0]))


def _mul_vjp(
    node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[Any]
) -> list[QArray | None]:
    out: list[QArray | None] = []
    batched_out = is_batched(net, node.name)
    for k, (name, val) in enumerate(zip(node.inputs, ins)):
        if need[k] is False:
            out.append(None)
            continue
        prod = adj.mul(ins[1 - k])
        batched = is_batched(net, name)
        if batched_out:
            shape = val.shape[1:] if batched else val.shape
            out.append(unbroadcast(prod, tuple(shape), batched))
        else:
            out.append(_sum_to(prod, val.shape))
    return out


def _sum_to(a: QArray, shape: tuple[int, ...]) -> QArray:
    """Sum an unbatched adjoint (R, *bshape) down to (R, *shape)."""
    num = a.num
    extra = num.ndim - 1 - len(shape)
    if extra > 0:
        num = num.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i + 1 for i, (p, q) in enumerate(zip(num.shape[1:], shape)) if q == 1 and p != 1)
    if axes:
        num = num.sum(axis=axes, keepdims=True)
    return QArray(num.reshape((a.shape[0],) + tuple(shape)), a.den)


def _mul_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    a, b = vals
    ea, eb = errs
    y = a * b
    err = np.abs(a) * eb + np.abs(b) * ea + ea * eb + U * np.abs(y)
    return y, 2.0 * err + ETA


EXACT["mul"] = lambda node, ins, net: ins[0].mul(ins[1])
JVP["mul"] = _mul_jvp
VJP["mul"] = _mul_vjp
FLOAT["mul"] = _mul_float


# ---------------------------------------------------------------------------
# view (reshape, batched or not) and transpose


def _lead(net: Network, node: Node) -> int:
    """Number of leading axes before the op's own axes: 1 (batch) or 0."""
    return 1 if is_batched(net, node.name) else 0


def _view_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x = ins[0]
    return x.reshape(x.shape[: _lead(net, node)] + node.shape)


def _view_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    t = tans[0]
    if t is None:
        return None
    return t.reshape(t.shape[: 1 + _lead(net, node)] + node.shape)


EXACT["view"] = _view_exact
JVP["view"] = _view_jvp
VJP["view"] = lambda node, ins, adj, net, need: [adj.reshape((adj.shape[0],) + ins[0].shape)]
FLOAT["view"] = lambda node, vals, errs, net: (
    vals[0].reshape(vals[0].shape[: _lead(net, node)] + node.shape),
    errs[0].reshape(errs[0].shape[: _lead(net, node)] + node.shape),
)


def _perm(node: Node, lead: int) -> tuple[int, ...]:
    p = tuple(node.attr("perm"))
    return tuple(range(lead)) + tuple(i + lead for i in p)


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


EXACT["transpose"] = lambda node, ins, net: QArray(
    np.ascontiguousarray(ins[0].num.transpose(_perm(node, _lead(net, node)))), ins[0].den
)
JVP["transpose"] = lambda node, ins, tans, net: (
    None
    if tans[0] is None
    else QArray(
        np.ascontiguousarray(tans[0].num.transpose(_perm(node, 1 + _lead(net, node)))), tans[0].den
    )
)
VJP["transpose"] = lambda node, ins, adj, net, need: [
    QArray(
        np.ascontiguousarray(adj.num.transpose(_inverse(_perm(node, 1 + _lead(net, node))))),
        adj.den,
    )
]
FLOAT["transpose"] = lambda node, vals, errs, net: (
    vals[0].transpose(_perm(node, _lead(net, node))),
    errs[0].transpose(_perm(node, _lead(net, node))),
)


# ---------------------------------------------------------------------------
# pad: constant padding of a batched value; pads = ((before, after), ...) per sample axis


def _pad_widths(node: Node, lead: int) -> list[tuple[int, int]]:
    return [(0, 0)] * lead + [tuple(p) for p in node.attr("pads")]  # type: ignore[misc]


def _padded(num: np.ndarray, widths: list[tuple[int, int]], fill: int) -> np.ndarray:
    """Object-array padding with a Python-int fill (np.pad would insert numpy integers)."""
    shape = tuple(d + a + b for d, (a, b) in zip(num.shape, widths))
    out = np.empty(shape, dtype=object)
    out[...] = fill
    out[tuple(slice(a, a + d) for d, (a, _) in zip(num.shape, widths))] = num
    return out


def _pad_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x = ins[0]
    v = Fraction(node.attr("value", 0))
    den = math.lcm(x.den, v.denominator)
    num = x.num * (den // x.den) if den != x.den else x.num
    return QArray(_padded(num, _pad_widths(node, 1), v.numerator * (den // v.denominator)), den)


def _pad_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    t = tans[0]
    if t is None:
        return None
    return QArray(_padded(t.num, _pad_widths(node, 2), 0), t.den)


def _pad_vjp(
    node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[Any]
) -> list[QArray | None]:
    sl = tuple(slice(None) for _ in range(2)) + tuple(
        slice(b, b + n) for (b, _), n in zip(node.attr("pads"), ins[0].shape[1:])
    )
    return [QArray(np.ascontiguousarray(adj.num[sl]), adj.den)]


def _pad_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    v = Fraction(node.attr("value", 0))
    fv = float(v)
    ev = 0.0 if Fraction(fv) == v else abs(fv) * U + ETA
    w = _pad_widths(node, 1)
    return np.pad(vals[0], w, constant_values=fv), np.pad(errs[0], w, constant_values=ev)


EXACT["pad"] = _pad_exact
JVP["pad"] = _pad_jvp
VJP["pad"] = _pad_vjp
FLOAT["pad"] = _pad_float


# ---------------------------------------------------------------------------
# rsqrt_scale: x / sqrt(r) for a positive constant r (batch-norm statistics)


def rational_sqrt(q: Fraction) -> Fraction | None:
    """sqrt(q) when it is rational, else None."""
    if q < 0:
        return None
    a, b = math.isqrt(q.numerator), math.isqrt(q.denominator)
    if a * a == q.numerator and b * b == q.denominator:
        return Fraction(a, b)
    return None


def _rsqrt_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    raise NotExact(
        f"node {node.name!r}: 1/sqrt(var + epsilon) of a batch normalization is irrational"
    )


def _rsqrt_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    r = node.attr("value")
    rf = r.to_float()
    c = 1.0 / np.sqrt(rf)  # relative error <= 2u (conversion) + u (sqrt) + u (division), all O(u)
    y = vals[0] * c
    err = np.abs(c) * errs[0] * (1 + 8 * U) + 8 * U * np.abs(y) + ETA
    return y, 2.0 * err


EXACT["rsqrt_scale"] = _rsqrt_exact
FLOAT["rsqrt_scale"] = _rsqrt_float


def _no_tangent(node: Node, *args: Any) -> Any:
    raise NotExact(
        f"node {node.name!r}: 1/sqrt(var + epsilon) of a batch normalization is irrational"
    )


JVP["rsqrt_scale"] = _no_tangent
VJP["rsqrt_scale"] = _no_tangent


__all__ = ["float_dot_bound"]
