"""What the ops' SMT rules (``bv`` and ``rounded`` in :mod:`formal.core.rules`) work with.

Values are numpy object arrays, one term per entry, batched ones with a
leading minibatch axis (as in :mod:`formal.ops.basic`).

``bv`` (the exact bit-vector encoding, :mod:`formal.smt.exact_bv`): each op
registers a :class:`BVRule` object whose methods read the encoding's state
(:class:`BVState`):

- ``check(node)``: refuse the node before anything is encoded;
- ``value(node, ins, enc)``: the node's exact value, entries :class:`~formal.core.bvq.BVQ`;
- ``tangent(node, enc)``: per entry, whether its tangent may be non-zero for some
  direction (a sound over-approximation, from the inputs' ``enc.may``);
- ``adjoint(node, adj, enc)``: AD's adjoint of each input, ``(input name, array)``
  pairs (``None``: no contribution).  ``kinked`` rules have their output
  adjoints recorded per entry (the kink sites' adjoints).

:class:`BVLeaf` and :class:`BVUnary` are ready-made rules for leaves and for
linear one-input ops that keep each entry's tangent (``neg``, ``reshape``).

``rounded`` (the IEEE-rounded semantics, :mod:`formal.smt.rounded`): a function
``(node, ins, st: RoundedState) -> array`` of back-end values
(:class:`~formal.core.fpterms.Arith`); a kinked rule appends its
:class:`FloatSite` entries to ``st.sites``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from formal.core.activations import Preset
from formal.core.bvq import BVQ, ZERO, Cond, add, const
from formal.core.fpterms import Arith
from formal.core.network import Network, Node


@dataclass(frozen=True, slots=True)
class KinkSite:
    """One activation entry that may sit on a kink: ``cond`` is ``y == c`` exactly."""

    node: str
    sample: int
    index: int
    kink: Fraction
    cond: Cond
    pre: BVQ
    depends: bool

    def label(self, net: Network) -> str:
        """E.g. ``h[2] sample 0``."""
        shape = net.node(self.node).shape
        idx = np.unravel_index(self.index, shape) if shape else ()
        return f"{self.node}[{','.join(str(int(i)) for i in idx)}] sample {self.sample}"


@dataclass(frozen=True, slots=True)
class FloatSite:
    """A pre-activation entry of a kinked unit: its float value term and the kink."""

    node: str
    pre: str
    sample: int
    index: int
    kink: Fraction
    value: Any  # the float pre-activation (term or scalar)


class BVState(Protocol):
    """The state of an exact bit-vector encoding, as the ``bv`` rules read it."""

    net: Network
    params: Mapping[str, np.ndarray]
    preset: Preset | None
    values: dict[str, np.ndarray]
    may: dict[str, np.ndarray]
    batched: Mapping[str, bool]
    depends: Mapping[str, bool]
    sites: list[KinkSite]


class BVRule:
    """An op's exact bit-vector rule (see the module docstring); ``check`` accepts any node."""

    kinked = False

    def check(self, node: Node) -> None:
        """Raise :class:`~formal.errors.UnsupportedOp` if the node cannot be encoded."""

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """The node's exact value."""
        raise NotImplementedError

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """Per entry: whether the node's tangent may be non-zero."""
        raise NotImplementedError

    def adjoint(
        self, node: Node, adj: np.ndarray, enc: BVState
    ) -> list[tuple[str, np.ndarray | None]]:
        """AD's adjoints of the node's inputs given the output adjoint ``adj``."""
        return []


class BVLeaf(BVRule):
    """A leaf (``input``, ``const``, ``param``): ``fold(node, enc)`` is its exact value, and its
    tangent may be non-zero iff ``moves(node, net)`` (a trainable parameter)."""

    def __init__(
        self,
        fold: Callable[[Node, BVState], np.ndarray],
        moves: Callable[[Node, Network], bool] = lambda node, net: False,
    ) -> None:
        self.fold = fold
        self.moves = moves

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """The leaf's exact value."""
        return self.fold(node, enc)

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """Everywhere or nowhere possibly non-zero."""
        return filled(enc.values[node.name].shape, self.moves(node, enc.net))


class BVUnary(BVRule):
    """``neg`` and ``reshape``: ``forward(node, x)`` and ``backward(adj, input shape)`` are
    linear and keep each entry's own tangent."""

    def __init__(
        self,
        forward: Callable[[Node, np.ndarray], np.ndarray],
        backward: Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
    ) -> None:
        self.forward = forward
        self.backward = backward

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """The op applied to the exact input."""
        return self.forward(node, ins[0])

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """The input's, laid out as the output."""
        return enc.may[node.inputs[0]].reshape(enc.values[node.name].shape)

    def adjoint(
        self, node: Node, adj: np.ndarray, enc: BVState
    ) -> list[tuple[str, np.ndarray | None]]:
        """The transposed op applied to the adjoint."""
        return [(node.inputs[0], self.backward(adj, enc.values[node.inputs[0]].shape))]


@dataclass
class RoundedState:
    """The state of one rounded pass, as the ``rounded`` rules read it.

    ``params`` holds back-end values of searched tensors (others are rounded
    constants); ``order`` is the summation order of ``linear``.
    """

    net: Network
    arith: Arith
    params: Mapping[str, np.ndarray]
    order: str
    depends: Mapping[str, bool]
    sites: list[FloatSite] = field(default_factory=list)


def filled(shape: tuple[int, ...], value: Any) -> np.ndarray:
    """An object array of ``shape`` with every entry ``value``."""
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = value
    return out


def map1(fn: Callable[[Any], Any], a: Any) -> np.ndarray:
    """``fn`` applied to every entry of ``a`` (an object array)."""
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape):
        out[idx] = fn(a[idx])
    return out


def map2(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> np.ndarray:
    """``fn`` applied entrywise to ``a`` and ``b`` broadcast together."""
    a2: Any
    b2: Any
    a2, b2 = np.broadcast_arrays(a, b)
    out = np.empty(a2.shape, dtype=object)
    for idx in np.ndindex(*a2.shape):
        out[idx] = fn(a2[idx], b2[idx])
    return out


def const_array(q: Any) -> np.ndarray:
    """The exact constants of the rational array ``q`` as BVQ."""
    return map1(const, q)


def sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast adjoint back to ``shape`` (batched operands keep the batch axis)."""
    if g.shape == shape:
        return g
    out = filled(shape, ZERO)
    gb: Any = g
    for idx in np.ndindex(*gb.shape):
        tgt = tuple(0 if s == 1 else i for i, s in zip(idx[len(idx) - len(shape) :], shape))
        out[tgt] = add(out[tgt], gb[idx])
    return out


def dot_rows(
    x: np.ndarray, w: Any, mul: Callable[[Any, Any], Any], reduce: Callable[[list[Any]], Any]
) -> np.ndarray:
    """``out[b, o] = reduce([mul(x[b, k], w[o, k]) for k])``: a matrix product of terms."""
    B, n = x.shape
    m = w.shape[0]
    out = np.empty((B, m), dtype=object)
    for b in range(B):
        for o in range(m):
            out[b, o] = reduce([mul(x[b, k], w[o, k]) for k in range(n)])
    return out


def per_unit(a: np.ndarray) -> np.ndarray:
    """A view of a batched array as (sample, flat unit index)."""
    return a.reshape(a.shape[0], -1)


__all__ = [
    "BVLeaf",
    "BVRule",
    "BVState",
    "BVUnary",
    "FloatSite",
    "KinkSite",
    "RoundedState",
    "const_array",
    "dot_rows",
    "filled",
    "map1",
    "map2",
    "per_unit",
    "sum_to",
]
