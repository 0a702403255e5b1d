"""``formal bench``: speed figures as ratios against same-process baselines."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
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
    from formal.bench.runner import load_rows
    from formal.cli.main import dump_json, write_output

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
    lines = []
    for res in results:
        if res.get("skipped"):
            lines.append(f"{res['name']:<40} skipped: {res['skipped']}")
            continue
        ratio = res.get("ratio")
        ratio_s = f"{ratio:10.2f}x" if isinstance(ratio, (int, float)) else " " * 11
        base = res.get("baseline_seconds")
        base_s = f"{base:.6f}s" if isinstance(base, (int, float)) else "-"
        ok = {True: "ok", False: "MISS", None: ""}[res.get("ok")]
        lines.append(
            f"{res['name']:<40} {res.get('seconds', 0):.6f}s  baseline {base_s:<12} ratio {ratio_s}  target {res.get('target', '-'):<16} {ok}"
        )
        if res.get("detail"):
            lines.append(f"    {res['detail']}")
    write_output("\n".join(lines), None)
    return 0
