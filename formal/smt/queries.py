"""The solver queries behind ``formal search`` and ``formal export-smt``.

:class:`ExactQuery` (kink / ndf / inc, real semantics): searched parameters
are bit patterns of a search format; the network is encoded exactly
(:mod:`formal.smt.exact_bv`).  The condition is *necessary* for the property,
so UNSAT (after blocking every verified non-witness) covers the space:

- ``kink``: some kink entry ``y == c`` of a unit depending on the parameters;
- ``ndf``: some *relevant* kink: ``y == c``, AD's adjoint there non-zero (for
  some output row), and its tangent possibly non-zero (``may``).  If no kink
  is relevant, f is differentiable and AD is correct (Lemma Z, with inert
  kinks dropped: an inert kink has identically zero true tangent and AD
  Jacobian, and no relevant kink below feeds it);
- ``inc``: ``ndf``'s condition, and, with B = 1: in the last activation node
  (topological order) holding a relevant kink, if its pre-activation is
  ``x @ W.T (+ b)`` with W trainable, untied and read only there, then
  ``x == 0``.  (Otherwise moving the kink unit's row of W along x moves that
  pre-activation alone and, as in T2, f is not differentiable.)

:class:`RoundedQuery` (spurious / missed float kink touches): parameters are
variables of the target format; the float pre-activations are z3 FP terms in
the stated order (:mod:`formal.smt.rounded`), the exact ones bit-vectors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from formal.core.activations import Activation, Preset
from formal.core.bvq import Cond, all_of, any_of, compare, nonzero
from formal.core.network import Network
from formal.core.numbers import Format, format_exact, hex_float
from formal.core.rebuild import with_groups
from formal.core.smtrules import per_unit
from formal.engine.forward import exact_forward
from formal.errors import UnsupportedOp
from formal.smt import closed_form
from formal.smt.exact_bv import NetworkEncoding, param_arrays, parameter_leaves
from formal.smt.fp import Domain, FPVar
from formal.smt.rounded import (
    ExactRounding,
    Z3Arith,
    domain_step,
    float_forward,
    product_members,
    reference_preactivations,
    rounding_interval_members,
)

__all__ = ["ExactQuery", "RoundedQuery", "touch_values", "rounded_closed_form", "MAX_FREE"]

MAX_FREE = 4096  # searched parameters per SMT query


def _term(c: Cond) -> z3.BoolRef:
    """A condition as a z3 term (Python constants become ``true`` / ``false``)."""
    return z3.BoolVal(c) if isinstance(c, bool) else c


def _or(items: list[Any]) -> z3.BoolRef:
    return _term(any_of(items))


def _and(items: list[Any]) -> z3.BoolRef:
    return _term(all_of(items))


def checked(solver: z3.Solver, timeout_ms: int) -> z3.CheckSatResult:
    """``solver.check()`` with a watchdog: z3's own time-out is not polled while it
    bit-blasts wide terms, so the context is interrupted from a timer thread."""
    ctx = solver.ctx
    timer = threading.Timer(max(timeout_ms, 1) / 1000 + 0.25, ctx.interrupt)
    timer.daemon = True
    timer.start()
    try:
        return solver.check()
    finally:
        timer.cancel()


def make_solver(kind: str) -> z3.Solver:
    """``smt``: simplify, then z3's CDCL(T) core (exact queries: the eager bit-blast + SAT
    pipeline stalls on sums of products with wide constants, where this is immediate);
    ``qffpbv``: z3's QF_FPBV pipeline (rounded queries: it bit-blasts FP ops well)."""
    if kind == "qffpbv":
        return z3.SolverFor("QF_FPBV")
    return z3.Then("simplify", "smt").solver()


class _Query:
    kind = ""
    condition = ""

    tactic = "smt"

    def __init__(self, free: list[int], dom: Domain, seed: int) -> None:
        if len(free) > MAX_FREE:
            raise UnsupportedOp(
                f"{len(free)} searched parameters exceed the SMT limit of {MAX_FREE}; "
                "use --fix or --free"
            )
        self.dom = dom
        self.vars = {g: FPVar(f"w{g}", dom) for g in free}
        self.solver = make_solver(self.tactic)
        self.solver.set("random_seed", int(seed))
        for v in self.vars.values():
            self.solver.add(*v.constraints())
        self.model: z3.ModelRef | None = None
        self.reason = ""
        self.blocked = 0

    def propose(self, timeout_ms: int) -> tuple[str, dict[int, Fraction] | None]:
        """One check: ('sat', values) | ('unsat', None) | ('unknown', None) with ``reason``."""
        self.solver.set("timeout", max(int(timeout_ms), 1))
        r = checked(self.solver, timeout_ms)
        if r == z3.sat:
            self.model = self.solver.model()
            return "sat", {g: v.value(self.model) for g, v in self.vars.items()}
        if r == z3.unsat:
            return "unsat", None
        self.reason = self.solver.reason_unknown() or "unknown"
        return "unknown", None

    def block(self) -> None:
        """Exclude the last model (its bit patterns; -0 is excluded by the domain)."""
        assert self.model is not None
        m = self.model
        diff = [v.bits != m.eval(v.bits, model_completion=True) for v in self.vars.values()]
        self.solver.add(
            diff[0] if len(diff) == 1 else z3.Or(diff)
        )  # SMT-LIB's `or` needs two arguments
        self.blocked += 1

    def describe(self) -> str:
        return f"{len(self.vars)} variable(s) of {self.dom.fmt.name}, QF_FPBV"

    def assertions(self) -> z3.Solver:
        return self.solver


class ExactQuery(_Query):
    """kink / ndf / inc candidates under real semantics, in a search format."""

    kind = "exact"

    def __init__(
        self,
        net: Network,
        free: list[int],
        base: Mapping[int, Fraction],
        dom: Domain,
        preset: Preset,
        find: str,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(free, dom, seed)
        fixed = {g: v for g, v in base.items() if g not in self.vars}
        enc = NetworkEncoding(net, param_arrays(net, fixed, self.vars), preset)
        self.enc = enc
        sites = [s for s in enc.sites if s.depends]
        if find == "kink":
            self.condition = "'some unit depending on the parameters sits exactly on a kink'"
            cond = _or([s.cond for s in sites])
        else:
            adj = enc.kink_adjoints()
            rel: dict[str, list[Any]] = {}
            for s in sites:
                a = adj.get((s.node, s.sample, s.index), [])
                may = enc.may[s.node].reshape(enc.may[s.node].shape[0], -1)[s.sample, s.index]
                rel.setdefault(s.node, []).append(_and([s.cond, may, _or([nonzero(x) for x in a])]))
            if find == "ndf":
                self.condition = (
                    "'some kink is relevant (AD adjoint non-zero, tangent possibly non-zero)' "
                    "(necessary for ndf: Lemma Z)"
                )
                cond = _or([c for cs in rel.values() for c in cs])
            else:
                self.condition = (
                    "'the last node with a relevant kink has zero input (when its weight rows "
                    "can move alone)' (necessary for inc)"
                )
                order = [n.name for n in net.nodes if n.name in rel]
                R = {n: _or(rel[n]) for n in order}
                terms = []
                for j, n in enumerate(order):
                    later = [R[m] for m in order[j + 1 :]]
                    zero = self._zero_input(net, n)
                    terms.append(_and([R[n], z3.Not(_or(later)) if later else True, zero]))
                cond = _or(terms)
        self.solver.add(cond)
        self.cond = cond

    def _zero_input(self, net: Network, act_name: str) -> Any:
        if net.batch != 1:
            return True
        node = net.node(act_name)
        pre = net.node(node.inputs[0])
        lin = None
        if len(net.consumers(pre.name)) != 1:
            return True
        if pre.op == "linear":
            lin = pre
        elif pre.op == "add":
            for i in pre.inputs:
                if net.node(i).op == "linear" and len(net.consumers(i)) == 1:
                    lin = net.node(i)
        if lin is None:
            return True  # no weight row that moves this pre-activation alone: no condition
        wnode = net.node(lin.inputs[1])
        if wnode.op != "param" or not closed_form.own_param(net, wnode):
            return True
        par = net.parameterization()
        name = wnode.attr("name")
        groups = par.groups[name].reshape(-1)
        unique = closed_form.untied_groups(net)
        if not bool(np.all(unique[groups])):
            return True
        x = self.enc.values[lin.inputs[0]]
        return _and([compare(v, Fraction(0), "==") for v in x.reshape(-1)])

    def describe(self) -> str:
        """One line on the encoding (for the export header)."""
        return (
            f"exact fixed-point bit-vector encoding, {len(self.vars)} variable(s) of "
            f"{self.dom.fmt.name}"
        )


class RoundedQuery(_Query):
    """spurious / missed float kink touches: FP terms in the target format vs exact bit-vectors."""

    kind = "rounded"
    tactic = "qffpbv"

    def __init__(
        self,
        net: Network,
        free: list[int],
        base: Mapping[int, Fraction],
        dom: Domain,
        preset: Preset,
        find: str,
        order: str,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(free, dom, seed)
        fixed = {g: v for g, v in base.items() if g not in self.vars}
        arith = Z3Arith(dom.fmt)
        fp_params = _fp_params(net, fixed, self.vars, arith)
        _, fsites = float_forward(net, arith, fp_params, order)
        enc = NetworkEncoding(net, param_arrays(net, fixed, self.vars), preset)
        terms = []
        self.sites = []
        for s in fsites:
            y = per_unit(enc.values[s.pre])[s.sample, s.index]  # the exact pre-activation
            hit = arith.eq(s.value, s.kink)
            if find == "spurious-kink":
                terms.append(_and([hit, compare(y, s.kink, "!=")]))
            else:
                # a missed touch is a finite float value off the kink (an overflow is not one)
                finite = z3.And(z3.Not(z3.fpIsInf(s.value)), z3.Not(z3.fpIsNaN(s.value)))
                terms.append(_and([compare(y, s.kink, "=="), z3.Not(hit), finite]))
            self.sites.append((s, y))
        self.condition = (
            ("'yhat == c in " + order + " order while the exact y != c'")
            if find == "spurious-kink"
            else ("'the exact y == c while yhat != c (" + order + " order)'")
        )
        self.cond = _or(terms)
        self.solver.add(self.cond)
        self.order = order
        self.last_site = None

    def describe(self) -> str:
        """One line on the encoding (for the export header)."""
        return (
            f"fp.mul/fp.add RNE in {self.dom.fmt.name}, {self.order} order, against the exact "
            f"bit-vector encoding; {len(self.vars)} variable(s)"
        )


def _fp_params(
    net: Network, fixed: Mapping[int, Fraction], variables: Mapping[int, FPVar], arith: Z3Arith
) -> dict[str, np.ndarray]:
    def fp_var(v: FPVar, negate: bool) -> Any:
        x = v.fp()
        return z3.fpNeg(x) if negate else x

    return parameter_leaves(net, fixed, variables, fp_var, arith.const)


# ---------------------------------------------------------------------------
# Verification of float touches and the rounded closed form


def touch_values(
    net: Network, fmt: Format, preset: Preset, order: str, find: str, hint: Any = None
) -> dict[str, Any] | None:
    """The first site with a spurious (or missed) float kink touch, checked three ways.

    The exact engine gives y; the exact-RNE reference and numpy/ml_dtypes (when
    the format has a dtype) give yhat in the stated order.  Returns None when
    no site qualifies or the two references disagree.
    """
    fwd = exact_forward(net, preset)
    refs = reference_preactivations(net, fmt, order)
    rounded_inputs = any(not fmt.contains(v) for v in net.inputs.to_fractions().reshape(-1))
    for node, items in refs.items():
        for site, ref, npv in items:
            y = fwd.values[site.pre]
            yv = Fraction(int(y.num.reshape(y.shape[0], -1)[site.sample, site.index]), y.den)
            if fmt.numpy_dtype() is not None and npv != ref:
                continue  # references disagree: never report
            c = site.kink
            if find == "spurious-kink":
                ok = ref == c and yv != c
            else:  # missed: a finite float value off the kink (overflow is not a missed touch)
                ok = yv == c and ref is not None and ref != c
            if not ok:
                continue
            shape = net.node(node).shape
            idx = np.unravel_index(site.index, shape) if shape else ()
            return {
                "unit": f"{node}[{','.join(str(int(i)) for i in idx)}] sample {site.sample}",
                "kink": format_exact(c),
                "float_value": None if ref is None else format_exact(ref),
                "float_hex": None if ref is None else hex_float(ref),
                "numpy_value": None if npv is None else format_exact(npv),
                "exact_value": format_exact(yv),
                "order": order,
                "rounding": f"{fmt.name}, round to nearest even, gradual underflow",
                "inputs_rounded": rounded_inputs,
            }
    return None


def rounded_closed_form(
    net: Network,
    fmt: Format,
    dom: Domain,
    free: list[int],
    preset: Preset,
    order: str,
    find: str,
    *,
    limit: int = 256,
) -> Iterator[tuple[Network, dict[str, Any]]]:
    """Witnesses from solving the last operand of a pre-activation exactly.

    spurious: a free bias b with ``RNE(acc + b) == c`` (acc = the float linear
    part), or, in sequential order, a free last weight w with
    ``RNE(acc + RNE(x w)) == c``; the exact value must differ.  missed: the
    exact closed form ``b* = c - s`` (or the weight analogue) whose float value
    misses c.  Every yield is verified by :func:`touch_values`.
    """
    tried = 0
    if find == "missed-kink":
        cands, _, _ = closed_form.candidates(net, preset, dom, free)
        for cand in cands:
            if tried >= limit:
                return
            tried += 1
            net2 = with_groups(net, {cand.slot.group: cand.value}, numbers=fmt)
            t = touch_values(net2, fmt, preset, order, find)
            if t is not None:
                yield net2, t
        return
    ref = ExactRounding(fmt)
    vals, _ = float_forward(net, ref, {}, order)
    slots = closed_form.linear_slots(net, free)
    by_pos = {(s.node, s.unit, s.column): s for s in slots if s.kind == "weight"}
    any_member = Domain(fmt, Fraction(0), None, True)
    for slot in slots:
        node = net.node(slot.node)
        act: Activation = node.attr("activation")
        pre = net.node(node.inputs[0])
        for b in range(net.batch):
            for c in act.kinks:
                if not fmt.contains(c):
                    continue
                assigns: list[dict[int, Fraction]] = []
                if slot.kind == "bias":
                    other = [i for i in pre.inputs if net.node(i).op != "param"]
                    if len(other) != 1:
                        continue
                    acc0 = vals[other[0]].reshape(net.batch, -1)[b, slot.unit]
                    if acc0 is None:
                        continue
                    assigns = [
                        {slot.group: v * slot.sign}
                        for v in rounding_interval_members(fmt, dom, acc0, c)
                    ]
                elif order == "sequential" and pre.op == "linear":
                    x = vals[pre.inputs[0]].reshape(net.batch, -1)[b]
                    w = vals[pre.inputs[1]]
                    n = x.shape[0]
                    if slot.column != n - 1 or x[n - 1] is None or x[n - 1] == 0:
                        continue
                    prev = by_pos.get((slot.node, slot.unit, n - 2))
                    assigns = _last_weight(fmt, dom, any_member, ref, x, w, slot, prev, c)
                for a in assigns:
                    if tried >= limit:
                        return
                    tried += 1
                    net2 = with_groups(net, a, numbers=fmt)
                    t = touch_values(net2, fmt, preset, order, find)
                    if t is not None:
                        yield net2, t


def _last_weight(
    fmt: Format,
    dom: Domain,
    any_member: Domain,
    ref: ExactRounding,
    x: Any,
    w: Any,
    slot: closed_form.Slot,
    prev: closed_form.Slot | None,
    c: Fraction,
    tries: int = 8,
) -> list[dict[int, Fraction]]:
    """Sequential order: ``yhat = RNE(acc + RNE(x[n-1] w[n-1]))``.  Solve for the last
    weight; when no member hits the needed product, move the previous weight (if
    searched) a few members away and retry."""
    n = x.shape[0]
    u = slot.unit
    out: list[dict[int, Fraction]] = []
    steps: list[Fraction | None] = [w[u, n - 2] if n >= 2 else None]
    if prev is not None:
        up = down = w[u, n - 2]
        for _ in range(tries):
            up = domain_step(dom, up, 1) if up is not None else None
            down = domain_step(dom, down, -1) if down is not None else None
            steps += [v for v in (up, down) if v is not None]
    for w_prev in steps:
        acc: Fraction | None = None
        for k in range(n - 1):
            wk = w_prev if k == n - 2 else w[u, k]
            p = ref.mul(x[k], wk)
            acc = p if acc is None else ref.add(acc, p)
        if n >= 2 and acc is None:
            continue
        targets = [c] if acc is None else rounding_interval_members(fmt, any_member, acc, c)
        for target in targets:
            for v in product_members(fmt, dom, x[n - 1], target):
                a = {slot.group: v * slot.sign}
                if prev is not None and w_prev is not None and w_prev != w[u, n - 2]:
                    a[prev.group] = w_prev * prev.sign
                out.append(a)
        if out:
            return out
    return out
