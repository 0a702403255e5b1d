"""Exact rationals as z3 bit-vectors: ``BVQ = num / den`` with a proven bound on ``|num|``.

The bit width of every term follows from its bound, so no operation can
overflow; constants fold to Python rationals.  A searched parameter
(:func:`signed`, built by :func:`formal.smt.exact_bv.var`) keeps its sign and
magnitude apart so that a product with it is a narrow multiply and a barrel
shift (see :meth:`formal.smt.fp.FPVar.exact_parts`).

Conditions are z3 booleans or Python ``bool`` constants (folded):
:func:`all_of`, :func:`any_of`, :func:`ite_bool`; :func:`piecewise` and
:func:`piecewise_bool` select the piece of an activation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias

import z3

from formal.core.activations import Activation
from formal.errors import UnsupportedOp

MAX_WIDTH = 4096  # refuse encodings whose proven bounds need wider bit-vectors
MAX_MUL_COST = 128 * 128  # refuse variable x variable multipliers larger than this (bit pairs):
# z3 does not poll its time-out while bit-blasting them, so a time-out could not be honoured


def _w(bound: int) -> int:
    return max(bound.bit_length() + 1, 2)


@dataclass(frozen=True, slots=True)
class BVQ:
    """``num / den`` exactly; ``num`` is None for a constant (then ``const``)."""

    num: z3.BitVecRef | None
    const: int
    den: int
    bound: int
    parts: tuple[z3.BitVecRef, z3.BitVecRef] | None = (
        None  # (sign bit, |num|) of a searched parameter
    )

    @property
    def is_const(self) -> bool:
        """Whether the value is a folded constant."""
        return self.num is None

    def fraction(self) -> Fraction:
        """The value of a constant."""
        assert self.num is None
        return Fraction(self.const, self.den)

    def bv(self, width: int) -> z3.BitVecRef:
        """The numerator as a signed bit-vector of ``width`` bits."""
        if self.num is None:
            return z3.BitVecVal(self.const, width)
        cur = self.num.size()
        if width < cur:  # |num| <= bound fits: dropping high bits keeps the value
            assert width >= _w(self.bound)
            return z3.Extract(width - 1, 0, self.num)
        return z3.SignExt(width - cur, self.num) if width > cur else self.num


def const(q: Fraction | int) -> BVQ:
    """The constant ``q`` (folded: no z3 term)."""
    q = Fraction(q)
    return BVQ(None, q.numerator, q.denominator, abs(q.numerator))


ZERO = const(0)


def signed(sign: z3.BitVecRef, mag: z3.BitVecRef, den: int, bound: int) -> BVQ:
    """``(-1)**sign * mag / den`` for a 1-bit ``sign`` and an unsigned ``mag <= bound``.

    The sign and magnitude are kept apart (``parts``) so that a product with
    this value is a narrow multiply of the magnitude (see :func:`mul`).
    """
    width = max(_w(bound), mag.size() + 1)
    wide = z3.ZeroExt(width - mag.size(), mag)
    num = z3.If(sign == 1, -wide, wide)
    return BVQ(num, 0, den, bound, (sign, mag))


def _check(bound: int) -> int:
    w = _w(bound)
    if w > MAX_WIDTH:
        raise UnsupportedOp(
            f"exact bit-vector encoding needs {w} bits (> {MAX_WIDTH}); "
            "restrict --range or the search format"
        )
    return w


def scale(a: BVQ, q: Fraction) -> BVQ:
    """``a * q`` for a constant q."""
    q = Fraction(q)
    if q == 0:
        return ZERO
    if a.is_const:
        return const(a.fraction() * q)
    if q == 1:
        return a
    p = q.numerator
    bound = a.bound * abs(p)
    w = _check(bound)
    num = a.bv(w) * p if p != 1 else a.bv(w)
    return BVQ(z3.simplify(num) if p == -1 else num, 0, a.den * q.denominator, bound)


def _aligned(a: BVQ, b: BVQ) -> tuple[int, int, int]:
    den = math.lcm(a.den, b.den)
    return den, den // a.den, den // b.den


def add(a: BVQ, b: BVQ) -> BVQ:
    """``a + b``."""
    if a.is_const and b.is_const:
        return const(a.fraction() + b.fraction())
    if a.is_const and a.const == 0:
        return b
    if b.is_const and b.const == 0:
        return a
    den, ka, kb = _aligned(a, b)
    bound = a.bound * ka + b.bound * kb
    w = _check(bound)
    xa = a.bv(w) * ka if ka != 1 else a.bv(w)
    xb = b.bv(w) * kb if kb != 1 else b.bv(w)
    return BVQ(xa + xb, 0, den, bound)


def neg(a: BVQ) -> BVQ:
    """``-a``."""
    if a.is_const:
        return const(-a.fraction())
    w = _w(a.bound)
    return BVQ(-a.bv(w), 0, a.den, a.bound)


def sub(a: BVQ, b: BVQ) -> BVQ:
    """``a - b``."""
    return add(a, neg(b))


def mul(a: BVQ, b: BVQ) -> BVQ:
    """``a * b`` (a searched parameter's magnitude times the other operand, then the sign)."""
    if a.is_const:
        return scale(b, a.fraction())
    if b.is_const:
        return scale(a, b.fraction())
    if b.parts is not None and a.parts is None:
        a, b = b, a
    bound = a.bound * b.bound
    w = _check(bound)
    cost = (a.parts[1].size() if a.parts is not None else _w(a.bound)) * _w(b.bound)
    if cost > MAX_MUL_COST:
        raise UnsupportedOp(
            f"the exact encoding needs a {_w(a.bound)} x {_w(b.bound)}-bit multiplier "
            f"(limit {MAX_MUL_COST} bit pairs); "
            "restrict --range or use a smaller search format"
        )
    if a.parts is not None:  # searched parameter: |a| * b then the sign
        sign, mag = a.parts
        prod = z3.ZeroExt(w - mag.size(), mag) * b.bv(w)
        return BVQ(z3.If(sign == 1, -prod, prod), 0, a.den * b.den, bound)
    return BVQ(a.bv(w) * b.bv(w), 0, a.den * b.den, bound)


def ite(cond: z3.BoolRef | bool, a: BVQ, b: BVQ) -> BVQ:
    """``a`` if ``cond`` else ``b`` (folded when ``cond`` is a constant)."""
    if cond is True or (isinstance(cond, z3.BoolRef) and z3.is_true(cond)):
        return a
    if cond is False or (isinstance(cond, z3.BoolRef) and z3.is_false(cond)):
        return b
    if a.is_const and b.is_const and a.fraction() == b.fraction():
        return a
    den, ka, kb = _aligned(a, b)
    bound = max(a.bound * ka, b.bound * kb)
    w = _check(bound)
    xa = a.bv(w) * ka if ka != 1 else a.bv(w)
    xb = b.bv(w) * kb if kb != 1 else b.bv(w)
    return BVQ(z3.If(cond, xa, xb), 0, den, bound)


def compare(a: BVQ, c: Fraction, op: str) -> z3.BoolRef | bool:
    """``a op c`` for a constant c; op in ==, !=, <, <=, >, >= (signed, exact)."""
    c = Fraction(c)
    if a.is_const:
        v = a.fraction()
        return {"==": v == c, "!=": v != c, "<": v < c, "<=": v <= c, ">": v > c, ">=": v >= c}[op]
    lhs_bound = a.bound * c.denominator
    rhs = c.numerator * a.den
    w = _check(max(lhs_bound, abs(rhs)))
    lhs = a.bv(w) * c.denominator if c.denominator != 1 else a.bv(w)
    r = z3.BitVecVal(rhs, w)
    if op == "==":
        return lhs == r
    if op == "!=":
        return lhs != r
    if op == "<":
        return lhs < r
    if op == "<=":
        return lhs <= r
    if op == ">":
        return lhs > r
    return lhs >= r


def nonzero(a: BVQ) -> z3.BoolRef | bool:
    """``a != 0``."""
    return compare(a, Fraction(0), "!=")


def total(terms: list[BVQ]) -> BVQ:
    """Sum, pairwise (balanced), skipping constant zeros."""
    items = [t for t in terms if not (t.is_const and t.const == 0)]
    consts = [t for t in items if t.is_const]
    rest = [t for t in items if not t.is_const]
    if consts:
        rest.append(const(sum((t.fraction() for t in consts), Fraction(0))))
    if not rest:
        return ZERO
    while len(rest) > 1:
        rest = [
            add(rest[i], rest[i + 1]) if i + 1 < len(rest) else rest[i]
            for i in range(0, len(rest), 2)
        ]
    return rest[0]


def poly(p: tuple[Fraction, ...], y: BVQ) -> BVQ:
    """Horner evaluation of a polynomial with exact coefficients (lowest degree first)."""
    acc = const(p[-1])
    for c in reversed(p[:-1]):
        acc = add(mul(acc, y), const(c))
    return acc


def deriv(p: tuple[Fraction, ...]) -> tuple[Fraction, ...]:
    """The derivative of a polynomial (coefficients lowest degree first)."""
    return tuple(Fraction(i) * c for i, c in enumerate(p))[1:] or (Fraction(0),)


def model_value(m: z3.ModelRef, a: BVQ) -> Fraction:
    """The exact value of a BVQ in a model (signed numerator over den)."""
    if a.num is None:
        return a.fraction()
    v = m.eval(a.num, model_completion=True)
    n = v.as_signed_long()
    return Fraction(n, a.den)


Cond: TypeAlias = z3.BoolRef | bool


def all_of(items: list[Cond]) -> Cond:
    """The conjunction of ``items``, folding Python ``bool`` constants."""
    if any(i is False for i in items):
        return False
    rest = [i for i in items if i is not True]
    if not rest:
        return True
    return rest[0] if len(rest) == 1 else z3.And(rest)


def any_of(items: list[Cond]) -> Cond:
    """The disjunction of ``items``, folding Python ``bool`` constants."""
    rest: list[Cond] = []
    for t in items:
        if t is True:
            return True
        if t is not False:
            rest.append(t)
    if not rest:
        return False
    return rest[0] if len(rest) == 1 else z3.Or(rest)


def ite_bool(c: Cond, a: Cond, b: Cond) -> Cond:
    """``a`` if ``c`` else ``b`` over conditions (folded when it can be)."""
    if c is True:
        return a
    if c is False:
        return b
    if a is b and isinstance(a, bool):
        return a
    return z3.If(c, a, b)


def piecewise(act: Activation, y: BVQ, pieces: list[BVQ]) -> BVQ:
    """Select ``pieces[k]`` on piece k of ``act`` (left piece at a kink)."""
    out = pieces[-1]
    for k in range(len(act.kinks) - 1, -1, -1):
        out = ite(compare(y, act.kinks[k], "<="), pieces[k], out)
    return out


def piecewise_bool(act: Activation, y: BVQ, pieces: list[Cond]) -> Cond:
    """Select the condition ``pieces[k]`` on piece k of ``act`` (left piece at a kink)."""
    out = pieces[-1]
    for k in range(len(act.kinks) - 1, -1, -1):
        out = ite_bool(compare(y, act.kinks[k], "<="), pieces[k], out)
    return out


__all__ = [
    "BVQ",
    "Cond",
    "MAX_MUL_COST",
    "MAX_WIDTH",
    "ZERO",
    "add",
    "all_of",
    "any_of",
    "compare",
    "const",
    "deriv",
    "ite",
    "ite_bool",
    "model_value",
    "mul",
    "neg",
    "nonzero",
    "piecewise",
    "piecewise_bool",
    "poly",
    "scale",
    "signed",
    "sub",
    "total",
]
