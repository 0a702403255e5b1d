"""The kernel's exact LP: is there a direction d with ``r_i . d > 0`` for every row?

Only the row space matters (the part of d orthogonal to every row changes no
``r_i . d``), so write ``d = sum_j mu_j r_j``: the system becomes ``G mu > 0`` with
the Gram matrix ``G = R R^T`` (m x m, m = number of rows), and by homogeneity
``G mu >= 1``.  Its alternative (Gordan) is ``y >= 0, sum y = 1, R^T y = 0``, and
``R^T y = 0`` iff ``G y = 0`` (``y^T G y = |R^T y|^2``).  Both are solved by phase 1
of a dense simplex over Fractions with Bland's rule (it terminates), and whichever
answer comes back is re-checked exactly: a witness d with every ``r_i . d > 0``, or
multipliers with ``sum y_i r_i = 0``.  Neither re-checking would be an internal error.
"""

from __future__ import annotations

from fractions import Fraction

from formal.verify.net import Vec

Matrix = list[list[Fraction]]


class LPError(Exception):
    """The LP's answer failed its exact re-check (an internal error of the kernel)."""


def _dot(a: Vec, b: Vec) -> Fraction:
    if len(b) < len(a):
        a, b = b, a
    return sum((x * b[k] for k, x in a.items() if k in b), Fraction(0))


def phase1(A: Matrix, b: list[Fraction]) -> list[Fraction] | None:
    """A solution x >= 0 of ``A x = b`` (b >= 0), or None when there is none.

    Phase 1 of the simplex method: minimize the sum of one artificial variable per
    row, exactly, with Bland's rule (smallest index enters and leaves).
    """
    m = len(A)
    n = len(A[0]) if m else 0
    if any(v < 0 for v in b):
        raise ValueError("phase1 expects b >= 0")
    # tableau rows: [A | I | b]; basis: artificials n .. n+m-1
    T = [list(A[i]) + [Fraction(int(i == j)) for j in range(m)] + [b[i]] for i in range(m)]
    basis = [n + i for i in range(m)]
    width = n + m
    # reduced costs of the objective sum(artificials): c_j - sum_i T[i][j] over basic rows
    cost = [-sum((T[i][j] for i in range(m)), Fraction(0)) for j in range(n)]
    cost += [Fraction(0)] * m + [-sum(b, Fraction(0))]
    while True:
        enter = next((j for j in range(width) if cost[j] < 0), None)
        if enter is None:
            break
        best: tuple[Fraction, int, int] | None = None
        for i in range(m):
            a = T[i][enter]
            if a > 0:
                key = (T[i][-1] / a, basis[i], i)
                if best is None or key < best:
                    best = key
        if best is None:  # unbounded below cannot happen (the objective is >= 0)
            raise LPError("phase 1 is unbounded")
        r = best[2]
        piv = T[r][enter]
        T[r] = [v / piv for v in T[r]]
        for i in range(m):
            f = T[i][enter]
            if i != r and f:
                Ti, Tr = T[i], T[r]
                T[i] = [x - f * y for x, y in zip(Ti, Tr)]
        f = cost[enter]
        cost = [x - f * y for x, y in zip(cost, T[r])]
        basis[r] = enter
    if cost[-1] != 0:  # the minimum of sum(artificials) is -cost[-1] > 0: infeasible
        return None
    x = [Fraction(0)] * n
    for i, j in enumerate(basis):
        if j < n:
            x[j] = T[i][-1]
    return x


def gram(rows: list[Vec]) -> Matrix:
    """``G[i][j] = r_i . r_j``."""
    m = len(rows)
    G = [[Fraction(0)] * m for _ in range(m)]
    for i in range(m):
        for j in range(i, m):
            G[i][j] = G[j][i] = _dot(rows[i], rows[j])
    return G


def strictly_feasible(rows: list[Vec]) -> Vec | None:
    """A direction d with every ``r . d > 0``, or None (proved by exact Gordan multipliers)."""
    if not rows:
        return {}
    m = len(rows)
    G = gram(rows)
    # G mu >= 1 with mu = p - q free:  G p - G q - s = 1,  p, q, s >= 0
    A = [G[i] + [-v for v in G[i]] + [Fraction(-int(i == j)) for j in range(m)] for i in range(m)]
    x = phase1(A, [Fraction(1)] * m)
    if x is not None:
        mu = [x[j] - x[m + j] for j in range(m)]
        d: Vec = {}
        for c, r in zip(mu, rows):
            if c:
                for k, v in r.items():
                    d[k] = d.get(k, Fraction(0)) + c * v
        d = {k: v for k, v in d.items() if v}
        if all(_dot(r, d) > 0 for r in rows):
            return d
        raise LPError("the LP's witness direction failed its exact re-check")
    y = gordan(rows, G)
    if y is None:
        raise LPError("neither a witness direction nor Gordan multipliers were found")
    return None


def gordan(rows: list[Vec], G: Matrix | None = None) -> list[Fraction] | None:
    """Multipliers ``y >= 0``, ``sum y = 1``, ``sum y_i r_i = 0`` (re-checked), or None."""
    m = len(rows)
    G = gram(rows) if G is None else G
    A = [list(G[i]) for i in range(m)] + [[Fraction(1)] * m]
    y = phase1(A, [Fraction(0)] * m + [Fraction(1)])
    if y is None:
        return None
    total: Vec = {}
    for c, r in zip(y, rows):
        if c:
            for k, v in r.items():
                total[k] = total.get(k, Fraction(0)) + c * v
    if any(total.values()) or any(v < 0 for v in y) or not any(y):
        raise LPError("the LP's Gordan multipliers failed their exact re-check")
    return y


__all__ = ["LPError", "gordan", "gram", "phase1", "strictly_feasible"]
