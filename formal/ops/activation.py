"""Pointwise activations (the ``act`` op): every rule of the family in one place.

Kinks are where the pre-activation equals a kink of rho; the derivative AD
uses there is the preset's proxy (or a per-unit override in the network).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core import bvq
from formal.core.activations import Activation, Preset
from formal.core.balls import Undecided, ball, ball_poly
from formal.core.bvq import all_of
from formal.core.floatbound import ETA, U
from formal.core.fpterms import horner
from formal.core.kinks import KinkNode, output_adjoint, patch
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.core.rules import register
from formal.core.signatures import Oracle
from formal.core.smtrules import (
    BVRule,
    BVState,
    FloatSite,
    KinkSite,
    RoundedState,
    map1,
    per_unit,
)
from formal.errors import NotExact, UnsupportedOp


def act_of(node: Node) -> Activation:
    """The activation of an ``act`` node."""
    return node.attr("activation")


class ActRule:
    """Pointwise activations: kinks where the pre-activation equals a kink of rho."""

    def may_kink(self, node: Node) -> bool:
        """Whether the activation has kinks at all."""
        return bool(act_of(node).kinks)

    def forward(self, node: Node, ins: list[QArray], net: Network, preset: Preset):
        """Exact value, slopes (0 at kink entries) and the kink nodes found."""
        y = ins[0]
        B = y.shape[0]
        n = int(np.prod(y.shape[1:], dtype=np.int64))
        rows, cols = np.divmod(np.arange(B * n, dtype=np.int64), n)
        pieces, slope, kinks = self._decide(node, y, rows, cols, preset)
        return act_of(node).apply(y, pieces), slope, kinks

    def forward_entries(
        self, node: Node, y: QArray, rows: np.ndarray, cols: np.ndarray, preset: Preset
    ) -> tuple[QArray, list[KinkNode]]:
        """Slopes (0 at kink entries) and kink nodes of the entries ``(rows[i], cols[i])``
        (sample, per-sample flat index) whose exact pre-activations are ``y`` (1-D)."""
        _, slope, kinks = self._decide(node, y, rows, cols, preset)
        return slope, kinks

    def _decide(
        self, node: Node, y: QArray, rows: np.ndarray, cols: np.ndarray, preset: Preset
    ) -> tuple[np.ndarray, QArray, list[KinkNode]]:
        """Pieces, slopes and kink nodes of pre-activations ``y`` (flat order: rows, cols)."""
        act = act_of(node)
        if act.transcendental:
            raise NotExact(f"activation node {node.name!r} ({act.name}) has transcendental values")
        signs = [y.compare(c) for c in act.kinks]  # one exact comparison per kink
        pieces = np.zeros(y.shape, dtype=np.int64)  # = act.piece_map(y)
        for sg in signs:
            pieces += (sg > 0).astype(np.int64)
        kinks: list[KinkNode] = []
        on_kink = np.zeros(y.shape, dtype=bool)
        for c, sg in zip(act.kinks, signs):
            hit = sg == 0
            on_kink |= hit
            for pos in np.nonzero(hit.reshape(-1))[0]:
                b, i = int(rows[pos]), int(cols[pos])
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
        return pieces, QArray(np.where(on_kink, 0, slope.num), slope.den), kinks

    def float_state(
        self,
        node: Node,
        vals: list[np.ndarray],
        errs: list[np.ndarray],
        net: Network,
        preset: Preset,
        hint: Any = None,
    ) -> QArray | None:
        """The state :meth:`forward` gives (the slopes), from a float pass that certified the op.

        Only for piecewise-linear activations, whose slope is constant on each
        piece: the certified float values (every pre-activation farther from
        each kink than its error bound, see :meth:`float_filter`) then fix each
        entry's piece.  None otherwise (the exact pass decides).
        """
        act = act_of(node)
        if act.transcendental or act.degree > 1:
            return None
        y = vals[0]
        pieces = np.zeros(y.shape, dtype=np.int64)
        for c in act.kinks:
            pieces += (y > float(c)).astype(np.int64)
        return act.slope(QArray.zeros(y.shape), pieces)

    def suspect_samples(
        self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network
    ) -> np.ndarray:
        """Per sample (bool, (B,)): whether some pre-activation may sit on a kink."""
        y = vals[0]
        return np.asarray(self.near_kink(node, vals, errs).reshape(y.shape[0], -1).any(axis=1))

    def near_kink(self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        """The entries whose float enclosure cannot exclude a kink (the filter's test)."""
        y, e = vals[0], errs[0]
        near: np.ndarray = np.zeros(y.shape, dtype=bool)
        for c in act_of(node).kinks:
            cf = float(c)
            margin = e + abs(cf) * U + ETA
            near = near | (np.abs(y - cf) <= 2 * margin)
        return near

    def float_filter(
        self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network
    ):
        """Float value, error bound, and whether some pre-activation may sit on a kink."""
        act = act_of(node)
        y, e = vals[0], errs[0]
        suspect = bool(self.near_kink(node, vals, errs).any())
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

    def jvp(
        self,
        node: Node,
        ins: list[QArray],
        tan: QArray,
        state: Any,
        kinks: list[KinkNode],
        net: Network,
    ) -> QArray:
        """Tangent: slope times input tangent; kink entries by their one-sided rule."""
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
        """Input adjoint: slope times adjoint; kink entries pass the proxy (or 0 when cut)."""
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
        """The adjoint of kink node k's output, one entry per row."""
        return output_adjoint(adj, k)


def proxy_of(node: Node, preset: Preset, act: Activation, c: Fraction, unit: int) -> Fraction:
    """The derivative AD uses at kink ``c`` of ``unit``: a per-node override, else the preset's."""
    override = node.attr("proxy")
    if override is None:
        return preset.proxy(act, c)
    if isinstance(override, tuple):  # one rule per unit
        return Fraction(override[unit % len(override)](act, c))
    return Fraction(override(act, c))


def _act_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    act = act_of(node)
    if act.transcendental:
        raise NotExact(f"activation node {node.name!r} ({act.name}) has transcendental values")
    return act.apply(ins[0], act.piece_map(ins[0]))


_SMOOTH: dict[str, Callable[[Any], Any]] = {
    "sigmoid": lambda y: 1 / (1 + (-y).exp()),
    "tanh": lambda y: y.tanh(),
}


def _act_ball(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    act = act_of(node)
    y = ins[0]
    flat = y.reshape(-1)
    out = np.empty(flat.size, dtype=object)
    if act.transcendental:
        fn = _SMOOTH.get(act.name)
        if fn is None:
            raise Undecided(f"no ball rule for activation {act.name}")
        out[:] = [fn(v) for v in flat]
        return out.reshape(y.shape)
    kinks = [ball(c) for c in act.kinks]
    for i, v in enumerate(flat):
        piece = 0
        for c in kinks:
            if v > c:
                piece += 1
            elif not v < c:
                where = np.unravel_index(i, y.shape)
                raise Undecided(
                    f"the enclosure of {node.name}{list(map(int, where[1:]))} "
                    f"(sample {int(where[0])}) contains the kink {c.mid()}"
                )
        out[i] = ball_poly(act.pieces[piece], v)
    return out.reshape(y.shape)


def _act_signature(node: Node, ins: list[np.ndarray], net: Network, oracle: Oracle) -> np.ndarray:
    """Entries certified in a constant piece get ids below all input ids; others keep theirs."""
    code = oracle(node)
    low = int(ins[0].min()) if ins[0].size else 0
    return np.where(code >= 0, low - 1 - code, ins[0])


_act_signature.uses_oracle = True  # type: ignore[attr-defined]

ACT = ActRule()

register(
    "act",
    kink=ACT,
    exact=_act_exact,
    float=lambda node, vals, errs, net: ACT.float_filter(node, vals, errs, net)[:2],
    ball=_act_ball,
    signature=_act_signature,
)

__all__ = ["ACT", "ActRule", "act_of", "proxy_of"]


# -- SMT encodings: exact bit-vectors (bv) and IEEE-rounded terms (rounded) -------------
# The rule interfaces are documented in formal.core.smtrules.


class BVAct(BVRule):
    """Pointwise activations in the exact bit-vector encoding: polynomial pieces selected by
    exact comparisons with the kinks; every entry is a kink site (``y == c``)."""

    kinked = True

    def check(self, node: Node) -> None:
        """Transcendental pieces have no exact encoding."""
        act = act_of(node)
        if act.transcendental:
            raise UnsupportedOp(
                f"activation node {node.name!r} ({act.name}) has transcendental values"
            )

    def value(self, node: Node, ins: list[np.ndarray], enc: BVState) -> np.ndarray:
        """rho of each entry; records the entry's kink sites."""
        act = act_of(node)
        dep = enc.depends[node.name]
        y = ins[0]
        out = np.empty(y.shape, dtype=object)
        flat, oflat = per_unit(y), per_unit(out)
        for b in range(flat.shape[0]):
            for i in range(flat.shape[1]):
                v = flat[b, i]
                oflat[b, i] = bvq.piecewise(act, v, [bvq.poly(p, v) for p in act.pieces])
                for c in act.kinks:
                    enc.sites.append(KinkSite(node.name, b, i, c, bvq.compare(v, c, "=="), v, dep))
        return out

    def tangent(self, node: Node, enc: BVState) -> np.ndarray:
        """The input's, where the slope (on a kink: D-, D+ or the proxy) may be non-zero."""
        act = act_of(node)
        y = enc.values[node.inputs[0]]
        out = np.empty(y.shape, dtype=object)
        yf, mf, of = per_unit(y), per_unit(enc.may[node.inputs[0]]), per_unit(out)
        for b in range(yf.shape[0]):
            for i in range(yf.shape[1]):
                v = yf[b, i]
                slopes = [bvq.nonzero(bvq.poly(bvq.deriv(p), v)) for p in act.pieces]
                edge = bvq.piecewise_bool(act, v, slopes)
                for c in act.kinks:
                    k_edge = (
                        act.d_minus(c) != 0
                        or act.d_plus(c) != 0
                        or (enc.preset is not None and proxy_of(node, enc.preset, act, c, i) != 0)
                    )
                    edge = bvq.ite_bool(bvq.compare(v, c, "=="), k_edge, edge)
                of[b, i] = all_of([mf[b, i], edge])
        return out

    def adjoint(
        self, node: Node, adj: np.ndarray, enc: BVState
    ) -> list[tuple[str, np.ndarray | None]]:
        """AD's adjoint: the slope of the piece, the preset's proxy on a kink."""
        act = act_of(node)
        y = enc.values[node.inputs[0]]
        out = np.empty(y.shape, dtype=object)
        yf, af, of = per_unit(y), per_unit(adj), per_unit(out)
        for b in range(yf.shape[0]):
            for i in range(yf.shape[1]):
                v, g = yf[b, i], af[b, i]
                slopes = [bvq.mul(g, bvq.poly(bvq.deriv(p), v)) for p in act.pieces]
                base = bvq.piecewise(act, v, slopes)
                for c in act.kinks:
                    assert enc.preset is not None
                    p = proxy_of(node, enc.preset, act, c, i)
                    base = bvq.ite(bvq.compare(v, c, "=="), bvq.scale(g, p), base)
                of[b, i] = base
        return [(node.inputs[0], out)]


def _rounded_act(node: Node, ins: list[np.ndarray], st: RoundedState) -> np.ndarray:
    """The piece chosen by comparing the float pre-activation with the kinks (members of the
    format), evaluated by Horner's rule; records the kink sites of a unit that moves."""
    act = act_of(node)
    ar = st.arith
    fmt = getattr(ar, "fmt", None)
    for kink in act.kinks:
        if fmt is not None and not fmt.contains(kink):
            raise UnsupportedOp(
                f"kink {kink} of {act.describe()} (node {node.name!r}) is not a member of "
                f"{fmt.name}: the float piece test is undefined"
            )
    if act.transcendental:
        raise UnsupportedOp(f"activation node {node.name!r} ({act.name}) has no rounded rule")

    def apply(y: Any) -> Any:
        out = horner(ar, act.pieces[-1], y)
        for k in range(len(act.kinks) - 1, -1, -1):
            out = ar.ite(ar.le(y, act.kinks[k]), horner(ar, act.pieces[k], y), out)
        return out

    out = map1(apply, ins[0])
    if act.kinks and st.depends[node.name]:
        flat = per_unit(ins[0])
        for b in range(flat.shape[0]):
            for i in range(flat.shape[1]):
                for c in act.kinks:
                    st.sites.append(FloatSite(node.name, node.inputs[0], b, i, c, flat[b, i]))
    return out


register("act", bv=BVAct(), rounded=_rounded_act)
