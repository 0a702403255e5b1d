"""formal: exact verdicts on automatic differentiation at machine-representable parameters."""

__version__ = "0.1.0"

from . import examples
from .errors import FormalError, InvalidArgument
from .io.formalnet import load
from .verdict import Verdict, check

__all__ = ["FormalError", "InvalidArgument", "Verdict", "check", "examples", "load"]
