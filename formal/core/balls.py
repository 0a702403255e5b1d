"""Ball arithmetic helpers (python-flint ``arb``) shared by the ops' ``ball`` rules.

A ball rule (registered by each op family, see :mod:`formal.core.rules`)
maps object arrays of ``arb`` balls enclosing its inputs' exact values to
balls enclosing its output's; :mod:`formal.engine.ball` drives them.  A rule
that cannot decide (a ball straddles a kink, a tie cannot be ruled out)
raises :class:`Undecided`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import flint
import numpy as np

from formal.core.network import Network
from formal.core.qarray import QArray


class Undecided(Exception):
    """An enclosure straddles a kink (or an op has no ball rule)."""


def ball(q: Fraction) -> Any:
    """The exact ball of a rational number."""
    return flint.arb(flint.fmpq(q.numerator, q.denominator))


def to_balls(q: QArray) -> np.ndarray:
    """Object array of arb balls enclosing the exact values (at the current precision)."""
    den = int(q.den)
    flat = [flint.arb(flint.fmpq(int(n), den)) for n in q.num.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(q.shape)


def cached_balls(net: Network, key: str, q: QArray) -> np.ndarray:
    """:func:`to_balls` of a parameter or input, cached on the network per precision."""
    full = f"ball:{flint.ctx.prec}:{key}"
    hit = net.cache.get(full)
    if hit is None:
        hit = to_balls(q)
        net.cache[full] = hit
    return hit


def ball_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ball matrix product of 2-D object arrays (arb_mat: fast and rigorous)."""
    n, k = a.shape
    m = b.shape[1]
    if n == 0 or m == 0 or k == 0:
        z = np.empty((n, m), dtype=object)
        z[...] = flint.arb(0)
        return z
    prod = flint.arb_mat(n, k, a.reshape(-1).tolist()) * flint.arb_mat(k, m, b.reshape(-1).tolist())
    out = np.empty(n * m, dtype=object)
    out[:] = prod.entries()
    return out.reshape(n, m)


def ball_poly(p: tuple[Fraction, ...], y: Any) -> Any:
    """The polynomial with coefficients ``p`` (constant first) at ball ``y`` (Horner)."""
    acc = flint.arb(0)
    for c in reversed(p):
        acc = acc * y + ball(c)
    return acc


__all__ = ["Undecided", "ball", "ball_matmul", "ball_poly", "cached_balls", "to_balls"]
