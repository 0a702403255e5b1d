"""Basic ops: leaves (param, const, input), linear, add, sub, neg, scale, reshape.

Every op registers all of its rules here with :func:`formal.core.rules.register`
(the rule signatures are documented in :mod:`formal.core.rules`): ``exact``,
``jvp``, ``vjp``, ``float`` (a float64 value and a rigorous bound on its
distance to the exact value), ``ball`` (arb enclosures) and ``signature``
(local signature ids, :mod:`formal.core.signatures`).

Layouts: a *batched* value has shape ``(B, *shape)``; parameters and
constants are unbatched (:func:`formal.core.graph.is_batched`).  Tangents and
adjoints carry a leading axis ``R`` (several directions or cotangents at
once): ``(R, B, *shape)`` for batched values, ``(R, *shape)`` for unbatched
ones.  A vjp rule's ``need[i]`` is False (return None), True (all entries) or
an array of per-sample flat positions that will be read (a rule may compute
only those; others 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from formal.core import bvq
from formal.core.balls import ball_matmul, cached_balls, to_balls
from formal.core.bvq import Cond, all_of, any_of
from formal.core.floatbound import ETA, U, gamma, to_float
from formal.core.fpterms import const_terms, ordered_sum
from formal.core.graph import is_batched
from formal.core.network import Network, Node
from formal.core.qarray import QArray, Split, int_matmul, large_product
from formal.core.rules import register
from formal.core.signatures import Oracle, combine, row_ids, value_ids
from formal.core.smtrules import (
    BVLeaf,
    BVRule,
    BVState,
    BVUnary,
    RoundedState,
    const_array,
    dot_rows,
    map1,
    map2,
    sum_to,
)
from formal.errors import UnsupportedOp

Floats = tuple[np.ndarray, np.ndarray]


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


def float_values(net: Network, name: str) -> Floats:
    """Float64 value of a parameter (or ``"<input>"``) and a bound on its conversion error.

    Cached on the network.
    """
    key = "float:" + name
    hit = net.cache.get(key)
    if hit is None:
        hit = to_float(net.inputs if name == "<input>" else net.params[name])
        net.cache[key] = hit
    return hit


# -- leaves -------------------------------------------------------------------


def _param_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    return float_values(net, node.attr("name"))


def _const_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    f = node.attr("value").to_float()
    return f, np.abs(f) * U + ETA


def _param_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle):
    name = node.attr("name")
    if name in net.trainable:
        par = net.parameterization()
        return combine(par.groups[name], par.signs[name])
    return value_ids(net.params[name])


register(
    "param",
    exact=lambda node, ins, net: net.params[node.attr("name")],
    float=_param_float,
    ball=lambda node, ins, net, env: cached_balls(
        net, node.attr("name"), net.params[node.attr("name")]
    ),
    signature=_param_signature,
)
register(
    "const",
    exact=lambda node, ins, net: node.attr("value"),
    float=_const_float,
    ball=lambda node, ins, net, env: to_balls(node.attr("value")),
    signature=lambda node, ins, net, oracle: value_ids(node.attr("value")),
)
register(
    "input",
    exact=lambda node, ins, net: net.inputs,
    float=lambda node, vals, errs, net: float_values(net, "<input>"),
    ball=lambda node, ins, net, env: cached_balls(net, "<input>", net.inputs),
    signature=lambda node, ins, net, oracle: value_ids(net.inputs),
)


# -- linear: x @ W.T -----------------------------------------------------------


def _linear_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x, w = ins
    wnode = net.node(node.inputs[1])
    if wnode.op == "param":
        xs = x.native()  # the loader's int64 numerators (e.g. of the input) skip a conversion
        num = net.flint_param(wnode.attr("name")).right_mul(
            x.num if xs is None else xs, transpose=True
        )
    else:
        num = int_matmul(x.num, w.num.T)
    return QArray(num, x.den * w.den)


def _nonzero_columns(num: np.ndarray) -> np.ndarray:
    """Indices of the last axis where some entry is non-zero."""
    flat = num.reshape(-1, num.shape[-1])
    return np.nonzero((flat != 0).any(axis=0))[0]


def _linear_digits(xd: QArray, w: QArray, pname: str | None, net: Network) -> QArray | None:
    """The tangent ``xd @ W.T`` (R, B, m) with its numerators kept as digits, or None.

    Only the input columns where some tangent entry is non-zero meet W.  None
    when W is not a parameter, the product is small or the digits are too many.
    """
    r, b, n = xd.shape
    m = w.shape[0]
    if pname is None or not large_product(r * b, n, m):
        return None
    d = xd.digits().stacked
    d = d.reshape(d.shape[0], r * b, n)
    cols = np.flatnonzero((d != 0).any(axis=(0, 1)))
    sparse = len(cols) < n
    prod = net.flint_param(pname).right_mul_digits(
        Split.of_stack(d[:, :, cols] if sparse else d),
        transpose=True,
        inner=cols if sparse else None,
    )
    if prod is None:
        return None
    return QArray.of_digits(Split.of_stack(prod.stacked.reshape(-1, r, b, m)), xd.den * w.den)


def _linear_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    x, w = ins
    xd, wd = tans
    out: QArray | None = None
    if xd is not None:
        r, b, n = xd.shape
        wnode = net.node(node.inputs[1])
        out = _linear_digits(xd, w, wnode.attr("name") if wnode.op == "param" else None, net)
        if out is None:
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


def _linear_entries(node: Node, env: Any, net: Network, rows: np.ndarray, cols: np.ndarray):
    """Entries (b, j) of x @ W.T: one exact dot product each."""
    x, w = env.full(node.inputs[0]), env.full(node.inputs[1])
    out = np.empty(len(rows), dtype=object)
    for b in sorted(set(rows.tolist())):  # per sample: the selected rows of W times x[b]
        m = rows == b
        prod = int_matmul(np.ascontiguousarray(w.num[cols[m]]), x.num[b].reshape(-1, 1))
        out[m] = prod.reshape(-1)
    return QArray(out, x.den * w.den)


def broadcast_entries(
    env: Any,
    net: Network,
    name: str,
    out_shape: tuple[int, ...],
    rows: np.ndarray,
    cols: np.ndarray,
) -> QArray:
    """Entries (rows, cols) of a batched (B, *out_shape) result, read from input ``name``
    broadcast to it (numpy's rule: shapes aligned from the right)."""
    B = net.batch
    if is_batched(net, name):
        shape = (B,) + net.node(name).shape
    else:
        shape = tuple(env.full(name).shape)
    full = (B,) + tuple(out_shape)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    at = np.unravel_index(rows * n_out + cols, full)  # the entries' output multi-indices
    lead = len(full) - len(shape)
    src = (  # the input entries they read: size-1 (broadcast) axes read index 0
        np.ravel_multi_index(
            tuple(at[lead + d] if shape[d] > 1 else np.zeros_like(rows) for d in range(len(shape))),
            shape,
        )
        if shape
        else np.zeros_like(rows)
    )
    if is_batched(net, name):
        per = int(np.prod(shape[1:], dtype=np.int64))
        return env.entries(name, src // per, src % per)
    v = env.full(name)
    return QArray(v.num.reshape(-1)[src], v.den)


def _binary_entries(sign: int) -> Any:
    def entries(node: Node, env: Any, net: Network, rows: np.ndarray, cols: np.ndarray):
        a, b = (broadcast_entries(env, net, i, node.shape, rows, cols) for i in node.inputs)
        return a + b if sign > 0 else a - b

    return entries


def _linear_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    """|fl(x W^T) - x_exact W_exact^T| <= gamma_{n+2} |x||W|^T + e_x |W|^T + |x| e_W^T + (n+2) eta.

    Doubled to cover the rounding of the bound's own evaluation.
    """
    x, w = vals
    ex, ew = errs
    n = x.shape[1]
    y = x @ w.T
    wnode = net.node(node.inputs[1])
    pname = wnode.attr("name") if wnode.op == "param" else None
    if pname is None:
        absw, exact_w = np.abs(w), not np.any(ew)
    else:  # a parameter's |W| and whether its floats are exact, once per network
        key = "abs:" + pname
        if key not in net.cache:
            net.cache[key] = (np.abs(w), not np.any(ew))
        absw, exact_w = net.cache[key]
    bound = (gamma(n + 2) * np.abs(x) + ex) @ absw.T + (n + 2) * ETA
    if not exact_w:
        bound = bound + np.abs(x) @ ew.T + ex @ ew.T
    return y, 2.0 * bound


def _linear_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle):
    x, w = ins
    rx = row_ids(x.reshape(x.shape[0], -1))
    rw = row_ids(w.reshape(w.shape[0], -1))
    return combine(rx[:, None], rw[None, :])


register(
    "linear",
    exact=_linear_exact,
    entries=_linear_entries,
    jvp=_linear_jvp,
    vjp=_linear_vjp,
    float=_linear_float,
    ball=lambda node, ins, net, env: ball_matmul(ins[0], np.ascontiguousarray(ins[1].T)),
    signature=_linear_signature,
)


# -- add, sub, neg, scale -------------------------------------------------------


def _expand(t: QArray, node: Node, net: Network) -> QArray:
    shape = (t.shape[0], net.batch) + node.shape
    if t.shape == shape:
        return t
    return QArray(np.broadcast_to(t.num, shape).copy(), t.den)


def _binary_jvp(sign: int) -> Any:
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


def _binary_vjp(sign: int) -> Any:
    def vjp(
        node: Node, ins: list[QArray], adj: QArray, net: Network, need: list[Any]
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


def pair_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle):
    """Signature of an entrywise binary op: the pair of its inputs' ids (broadcast)."""
    return combine(ins[0], ins[1])


register(
    "add",
    exact=lambda node, ins, net: ins[0] + ins[1],
    entries=_binary_entries(1),
    jvp=_binary_jvp(1),
    vjp=_binary_vjp(1),
    float=_add_float,
    ball=lambda node, ins, net, env: ins[0] + ins[1],
    signature=pair_signature,
)
register(
    "sub",
    exact=lambda node, ins, net: ins[0] - ins[1],
    entries=_binary_entries(-1),
    jvp=_binary_jvp(-1),
    vjp=_binary_vjp(-1),
    float=_sub_float,
    ball=lambda node, ins, net, env: ins[0] - ins[1],
    signature=pair_signature,
)
register(
    "neg",
    exact=lambda node, ins, net: -ins[0],
    jvp=lambda node, ins, tans, net: -tans[0] if tans[0] is not None else None,
    vjp=lambda node, ins, adj, net, need: [-adj],
    float=lambda node, vals, errs, net: (-vals[0], errs[0]),
    ball=lambda node, ins, net, env: -ins[0],
    signature=lambda node, ins, net, oracle: ins[0],
)


def _scale_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    t = tans[0]
    return None if t is None else t.mul(node.attr("value"))


def _scale_float(node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
    c = node.attr("value").to_float()
    y = vals[0] * c
    return y, 2.0 * (errs[0] * np.abs(c) * (1 + 2 * U) + 2 * U * np.abs(y)) + ETA


def scale_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle):
    """Signature of scaling by the constant ``value`` attribute: (input id, constant id)."""
    return combine(ins[0], value_ids(node.attr("value")))


register(
    "scale",
    exact=lambda node, ins, net: ins[0].mul(node.attr("value")),
    jvp=_scale_jvp,
    vjp=lambda node, ins, adj, net, need: [adj.mul(node.attr("value"))],
    float=_scale_float,
    ball=lambda node, ins, net, env: ins[0] * to_balls(node.attr("value")),
    signature=scale_signature,
)


# -- reshape (of a batched value) -------------------------------------------------


def _reshape_jvp(
    node: Node, ins: list[QArray], tans: list[QArray | None], net: Network
) -> QArray | None:
    t = tans[0]
    return None if t is None else t.reshape(t.shape[:2] + node.shape)


register(
    "reshape",
    exact=lambda node, ins, net: ins[0].reshape((ins[0].shape[0],) + node.shape),
    jvp=_reshape_jvp,
    vjp=lambda node, ins, adj, net, need: [adj.reshape((adj.shape[0],) + ins[0].shape)],
    float=lambda node, vals, errs, net: (
        vals[0].reshape((vals[0].shape[0],) + node.shape),
        errs[0].reshape((errs[0].shape[0],) + node.shape),
    ),
    ball=lambda node, ins, net, env: ins[0].reshape((ins[0].shape[0],) + node.shape),
    signature=lambda node, ins, net, oracle: ins[0].reshape((net.batch,) + node.shape),
)


__all__ = [
    "Floats",
    "float_values",
    "lift",
    "pair_signature",
    "scale_signature",
    "unbroadcast",
]


# -- SMT encodings: exact bit-vectors (bv) and IEEE-rounded terms (rounded) -------------
# The rule interfaces are documented in formal.core.smtrules.


class BVLinear(BVRule):
    """``x @ W.T``: exact sums of products (a batched weight operand is refused)."""

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """The exact matrix product."""
        if enc.batched[node.inputs[1]]:
            raise UnsupportedOp(
                f"node {node.name!r}: a batched weight operand is not supported by the exact "
                "encoding"
            )
        return dot_rows(ins[0], ins[1], bvq.mul, bvq.total)

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """``x' W.T + x W'.T`` may be non-zero where a moving factor meets a non-zero one."""
        x, w = (enc.values[i] for i in node.inputs)
        mx, mw = (enc.may[i] for i in node.inputs)
        B, n = x.shape
        out = np.empty((B, w.shape[0]), dtype=object)
        for b in range(B):
            for o in range(w.shape[0]):
                terms: list[Cond] = []
                for i in range(n):
                    terms.append(all_of([mx[b, i], bvq.nonzero(w[o, i])]))
                    terms.append(all_of([mw[o, i], bvq.nonzero(x[b, i])]))
                out[b, o] = any_of(terms)
        return out

    def adjoint(
        self, node: Node, adj: np.ndarray, enc: BVState
    ) -> list[tuple[str, np.ndarray | None]]:
        """``adj @ W`` for the input (the weight is not batched: no adjoint needed)."""
        w = enc.values[node.inputs[1]]
        return [(node.inputs[0], dot_rows(adj, w.T, bvq.mul, bvq.total))]


def _bv_batched(node: Node, ins: list[np.ndarray], enc: BVState) -> list[np.ndarray]:
    """The operands with a leading axis of 1 on the unbatched ones."""
    return [v if enc.batched[n] else v.reshape((1,) + v.shape) for n, v in zip(node.inputs, ins)]


class BVAdd(BVRule):
    """``add`` and ``sub`` (``negate``: the second operand is subtracted), broadcasting."""

    def __init__(self, negate: bool) -> None:
        self.negate = negate

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """The exact sum or difference."""
        return map2(bvq.sub if self.negate else bvq.add, *_bv_batched(node, ins, enc))

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """Possibly non-zero where either operand's tangent is."""
        may = _bv_batched(node, [enc.may[i] for i in node.inputs], enc)
        return map2(lambda a, b: any_of([a, b]), *may)

    def adjoint(
        self, node: Node, adj: np.ndarray, enc: BVState
    ) -> list[tuple[str, np.ndarray | None]]:
        """The output adjoint (negated for a subtrahend), summed to each batched operand."""
        out: list[tuple[str, np.ndarray | None]] = []
        for k, name in enumerate(node.inputs):
            if not enc.batched[name]:
                out.append((name, None))
                continue
            g = map1(bvq.neg, adj) if self.negate and k == 1 else adj
            out.append((name, sum_to(g, enc.values[name].shape)))
        return out


class BVScale(BVRule):
    """``x * c`` for a constant tensor c (broadcast)."""

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """The exact product."""
        return map2(bvq.scale, ins[0], node.attr("value").to_fractions())

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """The input's, except where c is zero."""
        c = node.attr("value").to_fractions()
        return map2(lambda m, ci: m if ci != 0 else False, enc.may[node.inputs[0]], c)

    def adjoint(
        self, node: Node, adj: np.ndarray, enc: BVState
    ) -> list[tuple[str, np.ndarray | None]]:
        """``adj * c`` summed to the input's shape."""
        g = map2(bvq.scale, adj, node.attr("value").to_fractions())
        return [(node.inputs[0], sum_to(g, enc.values[node.inputs[0]].shape))]


def _rounded_param(node: Node, ins: list[np.ndarray], st: RoundedState) -> np.ndarray:
    """A searched tensor is the pass's; any other is rounded to the format."""
    name = node.attr("name")
    if name in st.params:
        return st.params[name]
    return const_terms(st.arith, st.net.params[name].to_fractions())


def _rounded_linear(node: Node, ins: list[np.ndarray], st: RoundedState) -> np.ndarray:
    """Products ``fl(x_k * W[i, k])``, summed in the stated order."""
    return dot_rows(ins[0], ins[1], st.arith.mul, lambda ts: ordered_sum(st.arith, ts, st.order))


def _rounded_add(negate: bool) -> Callable[[Node, list[np.ndarray], RoundedState], np.ndarray]:
    def rule(node: Node, ins: list[np.ndarray], st: RoundedState) -> np.ndarray:
        """One rounding per entry (the subtrahend is negated first, exactly)."""
        a, c = ins
        if a.ndim < c.ndim:
            a = a.reshape((1,) + a.shape)
        if c.ndim < a.ndim:
            c = c.reshape((1,) + c.shape)
        ar = st.arith
        return map2(lambda p, q: ar.add(p, ar.neg(q) if negate else q), a, c)

    return rule


def _rounded_scale(node: Node, ins: list[np.ndarray], st: RoundedState) -> np.ndarray:
    """``fl(x * fl(c))`` (exact where c is 1)."""
    ar = st.arith
    c = node.attr("value").to_fractions()
    return map2(lambda a, ci: a if ci == 1 else ar.mul(a, ar.const(ci)), ins[0], c)


register(
    "input",
    bv=BVLeaf(lambda node, enc: const_array(enc.net.inputs.to_fractions())),
    rounded=lambda node, ins, st: const_terms(st.arith, st.net.inputs.to_fractions()),
)
register(
    "const",
    bv=BVLeaf(lambda node, enc: const_array(node.attr("value").to_fractions())),
    rounded=lambda node, ins, st: const_terms(st.arith, node.attr("value").to_fractions()),
)
register(
    "param",
    bv=BVLeaf(
        lambda node, enc: enc.params[node.attr("name")],
        lambda node, net: node.attr("name") in net.trainable,
    ),
    rounded=_rounded_param,
)
register("linear", bv=BVLinear(), rounded=_rounded_linear)
register("add", bv=BVAdd(False), rounded=_rounded_add(False))
register("sub", bv=BVAdd(True), rounded=_rounded_add(True))
register(
    "neg",
    bv=BVUnary(lambda node, x: map1(bvq.neg, x), lambda adj, shape: map1(bvq.neg, adj)),
    rounded=lambda node, ins, st: map1(st.arith.neg, ins[0]),
)
register("scale", bv=BVScale(), rounded=_rounded_scale)
register(
    "reshape",
    bv=BVUnary(
        lambda node, x: x.reshape((x.shape[0],) + node.shape),
        lambda adj, shape: adj.reshape(shape),
    ),
    rounded=lambda node, ins, st: ins[0].reshape((ins[0].shape[0],) + node.shape),
)
