"""The audit loop: one record per step, the totals, the JSON log.

A *step* is one minibatch at one parameter point: a training step of the
numpy MLP (the audit runs before the update), a replayed snapshot, or an
ONNX model at one VNN-LIB center.  At each step:

1. the float pass in the working precision, the float touches of every
   hidden pre-activation, classified exact/spurious, and the missed exact
   kinks (:func:`formal.audit.kinks.classify_touches`);
2. with a float touch: the float gradient again with the other preset
   (``closed``: ReLU'(0) = 1) and whether it changes (Bertoin et al.'s S);
3. with an exact kink: the engine's ndf/inc verdict of the vector output on
   the minibatch, re-verified by the kernel; else "no kinks";
4. the rank condition (ICLR 2024 Thm 5) on the float touches (as the paper
   checks it) and on the exact kinks; Clarke certified when there is no exact
   kink, when the engine certifies it (T4 or its strict LP), or by the rank
   condition on the exact kinks (the MLP's proxies lie in [D-, D+]);
5. with ``repair``: where the exact verdict (MSE with labels, else the vector
   output) is ndf, inc or unknown, a certified generalized gradient and where
   it differs from AD (:mod:`formal.audit.repair`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from formal.audit.kinks import classify_touches, exact_outputs, rank_condition
from formal.audit.mlp import (
    MLP,
    backward,
    format_of,
    forward,
    grads_equal,
    sgd,
    softmax_xent_grad,
)
from formal.audit.repair import RepairRecord, repair_step
from formal.audit.verdicts import NO_KINKS, StepVerdict, exact_verdict, mse_doc, network_doc
from formal.core.activations import get_activation, parse_preset

TOTAL_KEYS = (
    "steps",
    "float_kink_touches",
    "spurious_touches",
    "exact_touches",
    "missed_touches",
    "gradient_changes",
    "exact_kink_steps",
    "ndf_steps",
    "inc_steps",
    "mse_ndf_steps",
    "mse_inc_steps",
    "unknown_steps",
    "unverified_steps",
    "reverified_steps",
    "clarke_certified_steps",
    "rank_condition_steps",
    "touch_steps",
    "repaired_steps",
)


@dataclass(frozen=True)
class StepRecord:
    """What the audit found at one step."""

    step: int
    epoch: int
    float_touches: int
    exact_touches: int
    spurious_touches: int
    missed_touches: int
    touches_by_layer: tuple[int, ...]
    gradient_changed: bool
    verdict: StepVerdict
    mse_verdict: StepVerdict | None  # None: no labels (ONNX source)
    rank_condition_float: bool | None  # None: no float touch
    rank_condition_exact: bool | None  # None: no exact kink
    clarke_certified: bool
    clarke_by: str  # no-kinks | engine | rank | ""
    exact_samples: int
    loss: float | None
    repair: RepairRecord | None = None  # None: no --repair, or nothing to repair at this step

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the step."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "float_touches": self.float_touches,
            "exact_touches": self.exact_touches,
            "spurious_touches": self.spurious_touches,
            "missed_touches": self.missed_touches,
            "touches_by_layer": list(self.touches_by_layer),
            "gradient_changed": self.gradient_changed,
            "verdict": self.verdict.to_json(),
            "mse_verdict": None if self.mse_verdict is None else self.mse_verdict.to_json(),
            "rank_condition_float": self.rank_condition_float,
            "rank_condition_exact": self.rank_condition_exact,
            "clarke_certified": self.clarke_certified,
            "clarke_by": self.clarke_by,
            "exact_samples": self.exact_samples,
            "loss": None if self.loss is None or not math.isfinite(self.loss) else self.loss,
            "repair": None if self.repair is None else self.repair.to_json(),
        }


@dataclass(frozen=True)
class AuditResult:
    """Every step's record, the totals and the settings of the run."""

    settings: dict[str, Any]
    records: tuple[StepRecord, ...]
    mse: str = field(
        default="the MSE loss sum_b ||o_b - onehot(label_b)||^2 of the minibatch: decided as the "
        "weighted-sum objective with weights o(w) - onehot (same directional derivatives, same AD)"
    )

    def totals(self) -> dict[str, int]:
        """The counts over all steps (the keys of :data:`TOTAL_KEYS`)."""
        r = self.records
        return {
            "steps": len(r),
            "float_kink_touches": sum(s.float_touches for s in r),
            "spurious_touches": sum(s.spurious_touches for s in r),
            "exact_touches": sum(s.exact_touches for s in r),
            "missed_touches": sum(s.missed_touches for s in r),
            "gradient_changes": sum(s.gradient_changed for s in r),
            "exact_kink_steps": sum(s.verdict.method != "no-kinks" for s in r),
            "ndf_steps": sum(bool(s.verdict.in_ndf) for s in r),
            "inc_steps": sum(bool(s.verdict.in_inc) for s in r),
            "mse_ndf_steps": sum(bool(s.mse_verdict and s.mse_verdict.in_ndf) for s in r),
            "mse_inc_steps": sum(bool(s.mse_verdict and s.mse_verdict.in_inc) for s in r),
            "unknown_steps": sum(s.verdict.differentiable is None for s in r),
            "reverified_steps": sum(s.verdict.reverified is True for s in r),
            "unverified_steps": sum(
                v.reverified is False for s in r for v in (s.verdict, s.mse_verdict) if v
            ),
            "clarke_certified_steps": sum(s.clarke_certified for s in r),
            "rank_condition_steps": sum(s.rank_condition_float is True for s in r),
            "touch_steps": sum(s.float_touches > 0 for s in r),
            "repaired_steps": sum(bool(s.repair and s.repair.status == "repaired") for s in r),
        }

    def per_epoch(self) -> list[dict[str, int]]:
        """Counts per epoch (float touches, spurious, exact, missed, gradient changes)."""
        epochs = sorted({s.epoch for s in self.records})
        out = []
        for e in epochs:
            rs = [s for s in self.records if s.epoch == e]
            out.append(
                {
                    "epoch": e,
                    "steps": len(rs),
                    "float_kink_touches": sum(s.float_touches for s in rs),
                    "spurious_touches": sum(s.spurious_touches for s in rs),
                    "exact_touches": sum(s.exact_touches for s in rs),
                    "missed_touches": sum(s.missed_touches for s in rs),
                    "gradient_changes": sum(s.gradient_changed for s in rs),
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON log: the totals at top level, then settings, per-epoch counts, steps."""
        return {
            **self.totals(),
            "mse_loss": self.mse,
            "settings": self.settings,
            "per_epoch": self.per_epoch(),
            "records": [s.to_json() for s in self.records],
        }


def proxies_between(activation: str, proxy: str) -> bool:
    """Every proxy of ``proxy`` at the activation's kinks lies in [D-, D+] (rank certificates)."""
    act = get_activation(activation)
    preset = parse_preset(proxy)
    for c in act.kinks:
        p = preset.proxy(act, c)
        lo, hi = sorted((act.d_minus(c), act.d_plus(c)))
        if not lo <= p <= hi:
            return False
    return True


def audit_step(
    mlp: MLP,
    x: np.ndarray,
    labels: np.ndarray | None,
    *,
    step: int = 0,
    epoch: int = 0,
    proxy: str = "pytorch",
    timeout: float = 60.0,
    engine: bool = True,
    grads_out: list[Any] | None = None,
    repair: bool = False,
) -> StepRecord:
    """Audit one minibatch at the MLP's parameters (the parameters are not changed).

    ``labels``: the gradient compared under both presets is that of the mean
    cross-entropy; None compares the Jacobian of the vector output instead.
    ``grads_out``: when given, receives the pytorch-preset loss gradient (for the update).
    ``repair``: at an ndf, inc or unknown exact verdict, a certified generalized gradient.
    """
    fp = forward(mlp, x)
    hidden = len(mlp.weights) - 1
    t = classify_touches(mlp.weights, mlp.biases, mlp.activation, fp.zs[0], fp.ys[:hidden])
    loss: float | None = None
    if labels is not None:
        loss, dout = softmax_xent_grad(fp.out, labels)
        seeds = [dout]
    else:
        eye = np.eye(fp.out.shape[1], dtype=mlp.dtype)
        seeds = [np.broadcast_to(eye[o], fp.out.shape).copy() for o in range(fp.out.shape[1])]
    changed = False
    for k, seed in enumerate(seeds):
        g1 = backward(mlp, fp, seed, "pytorch")
        if grads_out is not None and k == 0:
            grads_out.append(g1)
        if t.n_float and not changed:
            changed = not grads_equal(g1, backward(mlp, fp, seed, "closed"))
    if t.n_exact_kinks and engine:
        doc = network_doc(mlp.weights, mlp.biases, mlp.activation, fp.zs[0], format_of(mlp.dtype))
        rows = sorted({int(r) for m in t.exact_kink for r in np.flatnonzero(m.any(axis=1))})
        verdict = exact_verdict(doc, rows, proxy, timeout=timeout)
        mse = None
        target, tdoc, tv = "output", doc, verdict
        if labels is not None:
            outs = exact_outputs(mlp.weights, mlp.biases, mlp.activation, fp.zs[0])
            mdoc = mse_doc(doc, outs, labels)
            mse = exact_verdict(mdoc, rows, proxy, timeout=timeout)
            target, tdoc, tv = "mse", mdoc, mse
        fixed: RepairRecord | None = None
        if repair and not (tv.differentiable and tv.ad_correct):
            scale = 2 if target == "mse" else 1  # L = sum ||o - t||^2: grad L = 2 grad h
            fixed = repair_step(
                tdoc, proxy, step=step, target=target, rows=rows, scale=scale, timeout=timeout
            )
    elif t.n_exact_kinks:
        verdict = StepVerdict(
            "skipped", None, None, None, None, None, "exact kinks; engine off", None, "", 0.0
        )
        mse = None if labels is None else verdict
        fixed = None
    else:
        verdict = NO_KINKS
        mse = None if labels is None else NO_KINKS
        fixed = None
    rc_float = (
        rank_condition(list(t.float_touch), [fp.zs[i] for i in range(hidden)])
        if t.n_float
        else None
    )
    rc_exact = rank_condition(list(t.exact_kink), list(t.exact_inputs)) if t.n_exact_kinks else None
    if not t.n_exact_kinks:
        clarke, by = True, "no-kinks"
    elif verdict.clarke:
        clarke, by = True, "engine"
    elif rc_exact and proxies_between(mlp.activation, proxy):
        clarke, by = True, "rank"
    else:
        clarke, by = False, ""
    return StepRecord(
        step,
        epoch,
        t.n_float,
        t.n_exact,
        t.n_spurious,
        t.n_missed,
        tuple(int(m.sum()) for m in t.float_touch),
        changed,
        verdict,
        mse,
        rc_float,
        rc_exact,
        clarke,
        by,
        t.exact_samples,
        loss,
        fixed,
    )


@dataclass(frozen=True)
class Batch:
    """One minibatch of a source: inputs, labels (or None), its epoch, and the parameters."""

    x: np.ndarray
    labels: np.ndarray | None
    epoch: int
    mlp: MLP | None = None  # a replayed snapshot; None: the training run's current parameters


def run_audit(
    batches: Iterable[Batch],
    *,
    mlp: MLP | None,
    lr: float = 0.0,
    settings: dict[str, Any],
    proxy: str = "pytorch",
    timeout: float = 60.0,
    engine: bool = True,
    progress: Callable[[Iterator[Batch]], Iterator[Batch]] | None = None,
    repair: bool = False,
) -> AuditResult:
    """Audit every batch; with ``mlp`` and ``lr > 0`` train it (SGD) after each audit."""
    records: list[StepRecord] = []
    it: Iterator[Batch] = iter(batches)
    if progress is not None:
        it = progress(it)
    for i, b in enumerate(it):
        net = b.mlp if b.mlp is not None else mlp
        assert net is not None, "a batch without parameters needs the training MLP"
        grads: list[Any] = []
        records.append(
            audit_step(
                net,
                b.x,
                b.labels,
                step=i,
                epoch=b.epoch,
                proxy=proxy,
                timeout=timeout,
                engine=engine,
                grads_out=grads,
                repair=repair,
            )
        )
        if b.mlp is None and lr > 0 and mlp is not None:
            sgd(mlp, grads[0], lr)
    return AuditResult(settings, tuple(records))


__all__ = ["TOTAL_KEYS", "AuditResult", "Batch", "StepRecord", "audit_step", "run_audit"]
