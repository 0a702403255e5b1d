"""``formal count``: |ndf_Omega| and |inc_Omega| on machine numbers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from formal.cli.common import add_network_args, dump_json, load_network, write_output
from formal.core.activations import parse_preset
from formal.core.numbers import parse_format
from formal.errors import InvalidArgument


def register(sub: Any) -> None:
    """Add ``formal count`` to the subcommands."""
    p = sub.add_parser(
        "count",
        help="count non-differentiable (ndf) and AD-incorrect (inc) parameters "
        "among machine numbers",
        description="Exact counts by enumeration (small formats), conditional exact counts over "
        "the biases under hypothesis H, or Monte Carlo estimates with 95%% intervals; the T3 "
        "bound and the tightness formula go with every density.  With --numbers, every "
        "trainable parameter ranges over that format.",
    )
    add_network_args(p)
    p.add_argument(
        "--numbers",
        help="number format M (binary32, binary16, bfloat16, e4m3, e5m2, fp(e,m)); "
        "overrides the file's; the file's trainable values must be members",
    )
    p.add_argument(
        "--method",
        default="exact",
        choices=("exact", "conditional", "sample"),
        help="exact: enumerate Omega; conditional: closed form over the biases (needs H); "
        "sample: Monte Carlo (conditional under H)",
    )
    p.add_argument(
        "--samples", type=int, default=1000, help="samples for --method sample (default 1000)"
    )
    p.add_argument("--proxy", default="pytorch", help="proxy preset for inc (default pytorch)")
    p.add_argument("--seed", type=int, default=0, help="random seed for --method sample")
    p.add_argument(
        "--max-points", type=int, default=10**9, help="largest |Omega| enumerated by --method exact"
    )
    p.add_argument(
        "--slice",
        action="store_true",
        help="--method conditional: count the bias slice at the file's other parameters, "
        "even when enumerating them is feasible",
    )
    p.add_argument(
        "--cross-check",
        type=int,
        default=16,
        help="enumerated points re-decided by the core's check (default 16; 0 = none)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal count``: print the counts (text or JSON); exit 1 when a cross-check fails."""
    # the counting layer loads on use, not whenever the parser is built
    from formal.count.bias import count_conditional
    from formal.count.counting import CrossCheckError, count, reformat
    from formal.report.text import format_count

    if args.samples <= 0:
        raise InvalidArgument(f"expected --samples >= 1, got {args.samples}")
    if args.max_points <= 0:
        raise InvalidArgument(f"expected --max-points >= 1, got {args.max_points}")
    if args.cross_check < 0:
        raise InvalidArgument(f"expected --cross-check >= 0, got {args.cross_check}")
    parse_preset(args.proxy)
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    if args.numbers:
        net = reformat(net, parse_format(args.numbers))
    progress = sys.stderr.isatty()
    try:
        if args.method == "conditional":
            res = count_conditional(
                net,
                args.proxy,
                max_points=args.max_points,
                given="net" if args.slice else "auto",
                progress=progress,
            )
        else:
            res = count(
                net,
                args.method,
                args.proxy,
                samples=args.samples,
                seed=args.seed,
                max_points=args.max_points,
                progress=progress,
                cross_check=args.cross_check,
            )
    except CrossCheckError as exc:
        print(f"error: internal cross-check failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        text = dump_json({"network": net.source, **res.to_json()})
    else:
        text = format_count(res, net.source)
    write_output(text, args.output)
    return 0
