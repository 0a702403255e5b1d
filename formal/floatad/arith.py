"""Working-precision arithmetic: rounding, accumulation orders, emulated fused multiply-add.

An :class:`Arithmetic` fixes the format (binary16, bfloat16, binary32,
binary64), the accumulation order of every reduction (dot products, sums over
a batch or a window) and whether products are fused into the accumulation.

Every elementwise operation is one numpy operation in the format's dtype,
hence rounded to nearest-even once: numpy computes binary16 (and ml_dtypes
bfloat16) operations in binary32 and rounds the result, a double rounding
that is innocuous for +, -, *, / because 24 >= 2p + 2 for p = 11 and p = 8
(Figueroa 1995).  Conversions from exact rationals go through
:meth:`formal.core.numbers.Format.round_nearest_even`, never through a float
cast (ml_dtypes casts binary64 to bfloat16 through binary32: a double
rounding that can be wrong).

Orders (``Order``):

- ``sequential``: ``s = p_0; s = fl(s + p_k)`` for k = 1, 2, ... in index order;
- ``pairwise``: level by level, adjacent pairs ``fl(p_0 + p_1), fl(p_2 + p_3), ...``
  (an odd last term is carried up unchanged) until one value is left;
- ``blas``: ``numpy.matmul`` / ``numpy.sum`` in the dtype, whatever order and
  fusion the linked BLAS (or numpy's own loop for binary16, ml_dtypes' loop,
  which accumulates in binary32, for bfloat16) uses: what frameworks do on
  CPU, order unspecified.

``fma`` (sequential order only): ``s = fl(a_k * b_k + s)`` with one rounding.
Emulated: for binary16, bfloat16 and binary32 the product is exact in
binary64 (2p <= 48 <= 53 bits), the sum is rounded *to odd* in binary64 (an
error-free TwoSum tells whether it was exact) and then rounded to nearest in
the format, which is correct because 53 >= p + 2 (Boldo and Melquiond 2008);
for bfloat16 the last step again goes through binary32 rounded to odd.  For
binary64 the product is split exactly (Dekker's TwoProduct with Veltkamp
splitting) and Boldo and Melquiond's emulated FMA rounds ``hi + (c + lo)``
correctly with one round-to-odd addition.  Overflow and underflow of the
intermediate terms are out of scope (the formats' ranges in small networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, get_args

import numpy as np

from formal.core.numbers import Format, parse_format
from formal.errors import InvalidArgument

Order = Literal["sequential", "pairwise", "blas"]
ORDERS: tuple[Order, ...] = get_args(Order)
ConvReduction = Literal["hwc", "chw"]
"""A convolution's reduction index order: kernel row, column, channel innermost (``hwc``:
JAX, and PyTorch's oneDNN path for a batch of 2 or more) or channel outermost (``chw``:
PyTorch with a batch of 1), measured on CPU (docs/floatad.md)."""
FilterGrad = Literal["position_major", "sample_major", "per_sample"]
"""The order of a convolution's weight gradient, a sum over (sample, position) pairs:
positions outer and samples inner (``position_major``: JAX), samples outer
(``sample_major``), or one sum per sample then a sum over the samples (``per_sample``:
PyTorch, measured for batches of 1 and 2)."""
FLOAT_FORMATS = ("binary16", "bfloat16", "binary32", "binary64")


def _round_odd(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Round-to-odd of the exact ``s + err`` (``s = fl(s + err)`` nearest, ``err`` its error)."""
    bits = s.view(np.int64)
    even = (bits & 1) == 0
    step = np.nextafter(s, np.where(err > 0, np.inf, -np.inf))
    return np.where((err != 0) & even, step, s)


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = a * 134217729.0  # 2**27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def fma64(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Correctly rounded binary64 ``a * b + c`` (Boldo-Melquiond emulation, no overflow)."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    uh, ul = _two_prod(a, b)
    th, tl = _two_sum(c, ul)
    vh, vl = _two_sum(uh, th)
    z, ze = _two_sum(vl, tl)
    zo = _round_odd(z, ze)
    with np.errstate(invalid="ignore"):
        out = vh + zo
    return np.where(np.isfinite(out), out, a * b + c)


def odd64(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary64 ``x + y`` rounded to odd."""
    s, e = _two_sum(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return _round_odd(s, e)


@dataclass(frozen=True)
class Arithmetic:
    """A working precision with an accumulation order and fma choice (see the module doc)."""

    fmt: Format
    order: Order = "sequential"
    fma: bool = False
    conv_reduction: ConvReduction = "hwc"
    filter_grad: FilterGrad = "position_major"

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy (ml_dtypes) dtype of the format."""
        dt = self.fmt.numpy_dtype()
        assert dt is not None
        return dt

    def describe(self) -> str:
        """E.g. ``binary32, sequential, fma``."""
        return f"{self.fmt.name}, {self.order}" + (", fma" if self.fma else "")

    # -- conversions ----------------------------------------------------------
    def from_exact(self, values: np.ndarray) -> np.ndarray:
        """Round an object array of Fractions to the format (nearest even), as the dtype.

        Fast path: when every value is a binary64 number (checked exactly), one
        correct rounding of the binary64 array; else value by value.
        """
        arr = np.asarray(values, dtype=object)
        flat = [Fraction(v) for v in arr.ravel()]
        wide = np.array([float(q) for q in flat], dtype=np.float64)
        if np.isfinite(wide).all() and all(Fraction(w) == q for w, q in zip(wide.tolist(), flat)):
            return self.from_wide(wide).reshape(arr.shape)
        rounded = [self.round(q) for q in flat]
        return np.array(rounded, dtype=np.float64).astype(self.dtype).reshape(arr.shape)

    def round(self, q: Fraction) -> float:
        """The nearest-even member of the format (as a float); +-inf on overflow."""
        r = self.fmt.round_nearest_even(q)
        if r is None:
            return float("inf") if q > 0 else float("-inf")
        return float(r)

    def const(self, q: Any) -> Any:
        """An exact constant rounded to the format, as a dtype scalar."""
        return self.dtype.type(self.round(Fraction(q)))

    def from_wide(self, x: np.ndarray) -> np.ndarray:
        """Correct rounding of a binary64 array (bfloat16 through binary32 rounded to odd)."""
        x = np.asarray(x, dtype=np.float64)
        if self.fmt.name != "bfloat16":
            return x.astype(self.dtype)
        with np.errstate(over="ignore"):
            f = x.astype(np.float32)
        err = x - f.astype(np.float64)
        bits = f.view(np.int32)
        step = np.nextafter(f, np.where(err > 0, np.float32(np.inf), np.float32(-np.inf)))
        f = np.where((err != 0) & ((bits & 1) == 0) & np.isfinite(f), step, f)
        return f.astype(self.dtype)

    # -- elementwise fused multiply-add -----------------------------------------
    def fma_op(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``fl(a * b + c)`` with one rounding, broadcasting."""
        a64, b64, c64 = (np.asarray(v).astype(np.float64) for v in (a, b, c))
        if self.fmt.name == "binary64":
            return fma64(a64, b64, c64)
        return self.from_wide(odd64(a64 * b64, c64))

    # -- reductions ---------------------------------------------------------------
    def sum_terms(self, terms: np.ndarray, axis: int = -1) -> np.ndarray:
        """Sum of rounded terms along ``axis`` in the order (fma plays no role here)."""
        t = np.moveaxis(np.asarray(terms, dtype=self.dtype), axis, -1)
        n = t.shape[-1]
        if n == 0:
            return np.zeros(t.shape[:-1], dtype=self.dtype)
        if self.order == "blas":
            return np.sum(t, axis=-1, dtype=self.dtype)
        if self.order == "sequential":
            acc = t[..., 0].copy()
            for k in range(1, n):
                acc = acc + t[..., k]
            return acc
        while t.shape[-1] > 1:
            m = t.shape[-1]
            pairs = t[..., 0 : m - 1 : 2] + t[..., 1:m:2]
            t = np.concatenate([pairs, t[..., m - 1 :]], axis=-1) if m % 2 else pairs
        return t[..., 0]

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a @ b`` for 2-D a (N, K), b (K, M), every product and sum rounded, in the order."""
        a = np.asarray(a, dtype=self.dtype)
        b = np.asarray(b, dtype=self.dtype)
        if self.order == "blas":
            return np.matmul(a, b)
        K = a.shape[1]
        if K == 0:
            return np.zeros((a.shape[0], b.shape[1]), dtype=self.dtype)
        if self.order == "sequential":
            if self.fma:
                acc = a[:, 0:1] * b[0:1, :]
                for k in range(1, K):
                    acc = self.fma_op(a[:, k : k + 1], b[k : k + 1, :], acc)
                return acc
            acc = a[:, 0:1] * b[0:1, :]
            for k in range(1, K):
                acc = acc + a[:, k : k + 1] * b[k : k + 1, :]
            return acc
        return self.sum_terms(a[:, :, None] * b[None, :, :], axis=1)


def arithmetic(
    fmt: Format | str,
    order: str = "sequential",
    fma: bool = False,
    conv_reduction: str = "hwc",
    filter_grad: str = "position_major",
) -> Arithmetic:
    """Validate and build an :class:`Arithmetic` (InvalidArgument names the bad choice)."""
    f = parse_format(fmt) if isinstance(fmt, str) else fmt
    if f.name not in FLOAT_FORMATS:
        raise InvalidArgument(
            f"expected a float AD format ({', '.join(FLOAT_FORMATS)}), got numbers={f.name}"
        )
    if order not in ORDERS:
        raise InvalidArgument(f"expected an order ({', '.join(ORDERS)}), got order={order!r}")
    if fma and order != "sequential":
        raise InvalidArgument(
            f"expected order 'sequential' with fma (fusion is stated for a sequential "
            f"accumulation only), got order={order!r}"
        )
    if conv_reduction not in get_args(ConvReduction):
        raise InvalidArgument(
            f"expected a convolution reduction order (hwc, chw), got {conv_reduction!r}"
        )
    if filter_grad not in get_args(FilterGrad):
        raise InvalidArgument(
            f"expected a filter gradient order ({', '.join(get_args(FilterGrad))}), "
            f"got {filter_grad!r}"
        )
    return Arithmetic(f, order, bool(fma), conv_reduction, filter_grad)  # type: ignore[arg-type]


__all__ = [
    "Arithmetic",
    "ConvReduction",
    "FilterGrad",
    "FLOAT_FORMATS",
    "ORDERS",
    "Order",
    "arithmetic",
    "fma64",
    "odd64",
]
