"""``formal audit``: what a training run's float arithmetic did at its kinks, step by step.

Forms:

- ``formal audit [--digits]``: train a small MLP on the shipped digits with
  numpy in ``--precision`` and audit every step;
- ``formal audit --snapshots DIR|FILE.npz``: replay parameter snapshots;
- ``formal audit MODEL.onnx --spec A.vnnlib [B.vnnlib ...]``: the model at the
  center of each box;
- ``formal audit table bertoin|iclr``: the published tables (Dask sweeps).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from formal.audit.audit import audit
from formal.audit.mlp import ACTIVATIONS, PRECISIONS
from formal.audit.plot import plot_counts, require_matplotlib
from formal.audit.run import AuditResult
from formal.audit.sweep import run_sweep
from formal.audit.tables import (
    bertoin_specs,
    bertoin_table,
    iclr_specs,
    iclr_table,
    run_spec,
    table_text,
)
from formal.cli.common import check_output_path, dump_json, write_output
from formal.errors import InvalidArgument


def register(sub: Any) -> None:
    """Add ``formal audit`` to the subcommands."""
    p = sub.add_parser(
        "audit",
        help="audit a training run: float kink touches (exact/spurious/missed), gradient "
        "changes under ReLU'(0)=1, exact ndf/inc verdicts, Clarke certificates; or "
        "'table bertoin|iclr' for the published tables",
    )
    p.add_argument(
        "target",
        nargs="*",
        help="nothing (digits), MODEL.onnx (with --spec), or 'table bertoin|iclr'",
    )
    p.add_argument("--digits", action="store_true", help="train on the shipped 8x8 digits")
    p.add_argument("--snapshots", help="a folder of .npz snapshots or one .npz (state_dict names)")
    p.add_argument("--spec", nargs="+", default=[], help="VNN-LIB files (ONNX source)")
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        help="working precision (default 16 for digits and snapshots, 32 for ONNX)",
    )
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    p.add_argument("--hidden", default="64,64", help="hidden widths (default 64,64)")
    p.add_argument("--epochs", type=int, help="training epochs (default 10; table iclr 5)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--proxy", default="pytorch", help="the engine's preset (default pytorch)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per solver query")
    p.add_argument("--no-engine", action="store_true", help="skip exact verdicts at kinked steps")
    p.add_argument(
        "--repair",
        action="store_true",
        help="where the exact verdict is ndf, inc or unknown: a kernel-certified generalized "
        "gradient (Bouligand element) and the entries where it differs from AD",
    )
    p.add_argument("--plot", help="write the counts per epoch as a PNG (needs matplotlib)")
    p.add_argument("-o", "--output", help="write the JSON log here")
    t = p.add_argument_group("tables")
    t.add_argument("--full", action="store_true", help="bertoin: widths 512 and 1024 too")
    t.add_argument("--seeds", type=int, default=20, help="runs per cell (default 20)")
    t.add_argument("--workers", type=int, default=2, help="local Dask workers (default 2)")
    t.add_argument("--scheduler", help="address of an existing Dask scheduler")
    t.add_argument("--serial", action="store_true", help="run in this process, no Dask")
    t.add_argument("--results", help="JSONL results file: finished runs are skipped (resume)")
    p.set_defaults(func=run)


def summary(res: AuditResult) -> str:
    """The text summary of an audit."""
    tot = res.totals()
    s = res.settings
    lines = [
        f"audit: {s.get('source')} in {s.get('numbers')}"
        + (f", widths {s['widths']}, {s.get('activation')}" if "widths" in s else ""),
        f"  steps                   {tot['steps']}",
        f"  float kink touches      {tot['float_kink_touches']} "
        f"(exact {tot['exact_touches']}, spurious {tot['spurious_touches']}); "
        f"missed exact kinks {tot['missed_touches']}",
        f"  gradient changes        {tot['gradient_changes']} steps "
        "(pytorch vs closed preset: ReLU'(0) = 0 vs 1)",
        f"  exact kink steps        {tot['exact_kink_steps']}: ndf {tot['ndf_steps']}, "
        f"inc {tot['inc_steps']}, unknown {tot['unknown_steps']}; ndf/inc re-verified by the "
        f"kernel {tot['reverified_steps']}, not re-verified {tot['unverified_steps']}",
        f"  Clarke certified        {tot['clarke_certified_steps']} of {tot['steps']} steps; "
        f"rank condition on the float touches holds at {tot['rank_condition_steps']} of "
        f"{tot['touch_steps']} steps with touches",
        f"  MSE loss                ndf {tot['mse_ndf_steps']}, inc {tot['mse_inc_steps']} "
        "(sum_b ||o_b - onehot_b||^2, decided as a weighted-sum objective; docs/audit.md)",
    ]
    if s.get("repair"):
        lines.append(
            f"  repaired steps          {tot['repaired_steps']} (AD not a Bouligand element "
            f"or the gradient; a certified one instead, proxy {s.get('proxy')})"
        )
        lines += [
            "    " + rec.repair.line()
            for rec in res.records
            if rec.repair is not None and rec.repair.status != "ad-element"
        ]
    return "\n".join(lines) + "\n"


def _table(args: argparse.Namespace, name: str) -> int:
    if args.seeds <= 0:
        raise InvalidArgument(f"expected --seeds >= 1, got {args.seeds}")
    if name == "bertoin":
        specs = bertoin_specs(args.seeds, full=args.full)
        settings = (
            f"64-w-10 ReLU MLP on the digits, PyTorch init, SGD lr 0.01, one epoch, B = 32, "
            f"{args.seeds} seeds per cell"
        )
    elif name == "iclr":
        specs = iclr_specs(args.seeds, epochs=args.epochs)
        settings = (
            f"64-256-64-10 MLPs on the digits, binary32, B = 128, SGD lr 0.1 (HardSigmoid 1.0), "
            f"{args.epochs} epochs, {args.seeds} seeds per activation"
        )
    else:
        raise InvalidArgument(f"expected 'table bertoin' or 'table iclr', got {name!r}")
    if args.results:
        check_output_path(args.results)
    from tqdm import tqdm

    bar = tqdm(
        total=len(specs),
        desc=f"table {name}",
        unit="run",
        file=sys.stderr,
        disable=None,
        leave=False,
    )

    def progress(n: int) -> None:
        bar.n = n
        bar.refresh()

    t0 = time.perf_counter()
    try:
        results = run_sweep(
            specs,
            run_spec,
            mode="serial" if args.serial else "dask",
            workers=args.workers,
            scheduler=args.scheduler,
            results=args.results,
            progress=progress,
        )
    finally:
        bar.close()
    table = bertoin_table(results, specs) if name == "bertoin" else iclr_table(results, specs)
    seconds = time.perf_counter() - t0
    text = table_text(table, settings) + f"({len(specs)} runs, {seconds:.1f} s)\n"
    if args.output:
        write_output(dump_json({**table, "settings": settings, "runs": results}), args.output)
    write_output(text, None)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the audit (or a table) and print the summary; the JSON log goes to -o."""
    target = list(args.target)
    if target and target[0] == "table":
        if len(target) != 2:
            raise InvalidArgument("expected 'formal audit table bertoin' or 'table iclr'")
        if args.epochs is None:
            args.epochs = 5
        return _table(args, target[1])
    if args.plot:
        require_matplotlib()
        check_output_path(args.plot)
    if args.epochs is None:
        args.epochs = 10
    onnx = bool(target)
    kw: dict[str, Any] = dict(
        precision=args.precision or ("32" if onnx else "16"),
        activation=args.activation,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_steps=args.max_steps,
        proxy=args.proxy,
        timeout=args.timeout,
        engine=not args.no_engine,
        progress=True,
        repair=args.repair,
    )
    if args.repair and args.no_engine:
        raise InvalidArgument("--repair needs the exact verdicts: drop --no-engine")
    if args.epochs <= 0 or args.batch_size <= 0:
        raise InvalidArgument(
            f"expected --epochs and --batch-size >= 1, got {args.epochs}, {args.batch_size}"
        )
    if target:
        if len(target) != 1 or Path(target[0]).suffix.lower() != ".onnx":
            raise InvalidArgument(f"expected one MODEL.onnx (with --spec), got {target}")
        if args.snapshots or args.digits:
            raise InvalidArgument("give one source: --digits, --snapshots or MODEL.onnx")
        if not args.spec:
            raise InvalidArgument(f"{target[0]}: expected --spec A.vnnlib [B.vnnlib ...]")
        res = audit(source="onnx", model=target[0], specs=args.spec, **kw)
    elif args.snapshots:
        if args.digits:
            raise InvalidArgument("give one source: --digits or --snapshots")
        res = audit(source="snapshots", snapshots=args.snapshots, **kw)
    else:
        if args.spec:
            raise InvalidArgument("--spec applies to an ONNX model")
        res = audit(source="digits", **kw)
    if args.output:
        write_output(dump_json(res.to_json()), args.output)
    if args.plot:
        plot_counts(res, args.plot)
    write_output(summary(res), None)
    return 0


__all__ = ["register", "run", "summary"]
