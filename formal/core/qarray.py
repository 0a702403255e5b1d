"""Exact rational arrays: integer numerators over one common denominator.

A :class:`QArray` holds ``num / den`` where ``num`` is a numpy object array of
Python (or flint) integers and ``den`` a positive Python int.  Products of
large matrices go through ``flint.fmpz_mat``; everything stays exact.  This is
the number domain of the exact engine: values, tangents and adjoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

try:  # python-flint: fast exact integer matrices
    import flint

    _HAVE_FLINT = True
except ImportError:  # pragma: no cover - exercised only without flint
    flint = None  # type: ignore[assignment]
    _HAVE_FLINT = False

_FLINT_MIN_WORK = 2048  # below this many multiply-adds, numpy object dot is as fast


def _int_array(values: Iterable[Any], shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=object)
    arr[:] = [int(v) for v in values]
    return arr.reshape(shape)


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact product of two 2-D integer object arrays."""
    n, k = a.shape
    k2, m = b.shape
    assert k == k2, (a.shape, b.shape)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=object) * 0
    if k == 0:
        out = np.empty((n, m), dtype=object)
        out[...] = 0
        return out
    if _HAVE_FLINT and n * k * m >= _FLINT_MIN_WORK:
        prod = flint.fmpz_mat(n, k, [int(v) for v in a.ravel()]) * flint.fmpz_mat(
            k, m, [int(v) for v in b.ravel()]
        )
        return _int_array(prod.entries(), (n, m))
    return np.dot(a, b)


class FlintMatrix:
    """A cached ``fmpz_mat`` of a constant integer matrix (parameters)."""

    __slots__ = ("array", "_mat", "_mat_t")

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self._mat: Any = None
        self._mat_t: Any = None

    def right_mul(self, x: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Return ``x @ M`` (or ``x @ M.T``) exactly for a 2-D integer array x."""
        mat = self.array.T if transpose else self.array
        n, k = x.shape
        m = mat.shape[1]
        if not (_HAVE_FLINT and n * k * m >= _FLINT_MIN_WORK):
            return int_matmul(x, mat)
        if transpose:
            if self._mat_t is None:
                self._mat_t = flint.fmpz_mat(k, m, [int(v) for v in mat.ravel()])
            cached = self._mat_t
        else:
            if self._mat is None:
                self._mat = flint.fmpz_mat(k, m, [int(v) for v in mat.ravel()])
            cached = self._mat
        prod = flint.fmpz_mat(n, k, [int(v) for v in x.ravel()]) * cached
        return _int_array(prod.entries(), (n, m))


@dataclass(frozen=True, slots=True)
class QArray:
    """An exact rational array ``num / den`` (``den > 0``)."""

    num: np.ndarray
    den: int

    # -- construction -------------------------------------------------------
    @staticmethod
    def zeros(shape: tuple[int, ...]) -> QArray:
        """An all-zero array of ``shape``."""
        num = np.empty(shape, dtype=object)
        num[...] = 0
        return QArray(num, 1)

    @staticmethod
    def from_fractions(values: Any) -> QArray:
        """Build from a nested sequence / object array of Fractions or ints."""
        arr = np.asarray(values, dtype=object)
        flat = [Fraction(v) for v in arr.ravel()]
        den = 1
        for v in flat:
            den = math.lcm(den, v.denominator)
        return QArray(
            _int_array((v.numerator * (den // v.denominator) for v in flat), arr.shape), den
        )

    def to_fractions(self) -> np.ndarray:
        """An object array of Fractions."""
        out = np.empty(self.num.shape, dtype=object)
        flat = out.reshape(-1)
        for i, v in enumerate(self.num.ravel()):
            flat[i] = Fraction(int(v), self.den)
        return out

    def item(self, index: tuple[int, ...] | int) -> Fraction:
        """One entry as a Fraction."""
        return Fraction(int(self.num[index]), self.den)

    def to_float(self) -> np.ndarray:
        """Nearest-ish float64 values (for display and filters with their own bounds)."""
        return np.array([float(Fraction(int(v), self.den)) for v in self.num.ravel()]).reshape(
            self.num.shape
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return tuple(self.num.shape)

    # -- arithmetic ---------------------------------------------------------
    def _common(self, other: QArray) -> tuple[np.ndarray, np.ndarray, int]:
        if self.den == other.den:
            return self.num, other.num, self.den
        den = math.lcm(self.den, other.den)
        return self.num * (den // self.den), other.num * (den // other.den), den

    def __add__(self, other: QArray) -> QArray:
        a, b, den = self._common(other)
        return QArray(a + b, den)

    def __sub__(self, other: QArray) -> QArray:
        a, b, den = self._common(other)
        return QArray(a - b, den)

    def __neg__(self) -> QArray:
        return QArray(-self.num, self.den)

    def mul(self, other: QArray) -> QArray:
        """Elementwise (broadcasting) product."""
        return QArray(self.num * other.num, self.den * other.den)

    def scale(self, q: Fraction) -> QArray:
        """The array times the rational ``q``."""
        q = Fraction(q)
        return QArray(self.num * q.numerator, self.den * q.denominator)

    def reshape(self, shape: tuple[int, ...]) -> QArray:
        """The array reshaped (same denominator)."""
        return QArray(self.num.reshape(shape), self.den)

    def sign(self) -> np.ndarray:
        """Integer array of signs (-1, 0, 1)."""
        return np.array([(v > 0) - (v < 0) for v in self.num.ravel()], dtype=np.int64).reshape(
            self.num.shape
        )

    def compare(self, q: Fraction) -> np.ndarray:
        """Signs of ``self - q`` elementwise, exactly."""
        q = Fraction(q)
        rhs = q.numerator * self.den
        lhs = self.num * q.denominator
        return np.array([(v > rhs) - (v < rhs) for v in lhs.ravel()], dtype=np.int64).reshape(
            self.num.shape
        )

    def is_zero(self) -> np.ndarray:
        """Entrywise test for zero."""
        return np.array([v == 0 for v in self.num.ravel()], dtype=bool).reshape(self.num.shape)

    def normalized(self) -> QArray:
        """Divide out the gcd of all numerators and the denominator."""
        g = self.den
        for v in self.num.ravel():
            if g == 1:
                break
            g = math.gcd(g, int(v))
        if g <= 1:
            return self
        return QArray(
            np.array([int(v) // g for v in self.num.ravel()], dtype=object).reshape(self.num.shape),
            self.den // g,
        )


def qmatmul(a: QArray, b: QArray) -> QArray:
    """Exact matrix product of 2-D QArrays."""
    return QArray(int_matmul(a.num, b.num), a.den * b.den)


__all__ = ["QArray", "FlintMatrix", "int_matmul", "qmatmul"]
