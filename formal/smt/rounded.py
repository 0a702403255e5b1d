"""Rounded (IEEE) semantics: what a framework computes, and where it disagrees on kinks.

Every op is computed in the format F with round-to-nearest-even and gradual
underflow, in a *stated* order:

- ``linear``: products ``fl(x_k * W[i, k])`` for k = 0..n-1, then summed
  ``sequential`` (``acc = fl(acc + p_k)`` left to right) or ``pairwise``
  (a balanced tree over k: (p0 + p1) + (p2 + p3), ...);
- ``add``/``sub``: one rounding; ``neg``/``reshape``: exact; ``scale``:
  ``fl(x * fl(c))``;
- activations: the piece is chosen by comparing the float pre-activation
  with the kinks (which must be members of F); pieces are evaluated by
  Horner's rule with rounded coefficients (relu-family pieces are exact);
- inputs, frozen parameters and constants that are not members of F are
  first rounded to F, as a framework stores them.

A *float kink touch* is ``yhat == c`` on a pre-activation.  It is
**spurious** when the exact value (real semantics with the given exact
inputs) differs, and **missed** when the exact value is c and ``yhat`` is
not.  The same evaluator runs on three back-ends: z3 FP terms
(``fp.mul``/``fp.add`` with RNE), exact rationals rounded by
:meth:`Format.round_nearest_even`, and numpy/ml_dtypes scalars; a witness is
reported only when the exact engine and both references agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from formal.core.fpterms import ORDERS, Arith
from formal.core.graph import trainable_dependence
from formal.core.network import Network
from formal.core.numbers import Format
from formal.core.rules import walk
from formal.core.smtrules import FloatSite, RoundedState
from formal.errors import UnsupportedOp
from formal.smt.fp import Domain, fp_sort, fp_value, native

__all__ = [
    "ORDERS",
    "Arith",
    "FloatSite",
    "float_forward",
    "z3_arith",
    "Z3Arith",
    "ExactRounding",
    "NumpyRounding",
    "reference_preactivations",
    "rounding_interval_members",
    "product_members",
    "domain_step",
]


class Z3Arith(Arith):
    """z3 FP terms of :func:`fp_sort` with RNE."""

    def __init__(self, fmt: Format) -> None:
        if not native(fmt):
            raise UnsupportedOp(
                "rounded semantics needs a format z3 has as an IEEE sort, got "
                f"{fmt.name} (E4M3 has no infinities; z3 needs >= 2 fraction bits)"
            )
        self.fmt = fmt
        self.sort = fp_sort(fmt)
        self.rm = z3.RNE()

    def const(self, q: Fraction) -> Any:
        """The constant rounded to nearest even (overflow: an infinity)."""
        r = self.fmt.round_nearest_even(q)
        if r is None:
            return z3.fpPlusInfinity(self.sort) if q > 0 else z3.fpMinusInfinity(self.sort)
        return fp_value(r, self.fmt)

    def mul(self, a: Any, b: Any) -> Any:
        """The product rounded to nearest even."""
        return z3.fpMul(self.rm, a, b)

    def add(self, a: Any, b: Any) -> Any:
        """The sum rounded to nearest even."""
        return z3.fpAdd(self.rm, a, b)

    def neg(self, a: Any) -> Any:
        """The negation (exact)."""
        return z3.fpNeg(a)

    def le(self, a: Any, c: Fraction) -> Any:
        """``a <= c``."""
        return z3.fpLEQ(a, self.const(c))

    def ite(self, cond: Any, a: Any, b: Any) -> Any:
        """``a`` if ``cond`` else ``b``."""
        return z3.If(cond, a, b)

    def eq(self, a: Any, c: Fraction) -> Any:
        """``a == c`` (false when c is not a member of the format)."""
        if not self.fmt.contains(c):
            return z3.BoolVal(False)
        return z3.fpEQ(a, fp_value(c, self.fmt))


def z3_arith(fmt: Format) -> Z3Arith:
    """The z3 back-end of ``fmt``."""
    return Z3Arith(fmt)


class ExactRounding(Arith):
    """Exact rationals, each result rounded to F by RNE (None = overflow to infinity)."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt

    def _r(self, q: Fraction | None) -> Fraction | None:
        return None if q is None else self.fmt.round_nearest_even(q)

    def const(self, q: Fraction) -> Any:
        """The constant rounded to nearest even (overflow: an infinity)."""
        return self._r(Fraction(q))

    def mul(self, a: Any, b: Any) -> Any:
        """The product rounded to nearest even."""
        return None if a is None or b is None else self._r(a * b)

    def add(self, a: Any, b: Any) -> Any:
        """The sum rounded to nearest even."""
        return None if a is None or b is None else self._r(a + b)

    def neg(self, a: Any) -> Any:
        """The negation (exact)."""
        return None if a is None else -a

    def le(self, a: Any, c: Fraction) -> Any:
        """``a <= c``."""
        return a is not None and a <= c

    def ite(self, cond: Any, a: Any, b: Any) -> Any:
        """``a`` if ``cond`` else ``b``."""
        return a if cond else b


class NumpyRounding(Arith):
    """numpy / ml_dtypes scalars of the format's dtype (binary16/32/64, bfloat16, e4m3, e5m2)."""

    def __init__(self, fmt: Format) -> None:
        dt = fmt.numpy_dtype()
        if dt is None:
            raise UnsupportedOp(f"{fmt.name} has no numpy dtype")
        self.fmt = fmt
        self.dt = dt.type

    def const(self, q: Fraction) -> Any:
        """The constant rounded to nearest even (overflow: an infinity)."""
        r = self.fmt.round_nearest_even(q)
        if r is None:
            return self.dt(float("inf") if q > 0 else float("-inf"))
        return self.dt(float(r))  # r is a member: float64 holds it exactly

    def mul(self, a: Any, b: Any) -> Any:
        """The product rounded to nearest even."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.dt(a * b)

    def add(self, a: Any, b: Any) -> Any:
        """The sum rounded to nearest even."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.dt(a + b)

    def neg(self, a: Any) -> Any:
        """The negation (exact)."""
        return self.dt(-a)

    def le(self, a: Any, c: Fraction) -> Any:
        """``a <= c``."""
        return bool(np.float64(a) <= float(c))

    def ite(self, cond: Any, a: Any, b: Any) -> Any:
        """``a`` if ``cond`` else ``b``."""
        return a if cond else b

    @staticmethod
    def exact(a: Any) -> Fraction | None:
        """The exact value of a scalar (None if not finite)."""
        v = float(np.float64(a))
        return Fraction(v) if np.isfinite(v) else None


def float_forward(
    net: Network, arith: Arith, params: Mapping[str, np.ndarray], order: str = "sequential"
) -> tuple[dict[str, np.ndarray], list[FloatSite]]:
    """Float values of every node and the kinked pre-activation sites, in the stated order.

    ``params`` maps tensor names to object arrays of back-end values (searched
    entries as variables); tensors not in ``params`` are rounded constants.
    Each op's meaning is its ``rounded`` rule (``registered_ops("rounded")``).
    """
    if order not in ORDERS:
        raise UnsupportedOp(
            f"expected a summation order ({', '.join(ORDERS)}), got order={order!r}"
        )
    st = RoundedState(net, arith, params, order, trainable_dependence(net))
    vals = walk(net, "rounded", lambda node, fn, ins: fn(node, ins, st))
    return vals, st.sites


def reference_preactivations(
    net: Network, fmt: Format, order: str
) -> dict[str, list[tuple[FloatSite, Fraction | None, Fraction | None]]]:
    """Float pre-activation of every kinked site by both references: (site, exact-RNE, numpy).

    The numpy value is None when the format has no numpy dtype (or the value
    is not finite).
    """
    ref = ExactRounding(fmt)
    _, sites = float_forward(net, ref, {}, order)
    npv: list[Any] = [None] * len(sites)
    if fmt.numpy_dtype() is not None:
        nr = NumpyRounding(fmt)
        _, nsites = float_forward(net, nr, {}, order)
        npv = [NumpyRounding.exact(s.value) for s in nsites]
    out: dict[str, list[tuple[FloatSite, Fraction | None, Fraction | None]]] = {}
    for s, v in zip(sites, npv):
        out.setdefault(s.node, []).append((s, s.value, v))
    return out


def rounding_interval_members(
    fmt: Format, dom: Domain, acc: Fraction, c: Fraction, limit: int = 64
) -> list[Fraction]:
    """Allowed members L with RNE(acc + L) == c, nearest to c - acc first (at most ``limit``
    steps each way: the set is a run of consecutive members, possibly huge when c - acc is tiny)."""
    return _members_near(
        dom, fmt.round_nearest_even(c - acc), lambda v: fmt.round_nearest_even(acc + v) == c, limit
    )


def product_members(
    fmt: Format, dom: Domain, x: Fraction, target: Fraction, limit: int = 64
) -> list[Fraction]:
    """Allowed members w with RNE(x * w) == target (x != 0), nearest to target / x first."""
    return _members_near(
        dom,
        fmt.round_nearest_even(target / x),
        lambda v: fmt.round_nearest_even(x * v) == target,
        limit,
    )


def _members_near(
    dom: Domain, start: Fraction | None, ok: Callable[[Fraction], bool], limit: int
) -> list[Fraction]:
    if start is None:
        return []
    out: list[Fraction] = []
    first = _snap(dom, start)
    for direction in (-1, 1):
        cur = (
            first if direction < 0 else (domain_step(dom, first, 1) if first is not None else None)
        )
        misses = steps = 0
        while cur is not None and steps < limit and misses < 2:
            steps += 1
            if ok(cur):
                out.append(cur)
                misses = 0
            else:
                misses += 1
            cur = domain_step(dom, cur, direction)
    return sorted(set(out), key=lambda v: (abs(v - start), v))


def _snap(dom: Domain, v: Fraction) -> Fraction | None:
    """v if allowed, else the nearest allowed value on the same side (or 0)."""
    if dom.allows(v):
        return v
    lo, hi = dom.lo_member, dom.hi_member
    if lo is None or abs(v) < lo:
        return Fraction(0)
    return hi if v > 0 else -hi


def domain_step(dom: Domain, v: Fraction, direction: int) -> Fraction | None:
    """The next allowed member of ``dom`` after v in the given direction (+1 up, -1 down;
    None past the range).  Zero is allowed: the step from the smallest allowed magnitude
    towards zero lands on 0."""
    nxt = _step(dom.fmt, v, direction)
    if nxt is None:
        return None
    lo, hi = dom.lo_member, dom.hi_member
    if nxt != 0 and (lo is None or abs(nxt) < lo):
        if lo is None:
            return None if v == 0 else Fraction(0)
        moving_out = (nxt > 0) == (direction > 0)
        return (lo if nxt > 0 else -lo) if moving_out else Fraction(0)
    if abs(nxt) > hi:
        return None
    return nxt


def _step(fmt: Format, v: Fraction, direction: int) -> Fraction | None:
    """The next member of F after v in the given direction (None past the range)."""
    if direction > 0:
        if v >= fmt.max_value:
            return None
        if v < 0:
            return -_step_up_abs(fmt, -v, down=True)
        return _step_up_abs(fmt, v, down=False)
    if v <= -fmt.max_value:
        return None
    if v <= 0:
        return -_step_up_abs(fmt, -v, down=False)
    return _step_up_abs(fmt, v, down=True)


def _step_up_abs(fmt: Format, a: Fraction, down: bool) -> Fraction:
    if not down:
        return a + fmt.ulp(a) if a > 0 else fmt.min_subnormal
    if a == 0:
        return Fraction(0)
    below = fmt.neighbors(a - fmt.min_subnormal / 2)[0]
    assert below is not None
    return below
