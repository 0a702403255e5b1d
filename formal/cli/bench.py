"""``formal bench``: speed figures as ratios against same-process baselines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from formal.cli.common import dump_json, write_output
from formal.errors import InvalidArgument


def register(sub: Any) -> None:
    """Add ``formal bench`` to the subcommands."""
    p = sub.add_parser(
        "bench", help="measure verdict/search/count speed against same-process baselines"
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only rows whose name contains this text (repeatable)",
    )
    p.add_argument(
        "--group",
        action="append",
        default=[],
        help="run only the rows of this group (repeatable): verdict, count, smt, models, scale",
    )
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal bench``: run the selected rows, print them (text or JSON)."""
    # the bench rows load on use, not whenever the parser is built
    from formal.bench.runner import load_rows

    rows = load_rows()
    groups = sorted({r.group for r in rows})
    bad = [g for g in args.group if g not in groups]
    if bad:
        raise InvalidArgument(f"expected --group from {', '.join(groups)}, got {bad[0]!r}")
    if args.group:
        rows = [r for r in rows if r.group in args.group]
    if args.only:
        rows = [r for r in rows if any(t in r.name for t in args.only)]
        if not rows:
            raise InvalidArgument(
                f"no bench row matches --only {' '.join(args.only)}; "
                "see `formal bench --list` for the rows"
            )
    if args.list:
        write_output("\n".join(f"{r.group:<8}  {r.name}" for r in rows), None)
        return 0
    results = []
    for r in rows:
        print(f"bench: {r.name} ...", file=sys.stderr, flush=True)
        out = r.run()
        results.append({"name": r.name, "group": r.group, **out})
    if args.json:
        write_output(dump_json({"rows": results}), None)
        return 0
    write_output("\n".join(line for res in results for line in _row_lines(res)), None)
    return 0


def _row_lines(res: dict[str, Any]) -> list[str]:
    """The text of one bench row: timing, baseline, ratio, target; its detail below."""
    if res.get("skipped"):
        return [f"{res['name']:<40} skipped: {res['skipped']}"]
    ratio = res.get("ratio")
    ratio_s = f"{ratio_text(ratio) + 'x':>11}" if isinstance(ratio, (int, float)) else " " * 11
    base = res.get("baseline_seconds")
    base_s = f"{base:.6f}s" if isinstance(base, (int, float)) else "-"
    ok = {True: "ok", False: "MISS", None: ""}[res.get("ok")]
    lines = [
        f"{res['name']:<40} {res.get('seconds', 0):.6f}s  baseline {base_s:<12} "
        f"ratio {ratio_s}  target {res.get('target', '-'):<16} {ok}"
    ]
    if res.get("detail"):
        lines.append(f"    {res['detail']}")
    return lines


def ratio_text(ratio: float) -> str:
    """A ratio with 3 significant digits (``0.00123``, ``4.56``, ``1.23e+04``)."""
    return f"{ratio:.3g}"
