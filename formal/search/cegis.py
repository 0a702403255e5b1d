"""The SMT stage of ``formal search``: counterexample-guided proposals, each verified exactly.

For kink/ndf/inc the proposals come from :class:`formal.smt.queries.ExactQuery`
over a ladder of small *search formats* embedded in the target; for float
touches from :class:`formal.smt.queries.RoundedQuery` in the target format.
Each proposal is checked by the exact engine (and the rounding references)
and blocked when it is not a witness (CEGIS).
"""

from __future__ import annotations

import time
from typing import Any

from formal.core.rebuild import with_groups
from formal.errors import UnsupportedOp
from formal.search.options import (
    ESCALATE_MAX_FREE,
    TINY_SHARE,
    SearchResult,
    search_domain,
    search_ladder,
)
from formal.search.run import SearchState
from formal.smt.fp import Domain
from formal.smt.queries import ExactQuery, RoundedQuery, touch_values

__all__ = ["SmtStages"]


class SmtStages(SearchState):
    """A search run with the SMT stage: exact queries over search formats, rounded queries."""

    def smt(self) -> SearchResult | None:
        """The SMT stage: CEGIS on the rounded query for float touches, else the exact query."""
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
            sdom = search_domain(fmt, self.dom)
            t0 = time.perf_counter()
            query = self.exact_query(sdom)
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
                query = self.exact_query(self.dom)
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
            space=self.space(search_domain(ladder[-1], self.dom)),
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
        dom, full = self.rounded_domain()
        query = self.rounded_query(dom)
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
            query = self.rounded_query(self.dom)
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

    def exact_query(self, dom: Domain) -> ExactQuery:
        """The exact (kink/ndf/inc) proposal query over ``dom``."""
        q = self.opt
        return ExactQuery(
            self.base, self.free, self.base_values, dom, self.preset, q.find, seed=q.seed
        )

    def rounded_query(self, dom: Domain) -> RoundedQuery:
        """The rounded (float kink touch) proposal query over ``dom``."""
        q = self.opt
        return RoundedQuery(
            self.base, self.free, self.base_values, dom, self.preset, q.find, q.order, seed=q.seed
        )

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
            if self.bar is not None:
                self.bar.set_postfix_str(f"smt in {sname}: CEGIS round {rounds}")
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
                how = (
                    f"z3 ({query.describe()}) proved that no point outside the {rounds - 1} "
                    f"blocked candidate(s) satisfies {query.condition}, a necessary condition; "
                    f"each blocked candidate was checked exactly"
                )
                if full:
                    return self.result(
                        "exhausted", how, "smt-" + query.kind, search_format=sname, space=space
                    )
                return self.result(
                    "unknown",
                    f"no witness in the subspace {dom.describe()}: {how}; the rest of "
                    f"{self.target.name} was not searched",
                    "smt-" + query.kind,
                    search_format=sname,
                    space=space,
                )
            net2 = with_groups(self.base, values, numbers=self.target)
            if query.kind == "rounded":
                touch = touch_values(net2, self.target, self.preset, self.opt.order, self.opt.find)
                self.checked += 1
                if touch is not None:
                    v = self.exact(net2)
                    self.stage("smt", "found", t0, f"{sname}: {rounds} round(s)")
                    return self.result(
                        "found",
                        f"z3 ({query.describe()}) proposed it; the exact engine and both rounding "
                        f"references agree",
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
                        f"z3 proposed it in {sname} ({query.describe()}), lifted exactly to "
                        f"{self.target.name}; verified by the exact verdict ({v.method})",
                        "smt-" + query.kind,
                        net=net2,
                        verdict=v,
                        search_format=sname,
                        space=space,
                    )
            query.block()
