"""Floating-point AD: what frameworks compute, and how it relates to the exact verdicts.

- :mod:`formal.floatad.arith`: the working precision (binary16, bfloat16,
  binary32, binary64), accumulation orders and emulated fma;
- :mod:`formal.floatad.acts`: activations' float formulas and backward rules;
- :mod:`formal.floatad.passes`: forward and reverse passes over a Network,
  recording float kink touches;
- :mod:`formal.floatad.classify`: :func:`classify` classifies each touch with
  the exact engine (exact / spurious / missed) -> :class:`FloatADReport`;
- :mod:`formal.floatad.frameworks`: measures PyTorch's and JAX's derivatives
  at every kink (imports them lazily) and renders the README proxy table.

See docs/floatad.md.
"""

from formal.floatad.arith import Arithmetic, arithmetic
from formal.floatad.classify import (
    FloatAD,
    FloatADReport,
    TouchRecord,
    classify,
    float_ad,
    seeds_and_value,
)
from formal.floatad.passes import FloatForward, FloatTouch, float_backward, float_forward

__all__ = [
    "Arithmetic",
    "FloatAD",
    "FloatADReport",
    "FloatForward",
    "FloatTouch",
    "TouchRecord",
    "arithmetic",
    "classify",
    "float_ad",
    "float_backward",
    "float_forward",
    "seeds_and_value",
]
