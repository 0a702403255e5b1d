"""``formal search``: a machine-representable witness (kink, ndf, inc, float kink touch)."""

from __future__ import annotations

import argparse
from typing import Any

from formal.errors import InvalidArgument


def add_query_args(p: argparse.ArgumentParser, *, flag: str) -> None:
    """Options shared by ``formal search`` and ``formal export-smt``."""
    from formal.search.search import FINDS

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
        help="keep a tensor (0.weight) or an entry (0.weight[1,0]) fixed: at VALUE, or at its current value",
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
        help="format of the SMT search (default: the target if <= 8 bits, else e4m3 or the first small format embedded in it)",
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


def options_from(args: argparse.Namespace, timeout: float) -> Any:
    from formal.search.search import SearchOptions, parse_range

    lo = hi = None
    if args.range_:
        lo, hi = parse_range(args.range_)
    if timeout <= 0:
        raise InvalidArgument(f"expected a positive --timeout, got {timeout}")
    extra: dict[str, Any] = {}
    if getattr(args, "stages", None):
        stages = tuple(t.strip() for t in args.stages.split(",") if t.strip())
        known = ("given", "theorem", "closed-form", "smt")
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
    from formal.cli.check import add_network_args

    p = sub.add_parser(
        "search",
        help="search machine-representable parameters with a kink, ndf, inc, or a spurious/missed float kink touch",
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
    from formal.cli.check import load_network
    from formal.cli.main import dump_json, write_output
    from formal.search.search import search

    opt = options_from(args, args.timeout)
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    res = search(net, opt)
    text = dump_json(res.to_json()) if args.json else format_result(res)
    write_output(text, args.output)
    return 0


def format_result(res: Any) -> str:
    """Human-readable summary of a SearchResult."""
    lines = [
        f"{res.status}: {res.find} in {res.numbers} (proxy {res.proxy}) by {res.method}, {res.seconds:.3f} s"
    ]
    lines.append(f"  reason: {res.reason}")
    lines.append(f"  space: {res.space}")
    if res.search_format:
        lines.append(f"  search format: {res.search_format}")
    if res.network is not None:
        from formal.core.rebuild import bits_json, params_json

        vals, bits = params_json(res.network), bits_json(res.network)
        lines.append("  witness parameters (exact value, bits):")
        for name in res.network.param_order:
            lines.append(f"    {name} = {_flat(vals[name])}   {_flat(bits[name])}")
    if res.touch is not None:
        t = res.touch
        lines.append(
            f"  float touch at {t['unit']}: kink {t['kink']}, float value {t['float_value']} ({t['float_hex']}), exact value {t['exact_value']} ({t['order']} order)"
        )
    if res.verdict is not None:
        v = res.verdict
        lines.append(
            f"  verdict: differentiable={_b(v.differentiable)} ad_correct={_b(v.ad_correct)} in_ndf={_b(v.in_ndf)} in_inc={_b(v.in_inc)} kink_neurons={v.kink_neurons} ({v.method})"
        )
    return "\n".join(lines)


def _b(x: bool | None) -> str:
    return "unknown" if x is None else str(x).lower()


def _flat(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_flat(x) for x in v) + "]"
    return str(v)
