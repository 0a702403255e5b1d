"""Directional derivatives and the kink-graph reduction (docs/theory.md section 2).

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

import bisect
import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from formal.core.graph import descendants
from formal.core.kinks import KinkNode
from formal.core.qarray import QArray, int_matmul
from formal.engine.forward import Forward, output_seeds, restrict_samples, reverse


@dataclass(frozen=True)
class KinkGraph:
    """The reduced piecewise-linear model of ``d -> f'(w; d)``.

    The coefficient rows on the parameters are kept only on the columns
    ``cols`` the pivots were found in (``A_cols``, T x len(cols)); the full
    (T, W) rows ``A`` and the smooth output parts ``A0`` are computed on first
    use (only the gradient of a differentiable verdict needs them).
    """

    kinks: tuple[KinkNode, ...]
    rows: tuple[tuple[int, int], ...]  # (kink position, input position) of each t-row
    row_of: dict[tuple[int, int], int]
    C: np.ndarray  # (T, K) Fractions: kink-input rows on kink outputs
    C0: np.ndarray  # (n_obj, K) Fractions
    pivots: tuple[int, ...]  # columns of A forming a basis of V
    basis: np.ndarray  # (T, r) Fractions: A[:, pivots]
    cols: tuple[int, ...]  # global columns of A_cols
    A_cols: QArray  # (T, len(cols)): A restricted to cols
    fwd: Forward | None = field(default=None, compare=False, repr=False)
    cache: dict[str, QArray] = field(default_factory=dict, compare=False, repr=False)
    col_pos: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def rank(self) -> int:
        """Rank of the kink-input rows A."""
        return len(self.pivots)

    @property
    def A(self) -> QArray:
        """(T, W): t = A d (computed on first use)."""
        if "A" not in self.cache:
            self._full()
        return self.cache["A"]

    @property
    def A0(self) -> QArray:
        """(n_obj, W): the smooth part of each output (computed on first use)."""
        if "A0" not in self.cache:
            self._full()
        return self.cache["A0"]

    def _full(self) -> None:
        assert self.fwd is not None
        full, _, _ = _reverse_rows(self.fwd, self.kinks, list(self.rows), True)
        T = len(self.rows)
        self.cache["A"] = QArray(full.num[:T], full.den)
        self.cache["A0"] = QArray(full.num[T:], full.den)

    def a(self, r: int, j: int) -> Fraction:
        """Entry ``A[r, j]`` as a Fraction."""
        pos = self._col_pos().get(j)
        if pos is not None:
            return Fraction(int(self.A_cols.num[r, pos]), self.A_cols.den)
        return Fraction(int(self.A.num[r, j]), self.A.den)

    def _col_pos(self) -> dict[int, int]:
        if not self.col_pos:
            self.col_pos.update((c, i) for i, c in enumerate(self.cols))
        return self.col_pos

    def kink_outputs(
        self, t: list[Fraction], sides: dict[int, int] | None = None
    ) -> list[Fraction]:
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
        if "C0" not in self.cache:  # C0 as integers over one denominator, once
            self.cache["C0"] = QArray.from_fractions(self.C0.reshape(self.C0.shape[0], -1))
        c0 = self.cache["C0"]
        zq = QArray.from_fractions(np.array(z, dtype=object).reshape(-1, 1))
        out = np.dot(c0.num, zq.num).reshape(-1) if len(z) else np.zeros(c0.shape[0], int)
        den = c0.den * zq.den
        return [Fraction(int(v), den) for v in out]

    def t_of(self, d: dict[int, Fraction]) -> list[Fraction]:
        """t = A d for a sparse direction d (column -> value)."""
        return [
            sum((self.a(r, j) * v for j, v in d.items()), Fraction(0))
            for r in range(len(self.rows))
        ]

    def direction(self, lam: list[Fraction]) -> dict[int, Fraction]:
        """A parameter direction realizing t = basis @ lam."""
        return {p: v for p, v in zip(self.pivots, lam) if v}

    def t_from_lambda(self, lam: list[Fraction]) -> list[Fraction]:
        """t = basis @ lam, one value per t-row."""
        return [
            sum(
                (self.basis[r, j] * lam[j] for j in range(self.rank) if self.basis[r, j]),
                Fraction(0),
            )
            for r in range(len(self.rows))
        ]


_SMALL_TENSOR = 4096  # tensors up to this size are tried first for the pivots of V


def _reverse_rows(
    fwd: Forward,
    kinks: tuple[KinkNode, ...],
    rows: list[tuple[int, int]],
    want: bool | frozenset[str],
    outputs: bool = True,
) -> tuple[QArray, np.ndarray, dict[str, QArray | None]]:
    """One reverse pass (cut at kink nodes) from every kink input and every output.

    Returns the collected (T + n_obj, W) parameter rows (only when ``want`` is
    True, else an empty placeholder), the kink adjoints and the raw parameter
    adjoints.  Without ``outputs`` only the T kink-input rows are seeded.
    """
    if not outputs and fwd.net.batch > 1:  # the seeds live on the kink samples only
        samples = sorted({k.sample for k in kinks})
        sub = restrict_samples(fwd, samples) if len(samples) < fwd.net.batch else None
        if sub is not None:
            pos = {b: i for i, b in enumerate(samples)}
            moved = tuple(dataclasses.replace(k, sample=pos[k.sample]) for k in kinks)
            return _reverse_rows(sub, moved, rows, want, outputs)
    net = fwd.net
    out_seeds = output_seeds(net)
    total = len(rows) + (out_seeds.shape[0] if outputs else 0)
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
    if outputs:
        s = seed_for(net.output)
        block = np.zeros((total,) + out_seeds.shape[1:], dtype=object)
        block[...] = 0
        block[len(rows) :] = out_seeds.num
        seeds[net.output] = QArray(s.num * out_seeds.den + block, out_seeds.den)
    rev = reverse(fwd, seeds, cut=True, want_params=want)
    if want is True:
        full = net.parameterization().collect(rev.params, total)
    else:
        full = QArray.zeros((0, 0))
    return full, rev.kink_adjoints, rev.params


def _small_tensors(fwd: Forward) -> frozenset[str]:
    """Trainable tensors of at most _SMALL_TENSOR entries whose tie groups stay among them."""
    net = fwd.net
    par = net.parameterization()
    small = {n for n in net.trainable if n in par.groups and par.groups[n].size <= _SMALL_TENSOR}
    if not small or not net.ties:
        return frozenset(small)
    inside = np.concatenate([par.groups[n].ravel() for n in sorted(small)])
    for n in net.trainable:  # a tie reaching a large tensor: its columns need that tensor too
        if n in par.groups and n not in small and np.isin(par.groups[n], inside).any():
            return frozenset()
    return frozenset(small)


def _collect_cols(
    fwd: Forward, params: dict[str, QArray | None], names: frozenset[str], rows: int
) -> tuple[tuple[int, ...], QArray]:
    """The group rows restricted to the groups of ``names``: (columns, (rows, len(columns)))."""
    par = fwd.net.parameterization()
    present = np.zeros(par.size, dtype=bool)
    for n in names:
        present[par.groups[n].ravel()] = True
    cols = tuple(np.nonzero(present)[0].tolist())  # sorted group ids
    return cols, par.collect({n: params.get(n) for n in sorted(names)}, rows, cols)


def _cheap_first(fwd: Forward, names: frozenset[str], cols: tuple[int, ...]) -> np.ndarray:
    """Positions in ``cols`` ordered so that the columns of smaller tensors come first.

    Any T independent columns span V; the first ones found in this order are
    the basis.  Columns of small tensors (biases before kernels) give cheap
    witness directions: a bias direction's tangent is the direction itself,
    while a kernel direction's carries the layer input (e.g. an input with a
    long common denominator) through every later layer.
    """
    par = fwd.net.parameterization()
    size = np.full(par.size, np.iinfo(np.int64).max, dtype=np.int64)
    for n in names:
        g = par.groups[n].ravel()
        size[g] = np.minimum(size[g], g.size)
    return np.argsort(size[np.fromiter(cols, dtype=np.int64, count=len(cols))], kind="stable")


def _no_kink_above_kink(fwd: Forward) -> bool:
    """True when no op holding kink nodes reads (directly or not) another one.

    Then cutting at kink nodes changes no adjoint at any kink op: the kink
    adjoints of a cut reverse pass from the outputs are AD's.
    """
    held = set(fwd.by_node)
    return not any(descendants(fwd.net, [n]) & held for n in held)


def build_kink_graph(fwd: Forward, *, ad_kink_adjoints: np.ndarray | None = None) -> KinkGraph:
    """The kink graph from one reverse pass (cut at kink nodes) from kink inputs and outputs.

    The pivots of V are sought first among the small parameter tensors
    (biases, small kernels): when their columns already have full row rank T,
    V is all of Q^T and no (T, W) row is ever formed.  Otherwise the full rows
    are collected as before and the pivots are the first independent columns.

    ``ad_kink_adjoints`` (n_obj, K): AD's kink adjoints from the outputs, when
    already computed.  If no kink op lies above another one they equal the
    output rows C0 of the cut pass, which then only starts at the kink inputs
    (T rows reaching only what lies below the kinks).
    """
    kinks = tuple(fwd.kinks)
    rows: list[tuple[int, int]] = [
        (k, i) for k, node in enumerate(kinks) for i in range(len(node.inputs))
    ]
    T = len(rows)
    small = _small_tensors(fwd)
    if small:
        if ad_kink_adjoints is not None and _no_kink_above_kink(fwd):
            c0 = ad_kink_adjoints
        else:  # the output rows: only their kink adjoints are read
            c0 = _reverse_rows(fwd, kinks, [], False)[1]
        _, kadj, params = _reverse_rows(fwd, kinks, rows, small, outputs=False)
        cols, A_cols = _collect_cols(fwd, params, small, T)
        order = _cheap_first(fwd, small, cols)
        local = sorted(int(order[j]) for j in column_basis(A_cols.num[:, order]))
        if len(local) == T:
            kadj = np.concatenate([kadj[:T], c0])
            return _graph(fwd, kinks, rows, kadj, [cols[j] for j in local], cols, A_cols)
    full, kadj, _ = _reverse_rows(fwd, kinks, rows, True)
    A = QArray(full.num[:T], full.den)
    pivots = column_basis(A.num)
    g = _graph(fwd, kinks, rows, kadj, pivots, tuple(pivots), QArray(A.num[:, pivots], A.den))
    g.cache["A"] = A
    g.cache["A0"] = QArray(full.num[T:], full.den)
    return g


def _graph(
    fwd: Forward,
    kinks: tuple[KinkNode, ...],
    rows: list[tuple[int, int]],
    kadj: np.ndarray,
    pivots: list[int],
    cols: tuple[int, ...],
    A_cols: QArray,
) -> KinkGraph:
    T = len(rows)
    basis = np.empty((T, len(pivots)), dtype=object)
    for c, j in enumerate(pivots):
        at = bisect.bisect_left(cols, j)  # cols are sorted group ids
        assert at < len(cols) and cols[at] == j, (j, "not among the sorted columns")
        for r in range(T):
            basis[r, c] = Fraction(int(A_cols.num[r, at]), A_cols.den)
    return KinkGraph(
        kinks,
        tuple(rows),
        {rc: r for r, rc in enumerate(rows)},
        kadj[:T],
        kadj[T:],
        tuple(pivots),
        basis,
        cols,
        A_cols,
        fwd,
    )


_PRIME = 2**61 - 1
_SMALL = 200_000  # below this many entries, exact elimination directly


def column_basis(A: np.ndarray) -> list[int]:
    """Pivot columns of an integer matrix: the first linearly independent columns, exactly.

    Small matrices: exact incremental elimination.  Large ones: pivots modulo a
    prime (columns independent mod p are independent over Q), then an exact
    certificate that the rank is not larger (the left null space of the pivot
    columns annihilates A, by an exact integer product); exact fallback otherwise.
    """
    T = A.shape[0]
    if T == 0:
        return []
    nz = np.nonzero((A != 0).any(axis=0))[0]
    if T * len(nz) <= _SMALL:
        return [int(nz[j]) for j in _exact_pivots(A[:, nz])]
    import flint

    sub = A[:, nz]
    mod = flint.nmod_mat(T, len(nz), [int(v) % _PRIME for v in sub.ravel()], _PRIME)
    rref, rank = mod.rref()
    cand: list[int] = []
    ent = np.array([int(v) for v in rref.entries()], dtype=object).reshape(T, len(nz))
    for r in range(rank):
        cand.append(int(np.nonzero(ent[r] != 0)[0][0]))
    if rank == T or _rank_certified(sub, cand):
        return [int(nz[j]) for j in cand]
    return [int(nz[j]) for j in _exact_pivots(sub)]  # pragma: no cover - unlucky prime


def _exact_pivots(A: np.ndarray) -> list[int]:
    """Fraction-free elimination: each reduced column is a non-zero integer multiple of the
    rational one, so zero patterns, hence pivots, are those of exact rational elimination."""
    T = A.shape[0]
    echelon: list[tuple[int, list[int]]] = []
    pivots: list[int] = []
    for j in range(A.shape[1]):
        v = [int(A[r, j]) for r in range(T)]
        for prow, e in echelon:
            if v[prow]:
                a_p, e_p = v[prow], e[prow]
                v = [e_p * a - a_p * b for a, b in zip(v, e)]
                g = math.gcd(*v)
                if g > 1:
                    v = [a // g for a in v]
        lead = next((r for r in range(T) if v[r]), None)
        if lead is None:
            continue
        echelon.append((lead, v))
        pivots.append(j)
        if len(pivots) == T:
            break
    return pivots


def _rank_certified(A: np.ndarray, pivots: list[int]) -> bool:
    """True when every column of A lies in the span of the pivot columns (exactly)."""
    T = A.shape[0]
    P = [[Fraction(int(A[r, j])) for j in pivots] for r in range(T)]
    null = left_null_space(P)
    if not null:
        return True
    den = 1
    for y in null:
        for v in y:
            den = den * v.denominator // math.gcd(den, v.denominator)
    N = np.array([[int(v * den) for v in y] for y in null], dtype=object)
    prod = int_matmul(N, A)
    return bool(all(v == 0 for v in prod.ravel()))


def left_null_space(P: list[list[Fraction]]) -> list[list[Fraction]]:
    """A basis of {y : y^T P = 0} for a T x r matrix P (exact)."""
    T = len(P)
    r = len(P[0]) if P else 0
    # null space of P^T (r x T) by Gauss-Jordan
    M = [[P[i][j] for i in range(T)] for j in range(r)]
    pivcols: list[int] = []
    row = 0
    for c in range(T):
        p = next((i for i in range(row, r) if M[i][c]), None)
        if p is None:
            continue
        M[row], M[p] = M[p], M[row]
        pv = M[row][c]
        M[row] = [v / pv for v in M[row]]
        for i in range(r):
            if i != row and M[i][c]:
                f = M[i][c]
                M[i] = [a - f * b for a, b in zip(M[i], M[row])]
        pivcols.append(c)
        row += 1
        if row == r:
            break
    free = [c for c in range(T) if c not in pivcols]
    basis = []
    for fcol in free:
        y = [Fraction(0)] * T
        y[fcol] = Fraction(1)
        for i, pc in enumerate(pivcols):
            y[pc] = -M[i][fcol]
        basis.append(y)
    return basis


def gradient_from_graph(g: KinkGraph) -> QArray:
    """The true gradient (n_obj, W) when Psi is linear on V (caller proved it)."""
    r = g.rank
    n_obj = g.A0.shape[0]
    if r == 0:
        return g.A0
    # Psi on the basis vectors, then L with L @ basis = those values on r independent rows
    values = [g.psi(g.t_from_lambda([Fraction(int(i == j)) for i in range(r)])) for j in range(r)]
    sel = independent_rows(g.basis)
    Bsel = [[Fraction(g.basis[i, j]) for j in range(r)] for i in sel]
    rows = []
    for o in range(n_obj):
        # L @ Bsel = values[:, o]  <=>  Bsel^T @ L^T = values[:, o]
        coeffs = solve_exact([list(col) for col in zip(*Bsel)], [values[j][o] for j in range(r)])
        acc = QArray(g.A0.num[o : o + 1], g.A0.den)
        for c, row in zip(coeffs, sel):
            if c:
                acc = acc + QArray(g.A.num[row : row + 1], g.A.den).scale(c)
        rows.append(acc)
    out = rows[0]
    for extra in rows[1:]:
        a, b, den = out._common(extra)
        out = QArray(np.concatenate([a, b]), den)
    return out


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
    """Indices of rank-many linearly independent rows of a Fraction matrix M (exact)."""
    den = 1
    for v in M.ravel():
        den = den * Fraction(v).denominator // math.gcd(den, Fraction(v).denominator)
    ints = np.array([[int(Fraction(v) * den) for v in row] for row in M.T], dtype=object)
    return _exact_pivots(ints) if ints.size else []


__all__ = ["KinkGraph", "build_kink_graph", "column_basis", "gradient_from_graph"]
