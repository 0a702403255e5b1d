"""decide(): the exact verdict at w, with its witness and the method that proved it.

Procedure (docs/theory.md sections 2-3):

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
from dataclasses import replace
from fractions import Fraction
from typing import Literal

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.kinks import KinkNode
from formal.core.network import Network, bias_structure
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
from formal.engine.outcome import (
    KinkReport,
    Method,
    Rows,
    Verdict,
    VerdictContext,
    Witness,
    WitnessKind,
)
from formal.errors import NotExact

ProxyKind = Literal["left", "right", "between", "outside"]
"""Where AD's proxy derivative sits relative to a kink's one-sided derivatives."""


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
    if any(dsum.values()):
        v1, v2, v3 = directional(fwd, [d1, d2, dsum])
    else:  # d1 + d2 = 0 (an opposite pair): f'(w; 0) = 0 needs no pass
        v1, v2 = directional(fwd, [d1, d2])
        v3 = [Fraction(0)] * len(v1)
    for o, (a, b, c) in enumerate(zip(v1, v2, v3)):
        if c != a + b:
            net = fwd.net
            return Witness(
                kind="non-additive",
                output=net.output_labels()[o],
                d1=_sparse(net, d1),
                d2=_sparse(net, d2),
                values=(("df_d1", a), ("df_d2", b), ("df_d1_plus_d2", c)),
            )
    return None


_T2_REASON = (
    "T2: the topmost kink unit with non-zero adjoint moves alone with its bias; "
    "T4 for Bouligand/Clarke"
)
_LRA_PROOF = "z3 QF_LRA: no lam1, lam2 with Psi(t1 + t2) != Psi(t1) + Psi(t2) on V (unsat)"
_BOULIGAND_PROOF = (
    "every kink node moves strictly to the side AD used (strict LP: exact substitution when "
    "V = Q^T, else z3 QF_LRA; re-checked exactly)"
)


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

    def context(self) -> VerdictContext:
        """The facts every verdict of this network and preset carries."""
        return VerdictContext(
            parameters=self.net.param_count(),
            numbers=self.net.numbers.name,
            proxy=self.preset.name,
            hypothesis_h=self.h.holds,
            hypothesis_reason=self.h.reason,
        )

    def run(self) -> Verdict:
        """The verdict at the network's parameters, timed."""
        t0 = time.perf_counter()
        try:
            fwd = forward(self.net, self.preset)
        except NotExact as exc:
            return Verdict.unknown(str(exc), seconds=time.perf_counter() - t0, **self.context())
        verdict = self._decide(fwd)
        return replace(verdict, seconds=time.perf_counter() - t0)

    def _grad(self, fwd: Forward) -> tuple[Rows | None, str]:
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
            return Verdict.correct("no-kinks", gradient=g, reason=why, **self.context())
        rows = output_seeds(net).shape[0]
        ad_rev = reverse(fwd, {net.output: output_seeds(net)}, want_params=self.want_gradient)
        kadj = ad_rev.kink_adjoints  # (rows, K)
        reports = tuple(
            KinkReport(
                node=k.node,
                label=k.label(net),
                sample=k.sample,
                kind=k.kind,
                value=k.value,
                proxy=k.proxy if k.kind == "act" else None,
                adjoint=tuple(kadj[:, i]),
            )
            for i, k in enumerate(fwd.kinks)
        )
        nonzero = [any(kadj[o, i] for o in range(rows)) for i in range(len(fwd.kinks))]
        if not any(nonzero):
            g = (
                _rows(net.parameterization().collect(ad_rev.params, rows))
                if self.want_gradient
                else None
            )
            return Verdict.correct(
                "adjoint-zero",
                kink_neurons=len(fwd.kinks),
                kinks=reports,
                gradient=g,
                reason="every kink node has adjoint 0 (Lemma Z)",
                **self.context(),
            )
        if self.h.holds:
            return self._bias_criterion(fwd, kadj, reports)
        return self._kink_graph(fwd, reports, kadj)

    # -- T2 under H ------------------------------------------------------------
    def _bias_criterion(
        self, fwd: Forward, kadj: np.ndarray, reports: tuple[KinkReport, ...]
    ) -> Verdict:
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
                return Verdict.unknown(
                    "T2 witness failed exact re-verification",
                    method="bias-criterion",
                    kink_neurons=K,
                    kinks=reports,
                    **self.context(),
                )
            kinds = {_proxy_kind(k2) for k2 in fwd.kinks}
            return Verdict.non_differentiable(
                "bias-criterion",
                witness=witness,
                bouligand=True if kinds <= {"left", "right"} else None,
                clarke=True if kinds <= {"left", "right", "between"} else None,
                kink_neurons=K,
                kinks=reports,
                reason=_T2_REASON,
                **self.context(),
            )
        raise AssertionError("called with all-zero adjoints")

    # -- general: kink graph + LRA ------------------------------------------------
    def _kink_graph(
        self, fwd: Forward, reports: tuple[KinkReport, ...], kadj: np.ndarray | None = None
    ) -> Verdict:
        net = self.net
        K = len(fwd.kinks)
        g = build_kink_graph(fwd, ad_kink_adjoints=kadj)
        res = find_nonadditive(g, self.timeout_ms)
        if res.status == "unknown":
            return Verdict.unknown(
                f"z3 returned unknown: {res.reason}",
                method="kink-graph-lra",
                kink_neurons=K,
                kinks=reports,
                **self.context(),
            )
        if res.status == "sat":
            lam1, lam2 = res.model
            d1, d2 = g.direction(list(lam1)), g.direction(list(lam2))
            witness = verify_nonadditive(fwd, d1, d2)
            if witness is None:
                return Verdict.unknown(
                    "solver model failed exact re-verification",
                    method="kink-graph-lra",
                    kink_neurons=K,
                    kinks=reports,
                    **self.context(),
                )
            bouligand, cert = self._bouligand(g)
            return Verdict.non_differentiable(
                "kink-graph-lra",
                witness=witness,
                bouligand=bouligand,
                clarke=True if bouligand else None,
                certificate=cert,
                kink_neurons=K,
                kinks=reports,
                reason="d -> f'(w; d) is not additive on V",
                **self.context(),
            )
        # unsat: f is differentiable at w; compare AD with the exact gradient
        grad = gradient_from_graph(g)
        ad = gradient_ad(fwd)
        par = net.parameterization()
        outs = net.output_labels()
        differ = np.nonzero(grad.num * ad.den != ad.num * grad.den)  # exact cross-multiplication
        mismatch = (int(differ[0][0]), int(differ[1][0])) if len(differ[0]) else None
        if mismatch is None:
            return Verdict.correct(
                "kink-graph-lra",
                kink_neurons=K,
                kinks=reports,
                reason=_LRA_PROOF,
                gradient=_rows(grad) if self.want_gradient else None,
                **self.context(),
            )
        o, j = mismatch
        witness = Witness(
            kind="ad-mismatch",
            output=outs[o],
            param=par.label(j),
            values=(("ad", ad.item((o, j))), ("gradient", grad.item((o, j)))),
            proof=_LRA_PROOF,
        )
        # bouligand/clarke stay None (not certified): f differentiable at w does not make
        # its Clarke set {grad f(w)} (f need not be strictly differentiable), so AD may
        # still be a Bouligand subgradient -- see tests/catalogue.py "cusp".
        return Verdict.ad_mismatch(
            "kink-graph-lra",
            witness=witness,
            kink_neurons=K,
            kinks=reports,
            reason="differentiable, but AD differs from the gradient",
            gradient=_rows(grad) if self.want_gradient or grad.shape[1] <= 64 else None,
            ad_gradient=_rows(ad) if self.want_gradient or ad.shape[1] <= 64 else None,
            **self.context(),
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
            kind="bouligand-direction", d1=_sparse(self.net, d), proof=_BOULIGAND_PROOF
        )


def _proxy_kind(k: KinkNode) -> ProxyKind:
    if k.kind != "act":
        return "left"  # a tie's choice is always a one-sided (Bouligand) choice
    if k.proxy == k.d_minus:
        return "left"
    if k.proxy == k.d_plus:
        return "right"
    if min(k.d_minus, k.d_plus) <= k.proxy <= max(k.d_minus, k.d_plus):
        return "between"
    return "outside"


def _rows(q: QArray) -> Rows:
    return tuple(tuple(Fraction(v) for v in row) for row in q.to_fractions())


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


__all__ = [
    "KinkReport",
    "Method",
    "ProxyKind",
    "Rows",
    "Verdict",
    "VerdictContext",
    "Witness",
    "WitnessKind",
    "check",
    "directional",
    "verify_nonadditive",
]
