"""The limits every reader enforces, and the reading helpers that enforce them.

Every reader (formal-net JSON, ``--params`` .npz, ``--input`` .npy, ONNX,
NNet, VNN-LIB) goes through these helpers, so a hostile file gives one
:class:`~formal.errors.InputFileError` naming the file, the field and what
was expected, in bounded time and memory:

- text files are read as UTF-8 (an error names the line of the first bad
  byte) and are at most :data:`MAX_TEXT_BYTES` long;
- one number has at most :data:`MAX_NUMBER_DIGITS` digits and an exponent
  of magnitude at most :data:`MAX_EXPONENT`; the length is checked before
  any conversion, and digits are converted by halves, so reading a number
  takes time quasi-linear in its length (Python's own ``int(str)`` is
  quadratic and refuses more than 4300 digits);
- JSON and VNN-LIB expressions nest at most :data:`MAX_NESTING` levels;
- a VNN-LIB file declares at most :data:`MAX_DECLARED_VARIABLES` inputs
  (and indices below that): nothing is allocated in proportion to a
  declared index before this check;
- a layer has at most :data:`MAX_UNITS` units (channels), a kernel at most
  :data:`MAX_KERNEL` entries per side, and a tensor at most
  :data:`MAX_TENSOR_ENTRIES` entries.

These numbers are stated in README.md ("Limits").
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from formal.core.numbers import parse_exact
from formal.errors import FormalError, InputFileError, InvalidArgument

MAX_NUMBER_DIGITS = 10_000
"""Digits (characters) of one number in any file or option."""
MAX_EXPONENT = 100_000
"""Largest |exponent| of a decimal (``e``) or hex-float (``p``) number."""
MAX_NESTING = 64
"""Deepest nesting of JSON arrays/objects or VNN-LIB parentheses."""
MAX_DECLARED_VARIABLES = 1_000_000
"""VNN-LIB: most input (``X_i``) or output (``Y_j``) variables, and bound on their indices."""
MAX_UNITS = 1_000_000
"""Units of a dense layer, channels of a convolution, inputs or outputs of a network."""
MAX_KERNEL = 1_024
"""Largest kernel side, stride, dilation or padding of a convolution or pooling layer."""
MAX_TENSOR_ENTRIES = 50_000_000
"""Entries of one parameter, input or constant tensor (its exact values are held in memory)."""
MAX_TEXT_BYTES = 512 * 1024 * 1024
"""Size of a text file (JSON, VNN-LIB, NNet)."""
MAX_TIMEOUT_SECONDS = 10_000_000.0
"""Largest ``--timeout`` (about 115 days); it must also be positive and finite."""

_CHUNK = 4_000  # decimal digits converted by int() at once (below Python's 4300-digit limit)
_DEC = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_RATIO = re.compile(r"([+-]?[0-9]+)\s*/\s*([+-]?[0-9]+)")
_DEC_EXP = re.compile(r"[eE]([+-]?[0-9]+)$")
_HEX_EXP = re.compile(r"[pP]([+-]?[0-9]+)$")


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a ``what`` file); every failure is an InputFileError."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputFileError(f"{p}: cannot read: expected {what}, got a directory")
        with open(p, "rb") as fh:
            data = fh.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise InputFileError(
            f"{p}: expected {what} of at most {MAX_TEXT_BYTES // (1024 * 1024)} MiB, got a "
            "larger file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFileError(
            f"{p}: line {line}: expected {what} (UTF-8 text), got byte 0x{data[exc.start]:02x} "
            "that is not UTF-8 (a binary file, or text in another encoding?)"
        ) from None


def big_int(digits: str) -> int:
    """The integer of a string of decimal digits of any length, in quasi-linear time."""
    n = len(digits)
    if n <= _CHUNK:
        return int(digits)
    k = n // 2
    return big_int(digits[:-k]) * 10**k + big_int(digits[-k:])


def check_number_text(text: str) -> None:
    """Refuse a numeral longer than :data:`MAX_NUMBER_DIGITS` or with a huge exponent."""
    if len(text) > MAX_NUMBER_DIGITS:
        raise InvalidArgument(
            f"expected a number of at most {MAX_NUMBER_DIGITS} digits, got one of {len(text)} "
            "characters"
        )
    hexa = text.lstrip("+- ").lower().startswith("0x")
    m = (_HEX_EXP if hexa else _DEC_EXP).search(text)
    if m is not None and (len(m[1].lstrip("+-")) > 7 or abs(int(m[1])) > MAX_EXPONENT):
        raise InvalidArgument(
            f"expected an exponent of magnitude at most {MAX_EXPONENT}, got {text[:40]}"
        )


def read_number(value: Any) -> Fraction:
    """One exact number from a file (int, Decimal or text), within the limits above."""
    if isinstance(value, str):
        s = value.strip()
        check_number_text(s)
        if len(s) > _CHUNK:
            return _long_number(s)
    elif isinstance(value, Decimal):
        s = str(value)
        check_number_text(s)
        if len(s) > _CHUNK:
            return _long_number(s)
    return parse_exact(value)


def _long_number(s: str) -> Fraction:
    """A long decimal or 'p/q' text (hex and short texts go to :func:`parse_exact`)."""
    if m := _RATIO.fullmatch(s):
        p, q = _signed(m[1]), _signed(m[2])
        if q == 0:
            raise InvalidArgument(f"expected a nonzero denominator, got {short(s)}")
        return Fraction(p, q)
    m = _DEC.fullmatch(s)
    if m and (m[2] or m[3]):
        whole, frac = m[2] or "", m[3] or ""
        mant = big_int((whole + frac).lstrip("0") or "0")
        exp = int(m[4] or 0) - len(frac)
        v = mant * Fraction(10) ** exp
        return -v if m[1] == "-" else v
    return parse_exact(s)


def _signed(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    return sign * big_int(text.lstrip("+-").lstrip("0") or "0")


def json_int(text: str) -> int:
    """``parse_int`` for :func:`json.loads`: any length up to the digit limit."""
    check_number_text(text)
    return _signed(text)


class JsonNumber(Decimal):
    """A JSON number with a fraction or exponent, exact; shown in messages as written."""

    def __repr__(self) -> str:
        """The number as the file wrote it (``3.0``, not ``Decimal('3.0')``)."""
        return str(self)


def json_float(text: str) -> JsonNumber:
    """``parse_float`` for :func:`json.loads`: exact, within the digit and exponent limits."""
    check_number_text(text)
    return JsonNumber(text)


def _no_constant(name: str) -> Any:
    raise InvalidArgument(f"expected a real number, got {name} (NaN and infinities are not)")


def load_json(path: str | Path, what: str = "a formal-net/1 JSON file") -> Any:
    """Parse a JSON file with exact numbers, within the limits; errors name file and place."""
    p = Path(path)
    text = read_text(p, what)
    try:
        doc = json.loads(
            text, parse_float=json_float, parse_int=json_int, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{p}: not valid JSON ({what} expected): {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}"
        ) from None
    except RecursionError:
        raise InputFileError(f"{p}: JSON nested deeper than {MAX_NESTING} levels") from None
    except FormalError as exc:
        raise InputFileError(f"{p}: {exc}") from None
    check_depth(doc, str(p))
    return doc


def check_depth(doc: Any, source: str) -> None:
    """Refuse a JSON document nested deeper than :data:`MAX_NESTING` (iterative walk)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > MAX_NESTING:
                raise InputFileError(f"{source}: JSON nested deeper than {MAX_NESTING} levels")
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))


def short(value: Any, width: int = 60) -> str:
    """A value as the user wrote it (strings quoted, numbers as written), cut to ``width``."""
    text = _render(value, width + 1)
    return text if len(text) <= width else text[: width - 3] + "..."


def _render(v: Any, budget: int) -> str:
    if isinstance(v, str):
        return repr(v[:budget])
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, int):
        return str(v) if v.bit_length() < 1000 else "(a number of more than 300 digits)"
    if isinstance(v, list):
        parts: list[str] = []
        for x in v:
            parts.append(_render(x, budget))
            if sum(len(p) + 2 for p in parts) > budget:
                break
        return "[" + ", ".join(parts) + "]"
    if isinstance(v, dict):
        items: list[str] = []
        for k, x in v.items():
            items.append(f"{_render(k, budget)}: {_render(x, budget)}")
            if sum(len(p) + 2 for p in items) > budget:
                break
        return "{" + ", ".join(items) + "}"
    return str(v)[:budget]


def unknown_keys(obj: dict[str, Any], allowed: tuple[str, ...], where: Any, field: str) -> None:
    """Unknown keys are errors, with a "did you mean" suggestion (``where.fail`` builds them)."""
    import difflib

    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            name = f"{field}.{key}" if field else str(key)
            raise where.fail(
                name, f"unknown key {short(key)} (expected one of {', '.join(allowed)}){hint}"
            )


__all__ = [
    "MAX_NUMBER_DIGITS",
    "MAX_EXPONENT",
    "MAX_NESTING",
    "MAX_DECLARED_VARIABLES",
    "MAX_UNITS",
    "MAX_KERNEL",
    "MAX_TENSOR_ENTRIES",
    "MAX_TEXT_BYTES",
    "MAX_TIMEOUT_SECONDS",
    "JsonNumber",
    "big_int",
    "check_depth",
    "check_number_text",
    "json_float",
    "json_int",
    "load_json",
    "read_number",
    "read_text",
    "short",
    "unknown_keys",
]
