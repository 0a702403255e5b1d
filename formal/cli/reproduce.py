"""``formal reproduce``: every theorem of docs/theory.md as an executable check."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tqdm import tqdm

from formal.cli.common import dump_json, write_output
from formal.errors import InvalidArgument

if TYPE_CHECKING:
    from formal.theorems.record import CheckResult

Budget = Literal["quick", "full"]
BUDGETS: tuple[Budget, ...] = ("quick", "full")


@dataclass(frozen=True, slots=True)
class ReproduceResult:
    """The outcome of ``formal reproduce``: every theorem check run, the budget, the time."""

    budget: Budget
    results: tuple[CheckResult, ...]
    seconds: float
    plots: tuple[str, ...] = ()

    @property
    def failed_names(self) -> list[str]:
        """Names of the checks that failed."""
        return [r.name for r in self.results if r.failed]

    @property
    def cited_names(self) -> list[str]:
        """Names of the results that are cited, not checked."""
        return [r.name for r in self.results if r.status == "cited"]

    @property
    def ok(self) -> bool:
        """No check failed."""
        return not self.failed_names

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``formal reproduce --json``."""
        failed, cited = self.failed_names, self.cited_names
        return {
            "budget": self.budget,
            "results": [r.to_json() for r in self.results],
            "passed": sum(1 for r in self.results if r.passed),
            "cited": len(cited),
            "failed": len(failed),
            "cited_names": cited,
            "failed_names": failed,
            "plots": list(self.plots),
            "seconds": round(self.seconds, 3),
        }


def check_names(only: Sequence[str]) -> None:
    """Refuse an ``--only`` text that names no result (the error lists the valid names)."""
    from formal.theorems.catalogue import catalogue

    names = [t.name for t in catalogue()]
    for o in only:
        if not o.strip() or not any(o.lower() in n.lower() for n in names):
            raise InvalidArgument(
                f"expected --only to match a result name (case-insensitive substring) of "
                f"{', '.join(names)}; got {o!r}"
            )


def reproduce(
    budget: Budget = "quick", only: Sequence[str] | None = None, *, progress: bool = True
) -> ReproduceResult:
    """Run the theorem checks (those whose name contains a text of ``only``, if given).

    ``progress``: a tqdm bar on stderr (only when stderr is a terminal).
    """
    from formal.theorems.catalogue import catalogue, run_all

    if budget not in BUDGETS:
        raise InvalidArgument(f"expected budget quick or full, got {budget!r}")
    only = list(only or ())
    check_names(only)
    t0 = time.perf_counter()
    total = sum(
        1 for t in catalogue() if not only or any(o.lower() in t.name.lower() for o in only)
    )
    bar = tqdm(
        total=total,
        desc="reproduce",
        unit="result",
        file=sys.stderr,
        disable=None if progress else True,
        leave=False,
    )
    started = [False]

    def step(name: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_postfix_str(name)

    try:
        results = run_all(budget, only or None, step)
    finally:
        bar.close()
    return ReproduceResult(budget, tuple(results), time.perf_counter() - t0)


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
        choices=BUDGETS,
        help="quick (CI, < 60 s) or full (larger formats and networks; minutes)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", metavar="DIR", help="write density-vs-units PNG(s) to DIR")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only results whose name contains this text (repeatable; case-insensitive)",
    )
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal reproduce``: run the theorem checks, print a table or JSON; exit 1 on a failure."""
    # the theorem catalogue loads on use, not whenever the parser is built
    from formal.report.text import format_reproduce, plot_densities

    if args.plots and importlib.util.find_spec("matplotlib") is None:
        raise InvalidArgument(
            "--plots needs matplotlib: pip install 'formal[plots]' (or matplotlib)"
        )
    t0 = time.perf_counter()
    res = reproduce(args.budget, args.only)
    plots = [str(p) for p in plot_densities(args.plots, args.budget)] if args.plots else []
    res = ReproduceResult(res.budget, res.results, time.perf_counter() - t0, tuple(plots))
    if args.json:
        text = dump_json(res.to_json())
    else:
        text = format_reproduce(list(res.results), res.seconds, args.budget)
        if plots:
            text += "\nplots: " + ", ".join(plots)
    write_output(text, args.output)
    return 0 if res.ok else 1


__all__ = ["BUDGETS", "Budget", "ReproduceResult", "check_names", "register", "reproduce", "run"]
