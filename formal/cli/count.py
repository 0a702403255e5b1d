"""``formal count``: |ndf_Omega| and |inc_Omega| on machine numbers."""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction
from typing import Any

import numpy as np

from formal.cli.common import add_network_args, dump_json, load_network, write_output
from formal.core.activations import parse_preset
from formal.core.network import Network
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
    p.add_argument(
        "--max-seconds",
        type=float,
        default=LIMIT_SECONDS,
        help="refuse a count estimated (from a measured pilot rate) to run longer than this "
        f"(default {LIMIT_SECONDS:g} s) unless --yes is given",
    )
    p.add_argument(
        "--yes", action="store_true", help="run even when the estimated time exceeds --max-seconds"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


LIMIT_SECONDS = 600.0
"""Default limit on a count's estimated time (``--max-seconds``); past it ``--yes`` is needed."""
ANNOUNCE_SECONDS = 5.0
"""Estimated times above this are announced on stderr before the count starts."""
PILOT_SECONDS = 0.3
"""Time spent measuring the rate of an exact enumeration (small counts are not measured)."""
SMALL = 20_000
"""Enumerations and samples up to this many points start without a pilot."""


def estimate_seconds(
    net: Network, method: str, proxy: str, *, samples: int, seed: int, max_points: int
) -> tuple[float, str] | None:
    """The estimated time of a count and how it was measured; None when not estimated.

    exact: |Omega| times the time per point of the same vectorized decision (and
    exact checks of what it leaves undecided) on random points of Omega; sample:
    the same sampler on a few samples, scaled; conditional: not estimated (its
    enumeration is bounded by ``--max-points`` and shows a progress bar).
    """
    from formal.count.counting import count_sample, members_scaled, with_point
    from formal.engine.batch import dense_chain
    from formal.engine.patterns import decide
    from formal.engine.verdict import check

    if method == "exact":
        size, W = net.numbers.size(), net.param_count()
        total = size**W
        if total <= SMALL or total > max_points:
            return None  # small, or refused by the count itself
        preset = parse_preset(proxy)
        vals, q = members_scaled(net.numbers)
        rng = np.random.default_rng(seed)
        chain = dense_chain(net)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < PILOT_SECONDS:
            n = 2048 if chain is not None else 1
            w = vals[rng.integers(0, len(vals), size=(n, W))]
            if chain is not None:
                bv = decide(chain, w, q, [preset])
                left = [int(i) for i in np.flatnonzero(bv.undecided)]
            else:
                left = list(range(n))
            for i in left:
                check(with_point(net, [Fraction(int(x), q) for x in w[i]]), preset)
            done += n
        rate = done / (time.perf_counter() - t0)
        return total / rate, f"{total} points at {rate:,.0f} points/s measured on {done} points"
    if method == "sample" and samples > 64:
        # one sample at a time, until the pilot's time is spent (at least one, at most 16)
        k, t0 = 0, time.perf_counter()
        while k < 16 and (k == 0 or time.perf_counter() - t0 < PILOT_SECONDS):
            count_sample(net, proxy, samples=1, seed=seed + k)
            k += 1
        per = (time.perf_counter() - t0) / k
        return samples * per, f"{samples} samples at {1 / per:,.2g} samples/s measured on {k}"
    return None


def duration(seconds: float) -> str:
    """Seconds in words: ``42 s``, ``7.5 min``, ``23.1 h``, ``4.0 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def guard_time(
    net: Network,
    method: str,
    proxy: str,
    *,
    samples: int,
    seed: int,
    max_points: int,
    limit: float,
    yes: bool,
) -> float | None:
    """Estimate the count's time; refuse past ``limit`` seconds unless ``yes``; announce it.

    Returns the estimate (None when the count is small or not estimated).
    """
    est = estimate_seconds(net, method, proxy, samples=samples, seed=seed, max_points=max_points)
    if est is None:
        return None
    secs, how = est
    if secs > limit and not yes:
        raise InvalidArgument(
            f"count --method {method} would take about {duration(secs)} ({how}), past the "
            f"limit of {duration(limit)} (--max-seconds {limit:g}); rerun with --yes to go "
            "ahead, or "
            + (
                "use --method sample (or conditional under hypothesis H)"
                if method == "exact"
                else "ask for fewer --samples"
            )
        )
    if secs > ANNOUNCE_SECONDS:
        print(f"count: estimated {duration(secs)} ({how})", file=sys.stderr, flush=True)
    return secs


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
    if not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        raise InvalidArgument(f"expected a positive --max-seconds, got {args.max_seconds}")
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    if args.numbers:
        net = reformat(net, parse_format(args.numbers))
    progress = sys.stderr.isatty()
    guard_time(
        net,
        args.method,
        args.proxy,
        samples=args.samples,
        seed=args.seed,
        max_points=args.max_points,
        limit=args.max_seconds,
        yes=args.yes,
    )
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
