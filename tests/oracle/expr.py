"""Expression evaluation: germs of f(w + t d) (the definition) and first-order patterns."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import sympy as sp

from oracle.germs import Germ, Vec, g_add, g_coeff, g_const, g_mul, g_neg, g_sign

Lets = dict[sp.Symbol, sp.Expr]  # let-bound symbols: pre-activations, in build order


def _rel_holds(rel: Any, sign: int) -> bool:
    if isinstance(rel, sp.StrictLessThan):
        return sign < 0
    if isinstance(rel, sp.LessThan):
        return sign <= 0
    if isinstance(rel, sp.StrictGreaterThan):
        return sign > 0
    if isinstance(rel, sp.GreaterThan):
        return sign >= 0
    raise NotImplementedError(f"oracle: condition {rel}")


def germ_of(
    expr: sp.Expr, env: dict[sp.Symbol, Germ], memo: dict[sp.Expr, Germ], lets: Lets | None = None
) -> Germ:
    """The germ of expr on (0, eps) given the symbols' germs (let-bound symbols are expanded)."""
    hit = memo.get(expr)
    if hit is not None:
        return hit
    if lets is None:
        lets = {}
    if expr.is_Symbol:
        r = env[expr] if expr in env else germ_of(lets[expr], env, memo, lets)
    elif expr.is_Rational:
        r = g_const(Fraction(int(expr.p), int(expr.q)))
    elif expr.is_Number:
        raise TypeError(f"oracle: inexact number {expr}")
    elif isinstance(expr, sp.Add):
        r = ()
        for a in expr.args:
            r = g_add(r, germ_of(a, env, memo, lets))
    elif isinstance(expr, sp.Mul):
        r = (Fraction(1),)
        for a in expr.args:
            r = g_mul(r, germ_of(a, env, memo, lets))
    elif isinstance(expr, sp.Pow):
        n = expr.exp
        if not (n.is_Integer and int(n) >= 0):
            raise NotImplementedError(f"oracle: power {expr}")
        base = germ_of(expr.base, env, memo, lets)
        r = (Fraction(1),)
        for _ in range(int(n)):
            r = g_mul(r, base)
    elif isinstance(expr, (sp.Max, sp.Min)):
        gs = [germ_of(a, env, memo, lets) for a in expr.args]
        want = 1 if isinstance(expr, sp.Max) else -1
        r = gs[0]
        for g in gs[1:]:
            if g_sign(g_add(g, g_neg(r))) == want:
                r = g
    elif isinstance(expr, sp.Abs):
        a = germ_of(expr.args[0], env, memo, lets)
        r = g_neg(a) if g_sign(a) < 0 else a
    elif isinstance(expr, sp.Piecewise):
        branch: Germ | None = None
        for e, c in expr.args:
            if c == sp.true:
                branch = germ_of(e, env, memo, lets)
                break
            s = g_sign(
                g_add(germ_of(c.lhs, env, memo, lets), g_neg(germ_of(c.rhs, env, memo, lets)))
            )
            if _rel_holds(c, s):
                branch = germ_of(e, env, memo, lets)
                break
        if branch is None:
            raise ValueError(f"oracle: no branch of {expr} holds")
        r = branch
    else:
        raise NotImplementedError(f"oracle: expression node {type(expr).__name__}")
    memo[expr] = r
    return r


class OracleBudget(Exception):
    """The pattern search would take too long for a test (the caller rejects the example)."""


class NeedChoice(Exception):
    def __init__(self, key: Any, n: int, constraints: list[Vec]) -> None:
        self.key, self.n, self.constraints = key, n, list(constraints)


def _vadd(a: Vec, b: Vec) -> Vec:
    return tuple(x + y for x, y in zip(a, b))


def _vscale(c: Fraction, a: Vec) -> Vec:
    return tuple(c * x for x in a)


class TangentWalk:
    """First-order tangents under a pattern of choices; records the pattern's cone constraints."""

    def __init__(
        self,
        values: dict[sp.Expr, Fraction],
        W: int,
        index: dict[sp.Symbol, int],
        choices: dict[Any, int],
        lets: Lets,
    ):
        self.values, self.W, self.index, self.choices, self.lets = values, W, index, choices, lets
        self.constraints: list[Vec] = []
        self.memo: dict[sp.Expr, Vec] = {}
        self.zero: Vec = (Fraction(0),) * W

    def val(self, e: sp.Expr) -> Fraction:
        return self.values[e]

    def choose(self, key: Any, n: int) -> int:
        if key not in self.choices:
            raise NeedChoice(key, n, self.constraints)
        return self.choices[key]

    def tan(self, e: sp.Expr) -> Vec:
        hit = self.memo.get(e)
        if hit is not None:
            return hit
        r = self._tan(e)
        self.memo[e] = r
        return r

    def _tan(self, e: sp.Expr) -> Vec:
        if e.is_Symbol:
            if e in self.lets:
                return self.tan(self.lets[e])
            unit = [Fraction(0)] * self.W
            unit[self.index[e]] = Fraction(1)
            return tuple(unit)
        if e.is_Number:
            return self.zero
        if isinstance(e, sp.Add):
            r = self.zero
            for a in e.args:
                r = _vadd(r, self.tan(a))
            return r
        if isinstance(e, sp.Mul):
            vals = [self.val(a) for a in e.args]
            r = self.zero
            for i, a in enumerate(e.args):
                coef = Fraction(1)
                for j, v in enumerate(vals):
                    if j != i:
                        coef *= v
                if coef:  # a zero coefficient: this factor's tangent does not matter
                    r = _vadd(r, _vscale(coef, self.tan(a)))
            return r
        if isinstance(e, sp.Pow):
            n = int(e.exp)
            if n == 0:
                return self.zero
            coef = n * self.val(e.base) ** (n - 1)
            return _vscale(coef, self.tan(e.base)) if coef else self.zero
        if isinstance(e, (sp.Max, sp.Min)):
            vals = [self.val(a) for a in e.args]
            best = max(vals) if isinstance(e, sp.Max) else min(vals)
            tied = [a for a, v in zip(e.args, vals) if v == best]
            if len(tied) == 1:
                return self.tan(tied[0])
            k = self.choose(("mm", e), len(tied))
            tans = [self.tan(a) for a in tied]
            sgn = 1 if isinstance(e, sp.Max) else -1
            for i, t in enumerate(tans):
                if i != k:
                    self.constraints.append(
                        _vscale(Fraction(sgn), _vadd(tans[k], _vscale(Fraction(-1), t)))
                    )
            return tans[k]
        if isinstance(e, sp.Abs):
            a = e.args[0]
            v = self.val(a)
            if v:
                return _vscale(Fraction(1 if v > 0 else -1), self.tan(a))
            k = self.choose(("abs", e), 2)
            s = Fraction(1 if k == 0 else -1)
            t = _vscale(s, self.tan(a))
            self.constraints.append(t)
            return t
        if isinstance(e, sp.Piecewise):
            for i, (expr, cond) in enumerate(e.args):
                if cond == sp.true:
                    return self.tan(expr)
                delta = self.val(cond.lhs) - self.val(cond.rhs)
                if delta:
                    if _rel_holds(cond, 1 if delta > 0 else -1):
                        return self.tan(expr)
                    continue
                # on the boundary: the branch taken along d depends on the sign of the tangent
                k = self.choose(("pw", e, i), 2)
                td = _vadd(self.tan(cond.lhs), _vscale(Fraction(-1), self.tan(cond.rhs)))
                lower = _rel_holds(cond, -1)  # the condition holds just below the boundary
                holds = k == 0
                self.constraints.append(_vscale(Fraction(-1 if lower == holds else 1), td))
                if holds:
                    return self.tan(expr)
            raise ValueError(f"oracle: no branch of {e}")
        raise NotImplementedError(f"oracle: expression node {type(e).__name__}")


def subexpression_values(
    exprs: list[sp.Expr], env: dict[sp.Symbol, Fraction], lets: Lets
) -> dict[sp.Expr, Fraction]:
    """Exact value at w of every sub-expression (all branches and condition sides included)."""
    memo: dict[sp.Expr, Germ] = {}
    genv = {s: g_const(v) for s, v in env.items()}
    seen: set[Any] = set()

    def visit(e: Any) -> None:
        if e in seen:
            return
        seen.add(e)
        if e in lets:
            visit(lets[e])
        for a in e.args:
            visit(a)
        if isinstance(e, sp.Expr):
            germ_of(e, genv, memo, lets)

    for e in exprs:
        visit(e)
    return {k: g_coeff(v, 0) for k, v in memo.items()}


def const_value(expr: sp.Expr, vals: dict[sp.Expr, Fraction]) -> Fraction:
    """Value of a polynomial expression given the values of its free symbols."""
    if expr in vals:
        return vals[expr]
    return g_coeff(germ_of(expr, {s: g_const(vals[s]) for s in expr.free_symbols}, {}), 0)
