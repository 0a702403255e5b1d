"""An independent oracle for the tests: a formal-net/1 network as sympy expressions.

Nothing here uses formal's IR, activations, presets or engine: the document
(a dict) is parsed again, every activation is written from its definition
(``relu = Max(x, 0)``, ``hardswish = x Min(Max(x + 3, 0), 6) / 6``, ...),
every value is an exact ``sympy.Rational`` / ``Fraction``, and the proxy
tables are typed in from THEORY section 1.

Three independent computations answer the questions ``formal.check`` decides:

**Directional derivatives, from the definition** (:meth:`Oracle.directional`).
Along a ray ``w + t d`` every node of the expression is, for ``t`` in some
interval ``(0, eps)``, a polynomial in ``t`` (a *germ*): sums and products of
polynomials are polynomials, and ``Max``/``Min``/``Abs``/``Piecewise`` pick one
argument or branch, which one being eventually constant because a non-zero
polynomial has, on ``(0, eps)``, the sign of its lowest-order non-zero
coefficient (a zero polynomial is zero on the whole interval, and then all
candidate branches agree by continuity).  So ``f(w + t d) = P(t)`` exactly on
``(0, eps)``, ``P(0) = f(w)`` and ``f'(w; d) = lim (P(t) - P(0)) / t`` is the
``t``-coefficient of ``P``.  No first-order rule is used: germs are kept whole.

**Differentiability and the gradient** (:meth:`Oracle.decide`).  At ``w`` a
``Max``/``Min`` whose maximal arguments tie, an ``Abs`` of 0, or a
``Piecewise`` sitting on a condition boundary is a *choice node*.  Fix one
option at every choice node reached (a *pattern* s): the first-order tangent
(chain rule, product rule) is then a linear map ``d -> L_s d``, valid on the
polyhedral cone ``R_s`` where every chosen option is the active one to first
order (linear inequalities ``phi(d) >= 0``).  The cones cover ``R^W`` and
``g(d) = f'(w; d) = L_s d`` on ``R_s``.  A cone with empty interior lies in
a hyperplane, so the full-dimensional cones (those whose *strict* system
``phi(d) > 0``, zero forms dropped, is feasible) cover a dense set.  Hence
``g`` is linear iff all full-dimensional cones carry the same ``L``: if so,
``g = L`` on a dense set and, being continuous, everywhere; if two differ,
``g`` equals two different linear maps on two open sets and is not linear.
By Lemma D (f locally Lipschitz), ``g`` linear <=> f differentiable, and then
``grad f(w) = L``.  Strict feasibility is decided exactly (Gordan's
alternative and a small rational simplex, :func:`lp_solve`; each answer
comes with a checked certificate).  Branches whose option does not matter
(a factor that is 0, a non-maximal argument) are never entered, so the
search stays small.
The ``{L_s}`` of full-dimensional cells are the gradients of ``g``'s pieces:
each is a Bouligand subgradient (the limit of ``grad f`` along
``w + eps d``, d interior), used to check ``bouligand``/``clarke`` claims.

**AD with proxies** (:meth:`Oracle.ad`): a hand-written reverse pass over
the let-bound intermediate values (pre-activations, activations, pooled
values) with Fractions: polynomial lets by their partial derivatives
(``sympy.diff``), an activation whose input equals a kink by the preset's
proxy from :data:`FRAMEWORK_PROXIES` (or the layer's override), elsewhere by
``rho'`` read off the germ of the sympy formula, and a max-pool window by
sending the adjoint to the first (``tie=first``) or last maximal entry in
row-major window order.  Layers: dense, conv2d, maxpool2d, avgpool2d,
flatten, add (torch conventions, no ``ceil_mode``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

Germ = tuple[Fraction, ...]  # polynomial in t, lowest order first, no trailing zeros
Vec = tuple[Fraction, ...]
Lets = dict[sp.Symbol, sp.Expr]  # let-bound symbols: pre-activations, in build order

# ---------------------------------------------------------------------------
# Exact numbers


_HEX = re.compile(r"^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?\d+)$")


def exact(value: Any) -> Fraction:
    """An exact rational from an int, Fraction, Decimal, sympy Rational or text (p/q, decimal, hex float)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"oracle: expected an exact number, got {value!r}")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, Decimal):
        return Fraction(value)
    if isinstance(value, sp.Rational):
        return Fraction(int(value.p), int(value.q))
    text = str(value).strip()
    m = _HEX.match(text)
    if m:
        sign, whole, frac, exp = m.groups()
        frac = frac or ""
        mant = int((whole or "0") + frac, 16)
        q = Fraction(mant) * Fraction(2) ** (int(exp) - 4 * len(frac))
        return -q if sign == "-" else q
    return Fraction(text)


def rat(q: Fraction) -> sp.Rational:
    q = Fraction(q)
    return sp.Rational(q.numerator, q.denominator)


# ---------------------------------------------------------------------------
# Germs: polynomials in t, exact


def _trim(c: list[Fraction]) -> Germ:
    while c and c[-1] == 0:
        c.pop()
    return tuple(c)


def g_const(q: Fraction) -> Germ:
    return _trim([Fraction(q)])


def g_add(a: Germ, b: Germ) -> Germ:
    n = max(len(a), len(b))
    return _trim([(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n)])


def g_neg(a: Germ) -> Germ:
    return tuple(-x for x in a)


def g_mul(a: Germ, b: Germ) -> Germ:
    if not a or not b:
        return ()
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return _trim(out)


def g_sign(a: Germ) -> int:
    """Sign of the polynomial on (0, eps): the sign of its lowest-order non-zero coefficient."""
    for x in a:
        if x:
            return 1 if x > 0 else -1
    return 0


def g_coeff(a: Germ, k: int) -> Fraction:
    return a[k] if k < len(a) else Fraction(0)


# ---------------------------------------------------------------------------
# Activations, from their definitions


X = sp.Symbol("x", real=True)


@dataclass(frozen=True)
class Act:
    """An activation: name, parameters, its sympy formula in X, and its kinks (from the definition)."""

    name: str
    params: tuple[tuple[str, Fraction], ...]
    kinks: tuple[Fraction, ...]

    def param(self, key: str) -> Fraction:
        return dict(self.params)[key]

    def formula(self, x: sp.Expr) -> sp.Expr:
        n = self.name
        if n in ("identity", "linear"):
            return x
        if n == "relu":
            return sp.Max(x, 0)
        if n == "relu6":
            return sp.Min(sp.Max(x, 0), 6)
        if n in ("hardtanh", "clip"):
            return sp.Min(sp.Max(x, rat(self.param("min"))), rat(self.param("max")))
        if n == "hardsigmoid":
            return sp.Min(sp.Max(x + 3, 0), 6) / 6
        if n == "hardswish":
            return x * sp.Min(sp.Max(x + 3, 0), 6) / 6
        if n == "leaky_relu":
            return sp.Piecewise((rat(self.param("slope")) * x, x < 0), (x, True))
        if n == "abs":
            return sp.Abs(x)
        raise NotImplementedError(f"oracle: activation {n}")

    def value(self, x: Fraction) -> Fraction:
        return g_coeff(_scalar_germ(self, Fraction(x), 0), 0)

    def d_plus(self, x: Fraction) -> Fraction:
        """D+rho(x): the t-coefficient of rho(x + t)."""
        return g_coeff(_scalar_germ(self, Fraction(x), 1), 1)

    def d_minus(self, x: Fraction) -> Fraction:
        """D-rho(x): minus the t-coefficient of rho(x - t)."""
        return -g_coeff(_scalar_germ(self, Fraction(x), -1), 1)


@functools.cache
def _formula_x(act: Act) -> sp.Expr:
    return act.formula(X)


@functools.lru_cache(maxsize=65536)
def _scalar_germ(act: Act, x: Fraction, direction: int) -> Germ:
    """The germ of rho(x + direction * t)."""
    return _germ(_formula_x(act), {X: _trim([x, Fraction(direction)])}, {})


def make_act(spec: Any) -> tuple[Act, Any]:
    """Parse a formal-net activation spec: (Act, proxy override spec or None)."""
    if spec is None:
        spec = "identity"
    if isinstance(spec, str):
        name, raw, proxy = spec, {}, None
    else:
        name = spec["name"]
        raw = {k: v for k, v in spec.items() if k not in ("name", "proxy")}
        proxy = spec.get("proxy")
    params: dict[str, Fraction] = {}
    kinks: tuple[Fraction, ...]
    if name == "leaky_relu":
        params["slope"] = exact(raw.get("slope", "1/100"))
        kinks = () if params["slope"] == 1 else (Fraction(0),)
    elif name in ("hardtanh", "clip"):
        params["min"] = exact(raw.get("min", -1))
        params["max"] = exact(raw.get("max", 1))
        kinks = (params["min"], params["max"])
    elif name in ("relu", "abs"):
        kinks = (Fraction(0),)
    elif name == "relu6":
        kinks = (Fraction(0), Fraction(6))
    elif name in ("hardsigmoid", "hardswish"):
        kinks = (Fraction(-3), Fraction(3))
    elif name in ("identity", "linear"):
        kinks = ()
    else:
        raise NotImplementedError(f"oracle: activation {name}")
    return Act(name, tuple(sorted(params.items())), kinks), proxy


# ---------------------------------------------------------------------------
# Proxy presets, typed in from THEORY section 1 (one entry per kink, ascending).
# "slope" means the leaky slope; other entries are literal numbers.

_F = Fraction
_PT = {
    "relu": (_F(0),),
    "leaky_relu": ("slope",),
    "relu6": (_F(0), _F(0)),
    "hardtanh": (_F(0), _F(0)),
    "hardsigmoid": (_F(0), _F(0)),
    "hardswish": (_F(0), _F(1)),
    "abs": (_F(0),),
    "clip": (_F(0), _F(0)),
}
FRAMEWORK_PROXIES: dict[str, dict[str, tuple[Any, ...]]] = {
    "pytorch": _PT,
    "pytorch-2.6": dict(_PT, hardswish=(_F(-1, 2), _F(3, 2))),
    "pytorch-2.13": dict(_PT, clip=(_F(1), _F(1))),
    "jax": {
        "relu": (_F(0),),
        "leaky_relu": (_F(1),),
        "relu6": (_F(0), _F(0)),
        "hardtanh": (_F(1), _F(1)),
        "hardsigmoid": (_F(0), _F(0)),
        "hardswish": (_F(0), _F(1)),
        "abs": (_F(1),),
        "clip": (_F(1, 2), _F(1, 2)),
    },
    "tensorflow": {
        "relu": (_F(0),),
        "leaky_relu": ("slope",),
        "relu6": (_F(0), _F(0)),
        "hardsigmoid": (_F(0), _F(0)),
        "hardswish": (_F(0), _F(1)),
        "abs": (_F(0),),
        "clip": (_F(1), _F(1)),
    },
}


def proxy_value(preset: str, act: Act, c: Fraction) -> Fraction:
    """The derivative AD uses at kink c of act under a preset name."""
    preset = preset.split(",")[0].strip()
    if preset == "left":
        return act.d_minus(c)
    if preset == "right":
        return act.d_plus(c)
    if preset.startswith("lambda="):
        t = exact(preset[len("lambda=") :])
        return t * act.d_minus(c) + (1 - t) * act.d_plus(c)
    if preset.startswith("value="):
        return exact(preset[len("value=") :])
    table = FRAMEWORK_PROXIES[preset]
    if act.name not in table:
        raise KeyError(f"oracle: preset {preset} has no convention for {act.name}")
    entry = table[act.name][act.kinks.index(c)]
    return act.param("slope") if entry == "slope" else Fraction(entry)


def _override_value(spec: Any, act: Act, c: Fraction, unit: int) -> Fraction:
    """A per-layer proxy override of formal-net/1: number, preset name, list per kink, or list per unit."""
    if isinstance(spec, list):
        if spec and isinstance(spec[0], list):
            return _override_value(spec[unit], act, c, unit)
        return exact(spec[act.kinks.index(c)])
    if isinstance(spec, str) and not re.match(r"^\s*[+-]?[0-9.]", spec):
        return proxy_value(spec, act, c)
    return exact(spec)


# ---------------------------------------------------------------------------
# Expression evaluation: germs (the definition) and first-order patterns


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


def _germ(
    expr: sp.Expr, env: dict[sp.Symbol, Germ], memo: dict[sp.Expr, Germ], lets: Lets | None = None
) -> Germ:
    """The germ of expr on (0, eps) given the symbols' germs (let-bound symbols are expanded)."""
    hit = memo.get(expr)
    if hit is not None:
        return hit
    if lets is None:
        lets = {}
    if expr.is_Symbol:
        r = env[expr] if expr in env else _germ(lets[expr], env, memo, lets)
    elif expr.is_Rational:
        r = g_const(Fraction(int(expr.p), int(expr.q)))
    elif expr.is_Number:
        raise TypeError(f"oracle: inexact number {expr}")
    elif isinstance(expr, sp.Add):
        r = ()
        for a in expr.args:
            r = g_add(r, _germ(a, env, memo, lets))
    elif isinstance(expr, sp.Mul):
        r = (Fraction(1),)
        for a in expr.args:
            r = g_mul(r, _germ(a, env, memo, lets))
    elif isinstance(expr, sp.Pow):
        n = expr.exp
        if not (n.is_Integer and int(n) >= 0):
            raise NotImplementedError(f"oracle: power {expr}")
        base = _germ(expr.base, env, memo, lets)
        r = (Fraction(1),)
        for _ in range(int(n)):
            r = g_mul(r, base)
    elif isinstance(expr, (sp.Max, sp.Min)):
        gs = [_germ(a, env, memo, lets) for a in expr.args]
        want = 1 if isinstance(expr, sp.Max) else -1
        r = gs[0]
        for g in gs[1:]:
            if g_sign(g_add(g, g_neg(r))) == want:
                r = g
    elif isinstance(expr, sp.Abs):
        a = _germ(expr.args[0], env, memo, lets)
        r = g_neg(a) if g_sign(a) < 0 else a
    elif isinstance(expr, sp.Piecewise):
        r = None
        for e, c in expr.args:
            if c == sp.true:
                r = _germ(e, env, memo, lets)
                break
            s = g_sign(g_add(_germ(c.lhs, env, memo, lets), g_neg(_germ(c.rhs, env, memo, lets))))
            if _rel_holds(c, s):
                r = _germ(e, env, memo, lets)
                break
        if r is None:
            raise ValueError(f"oracle: no branch of {expr} holds")
    else:
        raise NotImplementedError(f"oracle: expression node {type(expr).__name__}")
    memo[expr] = r
    return r


class OracleBudget(Exception):
    """The pattern search would take too long for a test (the caller rejects the example)."""


class _NeedChoice(Exception):
    def __init__(self, key: Any, n: int, constraints: list[Vec]) -> None:
        self.key, self.n, self.constraints = key, n, list(constraints)


def _vadd(a: Vec, b: Vec) -> Vec:
    return tuple(x + y for x, y in zip(a, b))


def _vscale(c: Fraction, a: Vec) -> Vec:
    return tuple(c * x for x in a)


class _Walk:
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
            raise _NeedChoice(key, n, self.constraints)
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
            v = [Fraction(0)] * self.W
            v[self.index[e]] = Fraction(1)
            return tuple(v)
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


def _values(
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
            _germ(e, genv, memo, lets)

    for e in exprs:
        visit(e)
    return {k: g_coeff(v, 0) for k, v in memo.items()}


# ---------------------------------------------------------------------------
# Exact LP helpers


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
    """Is there d with phi(d) > 0 for every non-zero form phi?  Both answers carry a checked certificate.

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


# ---------------------------------------------------------------------------
# The network


@dataclass
class LayerInfo:
    """A layer's activation and its proxy override (None: the preset's)."""

    act: Act
    proxy: Any


@dataclass
class Let:
    """A named intermediate value (a sympy Dummy): what it is, for the reverse pass.

    ``lin``: a polynomial in parameters and earlier lets (dense/conv/avg-pool/residual
    outputs); ``act``: ``rho(args[0])``; ``max``: the max of ``args`` (a pooling window,
    in row-major window order, padding left out).
    """

    kind: str
    layer: int
    sample: int
    index: int  # per-sample flat index in the layer's output
    args: tuple[sp.Expr, ...] = ()
    act: Act | None = None
    tie: str | None = None  # max: the layer's override for this entry (None: the preset's)


@dataclass
class Cell:
    """A full-dimensional cone of the pattern search: g(d) = L d on it."""

    choices: dict[Any, int]
    L: tuple[Vec, ...]  # (n_obj, W)


@dataclass
class Decision:
    differentiable: bool
    gradient: tuple[Vec, ...] | None
    cells: list[Cell] = field(default_factory=list)
    complete: bool = True  # every full-dimensional cell listed

    def piece_gradients(self) -> list[tuple[Vec, ...]]:
        """Distinct gradients of g's linear pieces on full-dimensional cones (Bouligand subgradients)."""
        out: list[tuple[Vec, ...]] = []
        for c in self.cells:
            if c.L not in out:
                out.append(c.L)
        return out


def _pair(v: Any, default: Any) -> tuple[int, int]:
    v = default if v is None else v
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _tensor(value: Any) -> np.ndarray:
    arr = np.array(value, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(*arr.shape):
        out[idx] = exact(arr[idx])
    return out


class Oracle:
    """A formal-net/1 document as exact sympy expressions of the parameter-group symbols.

    Layers: dense, conv2d, maxpool2d, avgpool2d, flatten, add (torch conventions;
    ``ceil_mode`` is not supported).  Every intermediate value is a let-bound
    symbol (:class:`Let`), so expressions stay small and the reverse pass can
    apply proxies (activations) and tie rules (max-pools) by name.
    """

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.X = [[exact(v) for v in row] for row in doc["inputs"]]
        self.B = len(self.X)
        self.in_shape = tuple(doc.get("input_shape") or [len(self.X[0])])
        raw = doc["params"]
        self.params: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self.layers: list[LayerInfo] = []
        for i, spec in enumerate(doc["layers"]):
            if spec["type"] in ("dense", "conv2d"):
                for name in [f"{i}.weight"] + ([f"{i}.bias"] if spec.get("bias", True) else []):
                    self.params[name] = _tensor(raw[name])
                    self.order.append(name)
            self.layers.append(LayerInfo(*make_act(spec.get("activation"))))
        self.trainable = [n for n in self.order if n in doc.get("trainable", self.order)]
        self._parameterize(doc.get("tied") or [])
        self._build()
        self._decisions: dict[str, Decision] = {}

    # -- parameter groups: trainable entries, ties merged, numbered by first appearance
    def _entries(self) -> list[tuple[str, tuple[int, ...]]]:
        return [
            (name, tuple(int(i) for i in idx))
            for name in self.trainable
            for idx in np.ndindex(*self.params[name].shape)
        ]

    def entry_value(self, name: str, idx: tuple[int, ...]) -> Fraction:
        return self.params[name][idx]

    def _parameterize(self, tied: list[list[str]]) -> None:
        entries = self._entries()
        pos = {e: i for i, e in enumerate(entries)}
        adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(entries))}
        for group in tied:
            parsed = []
            for text in group:
                m = re.match(r"^\s*(-?)\s*([^\[\]\s]+)\s*\[([0-9,\s]*)\]\s*$", text)
                assert m, text
                sign = -1 if m.group(1) else 1
                idx = tuple(int(x) for x in m.group(3).split(",") if x.strip())
                parsed.append((pos[(m.group(2), idx)], sign))
            (h, hs) = parsed[0]
            for x, xs in parsed[1:]:
                adj[h].append((x, hs * xs))
                adj[x].append((h, hs * xs))
        group_of: dict[int, int] = {}
        sign_of: dict[int, int] = {}
        self.labels: list[str] = []
        self.w: list[Fraction] = []
        for i in range(len(entries)):
            if i in group_of:
                continue
            g = len(self.labels)
            name, idx = entries[i]
            self.labels.append(f"{name}[{','.join(map(str, idx))}]")
            self.w.append(self.entry_value(name, idx))
            group_of[i], sign_of[i] = g, 1
            stack = [i]
            while stack:
                x = stack.pop()
                for y, s in adj[x]:
                    if y in group_of:
                        if sign_of[y] != sign_of[x] * s:
                            raise ValueError("oracle: contradictory tie signs")
                        continue
                    group_of[y], sign_of[y] = g, sign_of[x] * s
                    stack.append(y)
        self.entry_group = {entries[i]: (group_of[i], sign_of[i]) for i in range(len(entries))}
        for e, (g, s) in self.entry_group.items():
            assert self.entry_value(*e) == s * self.w[g], ("tied values differ", e)
        self.W = len(self.labels)
        self.symbols = [sp.Symbol(f"w{g}", real=True) for g in range(self.W)]
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.env = dict(zip(self.symbols, self.w))

    def entry_expr(self, name: str, idx: tuple[int, ...]) -> sp.Expr:
        if (name, idx) in self.entry_group:
            g, s = self.entry_group[(name, idx)]
            return s * self.symbols[g]
        return rat(self.entry_value(name, idx))

    # -- building -----------------------------------------------------------------
    def _let(
        self, kind: str, expr: sp.Expr, layer: int, sample: int, index: int, **kw: Any
    ) -> sp.Symbol:
        sym = sp.Dummy(f"{kind}{layer}_{sample}_{index}", real=True)
        self.lets[sym] = expr
        self.info[sym] = Let(kind, layer, sample, index, **kw)
        return sym

    def _build(self) -> None:
        self.lets: Lets = {}
        self.info: dict[sp.Symbol, Let] = {}
        outs: list[sp.Expr] = []
        for b in range(self.B):
            x = np.empty(self.in_shape, dtype=object)
            x.reshape(-1)[:] = [rat(v) for v in self.X[b]]
            cur, outputs = x, []
            for i, spec in enumerate(self.doc["layers"]):
                cur = getattr(self, "_" + spec["type"])(i, spec, cur, b, x, outputs)
                cur = self._activation(i, cur, b)
                outputs.append(cur)
            self.out_shape = cur.shape
            outs += list(cur.reshape(-1))
        self.outputs = outs
        n = len(outs) // self.B
        spec = self.doc.get("objective")
        if spec is None:
            self.obj = [[Fraction(int(i == j)) for j in range(len(outs))] for i in range(len(outs))]
            self.output_labels = [
                "out[" + ",".join(map(str, (b,) + idx)) + "]"
                for b in range(self.B)
                for idx in np.ndindex(*self.out_shape)
            ]
        elif spec["type"] == "sum":
            self.obj = [[Fraction(1)] * len(outs)]
            self.output_labels = ["objective"]
        else:
            self.obj = [[exact(v) for row in spec["weights"] for v in row]]
            self.output_labels = ["objective"]
        assert all(len(r) == self.B * n for r in self.obj)
        self.exprs = [sp.Add(*[rat(c) * e for c, e in zip(row, outs) if c]) for row in self.obj]

    def _dense(self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any) -> np.ndarray:
        z = cur.reshape(-1)
        out = np.empty(int(spec["units"]), dtype=object)
        for u in range(out.size):
            y = sp.Add(*[self.entry_expr(f"{i}.weight", (u, j)) * z[j] for j in range(z.size)])
            if spec.get("bias", True):
                y = y + self.entry_expr(f"{i}.bias", (u,))
            out[u] = self._let("lin", y, i, b, u)
        return out

    def _conv2d(self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any) -> np.ndarray:
        C, H, Wd = cur.shape
        CO = int(spec["out_channels"])
        kh, kw = _pair(spec.get("kernel_size"), None)
        sh, sw = _pair(spec.get("stride"), 1)
        ph, pw = _pair(spec.get("padding"), 0)
        dh, dw = _pair(spec.get("dilation"), 1)
        g = int(spec.get("groups", 1))
        oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        out = np.empty((CO, oh, ow), dtype=object)
        cin = C // g
        for co in range(CO):
            c0 = (co // (CO // g)) * cin
            for r in range(oh):
                for c in range(ow):
                    terms = []
                    for ci in range(cin):
                        for p in range(kh):
                            for q in range(kw):
                                rr, cc = r * sh - ph + p * dh, c * sw - pw + q * dw
                                if 0 <= rr < H and 0 <= cc < Wd:
                                    terms.append(
                                        self.entry_expr(f"{i}.weight", (co, ci, p, q))
                                        * cur[c0 + ci, rr, cc]
                                    )
                    y = sp.Add(*terms)
                    if spec.get("bias", True):
                        y = y + self.entry_expr(f"{i}.bias", (co,))
                    out[co, r, c] = self._let("lin", y, i, b, (co * oh + r) * ow + c)
        return out

    def _windows(self, spec: dict[str, Any], cur: np.ndarray, dilate: bool):
        if spec.get("ceil_mode", False):
            raise NotImplementedError("oracle: ceil_mode")
        C, H, Wd = cur.shape
        kh, kw = _pair(spec.get("kernel_size"), None)
        sh, sw = _pair(spec.get("stride"), (kh, kw))
        ph, pw = _pair(spec.get("padding"), 0)
        dh, dw = _pair(spec.get("dilation"), 1) if dilate else (1, 1)
        oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        for ch in range(C):
            for r in range(oh):
                for c in range(ow):
                    entries = [
                        cur[ch, r * sh - ph + p * dh, c * sw - pw + q * dw]
                        for p in range(kh)
                        for q in range(kw)
                        if 0 <= r * sh - ph + p * dh < H and 0 <= c * sw - pw + q * dw < Wd
                    ]
                    yield (ch, r, c), (C, oh, ow), entries, kh * kw

    def _maxpool2d(
        self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any
    ) -> np.ndarray:
        res = {}
        tie = spec.get("tie")
        for pos, shape, entries, _ in self._windows(spec, cur, True):
            flat = (pos[0] * shape[1] + pos[1]) * shape[2] + pos[2]
            rule = tie if isinstance(tie, str) or tie is None else tie[flat % len(tie)]
            res[pos] = self._let("max", sp.Max(*entries), i, b, flat, args=tuple(entries), tie=rule)
            out_shape = shape
        out = np.empty(out_shape, dtype=object)
        for pos, v in res.items():
            out[pos] = v
        return out

    def _avgpool2d(
        self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any
    ) -> np.ndarray:
        res = {}
        include = spec.get("count_include_pad", True)
        for pos, shape, entries, full in self._windows(spec, cur, False):
            flat = (pos[0] * shape[1] + pos[1]) * shape[2] + pos[2]
            res[pos] = self._let(
                "lin", sp.Add(*entries) / (full if include else len(entries)), i, b, flat
            )
            out_shape = shape
        out = np.empty(out_shape, dtype=object)
        for pos, v in res.items():
            out[pos] = v
        return out

    def _flatten(self, i: int, spec: dict[str, Any], cur: np.ndarray, *_: Any) -> np.ndarray:
        return cur.reshape(-1)

    def _add(
        self,
        i: int,
        spec: dict[str, Any],
        cur: np.ndarray,
        b: int,
        x: np.ndarray,
        outputs: list[np.ndarray],
    ) -> np.ndarray:
        other = x if spec["from"] == "input" else outputs[int(spec["from"])]
        out = np.empty(cur.shape, dtype=object)
        for k, (u, v) in enumerate(zip(cur.reshape(-1), other.reshape(-1))):
            out.reshape(-1)[k] = self._let("lin", u + v, i, b, k)
        return out

    def _activation(self, i: int, cur: np.ndarray, b: int) -> np.ndarray:
        info = self.layers[i]
        if info.act.name in ("identity", "linear") and info.proxy is None:
            return cur
        out = np.empty(cur.shape, dtype=object)
        for k, y in enumerate(cur.reshape(-1)):
            out.reshape(-1)[k] = self._let(
                "act", info.act.formula(y), i, b, k, args=(y,), act=info.act
            )
        return out

    # -- values and directional derivatives (germs) ---------------------------
    def value(self) -> list[Fraction]:
        memo: dict[sp.Expr, Germ] = {}
        env = {s: g_const(v) for s, v in self.env.items()}
        return [g_coeff(_germ(e, env, memo, self.lets), 0) for e in self.exprs]

    def expression(self, row: int = 0) -> sp.Expr:
        """Objective row ``row`` as one sympy expression of the parameter symbols (lets expanded)."""
        e = self.exprs[row]
        for let, y in reversed(list(self.lets.items())):
            e = e.subs(let, y)
        return e

    def sympy_value(self) -> list[Fraction]:
        """f(w) by sympy's own evaluation (xreplace), a check of the germ evaluator."""
        sub: dict[sp.Symbol, sp.Expr] = {s: rat(v) for s, v in self.env.items()}
        for let, y in self.lets.items():  # build order: each let reads earlier ones only
            sub[let] = y.xreplace(sub)
        vals = [e.xreplace(sub) for e in self.exprs]
        assert all(v.is_Rational for v in vals), vals
        return [exact(v) for v in vals]

    def directional(self, d: list[Fraction] | dict[int, Fraction]) -> list[Fraction]:
        """f'(w; d) for every objective row, from the germ of f(w + t d)."""
        if isinstance(d, dict):
            dd = [Fraction(0)] * self.W
            for j, v in d.items():
                dd[j] = Fraction(v)
            d = dd
        env = {s: _trim([self.w[i], Fraction(d[i])]) for i, s in enumerate(self.symbols)}
        memo: dict[sp.Expr, Germ] = {}
        f0 = self.value()
        out = []
        for e, v0 in zip(self.exprs, f0):
            g = _germ(e, env, memo, self.lets)
            assert g_coeff(g, 0) == v0, "germ at t = 0 must be f(w)"
            out.append(g_coeff(g, 1))
        return out

    def directional_labels(self, d: dict[str, Fraction]) -> list[Fraction]:
        """f'(w; d) for a direction given by parameter-group labels."""
        pos = {lab: i for i, lab in enumerate(self.labels)}
        return self.directional({pos[k]: Fraction(v) for k, v in d.items()})

    def additivity_violations(
        self, pairs: list[tuple[list[Fraction], list[Fraction]]]
    ) -> list[int]:
        """Indices of pairs (d1, d2) with f'(d1 + d2) != f'(d1) + f'(d2) (Lemma D refutations)."""
        bad = []
        for k, (d1, d2) in enumerate(pairs):
            s = [a + b for a, b in zip(d1, d2)]
            v1, v2, v3 = self.directional(d1), self.directional(d2), self.directional(s)
            if any(c != a + b for a, b, c in zip(v1, v2, v3)):
                bad.append(k)
        return bad

    # -- differentiability: full-dimensional cones of first-order patterns ------
    def decide(self, *, complete: bool = False, budget: int = 600) -> Decision:
        """Differentiability and the gradient (see the module docstring).

        With ``complete=False`` the search stops at the second distinct ``L``
        (non-differentiable); ``complete=True`` lists every full-dimensional
        cell (needed for Bouligand/Clarke checks).  More than ``budget`` pattern
        walks raises :class:`OracleBudget` (the cell count can be exponential).
        """
        key = "complete" if complete else "first"
        hit = self._decisions.get(key) or self._decisions.get("complete")
        if hit is not None:
            return hit
        values = _values(self.exprs, self.env, self.lets)
        cells: list[Cell] = []
        grads: set[tuple[Vec, ...]] = set()
        stack: list[dict[Any, int]] = [{}]
        walks = 0
        while stack:
            walks += 1
            if walks > budget:
                raise OracleBudget(f"more than {budget} pattern walks")
            choices = stack.pop()
            walk = _Walk(values, self.W, self.index, choices, self.lets)
            try:
                L = tuple(walk.tan(e) for e in self.exprs)
            except _NeedChoice as nc:
                if strictly_feasible(nc.constraints):
                    stack += [{**choices, nc.key: k} for k in range(nc.n)]
                continue
            if strictly_feasible(walk.constraints):
                cells.append(Cell(choices, L))
                grads.add(L)
                if len(grads) > 1 and not complete:
                    break
        assert cells, "the full-dimensional cones cover a dense set: at least one exists"
        diff = len(grads) == 1
        decision = Decision(diff, cells[0].L if diff else None, cells, complete=complete or diff)
        self._decisions[key] = decision
        return decision

    # -- AD with proxies: a reverse pass over the let-bound values ---------------
    def let_values(self) -> dict[sp.Expr, Fraction]:
        """Exact value of every parameter symbol and let at w."""
        memo: dict[sp.Expr, Germ] = {}
        env = {s: g_const(v) for s, v in self.env.items()}
        out: dict[sp.Expr, Fraction] = dict(self.env)
        for sym in self.lets:
            out[sym] = g_coeff(_germ(sym, env, memo, self.lets), 0)
        return out

    def depends(self, layer: int) -> bool:
        """Structurally, does layer `layer`'s output involve a trainable parameter?"""
        return any(int(n.split(".")[0]) <= layer for n in self.trainable)

    def kink_units(self) -> list[tuple[int, int, int, Fraction]]:
        """(layer, sample, flat index, kink) of every activation entry whose input equals a kink."""
        vals = self.let_values()
        out = []
        for info in self.info.values():
            if info.kind == "act":
                y = _const_value(info.args[0], vals)
                if y in info.act.kinks:
                    out.append((info.layer, info.sample, info.index, y))
        return out

    def proxy_at(self, preset: str, i: int, u: int, c: Fraction) -> Fraction:
        layer = self.layers[i]
        if layer.proxy is not None:
            return _override_value(layer.proxy, layer.act, c, u)
        return proxy_value(preset, layer.act, c)

    def ad(self, preset: str) -> tuple[tuple[Vec, ...], dict[tuple[int, int, int], list[Fraction]]]:
        """AD(w) (n_obj x W) and the adjoint of every kink unit's output (per objective row)."""
        vals = self.let_values()
        default_tie = "last" if preset.replace(" ", "").endswith("tie=last") else "first"
        rows: list[Vec] = []
        kadj: dict[tuple[int, int, int], list[Fraction]] = {}
        order = list(self.lets)
        for e in self.exprs:
            adj: dict[sp.Expr, Fraction] = {}
            self._push(e, Fraction(1), adj, vals)
            for sym in reversed(order):
                info = self.info[sym]
                a = adj.get(sym, Fraction(0))
                if info.kind == "act":
                    y = _const_value(info.args[0], vals)
                    if y in info.act.kinks:
                        kadj.setdefault((info.layer, info.sample, info.index), []).append(a)
                        slope = self.proxy_at(preset, info.layer, info.index, y)
                    else:
                        slope = info.act.d_plus(y)
                    if a and slope:
                        self._push(info.args[0], a * slope, adj, vals)
                elif not a:
                    continue
                elif info.kind == "max":
                    xs = [_const_value(x, vals) for x in info.args]
                    top = [k for k, x in enumerate(xs) if x == max(xs)]
                    k = top[0] if (info.tie or default_tie) == "first" else top[-1]
                    self._push(info.args[k], a, adj, vals)
                else:
                    self._push(self.lets[sym], a, adj, vals)
            rows.append(tuple(adj.get(s, Fraction(0)) for s in self.symbols))
        return tuple(rows), kadj

    def _push(
        self,
        expr: sp.Expr,
        a: Fraction,
        adj: dict[sp.Expr, Fraction],
        vals: dict[sp.Expr, Fraction],
    ) -> None:
        """adj[s] += a * d expr / d s at w, for every free symbol s of a polynomial expr."""
        cache = self.__dict__.setdefault("_partials", {})
        parts = cache.get(expr)
        if parts is None:
            parts = [(s, sp.diff(expr, s)) for s in expr.free_symbols]
            cache[expr] = parts
        for s, dexpr in parts:
            c = _const_value(dexpr, vals)
            if c:
                adj[s] = adj.get(s, Fraction(0)) + a * c


def _const_value(expr: sp.Expr, vals: dict[sp.Expr, Fraction]) -> Fraction:
    """Value of a polynomial expression given the values of its free symbols."""
    if expr in vals:
        return vals[expr]
    return g_coeff(_germ(expr, {s: g_const(vals[s]) for s in expr.free_symbols}, {}), 0)


def axis_directions(W: int) -> list[list[Fraction]]:
    return [[Fraction(int(i == j)) for i in range(W)] for j in range(W)]


__all__ = [
    "Oracle",
    "OracleBudget",
    "Act",
    "make_act",
    "proxy_value",
    "FRAMEWORK_PROXIES",
    "exact",
    "strictly_feasible",
    "in_convex_hull",
    "axis_directions",
]
