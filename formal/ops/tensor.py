"""Tensor ops of real models: matmul, mul, view, transpose, pad, rsqrt_scale.

Every op registers all of its rules here (:func:`formal.core.rules.register`).
All are smooth; float rules carry rigorous bounds.

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
                                          enclosures (:mod:`formal.engine.ball`) see it
=============  =========================  =====================================
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.balls import ball, ball_matmul, to_balls
from formal.core.floatbound import ETA, U, gamma
from formal.core.graph import is_batched
from formal.core.network import Network, Node
from formal.core.qarray import QArray, int_matmul
from formal.core.rules import register
from formal.core.signatures import Oracle, combine, fill_id, row_ids
from formal.errors import NotExact
from formal.ops.basic import lift, pair_signature, scale_signature, unbroadcast


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    """An object array of Python-int zeros (exact numerators)."""
    z = np.empty(shape, dtype=object)
    z[...] = 0
    return z


def _expand(t: QArray, shape: tuple[int, ...]) -> QArray:
    if t.shape == shape:
        return t
    return QArray(np.broadcast_to(t.num, shape).copy(), t.den)


def param_name(net: Network, name: str) -> str | None:
    """The parameter tensor a node reads when it is a ``param`` node, else None."""
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
    pname = param_name(net, node.inputs[1])
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
        pname = param_name(net, node.inputs[1])
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
        pname = param_name(net, node.inputs[1])
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


def _matmul_ball(node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]):
    x, w = ins
    n = w.shape[0]
    return ball_matmul(x.reshape(-1, n), w).reshape(x.shape[:-1] + (w.shape[1],))


def _matmul_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle):
    x, w = ins
    n = w.shape[0]
    rx = row_ids(x.reshape(-1, n)).reshape(x.shape[:-1] + (1,))
    cw = row_ids(np.ascontiguousarray(w.T))
    return combine(rx, cw)


register(
    "matmul",
    exact=_matmul_exact,
    jvp=_matmul_jvp,
    vjp=_matmul_vjp,
    float=_matmul_float,
    ball=_matmul_ball,
    signature=_matmul_signature,
)


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


register(
    "mul",
    exact=lambda node, ins, net: ins[0].mul(ins[1]),
    jvp=_mul_jvp,
    vjp=_mul_vjp,
    float=_mul_float,
    ball=lambda node, ins, net, env: ins[0] * ins[1],
    signature=pair_signature,
)


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


def _view_any(node: Node, x: Any, net: Network) -> Any:
    """Reshape a value (float, ball or signature array) of the node's input."""
    return x.reshape(x.shape[: _lead(net, node)] + node.shape)


register(
    "view",
    exact=_view_exact,
    jvp=_view_jvp,
    vjp=lambda node, ins, adj, net, need: [adj.reshape((adj.shape[0],) + ins[0].shape)],
    float=lambda node, vals, errs, net: (
        _view_any(node, vals[0], net),
        _view_any(node, errs[0], net),
    ),
    ball=lambda node, ins, net, env: _view_any(node, ins[0], net),
    signature=lambda node, ins, net, oracle: _view_any(node, ins[0], net),
)


def _perm(node: Node, lead: int) -> tuple[int, ...]:
    p = tuple(node.attr("perm"))
    return tuple(range(lead)) + tuple(i + lead for i in p)


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _transpose_any(node: Node, x: Any, net: Network) -> Any:
    """Transpose a value (float, ball or signature array) of the node's input."""
    return x.transpose(_perm(node, _lead(net, node)))


register(
    "transpose",
    exact=lambda node, ins, net: QArray(
        np.ascontiguousarray(ins[0].num.transpose(_perm(node, _lead(net, node)))), ins[0].den
    ),
    jvp=lambda node, ins, tans, net: (
        None
        if tans[0] is None
        else QArray(
            np.ascontiguousarray(tans[0].num.transpose(_perm(node, 1 + _lead(net, node)))),
            tans[0].den,
        )
    ),
    vjp=lambda node, ins, adj, net, need: [
        QArray(
            np.ascontiguousarray(adj.num.transpose(_inverse(_perm(node, 1 + _lead(net, node))))),
            adj.den,
        )
    ],
    float=lambda node, vals, errs, net: (
        _transpose_any(node, vals[0], net),
        _transpose_any(node, errs[0], net),
    ),
    ball=lambda node, ins, net, env: _transpose_any(node, ins[0], net),
    signature=lambda node, ins, net, oracle: _transpose_any(node, ins[0], net),
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


def _pad_ball(node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]):
    x = ins[0]
    return _padded(x, _pad_widths(node, 1), ball(Fraction(node.attr("value", 0))))


def _pad_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle):
    widths = [(0, 0)] + [tuple(p) for p in node.attr("pads")]
    return np.pad(ins[0], widths, constant_values=fill_id(ins[0]))


register(
    "pad",
    exact=_pad_exact,
    jvp=_pad_jvp,
    vjp=_pad_vjp,
    float=_pad_float,
    ball=_pad_ball,
    signature=_pad_signature,
)


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


def _no_tangent(node: Node, *args: Any) -> Any:
    raise NotExact(
        f"node {node.name!r}: 1/sqrt(var + epsilon) of a batch normalization is irrational"
    )


def _rsqrt_ball(node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]):
    r = to_balls(node.attr("value"))
    inv = np.vectorize(lambda v: 1 / v.sqrt(), otypes=[object])(r)
    return ins[0] * inv


register(
    "rsqrt_scale",
    exact=_rsqrt_exact,
    jvp=_no_tangent,
    vjp=_no_tangent,
    float=_rsqrt_float,
    ball=_rsqrt_ball,
    signature=scale_signature,
)


__all__ = ["float_dot_bound", "param_name", "rational_sqrt", "zeros"]
