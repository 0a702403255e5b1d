"""VNN-LIB input boxes: the ``X_i`` bounds of a VNN-COMP specification, read exactly.

A VNN-LIB file is SMT-LIB: ``(declare-const X_0 Real)`` ... and ``(assert
...)`` forms.  The input region is read from assertions that mention only
input variables: atoms ``(<= X_i c)``, ``(>= X_i c)`` (``<``/``>`` give the
same closed box), ``(and ...)`` of atoms, and ``(or (and ...) ...)`` for a
union of boxes (each disjunct combined with the top-level bounds).  Output
constraints (on ``Y_j``) are the property, not the input: they are skipped.
Numerals are read exactly (``0.029999999329447746`` is that decimal, not a
float), including ``(- c)`` and scientific notation.

Examples
--------
>>> spec = parse("(declare-const X_0 Real)(assert (<= X_0 0.5))(assert (>= X_0 -0.25))")
>>> spec.point("center")
[Fraction(1, 8)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from formal.errors import InputFileError, InvalidArgument
from formal.io.limits import MAX_DECLARED_VARIABLES, MAX_NESTING, read_number, read_text

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")


@dataclass(frozen=True, slots=True)
class Box:
    """Closed box ``lo <= X <= hi`` (exact bounds, one per input)."""

    lo: tuple[Fraction, ...]
    hi: tuple[Fraction, ...]

    def point(self, which: str = "center") -> list[Fraction]:
        """The input point of the box: its ``center``, its ``lo`` corner or its ``hi`` corner."""
        if which == "center":
            return [(a + b) / 2 for a, b in zip(self.lo, self.hi)]
        if which == "lo":
            return list(self.lo)
        if which == "hi":
            return list(self.hi)
        raise InvalidArgument(f"expected center, lo or hi, got input={which!r}")


@dataclass(frozen=True, slots=True)
class Spec:
    """The input boxes of a VNN-LIB file (a union when the file has a disjunction)."""

    source: str
    n_inputs: int
    n_outputs: int
    boxes: tuple[Box, ...]

    def point(self, which: str = "center", box: int = 0) -> list[Fraction]:
        """The center or a corner of one box, exactly."""
        if not 0 <= box < len(self.boxes):
            raise InvalidArgument(
                f"{self.source}: expected a box index below {len(self.boxes)}, got box={box}"
            )
        return self.boxes[box].point(which)


def _tokens(text: str) -> list[str]:
    lines = [line.split(";", 1)[0] for line in text.splitlines()]
    return _TOKEN.findall("\n".join(lines))


def _parse_forms(tokens: list[str], source: str) -> list[Any]:
    forms: list[Any] = []
    stack: list[list[Any]] = []
    for tok in tokens:
        if tok == "(":
            if len(stack) >= MAX_NESTING:
                raise InputFileError(
                    f"{source}: expected expressions nested at most {MAX_NESTING} levels deep"
                )
            stack.append([])
        elif tok == ")":
            if not stack:
                raise InputFileError(f"{source}: unbalanced ')'")
            done = stack.pop()
            (stack[-1] if stack else forms).append(done)
        else:
            (stack[-1] if stack else forms).append(tok)
    if stack:
        raise InputFileError(f"{source}: unbalanced '(' (missing {len(stack)} closing parentheses)")
    return forms


def _number(expr: Any, source: str) -> Fraction:
    if isinstance(expr, list) and len(expr) == 2 and expr[0] == "-":
        return -_number(expr[1], source)
    if isinstance(expr, str):
        try:
            return read_number(expr)
        except InvalidArgument as exc:
            if "at most" in str(exc):  # a limit, not a malformed numeral
                raise InputFileError(f"{source}: {exc}") from None
    raise InputFileError(f"{source}: expected a numeral, got {_show(expr)[:80]}")


def _var_index(m: re.Match[str], source: str) -> int:
    """The index i of ``X_i`` / ``Y_i``, at most :data:`MAX_DECLARED_VARIABLES` - 1."""
    digits = m.group(2)
    if len(digits) > 7 or int(digits) >= MAX_DECLARED_VARIABLES:
        raise InputFileError(
            f"{source}: expected variable indices below {MAX_DECLARED_VARIABLES} (the limit on "
            f"declared variables), got {m.group(0)[:40]}"
        )
    return int(digits)


def _show(expr: Any) -> str:
    if isinstance(expr, list):
        return "(" + " ".join(_show(e) for e in expr) + ")"
    return str(expr)


def _mentions(expr: Any, letter: str) -> bool:
    if isinstance(expr, list):
        return any(_mentions(e, letter) for e in expr)
    m = _VAR.match(str(expr))
    return bool(m and m.group(1) == letter)


Bounds = dict[int, tuple[Fraction | None, Fraction | None]]


def _atom(expr: Any, bounds: Bounds, source: str) -> None:
    op, a, b = expr
    ma, mb = (
        _VAR.match(str(a)) if isinstance(a, str) else None,
        _VAR.match(str(b)) if isinstance(b, str) else None,
    )
    if ma and not mb:
        i, c, upper = _var_index(ma, source), _number(b, source), op in ("<=", "<")
    elif mb and not ma:
        i, c, upper = _var_index(mb, source), _number(a, source), op in (">=", ">")
    else:
        raise InputFileError(
            f"{source}: expected a bound of one input by a numeral, got {_show(expr)}"
        )
    lo, hi = bounds.get(i, (None, None))
    if upper:
        hi = c if hi is None else min(hi, c)
    else:
        lo = c if lo is None else max(lo, c)
    bounds[i] = (lo, hi)


def _conj(expr: Any, bounds: Bounds, source: str) -> None:
    if isinstance(expr, list) and expr and expr[0] == "and":
        for e in expr[1:]:
            _conj(e, bounds, source)
    elif isinstance(expr, list) and len(expr) == 3 and expr[0] in ("<=", ">=", "<", ">"):
        _atom(expr, bounds, source)
    else:
        raise InputFileError(
            f"{source}: expected input bounds (<=, >=, and), got {_show(expr)[:80]}"
        )


def parse(text: str, source: str = "<vnnlib>") -> Spec:
    """Parse VNN-LIB text into its input boxes."""
    forms = _parse_forms(_tokens(text), source)
    xs: set[int] = set()
    ys: set[int] = set()
    base: Bounds = {}
    disjuncts: list[Bounds] = []
    for form in forms:
        if not isinstance(form, list) or not form:
            raise InputFileError(f"{source}: expected a parenthesized command, got {_show(form)}")
        head = form[0]
        if head == "declare-const":
            m = _VAR.match(str(form[1])) if len(form) == 3 else None
            if not m:
                raise InputFileError(
                    f"{source}: expected (declare-const X_i Real) or Y_j, got {_show(form)}"
                )
            (xs if m.group(1) == "X" else ys).add(_var_index(m, source))
        elif head == "assert":
            if len(form) != 2:
                raise InputFileError(f"{source}: expected (assert EXPR), got {_show(form)[:80]}")
            expr = form[1]
            if expr == ["or"]:
                raise InputFileError(
                    f"{source}: expected (or ...) to have at least one disjunct, got (assert (or)) "
                    "(an empty disjunction is false: no input or output satisfies it)"
                )
            if _mentions(expr, "Y") or not _mentions(expr, "X"):
                continue  # the output property
            if isinstance(expr, list) and expr and expr[0] == "or":
                if disjuncts:
                    raise InputFileError(
                        f"{source}: expected at most one disjunction of input boxes"
                    )
                for d in expr[1:]:
                    box_bounds: Bounds = {}
                    _conj(d, box_bounds, source)
                    disjuncts.append(box_bounds)
            else:
                _conj(expr, base, source)
        # other commands (set-logic, check-sat, ...) carry no input bounds
    if not xs:
        raise InputFileError(f"{source}: expected input variables X_0, X_1, ..., found none")
    n = max(xs) + 1
    if len(xs) != n:  # xs holds distinct indices below n: all of 0..n-1 iff there are n
        missing = next(i for i, x in enumerate(sorted(xs)) if i != x)
        raise InputFileError(
            f"{source}: expected inputs X_0..X_{n - 1}, X_{missing} is not declared"
        )
    boxes = []
    for extra in disjuncts or [{}]:
        lo: list[Fraction] = []
        hi: list[Fraction] = []
        for i in range(n):
            a0, b0 = base.get(i, (None, None))
            a1, b1 = extra.get(i, (None, None))
            low = a0 if a1 is None else (a1 if a0 is None else max(a0, a1))
            high = b0 if b1 is None else (b1 if b0 is None else min(b0, b1))
            if low is None or high is None:
                side = "lower" if low is None else "upper"
                raise InputFileError(
                    f"{source}: expected a bounded input box, X_{i} has no {side} bound"
                )
            if low > high:
                raise InputFileError(
                    f"{source}: expected lo <= hi, got X_{i} in [{low}, {high}] (empty box)"
                )
            lo.append(low)
            hi.append(high)
        boxes.append(Box(tuple(lo), tuple(hi)))
    n_out = max(ys) + 1 if ys else 0
    return Spec(source, n, n_out, tuple(boxes))


def load(path: str | Path) -> Spec:
    """Read a .vnnlib file."""
    p = Path(path)
    return parse(read_text(p, "a VNN-LIB file"), str(p))


__all__ = ["Box", "Spec", "parse", "load"]
