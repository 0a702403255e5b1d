"""Vectorized exact evaluation of dense chains at many parameter points at once.

A *dense chain* is the network shape of formal-net/1: layers
``y_l = W_l z_{l-1} [+ b_l]``, ``z_l = rho_l(y_l)`` with piecewise-polynomial
activations, any minibatch, ties, frozen tensors and objective.  For P points
(rows of integers ``n`` with parameter groups ``w = n / q``) every value is an
integer numerator array over one exact denominator per layer (int64 when a
static bound proves no overflow, Python ints otherwise): no floats anywhere.

This module holds the forward pass, the syntactic *inert* kinks and the
forward-mode Jacobians with chosen slopes at kinks; :mod:`formal.patterns`
builds the exact decision of ndf/inc on top (proofs/pattern-method.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from formal.core.activations import Activation, Preset
from formal.core.network import Network, Node
from formal.errors import UnsupportedOp
from formal.ops.activation import proxy_of

INT64_LIMIT = 1 << 62  # int64 is used while every |numerator| stays below this


# ---------------------------------------------------------------------------
# integer arrays with a tracked magnitude bound


def fit_ints(arr: np.ndarray, bound: int) -> np.ndarray:
    """The integer array as int64 when ``bound`` (on its magnitudes) fits, else as Python ints."""
    if bound < INT64_LIMIT:
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    return arr if arr.dtype == object else arr.astype(object)


def _wide(arr: np.ndarray, bound: int) -> np.ndarray:
    """The array in a dtype able to hold results up to ``bound``."""
    if bound < INT64_LIMIT and arr.dtype == np.int64:
        return arr
    return arr.astype(object) if arr.dtype != object else arr


def _matvec(z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """y[p, b, o] = sum_i W[p, o, i] z[p, b, i]; unrolled for small fan-in (numpy's
    integer matmul has a large per-batch overhead)."""
    fan_in = z.shape[-1]
    if fan_in > 8:
        return np.matmul(z, np.swapaxes(W, -1, -2))
    acc: np.ndarray | None = None
    for i in range(fan_in):
        term = z[:, :, i, None] * W[:, None, :, i]
        acc = term if acc is None else acc + term
    assert acc is not None
    return acc


def small_ints(values: list) -> np.ndarray:
    """An int64 array when every entry fits, else an object array."""
    arr = np.array(values, dtype=object)
    return fit_ints(arr, maxabs(arr)) if arr.size else arr.astype(np.int64)


def maxabs(arr: np.ndarray) -> int:
    """The largest magnitude of an integer array (0 when empty)."""
    if arr.size == 0:
        return 0
    return int(max(abs(int(arr.max())), abs(int(arr.min()))))


@dataclass(frozen=True, slots=True)
class DenseLayer:
    """One layer of a dense chain."""

    weight: str
    bias: str | None
    act: Activation | None  # None: identity
    act_node: Node | None
    units: int
    fan_in: int


@dataclass(frozen=True, slots=True)
class Chain:
    """A network recognized as a dense chain."""

    net: Network
    layers: tuple[DenseLayer, ...]

    @property
    def width(self) -> int:
        """Number of parameter groups W."""
        return self.net.param_count()


def require_chain(net: Network) -> Chain:
    """The dense chain of ``net``; raises UnsupportedOp naming why the vectorized path fails."""
    chain = dense_chain(net)
    if chain is None:
        raise UnsupportedOp(
            f"{net.source}: expected a dense chain "
            "(dense layers, pointwise piecewise-polynomial activations)"
        )
    return chain


def dense_chain(net: Network) -> Chain | None:
    """Recognize ``input -> (linear [+ add bias] [act])*`` ; None for other graphs."""
    nodes = {n.name: n for n in net.nodes}
    consumers: dict[str, list[Node]] = {n.name: [] for n in net.nodes}
    for n in net.nodes:
        for i in n.inputs:
            consumers[i].append(n)
    inputs = [n for n in net.nodes if n.op == "input"]
    if len(inputs) != 1 or len(inputs[0].shape) != 1:
        return None
    prev = inputs[0].name
    width = inputs[0].shape[0]
    layers: list[DenseLayer] = []
    used = {prev}
    while prev != net.output:
        nxt = [c for c in consumers[prev] if c.name not in used]
        if len(nxt) != 1 or nxt[0].op != "linear" or nxt[0].inputs[0] != prev:
            return None
        lin = nxt[0]
        wnode = nodes[lin.inputs[1]]
        if wnode.op != "param":
            return None
        wname = wnode.attr("name")
        units = lin.shape[0] if len(lin.shape) == 1 else -1
        if units < 0 or tuple(net.params[wname].shape) != (units, width):
            return None
        used |= {lin.name, wnode.name}
        cur = lin.name
        bias = None
        cons = consumers[cur]
        if (
            lin.name != net.output
            and len(cons) == 1
            and cons[0].op == "add"
            and cons[0].inputs[0] == cur
        ):
            bnode = nodes[cons[0].inputs[1]]
            if bnode.op != "param" or tuple(net.params[bnode.attr("name")].shape) != (units,):
                return None
            bias = bnode.attr("name")
            used |= {cons[0].name, bnode.name}
            cur = cons[0].name
        act = act_node = None
        cons = consumers[cur]
        if cur != net.output and len(cons) == 1 and cons[0].op == "act":
            act_node = cons[0]
            act = act_node.attr("activation")
            if act.transcendental:
                return None
            used.add(act_node.name)
            cur = act_node.name
        if cur != net.output and len(consumers[cur]) != 1:
            return None
        layers.append(DenseLayer(wname, bias, act, act_node, units, width))
        prev, width = cur, units
    if len(used) + sum(1 for n in net.nodes if n.op == "param" and n.name not in used) != len(
        net.nodes
    ):
        return None
    for name in net.param_order:  # every parameter node must belong to a layer
        if not any(name in (ly.weight, ly.bias) for ly in layers):
            return None
    return Chain(net, tuple(layers))


# ---------------------------------------------------------------------------
# forward pass


@dataclass
class LayerState:
    """Exact values of one layer for P points (numerators over ``den``)."""

    y: np.ndarray  # (P, B, units) numerators over yden
    yden: int
    ybound: int
    z: np.ndarray  # (P, B, units) numerators over zden
    zden: int
    zbound: int
    pieces: np.ndarray  # (P, B, units) piece index (left piece at a kink)
    kink: np.ndarray  # (P, B, units) index of the kink hit, -1 if none
    slope: np.ndarray  # (P, B, units) numerators over sden (0 at kinks)
    sden: int
    sbound: int
    zero_z: np.ndarray  # bool: z == 0
    wnum: np.ndarray  # (P|1, units, fan_in) weight numerators over wden
    wden: int
    wbound: int


@dataclass
class Batch:
    """The forward pass of a chain at P points."""

    chain: Chain
    P: int
    states: list[LayerState]
    x: np.ndarray  # (1, B, n_in) input numerators over xden
    xden: int
    xbound: int
    groups: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (group, sign) arrays


def _tensor(
    chain: Chain, name: str, w: np.ndarray, q: int, wbound: int
) -> tuple[np.ndarray, int, int]:
    """Numerators (P|1, *shape), denominator and bound of a parameter tensor."""
    net = chain.net
    par = net.parameterization()
    if name in par.groups:
        g, s = par.groups[name], par.signs[name]
        num = w[:, g] * (s if w.dtype == object else s.astype(np.int64))
        return num, q, wbound
    qa = net.params[name]
    num = qa.num[None].copy()
    bound = maxabs(qa.num)
    return fit_ints(num, bound), int(qa.den), bound


def _poly_num(
    coeffs: tuple[Fraction, ...], y: np.ndarray, yden: int, deg: int, lcm: int
) -> np.ndarray:
    """Numerators of sum c_i y^i over lcm * yden^deg (object or int64 as given)."""
    acc = None
    for i, c in enumerate(coeffs):
        if not c:
            continue
        k = c.numerator * (lcm // c.denominator) * yden ** (deg - i)
        term = (y**i) * k if i else np.full(y.shape, k, dtype=y.dtype)
        acc = term if acc is None else acc + term
    if acc is None:
        return np.zeros(y.shape, dtype=y.dtype)
    return acc


def _deriv(p: tuple[Fraction, ...]) -> tuple[Fraction, ...]:
    return tuple(i * c for i, c in enumerate(p))[1:] or (Fraction(0),)


def slope_denominator(act: Activation, extra: list[Fraction]) -> int:
    """lcm of the denominators of derivative coefficients and extra slope values."""
    d = 1
    for p in act.pieces:
        for c in _deriv(p):
            d = math.lcm(d, c.denominator)
    for v in extra:
        d = math.lcm(d, Fraction(v).denominator)
    return d


@functools.lru_cache(maxsize=4096)
def proxy_table(node: Node, preset: Preset, units: int) -> tuple[tuple[Fraction, ...], ...]:
    """proxy[kink index][unit] of an activation node under a preset (cached)."""
    act = node.attr("activation")
    return tuple(tuple(proxy_of(node, preset, act, c, u) for u in range(units)) for c in act.kinks)


def kink_slopes(chain: Chain, li: int, presets: Sequence[Preset]) -> list[Fraction]:
    """Every slope value a kink of layer li can receive: D-, D+ and each preset's proxy."""
    layer = chain.layers[li]
    act = layer.act
    vals: list[Fraction] = []
    if act is None:
        return vals
    for c in act.kinks:
        vals += [act.d_minus(c), act.d_plus(c), Fraction(1)]
    for p in presets:
        for row in proxy_table(layer.act_node, p, layer.units):
            vals += list(set(row))
    return vals


def forward(chain: Chain, w: np.ndarray, q: int, presets: Sequence[Preset] = ()) -> Batch:
    """Exact forward pass at P points ``w / q`` (w: (P, W) integer array)."""
    net = chain.net
    P = w.shape[0]
    wbound = maxabs(w)
    w = fit_ints(w, wbound)
    X = net.inputs
    xden = int(X.den)
    xbound = maxabs(X.num)
    x = fit_ints(X.num[None].copy(), xbound)
    zprev, zden, zbound = x, xden, xbound
    states: list[LayerState] = []
    for li, layer in enumerate(chain.layers):
        wn, wd, wb = _tensor(chain, layer.weight, w, q, wbound)
        pb = zbound * wb * layer.fan_in
        zz = _wide(zprev, pb)
        ww = _wide(wn, pb)
        y = _matvec(zz, ww)  # (P, B, out)
        yden, ybound = zden * wd, pb
        if layer.bias is not None:
            bn, bd, bb = _tensor(chain, layer.bias, w, q, wbound)
            den = math.lcm(yden, bd)
            ybound = ybound * (den // yden) + bb * (den // bd)
            y = _wide(y, ybound) * (den // yden) + _wide(bn, ybound)[:, None, :] * (den // bd)
            yden = den
        y = fit_ints(y, ybound)
        if y.shape[0] != P:  # a layer of constants only (frozen parameters): one row per point
            y = np.broadcast_to(y, (P,) + y.shape[1:]).copy()
        act = layer.act
        shape = y.shape
        pieces = np.zeros(shape, dtype=np.int64)
        kink = np.full(shape, -1, dtype=np.int64)
        if act is None:
            z, zden2, zb = y, yden, ybound
            slope = np.ones(shape, dtype=np.int64)
            sden, sbound = 1, 1
        else:
            for j, c in enumerate(act.kinks):
                cb = ybound * c.denominator + abs(c.numerator) * yden
                lhs = _wide(y, cb) * c.denominator
                rhs = c.numerator * yden
                pieces += lhs > rhs
                kink[lhs == rhs] = j
            deg = act.degree
            ddeg = max(deg - 1, 0)
            lz = 1
            for p in act.pieces:
                for cf in p:
                    lz = math.lcm(lz, cf.denominator)
            sden = slope_denominator(act, kink_slopes(chain, li, presets)) * yden**ddeg
            zden2 = math.lcm(lz * yden**deg, sden * yden)
            top = max(ybound, yden, 1) ** max(deg, 1)
            cmax = max((abs(cf) for p in act.pieces for cf in p), default=Fraction(0))
            scale = zden2 // (lz * yden**deg)
            vb = (deg + 1) * (int(cmax * lz) + 1) * top * scale + (deg + 1) * (
                int(cmax * sden) + 1
            ) * top * deg
            yw = _wide(y, vb)
            z = np.zeros(shape, dtype=yw.dtype)
            slope = np.zeros(shape, dtype=yw.dtype)
            for k, p in enumerate(act.pieces):
                mask = pieces == k
                if not mask.any():
                    continue
                val = _poly_num(p, yw, yden, deg, lz) * (zden2 // (lz * yden**deg))
                z = np.where(mask, val, z)
                sl = _poly_num(_deriv(p), yw, yden, ddeg, sden // yden**ddeg)
                slope = np.where(mask, sl, slope)
            slope = np.where(kink >= 0, 0, slope)
            sbound = max(maxabs(slope), 1)
            zb = max(maxabs(z), 1)
            z, slope = fit_ints(z, zb), fit_ints(slope, sbound)
        states.append(
            LayerState(
                y, yden, ybound, z, zden2, zb, pieces, kink, slope, sden, sbound, z == 0, wn, wd, wb
            )
        )
        zprev, zden, zbound = z, zden2, zb
    par = net.parameterization()
    groups = {k: (par.groups[k], par.signs[k]) for k in par.groups}
    return Batch(chain, P, states, x, xden, xbound, groups)


def subset(batch: Batch, idx: np.ndarray) -> Batch:
    """The batch restricted to points ``idx``."""

    def take(a: np.ndarray) -> np.ndarray:
        return a[idx] if a.shape[0] == batch.P else a

    states = [
        LayerState(
            take(s.y),
            s.yden,
            s.ybound,
            take(s.z),
            s.zden,
            s.zbound,
            take(s.pieces),
            take(s.kink),
            take(s.slope),
            s.sden,
            s.sbound,
            take(s.zero_z),
            take(s.wnum),
            s.wden,
            s.wbound,
        )
        for s in batch.states
    ]
    return Batch(batch.chain, len(idx), states, batch.x, batch.xden, batch.xbound, batch.groups)


# ---------------------------------------------------------------------------
# inert kinks and Jacobians


def inert(batch: Batch) -> list[np.ndarray]:
    """Per layer, bool (P, B, units): the pre-activation tangent is syntactically 0.

    y_j = sum_i W_ji z_i (+ b_j) has ydot == 0 for every direction when there
    is no trainable bias and every input i has (W_ji frozen or z_i = 0) and
    (W_ji = 0 or zdot_i == 0), where zdot_i == 0 means i is inert or a smooth
    neuron with slope 0.  Such a kink changes neither f'(w; .) nor AD (the
    proof is in proofs/lemma-d.md).
    """
    chain = batch.chain
    trainable = set(chain.net.parameterization().groups)
    out: list[np.ndarray] = []
    zero_prev = batch.x == 0  # (1, B, n_in)
    dead_prev = np.ones(zero_prev.shape, dtype=bool)  # input tangents are 0
    for layer, st in zip(chain.layers, batch.states):
        W = st.wnum  # (P|1, out, in)
        frozen = layer.weight not in trainable
        if layer.bias is not None and layer.bias in trainable:
            yz = np.zeros(st.y.shape, dtype=bool)
        else:
            t1 = (
                np.ones(st.y.shape, dtype=bool)
                if frozen
                else np.all(zero_prev[:, :, None, :], axis=-1)
            )
            t2 = np.all((W == 0)[:, None, :, :] | dead_prev[:, :, None, :], axis=-1)
            yz = np.broadcast_to(t1 & t2, st.y.shape).copy()
        out.append(yz)
        smooth_flat = (st.kink < 0) & (st.slope == 0)
        dead_prev = yz | smooth_flat
        zero_prev = st.zero_z
    return out


def jacobians(
    batch: Batch, kslopes: list[np.ndarray | None]
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Forward-mode Jacobians with ``kslopes[l]`` (numerators over the layer's sden) at kinks.

    Returns (per-layer J_y numerators (P, W, B, units) over yden, output
    objective Jacobian numerators (P, n_obj, W), its denominator).
    """
    chain = batch.chain
    net = chain.net
    Wg = net.param_count()
    P = batch.P
    B = net.batch
    jz: np.ndarray | None = None  # (P, W, B, in) numerators over zden of the previous layer
    jzb = 0
    zprev, zden = batch.x, batch.xden
    jys: list[np.ndarray] = []
    for li, (layer, st) in enumerate(zip(chain.layers, batch.states)):
        yden = st.yden
        bound = 0
        pieces: list[np.ndarray] = []
        if layer.weight in batch.groups:  # dW z
            g, s = batch.groups[layer.weight]
            E = np.zeros((Wg,) + g.shape, dtype=np.int64)
            for idx in np.ndindex(*g.shape):
                E[(g[idx],) + idx] += s[idx]
            f = yden // zden
            zb = maxabs(zprev) * f * layer.fan_in
            zz = np.broadcast_to(_wide(zprev, zb) * f, (P,) + zprev.shape[1:])
            if g.size <= 64:  # few entries: one vectorized update per entry
                t1 = np.zeros((P, Wg, B, layer.units), dtype=zz.dtype)
                for (o, i), gi in np.ndenumerate(g):
                    t1[:, gi, :, o] += zz[:, :, i] * int(s[o, i])
            else:
                t1 = np.einsum("goi,pbi->pgbo", E.astype(zz.dtype), zz)
            pieces.append(t1)
            bound += zb
        if jz is not None:
            f = yden // (st.wden * zden)
            tb = jzb * st.wbound * layer.fan_in * f
            ww = _wide(st.wnum, tb)
            jw = _wide(jz, tb)
            if layer.fan_in <= 8:
                acc: np.ndarray | None = None
                for i in range(layer.fan_in):
                    term = jw[:, :, :, i, None] * ww[:, None, None, :, i]
                    acc = term if acc is None else acc + term
                assert acc is not None
                t2 = acc * f
            else:
                t2 = np.matmul(jw, np.swapaxes(ww, -1, -2)[:, None]) * f
            pieces.append(t2)
            bound += tb
        if layer.bias is not None and layer.bias in batch.groups:
            g, s = batch.groups[layer.bias]
            Eb = np.zeros((Wg, layer.units), dtype=np.int64)
            for o in range(layer.units):
                Eb[g[o], o] += s[o] * 1
            t3 = np.broadcast_to(
                (Eb * yden).astype(object if yden >= INT64_LIMIT else np.int64)[None, :, None, :],
                (P, Wg, B, layer.units),
            )
            pieces.append(t3)
            bound += yden
        if not pieces:
            jy = np.zeros((P, Wg, B, layer.units), dtype=np.int64)
        else:
            wide = any(p.dtype == object for p in pieces) or bound >= INT64_LIMIT
            dt = object if wide else np.int64
            jy = pieces[0].astype(dt)
            for piece in pieces[1:]:
                jy = jy + piece.astype(dt)
        jy = fit_ints(np.asarray(jy), max(bound, 1))
        jys.append(jy)
        # through the activation
        slope = st.slope
        sb = st.sbound
        ks = kslopes[li]
        if ks is not None:
            kb = maxabs(ks)
            slope = np.where(st.kink >= 0, _wide(ks, kb), _wide(slope, kb))
            sb = max(sb, kb)
        f = st.zden // (st.sden * yden)
        nb = max(bound, 1) * sb * f
        jz = _wide(jy, nb) * (_wide(slope, nb) * f)[:, None]
        jz = fit_ints(jz, nb)
        jzb = nb
        zprev, zden = st.z, st.zden
    obj = net.objective_matrix()
    assert jz is not None, "a chain has at least one layer"
    flat = jz.reshape(P, Wg, -1)
    ob = maxabs(obj.num)
    nb = jzb * ob * flat.shape[-1]
    L = np.matmul(_wide(flat, nb), _wide(fit_ints(obj.num, ob), nb).T)  # (P, W, n_obj)
    L = fit_ints(np.swapaxes(L, 1, 2), nb)
    return jys, L, int(obj.den) * zden


def proxy_slopes(
    batch: Batch, preset: Preset | None, value: Fraction | None = None
) -> list[np.ndarray | None]:
    """Kink slopes for AD with ``preset`` (or a constant ``value``), numerators over sden."""
    out: list[np.ndarray | None] = []
    for layer, st in zip(batch.chain.layers, batch.states):
        act = layer.act
        if act is None or not act.kinks:
            out.append(None)
            continue
        if value is not None:
            table = [[int(value * st.sden)] * layer.units for _ in act.kinks]
        else:
            table = [
                [int(p * st.sden) for p in row]
                for row in proxy_table(layer.act_node, preset, layer.units)
            ]
        k = np.maximum(st.kink, 0)
        units = np.broadcast_to(np.arange(layer.units), k.shape)
        out.append(small_ints(table)[k, units])
    return out


__all__ = [
    "Chain",
    "DenseLayer",
    "Batch",
    "LayerState",
    "dense_chain",
    "require_chain",
    "forward",
    "subset",
    "inert",
    "jacobians",
    "proxy_slopes",
    "INT64_LIMIT",
    "fit_ints",
    "maxabs",
    "proxy_table",
    "small_ints",
]
