"""``formal reproduce``: every theorem of docs/theory.md as an executable check."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from formal.cli.common import dump_json, write_output


def register(sub: Any) -> None:
    """Add ``formal reproduce`` to the subcommands."""
    p = sub.add_parser(
        "reproduce",
        help="run every theorem check (exhaustive counts, conditional counts, exact verdicts) "
        "and print the evidence",
        description="Runs the check of every result (T1-T5, Lemma D, Lemma Z, the bias-free "
        "bound, E1, the ICLR 2024 cases, the open question).  Exit 1 when any check fails.",
    )
    p.add_argument(
        "--budget",
        default="quick",
        choices=("quick", "full"),
        help="quick (CI, < 60 s) or full (larger formats and networks; minutes)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", metavar="DIR", help="write density-vs-units PNG(s) to DIR")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only results whose name contains this text (repeatable)",
    )
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal reproduce``: run the theorem checks, print a table or JSON; exit 1 on a failure."""
    # the theorem catalogue loads on use, not whenever the parser is built
    from formal.report.text import format_reproduce, plot_densities
    from formal.theorems.catalogue import run_all

    t0 = time.perf_counter()
    tty = sys.stderr.isatty()

    def progress(name: str) -> None:
        if tty:
            print(f"\rreproduce: {name:<20}", end="", file=sys.stderr, flush=True)

    results = run_all(args.budget, args.only or None, progress)
    if tty:
        print(file=sys.stderr)
    plots = [str(p) for p in plot_densities(args.plots, args.budget)] if args.plots else []
    seconds = time.perf_counter() - t0
    failed = [r.name for r in results if not r.passed]
    if args.json:
        text = dump_json(
            {
                "budget": args.budget,
                "results": [r.to_json() for r in results],
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "failed_names": failed,
                "plots": plots,
                "seconds": round(seconds, 3),
            }
        )
    else:
        text = format_reproduce(results, seconds, args.budget)
        if plots:
            text += "\nplots: " + ", ".join(plots)
    write_output(text, args.output)
    return 1 if failed else 0
