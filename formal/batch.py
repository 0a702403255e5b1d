"""Vectorized exact verdicts for dense chains at many parameter points at once.

A *dense chain* is the network shape of formal-net/1: layers
``y_l = W_l z_{l-1} [+ b_l]``, ``z_l = rho_l(y_l)`` with piecewise-polynomial
activations, any minibatch, ties, frozen tensors and objective.  For P points
(rows of integers ``n`` with parameter groups ``w = n / q``) every value is an
integer numerator array over one exact denominator per layer (int64 when a
static bound proves no overflow, Python ints otherwise): no floats anywhere.

The decision procedure (``pattern method``, THEORY section 2, proofs/lemma-d.md)
is independent of T1-T4: at w let K be the kink neurons whose input tangent
is not identically zero (*inert* kinks, whose pre-activation tangent vanishes
syntactically, change neither f'(w; .) nor AD and are dropped).  For each
side pattern s in {-, +}^K the selected smooth function has gradient L_s and
the kink inputs have gradients g_{k,s} (forward-mode Jacobians with slope
D^{s_k} at kink k).  The region R_s = {d : s_k g_{k,s} . d > 0 for g != 0}
is open; on it f'(w; d) = L_s d, and the feasible regions cover a dense set.
So f is differentiable at w iff all feasible L_s coincide, and then the
gradient is that L.  Feasibility of a strict homogeneous system is decided
exactly by Gordan's theorem: infeasible iff some subset T of rows is a
circuit with a positive null vector, i.e. its Gram matrix G has det 0 and a
positive adjugate.  AD with a preset is the same Jacobian with the preset's
proxies as slopes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .activations import Activation, Preset
from .exact import _proxy
from .network import Network, Node

_LIMIT = 1 << 62  # int64 is used while every |numerator| stays below this
MAX_KINKS = 6  # points with more non-inert kink neurons are left undecided


# ---------------------------------------------------------------------------
# integer arrays with a tracked magnitude bound


def _fit(arr: np.ndarray, bound: int) -> np.ndarray:
    if bound < _LIMIT:
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    return arr if arr.dtype == object else arr.astype(object)


def _wide(arr: np.ndarray, bound: int) -> np.ndarray:
    """The array in a dtype able to hold results up to ``bound``."""
    if bound < _LIMIT and arr.dtype == np.int64:
        return arr
    return arr.astype(object) if arr.dtype != object else arr


def _matvec(z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """y[p, b, o] = sum_i W[p, o, i] z[p, b, i]; unrolled for small fan-in (numpy's
    integer matmul has a large per-batch overhead)."""
    fan_in = z.shape[-1]
    if fan_in > 8:
        return np.matmul(z, np.swapaxes(W, -1, -2))
    acc = None
    for i in range(fan_in):
        term = z[:, :, i, None] * W[:, None, :, i]
        acc = term if acc is None else acc + term
    return acc


def _small(values: list) -> np.ndarray:
    """An int64 array when every entry fits, else an object array."""
    arr = np.array(values, dtype=object)
    return _fit(arr, _maxabs(arr)) if arr.size else arr.astype(np.int64)


def _maxabs(arr: np.ndarray) -> int:
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
        return self.net.param_count()


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
        if lin.name != net.output and len(cons) == 1 and cons[0].op == "add" and cons[0].inputs[0] == cur:
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
    if len(used) + sum(1 for n in net.nodes if n.op == "param" and n.name not in used) != len(net.nodes):
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


def _tensor(chain: Chain, name: str, w: np.ndarray, q: int, wbound: int) -> tuple[np.ndarray, int, int]:
    """Numerators (P|1, *shape), denominator and bound of a parameter tensor."""
    net = chain.net
    par = net.parameterization()
    if name in par.groups:
        g, s = par.groups[name], par.signs[name]
        num = w[:, g] * (s if w.dtype == object else s.astype(np.int64))
        return num, q, wbound
    qa = net.params[name]
    num = qa.num[None].copy()
    bound = _maxabs(qa.num)
    return _fit(num, bound), int(qa.den), bound


def _poly_num(coeffs: tuple[Fraction, ...], y: np.ndarray, yden: int, deg: int, lcm: int) -> np.ndarray:
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


def kink_slopes(chain: Chain, li: int, presets: list[Preset]) -> list[Fraction]:
    """Every slope value a kink of layer li can receive: D-, D+ and each preset's proxy."""
    layer = chain.layers[li]
    act = layer.act
    vals: list[Fraction] = []
    if act is None:
        return vals
    for c in act.kinks:
        vals += [act.d_minus(c), act.d_plus(c), Fraction(1)]
        for p in presets:
            for u in range(layer.units):
                vals.append(_proxy(layer.act_node, p, act, c, u))
    return vals


def forward(chain: Chain, w: np.ndarray, q: int, presets: list[Preset] = ()) -> Batch:
    """Exact forward pass at P points ``w / q`` (w: (P, W) integer array)."""
    net = chain.net
    P = w.shape[0]
    wbound = _maxabs(w)
    w = _fit(w, wbound)
    X = net.inputs
    xden = int(X.den)
    xbound = _maxabs(X.num)
    x = _fit(X.num[None].copy(), xbound)
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
        y = _fit(y, ybound)
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
            vb = (deg + 1) * (int(cmax * lz) + 1) * top * scale + (deg + 1) * (int(cmax * sden) + 1) * top * deg
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
            sbound = max(_maxabs(slope), 1)
            zb = max(_maxabs(z), 1)
            z, slope = _fit(z, zb), _fit(slope, sbound)
        states.append(LayerState(y, yden, ybound, z, zden2, zb, pieces, kink, slope, sden, sbound, z == 0, wn, wd, wb))
        zprev, zden, zbound = z, zden2, zb
    par = net.parameterization()
    groups = {k: (par.groups[k], par.signs[k]) for k in par.groups}
    return Batch(chain, P, states, x, xden, xbound, groups)


def subset(batch: Batch, idx: np.ndarray) -> Batch:
    """The batch restricted to points ``idx``."""

    def take(a: np.ndarray) -> np.ndarray:
        return a[idx] if a.shape[0] == batch.P else a

    states = [
        LayerState(take(s.y), s.yden, s.ybound, take(s.z), s.zden, s.zbound, take(s.pieces), take(s.kink),
                   take(s.slope), s.sden, s.sbound, take(s.zero_z), take(s.wnum), s.wden, s.wbound)
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
            t1 = np.ones(st.y.shape, dtype=bool) if frozen else np.all(zero_prev[:, :, None, :], axis=-1)
            t2 = np.all((W == 0)[:, None, :, :] | dead_prev[:, :, None, :], axis=-1)
            yz = np.broadcast_to(t1 & t2, st.y.shape).copy()
        out.append(yz)
        smooth_flat = (st.kink < 0) & (st.slope == 0)
        dead_prev = yz | smooth_flat
        zero_prev = st.zero_z
    return out


def jacobians(batch: Batch, kslopes: list[np.ndarray | None]) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Forward-mode Jacobians with ``kslopes[l]`` (numerators over the layer's sden) at kinks.

    Returns (per-layer J_y numerators (P, W, B, units) over yden, output
    objective Jacobian numerators (P, n_obj, W), its denominator).
    """
    chain = batch.chain
    net = chain.net
    Wg = net.param_count()
    P = batch.P
    B = net.batch
    jz = None  # (P, W, B, in) numerators over zden of the previous layer
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
            zb = _maxabs(zprev) * f * layer.fan_in
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
                t2 = None
                for i in range(layer.fan_in):
                    term = jw[:, :, :, i, None] * ww[:, None, None, :, i]
                    t2 = term if t2 is None else t2 + term
                t2 = t2 * f
            else:
                t2 = np.matmul(jw, np.swapaxes(ww, -1, -2)[:, None]) * f
            pieces.append(t2)
            bound += tb
        if layer.bias is not None and layer.bias in batch.groups:
            g, s = batch.groups[layer.bias]
            Eb = np.zeros((Wg, layer.units), dtype=np.int64)
            for o in range(layer.units):
                Eb[g[o], o] += s[o] * 1
            t3 = np.broadcast_to((Eb * yden).astype(object if yden >= _LIMIT else np.int64)[None, :, None, :], (P, Wg, B, layer.units))
            pieces.append(t3)
            bound += yden
        if not pieces:
            jy = np.zeros((P, Wg, B, layer.units), dtype=np.int64)
        else:
            dt = object if any(p.dtype == object for p in pieces) or bound >= _LIMIT else np.int64
            jy = sum(p.astype(dt) for p in pieces)
        jy = _fit(np.asarray(jy), max(bound, 1))
        jys.append(jy)
        # through the activation
        slope = st.slope
        sb = st.sbound
        ks = kslopes[li]
        if ks is not None:
            kb = _maxabs(ks)
            slope = np.where(st.kink >= 0, _wide(ks, kb), _wide(slope, kb))
            sb = max(sb, kb)
        f = st.zden // (st.sden * yden)
        nb = max(bound, 1) * sb * f
        jz = _wide(jy, nb) * (_wide(slope, nb) * f)[:, None]
        jz = _fit(jz, nb)
        jzb = nb
        zprev, zden = st.z, st.zden
    obj = net.objective_matrix()
    flat = jz.reshape(P, Wg, -1)
    ob = _maxabs(obj.num)
    nb = jzb * ob * flat.shape[-1]
    L = np.matmul(_wide(flat, nb), _wide(_fit(obj.num, ob), nb).T)  # (P, W, n_obj)
    L = _fit(np.swapaxes(L, 1, 2), nb)
    return jys, L, int(obj.den) * zden


def proxy_slopes(batch: Batch, preset: Preset | None, value: Fraction | None = None) -> list[np.ndarray | None]:
    """Kink slopes for AD with ``preset`` (or a constant ``value``), numerators over sden."""
    out: list[np.ndarray | None] = []
    for layer, st in zip(batch.chain.layers, batch.states):
        act = layer.act
        if act is None or not act.kinks:
            out.append(None)
            continue
        table = [[int((value if value is not None else _proxy(layer.act_node, preset, act, c, u)) * st.sden)
                  for u in range(layer.units)] for c in act.kinks]
        k = np.maximum(st.kink, 0)
        units = np.broadcast_to(np.arange(layer.units), k.shape)
        out.append(_small(table)[k, units])
    return out


# ---------------------------------------------------------------------------
# the pattern method


def _det(m: list[list[np.ndarray]]) -> np.ndarray:
    n = len(m)
    if n == 1:
        return m[0][0]
    if n == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    acc = None
    for j in range(n):
        minor = [row[:j] + row[j + 1 :] for row in m[1:]]
        term = m[0][j] * _det(minor)
        acc = term if acc is None else (acc + term if j % 2 == 0 else acc - term)
    return acc


def infeasible_strict(rows: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Gordan: True where {d : r_k . d > 0 for active k} is empty (rows (P, K, W) ints).

    Empty iff some subset T of active rows has a Gram matrix with det 0 and an
    entrywise positive adjugate (a circuit with a positive null vector).
    """
    P, K, Wd = rows.shape
    mx = _maxabs(rows)
    bound = mx * mx * Wd
    small = bound * bound < _LIMIT  # Gram entries and their products fit int64
    R = _fit(rows, mx) if small else rows.astype(object)
    gram = np.empty((P, K, K), dtype=np.int64 if small else object)
    for a in range(K):
        for b in range(a, K):
            gram[:, a, b] = gram[:, b, a] = (R[:, a, :] * R[:, b, :]).sum(axis=1)
    bad = np.zeros(P, dtype=bool)
    active = active.copy()
    # circuits of size 2: anti-parallel pairs (Cauchy-Schwarz equality, negative product);
    # a row positively parallel to an earlier one is the same half-space: drop it
    for a, b in itertools.combinations(range(K), 2):
        both = active[:, a] & active[:, b]
        gab = gram[:, a, b]
        par = both & (gab * gab == gram[:, a, a] * gram[:, b, b])
        bad |= par & (gab < 0)
        active[:, b] &= ~(par & (gab > 0))
    if K < 3:
        return bad
    # linearly independent active rows admit every sign pattern: no larger circuit
    todo = ~bad & (active.sum(axis=1) >= 3)
    if not todo.any():
        return bad
    gram = gram.astype(object)
    eye = np.zeros((P, K, K), dtype=object)
    for k in range(K):
        eye[:, k, k] = 1
    mask = active[:, :, None] & active[:, None, :]
    full = np.where(mask, gram, eye)
    if todo.any():
        sub = np.flatnonzero(todo)
        det = _det([[full[sub, a, b] for b in range(K)] for a in range(K)])
        todo[sub[det != 0]] = False
    for t in range(3, K + 1):
        for T in itertools.combinations(range(K), t):
            ok = np.all(active[:, list(T)], axis=1) & ~bad & todo
            if not ok.any():
                continue
            G = [[gram[ok, a, b] for b in T] for a in T]
            det = _det(G)
            sing = det == 0
            if not sing.any():
                continue
            pos = sing.copy()
            for i in range(t):
                for j in range(t):
                    minor = [row[:i] + row[i + 1 :] for k2, row in enumerate(G) if k2 != j]
                    cof = _det(minor)
                    if (i + j) % 2:
                        cof = -cof
                    pos &= cof > 0
            where = np.flatnonzero(ok)
            bad[where[pos]] = True
    return bad


@dataclass
class BatchVerdict:
    """Per point: ndf, inc (per preset), and points the method could not decide."""

    ndf: np.ndarray  # bool (P,)
    inc: np.ndarray  # bool (P, n_presets)
    undecided: np.ndarray  # bool (P,)
    kinks: np.ndarray  # int (P,): kink neurons (all, including inert)
    active: np.ndarray  # int (P,): non-inert kink neurons


def decide(chain: Chain, w: np.ndarray, q: int, presets: list[Preset]) -> BatchVerdict:
    """Exact ndf/inc at every row of ``w / q`` by the pattern method."""
    P = w.shape[0]
    n = len(presets)
    ndf = np.zeros(P, dtype=bool)
    inc = np.zeros((P, n), dtype=bool)
    und = np.zeros(P, dtype=bool)
    batch = forward(chain, w, q, presets)
    nk = sum(np.sum(st.kink >= 0, axis=(1, 2)) for st in batch.states)
    act_count = np.zeros(P, dtype=np.int64)
    idx = np.flatnonzero(nk > 0)
    if idx.size == 0:
        return BatchVerdict(ndf, inc, und, nk, act_count)
    sub = subset(batch, idx)
    dead = inert(sub)
    live = [(st.kink >= 0) & ~d for st, d in zip(sub.states, dead)]
    flat_live = np.concatenate([lv.reshape(len(idx), -1) for lv in live], axis=1)
    K = flat_live.sum(axis=1)
    act_count[idx] = K
    for k in np.unique(K):
        k = int(k)
        if k == 0:
            continue
        sel = np.flatnonzero(K == k)
        if k > MAX_KINKS:
            und[idx[sel]] = True
            continue
        g = subset(sub, sel)
        lv = [x[sel] for x in live]
        fl = flat_live[sel]
        d, i = _decide_group(g, lv, fl, k, presets)
        ndf[idx[sel]] = d
        inc[idx[sel]] = i
    return BatchVerdict(ndf, inc, und, nk, act_count)


def _decide_group(batch: Batch, live: list[np.ndarray], flat_live: np.ndarray, K: int, presets: list[Preset]):
    P = batch.P
    # position (0..K-1) of each live kink slot in topological (layer-major) order
    rank = np.cumsum(flat_live, axis=1) - 1
    sizes = [lv.reshape(P, -1).shape[1] for lv in live]
    offsets = np.cumsum([0] + sizes)
    # where each live kink sits: (P, K) flat slot index
    slot_of = np.zeros((P, K), dtype=np.int64)
    rows_idx, cols_idx = np.nonzero(flat_live)
    slot_of[rows_idx, rank[rows_idx, cols_idx]] = cols_idx
    first_L = None
    first_ok = np.zeros(P, dtype=bool)
    diff = np.ones(P, dtype=bool)
    # AD with a preset whose proxy at every live kink is D- or D+ is one of the L_s
    ad_pat = [_preset_pattern(batch, live, rank, K, p) for p in presets]
    ad_L: list[np.ndarray | None] = [None] * len(presets)
    for pat in range(1 << K):
        bits = np.array([(pat >> j) & 1 for j in range(K)], dtype=np.int64)
        ks: list[np.ndarray | None] = []
        for li, (layer, st) in enumerate(zip(batch.chain.layers, batch.states)):
            act = layer.act
            if act is None or not act.kinks:
                ks.append(None)
                continue
            dm = _small([int(act.d_minus(c) * st.sden) for c in act.kinks])
            dp = _small([int(act.d_plus(c) * st.sden) for c in act.kinks])
            kk = np.maximum(st.kink, 0)
            r = rank[:, offsets[li] : offsets[li + 1]].reshape(st.kink.shape)
            side = bits[np.clip(r, 0, K - 1)]
            vals = np.where(side == 1, dp[kk], dm[kk])
            ks.append(np.where(live[li], vals, 0))
        jys, L, _ = jacobians(batch, ks)
        for j in range(len(presets)):
            hit = ad_pat[j] == pat
            if hit.any():
                if ad_L[j] is None:
                    ad_L[j] = np.zeros(L.shape, dtype=object)
                ad_L[j][hit] = L[hit]
        flat_j = np.concatenate([j.reshape(P, j.shape[1], -1) for j in jys], axis=2)  # (P, W, slots)
        rows = np.take_along_axis(flat_j, slot_of[:, None, :], axis=2)  # (P, W, K)
        rows = np.swapaxes(rows, 1, 2)  # (P, K, W)
        nonzero = np.any(rows != 0, axis=2)
        valid = np.all(nonzero | (bits[None, :] == 1), axis=1)
        signed = rows * np.where(bits == 1, 1, -1)[None, :, None]
        feasible = valid.copy()
        if K >= 2 and valid.any():
            v = np.flatnonzero(valid)
            feasible[v] = ~infeasible_strict(signed[v], nonzero[v])
        if first_L is None:
            first_L = np.zeros_like(L, dtype=object)
        take = feasible & ~first_ok
        first_L[take] = L[take]
        first_ok |= take
        both = feasible & ~take
        if both.any():
            same = np.all((L[both] == first_L[both]).reshape(int(both.sum()), -1), axis=1)
            diff[np.flatnonzero(both)[~same]] = False
    assert first_ok.all(), "some point has no feasible side pattern"
    ndf = ~diff
    inc = np.zeros((P, len(presets)), dtype=bool)
    for j, preset in enumerate(presets):
        other = np.flatnonzero(ad_pat[j] < 0)
        if ad_L[j] is None:
            ad_L[j] = np.zeros(first_L.shape, dtype=object)
        if other.size:
            sub = subset(batch, other)
            _, Lad, _ = jacobians(sub, proxy_slopes(sub, preset))
            ad_L[j][other] = Lad
        wrong = ~np.all((ad_L[j] == first_L).reshape(P, -1), axis=1)
        inc[:, j] = diff & wrong
    return ndf, inc


def _preset_pattern(batch: Batch, live: list[np.ndarray], rank: np.ndarray, K: int, preset: Preset) -> np.ndarray:
    """Per point, the side pattern AD's proxies select (bit k = D+ at the k-th live kink), -1 if none."""
    P = batch.P
    pat = np.zeros(P, dtype=np.int64)
    ok = np.ones(P, dtype=bool)
    offset = 0
    for li, (layer, st) in enumerate(zip(batch.chain.layers, batch.states)):
        n = st.kink[0].size
        act = layer.act
        if act is None or not act.kinks:
            offset += n
            continue
        side = np.zeros((len(act.kinks), layer.units), dtype=np.int64)  # 1 = D+, 0 = D-, -1 = between
        for j, c in enumerate(act.kinks):
            for u in range(layer.units):
                p = _proxy(layer.act_node, preset, act, c, u)
                side[j, u] = 0 if p == act.d_minus(c) else 1 if p == act.d_plus(c) else -1
        k = np.maximum(st.kink, 0)
        units = np.broadcast_to(np.arange(layer.units), k.shape)
        sd = side[k, units]  # (P, B, units)
        lv = live[li]
        r = rank[:, offset : offset + n].reshape(st.kink.shape)
        ok &= ~np.any(lv & (sd < 0), axis=(1, 2))
        bits = np.where(lv & (sd > 0), np.left_shift(1, np.clip(r, 0, 62)), 0)
        pat |= np.bitwise_or.reduce(bits.reshape(P, -1), axis=1) if bits.size else 0
        offset += n
    return np.where(ok, pat, -1)


@dataclass(frozen=True)
class PatternReport:
    """The pattern method at one point, in full (for T4 evidence and reports).

    ``kinks`` lists the non-inert kink neurons (layer, sample, unit, kink c);
    ``selected[s]`` is L_s for every valid side pattern s (tuple of +1/-1),
    ``feasible`` the patterns whose open region is non-empty; ``ad[name]``
    AD's Jacobian with each preset.  Jacobians are (n_obj, W) Fractions.
    """

    kinks: tuple[tuple[int, int, int, Fraction], ...]
    selected: dict[tuple[int, ...], tuple[tuple[Fraction, ...], ...]]
    feasible: frozenset[tuple[int, ...]]
    ad: dict[str, tuple[tuple[Fraction, ...], ...]]
    differentiable: bool

    @property
    def bouligand(self) -> list[tuple[tuple[Fraction, ...], ...]]:
        return [self.selected[s] for s in sorted(self.feasible)]


def explain(chain: Chain, w_row: np.ndarray, q: int, presets: list[Preset]) -> PatternReport:
    """Run the pattern method at a single point and return every selected Jacobian."""
    batch = forward(chain, np.asarray(w_row).reshape(1, -1), q, presets)
    dead = inert(batch)
    live = [(st.kink >= 0) & ~d for st, d in zip(batch.states, dead)]
    flat_live = np.concatenate([lv.reshape(1, -1) for lv in live], axis=1)
    K = int(flat_live.sum())
    kinks = []
    for li, (layer, st, lv) in enumerate(zip(chain.layers, batch.states, live)):
        for b, u in zip(*np.nonzero(lv[0])):
            kinks.append((li, int(b), int(u), layer.act.kinks[int(st.kink[0, b, u])]))
    offsets = np.cumsum([0] + [lv.reshape(1, -1).shape[1] for lv in live])
    slots = np.flatnonzero(flat_live[0])
    selected: dict[tuple[int, ...], tuple[tuple[Fraction, ...], ...]] = {}
    feasible: set[tuple[int, ...]] = set()
    den = None
    for pat in range(1 << K):
        bits = [(pat >> j) & 1 for j in range(K)]
        ks: list[np.ndarray | None] = []
        for li, (layer, st) in enumerate(zip(chain.layers, batch.states)):
            act = layer.act
            if act is None or not act.kinks:
                ks.append(None)
                continue
            vals = np.zeros(st.kink.shape, dtype=object)
            for j, slot in enumerate(slots):
                if offsets[li] <= slot < offsets[li + 1]:
                    b, u = np.unravel_index(slot - offsets[li], st.kink.shape[1:])
                    c = act.kinks[int(st.kink[0, b, u])]
                    vals[0, b, u] = int((act.d_plus(c) if bits[j] else act.d_minus(c)) * st.sden)
            ks.append(vals)
        jys, L, den = jacobians(batch, ks)
        flat_j = np.concatenate([j.reshape(1, j.shape[1], -1) for j in jys], axis=2)[0]
        rows = np.array([flat_j[:, slot] for slot in slots], dtype=object).reshape(K, -1)
        nonzero = [any(v != 0 for v in r) for r in rows]
        if any(not nz and not bits[j] for j, nz in enumerate(nonzero)):
            continue
        key = tuple(1 if b else -1 for b in bits)
        selected[key] = _frac_rows(L[0], den)
        signed = np.array([[v * key[j] for v in rows[j]] for j in range(K)], dtype=object).reshape(1, K, -1)
        ok = K < 2 or not infeasible_strict(signed, np.array([nonzero]))[0]
        if ok:
            feasible.add(key)
    ad = {}
    for p in presets:
        _, La, dA = jacobians(batch, proxy_slopes(batch, p))
        ad[p.name] = _frac_rows(La[0], dA)
    vals_f = {selected[s] for s in feasible}
    return PatternReport(tuple(kinks), selected, frozenset(feasible), ad, len(vals_f) <= 1)


def _frac_rows(L: np.ndarray, den: int) -> tuple[tuple[Fraction, ...], ...]:
    return tuple(tuple(Fraction(int(v), den) for v in row) for row in L)


def t2_criterion(chain: Chain, w: np.ndarray, q: int) -> np.ndarray:
    """T2's test at each point: some kink neuron has a non-zero AD adjoint (proxies 1).

    Under H the adjoint of kink unit k is d AD / d b_k with slope 1 at kinks.
    """
    P = w.shape[0]
    batch = forward(chain, w, q, [])
    out = np.zeros(P, dtype=bool)
    nk = sum(np.sum(st.kink >= 0, axis=(1, 2)) for st in batch.states)
    idx = np.flatnonzero(nk > 0)
    if idx.size == 0:
        return out
    sub = subset(batch, idx)
    _, L, _ = jacobians(sub, proxy_slopes(sub, None, Fraction(1)))
    hit = np.zeros(len(idx), dtype=bool)
    for layer, st in zip(chain.layers, sub.states):
        if layer.act is None or not layer.act.kinks:
            continue
        g, _s = sub.groups[layer.bias]
        for u in range(layer.units):
            on = st.kink[:, 0, u] >= 0
            col = L[:, :, int(g[u])]
            hit |= on & np.any(col != 0, axis=1)
    out[idx] = hit
    return out


__all__ = [
    "Chain",
    "DenseLayer",
    "dense_chain",
    "forward",
    "decide",
    "BatchVerdict",
    "t2_criterion",
    "explain",
    "PatternReport",
    "inert",
    "jacobians",
    "infeasible_strict",
]
