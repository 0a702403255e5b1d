"""The state of one ``formal search`` run: the searched space, the clock, the stage log.

:class:`SearchState` resolves the options against the network (target format,
fixed and free parameters, the domain) and builds the results; the stages live
in :mod:`formal.search.cegis` (SMT) and :mod:`formal.search.search` (the
driver, the given point, theorems, closed form).
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.network import Network
from formal.core.numbers import Format, format_exact, hex_float, parse_format
from formal.core.rebuild import group_values, resolve_names, with_groups
from formal.engine.verdict import Verdict, check
from formal.errors import InvalidArgument, NotInFormat
from formal.search.options import (
    DEFAULT_WIDE_RANGE,
    FINDS,
    SearchOptions,
    SearchResult,
    SearchStatus,
    project,
    search_domain,
    search_ladder,
)
from formal.smt.fp import Domain

__all__ = ["SearchState"]


class _Clock:
    """Wall-clock time since the start of the search and left before its deadline."""

    def __init__(self, timeout: float) -> None:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + timeout

    def left(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the search started."""
        return time.perf_counter() - self.t0


class SearchState:
    """One search's network, options, clock and space; the helpers every stage uses."""

    def __init__(self, net: Network, opt: SearchOptions) -> None:
        if opt.find not in FINDS:
            raise InvalidArgument(f"expected --find one of {', '.join(FINDS)}, got {opt.find!r}")
        if opt.timeout <= 0:
            raise InvalidArgument(f"expected a positive --timeout, got {opt.timeout}")
        self.opt = opt
        self.clock = _Clock(opt.timeout)
        self.target = (
            opt.numbers
            if isinstance(opt.numbers, Format)
            else parse_format(opt.numbers)
            if opt.numbers
            else net.numbers
        )
        self.preset: Preset = parse_preset(opt.proxy)
        self.net = net
        par = net.parameterization()
        fixmap = resolve_names(net, list(opt.fix))
        mask = np.ones(par.size, dtype=bool)
        if fixmap:
            mask[np.fromiter(fixmap, dtype=np.int64)] = False
        if opt.free is not None:
            keep = np.zeros(par.size, dtype=bool)
            chosen = resolve_names(net, list(opt.free))
            if chosen:
                keep[np.fromiter(chosen, dtype=np.int64)] = True
            mask &= keep
        free = [int(g) for g in np.flatnonzero(mask)]
        self.free = free
        range_given = opt.lo is not None or opt.hi is not None
        lo = opt.lo if opt.lo is not None else Fraction(0)
        self.range_given = range_given
        self.dom = Domain(self.target, lo, opt.hi, opt.subnormals)
        if opt.search_format is not None:  # a bad --search-format is an error, whatever answers
            for fmt in search_ladder(self.target, opt.search_format):
                search_domain(fmt, self.dom)
        changes = {g: v for g, v in fixmap.items() if v is not None}
        for g, v in changes.items():
            if not self.target.contains(v):
                lo_n, hi_n = self.target.neighbors(v)
                near = " and ".join(
                    "none" if x is None else f"{hex_float(x)} = {format_exact(x)}"
                    for x in (lo_n, hi_n)
                )
                raise NotInFormat(
                    f"expected a member of {self.target.name} for the fixed parameter "
                    f"{par.label(g)}, got {format_exact(v)} (nearest members: {near})"
                )
        for g, v in group_values(net, free).items():
            p = project(self.dom, v)
            if p != v:
                changes[g] = p
        self.base_values: dict[int, Fraction] = {}  # the base network's tensors hold every value
        self.base = with_groups(net, changes, numbers=self.target)
        self.stages: list[dict[str, Any]] = []
        self.checked = 0
        self.bar: Any = None  # the progress bar of SearchRun.run (None outside it)

    # -- result helpers -------------------------------------------------------------
    def space(self, dom: Domain | None = None) -> str:
        """The searched space in words: free parameters (six named), domain, fixed count."""
        d = dom or self.dom
        par = self.net.parameterization()
        names = ", ".join(par.label(g) for g in self.free[:6]) + (
            ", ..." if len(self.free) > 6 else ""
        )
        fixed = self.net.parameterization().size - len(self.free)
        return f"{len(self.free)} searched parameter(s) ({names}) in {d.describe()}; {fixed} fixed"

    def result(
        self,
        status: SearchStatus,
        reason: str,
        method: str,
        *,
        net: Network | None = None,
        verdict: Verdict | None = None,
        touch: dict[str, Any] | None = None,
        search_format: str | None = None,
        space: str | None = None,
    ) -> SearchResult:
        """A :class:`SearchResult` of this run with its clock, check count and stage log."""
        return SearchResult(
            status,
            reason,
            self.opt.find,
            method,
            self.target.name,
            self.preset.name,
            space or self.space(),
            self.clock.elapsed(),
            self.checked,
            search_format,
            net,
            verdict,
            touch,
            tuple(self.stages),
        )

    def stage(self, name: str, status: str, t0: float, detail: str = "") -> None:
        """Log that stage ``name`` ended with ``status`` after running since ``t0``."""
        self.stages.append(
            {
                "stage": name,
                "status": status,
                "seconds": round(time.perf_counter() - t0, 6),
                "detail": detail,
            }
        )

    def verify(self, net2: Network) -> tuple[bool, Verdict]:
        """The exact verdict says net2 is a witness of the sought property."""
        self.checked += 1
        v = self.exact(net2)
        find = self.opt.find
        if find == "kink":
            return v.kink_neurons > 0, v
        if find == "ndf":
            return v.in_ndf is True, v
        return v.in_inc is True, v

    def exact(self, net2: Network) -> Verdict:
        """The exact verdict on net2 within the time left (at least one second)."""
        return check(net2, self.preset, timeout=max(self.clock.left(), 1.0))

    def rounded_domain(self) -> tuple[Domain, bool]:
        """The domain of the rounded (float touch) query and whether it is the whole space.

        Without a given range, formats wider than 16 bits are first searched over
        ``DEFAULT_WIDE_RANGE``; the flag is then False.
        """
        if not self.range_given and self.target.bits > 16:
            lo, hi = DEFAULT_WIDE_RANGE
            return Domain(self.target, lo, hi, self.opt.subnormals), False
        return self.dom, True
