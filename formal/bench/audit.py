"""Bench rows of the group "audit": a ``formal audit`` step against the plain training step.

The network is the 64-64 ReLU MLP (64-64-64-10) on the shipped digits with
B = 32.  Both sides run the same epoch of minibatches from the same initial
parameters in the same working precision, single-threaded BLAS
(threadpoolctl when installed): the baseline is the numpy SGD step of
:mod:`formal.audit.mlp` (forward, cross-entropy, backward, update); the
audited step adds the exact classification of every float kink touch (float64
filter with error bounds, exact Fractions where it cannot decide), the second
preset's gradient at steps with a touch, and the exact verdict at steps with an
exact kink.  The ratio is total audited time over total plain time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from formal.audit.mlp import init_mlp, sgd, train_step
from formal.audit.run import audit_step
from formal.audit.sources import load_digits, training_batches
from formal.bench.runner import bench_row

TARGET_RATIO = 3.0


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is in the test extra
        yield
        return
    with threadpool_limits(limits=1):
        yield


def audit_ratio(precision: str, repeat: int = 3) -> dict[str, Any]:
    """Per-step audit time vs the plain step (best of ``repeat`` epochs each)."""
    x, y = load_digits()
    batches = list(training_batches(x, y, batch_size=32, epochs=1, seed=0))
    base = init_mlp((64, 64, 64, 10), "relu", precision, np.random.default_rng(0))
    plain_best = audit_best = float("inf")
    touches = changes = kinked = 0
    with _one_thread():
        for _ in range(repeat):
            m = base.copy()
            t0 = time.perf_counter()
            for b in batches:
                assert b.labels is not None
                train_step(m, b.x, b.labels, 0.05)
            plain_best = min(plain_best, time.perf_counter() - t0)
            m = base.copy()
            touches = changes = kinked = 0
            t0 = time.perf_counter()
            for b in batches:
                g: list[Any] = []
                r = audit_step(m, b.x, b.labels, grads_out=g)
                sgd(m, g[0], 0.05)
                touches += r.float_touches
                changes += r.gradient_changed
                kinked += r.verdict.method != "no-kinks"
            audit_best = min(audit_best, time.perf_counter() - t0)
    n = len(batches)
    ratio = audit_best / plain_best
    return {
        "seconds": audit_best / n,
        "baseline_seconds": plain_best / n,
        "ratio": ratio,
        "target": f"ratio <= {TARGET_RATIO:g}",
        "ok": ratio <= TARGET_RATIO,
        "detail": (
            f"64-64-64-10 relu, digits, B=32, {n} steps, precision {precision}: audit "
            f"{1e3 * audit_best / n:.3f} ms/step, plain {1e3 * plain_best / n:.3f} ms/step, "
            f"ratio {ratio:.2f} (target <= {TARGET_RATIO:g}: "
            f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); float touches {touches}, "
            f"gradient changes {changes}, exact-kink steps {kinked}"
        ),
    }


@bench_row("audit-step-mlp64-b32-binary32", "audit")
def bench_audit_32() -> dict[str, Any]:
    """Audit step vs plain SGD step, binary32, 64-64 MLP on digits, B = 32."""
    return audit_ratio("32")


@bench_row("audit-step-mlp64-b32-binary16", "audit")
def bench_audit_16() -> dict[str, Any]:
    """Audit step vs plain SGD step, binary16 (touches: second-preset gradients), B = 32."""
    return audit_ratio("16")
