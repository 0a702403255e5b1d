"""Local signatures: which entries of a value are the same function of w near w*.

A max-pool window whose maximum is attained several times is a *tie* only if
the tied entries are different functions of the parameters near w*: the max
of identical functions is that function.  Identical entries are common in
real inputs (a uniform image background gives identical convolution patches,
hence identical pre-activations) and dead ReLUs are identically 0 near w*.

This module numbers entries so that **equal numbers imply equal functions of
w on a neighbourhood of w*** (the converse need not hold: unequal numbers are
merely not known to be equal).  Numbers are built bottom-up by the ops'
``signature`` rules (:mod:`formal.core.rules`), as in value numbering /
hash-consing: an entry's number is the canonical id of (op, the numbers of
the entries it reads, the constants it uses).  The only *local* rule is the
activation's (its rule has ``uses_oracle = True``): an entry certified to lie
strictly inside a constant piece of its activation (a dead ReLU:
pre-activation < 0) is the constant function, whatever computes its
pre-activation.  The certification comes from an :data:`Oracle`: exact
comparisons (:func:`exact_oracle`), a rigorous float64 bound
(:func:`float_oracle`), or a ball enclosure (:func:`ball_oracle`).  Ops
without a rule give every entry its own number (:func:`fresh_ids`: sound,
never merges).

Numbers are only compared within one node's array (a max-pool compares the
entries of its input); they are not meaningful across nodes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from formal.core.activations import Activation
from formal.core.balls import ball
from formal.core.floatbound import ETA, U
from formal.core.graph import ancestors, is_batched
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.core.rules import RULES, walk

Oracle = Callable[[Node], np.ndarray]  # act node -> per-entry code: constant piece index, or -1
SigRule = Callable[[Node, list[np.ndarray], Network, Oracle], np.ndarray]


def _dense(a: np.ndarray) -> np.ndarray:
    """Relabel the entries of a 1-D int array as 0..n-1 (equal <-> equal), in sorted order.

    Its rank among the distinct values, as ``np.unique(..., return_inverse=True)``
    gives it; by a table over the value range when that range is small (no sort).
    """
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(a.min()), int(a.max())
    if hi - lo <= 4 * a.size + 1024:
        shifted = a - lo
        present = np.zeros(hi - lo + 1, dtype=np.int64)
        present[shifted] = 1
        return (np.cumsum(present) - 1)[shifted].astype(np.int64)
    _, inv = np.unique(a, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def _pairs(cols: list[np.ndarray]) -> np.ndarray:
    """Ids of the tuples formed by equal-length 1-D int columns (pairwise keys, no overflow).

    The columns are combined in mixed radix while the key stays below 2**62
    (then relabelled once), else pairwise with a relabelling after each step.
    """
    acc = _dense(cols[0])
    radix = int(acc.max()) + 1 if acc.size else 1
    for c in cols[1:]:
        lo = int(c.min()) if c.size else 0
        span = (int(c.max()) - lo + 1) if c.size else 1
        if radix * span < 2**62:
            acc = acc * span + (c - lo)
            radix *= span
            continue
        acc = _dense(acc)
        d = _dense(c)
        acc = _dense(acc * (int(d.max()) + 1) + d)
        radix = int(acc.max()) + 1
    return _dense(acc)


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


def fill_id(a: np.ndarray) -> int:
    """An id below every id of ``a``: padding is its own (constant) entry, never merged."""
    return int(a.min()) - 1 if a.size else -1


def fresh_ids(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle) -> np.ndarray:
    """Every entry its own number: the rule of ops without a signature rule (never merges)."""
    shape = ((net.batch,) if is_batched(net, node.name) else ()) + node.shape
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def constant_pieces(act: Activation) -> list[int]:
    """Indices of the pieces of ``act`` that are constant polynomials."""
    return [k for k, p in enumerate(act.pieces) if all(c == 0 for c in p[1:])]


# -- driver -------------------------------------------------------------------------


def _uses_oracle(op: str) -> bool:
    return bool(getattr(RULES["signature"].get(op), "uses_oracle", False))


def _static_nodes(net: Network) -> set[str]:
    """Nodes with no oracle-dependent rule among their ancestors (numbers independent of w*)."""
    hit: set[str] | None = net.cache.get("sig:static")
    if hit is None:
        local: set[str] = set()
        for n in net.nodes:
            if _uses_oracle(n.op) or any(i in local for i in n.inputs):
                local.add(n.name)
        hit = {n.name for n in net.nodes} - local
        net.cache["sig:static"] = hit
    return hit


def signatures(net: Network, name: str, oracle: Oracle) -> np.ndarray:
    """Local signature ids of node ``name``'s value ((B, *shape) if batched)."""
    static = _static_nodes(net)
    need = ancestors(net, name)
    env: dict[str, np.ndarray] = {
        n: net.cache["sig:" + n] for n in need if n in static and "sig:" + n in net.cache
    }

    def step(node: Node, fn: SigRule, ins: list[np.ndarray]) -> np.ndarray:
        s = fn(node, ins, net, oracle)
        if node.name in static:
            net.cache["sig:" + node.name] = s
        return s

    return walk(net, "signature", step, env=env, only=need, default=fresh_ids)[name]


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


def ball_oracle(env: dict[str, np.ndarray]) -> Oracle:
    """Constant pieces certified by ball enclosures (``env``: node -> array of arb balls)."""

    def oracle(node: Node) -> np.ndarray:
        act: Activation = node.attr("activation")
        y = env[node.inputs[0]]
        code = np.full(y.shape, -1, dtype=np.int64)
        kinks = [ball(c) for c in act.kinks]
        for k in constant_pieces(act):
            for idx in np.ndindex(*y.shape):
                v = y[idx]
                if (k == 0 or v > kinks[k - 1]) and (k == len(kinks) or v < kinks[k]):
                    code[idx] = k
        return code

    return oracle


def uncertified_oracle(net: Network) -> Oracle:
    """No constant piece certified (structure only: still sound)."""
    return lambda node: np.full((net.batch,) + node.shape, -1, dtype=np.int64)


__all__ = [
    "Oracle",
    "SigRule",
    "ball_oracle",
    "combine",
    "constant_pieces",
    "exact_oracle",
    "fill_id",
    "float_oracle",
    "fresh_ids",
    "row_ids",
    "signatures",
    "uncertified_oracle",
    "value_ids",
]
