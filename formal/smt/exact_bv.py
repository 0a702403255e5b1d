"""Exact real semantics of a network in z3 bit-vectors (no rounding, no ``fp.to_real``).

Every value is a :class:`BVQ`: a signed bit-vector numerator over a constant
positive integer denominator, ``v = num / den``, with a proven bound
``|num| <= bound`` that fixes the bit width (so no operation can overflow).
Searched parameters enter through their exact view
(:meth:`formal.smt.fp.FPVar.exact_parts`): ``|v| = sig * 2**sh / den`` with a
small significand, so a product parameter x value is a narrow multiply and a
barrel shift.  Constants (inputs, frozen and fixed parameters) fold to exact
Python rationals.  Since the encoding is exact, an UNSAT answer about it is a
statement about the reals on the searched domain; every SAT model is still
re-verified by the exact engine (:mod:`formal.exact`) before it is reported.

:class:`NetworkEncoding` runs the forward pass (values, kink conditions per
activation entry) and, on request, AD's reverse pass with the preset's proxies
(the adjoint of every kink entry), over the ops input, param, const, linear,
add, sub, neg, scale, act and reshape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from formal.core.activations import Activation, Preset
from formal.core.network import Network, Node
from formal.errors import UnsupportedOp
from formal.ops.activation import proxy_of
from formal.smt.bvq import (
    BVQ,
    ZERO,
    _deriv,
    add,
    compare,
    const,
    ite,
    model_value,
    mul,
    neg,
    nonzero,
    poly,
    scale,
    sub,
    total,
    var,
)
from formal.smt.fp import FPVar


@dataclass(frozen=True, slots=True)
class KinkSite:
    """One activation entry that may sit on a kink: ``cond`` is ``y == c`` exactly."""

    node: str
    sample: int
    index: int
    kink: Fraction
    cond: z3.BoolRef | bool
    pre: BVQ
    depends: bool

    def label(self, net: Network) -> str:
        shape = net.node(self.node).shape
        idx = np.unravel_index(self.index, shape) if shape else ()
        return f"{self.node}[{','.join(str(int(i)) for i in idx)}] sample {self.sample}"


def _obj_array(shape: tuple[int, ...], fill: BVQ = ZERO) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = fill
    return out


def _map2(fn: Callable[[BVQ, BVQ], BVQ], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2: Any
    b2: Any
    a2, b2 = np.broadcast_arrays(a, b)
    out = np.empty(a2.shape, dtype=object)
    for idx in np.ndindex(*a2.shape):
        out[idx] = fn(a2[idx], b2[idx])
    return out


def _map1(fn: Callable[[BVQ], BVQ], a: Any) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape):
        out[idx] = fn(a[idx])
    return out


SUPPORTED_OPS = (
    "input",
    "param",
    "const",
    "linear",
    "add",
    "sub",
    "neg",
    "scale",
    "act",
    "reshape",
)


class NetworkEncoding:
    """Exact forward (and optionally AD reverse) pass of ``net`` over BVQ values.

    ``params`` maps each parameter tensor name to an object array of BVQ of
    the tensor's shape (constants for fixed entries, :func:`var` for searched
    ones).
    """

    def __init__(
        self, net: Network, params: Mapping[str, np.ndarray], preset: Preset | None = None
    ) -> None:
        for node in net.nodes:
            if node.op not in SUPPORTED_OPS:
                raise UnsupportedOp(
                    f"op {node.op!r} (node {node.name!r}) has no rule in the exact bit-vector encoding"
                )
            if node.op == "act" and node.attr("activation").transcendental:
                raise UnsupportedOp(
                    f"activation node {node.name!r} ({node.attr('activation').name}) has transcendental values"
                )
        self.net = net
        self.params = params
        self.preset = preset
        self.values: dict[str, np.ndarray] = {}
        self.batched: dict[str, bool] = {}
        self.depends: dict[str, bool] = {}
        self.sites: list[KinkSite] = []
        self.may: dict[str, np.ndarray] = {}
        self._forward()

    # -- forward -------------------------------------------------------------------
    def _forward(self) -> None:
        net = self.net
        trainable = set(net.trainable)
        for node in net.nodes:
            ins = [self.values[i] for i in node.inputs]
            if node.op == "param":
                self.depends[node.name] = node.attr("name") in trainable
                self.batched[node.name] = False
            elif node.op in ("input", "const"):
                self.depends[node.name] = False
                self.batched[node.name] = node.op == "input"
            else:
                self.depends[node.name] = any(self.depends[i] for i in node.inputs)
                self.batched[node.name] = any(self.batched[i] for i in node.inputs)
            self.values[node.name] = self._eval(node, ins)
            self.may[node.name] = self._may(node)

    def _eval(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        op = node.op
        net = self.net
        if op == "input":
            q = net.inputs.to_fractions()
            return _map1(lambda v: v, _const_array(q))
        if op == "param":
            return self.params[node.attr("name")]
        if op == "const":
            return _const_array(node.attr("value").to_fractions())
        if op == "linear":
            x, w = ins
            if self.batched[node.inputs[1]]:
                raise UnsupportedOp(
                    f"node {node.name!r}: a batched weight operand is not supported by the exact encoding"
                )
            B, n = x.shape
            m = w.shape[0]
            out = np.empty((B, m), dtype=object)
            for b in range(B):
                for o in range(m):
                    out[b, o] = total([mul(x[b, i], w[o, i]) for i in range(n)])
            return out
        if op == "add":
            return _map2(add, *self._bcast(node, ins))
        if op == "sub":
            return _map2(sub, *self._bcast(node, ins))
        if op == "neg":
            return _map1(neg, ins[0])
        if op == "scale":
            c = node.attr("value").to_fractions()
            a: Any
            cc: Any
            a, cc = np.broadcast_arrays(ins[0], c)
            out = np.empty(a.shape, dtype=object)
            for idx in np.ndindex(*a.shape):
                out[idx] = scale(a[idx], cc[idx])
            return out
        if op == "reshape":
            x = ins[0]
            return x.reshape((x.shape[0],) + node.shape)
        if op == "act":
            return self._act(node, ins[0])
        raise UnsupportedOp(f"op {op!r} has no rule in the exact bit-vector encoding")

    def _may(self, node: Node) -> np.ndarray:
        """Whether the node's tangent may be non-zero for some direction d (sound over-approximation).

        Kink edges count as possibly non-zero when D-, D+ or the proxy is; a
        linear edge when the exact partner value is non-zero.  If this is false
        for a kink entry, its true tangent and AD's Jacobian are both identically 0.
        """
        net = self.net
        op = node.op
        val = self.values[node.name]
        if op in ("input", "const"):
            return _bool_array(val.shape, False)
        if op == "param":
            name = node.attr("name")
            return _bool_array(val.shape, name in net.trainable)
        ins = node.inputs
        if op == "linear":
            x, w = self.values[ins[0]], self.values[ins[1]]
            mx, mw = self.may[ins[0]], self.may[ins[1]]
            B, n = x.shape
            m = w.shape[0]
            out = np.empty((B, m), dtype=object)
            for b in range(B):
                for o in range(m):
                    terms = []
                    for i in range(n):
                        terms.append(_and(mx[b, i], nonzero(w[o, i])))
                        terms.append(_and(mw[o, i], nonzero(x[b, i])))
                    out[b, o] = _or(terms)
            return out
        if op in ("add", "sub"):
            a, b2 = (
                self.may[i] if self.batched[i] else self.may[i].reshape((1,) + self.may[i].shape)
                for i in ins
            )
            a, b2 = np.broadcast_arrays(a, b2)
            out = np.empty(a.shape, dtype=object)
            for idx in np.ndindex(*a.shape):
                out[idx] = _or([a[idx], b2[idx]])
            return out
        if op in ("neg", "reshape"):
            return self.may[ins[0]].reshape(val.shape)
        if op == "scale":
            c = node.attr("value").to_fractions()
            a, cc = np.broadcast_arrays(self.may[ins[0]], c)
            out = np.empty(a.shape, dtype=object)
            for idx in np.ndindex(*a.shape):
                out[idx] = a[idx] if cc[idx] != 0 else False
            return out
        if op == "act":
            act: Activation = node.attr("activation")
            y = self.values[ins[0]]
            my = self.may[ins[0]]
            out = np.empty(y.shape, dtype=object)
            yf, mf, of = (
                y.reshape(y.shape[0], -1),
                my.reshape(y.shape[0], -1),
                out.reshape(y.shape[0], -1),
            )
            for b in range(yf.shape[0]):
                for i in range(yf.shape[1]):
                    v = yf[b, i]
                    edge = _piecewise_bool(
                        act, v, [nonzero(poly(_deriv(p), v)) for p in act.pieces]
                    )
                    for c in act.kinks:
                        k_edge = (
                            act.d_minus(c) != 0
                            or act.d_plus(c) != 0
                            or (
                                self.preset is not None
                                and proxy_of(node, self.preset, act, c, i) != 0
                            )
                        )
                        edge = _ite_bool(compare(v, c, "=="), k_edge, edge)
                    of[b, i] = _and(mf[b, i], edge)
            return out
        raise UnsupportedOp(f"op {op!r} has no rule in the exact bit-vector encoding")

    def _bcast(self, node: Node, ins: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for name, v in zip(node.inputs, ins):
            out.append(v if self.batched[name] else v.reshape((1,) + v.shape))
        return out

    def _act(self, node: Node, y: np.ndarray) -> np.ndarray:
        act: Activation = node.attr("activation")
        dep = self.depends[node.name]
        out = np.empty(y.shape, dtype=object)
        flat = y.reshape(y.shape[0], -1)
        oflat = out.reshape(y.shape[0], -1)
        for b in range(flat.shape[0]):
            for i in range(flat.shape[1]):
                v = flat[b, i]
                oflat[b, i] = piecewise(act, v, [poly(p, v) for p in act.pieces])
                for c in act.kinks:
                    self.sites.append(KinkSite(node.name, b, i, c, compare(v, c, "=="), v, dep))
        return out

    # -- AD reverse pass -------------------------------------------------------------
    def kink_adjoints(self) -> dict[tuple[str, int, int], list[BVQ]]:
        """AD's adjoint of every activation output entry, one BVQ per objective row."""
        net = self.net
        if self.preset is None:
            raise AssertionError("kink_adjoints needs a preset")
        obj = net.objective_matrix().to_fractions()
        rows = obj.shape[0]
        out_shape = (net.batch,) + net.node(net.output).shape
        seeds = [_const_array(obj[r].reshape(out_shape)) for r in range(rows)]
        result: dict[tuple[str, int, int], list[BVQ]] = {}
        for r in range(rows):
            adj: dict[str, np.ndarray] = {net.output: seeds[r]}
            for node in reversed(net.nodes):
                a = adj.pop(node.name, None)
                if (
                    a is None
                    or not self.depends[node.name]
                    or node.op in ("param", "input", "const")
                ):
                    continue
                if node.op == "act":
                    flat = a.reshape(a.shape[0], -1)
                    for b in range(flat.shape[0]):
                        for i in range(flat.shape[1]):
                            result.setdefault((node.name, b, i), []).append(flat[b, i])
                for name, c in self._vjp(node, a):
                    if c is None or not self.depends[name] or not self.batched[name]:
                        continue
                    prev = adj.get(name)
                    adj[name] = c if prev is None else _map2(add, prev, c)
        return result

    def _vjp(self, node: Node, a: np.ndarray) -> list[tuple[str, np.ndarray | None]]:
        op = node.op
        ins = node.inputs
        if op == "linear":
            w = self.values[ins[1]]
            B, m = a.shape
            n = w.shape[1]
            xbar = np.empty((B, n), dtype=object)
            for b in range(B):
                for i in range(n):
                    xbar[b, i] = total([mul(a[b, o], w[o, i]) for o in range(m)])
            return [(ins[0], xbar)]
        if op in ("add", "sub"):
            out: list[tuple[str, np.ndarray | None]] = []
            for k, name in enumerate(ins):
                if not self.batched[name]:
                    out.append((name, None))
                    continue
                shape = self.values[name].shape
                g = a if (op == "add" or k == 0) else _map1(neg, a)
                out.append((name, _sum_to(g, shape)))
            return out
        if op == "neg":
            return [(ins[0], _map1(neg, a))]
        if op == "scale":
            c = node.attr("value").to_fractions()
            ga: Any
            cc: Any
            ga, cc = np.broadcast_arrays(a, c)
            out_a = np.empty(ga.shape, dtype=object)
            for idx in np.ndindex(*ga.shape):
                out_a[idx] = scale(ga[idx], cc[idx])
            return [(ins[0], _sum_to(out_a, self.values[ins[0]].shape))]
        if op == "reshape":
            return [(ins[0], a.reshape(self.values[ins[0]].shape))]
        if op == "act":
            y = self.values[ins[0]]
            act: Activation = node.attr("activation")
            out_y = np.empty(y.shape, dtype=object)
            yf = y.reshape(y.shape[0], -1)
            af = a.reshape(a.shape[0], -1)
            of = out_y.reshape(y.shape[0], -1)
            for b in range(yf.shape[0]):
                for i in range(yf.shape[1]):
                    v, g = yf[b, i], af[b, i]
                    slopes = [mul(g, poly(_deriv(p), v)) for p in act.pieces]
                    base = piecewise(act, v, slopes)
                    for c in act.kinks:
                        assert self.preset is not None
                        p = proxy_of(node, self.preset, act, c, i)
                        base = ite(compare(v, c, "=="), scale(g, p), base)
                    of[b, i] = base
            return [(ins[0], out_y)]
        raise UnsupportedOp(f"op {op!r} has no reverse rule in the exact bit-vector encoding")


def piecewise(act: Activation, y: BVQ, pieces: list[BVQ]) -> BVQ:
    """Select ``pieces[k]`` on piece k of ``act`` (left piece at a kink)."""
    out = pieces[-1]
    for k in range(len(act.kinks) - 1, -1, -1):
        out = ite(compare(y, act.kinks[k], "<="), pieces[k], out)
    return out


def _bool_array(shape: tuple[int, ...], value: bool) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = value
    return out


def _and(a: z3.BoolRef | bool, b: z3.BoolRef | bool) -> z3.BoolRef | bool:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return z3.And(a, b)


def _or(items: list[z3.BoolRef | bool]) -> z3.BoolRef | bool:
    rest = []
    for t in items:
        if t is True:
            return True
        if t is not False:
            rest.append(t)
    if not rest:
        return False
    return rest[0] if len(rest) == 1 else z3.Or(rest)


def _ite_bool(
    c: z3.BoolRef | bool, a: z3.BoolRef | bool, b: z3.BoolRef | bool
) -> z3.BoolRef | bool:
    if c is True:
        return a
    if c is False:
        return b
    if a is b and isinstance(a, bool):
        return a
    return z3.If(c, a, b)


def _piecewise_bool(act: Activation, y: BVQ, pieces: list[z3.BoolRef | bool]) -> z3.BoolRef | bool:
    out = pieces[-1]
    for k in range(len(act.kinks) - 1, -1, -1):
        out = _ite_bool(compare(y, act.kinks[k], "<="), pieces[k], out)
    return out


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast adjoint back to ``shape`` (batched operands keep the batch axis)."""
    if g.shape == shape:
        return g
    out = _obj_array(shape)
    gb: Any = g
    for idx in np.ndindex(*gb.shape):
        tgt = tuple(0 if s == 1 else i for i, s in zip(idx[len(idx) - len(shape) :], shape))
        out[tgt] = add(out[tgt], gb[idx])
    return out


def _const_array(q: Any) -> np.ndarray:
    out = np.empty(q.shape, dtype=object)
    for idx in np.ndindex(*q.shape):
        out[idx] = const(q[idx])
    return out


def parameter_leaves(
    net: Network,
    fixed: Mapping[int, Fraction],
    variables: Mapping[int, FPVar],
    var_leaf: Callable[[FPVar, bool], Any],
    const_leaf: Callable[[Fraction], Any],
) -> dict[str, np.ndarray]:
    """Leaf arrays of every parameter tensor: searched groups as ``var_leaf(var, negate)``,
    fixed groups and all other entries as ``const_leaf(value)`` (ties keep their signs)."""
    par = net.parameterization()
    out: dict[str, np.ndarray] = {}
    for name, q in net.params.items():
        vals: Any = q.to_fractions()
        arr = np.empty(vals.shape, dtype=object)
        groups = par.groups.get(name)
        signs = par.signs.get(name)
        for idx in np.ndindex(*vals.shape):
            if groups is not None:
                g = int(groups[idx])
                s = int(signs[idx]) if signs is not None else 1
                if g in variables:
                    arr[idx] = var_leaf(variables[g], s < 0)
                    continue
                if g in fixed:
                    arr[idx] = const_leaf(fixed[g] * s)
                    continue
            arr[idx] = const_leaf(vals[idx])
        out[name] = arr
    return out


def param_arrays(
    net: Network, fixed: Mapping[int, Fraction], variables: Mapping[int, FPVar]
) -> dict[str, np.ndarray]:
    """BVQ arrays of every parameter tensor: searched groups as variables, others constant."""
    return parameter_leaves(net, fixed, variables, lambda v, neg: var(v, negate=neg), const)


__all__ = [
    "parameter_leaves",
    "BVQ",
    "KinkSite",
    "NetworkEncoding",
    "const",
    "var",
    "add",
    "sub",
    "mul",
    "neg",
    "scale",
    "ite",
    "compare",
    "nonzero",
    "piecewise",
    "total",
    "param_arrays",
    "model_value",
    "SUPPORTED_OPS",
]

_reexported = (model_value, ite)
