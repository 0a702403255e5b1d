"""Directional derivatives and the kink-graph reduction (THEORY section 2).

Eliminating every smooth neuron leaves, for each kink node k and each of its
inputs i, ``ydot_{k,i} = a_{k,i} . d + sum_{k'} C[(k,i), k'] zdot_{k'}`` and,
for each output o, ``fdot_o = a_o . d + sum_k C[o, k] zdot_k``, where
``zdot_k`` is k's kink map.  All coefficients are exact rationals from one
vectorized reverse pass that stops at kink nodes.  The direction d enters
only through ``t = A d`` (A stacks the rows a_{k,i}); V, the image of A, has
a basis made of pivot columns of A, so ``d = sum_j lam_j e_{p_j}`` realizes
every ``t = B lam`` in V.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .exact import Forward, KinkNode, output_seeds, reverse
from .qarray import QArray


@dataclass(frozen=True)
class KinkGraph:
    """The reduced piecewise-linear model of ``d -> f'(w; d)``."""

    kinks: tuple[KinkNode, ...]
    rows: tuple[tuple[int, int], ...]  # (kink position, input position) of each t-row
    row_of: dict[tuple[int, int], int]
    A: np.ndarray  # (T, W) Fractions: t = A d
    C: np.ndarray  # (T, K) Fractions: kink-input rows on kink outputs
    A0: np.ndarray  # (n_obj, W) Fractions: the smooth part of each output
    C0: np.ndarray  # (n_obj, K) Fractions
    pivots: tuple[int, ...]  # columns of A forming a basis of V
    basis: np.ndarray  # (T, r) Fractions: A[:, pivots]

    @property
    def rank(self) -> int:
        return len(self.pivots)

    def kink_outputs(self, t: list[Fraction], sides: dict[int, int] | None = None) -> list[Fraction]:
        """zdot for t (one value per t-row); with ``sides``, kink k uses the given piece.

        ``sides[k]`` is +1 (D+) / -1 (D-) for an activation kink, or the
        chosen input position for a tie: the linear map of that piece.
        """
        z: list[Fraction] = [Fraction(0)] * len(self.kinks)
        for k, node in enumerate(self.kinks):
            ys = []
            for i in range(len(node.inputs)):
                r = self.row_of[(k, i)]
                acc = t[r]
                for k2 in range(k):
                    c = self.C[r, k2]
                    if c:
                        acc += c * z[k2]
                ys.append(acc)
            if sides is None:
                z[k] = node.apply(ys)
            elif node.kind == "act":
                z[k] = (node.d_plus if sides[k] > 0 else node.d_minus) * ys[0]
            else:
                z[k] = ys[sides[k]]
        return z

    def kink_inputs(self, t: list[Fraction], z: list[Fraction]) -> list[Fraction]:
        """ydot of every t-row given t and the kink outputs z."""
        out = []
        for r in range(len(self.rows)):
            acc = t[r]
            for k2, c in enumerate(self.C[r]):
                if c:
                    acc += c * z[k2]
            out.append(acc)
        return out

    def psi(self, t: list[Fraction]) -> list[Fraction]:
        """The non-smooth part ``sum_k C0[o, k] zdot_k`` of each output."""
        z = self.kink_outputs(t)
        return [sum((c * zk for c, zk in zip(row, z) if c), Fraction(0)) for row in self.C0]

    def t_of(self, d: dict[int, Fraction]) -> list[Fraction]:
        """t = A d for a sparse direction d (column -> value)."""
        return [sum((self.A[r, j] * v for j, v in d.items() if self.A[r, j]), Fraction(0)) for r in range(len(self.rows))]

    def direction(self, lam: list[Fraction]) -> dict[int, Fraction]:
        """A parameter direction realizing t = basis @ lam."""
        return {p: v for p, v in zip(self.pivots, lam) if v}

    def t_from_lambda(self, lam: list[Fraction]) -> list[Fraction]:
        return [sum((self.basis[r, j] * lam[j] for j in range(self.rank) if self.basis[r, j]), Fraction(0)) for r in range(len(self.rows))]


def _fractions(q: QArray) -> np.ndarray:
    return q.to_fractions()


def build_kink_graph(fwd: Forward) -> KinkGraph:
    """One reverse pass (cut at kink nodes) from every kink input and every output."""
    net = fwd.net
    kinks = tuple(fwd.kinks)
    rows: list[tuple[int, int]] = [(k, i) for k, node in enumerate(kinks) for i in range(len(node.inputs))]
    out_seeds = output_seeds(net)
    n_obj = out_seeds.shape[0]
    total = len(rows) + n_obj
    seeds: dict[str, QArray] = {}

    def seed_for(name: str) -> QArray:
        if name not in seeds:
            shape = (total, net.batch) + net.node(name).shape
            seeds[name] = QArray.zeros(shape)
        return seeds[name]

    for r, (k, i) in enumerate(rows):
        node = kinks[k]
        src = net.node(node.node).inputs[0]
        s = seed_for(src)
        s.num.reshape(total, net.batch, -1)[r, node.sample, node.inputs[i]] = s.den
    s = seed_for(net.output)
    if s.den != 1:  # pragma: no cover - seeds are built with den 1
        raise AssertionError
    block = np.zeros((total,) + out_seeds.shape[1:], dtype=object)
    block[...] = 0
    block[len(rows) :] = out_seeds.num
    seeds[net.output] = QArray(s.num * out_seeds.den + block, out_seeds.den)
    rev = reverse(fwd, seeds, cut=True)
    full = net.parameterization().collect(rev.params, total)
    fa = _fractions(full)
    T = len(rows)
    A, A0 = fa[:T], fa[T:]
    C, C0 = rev.kink_adjoints[:T], rev.kink_adjoints[T:]
    pivots, basis = column_basis(A)
    return KinkGraph(kinks, tuple(rows), {rc: r for r, rc in enumerate(rows)}, A, C, A0, C0, tuple(pivots), basis)


def column_basis(A: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Pivot columns of A (exact incremental elimination) and A restricted to them."""
    T = A.shape[0]
    echelon: list[tuple[int, list[Fraction]]] = []  # (pivot row, reduced vector)
    pivots: list[int] = []
    if T == 0:
        return [], np.zeros((0, 0), dtype=object)
    nz = [j for j in range(A.shape[1]) if any(A[r, j] for r in range(T))]
    for j in nz:
        v = [Fraction(A[r, j]) for r in range(T)]
        for prow, e in echelon:
            if v[prow]:
                f = v[prow] / e[prow]
                v = [a - f * b for a, b in zip(v, e)]
        lead = next((r for r in range(T) if v[r]), None)
        if lead is None:
            continue
        echelon.append((lead, v))
        pivots.append(j)
        if len(pivots) == T:
            break
    basis = np.empty((T, len(pivots)), dtype=object)
    for c, j in enumerate(pivots):
        basis[:, c] = A[:, j]
    return pivots, basis


def gradient_from_graph(g: KinkGraph) -> np.ndarray:
    """The true gradient (n_obj, W) when Psi is linear on V (caller proved it)."""
    r = g.rank
    n_obj = g.A0.shape[0]
    grad = g.A0.copy()
    if r == 0:
        return grad
    # Psi on the basis vectors, then L with L @ basis = those values on r independent rows
    values = [g.psi(g.t_from_lambda([Fraction(int(i == j)) for i in range(r)])) for j in range(r)]
    sel = independent_rows(g.basis)
    Bsel = [[Fraction(g.basis[i, j]) for j in range(r)] for i in sel]
    for o in range(n_obj):
        # L @ Bsel = values[:, o]  <=>  Bsel^T @ L^T = values[:, o]
        coeffs = solve_exact([list(col) for col in zip(*Bsel)], [values[j][o] for j in range(r)])
        for c, row in zip(coeffs, sel):
            if c:
                grad[o] = grad[o] + np.array([c * a for a in g.A[row]], dtype=object)
    return grad


def solve_exact(M: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Solve the square non-singular system M x = rhs by exact Gauss-Jordan elimination."""
    n = len(M)
    aug = [list(map(Fraction, row)) + [Fraction(v)] for row, v in zip(M, rhs)]
    for c in range(n):
        p = next(r for r in range(c, n) if aug[r][c])
        aug[c], aug[p] = aug[p], aug[c]
        piv = aug[c][c]
        aug[c] = [v / piv for v in aug[c]]
        for r in range(n):
            if r != c and aug[r][c]:
                f = aug[r][c]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[c])]
    return [aug[r][n] for r in range(n)]


def independent_rows(M: np.ndarray) -> list[int]:
    """Indices of rank-many linearly independent rows of M (exact)."""
    pivots, _ = column_basis(M.T.copy())
    return pivots


__all__ = ["KinkGraph", "build_kink_graph", "column_basis", "gradient_from_graph"]
