"""The pattern method: exact ndf/inc verdicts for dense chains, vectorized over points.

At w let K be the kink neurons whose input tangent is not identically zero
(*inert* kinks, whose pre-activation tangent vanishes syntactically, change
neither f'(w; .) nor AD and are dropped).  For each side pattern s in
{-, +}^K the selected smooth function has gradient L_s and the kink inputs
have gradients g_{k,s} (forward-mode Jacobians with slope D^{s_k} at kink k,
:func:`formal.batch.jacobians`).  The region R_s = {d : s_k g_{k,s} . d > 0 for
g != 0} is open; on it f'(w; d) = L_s d, and the non-empty regions cover a
dense set.  So f is differentiable at w iff all L_s of non-empty regions
coincide (Lemma D), and then the gradient is that L.  Emptiness of a strict
homogeneous system is decided exactly by Gordan's theorem: empty iff some
subset T of rows is a circuit with a positive null vector, i.e. its Gram
matrix has det 0 and a positive adjugate.  AD with a preset is the same
Jacobian with the preset's proxies as slopes.  The method uses nothing of
T1-T5; proofs/pattern-method.md has the proofs.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from formal.core.activations import Activation, Preset
from formal.core.network import Node
from formal.engine.batch import (
    INT64_LIMIT,
    Batch,
    Chain,
    fit_ints,
    forward,
    inert,
    jacobians,
    maxabs,
    proxy_slopes,
    proxy_table,
    small_ints,
    subset,
)

MAX_KINKS = 6  # points with more non-inert kink neurons are left undecided (the caller falls back)


def _det(m: list[list[np.ndarray]]) -> np.ndarray:
    n = len(m)
    if n == 1:
        return m[0][0]
    if n == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    acc = m[0][0] * _det([row[1:] for row in m[1:]])
    for j in range(1, n):
        minor = [row[:j] + row[j + 1 :] for row in m[1:]]
        term = m[0][j] * _det(minor)
        acc = acc + term if j % 2 == 0 else acc - term
    return acc


def infeasible_strict(rows: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Gordan: True where {d : r_k . d > 0 for active k} is empty (rows (P, K, W) ints).

    Empty iff some subset T of active rows has a Gram matrix with det 0 and an
    entrywise positive adjugate (a circuit with a positive null vector).
    """
    P, K, Wd = rows.shape
    mx = maxabs(rows)
    bound = mx * mx * Wd
    small = bound * bound < INT64_LIMIT  # Gram entries and their products fit int64
    R = fit_ints(rows, mx) if small else rows.astype(object)
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
    batch: Batch | None = None  # the forward pass (for callers that need values)


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
        return BatchVerdict(ndf, inc, und, nk, act_count, batch)
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
    return BatchVerdict(ndf, inc, und, nk, act_count, batch)


def _decide_group(
    batch: Batch, live: list[np.ndarray], flat_live: np.ndarray, K: int, presets: list[Preset]
):
    P = batch.P
    # position (0..K-1) of each live kink slot in topological (layer-major) order
    rank = np.cumsum(flat_live, axis=1) - 1
    sizes = [lv.reshape(P, -1).shape[1] for lv in live]
    offsets = np.cumsum([0] + sizes)
    # where each live kink sits: (P, K) flat slot index
    slot_of = np.zeros((P, K), dtype=np.int64)
    rows_idx, cols_idx = np.nonzero(flat_live)
    slot_of[rows_idx, rank[rows_idx, cols_idx]] = cols_idx
    first_L: np.ndarray | None = None
    first_ok = np.zeros(P, dtype=bool)
    diff = np.ones(P, dtype=bool)
    # AD with a preset whose proxy at every live kink is D- or D+ is one of the L_s
    ad_pat = [_preset_pattern(batch, live, rank, K, p) for p in presets]
    ad_L: list[np.ndarray] = [np.zeros((0,), dtype=object)] * len(presets)
    have = [False] * len(presets)
    for pat in range(1 << K):
        bits = np.array([(pat >> j) & 1 for j in range(K)], dtype=np.int64)
        ks: list[np.ndarray | None] = []
        for li, (layer, st) in enumerate(zip(batch.chain.layers, batch.states)):
            act = layer.act
            if act is None or not act.kinks:
                ks.append(None)
                continue
            dm, dp = _one_sided(act, st.sden)
            kk = np.maximum(st.kink, 0)
            r = rank[:, offsets[li] : offsets[li + 1]].reshape(st.kink.shape)
            side = bits[np.clip(r, 0, K - 1)]
            vals = np.where(side == 1, dp[kk], dm[kk])
            ks.append(np.where(live[li], vals, 0))
        jys, L, _ = jacobians(batch, ks)
        for j in range(len(presets)):
            hit = ad_pat[j] == pat
            if hit.any():
                if not have[j]:
                    ad_L[j] = np.zeros(L.shape, dtype=object)
                    have[j] = True
                ad_L[j][hit] = L[hit]
        flat_j = np.concatenate(
            [j.reshape(P, j.shape[1], -1) for j in jys], axis=2
        )  # (P, W, slots)
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
    assert first_ok.all() and first_L is not None, "some point has no feasible side pattern"
    ndf = ~diff
    inc = np.zeros((P, len(presets)), dtype=bool)
    for j, preset in enumerate(presets):
        other = np.flatnonzero(ad_pat[j] < 0)
        if not have[j]:
            ad_L[j] = np.zeros(first_L.shape, dtype=object)
        if other.size:
            sub = subset(batch, other)
            _, Lad, _ = jacobians(sub, proxy_slopes(sub, preset))
            ad_L[j][other] = Lad
        wrong = ~np.all((ad_L[j] == first_L).reshape(P, -1), axis=1)
        inc[:, j] = diff & wrong
    return ndf, inc


@functools.lru_cache(maxsize=4096)
def _side_table(node: Node, preset: Preset, units: int) -> np.ndarray:
    act = node.attr("activation")
    table = proxy_table(node, preset, units)
    side = np.zeros((len(act.kinks), units), dtype=np.int64)
    for j, c in enumerate(act.kinks):
        dm, dp = act.d_minus(c), act.d_plus(c)
        for u in range(units):
            p = table[j][u]
            side[j, u] = 0 if p == dm else 1 if p == dp else -1
    return side


@functools.lru_cache(maxsize=1024)
def _one_sided(act: Activation, sden: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        small_ints([int(act.d_minus(c) * sden) for c in act.kinks]),
        small_ints([int(act.d_plus(c) * sden) for c in act.kinks]),
    )


def _preset_pattern(
    batch: Batch, live: list[np.ndarray], rank: np.ndarray, K: int, preset: Preset
) -> np.ndarray:
    """Per point, the side pattern AD's proxies select, -1 if none.

    Bit k of a pattern is D+ at the k-th live kink.
    """
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
        side = _side_table(layer.act_node, preset, layer.units)  # 1 = D+, 0 = D-, -1 = between
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
        """The selected Jacobians L_s of the feasible patterns (sorted)."""
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
            assert layer.act is not None
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
        key = tuple(1 if b else -1 for b in bits)
        if K == 0:
            selected[key] = _frac_rows(L[0], den)
            feasible.add(key)
            continue
        rows = np.array([flat_j[:, slot] for slot in slots], dtype=object).reshape(
            K, flat_j.shape[0]
        )
        nonzero = [any(v != 0 for v in r) for r in rows]
        if any(not nz and not bits[j] for j, nz in enumerate(nonzero)):
            continue
        selected[key] = _frac_rows(L[0], den)
        signed = np.array([[v * key[j] for v in rows[j]] for j in range(K)], dtype=object).reshape(
            1, K, -1
        )
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
        assert layer.bias is not None, "T2's criterion needs hypothesis H"
        g, _s = sub.groups[layer.bias]
        for u in range(layer.units):
            on = st.kink[:, 0, u] >= 0
            col = L[:, :, int(g[u])]
            hit |= on & np.any(col != 0, axis=1)
    out[idx] = hit
    return out


__all__ = [
    "BatchVerdict",
    "PatternReport",
    "MAX_KINKS",
    "decide",
    "explain",
    "infeasible_strict",
    "t2_criterion",
]
