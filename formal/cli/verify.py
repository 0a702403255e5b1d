"""``formal verify``: check a formal-cert/1 certificate with the independent kernel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from formal.errors import InputFileError, InvalidArgument
from formal.examples import example_names, example_path
from formal.verify.kernel import Rejected, verify


def register(sub: Any) -> None:
    """Add ``formal verify`` to the subcommands."""
    p = sub.add_parser(
        "verify",
        help="check a formal-cert/1 certificate with the independent kernel (exit 0 verified, "
        "1 rejected, 2 bad input)",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="[NET] CERT",
        help="the certificate (it embeds its network); with two arguments the first is a "
        "formal-net/1 file (or built-in example name) that must equal the embedded network",
    )
    p.set_defaults(func=run)


def _read(path: str) -> Any:
    p = Path(path)
    if not p.exists() and path in example_names():
        p = example_path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text, parse_float=str)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None


def run(args: argparse.Namespace) -> int:
    """Print ``verified: ...`` (exit 0) or ``rejected: ...`` (exit 1)."""
    if len(args.files) > 2:
        raise InvalidArgument("expected [NET] CERT: at most two files")
    cert = _read(args.files[-1])
    if len(args.files) == 2:
        net = _read(args.files[0])
        if not isinstance(cert, dict) or cert.get("network") != net:
            print(f"rejected: network: {args.files[0]} differs from the certificate's network")
            return 1
    try:
        res = verify(cert)
    except Rejected as exc:
        print(f"rejected: {exc}")
        return 1
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidArgument):
            raise
        raise InvalidArgument(f"malformed certificate: {exc!r}") from None
    print(f"verified: {res.verdict}: {res.summary}")
    return 0
