"""Pointwise activations (the ``act`` op): every rule of the family in one place.

Kinks are where the pre-activation equals a kink of rho; the derivative AD
uses there is the preset's proxy (or a per-unit override in the network).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from formal.core.activations import Activation, Preset
from formal.core.kinks import KinkNode, patch
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.core.rules import register
from formal.errors import NotExact
from formal.ops.basic import ETA, U


def act_of(node: Node) -> Activation:
    return node.attr("activation")


class ActRule:
    """Pointwise activations: kinks where the pre-activation equals a kink of rho."""

    def may_kink(self, node: Node) -> bool:
        return bool(act_of(node).kinks)

    def forward(self, node: Node, ins: list[QArray], net: Network, preset: Preset):
        act = act_of(node)
        y = ins[0]
        if act.transcendental:
            raise NotExact(f"activation node {node.name!r} ({act.name}) has transcendental values")
        pieces = act.piece_map(y)
        value = act.apply(y, pieces)
        kinks: list[KinkNode] = []
        on_kink = np.zeros(y.shape, dtype=bool)
        for c in act.kinks:
            hit = y.compare(c) == 0
            on_kink |= hit
            for pos in zip(*np.nonzero(hit.reshape(y.shape[0], -1))):
                b, i = int(pos[0]), int(pos[1])
                kinks.append(
                    KinkNode(
                        node.name,
                        b,
                        i,
                        "act",
                        (i,),
                        c,
                        act.d_minus(c),
                        act.d_plus(c),
                        proxy_of(node, preset, act, c, i),
                    )
                )
        slope = act.slope(y, pieces)
        slope = QArray(np.where(on_kink, 0, slope.num), slope.den)
        return value, slope, kinks

    def float_filter(
        self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network
    ):
        act = act_of(node)
        y, e = vals[0], errs[0]
        suspect = False
        for c in act.kinks:
            cf = float(c)
            margin = e + abs(cf) * U + ETA
            suspect = suspect or bool(np.any(np.abs(y - cf) <= 2 * margin))
        z = act.apply_float(y)
        coeff = np.zeros_like(y)
        for p in act.pieces:
            mag = np.zeros_like(y)
            for c in reversed(p):
                mag = mag * np.abs(y) + abs(float(c))
            coeff = np.maximum(coeff, mag)
        err = float(act.lipschitz) * e * (1 + 4 * U) + 8 * U * coeff + 4 * ETA
        if act.transcendental:
            err = err + 8 * U * np.abs(z)
        return z, 2.0 * err, suspect

    def jvp(self, node, ins, tan, state, kinks, net):
        out = tan.mul(QArray(state.num[None], state.den))
        if not kinks:
            return out
        flat_t = tan.num.reshape(tan.shape[0], tan.shape[1], -1)
        patches = [  # kink entries follow the one-sided rule
            (r, k.sample, k.index, k.apply([Fraction(int(flat_t[r, k.sample, k.index]), tan.den)]))
            for k in kinks
            for r in range(tan.shape[0])
        ]
        return patch(out, patches)

    def vjp(self, node, ins, adj, state, kinks, net, cut):
        out = adj.mul(QArray(state.num[None], state.den))
        if cut or not kinks:
            return out
        flat_a = adj.num.reshape(adj.shape[0], adj.shape[1], -1)
        patches = [
            (r, k.sample, k.index, Fraction(int(flat_a[r, k.sample, k.index]), adj.den) * k.proxy)
            for k in kinks
            for r in range(adj.shape[0])
        ]
        return patch(out, patches)

    def kink_adjoint(self, adj: QArray, k: KinkNode) -> np.ndarray:
        flat = adj.num.reshape(adj.shape[0], adj.shape[1], -1)
        return np.array(
            [Fraction(int(v), adj.den) for v in flat[:, k.sample, k.index]], dtype=object
        )


def proxy_of(node: Node, preset: Preset, act: Activation, c: Fraction, unit: int) -> Fraction:
    override = node.attr("proxy")
    if override is None:
        return preset.proxy(act, c)
    if isinstance(override, tuple):  # one rule per unit
        return Fraction(override[unit % len(override)](act, c))
    return Fraction(override(act, c))


register("act", kink=ActRule())

__all__ = ["ActRule", "act_of", "proxy_of"]
