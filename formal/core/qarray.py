"""Exact rational arrays: integer numerators over one common denominator.

A :class:`QArray` holds ``num / den`` where ``num`` is a numpy object array of
Python (or flint) integers and ``den`` a positive Python int.  Products of
large matrices are exact float64 BLAS products of base-2**16 digit matrices
(:func:`split_matmul`: every partial sum is an integer below 2**52), carried
back into Python integers by vectorized int64 code; operands with very many
digits go through ``flint.fmpz_mat``, and a few rows of small integers times
int64 numerators use numpy's int64 product when no partial sum can overflow.
A QArray may hold its numerators as digits only (:meth:`QArray.of_digits`):
tangents then go from product to product without Python integers.
Everything stays exact.  This is the number domain of the exact engine:
values, tangents and adjoints.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
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


_LITTLE = sys.byteorder == "little"
_DIGIT = 16  # digit width in bits: float64 products over k <= 2**20 terms stay exact
_MAX_K = 1 << 20
_LIMB = 48  # Python ints are taken apart and rebuilt in 48-bit limbs
_MAX_PRODUCTS = 4096  # above this many digit products per matmul, flint is used instead
_INT64_ROWS = 4  # up to this many rows, products of small integers may stay in int64
_WIDE = 128  # below this many columns, B's digits are put side by side for one BLAS call
_WIDE_MAX = 1 << 22  # ... when that product has at most this many entries (32 MB)


@dataclass(frozen=True, slots=True)
class Split:
    """An integer array as float64 digits: ``M = sum_i stacked[i] * 2**(16 * i)``.

    ``stacked`` is one C-contiguous (digits, *shape) array.  The lower digits
    are in [0, 2**16), the top one is signed (two's complement), so a float64
    product of two digit matrices over an inner dimension k <= 2**20 is a sum
    of integers below 2**52: exact.
    """

    stacked: np.ndarray

    @staticmethod
    def of_stack(stacked: np.ndarray) -> Split:
        """The Split whose digits are ``stacked[0], stacked[1], ...`` (made C-contiguous)."""
        return Split(np.ascontiguousarray(stacked))

    @property
    def chunks(self) -> tuple[np.ndarray, ...]:
        """The digit arrays, lowest first."""
        return tuple(self.stacked)


def _digits_int64(a64: np.ndarray) -> Split:
    bits = max(int(a64.max()).bit_length(), int(a64.min()).bit_length()) if a64.size else 0
    n = max(1, -(-(bits + 1) // _DIGIT))
    mask = (1 << _DIGIT) - 1
    out = np.empty((n,) + a64.shape, dtype=np.float64)
    if _LITTLE and n <= 4:  # the int64's two's complement bytes are its digits: read in place
        u = np.ascontiguousarray(a64, dtype=np.int64).view(np.uint16).reshape(a64.shape + (4,))
        for i in range(n - 1):
            out[i] = u[..., i]
        out[n - 1] = u[..., n - 1].view(np.int16)  # the value fits n signed digits
        return Split.of_stack(out)
    for i in range(n - 1):
        out[i] = (a64 >> (_DIGIT * i)) & mask
    out[n - 1] = a64 >> (_DIGIT * (n - 1))
    return Split.of_stack(out)


def split(a: np.ndarray) -> Split:
    """The base-2**16 digits of a 2-D integer array (object or int64) as float64 arrays."""
    if a.dtype != object:
        return _digits_int64(a.astype(np.int64, copy=False))
    if a.size >= _SPARSE_MIN:  # mostly zeros (e.g. tangents of a few kinks): split the rest
        nz = np.flatnonzero(a.reshape(-1) != 0)
        if nz.size * _SPARSE_RATIO < a.size:
            part = _split_dense(a.reshape(-1)[nz])
            out = np.zeros((len(part.stacked), a.size), dtype=np.float64)
            out[:, nz] = part.stacked
            return Split.of_stack(out.reshape((len(part.stacked),) + a.shape))
    return _split_dense(a)


_SPARSE_MIN = 512  # object arrays from this size are checked for zeros before splitting
_SPARSE_RATIO = 2  # ... and split as their non-zero entries when fewer than 1 in this many


def _split_dense(a: np.ndarray) -> Split:
    """:func:`split` of an object integer array, entry by entry."""
    try:
        a64 = a.astype(np.int64)
    except OverflowError:
        pass
    else:
        if a64.size == 0 or int(a64.min()) > -(2**62):
            return _digits_int64(a64)
    bits = max(int(a.max()).bit_length(), int(a.min()).bit_length())
    if bits <= _LIMB * _LIMB_SPLIT_MAX:
        return _split_limbs(a, bits)
    n = max(1, -(-(bits + 1) // _DIGIT))  # digits, the top one signed
    flat = a.reshape(-1)
    # two's complement little-endian bytes of every entry are its base-2**16 digits
    nb, to_bytes = 2 * n, int.to_bytes
    try:  # Python ints (the common case) straight from a list
        buf = b"".join([to_bytes(v, nb, "little", signed=True) for v in flat.tolist()])
    except TypeError:  # other integer types (e.g. flint's fmpz)
        buf = b"".join([int(v).to_bytes(nb, "little", signed=True) for v in flat])
    d = np.frombuffer(buf, dtype=np.uint16).reshape(flat.size, n)
    out = np.empty((n, flat.size), dtype=np.float64)
    out[: n - 1] = d[:, : n - 1].T
    out[n - 1] = d[:, n - 1].view(np.int16)
    return Split.of_stack(out.reshape((n,) + a.shape))


_LIMB_SPLIT_MAX = 2  # up to this many 48-bit limbs, object shifts beat to_bytes in split


def _split_limbs(a: np.ndarray, bits: int) -> Split:
    """:func:`split` of an object array of at most ``2 * 48``-bit integers, limb by limb.

    Each 48-bit limb is cut off with vectorized object ops and taken apart in
    int64; Python's ``>>`` floors, so the lower limbs are in ``[0, 2**48)``
    (three unsigned digits each) and the top limb keeps the sign.
    """
    mask = (1 << _LIMB) - 1
    per = _LIMB // _DIGIT
    chunks: list[np.ndarray] = []
    rest = a
    while bits >= _LIMB:  # the rest does not fit a signed 48-bit limb yet
        low = (rest & mask).astype(np.int64)
        chunks.extend(((low >> (_DIGIT * i)) & 0xFFFF).astype(np.float64) for i in range(per))
        rest = rest >> _LIMB
        bits -= _LIMB
    top = _digits_int64(rest.astype(np.int64))
    return Split.of_stack(np.concatenate([np.stack(chunks), top.stacked]))


_BYTES_FROM = 15  # from this many digits on, Python ints are built from bytes


def _combine(sums: list[np.ndarray]) -> np.ndarray:
    """Python integers ``sum_s sums[s] * 2**(16 s)`` from int64 digit sums, by carrying."""
    shape = sums[0].shape
    per = _LIMB // _DIGIT
    n = len(sums) + 4
    n += -n % per
    digits = np.zeros((n, sums[0].size), dtype=np.int64)
    for i, v in enumerate(sums):
        digits[i] = v.reshape(-1)
    mask = (1 << _DIGIT) - 1
    for i in range(n - 1):  # the top digits end as 0 or -1 (the sign)
        digits[i + 1] += digits[i] >> _DIGIT
        digits[i] &= mask
    if n <= _BYTES_FROM:  # few limbs: vectorized object shifts are fastest
        limbs = [
            sum(digits[j * per + i] << (_DIGIT * i) for i in range(per)) for j in range(n // per)
        ]
        acc = limbs[-1].astype(object)  # signed: its top digit is the sign (0 or -1)
        for limb in reversed(limbs[:-1]):
            acc = (acc << _LIMB) + limb.astype(object)
        return acc.reshape(shape)
    # many limbs: the digits are the two's complement little-endian bytes of each entry
    nb = 2 * n
    buf = memoryview(np.ascontiguousarray(digits.T.astype(np.uint16)).tobytes())
    out = np.empty(digits.shape[1], dtype=object)
    out[:] = [
        int.from_bytes(buf[i : i + nb], "little", signed=True) for i in range(0, len(buf), nb)
    ]
    return out.reshape(shape)


def digit_sums(a: Split, b: Split) -> list[np.ndarray]:
    """The int64 sums ``S_s = sum_{i+j=s} A_i @ B_j`` with ``A @ B = sum_s S_s * 2**(16 s)``.

    Each digit product is an exact float64 BLAS product (see :class:`Split`);
    every entry of every sum is below ``2**58`` in magnitude (at most 64
    products below ``2**52``), so a linear map with integer coefficients of
    total weight ``g`` per output entry keeps them in int64 while
    ``g * 2**58 < 2**63`` (see :func:`carry`).
    """
    rows = _nonzero_rows(a)
    na, nb = len(a.stacked), len(b.stacked)
    n, m = a.stacked.shape[1], b.stacked.shape[2]
    if not rows.all():  # all-zero rows (e.g. adjoints of other samples): zero results
        full = [np.zeros((n, m), dtype=np.int64) for _ in range(na + nb - 1)]
        if rows.any():
            for f, v in zip(full, digit_sums(Split.of_stack(a.stacked[:, rows]), b)):
                f[rows] = v
        return full
    # [A_0; A_1; ...] @ B_j, whose i-th block A_i @ B_j adds to the sum of weight i + j;
    # with few columns (and a bounded result), all B_j side by side in one BLAS call
    stacked = a.stacked.reshape(na * n, -1)
    out = np.zeros((na + nb - 1, n, m), dtype=np.int64)
    if 1 < nb and m < _WIDE and na * n * nb * m <= _WIDE_MAX:
        wide = b.stacked.transpose(1, 0, 2).reshape(-1, nb * m)
        prod = (stacked @ wide).astype(np.int64).reshape(na, n, nb, m)
        for j in range(nb):
            out[j : j + na] += prod[:, :, j]
    else:
        for j, cb in enumerate(b.stacked):
            out[j : j + na] += (stacked @ cb).astype(np.int64).reshape(na, n, m)
    return list(out)


def carry(sums: list[np.ndarray]) -> np.ndarray:
    """Python integers ``sum_s sums[s] * 2**(16 s)`` (object array) from int64 digit sums."""
    bound = max((int(np.abs(v).max()) for v in sums if v.size), default=0)
    if bound.bit_length() + (len(sums) - 1) * _DIGIT + 1 <= 62:  # the result fits in int64
        acc64 = sums[-1]
        for v in reversed(sums[:-1]):
            acc64 = (acc64 << _DIGIT) + v
        return acc64.astype(object)
    return _combine(sums)


def split_matmul(a: Split, b: Split) -> np.ndarray:
    """Exact ``A @ B`` (object array of Python ints) from the digits of A and B.

    Each product of digit matrices is an exact float64 BLAS product (see
    :class:`Split`); products of equal weight are summed in int64 (at most
    ``min(na, nb) <= 64`` terms below ``2**52``), then carried into Python ints.
    """
    rows = _nonzero_rows(a)
    if rows.all():
        return carry(digit_sums(a, b))
    out = np.zeros((rows.size, b.stacked.shape[2]), dtype=object)  # Python int zeros
    if rows.any():
        out[rows] = carry(digit_sums(Split.of_stack(a.stacked[:, rows]), b))
    return out


def large_product(n: int, k: int, m: int) -> bool:
    """True when an (n, k) @ (k, m) integer product goes through digit splits (or flint).

    Callers that can split an operand more cheaply than :func:`split` would
    (e.g. before an im2col gather) do so only then.
    """
    return n * k * m >= _FLINT_MIN_WORK and n > 0 and k > 0 and m > 0


def _nonzero_rows(a: Split) -> np.ndarray:
    return np.any(a.stacked != 0, axis=(0, 2))


def _digit_count(a: np.ndarray) -> int:
    if a.size == 0:
        return 1
    if a.dtype == object:
        bits = max(int(a.max()).bit_length(), int(a.min()).bit_length())
    else:
        bits = max(int(a.max()).bit_length(), int(a.min()).bit_length())
    return max(1, -(-(bits + 1) // _DIGIT))


def _split_ok(k: int, na: int, nb: int) -> bool:
    return k <= _MAX_K and na * nb <= _MAX_PRODUCTS and min(na, nb) <= 64


def int_matmul(
    a: np.ndarray,
    b: np.ndarray,
    a_digits: Split | None = None,
    b_digits: Split | None = None,
) -> np.ndarray:
    """Exact product of two 2-D integer object arrays.

    Small products use numpy's object dot; larger ones exact float64 BLAS
    products of base-2**16 digits (:func:`split_matmul`), or flint's
    ``fmpz_mat`` when the operands have too many digits.  ``a_digits``,
    ``b_digits``: the operands' digits when already known (e.g. split before an im2col gather).
    """
    n, k = a.shape
    k2, m = b.shape
    assert k == k2, (a.shape, b.shape)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=object) * 0
    if k == 0:
        out = np.empty((n, m), dtype=object)
        out[...] = 0
        return out
    if n * k * m < _FLINT_MIN_WORK:
        return np.dot(a, b)
    sa = a_digits if a_digits is not None else split(a)
    sb = b_digits if b_digits is not None else split(b)
    if _split_ok(k, len(sa.stacked), len(sb.stacked)):
        return split_matmul(sa, sb)
    if _HAVE_FLINT:
        prod = flint.fmpz_mat(n, k, [int(v) for v in a.ravel()]) * flint.fmpz_mat(
            k, m, [int(v) for v in b.ravel()]
        )
        return _int_array(prod.entries(), (n, m))
    return np.dot(a, b)  # pragma: no cover - exercised only without flint


class FlintMatrix:
    """A constant integer matrix (parameters) with its cached digit split."""

    __slots__ = ("array", "ints", "_splits", "_bound")

    def __init__(self, array: np.ndarray, ints: np.ndarray | None = None) -> None:
        self.array = array
        self.ints = ints  # the same integers as int64 (optional, saves conversions)
        self._splits: dict[bool, Split] = {}
        self._bound: int | None = None  # max |ints|, once needed

    def _int64_product(self, x: np.ndarray, transpose: bool, weight: int) -> np.ndarray | None:
        """``x @ M`` (or ``x @ M.T``) in int64 when no partial sum can overflow, else None.

        For a few rows of small integers (e.g. one image of 8-bit pixels)
        numpy's int64 product beats splitting all of M into digits:
        ``max|x| * max|M| * k * weight < 2**63`` bounds every partial sum and
        every entry of a post map of that total weight.
        """
        if self.ints is None:
            return None
        try:
            x64 = x if x.dtype == np.int64 else x.astype(np.int64)
        except (OverflowError, TypeError):
            return None
        if self._bound is None:
            self._bound = max(abs(int(self.ints.max())), abs(int(self.ints.min())), 1)
        bx = max(abs(int(x64.max())), abs(int(x64.min())), 1) if x64.size else 1
        if bx * self._bound * x64.shape[1] * max(weight, 1) >= 2**63:
            return None
        return (self.ints @ x64.T).T if transpose else x64 @ self.ints

    def digits(self, transpose: bool = False) -> Split:
        """The digits of the matrix (or of its transpose), computed once."""
        cached = self._splits.get(transpose)
        if cached is None:
            other = self._splits.get(not transpose)
            if other is not None:  # the digits of the transpose, transposed
                cached = Split.of_stack(other.stacked.transpose(0, 2, 1))
            elif self.ints is not None:
                ints = self.ints.T if transpose else self.ints
                cached = _digits_int64(np.ascontiguousarray(ints))
            else:
                mat = self.array.T if transpose else self.array
                cached = split(np.ascontiguousarray(mat))
            self._splits[transpose] = cached
        return cached

    def right_mul_digits(
        self, x: Split, transpose: bool = False, inner: np.ndarray | None = None
    ) -> Split | None:
        """The digits of ``x @ M`` (or ``x @ M.T``) from the digits of a 2-D x.

        ``inner``: the indices of the inner dimension that x holds (x's
        columns are those rows of M; the others would meet zeros).  None when
        the operands have too many digits for exact float64 digit products
        (then multiply the integers instead).
        """
        mat = self.array.T if transpose else self.array
        k, n = mat.shape[0] if inner is None else len(inner), x.stacked.shape[1]
        if inner is None or transpose in self._splits or 4 * len(inner) >= mat.shape[0]:
            m = self.digits(transpose)
            if inner is not None:
                m = Split.of_stack(m.stacked[:, inner])
        else:  # a few rows of M: split them alone (the whole split is not cached yet)
            ints = None if self.ints is None else (self.ints.T if transpose else self.ints)
            m = _digits_int64(ints[inner]) if ints is not None else split(mat[inner])
        if not _split_ok(k, len(x.stacked), len(m.stacked)):
            return None
        if n == 0 or k == 0:
            return Split.of_stack(np.zeros((1, n, mat.shape[1])))
        return normalized_digits(np.stack(digit_sums(x, m)))

    def right_mul(
        self,
        x: np.ndarray,
        transpose: bool = False,
        post: Callable[[np.ndarray], np.ndarray] | None = None,
        weight: int = 1,
        digits: Split | None = None,
    ) -> np.ndarray:
        """Return ``x @ M`` (or ``x @ M.T``) exactly for a 2-D integer array x.

        ``post``: a linear map with integer coefficients (e.g. a scatter-add)
        applied to the product, returning a new array of any shape; it must
        work on int64 and object arrays alike.  ``weight`` bounds the sum of
        the absolute coefficients per output entry: the map is then applied to
        the int64 digit sums before they are carried into Python integers
        (fewer entries to carry when the map shrinks the array).  ``digits``:
        the digits of x when already known (e.g. split before an im2col gather).
        A few rows of small integers go through int64 (:meth:`_int64_product`).
        """
        mat = self.array.T if transpose else self.array
        n, k = x.shape
        m = mat.shape[1]
        if n * k * m < _FLINT_MIN_WORK or k == 0 or n == 0 or m == 0:
            out = int_matmul(x, mat)
            return out if post is None else post(out)
        if n <= _INT64_ROWS and digits is None and transpose not in self._splits:
            small = self._int64_product(x, transpose, weight)
            if small is not None:
                return (small if post is None else post(small)).astype(object)
        cached = self.digits(transpose)
        sx = digits if digits is not None else split(x)
        if _split_ok(k, len(sx.stacked), len(cached.stacked)):
            if post is None:
                return split_matmul(sx, cached)
            sums = digit_sums(sx, cached)
            bound = max((int(np.abs(v).max()) for v in sums if v.size), default=0)
            if bound * weight < 2**62:  # the mapped sums stay in int64
                return carry([post(v) for v in sums])
            return post(carry(sums))
        out = int_matmul(x, mat)
        return out if post is None else post(out)


class QArray:
    """An exact rational array ``num / den`` (``den > 0``), immutable by convention.

    ``ints`` optionally holds the same numerators as an int64 array (a loader
    that computed them natively keeps them, so products and float conversions
    of parameters need no per-entry Python round trip); it is never written
    by arithmetic and must equal ``num`` entry by entry.

    The numerators may instead be held as their base-2**16 digits (a
    :class:`Split` with the digit axis first, see :meth:`of_digits`): products
    then read the digits and give digits, and Python integers are built only
    when ``num`` is read.  Sums, negation, reshapes and products with small
    integers stay in digits.  Nothing may write into ``num`` in place.
    """

    __slots__ = ("_num", "den", "ints", "_digits")

    def __init__(self, num: np.ndarray, den: int, ints: np.ndarray | None = None) -> None:
        self._num: np.ndarray | None = num
        self.den = den
        self.ints = ints
        self._digits: Split | None = None

    @staticmethod
    def of_digits(digits: Split, den: int) -> QArray:
        """The array ``num / den`` whose numerators have the (stacked) digits ``digits``."""
        q = QArray.__new__(QArray)
        q._num, q.den, q.ints, q._digits = None, den, None, digits
        return q

    @property
    def num(self) -> np.ndarray:
        """The numerators: an integer (object) array."""
        if self._num is None:
            assert self._digits is not None
            num = digits_to_ints(self._digits)
            num.setflags(write=False)
            self._num = num
        return self._num

    @property
    def lazy(self) -> bool:
        """True while the numerators are held as digits only."""
        return self._num is None

    def digits(self) -> Split:
        """The numerators' base-2**16 digits, stacked (digit axis first); computed once."""
        if self._digits is None:
            assert self._num is not None
            ints = self.ints
            self._digits = _digits_int64(ints) if ints is not None else split(self._num)
        return self._digits

    def __repr__(self) -> str:
        return f"QArray(shape={self.shape}, den={self.den})"

    def native(self) -> np.ndarray | None:
        """The numerators as int64 when held natively (see ``ints``), else None."""
        return self.ints

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
        flat = [v if type(v) is Fraction else Fraction(v) for v in arr.ravel().tolist()]
        den = math.lcm(*{v.denominator for v in flat}) if flat else 1
        out = np.empty(len(flat), dtype=object)
        out[:] = [v.numerator * (den // v.denominator) for v in flat]
        return QArray(out.reshape(arr.shape), den)

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
        if self._num is None:
            assert self._digits is not None
            return tuple(self._digits.stacked.shape[1:])
        return tuple(self._num.shape)

    # -- arithmetic ---------------------------------------------------------
    def _common(self, other: QArray) -> tuple[np.ndarray, np.ndarray, int]:
        if self.den == other.den:
            return self.num, other.num, self.den
        den = math.lcm(self.den, other.den)
        fa, fb = den // self.den, den // other.den  # a factor 1 costs no pass over the entries
        return (
            (self.num * fa if fa != 1 else self.num),
            (other.num * fb if fb != 1 else other.num),
            den,
        )

    def _digit_sum(self, other: QArray, sign: int) -> QArray | None:
        """``self + sign * other`` in digits, when one of them is held so and it applies."""
        if not (self.lazy or other.lazy) or len(self.shape) != len(other.shape):
            return None
        den = math.lcm(self.den, other.den)
        da = _times(_int_digits(self.digits()), den // self.den)
        db = _times(_int_digits(other.digits()), den // other.den)
        n = max(da.shape[0], db.shape[0])
        shape = np.broadcast_shapes(da.shape[1:], db.shape[1:])
        acc = np.zeros((n,) + shape, dtype=np.int64)
        acc[: da.shape[0]] += da
        if sign > 0:
            acc[: db.shape[0]] += db
        else:
            acc[: db.shape[0]] -= db
        return QArray.of_digits(normalized_digits(acc), den)

    def __add__(self, other: QArray) -> QArray:
        lazy = self._digit_sum(other, 1)
        if lazy is not None:
            return lazy
        a, b, den = self._common(other)
        return QArray(a + b, den)

    def __sub__(self, other: QArray) -> QArray:
        lazy = self._digit_sum(other, -1)
        if lazy is not None:
            return lazy
        a, b, den = self._common(other)
        return QArray(a - b, den)

    def __neg__(self) -> QArray:
        if self.lazy:
            return QArray.of_digits(normalized_digits(-_int_digits(self.digits())), self.den)
        return QArray(-self.num, self.den)

    def mul(self, other: QArray) -> QArray:
        """Elementwise (broadcasting) product."""
        if self.lazy and not other.lazy:
            small = _small_ints(other.num, self.shape)
            if small is not None:
                d, den = self.digits(), self.den * other.den
                if small.min(initial=0) >= 0 and small.max(initial=0) <= 1:  # a mask
                    return QArray.of_digits(Split.of_stack(d.stacked * small), den)
                return QArray.of_digits(normalized_digits(_int_digits(d) * small), den)
        return QArray(self.num * other.num, self.den * other.den)

    def scale(self, q: Fraction) -> QArray:
        """The array times the rational ``q``."""
        q = Fraction(q)
        if self.lazy:
            prod = _times(_int_digits(self.digits()), abs(q.numerator))
            prod = prod if q.numerator >= 0 else -prod
            return QArray.of_digits(normalized_digits(prod), self.den * q.denominator)
        return QArray(self.num * q.numerator, self.den * q.denominator)

    def reshape(self, shape: tuple[int, ...]) -> QArray:
        """The array reshaped (same denominator)."""
        if self.lazy:
            d = self.digits().stacked
            return QArray.of_digits(
                Split.of_stack(d.reshape((d.shape[0],) + tuple(shape))), self.den
            )
        return QArray(self.num.reshape(shape), self.den)

    def sign(self) -> np.ndarray:
        """Integer array of signs (-1, 0, 1)."""
        return _signs(self.num, 0)

    def compare(self, q: Fraction) -> np.ndarray:
        """Signs of ``self - q`` elementwise, exactly."""
        q = Fraction(q)
        rhs = q.numerator * self.den
        lhs = self.num if q.denominator == 1 else self.num * q.denominator
        return _signs(lhs, rhs)

    def is_zero(self) -> np.ndarray:
        """Entrywise test for zero."""
        return np.asarray(self.num == 0, dtype=bool).reshape(self.num.shape)

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


_SMALL_FACTOR = 1 << 30  # digit arithmetic takes integer factors below this (exact in int64)


def _int_digits(d: Split) -> np.ndarray:
    """The stacked digits as int64 (digit axis first)."""
    return d.stacked.astype(np.int64)


def _times(d: np.ndarray, f: int) -> np.ndarray:
    """Digits (not normalized) of ``f`` times the integers with normalized int64 digits ``d``.

    Every digit of ``d`` and of ``f >= 0`` is below 2**16 in magnitude, so each
    digit product is below 2**32, and a sum of ``min`` of the two digit counts
    of them stays far inside int64.
    """
    if f == 1:
        return d
    fd = [(f >> (_DIGIT * j)) & 0xFFFF for j in range(max(1, -(-f.bit_length() // _DIGIT)))]
    out = np.zeros((d.shape[0] + len(fd) - 1,) + d.shape[1:], dtype=np.int64)
    for j, fj in enumerate(fd):
        if fj:
            out[j : j + d.shape[0]] += d * fj
    return out


def _small_ints(num: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``num`` as int64 when every entry is below 2**30 in magnitude and it broadcasts to shape."""
    if len(num.shape) > len(shape) or np.broadcast_shapes(num.shape, shape) != tuple(shape):
        return None
    try:
        small = np.asarray(num).astype(np.int64)
    except (OverflowError, TypeError):
        return None
    if small.size and int(np.abs(small).max()) >= _SMALL_FACTOR:
        return None
    return small


def normalized_digits(d: np.ndarray) -> Split:
    """The digits of ``sum_i d[i] * 2**(16 i)`` in :class:`Split` form, from int64 ``d``.

    ``d`` (digits, *shape) may hold any int64 values below 2**62 in magnitude:
    carrying makes the lower digits [0, 2**16) and leaves sign digits (0 or
    -1) on top, which are dropped while the digit below them carries the
    same sign; the top digit kept is signed.
    """
    n = d.shape[0]
    out = np.zeros((n + 4,) + d.shape[1:], dtype=np.int64)
    out[:n] = d
    mask = (1 << _DIGIT) - 1
    for i in range(n + 3):
        out[i + 1] += out[i] >> _DIGIT
        out[i] &= mask
    top = n + 3
    signed = out[top]  # 0 or -1: |value| < 2**(62 + 16 * n)
    while top > 0:
        below = out[top - 1]
        if not np.array_equal(signed, -(below >> (_DIGIT - 1))):
            break
        top -= 1
        signed = below - ((below >> (_DIGIT - 1)) << _DIGIT)
    out[top] = signed
    return Split.of_stack(out[: top + 1].astype(np.float64))


def digits_to_ints(d: Split) -> np.ndarray:
    """The Python integers (object array) whose digits are ``d``."""
    return _combine(list(_int_digits(d)))


def _signs(lhs: np.ndarray, rhs: int) -> np.ndarray:
    """Signs of ``lhs - rhs`` (int64 array), by vectorized exact comparisons."""
    gt = np.asarray(lhs > rhs, dtype=bool)
    lt = np.asarray(lhs < rhs, dtype=bool)
    return (gt.astype(np.int64) - lt.astype(np.int64)).reshape(lhs.shape)


def qmatmul(a: QArray, b: QArray) -> QArray:
    """Exact matrix product of 2-D QArrays."""
    return QArray(int_matmul(a.num, b.num), a.den * b.den)


__all__ = [
    "QArray",
    "FlintMatrix",
    "Split",
    "int_matmul",
    "qmatmul",
    "split",
    "split_matmul",
    "digit_sums",
    "carry",
    "large_product",
    "normalized_digits",
    "digits_to_ints",
]
