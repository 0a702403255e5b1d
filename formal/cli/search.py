"""``formal search``: a machine-representable witness (kink, ndf, inc, float kink touch)."""

from __future__ import annotations

import argparse
from typing import Any

from formal.cli.common import add_network_args, dump_json, load_network, write_output
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
        "--stages", help="comma-separated stages to run (default given,theorem,closed-form,smt)"
    )


def options_from(args: argparse.Namespace, timeout: float) -> SearchOptions:
    """The :class:`SearchOptions` of the parsed query options (checked)."""
    lo = hi = None
    if args.range_:
        lo, hi = parse_range(args.range_)
    if timeout <= 0:
        raise InvalidArgument(f"expected a positive --timeout, got {timeout}")
    extra: dict[str, Any] = {}
    if getattr(args, "stages", None):
        stages = tuple(t.strip() for t in args.stages.split(",") if t.strip())
        known = STAGES
        bad = [t for t in stages if t not in known]
        if bad or not stages:
            raise InvalidArgument(f"expected --stages from {', '.join(known)}, got {args.stages!r}")
        extra["stages"] = stages
    return SearchOptions(
        **extra,
        find=args.find,
        numbers=args.numbers,
        proxy=args.proxy,
        fix=tuple(args.fix or ()),
        free=tuple(args.free) if args.free is not None else None,
        lo=lo,
        hi=hi,
        subnormals=args.subnormals,
        timeout=timeout,
        seed=args.seed,
        search_format=args.search_format,
        order=args.order,
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
        type=float,
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
