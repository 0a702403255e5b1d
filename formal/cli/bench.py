"""``formal bench``: speed figures as ratios against same-process baselines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from formal.cli.common import dump_json, write_output


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
    p.add_argument("--issue", help="run only the rows of this issue number")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``formal bench``: run the selected rows, print them (text or JSON)."""
    # the bench rows load on use, not whenever the parser is built
    from formal.bench.runner import load_rows

    rows = load_rows()
    if args.issue:
        rows = [r for r in rows if r.issue == args.issue]
    if args.only:
        rows = [r for r in rows if any(t in r.name for t in args.only)]
    if args.list:
        write_output("\n".join(f"{r.issue:>3}  {r.name}" for r in rows), None)
        return 0
    results = []
    for r in rows:
        print(f"bench: {r.name} ...", file=sys.stderr, flush=True)
        out = r.run()
        results.append({"name": r.name, "issue": r.issue, **out})
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
    ratio_s = f"{ratio:10.2f}x" if isinstance(ratio, (int, float)) else " " * 11
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
