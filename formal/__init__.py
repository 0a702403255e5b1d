"""formal: exact verdicts on automatic differentiation at machine-representable parameters."""

__version__ = "0.1.0"
