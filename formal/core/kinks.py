"""Kink nodes and the rule protocol of non-smooth ops (activations, max-pools).

A *kink node* is one entry of a non-smooth op at which its derivative does not
exist: a pre-activation equal to a kink of the activation, or a max-pool window
whose maximum is attained by entries that are different functions of w (a
*tie*).  Non-smooth ops register a :class:`KinkRule` object in the ``kink``
table of :mod:`formal.core.rules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

import numpy as np

from formal.core.activations import Preset
from formal.core.network import Network, Node
from formal.core.qarray import QArray

KinkKind = Literal["act", "tie"]
"""An activation kink (``act``) or a max-pool tie (``tie``)."""


@dataclass(frozen=True, slots=True)
class KinkNode:
    """One kink node: where the network's derivative may fail to exist.

    ``inputs`` are the per-sample flat indices (into the op's input) whose
    tangents enter the kink map: one for an activation kink, the tied
    entries for a max tie.  ``choice`` is the position in ``inputs`` that AD
    sends the gradient to (ties only).
    """

    node: str
    sample: int
    index: int  # per-sample flat index of the op's output
    kind: KinkKind
    inputs: tuple[int, ...]
    value: Fraction  # the kink c, or the tied maximum
    d_minus: Fraction = Fraction(0)
    d_plus: Fraction = Fraction(0)
    proxy: Fraction = Fraction(0)
    choice: int = 0

    def label(self, net: Network) -> str:
        """Readable position of the kink node: ``node[i,j,...]``."""
        shape = net.node(self.node).shape
        idx = np.unravel_index(self.index, shape) if shape else ()
        where = ",".join(str(int(i)) for i in idx)
        return f"{self.node}[{where}]"

    def apply(self, tangents: list[Fraction]) -> Fraction:
        """The kink map on exact tangents (directional derivative rule)."""
        if self.kind == "act":
            v = tangents[0]
            return self.d_plus * v if v >= 0 else self.d_minus * v
        return max(tangents)


class KinkRule(Protocol):
    """Rules of a non-smooth op, handled by the engine.

    Optional members: ``may_kink(node) -> bool`` (False when the node can
    never have a kink node, e.g. an activation without kinks: then f may be
    analytic everywhere, see :func:`may_kink`), and ``uses_context = True``
    (``forward`` then receives ``context=`` the Forward built so far, and
    ``float_filter`` receives ``context=`` the float ``(vals, errs)`` dicts:
    a max-pool reads them to tell identical entries from real ties).

    Optional members that spare the exact pass (:func:`formal.engine.forward.exact_forward`):
    ``float_state(node, vals, errs, net, preset, hint)``, the state ``forward``
    would give, derived from a float pass that certified the op (None when it
    cannot be; ``hint`` is an optional fourth element ``float_filter`` may
    return); ``suspect_samples(node, vals, errs, net)``, which samples may hold
    a kink node; ``near_kink(node, vals, errs)`` and ``forward_entries(node, y,
    rows, cols, preset)``, the entries the float enclosure cannot decide and
    the exact slopes and kink nodes of given entries.
    """

    def forward(
        self, node: Node, ins: list[QArray], net: Network, preset: Preset
    ) -> tuple[QArray, Any, list[KinkNode]]:
        """Exact value, a private state (pieces/argmax), and the kink nodes found."""

    def float_filter(
        self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Float value, error bound, and whether some entry may be a kink node."""

    def jvp(
        self,
        node: Node,
        ins: list[QArray],
        tan: QArray,
        state: Any,
        kinks: list[KinkNode],
        net: Network,
    ) -> QArray:
        """Directional tangent: smooth entries linearly, kink entries by their kink map."""

    def vjp(
        self,
        node: Node,
        ins: list[QArray],
        adj: QArray,
        state: Any,
        kinks: list[KinkNode],
        net: Network,
        cut: bool,
    ) -> QArray:
        """Input adjoint; kink entries pass the proxy (AD) or nothing (cut)."""

    def kink_adjoint(self, adj: QArray, k: KinkNode) -> np.ndarray:
        """The adjoint of kink node k's output, one entry per row."""


def output_adjoint(adj: QArray, k: KinkNode) -> np.ndarray:
    """The entries of an output adjoint (R, B, ...) at kink node k, as R Fractions."""
    flat = adj.num.reshape(adj.shape[0], adj.shape[1], -1)
    return np.array([Fraction(int(v), adj.den) for v in flat[:, k.sample, k.index]], dtype=object)


def patch(arr: QArray, entries: list[tuple[int, int, int, Fraction]]) -> QArray:
    """Copy of ``arr`` (R, B, ...) with entries ``(r, b, flat index)`` set to exact values."""
    den = arr.den
    for *_, q in entries:
        den = math.lcm(den, q.denominator)
    num = arr.num * (den // arr.den) if den != arr.den else arr.num.copy()
    flat = num.reshape(num.shape[0], num.shape[1], -1)
    for r, b, i, q in entries:
        flat[r, b, i] = q.numerator * (den // q.denominator)
    return QArray(num, den)


__all__ = ["KinkKind", "KinkNode", "KinkRule", "output_adjoint", "patch"]
