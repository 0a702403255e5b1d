"""formal: exact verdicts on automatic differentiation at machine-representable parameters."""

__version__ = "0.1.0"

from formal import (
    examples,
    ops,  # noqa: F401  (registers every op's rules)
)
from formal.engine.verdict import Verdict, check
from formal.errors import FormalError, InvalidArgument
from formal.io.formalnet import load

__all__ = ["FormalError", "InvalidArgument", "Verdict", "check", "examples", "load"]
