"""Exact numbers and germs: polynomials in t with exact coefficients, lowest order first."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sympy as sp

Germ = tuple[Fraction, ...]  # polynomial in t, lowest order first, no trailing zeros
Vec = tuple[Fraction, ...]

# ---------------------------------------------------------------------------
# Exact numbers


_HEX = re.compile(r"^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?\d+)$")


def exact(value: Any) -> Fraction:
    """An exact rational from an int, Fraction, Decimal, sympy Rational or text.

    Text may be p/q, a decimal or a hex float.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"oracle: expected an exact number, got {value!r}")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, Decimal):
        return Fraction(value)
    if isinstance(value, sp.Rational):
        return Fraction(int(value.p), int(value.q))
    text = str(value).strip()
    m = _HEX.match(text)
    if m:
        sign, whole, frac, exp = m.groups()
        frac = frac or ""
        mant = int((whole or "0") + frac, 16)
        q = Fraction(mant) * Fraction(2) ** (int(exp) - 4 * len(frac))
        return -q if sign == "-" else q
    return Fraction(text)


def rat(q: Fraction) -> sp.Rational:
    q = Fraction(q)
    return sp.Rational(q.numerator, q.denominator)


# ---------------------------------------------------------------------------
# Germs: polynomials in t, exact


def trim(c: list[Fraction]) -> Germ:
    while c and c[-1] == 0:
        c.pop()
    return tuple(c)


def g_const(q: Fraction) -> Germ:
    return trim([Fraction(q)])


def g_add(a: Germ, b: Germ) -> Germ:
    n = max(len(a), len(b))
    return trim(
        [
            (a[i] if i < len(a) else Fraction(0)) + (b[i] if i < len(b) else Fraction(0))
            for i in range(n)
        ]
    )


def g_neg(a: Germ) -> Germ:
    return tuple(-x for x in a)


def g_mul(a: Germ, b: Germ) -> Germ:
    if not a or not b:
        return ()
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return trim(out)


def g_sign(a: Germ) -> int:
    """Sign of the polynomial on (0, eps): the sign of its lowest-order non-zero coefficient."""
    for x in a:
        if x:
            return 1 if x > 0 else -1
    return 0


def g_coeff(a: Germ, k: int) -> Fraction:
    return a[k] if k < len(a) else Fraction(0)
