"""Counting on Omega = M^W: exact enumeration, conditional counting over biases, sampling.

Three methods (docs/theory.md section 6; proofs/counting.md states what each computes):

- ``exact``: every point of Omega is decided.  Dense chains use the
  vectorized pattern method of :mod:`formal.patterns` (exact integers, no use of
  T1-T4); other graphs call :func:`formal.verdict.check` per point.  A sample
  of points is re-decided by ``check`` and any disagreement is a loud error.
- ``conditional`` (hypothesis H): the biases of the topmost kinked layer (and
  the free biases above it) are counted in closed form given every other
  parameter (:mod:`formal.count_bias`); the other parameters are enumerated
  when that is feasible (an exact count over all of Omega) and otherwise fixed
  at the network's values (an exact count over that bias slice).
- ``sample``: conditional Monte Carlo under H (the other parameters drawn
  uniformly from M, the bias slice counted exactly; empirical Bernstein
  interval on [0, R], R a bound on slice densities) or plain Monte Carlo of
  exact verdicts (Wilson interval).

The T3 bound ``sum_l N_l k_l / |M|`` and the tightness formula
``1 - prod_l (1 - k_M,l (1 - 1/|M|) / |M|)^N_l`` go with every density.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.network import Network, bias_structure
from formal.core.numbers import Format, format_exact
from formal.count import bias as count_bias
from formal.count.omega import (
    CHUNK,
    DEFAULT_MAX_POINTS,
    CountMethod,
    CountResult,
    CrossCheckError,
    count_open,
    digits,
    half_count,
    hoeffding,
    kinked_layers,
    kinks_in,
    member_at,
    members_scaled,
    point_of,
    presets_of,
    progress_bar,
    progress_iter,
    rank_le,
    reformat,
    sample_points,
    sci,
    t3_bound,
    tightness_density,
    tightness_of,
    wilson,
    with_point,
)
from formal.engine.batch import Chain, dense_chain
from formal.engine.patterns import decide
from formal.engine.verdict import check
from formal.errors import InvalidArgument, UnsupportedOp

# ---------------------------------------------------------------------------
# exhaustive enumeration


@dataclass
class Exhaustive:
    """Raw exhaustive counts for several presets."""

    omega: int
    ndf: int
    inc: dict[str, int]
    kink_points: int
    points: int
    extra: dict[str, int]
    cross_checked: int
    witnesses: dict[str, list[list[Fraction]]]
    seconds: float


Hook = Callable[[Chain | None, np.ndarray, int, Any], dict[str, int]]


def exhaustive(
    net: Network,
    proxies: Sequence[str | Preset] = ("pytorch",),
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    cross_check: int = 16,
    hooks: Sequence[Hook] = (),
    witnesses: int = 3,
    progress: bool = False,
    seed: int = 0,
) -> Exhaustive:
    """Decide every point of Omega = M^W; returns |ndf| and |inc| per preset."""
    t0 = time.perf_counter()
    presets = presets_of(proxies)
    fmt = net.numbers
    vals, q = members_scaled(fmt)
    M, W = len(vals), net.param_count()
    total = M**W
    if total > max_points:
        raise InvalidArgument(
            f"expected |Omega| <= {max_points} points for exact enumeration, got |M|^W = {M}^{W} = "
            f"{total} "
            f"(use --method conditional or sample)"
        )
    chain = dense_chain(net)
    names = [p.name for p in presets]
    inc = dict.fromkeys(names, 0)
    extra: dict[str, int] = {}
    wit: dict[str, list[list[Fraction]]] = {
        key: [] for key in ["ndf"] + [f"inc:{n}" for n in names]
    }
    ndf = kinky = 0
    rng = np.random.default_rng(seed)
    sample: list[tuple[list[Fraction], bool, tuple[bool, ...]]] = []
    seen = 0
    bar = progress_bar(total, f"enumerating {fmt.name}^{W}", progress)
    for start in range(0, total, CHUNK):
        stop = min(total, start + CHUNK)
        w = vals[digits(start, stop, M, W)]
        if chain is not None:
            bv = decide(chain, w, q, presets)
            nd, ic, und, kk = bv.ndf.copy(), bv.inc.copy(), bv.undecided, bv.kinks
            for k in np.flatnonzero(und):
                point = [Fraction(int(x), q) for x in w[k]]
                nd[k], ic[k] = _check_point(net, point, presets)
        else:
            bv = None
            nd = np.zeros(stop - start, dtype=bool)
            ic = np.zeros((stop - start, len(presets)), dtype=bool)
            kk = np.zeros(stop - start, dtype=np.int64)
            for i in range(stop - start):
                point = [Fraction(int(x), q) for x in w[i]]
                nd[i], ic[i] = _check_point(net, point, presets)
        ndf += int(nd.sum())
        kinky += int((kk > 0).sum())
        for j, n in enumerate(names):
            inc[n] += int(ic[:, j].sum())
        for hook in hooks:
            for key, num in hook(chain, w, q, bv).items():
                extra[key] = extra.get(key, 0) + int(num)
        for key, mask in [("ndf", nd)] + [(f"inc:{n}", ic[:, j]) for j, n in enumerate(names)]:
            room = witnesses - len(wit[key])
            if room > 0:
                for i in np.flatnonzero(mask)[:room]:
                    wit[key].append([Fraction(int(x), q) for x in w[i]])
        if chain is not None and cross_check:  # reservoir sample (algorithm R) of kink points
            cand = np.flatnonzero(kk > 0)
            ordinal = seen + 1 + np.arange(len(cand))
            seen += len(cand)
            u = rng.random(len(cand))
            keep = (ordinal <= cross_check) | (u < cross_check / ordinal)
            for i in cand[keep]:
                item = (
                    [Fraction(int(x), q) for x in w[i]],
                    bool(nd[i]),
                    tuple(bool(x) for x in ic[i]),
                )
                if len(sample) < cross_check:
                    sample.append(item)
                else:
                    sample[int(rng.integers(cross_check))] = item
        bar.update(stop - start)
    bar.close()
    checked = _cross_check(net, presets, sample) if chain is not None else 0
    return Exhaustive(total, ndf, inc, kinky, total, extra, checked, wit, time.perf_counter() - t0)


def _check_point(
    net: Network, values: list[Fraction], presets: list[Preset]
) -> tuple[bool, np.ndarray]:
    n2 = with_point(net, values)
    nd = False
    ic = np.zeros(len(presets), dtype=bool)
    for j, p in enumerate(presets):
        v = check(n2, p)
        if v.in_ndf is None:
            raise UnsupportedOp(
                f"the verdict at {[format_exact(x) for x in values]} is unknown: {v.reason}"
            )
        nd = bool(v.in_ndf)
        ic[j] = bool(v.in_inc)
    return nd, ic


def _cross_check(
    net: Network, presets: list[Preset], sample: list[tuple[list[Fraction], bool, tuple[bool, ...]]]
) -> int:
    """Re-decide sampled points with the core's check; raise on any disagreement."""
    for values, nd, ic in sample:
        got_nd, got_ic = _check_point(net, values, presets)
        if got_nd != nd or tuple(bool(x) for x in got_ic) != ic:
            raise CrossCheckError(
                f"vectorized verdict disagrees with check at w = "
                f"{[format_exact(v) for v in values]}: "
                f"ndf {nd} vs {got_nd}, inc {ic} vs {tuple(got_ic)}"
            )
    return len(sample)


def count_exact(
    net: Network,
    proxy: str = "pytorch",
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    cross_check: int = 16,
    progress: bool = False,
) -> CountResult:
    """Exact |ndf_Omega| and |inc_Omega| by enumeration."""
    preset = parse_preset(proxy)
    ex = exhaustive(
        net, [preset], max_points=max_points, cross_check=cross_check, progress=progress
    )
    h = bias_structure(net)
    inc = ex.inc[preset.name]
    wit = {
        "ndf_witness": _witness_json(net, ex.witnesses["ndf"][:1]),
        "inc_witness": _witness_json(net, ex.witnesses[f"inc:{preset.name}"][:1]),
    }
    return CountResult(
        "exact",
        "omega",
        net.numbers.name,
        preset.name,
        ex.omega,
        net.param_count(),
        ex.ndf,
        inc,
        Fraction(ex.ndf, ex.omega),
        Fraction(inc, ex.omega),
        t3_bound(net),
        tightness_of(net),
        ex.seconds,
        cross_checked=ex.cross_checked,
        hypothesis_h=h.holds,
        hypothesis=h.reason,
        extra={"kink_points": ex.kink_points, **wit},
    )


def _witness_json(net: Network, points: list[list[Fraction]]) -> dict[str, Any] | None:
    if not points:
        return None
    labels = net.parameterization().labels
    fmt = net.numbers
    return {
        lab: {"value": format_exact(v), "bits": fmt.hex_bits(v)}
        for lab, v in zip(labels, points[0])
    }


def count_sample(
    net: Network,
    proxy: str = "pytorch",
    *,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> CountResult:
    """Monte Carlo: conditional (under H, exact bias slices) or plain (exact verdicts)."""
    t0 = time.perf_counter()
    preset = parse_preset(proxy)
    if samples <= 0:
        raise InvalidArgument(f"expected --samples >= 1, got samples={samples}")
    h = bias_structure(net)
    omega = net.numbers.size() ** net.param_count()
    if h.holds and count_bias.supported(net) is None:
        return count_bias.conditional_mc(
            net, preset, samples=samples, seed=seed, progress=progress, t0=t0
        )
    pts = sample_points(net, samples, seed)
    chain = dense_chain(net)
    presets = [preset]
    nd = np.zeros(samples, dtype=bool)
    ic = np.zeros(samples, dtype=bool)
    if chain is not None:
        q = _common_q(net.numbers)
        for s0 in progress_iter(range(0, samples, CHUNK), progress):
            block = pts[s0 : s0 + CHUNK]
            w = np.array([[int(v * q) for v in p] for p in block], dtype=object)
            bv = decide(chain, w, q, presets)
            nd[s0 : s0 + len(block)] = bv.ndf
            ic[s0 : s0 + len(block)] = bv.inc[:, 0]
            for i in np.flatnonzero(bv.undecided):
                a, b = _check_point(net, block[i], presets)
                nd[s0 + i], ic[s0 + i] = a, b[0]
    else:
        for k in progress_iter(range(samples), progress):
            a, b = _check_point(net, pts[k], presets)
            nd[k], ic[k] = a, b[0]
    kn, ki = int(nd.sum()), int(ic.sum())
    dn, di = kn / samples, ki / samples
    return CountResult(
        "sample",
        "omega",
        net.numbers.name,
        preset.name,
        omega,
        net.param_count(),
        None,
        None,
        dn,
        di,
        t3_bound(net),
        tightness_of(net),
        time.perf_counter() - t0,
        ci={"density_ndf": wilson(kn, samples), "density_inc": wilson(ki, samples)},
        samples=samples,
        hypothesis_h=h.holds,
        hypothesis=h.reason,
        notes=("plain Monte Carlo of exact verdicts; 95% Wilson intervals",),
        extra={
            "ndf_estimate": sci(Fraction(kn, samples) * omega),
            "inc_estimate": sci(Fraction(ki, samples) * omega),
            "hits_ndf": kn,
            "hits_inc": ki,
        },
    )


def _common_q(fmt: Format) -> int:
    return 1 << (fmt.mbits - fmt.emin)


def count(
    net: Network,
    method: CountMethod = "exact",
    proxy: str = "pytorch",
    *,
    samples: int = 1000,
    seed: int = 0,
    max_points: int = DEFAULT_MAX_POINTS,
    progress: bool = False,
    cross_check: int = 16,
) -> CountResult:
    """Dispatch on ``method``: exact | conditional | sample."""
    if method == "exact":
        return count_exact(
            net, proxy, max_points=max_points, cross_check=cross_check, progress=progress
        )
    if method == "conditional":
        return count_bias.count_conditional(net, proxy, max_points=max_points, progress=progress)
    if method == "sample":
        return count_sample(net, proxy, samples=samples, seed=seed, progress=progress)
    raise InvalidArgument(f"expected --method exact, conditional or sample, got method={method!r}")


__all__ = [
    "CountResult",
    "Exhaustive",
    "CrossCheckError",
    "count",
    "count_exact",
    "count_sample",
    "exhaustive",
    "members_scaled",
    "member_at",
    "rank_le",
    "count_open",
    "reformat",
    "with_point",
    "point_of",
    "t3_bound",
    "tightness_density",
    "tightness_of",
    "hoeffding",
    "sci",
    "wilson",
    "sample_points",
    "half_count",
    "kinked_layers",
    "kinks_in",
    "presets_of",
    "CHUNK",
    "DEFAULT_MAX_POINTS",
]
