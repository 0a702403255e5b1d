"""Per-op rule tables: exact value, tangent (JVP), adjoint (VJP), float filter.

Every smooth op of the IR registers four rules, keyed by ``Node.op``:

- ``EXACT[op](node, ins, net) -> QArray``: the exact value;
- ``JVP[op](node, ins, tans, net) -> QArray | None``: the tangent, linear in
  the input tangents ``tans`` (``None`` is a symbolic zero);
- ``VJP[op](node, ins, adj, net, need) -> list[QArray | None]``: the
  adjoints of the inputs given the output adjoint ``adj``; ``need[i]`` is
  False (return None), True (all entries) or an array of per-sample flat
  positions that will be read (a rule may compute only those; others 0);
- ``FLOAT[op](node, vals, errs, net) -> (val, err)``: a float64 value and a
  rigorous bound on its distance to the exact value (optional: without it
  the float filter is skipped and the exact pass decides).

Layouts: a *batched* value has shape ``(B, *shape)``; parameters and
constants are unbatched.  Tangents and adjoints carry a leading axis ``R``
(several directions or cotangents at once): ``(R, B, *shape)`` for batched
values, ``(R, *shape)`` for unbatched ones.  Activations and max-pools are
handled by the engine (:mod:`formal.exact`) because their rules depend on
kinks and proxies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from formal.core.network import Network, Node
from formal.core.qarray import QArray, int_matmul
from formal.errors import MissingRule

U = 2.0**-53  # unit roundoff of binary64
ETA = 2.0**-1074  # smallest positive subnormal of binary64

ExactRule = Callable[[Node, list[QArray], Network], QArray]
JvpRule = Callable[[Node, list[QArray], list[QArray | None], Network], QArray | None]
VjpRule = Callable[[Node, list[QArray], QArray, Network, list[Any]], list[QArray | None]]
FloatRule = Callable[
    [Node, list[np.ndarray], list[np.ndarray], Network], tuple[np.ndarray, np.ndarray]
]

EXACT: dict[str, ExactRule] = {}
JVP: dict[str, JvpRule] = {}
VJP: dict[str, VjpRule] = {}
FLOAT: dict[str, FloatRule] = {}


def rule(table: dict[str, Any], op: str, table_name: str) -> Any:
    """Look up a rule; a missing one names the op and the table."""
    try:
        return table[op]
    except KeyError:
        raise MissingRule(f"op {op!r} has no rule in the {table_name} table") from None


def gamma(n: int) -> float:
    """The classical bound gamma_n = n u / (1 - n u) on accumulated rounding."""
    return n * U / (1 - n * U)


def is_batched(net: Network, name: str) -> bool:
    table = net.cache.get("batched")
    if table is None:
        table = {}
        for n in net.nodes:
            if n.op == "input":
                table[n.name] = True
            elif n.op in ("param", "const"):
                table[n.name] = False
            else:
                table[n.name] = any(table[i] for i in n.inputs)
        net.cache["batched"] = table
    return bool(table[name])


def lift(tan: QArray, batched: bool) -> QArray:
    """View an unbatched tangent (R, *shape) as (R, 1, *shape) for broadcasting."""
    if batched:
        return tan
    return tan.reshape((tan.shape[0], 1) + tan.shape[1:])


def unbroadcast(adj: QArray, target: tuple[int, ...], batched: bool) -> QArray:
    """Sum an adjoint (R, B, *shape) down to a (possibly unbatched) input's layout."""
    num = adj.num
    rows = num.shape[0]
    full = ((num.shape[1],) + target) if batched else target
    body = num.shape[1:]
    # leading axes that the input does not have
    extra = len(body) - len(full)
    if extra > 0:
        num = num.sum(axis=tuple(range(1, 1 + extra)))
        body = num.shape[1:]
    axes = tuple(i + 1 for i, (a, b) in enumerate(zip(body, full)) if b == 1 and a != 1)
    if axes:
        num = num.sum(axis=axes, keepdims=True)
    return QArray(num.reshape((rows,) + full), adj.den)


# -- leaves -------------------------------------------------------------------


def _param_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    return net.params[node.attr("name")]


EXACT["param"] = _param_exact
EXACT["const"] = lambda node, ins, net: node.attr("value")
EXACT["input"] = lambda node, ins, net: net.inputs


# -- linear: x @ W.T -----------------------------------------------------------


def _linear_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x, w = ins
    wnode = net.node(node.inputs[1])
    if wnode.op == "param":
        num = net.flint_param(wnode.attr("name")).right_mul(x.num, transpose=True)
    else:
        num = int_matmul(x.num, w.num.T)
    return QArray(num, x.den * w.den)


def _nonzero_columns(num: np.ndarray) -> np.ndarray:
    """Indices of the last axis where some entry is non-zero."""
    flat = num.reshape(-1, num.shape[-1])
    return np.nonzero((flat != 0).any(axis=0))[0]


def _linear_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    x, w = ins
    xd, wd = tans
    out: QArray | None = None
    if xd is not None:
        r, b, n = xd.shape
        wnode = net.node(node.inputs[1])
        flat = xd.num.reshape(r * b, n)
        cols = _nonzero_columns(flat)
        if len(cols) * 4 < n:  # sparse tangent: only the columns that move
            num = int_matmul(flat[:, cols], w.num[:, cols].T)
        elif wnode.op == "param":
            num = net.flint_param(wnode.attr("name")).right_mul(flat, transpose=True)
        else:
            num = int_matmul(flat, w.num.T)
        out = QArray(num.reshape(r, b, -1), xd.den * w.den)
    if wd is not None:
        r, m, n = wd.shape
        prod = int_matmul(x.num, wd.num.reshape(r * m, n).T)  # (B, R*m)
        term = QArray(prod.reshape(x.shape[0], r, m).transpose(1, 0, 2), x.den * wd.den)
        out = term if out is None else out + term
    return out


def _linear_vjp(
    node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[Any]
) -> list[QArray | None]:
    x, w = ins
    r, b, m = adj.shape
    n = x.shape[1]
    out: list[QArray | None] = [None, None]
    if need[0] is not False:
        wnode = net.node(node.inputs[1])
        flat = adj.num.reshape(r * b, m)
        if need[0] is not True:  # only some input positions are read
            cols = np.asarray(need[0])
            xbar = np.zeros((r * b, n), dtype=object)
            xbar[...] = 0
            xbar[:, cols] = int_matmul(flat, w.num[:, cols])
        elif wnode.op == "param":
            xbar = net.flint_param(wnode.attr("name")).right_mul(flat)
        else:
            xbar = int_matmul(flat, w.num)
        out[0] = QArray(xbar.reshape(r, b, n), adj.den * w.den)
    if need[1] is not False:
        wbar = int_matmul(adj.num.transpose(0, 2, 1).reshape(r * m, b), x.num)
        out[1] = QArray(wbar.reshape(r, m, n), adj.den * x.den)
    return out


def _linear_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    """|fl(x W^T) - x_exact W_exact^T| <= gamma_{n+2} |x||W|^T + e_x |W|^T + |x| e_W^T + (n+2) eta,
    doubled to cover the rounding of the bound's own evaluation."""
    x, w = vals
    ex, ew = errs
    n = x.shape[1]
    y = x @ w.T
    absw = np.abs(w)
    bound = (gamma(n + 2) * np.abs(x) + ex) @ absw.T + (n + 2) * ETA
    if np.any(ew):
        bound = bound + np.abs(x) @ ew.T + ex @ ew.T
    return y, 2.0 * bound


EXACT["linear"] = _linear_exact
JVP["linear"] = _linear_jvp
VJP["linear"] = _linear_vjp
FLOAT["linear"] = _linear_float


# -- add, sub, neg, scale -------------------------------------------------------


def _binary_jvp(sign: int) -> JvpRule:
    def jvp(
        node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
    ) -> QArray | None:
        a, b = (
            lift(t, is_batched(net, i)) if t is not None else None
            for t, i in zip(tans, node.inputs)
        )
        if b is not None and sign < 0:
            b = -b
        if a is None:
            return _expand(b, node, net) if b is not None else None
        if b is None:
            return _expand(a, node, net)
        return _expand(a + b, node, net)

    return jvp


def _expand(t: QArray, node: Node, net: Network) -> QArray:
    shape = (t.shape[0], net.batch) + node.shape
    if t.shape == shape:
        return t
    return QArray(np.broadcast_to(t.num, shape).copy(), t.den)


def _binary_vjp(sign: int) -> VjpRule:
    def vjp(
        node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[bool]
    ) -> list[QArray | None]:
        out: list[QArray | None] = []
        for k, (name, val) in enumerate(zip(node.inputs, ins)):
            if need[k] is False:
                out.append(None)
                continue
            batched = is_batched(net, name)
            shape = val.shape[1:] if batched else val.shape
            a = unbroadcast(adj, tuple(shape), batched)
            out.append(-a if (sign < 0 and k == 1) else a)
        return out

    return vjp


def _add_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    y = vals[0] + vals[1]
    return y, 2.0 * (errs[0] + errs[1] + U * np.abs(y)) + ETA


def _sub_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    y = vals[0] - vals[1]
    return y, 2.0 * (errs[0] + errs[1] + U * np.abs(y)) + ETA


EXACT["add"] = lambda node, ins, net: ins[0] + ins[1]
EXACT["sub"] = lambda node, ins, net: ins[0] - ins[1]
JVP["add"] = _binary_jvp(1)
JVP["sub"] = _binary_jvp(-1)
VJP["add"] = _binary_vjp(1)
VJP["sub"] = _binary_vjp(-1)
FLOAT["add"] = _add_float
FLOAT["sub"] = _sub_float

EXACT["neg"] = lambda node, ins, net: -ins[0]
JVP["neg"] = lambda node, ins, tans, net: -tans[0] if tans[0] is not None else None
VJP["neg"] = lambda node, ins, adj, net, need: [-adj]
FLOAT["neg"] = lambda node, vals, errs, net: (-vals[0], errs[0])


def _scale_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    return ins[0].mul(node.attr("value"))


def _scale_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    t = tans[0]
    return None if t is None else t.mul(node.attr("value"))


def _scale_vjp(
    node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[bool]
) -> list[QArray | None]:
    return [adj.mul(node.attr("value"))]


def _scale_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    c = node.attr("value").to_float()
    y = vals[0] * c
    return y, 2.0 * (errs[0] * np.abs(c) * (1 + 2 * U) + 2 * U * np.abs(y)) + ETA


EXACT["scale"] = _scale_exact
JVP["scale"] = _scale_jvp
VJP["scale"] = _scale_vjp
FLOAT["scale"] = _scale_float


# -- reshape ---------------------------------------------------------------------


def _reshape_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x = ins[0]
    return x.reshape((x.shape[0],) + node.shape)


def _reshape_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    t = tans[0]
    return None if t is None else t.reshape(t.shape[:2] + node.shape)


def _reshape_vjp(
    node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[bool]
) -> list[QArray | None]:
    return [adj.reshape((adj.shape[0],) + ins[0].shape)]


EXACT["reshape"] = _reshape_exact
JVP["reshape"] = _reshape_jvp
VJP["reshape"] = _reshape_vjp
FLOAT["reshape"] = lambda node, vals, errs, net: (
    vals[0].reshape((vals[0].shape[0],) + node.shape),
    errs[0].reshape((errs[0].shape[0],) + node.shape),
)


__all__ = ["EXACT", "JVP", "VJP", "FLOAT", "rule", "gamma", "is_batched", "lift", "unbroadcast"]
