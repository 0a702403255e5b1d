"""The results of docs/theory.md as executable statements.

Each :class:`Theorem` has a name, its statement, its hypotheses (checkable on
a network with :meth:`Theorem.applies`), the proof and test that go with it,
and :meth:`Theorem.check` which gathers evidence: exhaustive enumeration on
small formats, conditional counts on FP8, random networks, and exact verdicts
of the core.  A failed expectation (or any exception) makes the check fail
loudly; nothing is skipped.  Budgets: ``quick`` (CI, well under a minute in
total) and ``full`` (larger formats and networks; minutes).

The evidence functions live in :mod:`formal.theorems.evidence` and
:mod:`formal.theorems.evidence_cases`, the records in :mod:`formal.theorems.record`;
this module holds the catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from formal.core.network import Network, bias_structure
from formal.engine.batch import dense_chain
from formal.errors import InvalidArgument
from formal.theorems import evidence as ev
from formal.theorems import evidence_cases as evc
from formal.theorems.evidence_nets import t5_applies
from formal.theorems.record import (
    BUDGETS,
    CheckResult,
    CheckStatus,
    Evidence,
    Gather,
    Recorder,
)


def _always(net: Network) -> tuple[bool, str]:
    return True, "no hypothesis beyond the setting of docs/theory.md section 1"


def _h(net: Network) -> tuple[bool, str]:
    h = bias_structure(net)
    return h.holds, h.reason


def _h_b2(net: Network) -> tuple[bool, str]:
    """T4's second part: distinct biases (any B): H on the first input alone."""
    if net.batch == 1:
        return _h(net)
    one = replace(net, inputs=type(net.inputs)(net.inputs.num[:1], net.inputs.den), cache={})
    h = bias_structure(one)
    return h.holds, ("distinct biases; " + h.reason) if h.holds else h.reason


def _bias_free_dense(net: Network) -> tuple[bool, str]:
    chain = dense_chain(net)
    if chain is None:
        return False, "not a dense chain"
    if net.ties:
        return False, "tied parameters"
    for ly in chain.layers:
        if ly.weight not in net.trainable:
            return False, f"weight {ly.weight} is frozen"
    return True, "dense chain, every weight trainable and untied (biases optional)"


@dataclass(frozen=True)
class Theorem:
    """An executable statement: hypotheses, statement, proof, and a check."""

    name: str
    title: str
    statement: str
    hypotheses: str
    proof: str
    test: str
    gather: Gather
    applies_to: Callable[[Network], tuple[bool, str]] = _always
    tags: tuple[str, ...] = field(default_factory=tuple)
    cited: str = ""  # a published source: status "cited" (not "pass") when the evidence holds

    def applies(self, net: Network) -> tuple[bool, str]:
        """Do the hypotheses hold on this network? (True/False, why)."""
        return self.applies_to(net)

    def check(self, budget: str = "quick", cache: dict[str, Any] | None = None) -> CheckResult:
        """Gather the evidence at ``budget`` (quick or full); a crash or no evidence fails."""
        if budget not in BUDGETS:
            raise InvalidArgument(f"expected --budget quick or full, got budget={budget!r}")
        rec = Recorder()
        if cache is not None:
            rec.cache = cache
        t0 = time.perf_counter()
        try:
            self.gather(rec, budget)
        except Exception as exc:  # a crash is a failed check, never a skip
            rec.expect(False, f"the check raised {type(exc).__name__}: {exc}")
        if not rec.items:
            rec.expect(False, "the check gathered no evidence")
        status: CheckStatus = "fail" if rec.failures else ("cited" if self.cited else "pass")
        return CheckResult(
            self.name,
            self.title,
            status,
            self.hypotheses,
            self.statement,
            tuple(rec.items),
            time.perf_counter() - t0,
            self.proof,
            self.test,
        )


def catalogue() -> list[Theorem]:
    """Every result, in the order of docs/theory.md (plus our additions)."""
    T = "tests/test_theorems.py"
    return [
        Theorem(
            "Lemma D",
            "differentiability = linearity of d -> f'(w; d)",
            "f is differentiable at w iff d -> f'(w; d) is linear, and then grad_j = f'(w; e_j); "
            "linearity on the axes alone is not enough",
            "locally Lipschitz, directionally differentiable f "
            "(every network of docs/theory.md section 1)",
            "proofs/lemma-d.md",
            f"{T}::test_lemma_d",
            ev.lemma_d,
        ),
        Theorem(
            "Lemma Z",
            "zero kink adjoints => differentiable and AD correct",
            "if every kink node's AD adjoint is 0 (any proxies) then f is differentiable at w and "
            "AD(w) = grad f(w)",
            "any network",
            "proofs/lemma-z.md",
            f"{T}::test_lemma_z",
            ev.lemma_z,
        ),
        Theorem(
            "T1",
            "no incorrect set under H",
            "under H, inc(f) is empty whatever the proxies",
            "H: B = 1 and every kinked unit has its own trainable bias",
            "proofs/t1-t2.md",
            f"{T}::test_t1_t2_t3",
            ev.t1,
            _h,
        ),
        Theorem(
            "T2",
            "the bias criterion",
            "under H, w is in ndf(f) iff some kink neuron has a non-zero AD adjoint (any proxies)",
            "H",
            "proofs/t1-t2.md",
            f"{T}::test_t1_t2_t3",
            ev.t2,
            _h,
        ),
        Theorem(
            "T3",
            "size of ndf on machine numbers",
            "under H, |ndf_Omega| <= |M|^(W-1) sum_l N_l k_l, i.e. density <= sum_l N_l k_l / |M|",
            "H",
            "proofs/t3.md",
            f"{T}::test_t1_t2_t3",
            ev.t3,
            _h,
        ),
        Theorem(
            "T3 tightness",
            "the bound is attained to first order",
            "one hidden layer of N units, input 0, output sum_i v_i rho(b_i): density = "
            "1 - (1 - k_M (1 - 1/|M|) / |M|)^N exactly",
            "H, input 0, trainable hidden weights, biases and output weights",
            "proofs/t3.md",
            f"{T}::test_tightness",
            ev.tightness,
            _h,
        ),
        Theorem(
            "T4",
            "what AD computes on ndf",
            "under H: one-sided proxies give AD(w) in the Bouligand subdifferential, proxies "
            "between D- and D+ "
            "give AD(w) in the Clarke subdifferential",
            "H",
            "proofs/t4.md",
            f"{T}::test_t4",
            evc.t4,
            _h,
        ),
        Theorem(
            "T4 (B >= 2)",
            "what AD computes with a minibatch (cited)",
            "with B >= 2 and distinct biases, one lambda per layer still gives AD(w) in the "
            "Clarke subdifferential",
            "distinct biases, any B",
            "proofs/t4.md",
            f"{T}::test_t4",
            evc.t4_b2,
            _h_b2,
            cited="ICLR 2024, Theorem 4 (not proved in proofs/; checked by sampling only)",
        ),
        Theorem(
            "Bias-free bound",
            "ndf and inc without biases (docs/theory.md section 4)",
            "|ndf_Omega u inc_Omega| <= sum_(unit, sample) (k |M|^(W-1) + [0 in ndf(rho)] |{w : "
            "the unit's "
            "inputs are all 0}|)",
            "dense chain, every weight trainable and untied (units with a bias contribute the "
            "first term only)",
            "proofs/bias-free-bound.md",
            f"{T}::test_bias_free_bound",
            evc.bias_free_bound,
            _bias_free_dense,
        ),
        Theorem(
            "E1",
            "bias-free inc is non-empty",
            "f = relu(w2 relu(w1 x)), x = 1, at (0, -1): f = 0 nearby, AD df/dw1 = -p^2 for "
            "relu'(0) = p",
            "bias-free, B = 1",
            "proofs/e1.md",
            f"{T}::test_named_cases",
            evc.e1,
        ),
        Theorem(
            "Lemma 2",
            "tied weight (ICLR 2024)",
            "pre-activations (u, -u), objective z1 - z2 = u: AD = 2p, gradient 1: wrong unless p = "
            "1/2",
            "tied weight, no bias, B = 1",
            "proofs/lemma-2.md",
            f"{T}::test_named_cases",
            evc.lemma2,
        ),
        Theorem(
            "Lemma 3",
            "B = 2 breaks T1 (ICLR 2024)",
            "one bias b, X = (3, -3), HardSigmoid, batch sum: gradient 1/6, AD a + b for proxies "
            "(a, b)",
            "distinct bias, B = 2",
            "proofs/lemma-3.md",
            f"{T}::test_named_cases",
            evc.lemma3,
        ),
        Theorem(
            "Lemma 7",
            "max-pool ties (ICLR 2024)",
            "pre-activations (u + b, b, -u + b, b), max-pools {1,2}, {3,4}, objective m1 - m2 = u: "
            "AD (2, 0) "
            "first-index, (0, 0) second-index, (1, 0) mixed; gradient (1, 0)",
            "shared bias, max-pool",
            "proofs/lemma-7.md",
            f"{T}::test_named_cases",
            evc.lemma7,
        ),
        Theorem(
            "f1-f3",
            "App. H examples (ICLR 2024)",
            "f1 = g(w) - g(-w): AD 0, truth 1; f2 = g(w) - h(w): AD -1, truth 0; f3 = h(-h(w)): AD "
            "-1, truth 0 "
            "(g = relu with proxy 0, h = relu with proxy 1)",
            "ties / two proxies for one activation / nesting",
            "proofs/f1-f3.md",
            f"{T}::test_named_cases",
            evc.f123,
        ),
        Theorem(
            "T5",
            "anchored kinks: when bias-free AD is still right (ours)",
            "B = 1, dense, untied trainable weights.  A kink neuron is anchored if it has a "
            "trainable bias or a "
            "non-zero input (a frozen bias is no anchor).  (i) If every kink neuron is anchored, "
            "every side pattern is feasible, so where f is "
            "differentiable AD = grad f for all proxies in [D-, D+]; activations without a kink at "
            "0 (HardTanh, "
            "HardSigmoid, HardSwish) always are when no frozen bias sits on a non-zero kink.  "
            "(ii) With one-sided proxies such that rho(y) = 0 "
            "implies "
            "rho'(y) = 0 or a kink with proxy 0 (ReLU and ReLU6 with proxy 0 at 0), AD = grad f "
            "wherever f is "
            "differentiable.  So inc(f) is empty in these cases, at every depth and width",
            "B = 1, dense chain, untied trainable weights; biases trainable, absent or frozen "
            "off the non-zero kinks (else part (ii) only); the proxy conditions of (i) or (ii)",
            "proofs/t5-anchored.md",
            f"{T}::test_t5",
            evc.t5,
            t5_applies,
        ),
        Theorem(
            "Open question",
            "is inc empty for bias-free dense nets? (docs/theory.md section 4)",
            "for B = 1, <= 2 hidden layers of <= 2 units, each kinked activation, presets pytorch, "
            "left, right, "
            "lambda=1/2: exhaustive counts of inc_Omega on small formats, with witnesses",
            "bias-free dense, B = 1",
            "proofs/open-question.md",
            "tests/test_reproduce.py::test_open_question",
            evc.open_question,
            _bias_free_dense,
        ),
    ]


def get(name: str) -> Theorem:
    """The theorem of the catalogue named ``name`` (case-insensitive)."""
    for t in catalogue():
        if t.name.lower() == name.lower():
            return t
    raise InvalidArgument(
        f"expected a theorem name ({', '.join(t.name for t in catalogue())}), got {name!r}"
    )


def run_all(
    budget: str = "quick",
    only: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Run every check (sharing enumeration results between them)."""
    cache: dict[str, Any] = {}
    out = []
    for t in catalogue():
        if only and not any(o.lower() in t.name.lower() for o in only):
            continue
        if progress:
            progress(t.name)
        out.append(t.check(budget, cache))
    return out


__all__ = [
    "Theorem",
    "CheckResult",
    "Evidence",
    "Recorder",
    "catalogue",
    "get",
    "run_all",
    "BUDGETS",
]
