"""Conditional exact counting over biases under hypothesis H (docs/theory.md section 6).

Setting: a dense chain satisfying H (B = 1, each kinked unit has its own
trainable bias).  Let L* be the topmost layer whose activation has kinks;
every layer above it must be affine (identity activation).  *Counted*
parameters: the biases b of L* (N units) and the trainable biases of the
layers above (F of them, which change no kink and no adjoint).  *Given*
parameters theta: everything else.  With theta fixed, ``a = y_L* - b`` is
fixed, so is every lower layer, and the output's derivative ``G_i`` with
respect to ``z_L*,i``.  By T2 (any proxies; we use 1 at lower kinks):

    w in ndf  <=>  some i with G_i != 0 has a_i + b_i in ndf(rho)
                   or some lower kink k has sum_i G_i s_i(b_i) H_ik != 0,

where s_i(b_i) is rho's slope at a_i + b_i and H_ik the derivative of
y_L*,i with respect to z_k.  Without lower kinks the count is closed form:

    |ndf in slice| = |M|^F (|M|^N - |M|^(N - |S|) prod_{i in S} (|M| - |Bad_i|)),

S = {i : G_i != 0}, Bad_i = {c - a_i : c kink of rho} ∩ M.  With lower kinks
the number of b with all lower adjoints zero is a dynamic programme over
units on the histogram of slopes (exact; capped).  inc is empty by T1.
proofs/counting.md has the proof.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.network import Network, bias_structure
from formal.count.omega import (
    CHUNK,
    DEFAULT_MAX_POINTS,
    CountMethod,
    CountResult,
    CountSpace,
    bernstein,
    count_open,
    digits,
    member_at,
    members_scaled,
    point_of,
    progress_bar,
    progress_iter,
    sci,
    t3_bound,
    tightness_of,
)
from formal.engine.batch import Chain, dense_chain, forward
from formal.errors import InvalidArgument, UnsupportedOp

DP_CAP = 200_000
THETA_MAX = 2_000_000  # enumerate the given parameters up to this many points


@dataclass(frozen=True, slots=True)
class Split:
    """The parameter columns of a chain for conditional counting: counted, free and given."""

    chain: Chain
    top: int  # index of the topmost kinked layer L*
    counted: tuple[int, ...]  # group columns of b_L*
    free: tuple[int, ...]  # trainable bias columns above L*
    given: tuple[int, ...]  # every other column


def supported(net: Network) -> str | None:
    """None when conditional counting applies, else the reason it does not."""
    h = bias_structure(net)
    if not h.holds:
        return f"conditional counting needs hypothesis H ({h.reason})"
    chain = dense_chain(net)
    if chain is None:
        return "conditional counting needs a dense chain (dense layers, pointwise activations)"
    tops = [i for i, ly in enumerate(chain.layers) if ly.act is not None and ly.act.kinks]
    if not tops:
        return None
    for ly in chain.layers[tops[-1] + 1 :]:
        if ly.act is not None and ly.act.name != "identity":
            return (
                "conditional counting needs affine layers above the topmost kinked layer, "
                f"got {ly.act.name}"
            )
    return None


def split(net: Network) -> Split:
    """Split a supported chain's parameters at L* (InvalidArgument when unsupported)."""
    reason = supported(net)
    if reason is not None:
        raise InvalidArgument(reason)
    chain = dense_chain(net)
    assert chain is not None
    par = net.parameterization()
    tops = [i for i, ly in enumerate(chain.layers) if ly.act is not None and ly.act.kinks]
    top = tops[-1] if tops else -1
    counted: list[int] = []
    free: list[int] = []
    if top >= 0:
        bias = chain.layers[top].bias
        assert bias is not None  # H
        counted = [int(g) for g in par.groups[bias].reshape(-1)]
        for ly in chain.layers[top + 1 :]:
            if ly.bias is not None and ly.bias in par.groups:
                free += [int(g) for g in par.groups[ly.bias].reshape(-1)]
    given = [j for j in range(par.size) if j not in counted and j not in free]
    return Split(chain, top, tuple(counted), tuple(free), tuple(given))


# ---------------------------------------------------------------------------
# the closed form, vectorized over theta


def _top_gradient(sp: Split, batch) -> np.ndarray:
    """Numerators of G (P|1, n_obj, N): d objective / d z_L* (sign pattern is what matters).

    Multiplied from the objective downwards, so no N x N matrix is formed.
    """
    chain, net = sp.chain, sp.chain.net
    G = net.objective_matrix().num.astype(object)[None]  # (1, n_obj, n_out), B = 1
    for li in range(len(chain.layers) - 1, sp.top, -1):
        G = np.matmul(G, batch.states[li].wnum.astype(object))  # (P|1, n_obj, in)
    return G


def _bad_counts(sp: Split, batch, fmt) -> np.ndarray:
    """|Bad_i| per point and unit (P, N): kinks c with c - a_i in M."""
    st = batch.states[sp.top]
    act = sp.chain.layers[sp.top].act
    assert act is not None
    y = st.y[:, 0, :].astype(object)
    yden = st.yden
    out = np.zeros(y.shape, dtype=np.int64)
    if fmt.bits <= 16 and fmt.enumerate_scaled()[0].dtype != object:
        vals, q = members_scaled(fmt)
        for c in act.kinks:
            T = (c.numerator * yden - c.denominator * y) * q
            D = c.denominator * yden
            ok = (T % D) == 0
            m = np.where(ok, T // D, 0)
            inset = _isin(m, vals)
            out += ok & inset
        return out
    for idx in np.ndindex(*y.shape):
        a = Fraction(int(y[idx]), yden)
        out[idx] = sum(int(fmt.contains(c - a)) for c in act.kinks)
    return out


def _isin(m: np.ndarray, vals: np.ndarray) -> np.ndarray:
    lo, hi = int(vals[0]), int(vals[-1])
    inside = np.array([lo <= int(v) <= hi for v in m.ravel()], dtype=bool).reshape(m.shape)
    mm = np.where(inside, m, 0).astype(np.int64)
    pos = np.searchsorted(vals, mm)
    pos = np.clip(pos, 0, len(vals) - 1)
    return inside & (vals[pos] == mm)


def _lower_kinks(sp: Split, batch) -> np.ndarray:
    P = batch.P
    out = np.zeros(P, dtype=bool)
    for st in batch.states[: sp.top]:
        out |= np.any(st.kink >= 0, axis=(1, 2))
    return out


def slice_goods(sp: Split, w: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows of w (counted columns ignored): (#good b_L* per point, needs-DP mask)."""
    net = sp.chain.net
    fmt = net.numbers
    M = fmt.size()
    w = w.copy()
    for j in sp.counted + sp.free:
        w[:, j] = 0
    batch = forward(sp.chain, w, q, [])
    G = _top_gradient(sp, batch)
    S = np.broadcast_to(np.any(G != 0, axis=1), (batch.P, G.shape[2]))  # (P, N)
    bad = _bad_counts(sp, batch, fmt)
    factor = np.where(S, M - bad, M).astype(object)
    good = np.prod(factor, axis=1)
    return good, _lower_kinks(sp, batch)


# ---------------------------------------------------------------------------
# one theta, exactly, with lower kinks


def _slopes_hist(act, a: Fraction, fmt) -> list[tuple[Fraction, int]]:
    """Histogram {slope of rho at a + b : b in M, a + b off the kinks}."""
    hist: dict[Fraction, int] = {}
    cuts = [None, *act.kinks, None]
    for j, piece in enumerate(act.pieces):
        lo = None if cuts[j] is None else cuts[j] - a
        hi = None if cuts[j + 1] is None else cuts[j + 1] - a
        deriv = [i * c for i, c in enumerate(piece)][1:]
        if len(deriv) <= 1:
            n = count_open(fmt, lo, hi)
            if n:
                s = deriv[0] if deriv else Fraction(0)
                hist[s] = hist.get(s, 0) + n
            continue
        if fmt.bits > 16:
            raise UnsupportedOp(
                f"conditional count with a lower kink needs the slope histogram of {act.name} over "
                f"{fmt.name}, "
                "whose non-linear piece is not enumerable"
            )
        for m in fmt.enumerate():
            if (lo is None or m > lo) and (hi is None or m < hi):
                x = a + m
                s = sum(c * x**k for k, c in enumerate(deriv))
                hist[s] = hist.get(s, 0) + 1
    return sorted(hist.items())


def slice_good_point(sp: Split, values: list[Fraction]) -> int:
    """#good b_L* (not in ndf) at one theta, exactly, including lower kinks."""
    chain, net = sp.chain, sp.chain.net
    fmt = net.numbers
    M = fmt.size()
    vals = list(values)
    for j in sp.counted + sp.free:
        vals[j] = Fraction(0)
    den = 1
    for v in vals:
        den = math.lcm(den, v.denominator)
    w = np.array([[int(v * den) for v in vals]], dtype=object)
    batch = forward(chain, w, den, [])
    st = batch.states[sp.top]
    act = chain.layers[sp.top].act
    assert act is not None
    N = chain.layers[sp.top].units
    a = [Fraction(int(st.y[0, 0, i]), st.yden) for i in range(N)]
    G = _top_gradient(sp, batch)[0]  # (n_obj, N) numerators (common positive scale)
    S = [any(G[o, i] != 0 for o in range(G.shape[0])) for i in range(N)]
    bad = [sum(int(fmt.contains(c - a[i])) for c in act.kinks) for i in range(N)]
    lower = [
        (li, u)
        for li in range(sp.top)
        for u in range(chain.layers[li].units)
        if batch.states[li].kink[0, 0, u] >= 0
    ]
    if not lower:
        good = 1
        for i in range(N):
            good *= (M - bad[i]) if S[i] else M
        return good
    H = _lower_jacobian(sp, batch, lower)  # (N, K) Fractions
    V = [
        [Fraction(int(G[o, i])) * H[i][k] for o in range(G.shape[0]) for k in range(len(lower))]
        for i in range(N)
    ]
    good = 1
    dp: dict[tuple[Fraction, ...], int] = {tuple(Fraction(0) for _ in V[0]): 1}
    for i in range(N):
        if not S[i]:
            good *= M
            continue
        if not any(V[i]):
            good *= M - bad[i]
            continue
        hist = _slopes_hist(act, a[i], fmt)
        nxt: dict[tuple[Fraction, ...], int] = {}
        for key, cnt in dp.items():
            for s, n in hist:
                k2 = tuple(x + s * v for x, v in zip(key, V[i]))
                nxt[k2] = nxt.get(k2, 0) + cnt * n
        if len(nxt) > DP_CAP:
            raise UnsupportedOp(
                f"conditional count: the lower kinks' adjoint sums take more than {DP_CAP} values"
            )
        dp = nxt
    zero = tuple(Fraction(0) for _ in V[0])
    return good * dp.get(zero, 0)


def _lower_jacobian(sp: Split, batch, lower: list[tuple[int, int]]) -> list[list[Fraction]]:
    """H[i][k] = d y_L*,i / d z_k for each lower kink k (slope 1 at every kink)."""
    chain = sp.chain
    N = chain.layers[sp.top].units
    cols: list[list[Fraction]] = []
    for li, u in lower:
        vec = [Fraction(0)] * chain.layers[li].units
        vec[u] = Fraction(1)
        for m in range(li + 1, sp.top + 1):
            st = batch.states[m]
            W = st.wnum[0] if st.wnum.shape[0] == 1 else st.wnum[0]
            y = [
                sum(
                    (Fraction(int(W[o, i]), st.wden) * vec[i] for i in range(len(vec))), Fraction(0)
                )
                for o in range(W.shape[0])
            ]
            if m == sp.top:
                vec = y
                break
            sl = [
                Fraction(1) if st.kink[0, 0, o] >= 0 else Fraction(int(st.slope[0, 0, o]), st.sden)
                for o in range(len(y))
            ]
            vec = [s * v for s, v in zip(sl, y)]
        cols.append(vec)
    return [[cols[k][i] for k in range(len(lower))] for i in range(N)]


# ---------------------------------------------------------------------------
# the three entry points


def _result(
    net: Network,
    preset: Preset,
    method: CountMethod,
    space: CountSpace,
    omega: int,
    ndf: int,
    t0: float,
    notes: tuple[str, ...],
    extra: dict,
) -> CountResult:
    h = bias_structure(net)
    return CountResult(
        method,
        space,
        net.numbers.name,
        preset.name,
        omega,
        net.param_count(),
        ndf,
        0,
        Fraction(ndf, omega),
        Fraction(0),
        t3_bound(net),
        tightness_of(net),
        time.perf_counter() - t0,
        hypothesis_h=h.holds,
        hypothesis=h.reason,
        notes=notes,
        extra=extra,
    )


def count_conditional(
    net: Network,
    proxy: str = "pytorch",
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    given: str = "auto",
    progress: bool = False,
    theta_max: int = THETA_MAX,
) -> CountResult:
    """Exact |ndf| over Omega (given parameters enumerated) or over the bias slice.

    The bias slice is taken at the net's own values of the given parameters.
    """
    t0 = time.perf_counter()
    preset = parse_preset(proxy)
    sp = split(net)
    fmt = net.numbers
    M = fmt.size()
    N = len(sp.counted)
    F = len(sp.free)
    n_theta = M ** len(sp.given)
    inc_note = "inc = 0 by T1 (H holds)"
    if given not in ("auto", "net"):
        raise InvalidArgument(f"expected given='auto' or 'net', got given={given!r}")
    if sp.top < 0:  # no kinks at all: f is polynomial, ndf and inc are empty
        return _result(
            net,
            preset,
            "conditional",
            "omega",
            M ** net.param_count(),
            0,
            t0,
            ("no kinked activation: f is smooth everywhere",),
            {},
        )
    if given == "auto" and fmt.bits <= 16 and n_theta <= min(theta_max, max_points):
        ndf = _enumerate_theta(sp, progress)
        return _result(
            net,
            preset,
            "conditional",
            "omega",
            M ** net.param_count(),
            ndf,
            t0,
            (
                f"given parameters enumerated ({M}^{len(sp.given)} points), biases of layer "
                f"{sp.top} counted in closed form",
                inc_note,
            ),
            {"given": len(sp.given), "counted": N + F},
        )
    good = slice_good_point(sp, point_of(net))
    slice_size = M ** (N + F)
    ndf = (M**N - good) * M**F
    return _result(
        net,
        preset,
        "conditional",
        "bias-slice",
        slice_size,
        ndf,
        t0,
        (
            f"exact over the {N + F} counted biases with the other {len(sp.given)} parameters "
            "fixed at the network's values",
            inc_note,
        ),
        {"given": len(sp.given), "counted": N + F},
    )


def _enumerate_theta(sp: Split, progress: bool) -> int:
    net = sp.chain.net
    fmt = net.numbers
    vals, q = members_scaled(fmt)
    M = len(vals)
    N, F = len(sp.counted), len(sp.free)
    Wn = net.param_count()
    T = len(sp.given)
    total = M**T
    ndf = 0
    bar = progress_bar(total, f"conditional over {fmt.name}^{T}", progress)
    for start in range(0, total, CHUNK):
        stop = min(total, start + CHUNK)
        w = np.zeros((stop - start, Wn), dtype=np.int64)
        if T:
            w[:, list(sp.given)] = vals[digits(start, stop, M, T)]
        good, low = slice_goods(sp, w, q)
        for i in np.flatnonzero(low):
            good[i] = slice_good_point(sp, [Fraction(int(x), q) for x in w[i]])
        ndf += (stop - start) * M**N - int(np.sum(good))
        bar.update(stop - start)
    bar.close()
    return ndf * M**F


def slice_density_range(sp: Split) -> Fraction:
    """An upper bound R on every bias-slice density (so slice densities lie in [0, R]).

    Without a kinked layer below L*, a slice has ndf only where some unit of L* sits on
    one of the k kinks of its activation (``|Bad_i| <= k``), so its density is at most
    ``1 - (1 - k/|M|)^N``; with lower kinks a slice can be entirely in ndf: R = 1.
    """
    if sp.top < 0:
        return Fraction(0)
    chain = sp.chain
    if any(ly.act is not None and ly.act.kinks for ly in chain.layers[: sp.top]):
        return Fraction(1)
    act = chain.layers[sp.top].act
    assert act is not None
    M = chain.net.numbers.size()
    k = min(len(act.kinks), M)
    return 1 - (1 - Fraction(k, M)) ** len(sp.counted)


def conditional_mc(
    net: Network,
    preset: Preset,
    *,
    samples: int,
    seed: int,
    progress: bool,
    t0: float | None = None,
) -> CountResult:
    """Conditional Monte Carlo: theta uniform over M^|given|, each bias slice counted exactly."""

    t0 = time.perf_counter() if t0 is None else t0
    sp = split(net)
    fmt = net.numbers
    M = fmt.size()
    N = len(sp.counted)
    Wn = net.param_count()
    omega = M**Wn
    rng = random.Random(seed)
    dens: list[Fraction] = []
    q = 1 << (fmt.mbits - fmt.emin)
    block = 256
    for s0 in progress_iter(range(0, samples, block), progress):
        n = min(block, samples - s0)
        w = np.zeros((n, Wn), dtype=object)
        w[...] = 0
        for r in range(n):
            for j in sp.given:
                w[r, j] = int(member_at(fmt, rng.randrange(M)) * q)
        if sp.top < 0:
            good = np.full(n, M**N, dtype=object)
            low = np.zeros(n, dtype=bool)
        else:
            good, low = slice_goods(sp, w, q)
        for i in range(n):
            g = (
                slice_good_point(sp, [Fraction(int(x), q) for x in w[i]])
                if low[i]
                else int(good[i])
            )
            dens.append(Fraction(M**N - g, M**N))
    k = len(dens)
    mean = sum(dens, Fraction(0)) / k
    m = float(mean)
    width = slice_density_range(sp)
    ci = bernstein(dens, width)
    h = bias_structure(net)
    return CountResult(
        "sample",
        "omega",
        fmt.name,
        preset.name,
        omega,
        Wn,
        None,
        0,
        m,
        Fraction(0),
        t3_bound(net),
        tightness_of(net),
        time.perf_counter() - t0,
        ci={"density_ndf": ci, "density_inc": (0.0, 0.0)},
        samples=k,
        hypothesis_h=h.holds,
        hypothesis=h.reason,
        notes=(
            "conditional Monte Carlo: the given parameters drawn uniformly from M, each bias slice "
            f"counted exactly; 95% empirical Bernstein interval for slice densities in [0, "
            f"{sci(width)}] (valid for any distribution, so rare slices no sample saw are "
            "accounted for)",
            "inc = 0 by T1 (H holds)",
        ),
        extra={
            "ndf_estimate": sci(mean * omega),
            "inc_estimate": "0",
            "distinct_values": len(set(dens)),
            "slice_density_max": sci(width),
        },
    )


__all__ = [
    "Split",
    "split",
    "supported",
    "slice_goods",
    "slice_good_point",
    "count_conditional",
    "conditional_mc",
    "slice_density_range",
]
