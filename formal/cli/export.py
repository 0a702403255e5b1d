"""``formal export-smt``: the search's solver query as an SMT-LIB2 benchmark file."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from formal.cli.common import add_network_args, load_network, seconds, write_output
from formal.cli.search import add_query_args, options_from
from formal.errors import InvalidArgument
from formal.search.export import export_query


def register(sub: Any) -> None:
    """Add ``formal export-smt`` to the subcommands."""
    p = sub.add_parser(
        "export-smt", help="write the SMT-LIB2 query of `formal search` (status confirmed by z3)"
    )
    add_network_args(p)
    add_query_args(p, flag="--query")
    p.add_argument(
        "--after-search",
        type=int,
        default=0,
        metavar="N",
        help="first replay up to N search rounds (verified non-witnesses blocked); "
        "an exhausted search then exports an UNSAT query",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        help="z3 time-out for confirming the status "
        "(default 60 s; past it the status is 'unknown')",
    )
    p.add_argument("-o", "--output", required=True, help="the .smt2 file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal export-smt``: write the query file; its status (by z3) goes to stderr."""
    if args.after_search < 0:
        raise InvalidArgument(f"expected --after-search N >= 0, got {args.after_search}")
    opt = options_from(args, args.timeout)
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    e = export_query(
        net,
        opt,
        source=args.net,
        timeout=args.timeout,
        after_search=args.after_search,
        command=_command(args),
    )
    write_output(e.text, args.output)
    print(
        f"wrote {args.output}: {e.logic}, status {e.status} (z3, {e.seconds:.3f} s)",
        file=sys.stderr,
    )
    return 0


def _command(args: argparse.Namespace) -> str:
    """The invocation, rebuilt from the parsed options (recorded in the file header)."""
    parts = [args.net, "--query", args.find, "--proxy", args.proxy]
    for flag, value in (
        ("--numbers", args.numbers),
        ("--search-format", args.search_format),
        ("--range", args.range_),
    ):
        if value:
            parts += [flag, value]
    for f in args.fix or ():
        parts += ["--fix", f]
    for f in args.free or ():
        parts += ["--free", f]
    if args.subnormals:
        parts.append("--subnormals")
    if args.order != "sequential":
        parts += ["--order", args.order]
    if args.after_search:
        parts += ["--after-search", str(args.after_search)]
    return shlex.join(parts + ["-o", args.output])
