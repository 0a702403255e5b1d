"""Witness search: machine-representable parameters with a kink, ndf, inc or a float kink touch.

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
3. bias-free (inc only, :mod:`formal.search.biasfree`): theorems for dense
   chains possibly without biases (T5, zero input) prove inc empty, or a
   witness is constructed directly (the E1 pattern at depth) and verified;
4. closed form (:mod:`formal.smt.closed_form`): the one value of a bias
   (or own-row weight) putting a unit on a kink, tested for membership;
   for float touches the last operand of the stated summation order
   (:mod:`formal.smt.rounded`);
5. SMT: for kink/ndf/inc, bit-precise exact encoding in a small *search
   format* whose members embed in the target (e4m3 for binary32), proposing
   points that satisfy a proven necessary condition, verifying each with
   :func:`formal.verdict.check`, blocking it and repeating (CEGIS); for float
   touches, ``fp.mul``/``fp.add`` with RNE in the target format against the
   exact bit-vector encoding (:mod:`formal.search.cegis`).

:class:`SearchRun` is the driver and the stages 1-4; the run's state lives in
:mod:`formal.search.run`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import z3
from tqdm import tqdm

from formal.core.activations import Preset
from formal.core.network import Network, bias_structure
from formal.core.numbers import Format, format_exact
from formal.core.rebuild import with_groups
from formal.errors import UnsupportedOp
from formal.search import biasfree
from formal.search.cegis import SmtStages
from formal.search.options import (
    FINDS,
    SMOOTH_OPS,
    SearchOptions,
    SearchResult,
    parse_range,
    search_ladder,
)
from formal.smt import closed_form
from formal.smt.queries import rounded_closed_form, touch_values

__all__ = [
    "FINDS",
    "SearchOptions",
    "SearchResult",
    "SearchRun",
    "search",
    "parse_range",
    "search_ladder",
]


class SearchRun(SmtStages):
    """One search: the network, the options, the clock; :meth:`run` goes through the stages."""

    # -- driver -----------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run the stages in order; the first ``found`` or ``exhausted`` ends the search.

        A tqdm bar on stderr (when it is a terminal, after 1 s) shows the stage
        and the SMT stage's CEGIS rounds.
        """
        with tqdm(
            total=len(self.opt.stages),
            desc="search",
            unit="stage",
            file=sys.stderr,
            disable=None,
            delay=1.0,
            leave=False,
        ) as bar:
            self.bar = bar
            try:
                return self._stages()
            finally:
                self.bar = None

    def _stages(self) -> SearchResult:
        rounded = self.opt.find in ("spurious-kink", "missed-kink")
        steps = [
            ("given", self.given),
            ("theorem", self.theorems),
            ("bias-free", self.bias_free),
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
            if self.bar is not None:
                self.bar.set_postfix_str(name)
            try:
                res = fn()
            except UnsupportedOp as exc:
                self.stage(name, "unsupported", t0, str(exc))
                last = self.result("unknown", f"{name} stage: {exc}", name)
                continue
            if self.bar is not None:
                self.bar.update(1)
            if res is None:
                continue
            if res.status in ("found", "exhausted"):
                return res
            last = res
        if last is not None:
            return last
        return self.result("unknown", "no stage could decide the question", "none")

    def given(self) -> SearchResult | None:
        """Stage 1: the given point, if it is already a witness; None otherwise."""
        t0 = time.perf_counter()
        if self.opt.find in ("spurious-kink", "missed-kink"):
            hit = _touch_at(self.base, self.target, self.preset, self.opt.order, self.opt.find)
            self.checked += 1
            if hit is not None:
                self.stage("given", "found", t0)
                v = self.exact(self.base)
                return self.result(
                    "found",
                    "the given parameters are already a witness (exact engine and both rounding "
                    "references agree)",
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
        """Stage 2: ``exhausted`` when no kinked unit exists, or (for inc) when T1 applies."""
        t0 = time.perf_counter()
        net = self.base
        if not any(n.op == "act" and n.attr("activation").kinks for n in net.nodes) and all(
            n.op in SMOOTH_OPS for n in net.nodes
        ):
            self.stage("theorem", "exhausted", t0)
            return self.result(
                "exhausted",
                "no kinked activation in the network: f is analytic everywhere, so there is no "
                "kink, ndf or inc point at all",
                "theorem-no-kinks",
            )
        if self.opt.find == "inc":
            h = bias_structure(net)
            if h.holds:
                self.stage("theorem", "exhausted", t0, h.reason)
                return self.result(
                    "exhausted",
                    f"T1: hypothesis H holds ({h.reason}), so inc(f) is empty on all of R^W, "
                    f"whatever the proxies",
                    "theorem-T1",
                )
        self.stage("theorem", "n/a", t0)
        return None

    def bias_free(self) -> SearchResult | None:
        """Stage 3 (inc only): a bias-free theorem (exhausted) or a constructed witness (found).

        Theorems first (:func:`formal.search.biasfree.inc_empty`: their hypotheses
        are checked and their claim covers all of R^W); then the E1-pattern
        candidates, each verified by the exact engine.  No SMT query is made.
        """
        t0 = time.perf_counter()
        if self.opt.find != "inc":
            self.stage("bias-free", "n/a", t0, "inc only")
            return None
        empty = biasfree.inc_empty(self.base, self.preset)
        if empty is not None:
            self.stage("bias-free", "exhausted", t0, empty.method)
            return self.result("exhausted", empty.reason, empty.method)
        tried = 0
        for cand in biasfree.witness_candidates(self.base, self.preset, self.dom, self.free):
            if self.clock.left() <= 0:
                break
            tried += 1
            net2 = with_groups(self.base, cand.values, numbers=self.target)
            ok, v = self.verify(net2)
            if ok:
                self.stage("bias-free", "found", t0, cand.how)
                return self.result(
                    "found",
                    f"constructed (E1 pattern): {cand.how}; verified by the exact verdict "
                    f"({v.method})",
                    "bias-free-witness",
                    net=net2,
                    verdict=v,
                )
        self.stage("bias-free", "none", t0, f"{tried} constructed candidate(s), none a witness")
        return None

    def closed(self) -> SearchResult | None:
        """Stage 4: the closed-form values putting a unit on a kink, each checked exactly."""
        t0 = time.perf_counter()
        find = self.opt.find
        if find == "missed-kink":
            return self._closed_missed(t0)
        if find == "spurious-kink":
            for net2, touch in rounded_closed_form(
                self.base, self.target, self.dom, self.free, self.preset, self.opt.order, find
            ):
                self.checked += 1
                if self.clock.left() <= 0:
                    break
                v = self.exact(net2)
                self.stage("closed-form", "found", t0)
                return self.result(
                    "found",
                    f"closed form: the last operand of {touch['unit']} in {self.opt.order} order "
                    f"solved exactly; exact engine and both rounding references agree",
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
                return self._closed_timeout(t0)
            net2 = with_groups(self.base, {c.slot.group: c.value}, numbers=self.target)
            ok, v = self.verify(net2)
            if ok:
                self.stage("closed-form", "found", t0)
                return self.result(
                    "found",
                    f"closed form: {par.label(c.slot.group)} = {format_exact(c.value)} puts "
                    f"{c.slot.node}[{c.slot.unit}] (sample {c.sample}) on the kink {c.kink}; "
                    f"verified by {v.method}",
                    "closed-form",
                    net=net2,
                    verdict=v,
                )
        detail = f"{scan.examined} slot(s), {scan.found} candidate(s) in the domain"
        if not scan.found or not self.free:
            what = "kink" if find == "kink" else f"kink (hence no {find} point)"
            how = (
                f"for every unit and kink the only solving value is not in "
                f"{self.dom.describe()}, so no point of the space has a {what}"
            )
        else:
            how = (
                f"the {scan.found} value(s) of {par.label(self.free[0])} putting a unit on a kink "
                f"were each checked exactly (not {find}); every other value has no kink"
            )
        return self._closed_end(t0, detail, scan.complete, scan.found, how)

    def _closed_missed(self, t0: float) -> SearchResult | None:
        """A missed touch needs an exact kink: test every closed-form exact kink in float."""
        cands, examined, complete = closed_form.candidates(
            self.base, self.preset, self.dom, self.free, limit=self.opt.max_candidates
        )
        for c in cands:
            if self.clock.left() <= 0:
                return self._closed_timeout(t0)
            net2 = with_groups(self.base, {c.slot.group: c.value}, numbers=self.target)
            self.checked += 1
            touch = touch_values(net2, self.target, self.preset, self.opt.order, "missed-kink")
            if touch is not None:
                v = self.exact(net2)
                self.stage("closed-form", "found", t0)
                return self.result(
                    "found",
                    "closed form: an exact kink whose float value misses it; exact engine and both "
                    "rounding references agree",
                    "closed-form-rounded",
                    net=net2,
                    verdict=v,
                    touch=touch,
                )
        detail = f"{examined} slot(s), {len(cands)} exact kink candidate(s)"
        how = (
            f"a missed touch needs an exact kink, and each of the {len(cands)} exact kink "
            f"point(s) of the space was evaluated in float ({self.opt.order} order): none misses"
        )
        return self._closed_end(t0, detail, complete, len(cands), how)

    def _closed_timeout(self, t0: float) -> SearchResult:
        """The closed-form stage ran out of time: an honest unknown."""
        self.stage("closed-form", "timeout", t0)
        return self.result(
            "unknown",
            f"time-out in the closed-form stage after {self.checked} candidate(s)",
            "closed-form",
        )

    def _closed_end(
        self, t0: float, detail: str, complete: bool, found: int, how: str
    ) -> SearchResult | None:
        """``exhausted`` (reason ``how``) when every slot's solutions were covered, else None.

        Exhaustive needs a complete scan of slots that together cover every kink of the
        space, and either no candidate or a single free parameter.
        """
        if self.free and complete:
            every, why = closed_form.slots_complete(self.base, self.free, self.preset)
            if every and (not found or len(self.free) == 1):
                self.stage("closed-form", "exhausted", t0, detail)
                return self.result("exhausted", f"closed form: {why}; {how}", "closed-form")
            detail += f"; not exhaustive: {why}"
        self.stage("closed-form", "none", t0, detail)
        return None


def _touch_at(
    net: Network, fmt: Format, preset: Preset, order: str, find: str
) -> dict[str, Any] | None:
    """The float kink touch ``find`` of net at its own parameters, or None."""
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
        return SearchRun(net, options).run()
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
