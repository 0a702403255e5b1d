"""Tests for formal.numbers: exact machine-number formats."""

from __future__ import annotations

import bisect
from decimal import Decimal
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from formal.core.numbers import (
    BFLOAT16,
    BINARY16,
    BINARY32,
    BINARY64,
    E4M3,
    E5M2,
    FORMATS,
    Format,
    format_exact,
    hex_float,
    parse_exact,
    parse_format,
)
from formal.errors import InvalidArgument, NotInFormat

FP43 = parse_format("fp(4,3)")
FP52 = Format("fp(5,2)", 5, 2)  # built directly: parse_format maps fp(5,2) to E5M2
SMALL = [
    BINARY16,
    BFLOAT16,
    E4M3,
    E5M2,
    FP43,
    FP52,
    parse_format("fp(2,1)"),
    parse_format("fp(3,4)"),
    parse_format("fp(6,9)"),
]


# ---- sizes and constants -----------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "size"),
    [
        (BINARY64, 2**64 - 2**53 - 1),
        (BINARY32, 2**32 - 2**24 - 1),
        (BINARY16, 63487),
        (BFLOAT16, 65279),
        (E5M2, 247),
        (E4M3, 253),
        (FP43, 2**8 - 2**4 - 1),
        (FP52, 247),
        (parse_format("fp(15,112)"), 2**128 - 2**113 - 1),
    ],
)
def test_sizes(fmt: Format, size: int) -> None:
    assert fmt.size() == size
    if fmt.bits <= 16:
        assert len(fmt.enumerate()) == size


@pytest.mark.parametrize(
    ("fmt", "max_value"),
    [
        (BINARY64, (2 - Fraction(1, 2**52)) * 2**1023),
        (BINARY32, (2 - Fraction(1, 2**23)) * 2**127),
        (BINARY16, Fraction(65504)),
        (BFLOAT16, (2 - Fraction(1, 2**7)) * 2**127),
        (E4M3, Fraction(448)),
        (E5M2, Fraction(57344)),
    ],
)
def test_max_value(fmt: Format, max_value: Fraction) -> None:
    assert fmt.max_value == max_value
    assert fmt.contains(max_value) and fmt.contains(-max_value)
    assert fmt.neighbors(max_value + fmt.min_subnormal) == (max_value, None)
    dt = fmt.numpy_dtype()
    assert dt is not None
    info = ml_dtypes.finfo(dt) if fmt in (BFLOAT16, E4M3, E5M2) else np.finfo(dt)
    assert Fraction(float(info.max)) == max_value
    assert Fraction(float(info.smallest_subnormal)) == fmt.min_subnormal
    assert Fraction(float(info.smallest_normal)) == fmt.min_normal


def test_constants() -> None:
    assert (BINARY32.bits, BINARY32.bias, BINARY32.emin, BINARY32.emax) == (32, 127, -126, 127)
    assert (E4M3.bias, E4M3.emin, E4M3.emax) == (7, -6, 8)
    assert E4M3.min_subnormal == Fraction(1, 512)
    assert BINARY64.min_subnormal == Fraction(1, 2**1074)
    assert set(FORMATS) == {"binary64", "binary32", "binary16", "bfloat16", "e4m3", "e5m2"}


def test_e4m3_top_exponent() -> None:
    assert E4M3.contains(448) and not E4M3.contains(480) and E4M3.contains(-448)
    assert E4M3.from_bits(0x7F) is None and E4M3.from_bits(0xFF) is None
    assert E4M3.from_bits(0x7E) == 448 and E4M3.from_bits(0xFE) == -448
    assert E4M3.from_bits(0x78) == 256
    assert E4M3.to_bits(448) == 0x7E
    assert FP43.max_value == 240 and FP43.from_bits(0x78) is None


# ---- enumeration vs. bit patterns ------------------------------------------


@pytest.mark.parametrize("fmt", SMALL, ids=str)
def test_enumerate_matches_from_bits(fmt: Format) -> None:
    members = fmt.enumerate()
    decoded = {fmt.from_bits(b) for b in range(2**fmt.bits)} - {None}
    assert set(members) == decoded
    assert len(members) == fmt.size()
    assert all(a < b for a, b in zip(members, members[1:]))
    assert members[0] == -fmt.max_value and members[-1] == fmt.max_value
    ns, s = fmt.enumerate_scaled()
    assert s == fmt.emin - fmt.mbits
    assert [int(n) * Fraction(2) ** s for n in ns] == members
    for q in members[:: max(1, len(members) // 500)]:
        assert fmt.contains(q)
        assert fmt.from_bits(fmt.to_bits(q)) == q


def test_enumerate_scaled_dtype() -> None:
    assert BINARY16.enumerate_scaled()[0].dtype == np.int64
    assert E4M3.enumerate_scaled()[0].dtype == np.int64
    assert BFLOAT16.enumerate_scaled()[0].dtype == object  # 2**261 grid steps


def test_enumerate_refuses_wide_formats() -> None:
    with pytest.raises(InvalidArgument, match="at most 16 bits"):
        BINARY32.enumerate()
    with pytest.raises(InvalidArgument):
        BINARY32.enumerate_scaled()


@pytest.mark.parametrize("fmt", [BINARY16, BFLOAT16, E4M3, E5M2], ids=str)
def test_from_bits_matches_numpy(fmt: Format) -> None:
    udt = np.uint16 if fmt.bits == 16 else np.uint8
    with np.errstate(invalid="ignore"):
        dt = fmt.numpy_dtype()
        assert dt is not None
        raw = np.arange(2**fmt.bits, dtype=udt).view(dt).astype(np.float64)
    for b, v in enumerate(raw.tolist()):
        got = fmt.from_bits(b)
        if np.isfinite(v):
            assert got == Fraction(v)
        else:
            assert got is None


def test_e5m2_equals_fp52() -> None:
    assert parse_format("fp(5,2)") is E5M2
    assert E5M2.enumerate() == FP52.enumerate()
    assert [E5M2.from_bits(b) for b in range(256)] == [FP52.from_bits(b) for b in range(256)]


# ---- bits round trip, membership -------------------------------------------


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_binary32_roundtrip(x: float) -> None:
    q = Fraction(x)
    assert BINARY32.contains(q)
    b = BINARY32.to_bits(q)
    assert BINARY32.from_bits(b) == q
    expected = int(np.array([x], dtype=np.float32).view(np.uint32)[0])
    assert b == (0 if x == 0 else expected)
    assert BINARY32.hex_bits(q) == f"0x{b:08x}"
    assert not BINARY32.contains(q + Fraction(1, 2**200))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_binary64_roundtrip(x: float) -> None:
    q = Fraction(x)
    assert BINARY64.contains(q)
    b = BINARY64.to_bits(q)
    assert BINARY64.from_bits(b) == q
    if x != 0:
        assert b == int(np.array([x]).view(np.uint64)[0])
    assert not BINARY64.contains(q + Fraction(1, 2**1100))
    assert BINARY64.contains_float_array(np.array([x]))[0]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_contains_vs_float32_cast(x: float) -> None:
    with np.errstate(over="ignore"):
        y = float(np.float32(x))
    assert BINARY32.contains(Fraction(x)) == (y == x)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30))
@settings(max_examples=200)
def test_contains_float_array(xs: list[float]) -> None:
    arr = np.array(xs)
    for fmt in (BINARY32, BINARY16, BFLOAT16, E4M3, E5M2, FP43, parse_format("fp(15,60)")):
        got = fmt.contains_float_array(arr).tolist()
        assert got == [np.isfinite(x) and fmt.contains(Fraction(x)) for x in xs]


def test_contains_float_array_edges() -> None:
    xs = [
        1.0,
        1 + 2**-10,
        1 + 2**-11,
        65504.0,
        65520.0,
        2.0**-24,
        2.0**-25,
        3 * 2.0**-24,
        np.nan,
        np.inf,
        0.0,
        -0.0,
        -65504.0,
    ]
    got = BINARY16.contains_float_array(np.array(xs)).tolist()
    assert got == [
        True,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        True,
        True,
        True,
    ]
    assert E4M3.contains_float_array(np.array([448.0, 480.0, 2.0**-9])).tolist() == [
        True,
        False,
        True,
    ]
    with pytest.raises(InvalidArgument):
        BINARY16.contains_float_array(np.array([1, 2]))


def test_to_bits_not_in_format() -> None:
    with pytest.raises(NotInFormat, match=r"0x1\.99999ap-4 = 13421773/134217728"):
        BINARY32.to_bits(Fraction(1, 10))
    with pytest.raises(NotInFormat, match="none"):
        E4M3.to_bits(480)
    assert issubclass(NotInFormat, InvalidArgument)
    with pytest.raises(InvalidArgument):
        BINARY32.contains(0.5)  # floats are not exact inputs
    with pytest.raises(InvalidArgument):
        BINARY32.from_bits(2**32)
    assert BINARY32.to_bits(0) == 0 and BINARY32.from_bits(0x80000000) == 0
    assert BINARY32.hex_bits(1) == "0x3f800000" and E4M3.hex_bits(-448) == "0xfe"
    assert BINARY32.from_bits(0x7F800000) is None and BINARY32.from_bits(0x7FC00000) is None


# ---- rounding ----------------------------------------------------------------


def _ties(fmt: Format) -> st.SearchStrategy[float]:
    """Midpoints of adjacent members (and nudges around them), exact in float32."""

    def build(b: int, nudge: int, neg: bool) -> float:
        lo = fmt.from_bits(b)
        hi = fmt.from_bits(b + 1)
        if lo is None:
            return 0.0
        if hi is None:  # just past max: the overflow boundary
            hi = lo + fmt.ulp(lo)
        mid = (lo + hi) / 2 + nudge * (hi - lo) / 64
        return float(-mid if neg else mid)

    top = 2 ** (fmt.bits - 1) - 1
    return st.builds(build, st.integers(0, top), st.sampled_from([0, 0, -1, 1]), st.booleans())


def _check_round(fmt: Format, x: float, cast: float) -> None:
    got = fmt.round_nearest_even(Fraction(x))
    if np.isfinite(cast):
        assert got == Fraction(cast), (x, cast, got)
    else:
        assert got is None, (x, cast, got)


@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        _ties(BINARY32),
        st.floats(min_value=-(2.0**-120), max_value=2.0**-120),
    )
)
def test_round_binary32(x: float) -> None:
    with np.errstate(over="ignore"):
        _check_round(BINARY32, x, float(np.float64(x).astype(np.float32)))


@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        _ties(BINARY16),
        st.floats(min_value=-1e-4, max_value=1e-4),
        st.floats(-7e4, 7e4),
    )
)
def test_round_binary16(x: float) -> None:
    with np.errstate(over="ignore"):
        _check_round(BINARY16, x, float(np.float64(x).astype(np.float16)))


@pytest.mark.parametrize("fmt", [BFLOAT16, E4M3, E5M2], ids=str)
@settings(max_examples=300)
@given(data=st.data())
def test_round_ml_dtypes(fmt: Format, data: st.DataObject) -> None:
    # ml_dtypes casts float64 via float32, so use float32-exact inputs (no double rounding)
    x = data.draw(
        st.one_of(
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            _ties(fmt),
            st.floats(-600.0, 600.0, width=32),
            st.floats(-(2.0**-5), 2.0**-5, width=32),
        )
    )
    assert float(np.float32(x)) == x
    if fmt is E4M3 and abs(x) == 464:
        # tie at the overflow boundary: ml_dtypes keeps 448, the spec says not representable
        assert fmt.round_nearest_even(Fraction(x)) is None
        return
    cast = np.array([x]).astype(fmt.numpy_dtype()).astype(np.float64)[0]
    _check_round(fmt, x, float(cast))


@given(st.fractions())
def test_round_binary64_vs_python(q: Fraction) -> None:
    try:
        expected: Fraction | None = Fraction(float(q))
    except OverflowError:
        expected = None
    assert BINARY64.round_nearest_even(q) == expected


def test_round_examples() -> None:
    assert BINARY32.round_nearest_even(Fraction(1, 10)) == Fraction(13421773, 134217728)
    assert E4M3.round_nearest_even(Fraction(4639, 10)) == 448
    assert E4M3.round_nearest_even(464) is None and E4M3.round_nearest_even(-464) is None
    assert E5M2.round_nearest_even(61440) is None and E5M2.round_nearest_even(61439) == 57344
    assert BINARY16.round_nearest_even(Fraction(1, 2**25)) == 0  # tie to even zero
    assert BINARY16.round_nearest_even(Fraction(3, 2**26)) == Fraction(1, 2**24)
    assert BINARY16.round_nearest_even(1 + Fraction(1, 2**11)) == 1
    assert BINARY16.round_nearest_even(1 + Fraction(3, 2**11)) == 1 + Fraction(1, 2**9)


# ---- neighbours and ulp ----------------------------------------------------


@pytest.mark.parametrize("fmt", [E4M3, E5M2, FP43, BINARY16], ids=str)
@given(q=st.fractions(max_denominator=2**30).filter(lambda q: abs(q) < 2**18))
def test_neighbors_vs_enumeration(fmt: Format, q: Fraction) -> None:
    members = fmt.enumerate()
    i = bisect.bisect_right(members, q)
    lo = members[i - 1] if i > 0 else None
    j = bisect.bisect_left(members, q)
    hi = members[j] if j < len(members) else None
    assert fmt.neighbors(q) == (lo, hi)


@pytest.mark.parametrize("fmt", [BINARY32, BINARY64, BFLOAT16, E4M3], ids=str)
@given(x=st.floats(allow_nan=False, allow_infinity=False), off=st.fractions(-1, 1))
def test_neighbors_bracket(fmt: Format, x: float, off: Fraction) -> None:
    q = Fraction(x) * (1 + off / 2**30) + off * fmt.min_subnormal
    lo, hi = fmt.neighbors(q)
    if lo is None or hi is None:
        assert abs(q) > fmt.max_value
        assume(False)
    assert lo <= q <= hi and fmt.contains(lo) and fmt.contains(hi)
    assert fmt.round_nearest_even(q) in (lo, hi)
    if lo == hi:
        assert fmt.contains(q)
    else:
        assert not fmt.contains(q)
        gap = fmt.ulp(lo) if lo >= 0 else fmt.ulp(hi)
        assert hi - lo == gap  # adjacent: nothing strictly between


def test_ulp() -> None:
    assert BINARY32.ulp(1) == Fraction(1, 2**23)
    assert BINARY32.ulp(0) == BINARY32.min_subnormal
    assert BINARY32.ulp(-2) == Fraction(1, 2**22)
    assert E4M3.ulp(448) == 32
    assert BINARY16.ulp(Fraction(1, 2**20)) == Fraction(1, 2**24)


# ---- numpy interop -----------------------------------------------------------


def test_numpy_dtypes_and_from_numpy() -> None:
    assert BINARY64.numpy_dtype() == np.float64 and E4M3.numpy_dtype() == ml_dtypes.float8_e4m3fn
    assert FP43.numpy_dtype() is None
    arr = np.array([[0.1, -2.5], [448.0, -0.0]]).astype(ml_dtypes.float8_e4m3fn)
    assert E4M3.from_numpy(arr) == [Fraction(13, 128), Fraction(-5, 2), Fraction(448), 0]
    assert BINARY32.from_numpy(np.array([0.1], dtype=np.float32)) == [Fraction(13421773, 134217728)]
    with pytest.raises(InvalidArgument, match="dtype"):
        BINARY32.from_numpy(np.array([1.0]))
    with pytest.raises(InvalidArgument, match=r"arr\[\(1, 0\)\]"):
        BINARY16.from_numpy(np.array([[1, 2], [np.inf, 3]], dtype=np.float16))


# ---- parsing and printing ------------------------------------------------------


def test_parse_format() -> None:
    for names, fmt in [
        (("binary64", "float64", "double"), BINARY64),
        (("binary32", "float32", "single"), BINARY32),
        (("binary16", "Float16", "half"), BINARY16),
        (("bfloat16",), BFLOAT16),
        (("e4m3", "fp8_e4m3", "float8_e4m3fn"), E4M3),
        (("e5m2", "fp8_e5m2", "float8_e5m2"), E5M2),
    ]:
        for n in names:
            assert parse_format(n) is fmt
    assert parse_format(" fp( 4 , 3 ) ") == Format("fp(4,3)", 4, 3)
    assert parse_format("fp(8,23)") is BINARY32
    with pytest.raises(InvalidArgument, match=r"got numbers='xyz'"):
        parse_format("xyz")
    for bad in ("fp(1,3)", "fp(16,3)", "fp(4,0)", "fp(4,113)"):
        with pytest.raises(InvalidArgument):
            parse_format(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x1.99999ap-4", Fraction(13421773, 134217728)),
        ("0x1.8p-3", Fraction(3, 16)),
        ("-0x1p+0", Fraction(-1)),
        ("0X1P0", Fraction(1)),
        ("0x10", Fraction(16)),
        ("0x.8", Fraction(1, 2)),
        ("1/3", Fraction(1, 3)),
        ("-4/6", Fraction(-2, 3)),
        ("-0.5", Fraction(-1, 2)),
        ("1e-3", Fraction(1, 1000)),
        ("1.25E+2", Fraction(125)),
        (".5", Fraction(1, 2)),
        (" 7 ", Fraction(7)),
        (Decimal("0.1"), Fraction(1, 10)),
        (3, Fraction(3)),
        (Fraction(-7, 9), Fraction(-7, 9)),
    ],
)
def test_parse_exact(text: object, value: Fraction) -> None:
    got = parse_exact(text)
    assert got == value and isinstance(got, Fraction)


@pytest.mark.parametrize(
    "text", ["nan", "NaN", "-inf", "Infinity", "+INF", Decimal("NaN"), Decimal("-Infinity")]
)
def test_parse_exact_rejects_nonreal(text: object) -> None:
    with pytest.raises(InvalidArgument, match="NaN/inf|real number"):
        parse_exact(text)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1/0", "0x", "1e", "0x1.8q3", "1..2", "0.1f", "١٢", 0.5, None, [1], "1e99999999"],
)
def test_parse_exact_rejects_garbage(text: object) -> None:
    with pytest.raises(InvalidArgument):
        parse_exact(text)


def test_parse_exact_garbage_message() -> None:
    with pytest.raises(InvalidArgument, match=r"expected a number \('p/q', decimal, or hex"):
        parse_exact("abc")


def test_format_and_hex_float() -> None:
    assert format_exact(Fraction(3)) == "3" and format_exact(Fraction(-1, 2)) == "-1/2"
    assert hex_float(Fraction(3, 16)) == "0x1.8p-3"
    assert hex_float(0) == "0x0p+0" and hex_float(-1) == "-0x1p+0"
    assert hex_float(Fraction(13421773, 134217728)) == "0x1.99999ap-4"
    assert hex_float(Fraction(1, 2**1074)) == "0x1p-1074"
    with pytest.raises(InvalidArgument, match="dyadic"):
        hex_float(Fraction(1, 3))


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != 0))
def test_hex_float_roundtrip(x: float) -> None:
    q = Fraction(x)
    assert parse_exact(hex_float(q)) == q
    assert float.fromhex(hex_float(q)) == x



def _digits_value(text: str) -> int:
    """The integer of a long decimal text, read in chunks under Python's digit limit."""
    value = 0
    for k in range(0, len(text), 4000):
        chunk = text[k : k + 4000]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def test_format_exact_any_size() -> None:
    """Past Python's 4300-digit int-to-str limit: full decimal text, read back exactly."""
    n = 2**20000
    text = format_exact(n)
    assert len(text) == 6021 and text.startswith("3980276840337966") and text.endswith("9376")
    assert _digits_value(text) == n
    assert format_exact(-n) == "-" + text
    q = Fraction(3**30001 + 7, 2**40000)
    num, den = format_exact(q).split("/")
    assert len(num) > 4300 and len(den) > 4300
    assert _digits_value(num) == q.numerator and _digits_value(den) == q.denominator
    assert format_exact(-q) == f"-{num}/{den}"
    for small in (Fraction(0), Fraction(-7, 3), Fraction(10**300, 3), Fraction(2**11999)):
        assert format_exact(small) == str(small)
