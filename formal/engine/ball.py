"""Rigorous ball enclosures (python-flint ``arb``) to rule out kinks near irrational values.

The exact engine works with rationals; sigmoid, tanh and a batch norm's
``1/sqrt(var + eps)`` have irrational values.  When the float64 filter cannot
rule out kinks downstream of such values, :func:`prove_no_kinks` evaluates the
network in ball arithmetic (midpoint-radius intervals with rigorous rounding,
at increasing precision) with the ops' ``ball`` rules: every activation
pre-activation whose ball excludes every kink is certainly off its kinks, and
every max-pool window whose maximum is certainly unique (or attained only by
provably identical entries, :mod:`formal.core.signatures`) has no tie.  If all
are certified, f is analytic at w* and AD is correct there.  A ball that still
contains a kink at the highest precision leaves the honest answer "unknown":
the value may equal the kink (a transcendental number cancelling exactly) and
no finite enclosure decides.

Examples
--------
>>> from formal.engine.ball import prove_no_kinks
>>> callable(prove_no_kinks)
True
"""

from __future__ import annotations

from typing import Any

import flint
import numpy as np

from formal.core.balls import Undecided
from formal.core.network import Network, Node
from formal.core.rules import walk
from formal.errors import MissingRule

PRECISIONS = (96, 320, 1200)


def evaluate(net: Network) -> dict[str, np.ndarray]:
    """Ball enclosures of every node at the current precision (raises :class:`Undecided`)."""
    env: dict[str, np.ndarray] = {}

    def step(node: Node, fn: Any, ins: list[np.ndarray]) -> np.ndarray:
        return fn(node, ins, net, env)

    try:
        return walk(net, "ball", step, env=env)
    except MissingRule as exc:
        raise Undecided(str(exc)) from None


def prove_no_kinks(net: Network) -> tuple[bool, str]:
    """(True, "") if ball arithmetic proves no kink node at w; else (False, why)."""
    saved = flint.ctx.prec
    why = ""
    try:
        for prec in PRECISIONS:
            flint.ctx.prec = prec
            try:
                evaluate(net)
                return True, ""
            except Undecided as exc:
                why = f"{exc} (ball arithmetic at {prec} bits)"
    finally:
        flint.ctx.prec = saved
    return False, why


__all__ = ["PRECISIONS", "Undecided", "evaluate", "prove_no_kinks"]
