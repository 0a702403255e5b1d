"""Machine-number formats as exact sets of rationals.

A format F (binary64, binary32, binary16, bfloat16, the OCP FP8 formats e4m3
and e5m2, or a custom IEEE-like ``fp(e,m)``) is identified with the set M of
finite reals it represents: NaN and the infinities are excluded and +0/-0 are
one real.  Every exact value in this API is a :class:`fractions.Fraction`;
membership, bit patterns, neighbours and rounding are computed with O(1)
big-integer operations on numerator and denominator, never with floats.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from formal.errors import InvalidArgument, NotInFormat

__all__ = [
    "Format",
    "parse_format",
    "parse_exact",
    "format_exact",
    "format_sci",
    "format_short",
    "hex_float",
    "BINARY64",
    "BINARY32",
    "BINARY16",
    "BFLOAT16",
    "E4M3",
    "E5M2",
    "FORMATS",
]

_ENUM_MAX_BITS = 16
_EXP_LIMIT = 1_000_000  # largest |exponent| accepted in parsed decimal / hex text


class _Consts(NamedTuple):
    bias: int
    emin: int
    emax: int
    max_value: Fraction
    overflow: Fraction  # |q| >= overflow rounds to "not representable"


def _floor_log2(q: Fraction) -> int:
    """Return floor(log2(q)) for a positive rational q, exactly."""
    p, d = q.numerator, q.denominator
    e = p.bit_length() - d.bit_length()
    if (p >= d << e) if e >= 0 else (p << -e >= d):
        return e
    return e - 1


def _pow2(e: int) -> Fraction:
    """Return 2**e as a Fraction (e may be negative)."""
    return Fraction(1 << e) if e >= 0 else Fraction(1, 1 << -e)


def _as_fraction(value: object, name: str = "q") -> Fraction:
    """Convert an exact scalar (int, Fraction, Decimal) to a Fraction; reject floats."""
    if isinstance(value, bool) or isinstance(value, float | np.floating):
        raise InvalidArgument(
            f"expected an exact value (int, Fraction or Decimal), got {name}={value!r}"
        )
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidArgument(f"expected a real number, got {name}={value!r}")
        _check_exp(int(value.as_tuple().exponent), repr(value))
        return Fraction(value)
    raise InvalidArgument(
        f"expected an exact value (int, Fraction or Decimal), got {name}={value!r}"
    )


@functools.cache
def _consts(fmt: Format) -> _Consts:
    bias = (1 << (fmt.ebits - 1)) - 1
    emin = 1 - bias
    emax = bias if fmt.ieee else bias + 1
    top = 2 - _pow2(-fmt.mbits) if fmt.ieee else 2 - _pow2(1 - fmt.mbits)
    max_value = top * _pow2(emax)
    return _Consts(bias, emin, emax, max_value, max_value + _pow2(emax - fmt.mbits - 1))


@dataclass(frozen=True, slots=True)
class Format:
    """A binary floating-point format, viewed as its finite set of reals M."""

    name: str
    ebits: int
    mbits: int
    ieee: bool = True

    def __post_init__(self) -> None:
        """Validate the field ranges."""
        if not (isinstance(self.ebits, int) and 2 <= self.ebits <= 15):
            raise InvalidArgument(f"expected 2 <= ebits <= 15, got ebits={self.ebits!r}")
        if not (isinstance(self.mbits, int) and 1 <= self.mbits <= 112):
            raise InvalidArgument(f"expected 1 <= mbits <= 112, got mbits={self.mbits!r}")

    def __str__(self) -> str:
        """Return the canonical name."""
        return self.name

    # ---- derived constants -------------------------------------------------
    @property
    def bits(self) -> int:
        """Total width: sign + exponent + fraction bits."""
        return 1 + self.ebits + self.mbits

    @property
    def bias(self) -> int:
        """Exponent bias 2**(ebits-1) - 1."""
        return _consts(self).bias

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return _consts(self).emin

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return _consts(self).emax

    @property
    def max_value(self) -> Fraction:
        """Largest finite member."""
        return _consts(self).max_value

    @property
    def min_subnormal(self) -> Fraction:
        """Smallest positive member, 2**(emin - mbits)."""
        return _pow2(self.emin - self.mbits)

    @property
    def min_normal(self) -> Fraction:
        """Smallest positive normal member, 2**emin."""
        return _pow2(self.emin)

    def size(self) -> int:
        """Number |M| of distinct finite reals in the format."""
        nonfinite = 2 << self.mbits if self.ieee else 2
        return (1 << self.bits) - nonfinite - 1

    # ---- exact membership and encoding ------------------------------------
    def _quantum_exp(self, q: Fraction) -> int:
        """Exponent of the grid spacing of F in the binade of nonzero q."""
        return max(_floor_log2(abs(q)), self.emin) - self.mbits

    def contains(self, q: object) -> bool:
        """Return True iff the exact value q is a member of M."""
        x = _as_fraction(q)
        if x == 0:
            return True
        d = x.denominator
        if d & (d - 1):
            return False
        n = abs(x.numerator)
        tz = (n & -n).bit_length() - 1
        t = tz - (d.bit_length() - 1)  # |x| = odd * 2**t
        top = t + (n >> tz).bit_length() - 1  # floor(log2|x|)
        return t >= max(top, self.emin) - self.mbits and abs(x) <= self.max_value

    def _not_in(self, x: Fraction) -> NotInFormat:
        lo, hi = self.neighbors(x)
        near = " and ".join(
            "none" if v is None else f"{hex_float(v)} = {format_exact(v)}" for v in (lo, hi)
        )
        return NotInFormat(
            f"expected a member of {self.name}, got {format_exact(x)} (nearest members: {near})"
        )

    def to_bits(self, q: object) -> int:
        """Return the bit pattern sign|exponent|fraction of member q (0 gives +0)."""
        x = _as_fraction(q)
        if not self.contains(x):
            raise self._not_in(x)
        if x == 0:
            return 0
        sign = 1 if x < 0 else 0
        a = abs(x)
        e = _floor_log2(a)
        if e < self.emin:
            field, frac = 0, a / self.min_subnormal
        else:
            field, frac = e + self.bias, a / _pow2(e - self.mbits) - (1 << self.mbits)
        assert frac.denominator == 1
        return (sign << (self.bits - 1)) | (field << self.mbits) | int(frac)

    def from_bits(self, b: int) -> Fraction | None:
        """Return the value of bit pattern b, or None for NaN/infinity patterns."""
        if isinstance(b, bool) or not isinstance(b, int | np.integer):
            raise InvalidArgument(f"expected an int bit pattern, got b={b!r}")
        b = int(b)
        if not 0 <= b < (1 << self.bits):
            raise InvalidArgument(
                f"expected a {self.bits}-bit pattern 0 <= b < 2**{self.bits}, got b={b:#x}"
            )
        m = self.mbits
        frac = b & ((1 << m) - 1)
        field = (b >> m) & ((1 << self.ebits) - 1)
        ones = (1 << self.ebits) - 1
        if field == ones and (self.ieee or frac == (1 << m) - 1):
            return None
        if field == 0:
            v = frac * self.min_subnormal
        else:
            v = ((1 << m) + frac) * _pow2(field - self.bias - m)
        return -v if b >> (self.bits - 1) else v

    def hex_bits(self, q: object) -> str:
        """Return the bit pattern of member q as zero-padded hex, e.g. '0x3f800000'."""
        return f"0x{self.to_bits(q):0{(self.bits + 3) // 4}x}"

    # ---- neighbours and rounding ------------------------------------------
    def neighbors(self, q: object) -> tuple[Fraction | None, Fraction | None]:
        """Return (largest member <= q, smallest member >= q); None where none exists."""
        x = _as_fraction(q)
        mx = self.max_value
        if x > mx:
            return mx, None
        if x < -mx:
            return None, -mx
        if x == 0:
            return x, x
        unit = _pow2(self._quantum_exp(x))
        k = x / unit
        return math.floor(k) * unit, math.ceil(k) * unit

    def round_nearest_even(self, q: object) -> Fraction | None:
        """Round q to nearest, ties to even, with gradual underflow; None on overflow."""
        x = _as_fraction(q)
        if abs(x) >= _consts(self).overflow:
            return None
        if x == 0:
            return x
        unit = _pow2(self._quantum_exp(x))
        return round(x / unit) * unit

    def ulp(self, q: object) -> Fraction:
        """Spacing of F at q: gap from |q| to the next larger-magnitude grid point."""
        x = _as_fraction(q)
        if abs(x) > self.max_value:
            raise InvalidArgument(
                f"expected |q| <= max_value of {self.name}, got q={format_exact(x)}"
            )
        if x == 0:
            return self.min_subnormal
        return _pow2(self._quantum_exp(x))

    # ---- enumeration -------------------------------------------------------
    def _check_small(self) -> None:
        if self.bits > _ENUM_MAX_BITS:
            raise InvalidArgument(
                f"expected a format of at most {_ENUM_MAX_BITS} bits to enumerate, "
                f"got format={self.name}"
            )

    def enumerate(self) -> list[Fraction]:
        """All members, sorted ascending, zero once (formats of <= 16 bits only)."""
        self._check_small()
        return list(_enumerate(self))

    def enumerate_scaled(self) -> tuple[npt.NDArray[Any], int]:
        """Return (sorted integers n, s) with members n * 2**s, s = emin - mbits.

        The array is int64 when every n fits, else (e.g. bfloat16, whose
        range spans ~2**261 grid steps) an object array of Python ints.
        """
        self._check_small()
        return _enumerate_scaled(self).copy(), self.emin - self.mbits

    # ---- numpy interop -----------------------------------------------------
    def numpy_dtype(self) -> np.dtype[Any] | None:
        """The numpy (or ml_dtypes) dtype storing this format, None for custom ones."""
        return _numpy_dtypes().get(self.name) if self.name in FORMATS else None

    def from_numpy(self, arr: npt.NDArray[Any]) -> list[Fraction]:
        """Exact values of an array of this format's dtype, flattened in C order."""
        dt = self.numpy_dtype()
        a = np.asarray(arr)
        if dt is None or a.dtype != dt:
            raise InvalidArgument(
                f"expected an array of dtype {dt} for {self.name}, got dtype={a.dtype}"
            )
        with np.errstate(invalid="ignore", over="ignore"):
            wide = a.astype(np.float64).ravel(order="C")  # exact widening
        bad = np.flatnonzero(~np.isfinite(wide))
        if bad.size:
            idx = tuple(int(i) for i in np.unravel_index(int(bad[0]), a.shape))
            raise InvalidArgument(
                f"expected finite values, got arr[{idx}]={wide[bad[0]]!r} ({bad.size} non-finite)"
            )
        return [Fraction(v) for v in wide.tolist()]

    def contains_float_array(self, arr: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Vectorized membership test for a float array (exactly widened to float64)."""
        a = np.asarray(arr)
        if a.dtype.kind != "f" and a.dtype not in _numpy_dtypes().values():
            raise InvalidArgument(f"expected a floating-point array, got dtype={a.dtype}")
        with np.errstate(invalid="ignore", over="ignore"):
            x = a.astype(np.float64)
        finite = np.isfinite(x)
        x = np.where(finite, x, 0.0)
        mant, exp = np.frexp(x)  # x = mant * 2**exp, 0.5 <= |mant| < 1
        mi = np.abs(np.ldexp(mant, 53)).astype(np.int64)  # exact 53-bit integer
        low = np.frexp((mi & -mi).astype(np.float64))[1] - 1  # trailing zeros of mi
        t = exp.astype(np.int64) - 53 + low  # exponent of the lowest set bit
        need = np.maximum(exp.astype(np.int64) - 1, self.emin) - self.mbits
        ok = (t >= need) & (np.abs(x) <= _float_max(self))
        return finite & ((x == 0) | ok)


@functools.cache
def _float_max(fmt: Format) -> float:
    """Largest float64 that is <= fmt.max_value (inf when every float64 is)."""
    if fmt.max_value >= BINARY64.max_value:
        return math.inf
    lo = BINARY64.neighbors(fmt.max_value)[0]
    assert lo is not None
    return float(lo)


def _positive_scaled(fmt: Format) -> list[int]:
    """Positive members as integer multiples of 2**(emin - mbits), ascending."""
    m, span = fmt.mbits, fmt.emax - fmt.emin
    cap = fmt.max_value / fmt.min_subnormal
    out = list(range(1, 2 << m))
    for shift in range(1, span + 1):
        out.extend(k << shift for k in range(1 << m, 2 << m))
    return [n for n in out if n <= cap]


@functools.cache
def _enumerate_scaled(fmt: Format) -> npt.NDArray[Any]:
    pos = _positive_scaled(fmt)
    vals = [-n for n in reversed(pos)] + [0] + pos
    if pos[-1] < (1 << 62):
        return np.array(vals, dtype=np.int64)
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out


@functools.cache
def _enumerate(fmt: Format) -> tuple[Fraction, ...]:
    unit = fmt.min_subnormal
    return tuple(n * unit for n in _enumerate_scaled(fmt).tolist())


@functools.cache
def _numpy_dtypes() -> dict[str, np.dtype[Any]]:
    import ml_dtypes

    return {
        "binary64": np.dtype(np.float64),
        "binary32": np.dtype(np.float32),
        "binary16": np.dtype(np.float16),
        "bfloat16": np.dtype(ml_dtypes.bfloat16),
        "e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
        "e5m2": np.dtype(ml_dtypes.float8_e5m2),
    }


BINARY64 = Format("binary64", 11, 52)
BINARY32 = Format("binary32", 8, 23)
BINARY16 = Format("binary16", 5, 10)
BFLOAT16 = Format("bfloat16", 8, 7)
E4M3 = Format("e4m3", 4, 3, ieee=False)
E5M2 = Format("e5m2", 5, 2)
FORMATS: dict[str, Format] = {
    f.name: f for f in (BINARY64, BINARY32, BINARY16, BFLOAT16, E4M3, E5M2)
}

_ALIASES: dict[str, Format] = {
    **FORMATS,
    "float64": BINARY64,
    "double": BINARY64,
    "float32": BINARY32,
    "single": BINARY32,
    "float16": BINARY16,
    "half": BINARY16,
    "fp8_e4m3": E4M3,
    "float8_e4m3fn": E4M3,
    "fp8_e5m2": E5M2,
    "float8_e5m2": E5M2,
}
_FP_RE = re.compile(r"fp\s*\(\s*([0-9]+)\s*,\s*([0-9]+)\s*\)")


def parse_format(text: str) -> Format:
    """Parse a format name or 'fp(e,m)'; IEEE-identical fp(e,m) give the named format."""
    key = text.strip().lower() if isinstance(text, str) else ""
    if key in _ALIASES:
        return _ALIASES[key]
    match = _FP_RE.fullmatch(key)
    if match:
        e, m = int(match[1]), int(match[2])
        if not (2 <= e <= 15 and 1 <= m <= 112):
            raise InvalidArgument(
                f"expected fp(e,m) with 2 <= e <= 15 and 1 <= m <= 112, got numbers={text!r}"
            )
        for f in FORMATS.values():
            if f.ieee and (f.ebits, f.mbits) == (e, m):
                return f
        return Format(f"fp({e},{m})", e, m)
    raise InvalidArgument(
        "expected a number format (binary64, binary32, binary16, bfloat16, e4m3, e5m2, "
        f"fp(e,m)), got numbers={text!r}"
    )


_RATIO_RE = re.compile(r"([+-]?[0-9]+)\s*/\s*([+-]?[0-9]+)")
_DEC_RE = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:[eE]([+-]?[0-9]+))?")
_HEX_RE = re.compile(r"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_NONREAL = {"nan", "snan", "qnan", "inf", "infinity"}


def _check_exp(e: int, text: str) -> int:
    if abs(e) > _EXP_LIMIT:
        raise InvalidArgument(f"expected an exponent of magnitude <= {_EXP_LIMIT}, got {text!r}")
    return e


def parse_exact(value: object) -> Fraction:
    """Read an exact rational from int, Fraction, Decimal or text ('p/q', decimal, hex float)."""
    if not isinstance(value, str):
        if isinstance(value, float):
            raise InvalidArgument(
                f"expected an exact number (int, Fraction, Decimal or string), got float {value!r}"
            )
        return _as_fraction(value, "value")
    s = value.strip()
    if s.lstrip("+-").lower() in _NONREAL:
        raise InvalidArgument(
            f"expected a real number, got {value!r} (NaN/inf are not real numbers)"
        )
    if m := _RATIO_RE.fullmatch(s):
        p, q = int(m[1]), int(m[2])
        if q == 0:
            raise InvalidArgument(f"expected a nonzero denominator, got {value!r}")
        return Fraction(p, q)
    if m := _DEC_RE.fullmatch(s):
        exp = _check_exp(int(m[2] or 0), value)
        return Fraction(Decimal(m[1])) * Fraction(10) ** exp
    if (m := _HEX_RE.fullmatch(s)) and (m[2] or m[3]):
        frac = m[3] or ""
        mant = int((m[2] or "") + frac or "0", 16)
        v = mant * _pow2(_check_exp(int(m[4] or 0), value) - 4 * len(frac))
        return -v if m[1] == "-" else v
    raise InvalidArgument(
        f"expected a number ('p/q', decimal, or hex float like '0x1.8p-3'), got {value!r}"
    )


_STR_BITS = 12_000  # below this many bits str() is fast and under Python's 4300-digit limit
_LOG10_2 = 0.30102999566398


def _int_text(n: int) -> str:
    """Decimal text of an integer of any size.

    ``str(int)`` refuses more than 4300 digits (``sys.set_int_max_str_digits``,
    a process-wide setting this module does not touch); beyond ``_STR_BITS``
    bits the number is split near half its digits and each half is rendered
    recursively, with the low half zero-padded.
    """
    if n < 0:
        return "-" + _int_text(-n)
    if n.bit_length() < _STR_BITS:
        return str(n)
    k = int(n.bit_length() * _LOG10_2) // 2  # split near half the digits
    hi, lo = divmod(n, 10**k)
    tail = _int_text(lo)
    return _int_text(hi) + "0" * (k - len(tail)) + tail


def format_exact(q: object) -> str:
    """Canonical text of an exact rational of any size: '3', '-1/2' (as ``str(Fraction)``).

    Integers and Fractions of any size are rendered in full decimal (no digit
    limit); floats are rejected like everywhere in this module.
    """
    x = _as_fraction(q)
    if x.denominator == 1:
        return _int_text(x.numerator)
    return f"{_int_text(x.numerator)}/{_int_text(x.denominator)}"


def format_sci(value: Fraction | int | float, digits: int = 4) -> str:
    """Scientific text of a rational of any size, e.g. '1.234e+1200' (approximate, for reading)."""
    q = Fraction(value)
    if q == 0:
        return "0"
    sign = "-" if q < 0 else ""
    q = abs(q)
    e = int((q.numerator.bit_length() - q.denominator.bit_length()) * _LOG10_2)
    m = q / Fraction(10) ** e
    while m >= 10:
        m, e = m / 10, e + 1
    while m < 1:
        m, e = m * 10, e - 1
    text = f"{float(m):.{digits - 1}f}"
    if float(text) >= 10:  # 9.9999 rounds up to 10.000
        text, e = f"{float(m) / 10:.{digits - 1}f}", e + 1
    return f"{sign}{text}e{e:+03d}"


def format_short(q: object) -> str:
    """Short exact text: '3/4' for small ones, '2^-126' for powers of two, else a hex float.

    Used where a bound is shown inline (e.g. the FP-domain descriptions of the
    SMT encodings); the value is always exact.
    """
    x = _as_fraction(q)
    if (
        x > 0
        and x.numerator & (x.numerator - 1) == 0
        and x.denominator & (x.denominator - 1) == 0
        and (x > 1024 or x < Fraction(1, 1024))
    ):
        return f"2^{x.numerator.bit_length() - x.denominator.bit_length()}"
    text = format_exact(x)
    if len(text) <= 12 or x.denominator & (x.denominator - 1):
        return text
    return hex_float(x)


def hex_float(q: object) -> str:
    """C99 hex-float text of a dyadic rational, e.g. Fraction(3, 16) -> '0x1.8p-3'."""
    x = _as_fraction(q)
    if x == 0:
        return "0x0p+0"
    d = x.denominator
    if d & (d - 1):
        raise InvalidArgument(f"expected a dyadic rational (power-of-two denominator), got q={x}")
    n = abs(x.numerator)
    tz = (n & -n).bit_length() - 1
    n >>= tz
    nb = n.bit_length() - 1  # fraction bits after the leading 1
    e = tz - (d.bit_length() - 1) + nb
    sign = "-" if x < 0 else ""
    if nb == 0:
        return f"{sign}0x1p{e:+d}"
    digits = (nb + 3) // 4
    frac = (n - (1 << nb)) << (4 * digits - nb)
    return f"{sign}0x1.{frac:0{digits}x}p{e:+d}"
