"""Exact LP helpers: a small rational simplex, Gordan's alternative, convex-hull membership."""

from __future__ import annotations

from fractions import Fraction

from oracle.germs import Vec


def _pivot_columns(rows: list[Vec]) -> list[int]:
    """Columns forming a basis of the column space of the matrix with these rows (exact)."""
    if not rows:
        return []
    m = [list(r) for r in rows]
    ncols = len(m[0])
    pivots: list[int] = []
    r0 = 0
    for c in range(ncols):
        p = next((r for r in range(r0, len(m)) if m[r][c]), None)
        if p is None:
            continue
        m[r0], m[p] = m[p], m[r0]
        for r in range(len(m)):
            if r != r0 and m[r][c]:
                f = m[r][c] / m[r0][c]
                m[r] = [a - f * b for a, b in zip(m[r], m[r0])]
        pivots.append(c)
        r0 += 1
        if r0 == len(m):
            break
    return pivots


def lp_solve(A: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """Some x >= 0 with A x = b, or None.  Phase I of the simplex method, exact, Bland's rule.

    (sympy 1.14's ``linprog`` was tried first and returned infeasible points on
    tiny problems, so the oracle carries its own small simplex; every answer
    it gives is re-checked by the callers with a certificate.)
    """
    m = len(A)
    n = len(A[0]) if m else 0
    if m == 0:
        return [Fraction(0)] * n
    T: list[list[Fraction]] = []
    for i in range(m):
        s = -1 if b[i] < 0 else 1
        T.append(
            [Fraction(s * a) for a in A[i]]
            + [Fraction(int(k == i)) for k in range(m)]
            + [Fraction(s * b[i])]
        )
    basis = [n + i for i in range(m)]
    # reduced costs of "minimize the sum of artificials"; last entry = -(objective value)
    C = [-sum((T[i][j] for i in range(m)), Fraction(0)) for j in range(n)] + [Fraction(0)] * m
    C.append(-sum((T[i][-1] for i in range(m)), Fraction(0)))
    while True:
        enter = next((j for j in range(n + m) if C[j] < 0), None)
        if enter is None:
            break
        best: tuple[Fraction, int, int] | None = None
        for i in range(m):
            if T[i][enter] > 0:
                key = (T[i][-1] / T[i][enter], basis[i], i)
                if best is None or key < best:
                    best = key
        assert best is not None, "phase I is bounded below by 0"
        r = best[2]
        piv = T[r][enter]
        T[r] = [v / piv for v in T[r]]
        for i in range(m):
            if i != r and T[i][enter]:
                f = T[i][enter]
                T[i] = [a - f * c for a, c in zip(T[i], T[r])]
        f = C[enter]
        C = [a - f * c for a, c in zip(C, T[r])]
        basis[r] = enter
    if C[-1] != 0:
        return None
    x = [Fraction(0)] * n
    for i, j in enumerate(basis):
        if j < n:
            x[j] = T[i][-1]
    assert all(v >= 0 for v in x)
    assert all(sum((a * v for a, v in zip(row, x)), Fraction(0)) == rhs for row, rhs in zip(A, b))
    return x


_FEASIBLE_CACHE: dict[tuple[Vec, ...], bool] = {}


def strictly_feasible(forms: list[Vec]) -> bool:
    """Is there d with phi(d) > 0 for every non-zero form phi?

    Both answers carry a checked certificate.

    Gordan's alternative: exactly one of (1) A d > 0, (2) y >= 0, y != 0, A^T y = 0
    has a solution.  (2) is ``y >= 0, A_P^T y = 0, sum(y) = 1`` with P the pivot
    columns of A (every other column is a combination of them); (1) is found as
    ``A_P (p - q) - s = 1`` with p, q, s >= 0 and checked by evaluating A d.
    """
    rows = sorted({f for f in forms if any(f)})
    key = tuple(rows)
    if key in _FEASIBLE_CACHE:
        return _FEASIBLE_CACHE[key]
    ok = True
    if rows:
        K = len(rows)
        cols = _pivot_columns(rows)
        y = lp_solve(
            [[r[c] for r in rows] for c in cols] + [[Fraction(1)] * K],
            [Fraction(0)] * len(cols) + [Fraction(1)],
        )
        if y is not None:
            ok = False
        else:
            n = len(cols)
            A = [
                [r[c] for c in cols]
                + [-r[c] for c in cols]
                + [Fraction(-int(i == k)) for k in range(K)]
                for i, r in enumerate(rows)
            ]
            x = lp_solve(A, [Fraction(1)] * K)
            assert x is not None, "Gordan: exactly one alternative holds"
            d = {c: x[k] - x[n + k] for k, c in enumerate(cols)}
            assert all(sum((r[c] * v for c, v in d.items()), Fraction(0)) > 0 for r in rows)
    _FEASIBLE_CACHE[key] = ok
    return ok


def in_convex_hull(point: list[Fraction], vertices: list[list[Fraction]]) -> bool:
    """Is point a convex combination of the vertices?  (lam >= 0, V lam = point, sum lam = 1)"""
    if not vertices:
        return False
    dim = len(point)
    A_eq = [[Fraction(v[i]) for v in vertices] for i in range(dim)] + [
        [Fraction(1)] * len(vertices)
    ]
    return lp_solve(A_eq, [Fraction(p) for p in point] + [Fraction(1)]) is not None
