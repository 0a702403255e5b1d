"""Local signatures: which entries of a value are the same function of w near w*.

A max-pool window whose maximum is attained several times is a *tie* only if
the tied entries are different functions of the parameters near w*: the max
of identical functions is that function.  Identical entries are common in
real inputs (a uniform image background gives identical convolution patches,
hence identical pre-activations) and dead ReLUs are identically 0 near w*.

This module numbers entries so that **equal numbers imply equal functions of
w on a neighbourhood of w*** (the converse need not hold: unequal numbers are
merely not known to be equal).  Numbers are built bottom-up by per-op rules
(:data:`SIG`), as in value numbering / hash-consing: an entry's number is the
canonical id of (op, the numbers of the entries it reads, the constants it
uses).  The only *local* rule is the activation's: an entry certified to lie
strictly inside a constant piece of its activation (a dead ReLU: pre-activation
< 0) is the constant function, whatever computes its pre-activation.  The
certification comes from an oracle: exact comparisons, a rigorous float64
bound, or a ball enclosure.  Ops without a rule give every entry its own
number (sound, never merges).

Numbers are only compared within one node's array (a max-pool compares the
entries of its input); they are not meaningful across nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from formal.core.activations import Activation
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.ops.basic import ETA, U, is_batched

Oracle = Callable[[Node], np.ndarray]  # act node -> per-entry code: constant piece index, or -1
SigRule = Callable[[Node, list[np.ndarray], Network], np.ndarray]
SIG: dict[str, SigRule] = {}


def _dense(a: np.ndarray) -> np.ndarray:
    """Relabel the entries of a 1-D int array as 0..n-1 (equal <-> equal)."""
    _, inv = np.unique(a, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def _pairs(cols: list[np.ndarray]) -> np.ndarray:
    """Ids of the tuples formed by equal-length 1-D int columns (pairwise keys, no overflow)."""
    acc = _dense(cols[0])
    for c in cols[1:]:
        d = _dense(c)
        acc = _dense(acc * (int(d.max()) + 1) + d)
    return acc


def combine(*arrays: np.ndarray) -> np.ndarray:
    """Canonical ids of the tuples of (broadcast) entries: equal tuples <-> equal ids."""
    arrs = np.broadcast_arrays(*[np.asarray(a) for a in arrays])
    shape = arrs[0].shape
    if arrs[0].size == 0:
        return np.zeros(shape, dtype=np.int64)
    return _pairs([a.reshape(-1).astype(np.int64) for a in arrs]).reshape(shape)


def row_ids(a: np.ndarray) -> np.ndarray:
    """Ids of the rows of a 2-D int array (equal rows <-> equal ids)."""
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if a.shape[1] == 0:
        return np.zeros(a.shape[0], dtype=np.int64)
    return _pairs([np.ascontiguousarray(a[:, j]).astype(np.int64) for j in range(a.shape[1])])


def value_ids(q: QArray) -> np.ndarray:
    """Ids of exact values (equal values <-> equal ids)."""
    flat = q.num.reshape(-1)
    if flat.size == 0:
        return np.zeros(q.shape, dtype=np.int64)
    _, inv = np.unique(flat, return_inverse=True)
    return inv.reshape(q.shape).astype(np.int64)


def constant_pieces(act: Activation) -> list[int]:
    """Indices of the pieces of ``act`` that are constant polynomials."""
    return [k for k, p in enumerate(act.pieces) if all(c == 0 for c in p[1:])]


# -- rules ------------------------------------------------------------------------


def _fresh(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    shape = ((net.batch,) if is_batched(net, node.name) else ()) + node.shape
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def _param(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    name = node.attr("name")
    if name in net.trainable:
        par = net.parameterization()
        g = par.groups[name]
        return combine(g, par.signs[name])
    return value_ids(net.params[name])


SIG["input"] = lambda node, ins, net: value_ids(net.inputs)
SIG["const"] = lambda node, ins, net: value_ids(node.attr("value"))
SIG["param"] = _param
for _op in ("add", "sub", "mul"):
    SIG[_op] = lambda node, ins, net: combine(ins[0], ins[1])
SIG["neg"] = lambda node, ins, net: ins[0]
SIG["scale"] = lambda node, ins, net: combine(ins[0], value_ids(node.attr("value")))
SIG["rsqrt_scale"] = SIG["scale"]


def _lead(net: Network, node: Node) -> tuple[int, ...]:
    return (net.batch,) if is_batched(net, node.name) else ()


SIG["reshape"] = lambda node, ins, net: ins[0].reshape((net.batch,) + node.shape)
SIG["view"] = lambda node, ins, net: ins[0].reshape(_lead(net, node) + node.shape)


def _transpose(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    lead = len(_lead(net, node))
    perm = tuple(range(lead)) + tuple(p + lead for p in node.attr("perm"))
    return ins[0].transpose(perm)


SIG["transpose"] = _transpose


def _fill(a: np.ndarray) -> int:
    """An id below every id of ``a``: padding is its own (constant) entry, never merged."""
    return int(a.min()) - 1 if a.size else -1


def _pad(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    widths = [(0, 0)] + [tuple(p) for p in node.attr("pads")]
    return np.pad(ins[0], widths, constant_values=_fill(ins[0]))


SIG["pad"] = _pad


def _linear(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    x, w = ins
    rx = row_ids(x.reshape(x.shape[0], -1))
    rw = row_ids(w.reshape(w.shape[0], -1))
    return combine(rx[:, None], rw[None, :])


def _matmul(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    x, w = ins
    n = w.shape[0]
    rx = row_ids(x.reshape(-1, n)).reshape(x.shape[:-1] + (1,))
    cw = row_ids(np.ascontiguousarray(w.T))
    return combine(rx, cw)


SIG["linear"] = _linear
SIG["matmul"] = _matmul


def _conv(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
    from formal.ops.conv import _conv_tables, gather_padded

    x, w = ins
    B = x.shape[0]
    CO = w.shape[0]
    tables, oh, ow, g = _conv_tables(node, x.shape[1:], w.shape)
    og = CO // g
    flat = x.reshape(B, -1)
    pid = np.empty((B, CO, oh * ow), dtype=np.int64)
    for gi, tab in enumerate(tables):
        rows = gather_padded(flat, tab, _fill(flat)).reshape(B * oh * ow, -1)
        ids = row_ids(rows).reshape(B, 1, oh * ow)
        pid[:, gi * og : (gi + 1) * og] = ids
    gid = (np.arange(CO) // og)[None, :, None]
    wid = row_ids(w.reshape(CO, -1))[None, :, None]
    return combine(gid, pid, wid).reshape((B, CO, oh, ow))


def _pool(with_divisor: bool) -> SigRule:
    def rule(node: Node, ins: list[np.ndarray], net: Network) -> np.ndarray:
        from formal.ops.conv import _geometry, avg_divisors, gather_padded

        x = ins[0]
        B, C = x.shape[:2]
        idx, oh, ow = _geometry(node, x.shape[1:])
        win = gather_padded(x.reshape(B, -1), idx, _fill(x))  # (B, C, P, K)
        rows = win.reshape(-1, win.shape[-1])
        if with_divisor:
            div = np.broadcast_to(
                avg_divisors(node, x.shape[1:])[None, None, :], (B, C, oh * ow)
            ).reshape(-1, 1)
            rows = np.concatenate([rows, div], axis=1)
        return row_ids(rows).reshape(B, C, oh, ow)

    return rule


SIG["conv2d"] = _conv
SIG["avgpool2d"] = _pool(True)
SIG["maxpool2d"] = _pool(False)


# -- driver -------------------------------------------------------------------------


def _static_nodes(net: Network) -> set[str]:
    """Nodes with no activation among their ancestors (their numbers do not depend on w*)."""
    hit = net.cache.get("sig:static")
    if hit is None:
        local: set[str] = set()
        for n in net.nodes:
            if n.op == "act" or any(i in local for i in n.inputs):
                local.add(n.name)
        hit = {n.name for n in net.nodes} - local
        net.cache["sig:static"] = hit
    return hit


def _ancestors(net: Network, name: str) -> set[str]:
    key = "sig:anc:" + name
    hit = net.cache.get(key)
    if hit is None:
        hit = set()
        stack = [name]
        while stack:
            n = stack.pop()
            if n in hit:
                continue
            hit.add(n)
            stack.extend(net.node(n).inputs)
        net.cache[key] = hit
    return hit


def signatures(net: Network, name: str, oracle: Oracle) -> np.ndarray:
    """Local signature ids of node ``name``'s value ((B, *shape) if batched)."""
    static = _static_nodes(net)
    need = _ancestors(net, name)
    sigs: dict[str, np.ndarray] = {}
    for node in net.nodes:
        if node.name not in need:
            continue
        key = "sig:" + node.name
        if node.name in static and key in net.cache:
            sigs[node.name] = net.cache[key]
            continue
        ins = [sigs[i] for i in node.inputs]
        if node.op == "act":
            code = oracle(node)  # constant pieces get ids below all input ids; others keep theirs
            low = int(ins[0].min()) if ins[0].size else 0
            s = np.where(code >= 0, low - 1 - code, ins[0])
        else:
            s = SIG.get(node.op, _fresh)(node, ins, net)
        sigs[node.name] = s
        if node.name in static:
            net.cache[key] = s
    return sigs[name]


# -- oracles ------------------------------------------------------------------------


def exact_oracle(values: dict[str, QArray]) -> Oracle:
    """Constant pieces certified by exact comparison (an entry at a kink is not certified)."""

    def oracle(node: Node) -> np.ndarray:
        act: Activation = node.attr("activation")
        y = values[node.inputs[0]]
        code = np.full(y.shape, -1, dtype=np.int64)
        const = constant_pieces(act)
        if not const:
            return code
        signs = [y.compare(c) for c in act.kinks]
        for k in const:
            ok = np.ones(y.shape, dtype=bool)
            if k > 0:
                ok &= signs[k - 1] > 0
            if k < len(act.kinks):
                ok &= signs[k] < 0
            code[ok] = k
        return code

    return oracle


def float_oracle(vals: dict[str, np.ndarray], errs: dict[str, np.ndarray]) -> Oracle:
    """Constant pieces certified by a rigorous float64 enclosure ``|y - y_exact| <= err``."""

    def oracle(node: Node) -> np.ndarray:
        act: Activation = node.attr("activation")
        y, e = vals[node.inputs[0]], errs[node.inputs[0]]
        code = np.full(y.shape, -1, dtype=np.int64)
        for k in constant_pieces(act):
            ok = np.ones(y.shape, dtype=bool)
            if k > 0:
                c = float(act.kinks[k - 1])
                ok &= y - 2 * (e + abs(c) * U + ETA) > c
            if k < len(act.kinks):
                c = float(act.kinks[k])
                ok &= y + 2 * (e + abs(c) * U + ETA) < c
            code[ok] = k
        return code

    return oracle


__all__: list[Any] = [
    "SIG",
    "combine",
    "signatures",
    "exact_oracle",
    "float_oracle",
    "value_ids",
    "row_ids",
]
