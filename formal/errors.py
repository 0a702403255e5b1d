"""One error hierarchy for `formal`.

Every error the library raises on bad input derives from :class:`FormalError`
and from the matching builtin (``ValueError``, ``TypeError``), so callers can
catch either.  Messages say what was expected and what was found; the CLI
prints them as ``error: <message>`` and exits with code 2.
"""

from __future__ import annotations


class FormalError(Exception):
    """Root of every error `formal` raises on purpose."""


class InvalidArgument(FormalError, ValueError):
    """An argument or input field is malformed: expected X, got name=value."""


class NotInFormat(InvalidArgument):
    """A value that must be a member of the number format M is not."""


class InputFileError(InvalidArgument):
    """A file cannot be read or parsed."""


class UnsupportedOp(FormalError, NotImplementedError):
    """An op, attribute or rule that the toolkit does not implement."""


class MissingRule(UnsupportedOp):
    """A per-op rule table has no entry for an op."""


class NotExact(FormalError, ArithmeticError):
    """A quantity needed for an exact verdict is not a rational number."""


__all__ = [
    "FormalError",
    "InvalidArgument",
    "NotInFormat",
    "InputFileError",
    "UnsupportedOp",
    "MissingRule",
    "NotExact",
]
