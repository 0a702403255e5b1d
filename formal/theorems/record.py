"""What a theorem check records: lines of evidence, the recorder, and the result.

:class:`Recorder` collects :class:`Evidence` (``expect`` records a failure when
its condition is false) and :class:`CheckResult` is one check's outcome.
:func:`S` is the exact text of a number in evidence lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from formal.core.numbers import format_exact, format_sci

BUDGETS = ("quick", "full")

CheckStatus = Literal["pass", "fail", "cited"]
"""The outcome of one theorem check (``CheckResult.status``; ``formal reproduce``): ``pass``
(proved in proofs/ and the evidence holds), ``fail`` (some evidence failed), ``cited`` (the
evidence holds but the statement rests on a published proof, not on proofs/)."""


def S(q: Any) -> str:
    """Exact text; very long rationals are shown in scientific notation."""
    if q is None:
        return "None"
    q = Fraction(q)
    if q.numerator.bit_length() + q.denominator.bit_length() > 400:
        return "~" + format_sci(q)
    return format_exact(q)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One line of evidence with its numbers (exact values as strings)."""

    text: str
    ok: bool = True
    data: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this line: text, ok, and its numbers."""
        return {"text": self.text, "ok": self.ok, **dict(self.data)}


class Recorder:
    """Collects evidence; ``expect`` records a failure when its condition is false."""

    def __init__(self) -> None:
        self.items: list[Evidence] = []
        self.cache: dict[str, Any] = {}

    def note(self, text: str, **data: Any) -> None:
        """Record a passing line of evidence (no condition)."""
        self.items.append(Evidence(text, True, tuple(data.items())))

    def expect(self, ok: bool, text: str, **data: Any) -> bool:
        """Record a line that passes when ``ok``, else a failure; returns ``ok``."""
        self.items.append(
            Evidence(text if ok else "FAILED: " + text, bool(ok), tuple(data.items()))
        )
        return bool(ok)

    def quiet(self, ok: bool, text: str) -> bool:
        """Record only a failure (for per-point checks inside loops)."""
        if not ok:
            self.expect(False, text)
        return bool(ok)

    @property
    def failures(self) -> list[str]:
        """The texts of the failed lines so far."""
        return [e.text for e in self.items if not e.ok]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one theorem check."""

    name: str
    title: str
    status: CheckStatus
    hypotheses: str
    statement: str
    evidence: tuple[Evidence, ...]
    seconds: float
    proof: str
    test: str

    @property
    def passed(self) -> bool:
        """The check passed (status ``pass``)."""
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        """The check failed (status ``fail``); a ``cited`` result has not failed."""
        return self.status == "fail"

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the check: status, statement, evidence lines, seconds, proof, test."""
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "hypotheses": self.hypotheses,
            "statement": self.statement,
            "evidence": [e.to_json() for e in self.evidence],
            "seconds": round(self.seconds, 3),
            "proof": self.proof,
            "test": self.test,
        }


Gather = Callable[[Recorder, str], None]
"""A theorem's evidence function: records into the Recorder for a budget."""

__all__ = ["BUDGETS", "CheckStatus", "Evidence", "Recorder", "CheckResult", "Gather", "S"]
