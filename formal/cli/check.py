"""``formal check``: the verdict at one parameter vector."""

from __future__ import annotations

import argparse
from typing import Any

from formal.cli.common import add_network_args, dump_json, load_network, write_output
from formal.engine.verdict import check
from formal.errors import InvalidArgument
from formal.report.check import format_verdict


def register(sub: Any) -> None:
    """Add ``formal check`` to the subcommands."""
    p = sub.add_parser(
        "check", help="decide differentiability and AD correctness at the given parameters"
    )
    add_network_args(p)
    p.add_argument(
        "--proxy",
        default="pytorch",
        help="proxy preset: pytorch, pytorch-2.6, pytorch-2.13, jax, tensorflow, left, right, "
        "lambda=<t>, value=<p> (optionally ,tie=first|last)",
    )
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.add_argument(
        "--gradient", action="store_true", help="also compute and print the exact gradient"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="solver time-out in seconds (default 60)"
    )
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal check``: print the verdict (text or JSON); exit code 0."""
    if args.timeout <= 0:
        raise InvalidArgument(f"expected a positive --timeout, got {args.timeout}")
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    verdict = check(net, args.proxy, gradient=args.gradient, timeout=args.timeout)
    if args.json:
        text = dump_json(verdict.to_json())
    else:
        text = format_verdict(net, verdict)
    write_output(text, args.output)
    return 0
