"""``formal search``: a machine-representable witness (kink, ndf, inc, float kink touch)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from formal.cli.common import add_network_args, dump_json, load_network, seconds, write_output
from formal.errors import InvalidArgument
from formal.report.search import format_search
from formal.search.options import STAGES
from formal.search.search import FINDS, SearchOptions, parse_range, search


def add_query_args(p: argparse.ArgumentParser, *, flag: str) -> None:
    """Options shared by ``formal search`` and ``formal export-smt``."""
    p.add_argument(flag, dest="find", required=True, choices=FINDS, help="what to look for")
    p.add_argument("--numbers", help="target number format of the witness (default: the network's)")
    p.add_argument(
        "--proxy",
        default="pytorch",
        help="proxy preset for AD (pytorch, jax, tensorflow, left, right, lambda=<t>, value=<p>)",
    )
    p.add_argument(
        "--fix",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME[=VALUE]",
        help="keep a tensor (0.weight) or an entry (0.weight[1,0]) fixed: at VALUE, "
        "or at its current value",
    )
    p.add_argument(
        "--free",
        action="extend",
        nargs="+",
        default=None,
        metavar="NAME",
        help="search only these tensors/entries (all others keep their values)",
    )
    p.add_argument(
        "--range",
        dest="range_",
        metavar="LO:HI",
        help="magnitudes of searched values: w = 0 or LO <= |w| <= HI (HI may be empty)",
    )
    p.add_argument(
        "--subnormals", action="store_true", help="allow subnormal values (excluded by default)"
    )
    p.add_argument(
        "--search-format",
        help="format of the SMT search (default: the target if <= 8 bits, "
        "else e4m3 or the first small format embedded in it)",
    )
    p.add_argument(
        "--order",
        default="sequential",
        choices=("sequential", "pairwise"),
        help="summation order of the rounded semantics",
    )
    p.add_argument("--seed", type=int, default=0, help="z3 random seed")
    p.add_argument(
        "--stages", help=f"comma-separated stages to run (default {','.join(STAGES)})"
    )


def make_options(
    find: str,
    *,
    numbers: str | None = None,
    proxy: str = "pytorch",
    fix: Sequence[str] = (),
    free: Sequence[str] | None = None,
    range_: str | None = None,
    subnormals: bool = False,
    timeout: float = 60.0,
    seed: int = 0,
    search_format: str | None = None,
    order: str = "sequential",
    stages: str | Sequence[str] | None = None,
) -> SearchOptions:
    """The checked :class:`SearchOptions` of a query (shared by the CLI and ``formal.search``).

    ``stages``: None for every stage, else a comma-separated text or a sequence
    of stage names (an empty one is an error, not "every stage").
    """
    lo = hi = None
    if range_ is not None:
        lo, hi = parse_range(range_)
    if not (math.isfinite(timeout) and timeout > 0):
        raise InvalidArgument(f"expected a positive, finite --timeout, got {timeout}")
    if find not in FINDS:
        raise InvalidArgument(f"expected --find one of {', '.join(FINDS)}, got {find!r}")
    extra: dict[str, Any] = {}
    if stages is not None:
        items = stages.split(",") if isinstance(stages, str) else list(stages)
        chosen = tuple(t.strip() for t in items if t.strip())
        bad = [t for t in chosen if t not in STAGES]
        if bad or not chosen:
            raise InvalidArgument(
                f"expected --stages, a comma-separated list from {', '.join(STAGES)}, "
                f"got {stages if isinstance(stages, str) else ','.join(stages)!r}"
            )
        extra["stages"] = chosen
    return SearchOptions(
        **extra,
        find=find,
        numbers=numbers,
        proxy=proxy,
        fix=tuple(fix),
        free=tuple(free) if free is not None else None,
        lo=lo,
        hi=hi,
        subnormals=subnormals,
        timeout=timeout,
        seed=seed,
        search_format=search_format,
        order=order,
    )


def options_from(args: argparse.Namespace, timeout: float) -> SearchOptions:
    """The :class:`SearchOptions` of the parsed query options (checked)."""
    return make_options(
        args.find,
        numbers=args.numbers,
        proxy=args.proxy,
        fix=args.fix or (),
        free=args.free,
        range_=args.range_ or None,
        subnormals=args.subnormals,
        timeout=timeout,
        seed=args.seed,
        search_format=args.search_format,
        order=args.order,
        stages=getattr(args, "stages", None),
    )


def register(sub: Any) -> None:
    """Add ``formal search`` to the subcommands."""
    p = sub.add_parser(
        "search",
        help="search machine-representable parameters with a kink, ndf, inc, "
        "or a spurious/missed float kink touch",
    )
    add_network_args(p)
    add_query_args(p, flag="--find")
    p.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        help="time budget in seconds (default 60); past it the answer is 'unknown'",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal search``: print the result (text or JSON); exit code 0 whatever the status."""
    opt = options_from(args, args.timeout)
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    res = search(net, opt)
    text = dump_json(res.to_json()) if args.json else format_search(res)
    write_output(text, args.output)
    return 0
