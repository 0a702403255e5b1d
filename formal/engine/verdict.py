"""decide(): the exact verdict at w, with its witness and the method that proved it.

Procedure (THEORY sections 2-3):

1. forward pass (rigorous float filter, exact fallback): no kink node means f
   is analytic near w and AD is correct (method ``no-kinks``);
2. AD's adjoints at the kink nodes, with the preset's proxies: all zero means
   differentiable and AD correct (Lemma Z, method ``adjoint-zero``);
3. under hypothesis H (derived from the graph), T2 decides: some non-zero
   kink adjoint means non-differentiable, witnessed by moving the topmost such
   unit's bias both ways (method ``bias-criterion``); T4 gives Bouligand/Clarke;
4. otherwise the kink-graph reduction and an LRA query decide linearity of
   ``d -> f'(w; d)`` (method ``kink-graph-lra``); when differentiable the
   true gradient is compared with AD exactly.  A Bouligand certificate is
   sought by a strict LP.

Every non-differentiability witness is re-verified by exact directional
evaluation on the network itself before it is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.kinks import KinkNode
from formal.core.network import Network, bias_structure
from formal.core.numbers import format_exact
from formal.core.qarray import QArray
from formal.engine.forward import (
    Forward,
    forward,
    gradient_ad,
    jvp,
    output_seeds,
    reverse,
)
from formal.engine.kinkgraph import KinkGraph, build_kink_graph, gradient_from_graph
from formal.engine.linearity import find_nonadditive, find_side_direction
from formal.errors import NotExact


@dataclass(frozen=True, slots=True)
class KinkReport:
    """One kink node for the report: where, which kink, AD's adjoint there."""

    node: str
    label: str
    sample: int
    kind: str
    value: Fraction
    proxy: Fraction | None
    adjoint: tuple[Fraction, ...]  # per output row (empty when not computed)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "unit": self.label,
            "sample": self.sample,
            "kind": self.kind,
            "kink": format_exact(self.value),
            "proxy": None if self.proxy is None else format_exact(self.proxy),
            "adjoint": [format_exact(a) for a in self.adjoint],
        }


@dataclass(frozen=True, slots=True)
class Witness:
    """Checkable evidence.  ``kind``:

    - ``non-additive``: ``f'(w; d1 + d2) != f'(w; d1) + f'(w; d2)`` at ``output``;
    - ``ad-mismatch``: f is differentiable (``proof``) and AD differs from the
      exact gradient at ``param`` for ``output``;
    - ``bouligand-direction``: a direction moving every kink strictly to AD's side.
    """

    kind: str
    output: str = ""
    param: str = ""
    d1: tuple[tuple[str, Fraction], ...] = ()
    d2: tuple[tuple[str, Fraction], ...] = ()
    values: tuple[tuple[str, Fraction], ...] = ()
    proof: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.output:
            out["output"] = self.output
        if self.param:
            out["param"] = self.param
        if self.d1:
            out["d1"] = {k: format_exact(v) for k, v in self.d1}
        if self.d2:
            out["d2"] = {k: format_exact(v) for k, v in self.d2}
        for k, v in self.values:
            out[k] = format_exact(v)
        if self.proof:
            out["proof"] = self.proof
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer at one parameter w.  ``None`` means undecided (with ``reason``)."""

    differentiable: bool | None
    ad_correct: bool | None
    in_ndf: bool | None
    in_inc: bool | None
    bouligand: bool | None
    clarke: bool | None
    kink_neurons: int
    parameters: int
    method: str
    numbers: str
    proxy: str
    seconds: float
    hypothesis_h: bool
    hypothesis_reason: str
    witness: Witness | None = None
    certificate: Witness | None = None
    kinks: tuple[KinkReport, ...] = ()
    reason: str = ""
    gradient: tuple[tuple[Fraction, ...], ...] | None = None
    ad_gradient: tuple[tuple[Fraction, ...], ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, labels: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "differentiable": self.differentiable,
            "ad_correct": self.ad_correct,
            "in_ndf": self.in_ndf,
            "in_inc": self.in_inc,
            "bouligand": self.bouligand,
            "clarke": self.clarke,
            "kink_neurons": self.kink_neurons,
            "parameters": self.parameters,
            "method": self.method,
            "witness": None if self.witness is None else self.witness.to_json(),
            "certificate": None if self.certificate is None else self.certificate.to_json(),
            "numbers": self.numbers,
            "proxy": self.proxy,
            "seconds": round(self.seconds, 6),
            "hypothesis_h": self.hypothesis_h,
            "hypothesis": self.hypothesis_reason,
            "kinks": [k.to_json() for k in self.kinks],
            "reason": self.reason or None,
        }
        if self.gradient is not None:
            out["gradient"] = [[format_exact(v) for v in row] for row in self.gradient]
        if self.ad_gradient is not None:
            out["ad_gradient"] = [[format_exact(v) for v in row] for row in self.ad_gradient]
        out.update(self.extra)
        return out


def _sparse(net: Network, d: dict[int, Fraction]) -> tuple[tuple[str, Fraction], ...]:
    par = net.parameterization()
    return tuple((par.label(j), v) for j, v in sorted(d.items()) if v)


def directional(fwd: Forward, ds: list[dict[int, Fraction]]) -> list[list[Fraction]]:
    """Exact f'(w; d) for sparse directions (column -> value): one list per direction."""
    out = jvp(fwd, ds)
    return [list(row) for row in out.to_fractions()]


def verify_nonadditive(
    fwd: Forward, d1: dict[int, Fraction], d2: dict[int, Fraction]
) -> Witness | None:
    """A witness where f'(d1 + d2) != f'(d1) + f'(d2), re-checked by exact directional
    evaluation on the network itself; None when the directions do not witness it."""
    dsum = dict(d1)
    for j, v in d2.items():
        dsum[j] = dsum.get(j, Fraction(0)) + v
    v1, v2, v3 = directional(fwd, [d1, d2, dsum])
    for o, (a, b, c) in enumerate(zip(v1, v2, v3)):
        if c != a + b:
            net = fwd.net
            return Witness(
                "non-additive",
                net.output_labels()[o],
                d1=_sparse(net, d1),
                d2=_sparse(net, d2),
                values=(("df_d1", a), ("df_d2", b), ("df_d1_plus_d2", c)),
            )
    return None


class Decider:
    """Runs the procedure for one network and preset."""

    def __init__(
        self, net: Network, preset: Preset, *, gradient: bool = False, timeout_ms: int = 60_000
    ):
        self.net = net
        self.preset = preset
        self.want_gradient = gradient
        self.timeout_ms = timeout_ms
        self.h = bias_structure(net)

    def base(self, **kw: Any) -> dict[str, Any]:
        return dict(
            parameters=self.net.param_count(),
            numbers=self.net.numbers.name,
            proxy=self.preset.name,
            hypothesis_h=self.h.holds,
            hypothesis_reason=self.h.reason,
            **kw,
        )

    def run(self) -> Verdict:
        t0 = time.perf_counter()
        try:
            fwd = forward(self.net, self.preset)
        except NotExact as exc:
            return Verdict(
                None,
                None,
                None,
                None,
                None,
                None,
                0,
                method="unknown",
                seconds=time.perf_counter() - t0,
                reason=str(exc),
                **self.base(),
            )
        verdict = self._decide(fwd)
        return _with_seconds(verdict, time.perf_counter() - t0)

    def _grad(self, fwd: Forward) -> tuple[tuple[tuple[Fraction, ...], ...] | None, str]:
        """The exact gradient when asked for, or None with the reason it is not rational."""
        if not self.want_gradient:
            return None, ""
        try:
            if not fwd.exact:
                fwd = forward(self.net, self.preset, use_filter=False)
            return _rows(gradient_ad(fwd)), ""
        except NotExact as exc:
            return None, f"the exact gradient is not rational: {exc}"

    def _decide(self, fwd: Forward) -> Verdict:
        net = self.net
        if not fwd.kinks:
            g, why = self._grad(fwd)
            return Verdict(
                True,
                True,
                False,
                False,
                True,
                True,
                0,
                method="no-kinks",
                seconds=0.0,
                gradient=g,
                reason=why,
                **self.base(),
            )
        rows = output_seeds(net).shape[0]
        ad_rev = reverse(fwd, {net.output: output_seeds(net)}, want_params=self.want_gradient)
        kadj = ad_rev.kink_adjoints  # (rows, K)
        reports = tuple(
            KinkReport(
                k.node,
                k.label(net),
                k.sample,
                k.kind,
                k.value,
                k.proxy if k.kind == "act" else None,
                tuple(kadj[:, i]),
            )
            for i, k in enumerate(fwd.kinks)
        )
        nonzero = [any(kadj[o, i] for o in range(rows)) for i in range(len(fwd.kinks))]
        K = len(fwd.kinks)
        if not any(nonzero):
            g = (
                _rows(net.parameterization().collect(ad_rev.params, rows))
                if self.want_gradient
                else None
            )
            return Verdict(
                True,
                True,
                False,
                False,
                True,
                True,
                K,
                method="adjoint-zero",
                seconds=0.0,
                kinks=reports,
                gradient=g,
                reason="every kink node has adjoint 0 (Lemma Z)",
                **self.base(),
            )
        if self.h.holds:
            return self._bias_criterion(fwd, kadj, reports)
        return self._kink_graph(fwd, reports)

    # -- T2 under H ------------------------------------------------------------
    def _bias_criterion(self, fwd: Forward, kadj: np.ndarray, reports) -> Verdict:
        net = self.net
        par = net.parameterization()
        K = len(fwd.kinks)
        for o in range(kadj.shape[0]):
            top = max((i for i in range(K) if kadj[o, i]), default=None)
            if top is None:
                continue
            k = fwd.kinks[top]
            bias = self.h.bias_of[k.node]
            col = int(par.groups[bias].reshape(-1)[k.index])
            d1 = {col: Fraction(1)}
            d2 = {col: Fraction(-1)}
            witness = verify_nonadditive(fwd, d1, d2)
            if witness is None:  # T2 guarantees this; never report an unverified claim
                return Verdict(
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    K,
                    method="bias-criterion",
                    seconds=0.0,
                    kinks=reports,
                    reason="T2 witness failed exact re-verification",
                    **self.base(),
                )
            kinds = {_proxy_kind(k2) for k2 in fwd.kinks}
            bouligand = True if kinds <= {"left", "right"} else None
            clarke = True if kinds <= {"left", "right", "between"} else None
            reason = "T2: the topmost kink unit with non-zero adjoint moves alone with its bias; T4 for Bouligand/Clarke"
            return Verdict(
                False,
                False,
                True,
                False,
                bouligand,
                clarke,
                K,
                method="bias-criterion",
                seconds=0.0,
                witness=witness,
                kinks=reports,
                reason=reason,
                **self.base(),
            )
        raise AssertionError("called with all-zero adjoints")

    # -- general: kink graph + LRA ------------------------------------------------
    def _kink_graph(self, fwd: Forward, reports) -> Verdict:
        net = self.net
        K = len(fwd.kinks)
        g = build_kink_graph(fwd)
        res = find_nonadditive(g, self.timeout_ms)
        if res.status == "unknown":
            return Verdict(
                None,
                None,
                None,
                None,
                None,
                None,
                K,
                method="kink-graph-lra",
                seconds=0.0,
                kinks=reports,
                reason=f"z3 returned unknown: {res.reason}",
                **self.base(),
            )
        if res.status == "sat":
            lam1, lam2 = res.model
            d1, d2 = g.direction(list(lam1)), g.direction(list(lam2))
            witness = verify_nonadditive(fwd, d1, d2)
            if witness is None:
                return Verdict(
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    K,
                    method="kink-graph-lra",
                    seconds=0.0,
                    kinks=reports,
                    reason="solver model failed exact re-verification",
                    **self.base(),
                )
            bouligand, cert = self._bouligand(g)
            return Verdict(
                False,
                False,
                True,
                False,
                bouligand,
                True if bouligand else None,
                K,
                method="kink-graph-lra",
                seconds=0.0,
                witness=witness,
                certificate=cert,
                kinks=reports,
                reason="d -> f'(w; d) is not additive on V",
                **self.base(),
            )
        # unsat: f is differentiable at w; compare AD with the exact gradient
        grad = gradient_from_graph(g)
        ad = gradient_ad(fwd)
        par = net.parameterization()
        outs = net.output_labels()
        differ = np.nonzero(grad.num * ad.den != ad.num * grad.den)  # exact cross-multiplication
        mismatch = (int(differ[0][0]), int(differ[1][0])) if len(differ[0]) else None
        proof = "z3 QF_LRA: no lam1, lam2 with Psi(t1 + t2) != Psi(t1) + Psi(t2) on V (unsat)"
        if mismatch is None:
            return Verdict(
                True,
                True,
                False,
                False,
                True,
                True,
                K,
                method="kink-graph-lra",
                seconds=0.0,
                kinks=reports,
                reason=proof,
                gradient=_rows(grad) if self.want_gradient else None,
                **self.base(),
            )
        o, j = mismatch
        witness = Witness(
            "ad-mismatch",
            outs[o],
            par.label(j),
            values=(("ad", ad.item((o, j))), ("gradient", grad.item((o, j)))),
            proof=proof,
        )
        # bouligand/clarke stay None (not certified): f differentiable at w does not make
        # its Clarke set {grad f(w)} (f need not be strictly differentiable), so AD may
        # still be a Bouligand subgradient -- see tests/catalogue.py "cusp".
        return Verdict(
            True,
            False,
            False,
            True,
            None,
            None,
            K,
            method="kink-graph-lra",
            seconds=0.0,
            witness=witness,
            kinks=reports,
            reason="differentiable, but AD differs from the gradient",
            gradient=_rows(grad) if self.want_gradient or grad.shape[1] <= 64 else None,
            ad_gradient=_rows(ad) if self.want_gradient or ad.shape[1] <= 64 else None,
            **self.base(),
        )

    def _bouligand(self, g: KinkGraph) -> tuple[bool | None, Witness | None]:
        sides: dict[int, int] = {}
        for k, node in enumerate(g.kinks):
            if node.kind == "tie":
                sides[k] = node.choice
                continue
            kind = _proxy_kind(node)
            if kind == "right":
                sides[k] = 1
            elif kind == "left":
                sides[k] = -1
            else:
                return None, None
        res = find_side_direction(g, sides, self.timeout_ms)
        if res.status != "sat":
            return None, None
        lam = list(res.model[0])
        t = g.t_from_lambda(lam)
        z = g.kink_outputs(t, sides)
        ys = g.kink_inputs(t, z)
        for k, node in enumerate(g.kinks):  # exact re-check of the strict inequalities
            if node.kind == "act":
                if not ys[g.row_of[(k, 0)]] * sides[k] > 0:
                    return None, None
            else:
                c = ys[g.row_of[(k, sides[k])]]
                if any(
                    not c > ys[g.row_of[(k, i)]] for i in range(len(node.inputs)) if i != sides[k]
                ):
                    return None, None
        d = g.direction(lam)
        return True, Witness(
            "bouligand-direction",
            d1=_sparse(self.net, d),
            proof="every kink node moves strictly to the side AD used (strict LP, z3 QF_LRA, re-checked exactly)",
        )


def _proxy_kind(k: KinkNode) -> str:
    if k.kind != "act":
        return "left"  # a tie's choice is always a one-sided (Bouligand) choice
    if k.proxy == k.d_minus:
        return "left"
    if k.proxy == k.d_plus:
        return "right"
    if min(k.d_minus, k.d_plus) <= k.proxy <= max(k.d_minus, k.d_plus):
        return "between"
    return "outside"


def _rows(q: QArray) -> tuple[tuple[Fraction, ...], ...]:
    return tuple(tuple(Fraction(v) for v in row) for row in q.to_fractions())


def _with_seconds(v: Verdict, seconds: float) -> Verdict:
    from dataclasses import replace

    return replace(v, seconds=seconds)


def check(
    net: Network, proxy: str | Preset = "pytorch", *, gradient: bool = False, timeout: float = 60.0
) -> Verdict:
    """Decide differentiability and AD correctness of ``net`` at its parameters.

    Examples
    --------
    >>> import formal
    >>> net = formal.examples.load_example("e1")
    >>> formal.check(net, proxy="right").in_inc
    True
    """
    preset = proxy if isinstance(proxy, Preset) else parse_preset(proxy)
    for node in net.activation_nodes():  # the preset must define every kink it may meet
        act = node.attr("activation")
        if node.attr("proxy") is None:
            for c in act.kinks:
                preset.proxy(act, c)
    return Decider(net, preset, gradient=gradient, timeout_ms=int(timeout * 1000)).run()


__all__ = ["Verdict", "Witness", "KinkReport", "check", "directional", "verify_nonadditive"]
