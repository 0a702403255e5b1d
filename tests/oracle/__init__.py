"""An independent oracle for the tests: a formal-net/1 network as sympy expressions.

Nothing here uses formal's IR, activations, presets or engine: the document
(a dict) is parsed again, every activation is written from its definition
(``relu = Max(x, 0)``, ``hardswish = x Min(Max(x + 3, 0), 6) / 6``, ...),
every value is an exact ``sympy.Rational`` / ``Fraction``, and the proxy
tables are typed in from docs/theory.md section 1.

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

Modules (each imports only those listed before it): :mod:`oracle.germs` (exact
numbers, germs), :mod:`oracle.expr` (germ evaluation, first-order pattern
walks), :mod:`oracle.activations` (activations, proxy presets), :mod:`oracle.lp`
(exact LP), :mod:`oracle.network` (:class:`Oracle`).
"""

from __future__ import annotations

from oracle.activations import FRAMEWORK_PROXIES, Act, X, make_act, proxy_value
from oracle.expr import OracleBudget
from oracle.germs import exact
from oracle.lp import in_convex_hull, lp_solve, strictly_feasible
from oracle.network import Decision, Oracle, axis_directions

__all__ = [
    "Oracle",
    "OracleBudget",
    "Decision",
    "Act",
    "X",
    "make_act",
    "proxy_value",
    "FRAMEWORK_PROXIES",
    "exact",
    "lp_solve",
    "strictly_feasible",
    "in_convex_hull",
    "axis_directions",
]
