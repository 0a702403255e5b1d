"""What ``formal search`` looks for and where: options, results, search formats and domains.

:class:`SearchOptions` and :class:`SearchResult` are the inputs and outputs of
:func:`formal.search.search.search`; :func:`search_ladder` lists the search
formats tried in turn and :func:`search_domain` the domain searched in one of
them.  Shared by the search itself and the SMT-LIB export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from formal.core.network import Network
from formal.core.numbers import Format, format_exact, parse_exact, parse_format
from formal.core.rebuild import bits_json, params_json
from formal.engine.verdict import Verdict
from formal.errors import InvalidArgument
from formal.smt.fp import Domain, choose_search_format, embeds

__all__ = [
    "FINDS",
    "SearchStatus",
    "SearchOptions",
    "SearchResult",
    "parse_range",
    "search_ladder",
    "search_domain",
    "project",
    "SMOOTH_OPS",
    "DEFAULT_WIDE_RANGE",
    "ESCALATE_MAX_FREE",
    "TINY_SHARE",
]

FINDS = ("kink", "ndf", "inc", "spurious-kink", "missed-kink")

SearchStatus = Literal["found", "exhausted", "unknown"]
"""The three-way answer of a search (``SearchResult.status``)."""
TINY_SHARE = 0.25  # share of the remaining time given to each tiny search format of the ladder
TINY_FORMATS = ("fp(2,1)", "fp(3,2)")
ESCALATE_MAX_FREE = (
    3  # after an exhausted search format, search the target itself up to this many parameters
)
DEFAULT_WIDE_RANGE = (
    Fraction(1, 1 << 16),
    Fraction(1 << 16),
)  # formats above 16 bits, rounded queries


STAGES: tuple[str, ...] = ("given", "theorem", "bias-free", "closed-form", "smt")
"""The search stages, in the order they run."""


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """What to search for and where.  ``lo``/``hi``: |w| range (zero always allowed)."""

    find: str
    numbers: str | Format | None = None
    proxy: str = "pytorch"
    fix: tuple[str, ...] = ()
    free: tuple[str, ...] | None = None
    lo: Fraction | None = None
    hi: Fraction | None = None
    subnormals: bool = False
    timeout: float = 60.0
    seed: int = 0
    search_format: str | None = None
    order: str = "sequential"
    stages: tuple[str, ...] = STAGES
    max_candidates: int = 100_000


@dataclass(frozen=True, slots=True)
class SearchResult:
    """found | exhausted | unknown, with the witness (network + verdict) when found."""

    status: SearchStatus
    reason: str
    find: str
    method: str
    numbers: str
    proxy: str
    space: str
    seconds: float
    candidates: int = 0
    search_format: str | None = None
    network: Network | None = None
    verdict: Verdict | None = None
    touch: dict[str, Any] | None = None
    stages: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def found(self) -> bool:
        """The search found a witness (status ``found``)."""
        return self.status == "found"

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``formal search --json``: status, reason, witness, verdict, stages."""
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "find": self.find,
            "method": self.method,
            "numbers": self.numbers,
            "search_format": self.search_format,
            "proxy": self.proxy,
            "space": self.space,
            "params": params_json(self.network) if self.network is not None else None,
            "bits": bits_json(self.network) if self.network is not None else None,
            "verdict": self.verdict.to_json() if self.verdict is not None else None,
            "candidates_checked": self.candidates,
            "seconds": round(self.seconds, 6),
            "stages": list(self.stages),
        }
        if self.touch is not None:
            out.update(self.touch)
        return out


def parse_range(text: str) -> tuple[Fraction, Fraction | None]:
    """``LO:HI`` (exact numbers; HI may be empty for no upper bound)."""
    lo_t, sep, hi_t = text.partition(":")
    if not sep:
        raise InvalidArgument(f"expected --range LO:HI (magnitudes, e.g. 1/256:256), got {text!r}")
    lo = parse_exact(lo_t) if lo_t.strip() else Fraction(0)
    hi = parse_exact(hi_t) if hi_t.strip() else None
    if lo < 0 or (hi is not None and hi < lo):
        raise InvalidArgument(f"expected 0 <= LO <= HI, got --range {text!r}")
    return lo, hi


SMOOTH_OPS = ("input", "param", "const", "linear", "add", "sub", "neg", "scale", "act", "reshape")
"""Ops whose graphs are smooth away from the activations' kinks (the theorem stage)."""


def search_ladder(target: Format, requested: str | None = None) -> list[Format]:
    """Search formats tried in turn: tiny ones first (cheap to bit-blast; their members
    embed in the target), then the default search format (or just ``requested``)."""
    main = choose_search_format(target, requested)
    if requested is not None:
        return [main]
    out = [
        f
        for f in (parse_format(t) for t in TINY_FORMATS)
        if f.bits < main.bits and embeds(f, target)
    ]
    return out + [main]


def project(dom: Domain, v: Fraction) -> Fraction:
    """The nearest allowed value of the domain (the base point of a searched parameter)."""
    if dom.allows(v):
        return v
    fmt = dom.fmt
    r = fmt.round_nearest_even(v)
    if r is None:
        r = fmt.max_value if v > 0 else -fmt.max_value
    lo, hi = dom.lo_member, dom.hi_member
    if lo is None or abs(r) < lo / 2:
        return Fraction(0)
    a = min(max(abs(r), lo), hi)
    out = a if r > 0 else -a
    return out if dom.allows(out) else Fraction(0)


def search_domain(s: Format, dom: Domain) -> Domain:
    """The search-format domain: the target's range; subnormals of s allowed when they are
    allowed members of the target domain.  Every allowed value must be allowed by ``dom``."""
    if s == dom.fmt:
        return dom
    if not embeds(s, dom.fmt):
        raise InvalidArgument(f"expected a search format embedded in {dom.fmt.name}, got {s.name}")
    sub = all(
        dom.allows(v)
        for v in s.enumerate()
        if v != 0
        and abs(v) < s.min_normal
        and dom.lo <= abs(v)
        and (dom.hi is None or abs(v) <= dom.hi)
    )
    out = Domain(s, dom.lo, dom.hi, sub)
    bad = [v for v in s.enumerate() if out.allows(v) and not dom.allows(v)]
    if bad:
        raise InvalidArgument(
            f"search format {s.name} has members outside {dom.describe()}, e.g. "
            f"{format_exact(bad[0])}"
        )
    return out
