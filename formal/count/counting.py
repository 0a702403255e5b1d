"""Counting on Omega = M^W: exact enumeration, conditional counting over biases, sampling.

Three methods (THEORY section 5; proofs/counting.md states what each computes):

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
  uniformly from M, the bias slice counted exactly; Hoeffding interval on
  [0, T3 bound]) or plain Monte Carlo of exact verdicts (Wilson interval).

The T3 bound ``sum_l N_l k_l / |M|`` and the tightness formula
``1 - prod_l (1 - k_M,l (1 - 1/|M|) / |M|)^N_l`` go with every density.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.network import Network, bias_structure
from formal.core.numbers import Format, format_exact, hex_float
from formal.core.qarray import QArray
from formal.engine.batch import Chain, dense_chain
from formal.engine.patterns import decide
from formal.errors import InvalidArgument, NotInFormat, UnsupportedOp

DEFAULT_MAX_POINTS = 10**9
CHUNK = 1 << 15


class CrossCheckError(RuntimeError):
    """The vectorized decision disagreed with the core's per-point verdict."""


# ---------------------------------------------------------------------------
# formats, points, networks


def members_scaled(fmt: Format) -> tuple[np.ndarray, int]:
    """Sorted integers n (int64) with M = {n / q}, and q = 2**-(emin - mbits)."""
    vals, s = fmt.enumerate_scaled()
    if vals.dtype == object:
        raise InvalidArgument(
            f"expected a format whose members fit int64 when scaled, got numbers={fmt.name}"
        )
    return vals, 1 << (-s)


def half_count(fmt: Format) -> int:
    """P = number of positive members ((|M| - 1) / 2)."""
    return (fmt.size() - 1) // 2


def member_at(fmt: Format, i: int) -> Fraction:
    """The i-th member of M in increasing order (0 <= i < |M|), without enumerating."""
    P = half_count(fmt)
    if i == P:
        return Fraction(0)
    v = fmt.from_bits(abs(i - P))
    assert v is not None
    return v if i > P else -v


def rank_le(fmt: Format, x: Fraction) -> int:
    """#{m in M : m <= x}, exactly, for any rational x."""
    P = half_count(fmt)

    def pos_le(y: Fraction) -> int:  # positive members <= y (y >= 0)
        lo = fmt.neighbors(y)[0]
        return 0 if lo is None or lo <= 0 else fmt.to_bits(lo)

    if x >= 0:
        return P + 1 + pos_le(x)
    y = -x
    pos_lt = pos_le(y) - (1 if fmt.contains(y) else 0)
    return P - pos_lt


def count_open(fmt: Format, lo: Fraction | None, hi: Fraction | None) -> int:
    """#{m in M : lo < m < hi}; None stands for -inf / +inf."""
    upper = fmt.size() if hi is None else rank_le(fmt, hi) - (1 if fmt.contains(hi) else 0)
    lower = 0 if lo is None else rank_le(fmt, lo)
    return max(upper - lower, 0)


def reformat(net: Network, fmt: Format) -> Network:
    """The network with number format ``fmt``: every trainable entry must be a member."""
    if fmt == net.numbers:
        return net
    par = net.parameterization()
    for name in net.trainable:
        q = net.params[name]
        for idx in np.ndindex(*q.num.shape):
            v = Fraction(int(q.num[idx]), q.den)
            if not fmt.contains(v):
                lo, hi = fmt.neighbors(v)
                near = " and ".join(
                    f"{hex_float(x)} = {format_exact(x)}" for x in (lo, hi) if x is not None
                )
                where = name + ("[" + ",".join(map(str, idx)) + "]" if idx else "")
                raise NotInFormat(
                    f"{net.source}: parameter {where}: expected a member of {fmt.name}, got {format_exact(v)} "
                    f"(nearest members: {near or 'none'})"
                )
    del par
    return replace(net, numbers=fmt, cache={})


def with_point(net: Network, values: Sequence[Fraction]) -> Network:
    """The network at parameter vector ``values`` (one exact value per group)."""
    par = net.parameterization()
    params = dict(net.params)
    for name, g in par.groups.items():
        s = par.signs[name]
        arr = np.empty(g.shape, dtype=object)
        for idx in np.ndindex(*g.shape):
            arr[idx] = int(s[idx]) * Fraction(values[int(g[idx])])
        params[name] = QArray.from_fractions(arr)
    return replace(net, params=params, cache={})


def point_of(net: Network) -> list[Fraction]:
    """The network's own parameter vector w (one value per group)."""
    par = net.parameterization()
    out = []
    for name, flat in par.slots:
        q = net.params[name]
        out.append(Fraction(int(q.num.reshape(-1)[flat]), q.den))
    return out


def presets_of(proxies: Sequence[str | Preset]) -> list[Preset]:
    return [p if isinstance(p, Preset) else parse_preset(p) for p in proxies]


# ---------------------------------------------------------------------------
# bounds and formulas


def kinks_in(fmt: Format, kinks: Sequence[Fraction]) -> int:
    return sum(1 for c in kinks if fmt.contains(c))


def kinked_layers(net: Network) -> list[tuple[int, int, int]]:
    """(units per sample, kinks of rho, kinks of rho in M) per activation node with kinks."""
    out = []
    for node in net.activation_nodes():
        act = node.attr("activation")
        if act.kinks:
            units = int(np.prod(node.shape, dtype=np.int64))
            out.append((units, len(act.kinks), kinks_in(net.numbers, act.kinks)))
    return out


def t3_bound(net: Network) -> Fraction | None:
    """T3's density bound sum_l N_l k_l / |M| (None when H fails)."""
    if not bias_structure(net).holds:
        return None
    return Fraction(sum(n * k for n, k, _ in kinked_layers(net)), net.numbers.size())


def tightness_density(size: int, layers: Sequence[tuple[int, int]]) -> Fraction:
    """1 - prod_l (1 - k_M,l (1 - 1/|M|) / |M|)^N_l for (N_l, k_M,l) pairs."""
    m = Fraction(size)
    keep = Fraction(1)
    for n, km in layers:
        keep *= (1 - km * (1 - 1 / m) / m) ** n
    return 1 - keep


def tightness_of(net: Network) -> Fraction | None:
    if not bias_structure(net).holds:
        return None
    return tightness_density(net.numbers.size(), [(n, km) for n, _, km in kinked_layers(net)])


# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class CountResult:
    """What ``formal count`` reports.  Exact fields are ints/Fractions; estimates floats."""

    method: str
    space: str  # "omega" | "bias-slice"
    numbers: str
    proxy: str
    omega: int
    parameters: int
    ndf: int | None
    inc: int | None
    density_ndf: Fraction | float
    density_inc: Fraction | float
    bound: Fraction | None
    tightness: Fraction | None
    seconds: float
    ci: dict[str, tuple[float, float]] | None = None
    samples: int | None = None
    cross_checked: int = 0
    hypothesis_h: bool = False
    hypothesis: str = ""
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.ndf is not None and isinstance(self.density_ndf, Fraction)

    def to_json(self) -> dict[str, Any]:
        def show(v: Any) -> Any:
            if isinstance(v, Fraction) or (isinstance(v, int) and not isinstance(v, bool)):
                return exact_text(v)
            return v

        out: dict[str, Any] = {
            "method": self.method,
            "space": self.space,
            "numbers": self.numbers,
            "proxy": self.proxy,
            "parameters": self.parameters,
            "omega": int_text(self.omega),
            "ndf": show(self.ndf) if self.ndf is not None else self.extra.get("ndf_estimate"),
            "inc": show(self.inc) if self.inc is not None else self.extra.get("inc_estimate"),
            "density_ndf": show(self.density_ndf),
            "density_inc": show(self.density_inc),
            "bound": None if self.bound is None else exact_text(self.bound),
            "tightness": None if self.tightness is None else exact_text(self.tightness),
            "hypothesis_h": self.hypothesis_h,
            "hypothesis": self.hypothesis,
            "seconds": round(self.seconds, 6),
        }
        if self.ci is not None:
            out["ci"] = {k: [v[0], v[1]] for k, v in self.ci.items()}
        if self.samples is not None:
            out["samples"] = self.samples
        out["cross_checked"] = self.cross_checked
        if self.notes:
            out["notes"] = list(self.notes)
        for k, v in self.extra.items():
            if k not in ("ndf_estimate", "inc_estimate"):
                out[k] = show(v)
        return out


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


def _digits(start: int, stop: int, base: int, width: int) -> np.ndarray:
    idx = np.arange(start, stop, dtype=np.int64)
    out = np.empty((stop - start, width), dtype=np.int64)
    for j in range(width - 1, -1, -1):
        out[:, j] = idx % base
        idx //= base
    return out


Hook = Callable[[Chain | None, np.ndarray, int, Any], dict[str, int]]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="pt",
        unit_scale=True,
        file=sys.stderr,
        disable=None if enabled else True,
        delay=2.0,
        leave=False,
    )


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
            f"expected |Omega| <= {max_points} points for exact enumeration, got |M|^W = {M}^{W} = {total} "
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
    bar = _progress(total, f"enumerating {fmt.name}^{W}", progress)
    for start in range(0, total, CHUNK):
        stop = min(total, start + CHUNK)
        w = vals[_digits(start, stop, M, W)]
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
    from formal.engine.verdict import check

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
                f"vectorized verdict disagrees with check at w = {[format_exact(v) for v in values]}: "
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


# ---------------------------------------------------------------------------
# confidence intervals


def int_text(n: int) -> str:
    """Decimal text of an integer of any size (Python's str() refuses > 4300 digits)."""
    if n < 0:
        return "-" + int_text(-n)
    if n.bit_length() < 12_000:
        return str(n)
    k = int(n.bit_length() * 0.30102999566398) // 2  # split near half the digits
    hi, lo = divmod(n, 10**k)
    tail = int_text(lo)
    return int_text(hi) + "0" * (k - len(tail)) + tail


def exact_text(q: Fraction | int) -> str:
    """'p/q' (or 'n') text of an exact rational of any size."""
    if isinstance(q, int):
        return int_text(q)
    if q.denominator == 1:
        return int_text(q.numerator)
    return f"{int_text(q.numerator)}/{int_text(q.denominator)}"


def sci(value: Fraction | int | float, digits: int = 4) -> str:
    """Scientific text of a rational of any size, e.g. '1.234e+1200'."""
    q = Fraction(value)
    if q == 0:
        return "0"
    sign = "-" if q < 0 else ""
    q = abs(q)
    e = int((q.numerator.bit_length() - q.denominator.bit_length()) * 0.30102999566398)
    m = q / Fraction(10) ** e
    while m >= 10:
        m, e = m / 10, e + 1
    while m < 1:
        m, e = m * 10, e - 1
    text = f"{float(m):.{digits - 1}f}"
    if float(text) >= 10:  # 9.9999 rounds up to 10.000
        text, e = f"{float(m) / 10:.{digits - 1}f}", e + 1
    return f"{sign}{text}e{e:+03d}"


def hoeffding(mean: float, n: int, width: float, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided Hoeffding interval for the mean of n values in [0, width]."""
    h = width * math.sqrt(math.log(2 / alpha) / (2 * n))
    return max(0.0, mean - h), mean + h


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (95%) for a binomial proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, mid - half)
    hi = 1.0 if k == n else min(1.0, mid + half)
    return lo, hi


def sample_points(net: Network, n: int, seed: int) -> list[list[Fraction]]:
    """n points drawn uniformly from Omega (each coordinate uniform over M)."""
    rng = random.Random(seed)
    fmt = net.numbers
    size = fmt.size()
    W = net.param_count()
    return [[member_at(fmt, rng.randrange(size)) for _ in range(W)] for _ in range(n)]


def count_sample(
    net: Network,
    proxy: str = "pytorch",
    *,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> CountResult:
    """Monte Carlo: conditional (under H, exact bias slices) or plain (exact verdicts)."""
    from formal.count import bias as count_bias

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
    from tqdm import tqdm

    if chain is not None:
        q = _common_q(net.numbers)
        for s0 in tqdm(
            range(0, samples, CHUNK),
            file=sys.stderr,
            disable=None if progress else True,
            delay=2.0,
            leave=False,
        ):
            block = pts[s0 : s0 + CHUNK]
            w = np.array([[int(v * q) for v in p] for p in block], dtype=object)
            bv = decide(chain, w, q, presets)
            nd[s0 : s0 + len(block)] = bv.ndf
            ic[s0 : s0 + len(block)] = bv.inc[:, 0]
            for i in np.flatnonzero(bv.undecided):
                a, b = _check_point(net, block[i], presets)
                nd[s0 + i], ic[s0 + i] = a, b[0]
    else:
        for i in tqdm(
            range(samples),
            file=sys.stderr,
            disable=None if progress else True,
            delay=2.0,
            leave=False,
        ):
            a, b = _check_point(net, pts[i], presets)
            nd[i], ic[i] = a, b[0]
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
    method: str = "exact",
    proxy: str = "pytorch",
    *,
    samples: int = 1000,
    seed: int = 0,
    max_points: int = DEFAULT_MAX_POINTS,
    progress: bool = False,
    cross_check: int = 16,
) -> CountResult:
    """Dispatch on ``method``: exact | conditional | sample."""
    from formal.count import bias as count_bias

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
    "int_text",
    "exact_text",
    "wilson",
]
