"""``audit()``: one audited run from its options (digits training, snapshots or ONNX)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from formal.audit.mlp import check_activation, dtype_of, format_name, init_mlp
from formal.audit.run import AuditResult, run_audit
from formal.audit.sources import (
    load_digits,
    load_snapshots,
    onnx_batches,
    snapshot_batches,
    training_batches,
)
from formal.core.activations import parse_preset
from formal.errors import InvalidArgument


def parse_hidden(text: str | Sequence[int]) -> tuple[int, ...]:
    """Hidden widths from "64,64" (or a sequence); each >= 1."""
    try:
        ws = tuple(int(t) for t in text.split(",")) if isinstance(text, str) else tuple(text)
    except ValueError:
        raise InvalidArgument(f"--hidden: expected widths like 64,64, got {text!r}") from None
    if not ws or any(w <= 0 for w in ws):
        raise InvalidArgument(f"--hidden: expected widths >= 1, got {text!r}")
    return ws


def audit(
    *,
    source: str = "digits",
    precision: str = "16",
    activation: str = "relu",
    hidden: str | Sequence[int] = "64,64",
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 0.05,
    seed: int = 0,
    max_steps: int | None = None,
    snapshots: str | None = None,
    model: str | None = None,
    specs: Sequence[str] = (),
    proxy: str = "pytorch",
    timeout: float = 60.0,
    engine: bool = True,
    progress: bool = False,
    repair: bool = False,
) -> AuditResult:
    """Audit a run: ``source`` digits (train), snapshots (replay) or onnx (VNN-LIB centers).

    ``repair``: at every step whose exact verdict is ndf, inc or unknown, a certified
    generalized gradient and where it differs from AD (docs/audit.md, "Repair").
    """
    dtype_of(precision)
    check_activation(activation)
    parse_preset(proxy)  # a bad preset fails before any work, not at the first exact kink
    if not timeout > 0:
        raise InvalidArgument(f"expected --timeout > 0, got {timeout}")
    if max_steps is not None and max_steps <= 0:
        raise InvalidArgument(f"expected --max-steps >= 1, got {max_steps}")
    if not (lr >= 0 and np.isfinite(lr)):
        raise InvalidArgument(f"expected --lr >= 0, got {lr}")
    settings: dict[str, Any] = {
        "source": source,
        "precision": precision,
        "numbers": format_name(precision),
        "proxy": proxy,
        "repair": repair,
        "second_preset": "closed (ReLU'(0) = 1; slope of the middle piece at both bounds)",
        "accumulation": "binary32 (BLAS order) then one rounding"
        if precision in ("16", "bf16")
        else f"{format_name(precision)} (BLAS order)",
    }
    mlp = None
    total: int | None
    if source == "digits":
        x, y = load_digits()
        widths = (x.shape[1], *parse_hidden(hidden), 10)
        mlp = init_mlp(widths, activation, precision, np.random.default_rng(seed))
        settings.update(
            activation=activation,
            widths=list(widths),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            init="PyTorch default U(+-1/sqrt(fan_in))",
            loss="cross-entropy",
        )
        batches: Any = training_batches(
            x, y, batch_size=batch_size, epochs=epochs, seed=seed, max_steps=max_steps
        )
        total = (len(x) // batch_size) * epochs
        total = min(total, max_steps) if max_steps else total
    elif source == "snapshots":
        if snapshots is None:
            raise InvalidArgument("--snapshots: expected a folder or an .npz file")
        x, y = load_digits()
        snaps = load_snapshots(snapshots, activation, precision)
        settings.update(
            activation=activation,
            snapshots=len(snaps),
            batch_size=batch_size,
            seed=seed,
            loss="cross-entropy",
        )
        batches = snapshot_batches(snaps, x, y, batch_size=batch_size, seed=seed)
        total = len(snaps)
    elif source == "onnx":
        if model is None or not specs:
            raise InvalidArgument("expected MODEL.onnx --spec A.vnnlib [B.vnnlib ...]")
        settings.update(model=model, specs=list(specs), loss="vector output (Jacobian compared)")
        batches = onnx_batches(model, specs, precision)
        total = len(specs)
    else:
        raise InvalidArgument(f"expected source digits, snapshots or onnx, got {source!r}")
    bar = None
    if progress:
        from tqdm import tqdm

        def bar(it: Any) -> Any:
            return tqdm(
                it,
                total=total,
                desc="audit",
                unit="step",
                file=sys.stderr,
                disable=None,
                leave=False,
            )

    return run_audit(
        batches,
        mlp=mlp,
        lr=lr if source == "digits" else 0.0,
        settings=settings,
        proxy=proxy,
        timeout=timeout,
        engine=engine,
        progress=bar,
        repair=repair,
    )


__all__ = ["audit", "parse_hidden"]
