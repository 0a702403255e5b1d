"""Rounded (IEEE) arithmetic in a stated order, over any back-end.

An :class:`Arith` is one back-end of the rounded semantics (z3 FP terms,
exact rationals rounded to nearest even, numpy scalars: see
:mod:`formal.smt.rounded`).  The ops' ``rounded`` rules
(:mod:`formal.core.rules`) compute with it through :func:`ordered_sum`,
:func:`horner` and :func:`const_terms`, so they do not depend on the back-end.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal, get_args

import numpy as np

Order = Literal["sequential", "pairwise"]
ORDERS: tuple[str, ...] = get_args(Order)


class Arith:
    """One back-end of the rounded semantics: every result is rounded to the format."""

    def const(self, q: Fraction) -> Any:
        """The constant ``q`` rounded to the format."""
        raise NotImplementedError

    def mul(self, a: Any, b: Any) -> Any:
        """The rounded product."""
        raise NotImplementedError

    def add(self, a: Any, b: Any) -> Any:
        """The rounded sum."""
        raise NotImplementedError

    def neg(self, a: Any) -> Any:
        """The negation (exact)."""
        raise NotImplementedError

    def le(self, a: Any, c: Fraction) -> Any:
        """The condition ``a <= c`` for an exact constant ``c``."""
        raise NotImplementedError

    def ite(self, cond: Any, a: Any, b: Any) -> Any:
        """``a`` if ``cond`` else ``b``."""
        raise NotImplementedError


def horner(arith: Arith, p: tuple[Fraction, ...], y: Any) -> Any:
    """Horner's rule with rounded coefficients (lowest degree first); a leading 1 and zero
    coefficients cost no operation, so relu-family pieces are exact."""
    acc: Any = None
    acc_one = False
    for k in range(len(p) - 1, -1, -1):
        a = p[k]
        if acc is None:
            if k == 0:
                return arith.const(a)
            acc, acc_one = arith.const(a), a == 1
            continue
        acc = y if acc_one else arith.mul(acc, y)
        acc_one = False
        if a != 0:
            acc = arith.add(acc, arith.const(a))
    return acc


def ordered_sum(arith: Arith, terms: list[Any], order: str) -> Any:
    """Rounded sum of ``terms``: ``sequential`` (left to right) or ``pairwise`` (a balanced
    tree: (t0 + t1) + (t2 + t3), ...)."""
    if order == "sequential":
        acc = terms[0]
        for t in terms[1:]:
            acc = arith.add(acc, t)
        return acc
    while len(terms) > 1:
        terms = [
            arith.add(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i]
            for i in range(0, len(terms), 2)
        ]
    return terms[0]


def const_terms(arith: Arith, q: Any) -> np.ndarray:
    """An object array of the rounded constants of the rational array ``q``."""
    out = np.empty(q.shape, dtype=object)
    for idx in np.ndindex(*q.shape):
        out[idx] = arith.const(q[idx])
    return out


__all__ = ["ORDERS", "Arith", "Order", "const_terms", "horner", "ordered_sum"]
