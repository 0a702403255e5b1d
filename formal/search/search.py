"""Witness search: machine-representable parameters with a kink, ndf, inc, or a float kink touch.

``search(net, SearchOptions(find=...))`` returns a :class:`SearchResult` with
a three-way status: ``found`` (a witness, re-verified by the exact engine and,
for float touches, by two rounding references), ``exhausted`` (the whole
requested space was covered; the reason says how), or ``unknown`` (with the
reason: a time-out, a solver's ``unknown``, or a space only partly covered).
An ``unknown`` is never turned into a boolean.

Stages, cheapest first (each stops the search when it proves or finds):

1. the given point itself (already a witness?);
2. theorems: no kinked unit depends on the parameters; T1 (hypothesis H:
   inc is empty, whatever the proxies);
3. closed form (:mod:`formal.smt.closed_form`): the one value of a bias
   (or own-row weight) putting a unit on a kink, tested for membership;
   for float touches the last operand of the stated summation order
   (:mod:`formal.smt.rounded`);
4. SMT: for kink/ndf/inc, bit-precise exact encoding in a small *search
   format* whose members embed in the target (e4m3 for binary32), proposing
   points that satisfy a proven necessary condition, verifying each with
   :func:`formal.verdict.check`, blocking it and repeating (CEGIS); for float
   touches, ``fp.mul``/``fp.add`` with RNE in the target format against the
   exact bit-vector encoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from formal.core.activations import Preset, parse_preset
from formal.core.network import Network, bias_structure
from formal.core.numbers import Format, format_exact, hex_float, parse_format
from formal.core.rebuild import bits_json, group_values, params_json, resolve_names, with_groups
from formal.engine.verdict import Verdict, check
from formal.errors import InvalidArgument, NotInFormat, UnsupportedOp
from formal.smt import closed_form
from formal.smt.fp import Domain, choose_search_format, embeds
from formal.smt.queries import ExactQuery, RoundedQuery, touch_values

__all__ = ["FINDS", "SearchOptions", "SearchResult", "search", "parse_range"]

FINDS = ("kink", "ndf", "inc", "spurious-kink", "missed-kink")
TINY_SHARE = 0.25  # share of the remaining time given to each tiny search format of the ladder
TINY_FORMATS = ("fp(2,1)", "fp(3,2)")
ESCALATE_MAX_FREE = (
    3  # after an exhausted search format, search the target itself up to this many parameters
)
DEFAULT_WIDE_RANGE = (
    Fraction(1, 1 << 16),
    Fraction(1 << 16),
)  # formats above 16 bits, rounded queries


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
    stages: tuple[str, ...] = ("given", "theorem", "closed-form", "smt")
    max_candidates: int = 100_000


@dataclass(frozen=True, slots=True)
class SearchResult:
    """found | exhausted | unknown, with the witness (network + verdict) when found."""

    status: str
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
        return self.status == "found"

    def to_json(self) -> dict[str, Any]:
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
    from formal.core.numbers import parse_exact

    lo_t, sep, hi_t = text.partition(":")
    if not sep:
        raise InvalidArgument(f"expected --range LO:HI (magnitudes, e.g. 1/256:256), got {text!r}")
    lo = parse_exact(lo_t) if lo_t.strip() else Fraction(0)
    hi = parse_exact(hi_t) if hi_t.strip() else None
    if lo < 0 or (hi is not None and hi < lo):
        raise InvalidArgument(f"expected 0 <= LO <= HI, got --range {text!r}")
    return lo, hi


class _Clock:
    def __init__(self, timeout: float) -> None:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + timeout

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


class _Search:
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
        changes = {g: v for g, v in fixmap.items() if v is not None}
        for g, v in changes.items():
            if not self.target.contains(v):
                lo_n, hi_n = self.target.neighbors(v)
                near = " and ".join(
                    "none" if x is None else f"{hex_float(x)} = {format_exact(x)}"
                    for x in (lo_n, hi_n)
                )
                raise NotInFormat(
                    f"expected a member of {self.target.name} for the fixed parameter {par.label(g)}, got {format_exact(v)} (nearest members: {near})"
                )
        for g, v in group_values(net, free).items():
            p = _project(self.dom, v)
            if p != v:
                changes[g] = p
        self.base_values: dict[int, Fraction] = {}  # the base network's tensors hold every value
        self.base = with_groups(net, changes, numbers=self.target)
        self.stages: list[dict[str, Any]] = []
        self.checked = 0

    # -- result helpers -------------------------------------------------------------
    def space(self, dom: Domain | None = None) -> str:
        d = dom or self.dom
        par = self.net.parameterization()
        names = ", ".join(par.label(g) for g in self.free[:6]) + (
            ", ..." if len(self.free) > 6 else ""
        )
        fixed = self.net.parameterization().size - len(self.free)
        return f"{len(self.free)} searched parameter(s) ({names}) in {d.describe()}; {fixed} fixed"

    def result(
        self,
        status: str,
        reason: str,
        method: str,
        *,
        net: Network | None = None,
        verdict: Verdict | None = None,
        touch: dict[str, Any] | None = None,
        search_format: str | None = None,
        space: str | None = None,
    ) -> SearchResult:
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
        v = check(net2, self.preset, timeout=max(self.clock.left(), 1.0))
        find = self.opt.find
        if find == "kink":
            return v.kink_neurons > 0, v
        if find == "ndf":
            return v.in_ndf is True, v
        return v.in_inc is True, v

    # -- driver -----------------------------------------------------------------------
    def run(self) -> SearchResult:
        rounded = self.opt.find in ("spurious-kink", "missed-kink")
        steps = [
            ("given", self.given),
            ("theorem", self.theorems),
            ("closed-form", self.closed),
            ("smt", self.smt),
        ]
        last: SearchResult | None = None
        for name, fn in steps:
            if name not in self.opt.stages or (rounded and name == "theorem"):
                continue
            if self.clock.left() <= 0:
                return self.result(
                    "unknown",
                    f"time-out ({self.opt.timeout:g} s) before the {name} stage",
                    "timeout",
                )
            t0 = time.perf_counter()
            try:
                res = fn()
            except UnsupportedOp as exc:
                self.stage(name, "unsupported", t0, str(exc))
                last = self.result("unknown", f"{name} stage: {exc}", name)
                continue
            if res is None:
                continue
            if res.status in ("found", "exhausted"):
                return res
            last = res
        if last is not None:
            return last
        return self.result("unknown", "no stage could decide the question", "none")

    def given(self) -> SearchResult | None:
        t0 = time.perf_counter()
        if self.opt.find in ("spurious-kink", "missed-kink"):
            hit = _touch_at(self.base, self.target, self.preset, self.opt.order, self.opt.find)
            self.checked += 1
            if hit is not None:
                self.stage("given", "found", t0)
                v = check(self.base, self.preset, timeout=max(self.clock.left(), 1.0))
                return self.result(
                    "found",
                    "the given parameters are already a witness (exact engine and both rounding references agree)",
                    "given-point",
                    net=self.base,
                    verdict=v,
                    touch=hit,
                )
            self.stage("given", "no", t0)
            return None
        ok, v = self.verify(self.base)
        self.stage("given", "found" if ok else "no", t0)
        if ok:
            return self.result(
                "found",
                f"the given parameters are already a witness ({v.method})",
                "given-point",
                net=self.base,
                verdict=v,
            )
        return None

    def theorems(self) -> SearchResult | None:
        t0 = time.perf_counter()
        net = self.base
        if not any(n.op == "act" and n.attr("activation").kinks for n in net.nodes) and all(
            n.op in _SMOOTH_OK for n in net.nodes
        ):
            self.stage("theorem", "exhausted", t0)
            return self.result(
                "exhausted",
                "no kinked activation in the network: f is analytic everywhere, so there is no kink, ndf or inc point at all",
                "theorem-no-kinks",
            )
        if self.opt.find == "inc":
            h = bias_structure(net)
            if h.holds:
                self.stage("theorem", "exhausted", t0, h.reason)
                return self.result(
                    "exhausted",
                    f"T1: hypothesis H holds ({h.reason}), so inc(f) is empty on all of R^W, whatever the proxies",
                    "theorem-T1",
                )
        self.stage("theorem", "n/a", t0)
        return None

    def closed(self) -> SearchResult | None:
        t0 = time.perf_counter()
        find = self.opt.find
        if find == "missed-kink":
            return self._closed_missed(t0)
        if find == "spurious-kink":
            from formal.smt.queries import rounded_closed_form  # noqa: PLC0415

            for net2, touch in rounded_closed_form(
                self.base, self.target, self.dom, self.free, self.preset, self.opt.order, find
            ):
                self.checked += 1
                if self.clock.left() <= 0:
                    break
                v = check(net2, self.preset, timeout=max(self.clock.left(), 1.0))
                self.stage("closed-form", "found", t0)
                return self.result(
                    "found",
                    f"closed form: the last operand of {touch['unit']} in {self.opt.order} order solved exactly; exact engine and both rounding references agree",
                    "closed-form-rounded",
                    net=net2,
                    verdict=v,
                    touch=touch,
                )
            self.stage("closed-form", "none", t0)
            return None
        scan = closed_form.CandidateScan(
            self.base, self.preset, self.dom, self.free, limit=self.opt.max_candidates
        )
        par = self.net.parameterization()
        for c in scan:
            if self.clock.left() <= 0:
                self.stage("closed-form", "timeout", t0)
                return self.result(
                    "unknown",
                    f"time-out in the closed-form stage after {self.checked} candidate(s)",
                    "closed-form",
                )
            net2 = with_groups(self.base, {c.slot.group: c.value}, numbers=self.target)
            ok, v = self.verify(net2)
            if ok:
                self.stage("closed-form", "found", t0)
                return self.result(
                    "found",
                    f"closed form: {par.label(c.slot.group)} = {format_exact(c.value)} puts {c.slot.node}[{c.slot.unit}] (sample {c.sample}) on the kink {c.kink}; verified by {v.method}",
                    "closed-form",
                    net=net2,
                    verdict=v,
                )
        detail = f"{scan.examined} slot(s), {scan.found} candidate(s) in the domain"
        if self.free and scan.complete:
            every, why = closed_form.slots_complete(self.base, self.free, self.preset)
            if every and (not scan.found or len(self.free) == 1):
                self.stage("closed-form", "exhausted", t0, detail)
                if not scan.found:
                    what = "kink" if find == "kink" else f"kink (hence no {find} point)"
                    how = f"for every unit and kink the only solving value is not in {self.dom.describe()}, so no point of the space has a {what}"
                else:
                    how = f"the {scan.found} value(s) of {par.label(self.free[0])} putting a unit on a kink were each checked exactly (not {find}); every other value has no kink"
                return self.result("exhausted", f"closed form: {why}; {how}", "closed-form")
            detail += f"; not exhaustive: {why}"
        self.stage("closed-form", "none", t0, detail)
        return None

    def _closed_missed(self, t0: float) -> SearchResult | None:
        """A missed touch needs an exact kink: test every closed-form exact kink in float."""
        from formal.smt.queries import touch_values  # noqa: PLC0415

        cands, examined, complete = closed_form.candidates(
            self.base, self.preset, self.dom, self.free, limit=self.opt.max_candidates
        )
        for c in cands:
            if self.clock.left() <= 0:
                self.stage("closed-form", "timeout", t0)
                return self.result(
                    "unknown",
                    f"time-out in the closed-form stage after {self.checked} candidate(s)",
                    "closed-form",
                )
            net2 = with_groups(self.base, {c.slot.group: c.value}, numbers=self.target)
            self.checked += 1
            touch = touch_values(net2, self.target, self.preset, self.opt.order, "missed-kink")
            if touch is not None:
                v = check(net2, self.preset, timeout=max(self.clock.left(), 1.0))
                self.stage("closed-form", "found", t0)
                return self.result(
                    "found",
                    "closed form: an exact kink whose float value misses it; exact engine and both rounding references agree",
                    "closed-form-rounded",
                    net=net2,
                    verdict=v,
                    touch=touch,
                )
        detail = f"{examined} slot(s), {len(cands)} exact kink candidate(s)"
        if self.free and complete:
            every, why = closed_form.slots_complete(self.base, self.free, self.preset)
            if every and (not cands or len(self.free) == 1):
                self.stage("closed-form", "exhausted", t0, detail)
                return self.result(
                    "exhausted",
                    f"closed form: {why}; a missed touch needs an exact kink, and each of the {len(cands)} exact kink point(s) of the space was evaluated in float ({self.opt.order} order): none misses",
                    "closed-form",
                )
            detail += f"; not exhaustive: {why}"
        self.stage("closed-form", "none", t0, detail)
        return None

    def smt(self) -> SearchResult | None:
        if self.opt.find in ("spurious-kink", "missed-kink"):
            return self._smt_rounded()
        return self._smt_exact()

    def _smt_exact(self) -> SearchResult | None:
        """Search formats from tiny to the default (then the target itself for <= 3
        parameters once the subspace is exhausted); only the target's own space can
        give 'exhausted'."""
        if not self.free:
            self.stage("smt", "n/a", time.perf_counter(), "nothing is searched")
            return self.result(
                "exhausted",
                "every parameter is fixed and the given point is not a witness",
                "given-point",
            )
        ladder = search_ladder(self.target, self.opt.search_format)
        notes: list[str] = []
        exhausted_sub = False
        for i, fmt in enumerate(ladder):
            final = i == len(ladder) - 1
            if self.clock.left() <= 0:
                break
            sdom = _search_domain(fmt, self.dom)
            t0 = time.perf_counter()
            query = ExactQuery(
                self.base,
                self.free,
                self.base_values,
                sdom,
                self.preset,
                self.opt.find,
                seed=self.opt.seed,
            )
            budget = None if final else max(self.clock.left() * TINY_SHARE, 0.05)
            res = self._cegis(query, t0, sdom, fmt == self.target, fmt.name, budget)
            if res.status != "unknown":
                return res
            notes.append(f"[{fmt.name}] {res.reason}")
            exhausted_sub = self.stages[-1]["status"] == "unsat"
        escalate = (
            ladder[-1] != self.target
            and exhausted_sub
            and not self.opt.search_format
            and len(self.free) <= ESCALATE_MAX_FREE
            and self.clock.left() > 0
        )
        if escalate:  # the default subspace is exhausted: search the whole target space
            t1 = time.perf_counter()
            try:
                query = ExactQuery(
                    self.base,
                    self.free,
                    self.base_values,
                    self.dom,
                    self.preset,
                    self.opt.find,
                    seed=self.opt.seed,
                )
            except UnsupportedOp as exc:
                notes.append(f"[{self.target.name}] not searched: {exc}")
            else:
                res2 = self._cegis(query, t1, self.dom, True, self.target.name, None)
                if res2.status != "unknown":
                    return res2
                notes.append(f"[{self.target.name}] {res2.reason}")
        return self.result(
            "unknown",
            "; ".join(notes) or "no time left for the SMT stage",
            "smt",
            search_format=ladder[-1].name,
            space=self.space(_search_domain(ladder[-1], self.dom)),
        )

    def _smt_rounded(self) -> SearchResult | None:
        t0 = time.perf_counter()
        if not self.free:
            self.stage("smt", "n/a", t0, "nothing is searched")
            return self.result(
                "exhausted",
                "every parameter is fixed and the given point has no such float kink touch",
                "given-point",
            )
        dom = self.dom
        full = True
        if not self.range_given and self.target.bits > 16:
            dom = Domain(
                self.target, DEFAULT_WIDE_RANGE[0], DEFAULT_WIDE_RANGE[1], self.opt.subnormals
            )
            full = False
        query = RoundedQuery(
            self.base,
            self.free,
            self.base_values,
            dom,
            self.preset,
            self.opt.find,
            self.opt.order,
            seed=self.opt.seed,
        )
        res = self._cegis(query, t0, dom, full, self.target.name, None)
        if (
            full
            or res.status != "unknown"
            or len(self.free) > ESCALATE_MAX_FREE
            or self.clock.left() <= 0
        ):
            return res
        if self.stages[-1]["status"] != "unsat":
            return res
        t1 = time.perf_counter()  # the default range is exhausted: search the whole format
        try:
            query = RoundedQuery(
                self.base,
                self.free,
                self.base_values,
                self.dom,
                self.preset,
                self.opt.find,
                self.opt.order,
                seed=self.opt.seed,
            )
        except UnsupportedOp as exc:
            return self.result(
                "unknown",
                f"{res.reason}; the whole of {self.dom.describe()} was not searched: {exc}",
                res.method,
                search_format=self.target.name,
            )
        res2 = self._cegis(query, t1, self.dom, True, self.target.name, None)
        if res2.status == "unknown":
            return self.result(
                "unknown",
                f"{res.reason}; then, over all of {self.dom.describe()}: {res2.reason}",
                res2.method,
                search_format=self.target.name,
            )
        return res2

    def _cegis(
        self, query: Any, t0: float, dom: Domain, full: bool, sname: str, budget: float | None
    ) -> SearchResult:
        """Propose, verify exactly, block, repeat; ``budget`` limits this stage (seconds)."""
        space = self.space(dom)
        stop = time.perf_counter() + budget if budget is not None else self.clock.deadline
        stop = min(stop, self.clock.deadline)
        rounds = 0
        while True:
            left = stop - time.perf_counter()
            if left <= 0:
                self.stage("smt", "timeout", t0, f"{sname}: {rounds} round(s)")
                why = (
                    "its time slice"
                    if budget is not None and stop < self.clock.deadline
                    else f"the time-out ({self.opt.timeout:g} s)"
                )
                return self.result(
                    "unknown",
                    f"{sname}: {why} ran out after {rounds} proposal(s)",
                    "smt",
                    search_format=sname,
                    space=space,
                )
            status, values = query.propose(int(left * 1000))
            rounds += 1
            if status == "unknown":
                self.stage("smt", "unknown", t0, f"{sname}: {query.reason}")
                return self.result(
                    "unknown",
                    f"{sname}: z3 returned unknown after {rounds} round(s) ({query.reason})",
                    "smt",
                    search_format=sname,
                    space=space,
                )
            if status == "unsat":
                self.stage(
                    "smt", "unsat", t0, f"{sname}: {rounds - 1} candidate(s) verified and blocked"
                )
                how = f"z3 ({query.describe()}) proved that no point outside the {rounds - 1} blocked candidate(s) satisfies {query.condition}, a necessary condition; each blocked candidate was checked exactly"
                if full:
                    return self.result(
                        "exhausted", how, "smt-" + query.kind, search_format=sname, space=space
                    )
                return self.result(
                    "unknown",
                    f"no witness in the subspace {dom.describe()}: {how}; the rest of {self.target.name} was not searched",
                    "smt-" + query.kind,
                    search_format=sname,
                    space=space,
                )
            net2 = with_groups(self.base, values, numbers=self.target)
            if query.kind == "rounded":
                touch = touch_values(net2, self.target, self.preset, self.opt.order, self.opt.find)
                self.checked += 1
                if touch is not None:
                    v = check(net2, self.preset, timeout=max(self.clock.left(), 1.0))
                    self.stage("smt", "found", t0, f"{sname}: {rounds} round(s)")
                    return self.result(
                        "found",
                        f"z3 ({query.describe()}) proposed it; the exact engine and both rounding references agree",
                        "smt-rounded",
                        net=net2,
                        verdict=v,
                        touch=touch,
                        search_format=sname,
                        space=space,
                    )
            else:
                ok, v = self.verify(net2)
                if ok:
                    self.stage("smt", "found", t0, f"{sname}: {rounds} round(s)")
                    return self.result(
                        "found",
                        f"z3 proposed it in {sname} ({query.describe()}), lifted exactly to {self.target.name}; verified by the exact verdict ({v.method})",
                        "smt-" + query.kind,
                        net=net2,
                        verdict=v,
                        search_format=sname,
                        space=space,
                    )
            query.block()


_SMOOTH_OK = ("input", "param", "const", "linear", "add", "sub", "neg", "scale", "act", "reshape")


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


def _project(dom: Domain, v: Fraction) -> Fraction:
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


def _search_domain(s: Format, dom: Domain) -> Domain:
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
            f"search format {s.name} has members outside {dom.describe()}, e.g. {format_exact(bad[0])}"
        )
    return out


def _touch_at(
    net: Network, fmt: Format, preset: Preset, order: str, find: str
) -> dict[str, Any] | None:
    return touch_values(net, fmt, preset, order, find, None)


def search(net: Network, options: SearchOptions) -> SearchResult:
    """Search for a witness (see the module docstring).

    Examples
    --------
    >>> from formal.examples import load_example
    >>> r = search(load_example("e1"), SearchOptions(find="inc", proxy="right", fix=("1.weight",)))
    >>> r.status, r.verdict.in_inc
    ('found', True)
    """
    try:
        return _Search(net, options).run()
    except z3.Z3Exception as exc:  # pragma: no cover - solver failure is an honest unknown
        return SearchResult(
            "unknown",
            f"z3 error: {exc}",
            options.find,
            "smt",
            str(options.numbers or net.numbers),
            str(options.proxy),
            "",
            0.0,
        )
