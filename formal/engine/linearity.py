"""Linear real arithmetic queries on the kink graph (z3, exact rationals).

- :func:`find_nonadditive`: is ``Psi(t) = sum_k C0[o,k] zdot_k(t)`` additive on V?
  A model gives directions d1, d2 with ``f'(d1 + d2) != f'(d1) + f'(d2)``;
  UNSAT proves Psi linear on V, hence f differentiable (Lemma D).
- :func:`find_side_direction`: a direction d realizing AD's choice at every
  kink node at first order (ICLR 2024's strict LP, all layers jointly): a
  certificate that AD(w) is in the Bouligand subdifferential.

Numerals are built from ``"n/d"`` strings and models are read with
``as_fraction()``; every model is re-verified by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import z3

from formal.core.numbers import format_exact
from formal.engine.kinkgraph import KinkGraph, solve_exact


@dataclass(frozen=True, slots=True)
class SolverResult:
    """Three-way result: 'sat' with a model, 'unsat', or 'unknown' with the reason."""

    status: str
    model: tuple[tuple[Fraction, ...], ...] = ()
    reason: str = ""


def q(x: Fraction) -> z3.ArithRef:
    x = Fraction(x)
    return z3.RealVal(format_exact(x))  # any size (str(int) stops at 4300 digits)


def _lin(coeffs, xs) -> z3.ArithRef:
    terms = [q(c) * x for c, x in zip(coeffs, xs) if c]
    return z3.Sum(terms) if terms else z3.RealVal(0)


def _value(m: z3.ModelRef, v: z3.ArithRef) -> Fraction:
    val = m.eval(v, model_completion=True)
    return Fraction(val.as_fraction())


def _t_exprs(g: KinkGraph, lam: list[z3.ArithRef]) -> list[z3.ArithRef]:
    return [_lin([g.basis[r, j] for j in range(g.rank)], lam) for r in range(len(g.rows))]


def _kink_exprs(g: KinkGraph, t: list[z3.ArithRef], sides: dict[int, int] | None = None):
    z: list[z3.ArithRef] = []
    ys_all: list[list[z3.ArithRef]] = []
    for k, node in enumerate(g.kinks):
        ys = []
        for i in range(len(node.inputs)):
            r = g.row_of[(k, i)]
            ys.append(z3.simplify(t[r] + _lin([g.C[r, k2] for k2 in range(k)], z[:k])))
        ys_all.append(ys)
        if sides is not None:
            if node.kind == "act":
                z.append(q(node.d_plus if sides[k] > 0 else node.d_minus) * ys[0])
            else:
                z.append(ys[sides[k]])
        elif node.kind == "act":
            y = ys[0]
            z.append(z3.If(y >= 0, q(node.d_plus) * y, q(node.d_minus) * y))
        else:
            m = ys[0]
            for y in ys[1:]:
                m = z3.If(y > m, y, m)
            z.append(m)
    return z, ys_all


def _opposite_pair(g: KinkGraph) -> SolverResult | None:
    """A witness pair t1 = e_r, t2 = -e_r found by exact evaluation, without a solver.

    When V is all of Q^T (rank T) every kink-input row moves alone; moving
    one both ways is non-additive as soon as ``Psi(e_r) + Psi(-e_r) != 0``
    (Psi(0) = 0).  Rows are tried from the last kink back (the topmost kink
    reaches the outputs through no other kink: T2's argument).  None when no
    row works; the solver then decides.
    """
    T = len(g.rows)
    if T == 0 or g.rank != T:
        return None
    for r in reversed(range(T)):
        e = [Fraction(int(i == r)) for i in range(T)]
        up, down = g.psi(e), g.psi([-v for v in e])
        if any(a + b != 0 for a, b in zip(up, down)):
            lam = solve_exact([list(row) for row in g.basis], e)
            return SolverResult("sat", (tuple(lam), tuple(-v for v in lam)))
    return None


def find_nonadditive(g: KinkGraph, timeout_ms: int = 60_000) -> SolverResult:
    """Search lam1, lam2 with Psi(B(lam1 + lam2)) != Psi(B lam1) + Psi(B lam2).

    A pair moving one kink input both ways is tried first by exact
    evaluation (:func:`_opposite_pair`); z3 decides otherwise.
    """
    quick = _opposite_pair(g)
    if quick is not None:
        return quick
    r = g.rank
    lam1 = [z3.Real(f"a{j}") for j in range(r)]
    lam2 = [z3.Real(f"b{j}") for j in range(r)]
    t1 = _t_exprs(g, lam1)
    t2 = _t_exprs(g, lam2)
    t3 = [x + y for x, y in zip(t1, t2)]
    z1, _ = _kink_exprs(g, t1)
    z2, _ = _kink_exprs(g, t2)
    z3_, _ = _kink_exprs(g, t3)
    diffs = []
    seen: set[tuple[Fraction, ...]] = set()
    for row in g.C0:
        key = tuple(Fraction(c) for c in row)
        if key in seen or not any(key):  # a zero row is additive; a repeated row adds nothing
            continue
        seen.add(key)
        p1, p2, p3 = _lin(row, z1), _lin(row, z2), _lin(row, z3_)
        diffs.append(p3 != p1 + p2)
    s = z3.SolverFor("QF_LRA")
    s.set("timeout", int(timeout_ms))
    s.add(z3.Or(diffs) if diffs else z3.BoolVal(False))
    res = s.check()
    if res == z3.sat:
        m = s.model()
        return SolverResult(
            "sat", (tuple(_value(m, v) for v in lam1), tuple(_value(m, v) for v in lam2))
        )
    if res == z3.unsat:
        return SolverResult("unsat")
    return SolverResult("unknown", reason=s.reason_unknown())


def _side_by_solve(g: KinkGraph, sides: dict[int, int]) -> SolverResult | None:
    """The strict LP solved by exact linear algebra when V is all of Q^T, without a solver.

    With the sides fixed every kink map is linear, so prescribing the kink
    inputs (AD's side at margin 1: ``+-1`` for an activation, 1 on the chosen
    input and 0 on the others for a tie) fixes every kink output; when each
    kink input row reads only earlier kinks (C strictly lower triangular) the
    t-rows follow by substitution, and rank T gives lam with ``basis lam = t``.
    None when the rank or the triangular shape fails (z3 decides); the caller
    re-checks the strict inequalities exactly either way.
    """
    T = len(g.rows)
    if T == 0 or g.rank != T:
        return None
    if any(g.C[r, k2] for r, (k, _) in enumerate(g.rows) for k2 in range(k, len(g.kinks))):
        return None
    z: list[Fraction] = []
    t: list[Fraction] = [Fraction(0)] * T
    for k, node in enumerate(g.kinks):
        if node.kind == "act":
            ys = [Fraction(sides[k])]
            z.append((node.d_plus if sides[k] > 0 else node.d_minus) * ys[0])
        else:
            ys = [Fraction(int(i == sides[k])) for i in range(len(node.inputs))]
            z.append(ys[sides[k]])
        for i, y in enumerate(ys):
            r = g.row_of[(k, i)]
            t[r] = y - sum((g.C[r, k2] * z[k2] for k2 in range(k) if g.C[r, k2]), Fraction(0))
    lam = solve_exact([list(row) for row in g.basis], t)
    return SolverResult("sat", (tuple(lam),))


def find_side_direction(
    g: KinkGraph, sides: dict[int, int], timeout_ms: int = 60_000, *, exact_first: bool = True
) -> SolverResult:
    """Strict LP: lam with every kink strictly on AD's side (scaled to margin 1).

    Solved by exact substitution when V is all of Q^T (:func:`_side_by_solve`);
    z3 decides otherwise (always, with ``exact_first=False``).
    """
    quick = _side_by_solve(g, sides) if exact_first else None
    if quick is not None:
        return quick
    lam = [z3.Real(f"l{j}") for j in range(g.rank)]
    t = _t_exprs(g, lam)
    _, ys = _kink_exprs(g, t, sides)
    s = z3.SolverFor("QF_LRA")
    s.set("timeout", int(timeout_ms))
    for k, node in enumerate(g.kinks):
        if node.kind == "act":
            s.add(ys[k][0] * sides[k] >= 1)
        else:
            c = sides[k]
            for i, y in enumerate(ys[k]):
                if i != c:
                    s.add(ys[k][c] - y >= 1)
    res = s.check()
    if res == z3.sat:
        m = s.model()
        return SolverResult("sat", (tuple(_value(m, v) for v in lam),))
    if res == z3.unsat:
        return SolverResult("unsat")
    return SolverResult("unknown", reason=s.reason_unknown())


__all__ = ["SolverResult", "find_nonadditive", "find_side_direction"]
