"""Floating-point sorts for every format of :mod:`formal.numbers`, and exact lifting.

A machine number of a format F is held in z3 as its *bit pattern* (a
bit-vector of ``F.bits`` bits).  Two views are derived from it:

- the **FP view** (:meth:`FPVar.fp`): a z3 floating-point term of
  :func:`fp_sort` (``FPSort(ebits, mbits + 1)`` for IEEE formats), used for
  range and subnormal constraints and for rounded (IEEE) semantics;
- the **exact view** (:meth:`FPVar.exact`): the value as an integer
  bit-vector ``K`` over a constant power-of-two denominator, ``v = K / den``,
  built from the sign, exponent and fraction fields with a barrel shift.
  Exact arithmetic on these (:mod:`formal.smt.exact_bv`) never rounds, and
  never goes through ``fp.to_real`` (docs/method.md section 7: that does not finish).

E4M3 (``ieee=False``: no infinities, one NaN pattern per sign) has no IEEE
sort of its own: :func:`fp_sort` gives the superset ``FPSort(ebits + 1,
mbits + 1)`` and the FP view converts through the exact view.

Models are lifted exactly: a bit pattern goes through
:meth:`formal.numbers.Format.from_bits`, never through a Python float.

Examples
--------
>>> from formal.numbers import BINARY32
>>> fp_sort(BINARY32)
FPSort(8, 24)
>>> lift_fp(fp_value(Fraction(3, 4), BINARY32), BINARY32)
Fraction(3, 4)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import z3

from formal.core.numbers import Format, format_short, parse_format
from formal.errors import InvalidArgument

__all__ = [
    "Domain",
    "FPVar",
    "fp_sort",
    "fp_value",
    "lift_fp",
    "lift_bits",
    "embeds",
    "choose_search_format",
    "domain_members",
]

# Search formats tried in this order: small significands keep bit-blasting cheap.
SEARCH_FORMATS = ("e4m3", "fp(4,3)", "e5m2", "fp(5,6)", "binary16")


def native(fmt: Format) -> bool:
    """Whether z3 has F itself as a sort (IEEE, and z3 needs at least 2 significand bits)."""
    return fmt.ieee and fmt.mbits >= 2


def fp_sort(fmt: Format) -> z3.FPSortRef:
    """The z3 sort of F: ``FPSort(ebits, mbits + 1)``; otherwise an IEEE superset of M
    (E4M3: ``FPSort(5, 4)``; one fraction bit: ``FPSort(ebits + 1, 3)``)."""
    if native(fmt):
        return z3.FPSort(fmt.ebits, fmt.mbits + 1)
    return z3.FPSort(fmt.ebits + 1, max(fmt.mbits + 1, 3))


def fp_value(q: Fraction, fmt: Format) -> z3.FPRef:
    """The z3 numeral of the member q of F (exact; raises NotInFormat otherwise)."""
    q = Fraction(q)
    if not native(fmt):
        wide = Format(f"fp({fmt.ebits + 1},{max(fmt.mbits, 2)})", fmt.ebits + 1, max(fmt.mbits, 2))
        if not fmt.contains(q):
            raise fmt._not_in(q)
        return fp_value(q, wide)
    bits = fmt.to_bits(q)
    return z3.simplify(z3.fpBVToFP(z3.BitVecVal(bits, fmt.bits), fp_sort(fmt)))


def lift_fp(value: z3.ExprRef, fmt: Format) -> Fraction:
    """Exact value of a z3 FP numeral of :func:`fp_sort` (F), via its bit pattern."""
    sort = value.sort()
    ebits, sbits = sort.ebits(), sort.sbits()
    wide = Format(f"fp({ebits},{sbits - 1})", ebits, sbits - 1)
    bv = z3.simplify(z3.fpToIEEEBV(value))
    if not z3.is_bv_value(bv):
        raise InvalidArgument(f"expected an FP numeral, got {value}")
    v = wide.from_bits(bv.as_long())
    if v is None:
        raise InvalidArgument(f"expected a finite FP value, got {value}")
    return v


def lift_bits(bits: int, fmt: Format) -> Fraction:
    """Exact value of a bit pattern of F (finite patterns only)."""
    v = fmt.from_bits(int(bits))
    if v is None:
        raise InvalidArgument(f"expected a finite {fmt.name} bit pattern, got {bits:#x}")
    return v


def embeds(small: Format, big: Format) -> bool:
    """True when every member of ``small`` (<= 16 bits) is a member of ``big``."""
    if small == big:
        return True
    return all(big.contains(v) for v in _members(small))


@functools.cache
def _members(fmt: Format) -> tuple[Fraction, ...]:
    return tuple(fmt.enumerate())


def choose_search_format(target: Format, requested: str | None = None) -> Format:
    """The search format: ``requested``, the target itself when small, else the first
    of :data:`SEARCH_FORMATS` that embeds exactly in the target."""
    if requested is not None:
        s = parse_format(requested)
        if s.bits > 16 and s != target:
            raise InvalidArgument(
                "expected a search format of at most 16 bits (or the target), "
                f"got search format={s.name}"
            )
        if not embeds(s, target) if s.bits <= 16 else s != target:
            raise InvalidArgument(
                f"expected a search format whose members all lie in {target.name}, "
                f"got search format={s.name}"
            )
        return s
    if target.bits <= 8:
        return target
    for name in SEARCH_FORMATS:
        s = parse_format(name)
        if s.bits <= target.bits and embeds(s, target):
            return s
    return target


@dataclass(frozen=True, slots=True)
class Domain:
    """The values a searched parameter may take: members v of ``fmt`` with

    ``v == 0`` or ``lo <= |v| <= hi`` (``hi = None``: no upper bound), and no
    subnormals unless ``subnormals``.  Zero is always allowed (a dead unit or a
    zero weight is where kinks live); ``-0`` is the same real as ``+0`` and is
    excluded as a pattern.
    """

    fmt: Format
    lo: Fraction = Fraction(0)
    hi: Fraction | None = None
    subnormals: bool = False

    def __post_init__(self) -> None:
        if self.lo < 0 or (self.hi is not None and self.hi < self.lo):
            raise InvalidArgument(f"expected 0 <= LO <= HI, got range={self.lo}:{self.hi}")

    def allows(self, v: Fraction) -> bool:
        """Exact membership test of one value (used to cross-check solver models)."""
        v = Fraction(v)
        if not self.fmt.contains(v):
            return False
        if v == 0:
            return True
        a = abs(v)
        if not self.subnormals and a < self.fmt.min_normal:
            return False
        return a >= self.lo and (self.hi is None or a <= self.hi)

    @property
    def lo_member(self) -> Fraction | None:
        """Smallest nonzero allowed magnitude (None if no nonzero value is allowed)."""
        lo = self.lo if self.lo > 0 else self.fmt.min_subnormal
        if not self.subnormals:
            lo = max(lo, self.fmt.min_normal)
        up = self.fmt.neighbors(lo)[1]
        hi = self.hi_member
        if up is None or (hi is not None and up > hi):
            return None
        return up

    @property
    def hi_member(self) -> Fraction:
        """Largest allowed magnitude."""
        hi = self.fmt.max_value if self.hi is None else min(self.hi, self.fmt.max_value)
        down = self.fmt.neighbors(hi)[0]
        assert down is not None
        return down

    def describe(self) -> str:
        """E.g. 'binary32: w = 0 or 2^-126 <= |w| <= 0x1.fffffep+127 (no subnormals)'."""
        lo, hi = self.lo_member, self.hi_member
        if lo is None:
            return f"{self.fmt.name}: w = 0 only"
        sub = "subnormals allowed" if self.subnormals else "no subnormals"
        return f"{self.fmt.name}: w = 0 or {format_short(lo)} <= |w| <= {format_short(hi)} ({sub})"

    # -- fixed-point layout of the exact view ------------------------------------
    @property
    def field_lo(self) -> int:
        """Smallest exponent field of a nonzero allowed value (>= 1)."""
        lo = self.lo_member
        if lo is None:
            return 1
        return max(1, _floor_log2(lo) + self.fmt.bias)

    @property
    def field_hi(self) -> int:
        """Largest exponent field of an allowed value (>= 1)."""
        hi = self.hi_member
        return max(1, _floor_log2(hi) + self.fmt.bias) if hi > 0 else 1

    @property
    def scale_exp(self) -> int:
        """Every allowed value is an integer multiple of ``2**scale_exp``."""
        return self.field_lo - self.fmt.bias - self.fmt.mbits

    @property
    def max_k(self) -> int:
        """Largest |K| with v = K * 2**scale_exp."""
        k = self.hi_member / Fraction(2) ** self.scale_exp
        assert k.denominator == 1
        return int(k)


def _floor_log2(q: Fraction) -> int:
    p, d = q.numerator, q.denominator
    e = p.bit_length() - d.bit_length()
    if (p >= d << e) if e >= 0 else (p << -e >= d):
        return e
    return e - 1


def domain_members(dom: Domain) -> list[Fraction]:
    """All allowed values of a small format (<= 16 bits), ascending (for enumeration)."""
    return [v for v in dom.fmt.enumerate() if dom.allows(v)]


class FPVar:
    """A searched parameter: a bit-pattern variable of ``dom.fmt`` and its views."""

    def __init__(self, name: str, dom: Domain) -> None:
        self.name = name
        self.dom = dom
        fmt = dom.fmt
        self.bits = z3.BitVec(name, fmt.bits)
        m, e = fmt.mbits, fmt.ebits
        self.sign = z3.Extract(fmt.bits - 1, fmt.bits - 1, self.bits)
        self.field = z3.Extract(m + e - 1, m, self.bits)
        self.frac = z3.Extract(m - 1, 0, self.bits)

    # -- constraints ---------------------------------------------------------------
    def constraints(self) -> list[z3.BoolRef]:
        """Finite, no -0, no subnormals unless allowed, magnitude range (FP constraints
        on the FP view for IEEE formats; the equivalent bit-pattern order otherwise)."""
        dom, fmt = self.dom, self.dom.fmt
        top = fmt.bits - 1
        out: list[z3.BoolRef] = [self.bits != z3.BitVecVal(1 << top, fmt.bits)]
        lo, hi = dom.lo_member, dom.hi_member
        if native(fmt):
            x = self.fp()
            out.append(z3.Not(z3.fpIsNaN(x)))
            out.append(z3.Not(z3.fpIsInf(x)))
            if not dom.subnormals:
                out.append(z3.Not(z3.fpIsSubnormal(x)))
            a = z3.fpAbs(x)
            if lo is None:
                out.append(z3.fpIsZero(x))
            else:
                out.append(
                    z3.Or(
                        z3.fpIsZero(x),
                        z3.And(z3.fpGEQ(a, fp_value(lo, fmt)), z3.fpLEQ(a, fp_value(hi, fmt))),
                    )
                )
            return out
        # no z3 sort of its own: finite patterns, and the |v| order is the unsigned order
        # of the magnitude bits
        ones = (1 << fmt.ebits) - 1
        if fmt.ieee:
            out.append(self.field != ones)
        else:
            out.append(z3.Not(z3.And(self.field == ones, self.frac == (1 << fmt.mbits) - 1)))
        mag = z3.Extract(top - 1, 0, self.bits)
        if not dom.subnormals:
            out.append(z3.Or(self.field != 0, self.frac == 0))
        if lo is None:
            out.append(mag == 0)
        else:
            out.append(
                z3.Or(mag == 0, z3.And(z3.UGE(mag, fmt.to_bits(lo)), z3.ULE(mag, fmt.to_bits(hi))))
            )
        return out

    # -- views -----------------------------------------------------------------------
    def fp(self) -> z3.FPRef:
        """The FP view (a term of :func:`fp_sort`)."""
        fmt = self.dom.fmt
        if native(fmt):
            return z3.fpBVToFP(self.bits, fp_sort(fmt))
        k, den = self.exact_parts()
        inner = z3.FPSort(11, max(fmt.mbits + 1, 3))  # wide exponent range: K and K/den both exact
        wide = z3.ZeroExt(1, k)
        signed = z3.If(self.sign == 1, -wide, wide)
        x = z3.fpMul(
            z3.RNE(), z3.fpSignedToFP(z3.RNE(), signed, inner), _pow2_fp(-_log2(den), inner)
        )
        return z3.fpFPToFP(z3.RNE(), x, fp_sort(fmt))

    def exact_parts(self) -> tuple[z3.BitVecRef, int]:
        """(|K| as an unsigned bit-vector, den) with |v| = |K| / den, exactly."""
        dom, fmt = self.dom, self.dom.fmt
        m = fmt.mbits
        f0 = dom.field_lo
        span = max(dom.field_hi - f0, 0)
        width = m + 1 + span + 1
        sig = z3.If(
            self.field == 0,
            z3.ZeroExt(width - m, self.frac),
            z3.ZeroExt(width - m - 1, z3.Concat(z3.BitVecVal(1, 1), self.frac)),
        )
        fw = fmt.ebits
        if span == 0:
            k = sig
        else:
            sh = z3.If(z3.ULE(self.field, f0), z3.BitVecVal(0, fw), self.field - f0)
            k = sig << (z3.ZeroExt(width - fw, sh) if width > fw else z3.Extract(width - 1, 0, sh))
        t = dom.scale_exp
        if t > 0:  # values are integers times 2**t: fold the factor into K
            k = z3.ZeroExt(t, k) << t
            return k, 1
        return k, 1 << (-t)

    def value(self, model: z3.ModelRef) -> Fraction:
        """The exact value of the variable in a model."""
        bv = model.eval(self.bits, model_completion=True)
        return lift_bits(bv.as_long(), self.dom.fmt)

    def pattern(self, model: z3.ModelRef) -> int:
        """The variable's bit pattern in a model."""
        return model.eval(self.bits, model_completion=True).as_long()


def _log2(n: int) -> int:
    assert n > 0 and n & (n - 1) == 0
    return n.bit_length() - 1


def _pow2_fp(e: int, sort: z3.FPSortRef) -> z3.FPRef:
    """The numeral 2**e of ``sort`` (from an exact "n/d" string)."""
    return z3.simplify(z3.fpRealToFP(z3.RNE(), z3.RealVal(str(Fraction(2) ** e)), sort))
