"""Omega = M^W and what the counting methods share: members, points, bounds, results.

The exact and sampled counts of :mod:`formal.count.counting` and the
conditional ones of :mod:`formal.count.bias` enumerate or sample the same
space: parameter points (one member of M per parameter group).  This module
holds the ranks of M, the networks at a point, T3's bound and the tightness
formula, the :class:`CountResult` record, the enumeration digits and the
progress bar, and the confidence intervals.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal, TypeVar

import numpy as np
from tqdm import tqdm

from formal.core.activations import Preset, parse_preset
from formal.core.network import Network, bias_structure
from formal.core.numbers import Format, format_exact, format_sci, hex_float
from formal.core.qarray import QArray
from formal.errors import InvalidArgument, NotInFormat

sci = format_sci  # the scientific text of counts (one renderer, in formal.core.numbers)

DEFAULT_MAX_POINTS = 10**9
CHUNK = 1 << 15

T = TypeVar("T")


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
                    f"{net.source}: parameter {where}: expected a member of {fmt.name}, got "
                    f"{format_exact(v)} "
                    f"(nearest members: {near or 'none'})"
                )
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
    """Presets from names or presets, in order."""
    return [p if isinstance(p, Preset) else parse_preset(p) for p in proxies]


# ---------------------------------------------------------------------------
# bounds and formulas


def kinks_in(fmt: Format, kinks: Sequence[Fraction]) -> int:
    """The number of kinks in ``kinks`` that are members of ``fmt``."""
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
    """T3's tightness density of the net's kinked layers (None when H fails)."""
    if not bias_structure(net).holds:
        return None
    return tightness_density(net.numbers.size(), [(n, km) for n, _, km in kinked_layers(net)])


# ---------------------------------------------------------------------------
# results


CountMethod = Literal["exact", "conditional", "sample"]
"""How a count is made: enumeration, conditional exact counting over biases, or sampling."""

CountSpace = Literal["omega", "bias-slice"]
"""What was counted: all of Omega, or the bias slice through the given point."""


@dataclass(frozen=True, slots=True)
class CountResult:
    """What ``formal count`` reports.  Exact fields are ints/Fractions; estimates floats."""

    method: CountMethod
    space: CountSpace
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
        """The counts are exact: ndf known and the density a Fraction, not an estimate."""
        return self.ndf is not None and isinstance(self.density_ndf, Fraction)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``formal count --json`` (exact numbers as text)."""

        def show(v: Any) -> Any:  # exact numbers as text, anything else as it is
            if isinstance(v, Fraction) or (isinstance(v, int) and not isinstance(v, bool)):
                return format_exact(v)
            return v

        out: dict[str, Any] = {
            "method": self.method,
            "space": self.space,
            "numbers": self.numbers,
            "proxy": self.proxy,
            "parameters": self.parameters,
            "omega": format_exact(self.omega),
            "ndf": show(self.ndf) if self.ndf is not None else self.extra.get("ndf_estimate"),
            "inc": show(self.inc) if self.inc is not None else self.extra.get("inc_estimate"),
            "density_ndf": show(self.density_ndf),
            "density_inc": show(self.density_inc),
            "bound": None if self.bound is None else format_exact(self.bound),
            "tightness": None if self.tightness is None else format_exact(self.tightness),
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


def digits(start: int, stop: int, base: int, width: int) -> np.ndarray:
    """Rows ``start..stop-1`` of the mixed-radix enumeration: ``width`` digits in ``base``."""
    idx = np.arange(start, stop, dtype=np.int64)
    out = np.empty((stop - start, width), dtype=np.int64)
    for j in range(width - 1, -1, -1):
        out[:, j] = idx % base
        idx //= base
    return out


def progress_iter(items: Iterable[T], enabled: bool) -> Iterable[T]:
    """``items`` with a tqdm bar on stderr (shown after 2 s, only when ``enabled``)."""
    return tqdm(items, file=sys.stderr, disable=None if enabled else True, delay=2.0, leave=False)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr (shown after 2 s, only when ``enabled``)."""

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


# ---------------------------------------------------------------------------
# confidence intervals and sampling


def hoeffding(mean: float, n: int, width: float, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided Hoeffding interval for the mean of n values in [0, width]."""
    h = width * math.sqrt(math.log(2 / alpha) / (2 * n))
    return max(0.0, mean - h), mean + h


def bernstein(
    values: Sequence[Fraction], width: Fraction, alpha: float = 0.05
) -> tuple[float, float]:
    """Empirical Bernstein interval (level 1 - alpha) for the mean of i.i.d. values in [0, width].

    Audibert, Munos and Szepesvari (2009, Thm 1): with probability >= 1 - alpha,
    ``|mean - mu| <= sqrt(2 V log(3/alpha) / n) + 3 width log(3/alpha) / n`` with V the
    empirical variance (divided by n).  It holds for every distribution on [0, width],
    so events no sample saw are accounted for by the second term: the interval has zero
    width only when ``width == 0``, i.e. when every value is provably 0.  Endpoints are
    rounded outwards.
    """
    n = len(values)
    if n == 0:
        return 0.0, float(width)
    if width == 0:
        return 0.0, 0.0
    mean = sum(values, Fraction(0)) / n
    var = sum(((v - mean) ** 2 for v in values), Fraction(0)) / n
    log = math.log(3 / alpha)
    half = math.sqrt(2 * float(var) * log / n) + 3 * float(width) * log / n
    half = math.nextafter(half * (1 + 1e-12), math.inf)
    lo = max(0.0, math.nextafter(float(mean) - half, -math.inf))
    hi = min(float(width), math.nextafter(float(mean) + half, math.inf))
    return lo, hi


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


__all__ = [
    "DEFAULT_MAX_POINTS",
    "CHUNK",
    "CountResult",
    "CrossCheckError",
    "members_scaled",
    "half_count",
    "member_at",
    "rank_le",
    "count_open",
    "reformat",
    "with_point",
    "point_of",
    "presets_of",
    "kinks_in",
    "kinked_layers",
    "t3_bound",
    "tightness_density",
    "tightness_of",
    "digits",
    "progress_bar",
    "progress_iter",
    "sci",
    "hoeffding",
    "bernstein",
    "wilson",
    "sample_points",
]
