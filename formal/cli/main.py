"""The ``formal`` command: a thin layer over the library.

Subcommands live in ``formal/cli/<name>.py`` modules listed in
:data:`COMMAND_MODULES`; each defines ``register(subparsers)``.  Every
:class:`~formal.errors.FormalError` (and any malformed input) becomes one
line ``error: ...`` on stderr and exit code 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from formal.cli.common import check_output_path
from formal.errors import FormalError

COMMAND_MODULES = (
    "formal.cli.check",
    "formal.cli.bench",
    "formal.cli.count",
    "formal.cli.reproduce",
    "formal.cli.search",
    "formal.cli.export",
    "formal.cli.verify",
    "formal.cli.audit",
)


class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors become one ``error: ...`` line (exit 2)."""

    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    """A command-line usage error (bad option or value)."""


def version() -> str:
    """The installed distribution's version (package metadata), as ``formal.__version__``."""
    try:
        return importlib.metadata.version("formal")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source tree only
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``formal`` parser, with one subcommand per module of :data:`COMMAND_MODULES`."""
    parser = _Parser(
        prog="formal", description="Exact verdicts on AD at machine-representable parameters."
    )
    parser.add_argument("--version", action="version", version=f"formal {version()}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a subcommand not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 verdicts, 1 failed checks, 2 bad input)."""
    try:
        parser = build_parser()
        args = parser.parse_args(list(argv) if argv is not None else None)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if isinstance(getattr(args, "output", None), str):
            check_output_path(args.output)  # before any work: a bad -o wastes no run
        code = int(args.func(args))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of stdout went away (``formal check e1 --json | head -1``): end quietly,
        # as the Python docs recommend, with stdout pointed at devnull so the interpreter's
        # final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe
    except _UsageError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except FormalError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except RecursionError:
        print("error: the network is too deep for this build's recursion limit", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def one_line(message: str) -> str:
    """``message`` with every non-printable character escaped (``\\r``, ``\\x1e``, ...).

    An error names what the user wrote (a key, a path); control characters in
    it must not break the one-line ``error: ...`` contract.
    """
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message)


def run() -> None:
    """The console-script entry point: :func:`main`, then exit with its code."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
