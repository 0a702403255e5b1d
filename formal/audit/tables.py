"""The published tables, on the shipped digits: Bertoin et al. (NeurIPS 2021), ICLR 2024.

**Bertoin et al.**: the share of random initializations whose first epoch has
a minibatch where ReLU'(0) = 0 versus 1 changes the gradient.  Ours: a
64-w-10 ReLU MLP (one hidden layer of width w), PyTorch's default init, SGD
(lr 0.01) over one epoch of the digits (B = 32, 56 minibatches), the float
gradient with both presets compared bit for bit at every step.

**ICLR 2024 Scenario 1**: kink touches over training of two-hidden-layer
MLPs with ReLU6, HardTanh and HardSigmoid in binary32, and the rank
condition at each step with touches.  Ours: 64-256-64-10 on the digits
(B = 128, 14 minibatches per epoch), SGD lr 0.1 (1.0 for HardSigmoid, which
does not train at 0.1: its loss stays at 2.30).
Run keys encode every setting, so a results file never mixes settings.

Each run is one spec of :func:`bertoin_specs` / :func:`iclr_specs` and one
call of :func:`run_spec`; :mod:`formal.audit.sweep` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from formal.audit.mlp import init_mlp
from formal.audit.run import run_audit
from formal.audit.sources import load_digits, training_batches

BERTOIN_PUBLISHED: dict[str, dict[int, float | None]] = {
    "16": {16: 33.3, 64: 100.0, 256: 100.0, 512: 100.0, 1024: 100.0},
    "32": {16: 2.1, 64: 16.3, 256: 47.8, 512: 58.2, 1024: 87.3},
    "64": {16: 0.0, 64: 0.0, 256: 0.0, 512: 0.0, 1024: 0.0},
}
"""Bertoin et al. (MNIST): percent of initializations with a gradient change in epoch 1."""

ICLR_PUBLISHED = {"relu6": 0.0, "hardtanh": 9.8, "hardsigmoid": 13.8}
"""ICLR 2024 (MNIST 784-256-64-10, PyTorch binary32): average kink touches over training."""

ICLR_PUBLISHED_EVALUATIONS = 20 * 469 * 128 * (256 + 64)
"""Hidden pre-activations evaluated in one published run, assuming 20 epochs of 469
minibatches of 128 (60,000 MNIST images) and 256 + 64 hidden units."""

BERTOIN_WIDTHS = (16, 64, 256)
BERTOIN_FULL_WIDTHS = (16, 64, 256, 512, 1024)
PRECISIONS = ("16", "32", "64")


def bertoin_specs(
    seeds: int,
    *,
    full: bool = False,
    widths: Sequence[int] | None = None,
    precisions: Sequence[str] = PRECISIONS,
    batch_size: int = 32,
    max_steps: int | None = None,
) -> list[dict[str, Any]]:
    """One spec per (precision, width, seed)."""
    ws = tuple(widths) if widths else (BERTOIN_FULL_WIDTHS if full else BERTOIN_WIDTHS)
    return [
        {
            "key": f"bertoin/{p}/w{w}/b{batch_size}"
            + (f"/m{max_steps}" if max_steps else "")
            + f"/s{s}",
            "table": "bertoin",
            "precision": p,
            "width": w,
            "seed": s,
            "batch_size": batch_size,
            "max_steps": max_steps,
        }
        for p in precisions
        for w in ws
        for s in range(seeds)
    ]


ICLR_LR = {"relu6": 0.1, "hardtanh": 0.1, "hardsigmoid": 1.0}
"""SGD learning rates of our ICLR analog: HardSigmoid does not train at 0.1 (loss stays 2.30)."""


def iclr_specs(
    seeds: int,
    *,
    epochs: int = 5,
    activations: Sequence[str] = tuple(ICLR_PUBLISHED),
    hidden: tuple[int, int] = (256, 64),
    batch_size: int = 128,
    max_steps: int | None = None,
) -> list[dict[str, Any]]:
    """One spec per (activation, seed)."""
    return [
        {
            "key": f"iclr/{a}/e{epochs}/h{hidden[0]}x{hidden[1]}/b{batch_size}"
            + f"/lr{ICLR_LR.get(a, 0.1)}"
            + (f"/m{max_steps}" if max_steps else "")
            + f"/s{s}",
            "lr": ICLR_LR.get(a, 0.1),
            "table": "iclr",
            "activation": a,
            "seed": s,
            "epochs": epochs,
            "hidden": list(hidden),
            "batch_size": batch_size,
            "max_steps": max_steps,
        }
        for a in activations
        for s in range(seeds)
    ]


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one table spec (deterministic in the spec); the result carries the spec's key."""
    x, y = load_digits()
    seed = int(spec["seed"])
    rng = np.random.default_rng(seed)
    if spec["table"] == "bertoin":
        widths = (64, int(spec["width"]), 10)
        mlp = init_mlp(widths, "relu", spec["precision"], rng)
        epochs, lr, engine = 1, 0.01, False
    else:
        h1, h2 = spec["hidden"]
        mlp = init_mlp((64, h1, h2, 10), spec["activation"], "32", rng)
        epochs, lr, engine = int(spec["epochs"]), float(spec["lr"]), True
    batches = training_batches(
        x,
        y,
        batch_size=int(spec["batch_size"]),
        epochs=epochs,
        seed=seed,
        max_steps=spec.get("max_steps"),
    )
    res = run_audit(batches, mlp=mlp, lr=lr, settings=dict(spec), engine=engine)
    tot = res.totals()
    touch_steps = tot["touch_steps"]
    return {
        "key": spec["key"],
        **tot,
        "changed": tot["gradient_changes"] > 0,
        "rank_condition_all": tot["rank_condition_steps"] == touch_steps,
        "final_loss": res.records[-1].loss if res.records else None,
    }


def bertoin_table(results: Sequence[dict[str, Any]], specs: Sequence[dict[str, Any]]) -> dict:
    """Percent of seeds with a gradient change, per precision and width, beside the published."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for s, r in zip(specs, results):
        cell = rows.setdefault(s["precision"], {}).setdefault(
            int(s["width"]), {"runs": 0, "changed": 0, "touches": 0, "spurious": 0}
        )
        cell["runs"] += 1
        cell["changed"] += bool(r["changed"])
        cell["touches"] += int(r["float_kink_touches"])
        cell["spurious"] += int(r["spurious_touches"])
    for p, row in rows.items():
        for w, cell in row.items():
            cell["percent"] = round(100.0 * cell["changed"] / cell["runs"], 1)
            cell["published"] = BERTOIN_PUBLISHED.get(p, {}).get(w)
    return {
        "table": "bertoin",
        "cells": {p: {str(w): c for w, c in r.items()} for p, r in rows.items()},
    }


def iclr_table(results: Sequence[dict[str, Any]], specs: Sequence[dict[str, Any]]) -> dict:
    """Average kink touches per run and rank-condition results, per activation."""
    rows: dict[str, dict[str, Any]] = {}
    for s, r in zip(specs, results):
        c = rows.setdefault(
            s["activation"],
            {
                "runs": 0,
                "touches": 0,
                "spurious": 0,
                "exact": 0,
                "missed": 0,
                "steps": 0,
                "touch_steps": 0,
                "rank_ok_steps": 0,
                "ndf_steps": 0,
                "inc_steps": 0,
                "clarke_certified_steps": 0,
            },
        )
        c["runs"] += 1
        c["touches"] += int(r["float_kink_touches"])
        c["spurious"] += int(r["spurious_touches"])
        c["exact"] += int(r["exact_touches"])
        c["missed"] += int(r["missed_touches"])
        c["steps"] += int(r["steps"])
        c.setdefault("evaluations", 0)
        c["evaluations"] += int(r["steps"]) * int(s["batch_size"]) * sum(s["hidden"])
        c["touch_steps"] += int(r["touch_steps"])
        c["rank_ok_steps"] += int(r["rank_condition_steps"])
        c["ndf_steps"] += int(r["ndf_steps"])
        c["inc_steps"] += int(r["inc_steps"])
        c["clarke_certified_steps"] += int(r["clarke_certified_steps"])
        c.setdefault("losses", []).append(r["final_loss"])
        c["lr"] = s["lr"]
    for a, c in rows.items():
        c["average_touches"] = round(c["touches"] / c["runs"], 2)
        c["final_loss"] = round(float(np.mean([v for v in c.pop("losses") if v is not None])), 3)
        c["published"] = ICLR_PUBLISHED.get(a)
        c["per_1e9"] = round(1e9 * c["touches"] / max(c["evaluations"], 1), 2)
        pub = ICLR_PUBLISHED.get(a)
        c["published_per_1e9"] = (
            None if pub is None else round(1e9 * pub / ICLR_PUBLISHED_EVALUATIONS, 2)
        )
    return {"table": "iclr", "cells": rows}


def table_text(table: dict[str, Any], settings: str) -> str:
    """A markdown table of ours beside the published numbers."""
    cells = table["cells"]
    if table["table"] == "bertoin":
        widths = sorted({int(w) for row in cells.values() for w in row})
        head = "| precision | " + " | ".join(f"width {w}" for w in widths) + " |"
        lines = [head, "|---|" + "---|" * len(widths)]
        for p in sorted(cells, key=lambda s: int(s)):
            parts = []
            for w in widths:
                c = cells[p].get(str(w))
                if c is None:
                    parts.append("-")
                    continue
                pub = "?" if c["published"] is None else f"{c['published']:g}%"
                parts.append(f"{c['percent']:g}% ({c['changed']}/{c['runs']}; published {pub})")
            lines.append(f"| {p}-bit | " + " | ".join(parts) + " |")
        for p in sorted(cells, key=lambda s: int(s)):
            counts = []
            for w in widths:
                c = cells[p].get(str(w))
                counts.append(
                    "-" if c is None else f"{c['touches']} ({c['touches'] - c['spurious']} exact)"
                )
            lines.append(f"| {p}-bit touches | " + " | ".join(counts) + " |")
    else:
        lines = [
            "| activation | touches per run (ours) | published per run (MNIST) | per 10^9 "
            "pre-activations: ours / published | spurious / exact / missed | steps with "
            "touches: rank condition holds | ndf / inc steps | Clarke certified steps | SGD lr, "
            "final loss |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for a, c in cells.items():
            lines.append(
                f"| {a} | {c['average_touches']:g} ({c['runs']} runs) | {c['published']:g} | "
                f"{c['per_1e9']:g} / {c['published_per_1e9']:g} | "
                f"{c['spurious']} / {c['exact']} / {c['missed']} | "
                f"{c['rank_ok_steps']} of {c['touch_steps']} | {c['ndf_steps']} / "
                f"{c['inc_steps']} | {c['clarke_certified_steps']} of {c['steps']} | "
                f"{c['lr']:g}, {c['final_loss']:g} |"
            )
    return "\n".join(lines) + f"\n\nsettings: {settings}\n"


__all__ = [
    "BERTOIN_PUBLISHED",
    "ICLR_PUBLISHED",
    "bertoin_specs",
    "bertoin_table",
    "iclr_specs",
    "iclr_table",
    "run_spec",
    "table_text",
]
