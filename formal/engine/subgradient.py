"""A certified generalized gradient at w: the gradient, or an element of the Bouligand set.

:func:`subgradient` answers "which derivative should I use here?" (docs/method.md,
"A certified generalized gradient").  Where f is differentiable the answer is its
exact gradient (kind ``gradient``).  Otherwise it is the gradient of f on an open region touching w
(kind ``bouligand``): a *side* for every kink node (D+ or D- for an activation
kink, one class of tied inputs for a max-pool tie) and a direction d such that
every kink whose first-order row is not 0 moves strictly to its side along d.
The sides are chosen kink by kink in topological order on the kink graph's
reduced model (lexicographic directional differentiation, as in Nesterov's and
Khan-Barton's LD-derivatives, restricted to the kink cone): the direction found
so far decides a kink when it moves it; when it leaves a kink's row at 0 the
direction is nudged along the row toward the preferred side (the next direction
of the lexicographic sequence, folded in exactly with a power-of-two weight);
when it moves the kink to the non-preferred side, one exact LP (z3 QF_LRA,
re-checked) asks whether the preferred side is still realizable.  The vector is
then one reverse pass of AD in which every kink's derivative is its side's.

``prefer="ad"`` prefers, at every kink, the side AD used (its proxy's side, or
the one nearest to it; its chosen input for a tie), so AD's own value comes back
whenever its sign pattern is realizable at first order; ``prefer="any"`` takes
whatever side the direction gives (no LP for activation kinks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import z3

from formal.core.activations import Preset, parse_preset
from formal.core.kinks import KinkNode
from formal.core.network import Network
from formal.core.numbers import format_exact
from formal.core.qarray import QArray
from formal.engine.certificate import FORMAT_TAG, build_certificate, equal_classes, kink_key
from formal.engine.forward import Forward, forward, gradient_ad, jvp
from formal.engine.kinkgraph import KinkGraph, build_kink_graph, gradient_from_graph
from formal.engine.outcome import Rows, Verdict
from formal.engine.verdict import check
from formal.errors import InvalidArgument, NotExact

Prefer = Literal["ad", "any"]
"""Which Bouligand element to look for first: AD's own, or any."""

SubgradientKind = Literal["gradient", "bouligand", "unknown"]
"""``gradient``: f is differentiable at w; ``bouligand``: an element of the Bouligand
subdifferential (the gradient of f on an open region touching w); ``unknown``: none found."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One entry where the returned vector differs from AD's value."""

    output: str
    param: str
    ad: Fraction
    value: Fraction

    def to_json(self, value_key: str = "subgradient") -> dict[str, str]:
        """``{"output", "param", "ad", value_key, "difference"}`` (exact strings)."""
        return {
            "output": self.output,
            "param": self.param,
            "ad": format_exact(self.ad),
            value_key: format_exact(self.value),
            "difference": format_exact(self.value - self.ad),
        }


@dataclass(frozen=True, slots=True)
class Side:
    """The side a kink node takes: +1 / -1 (D+ / D-), 0 (its row is 0: either side gives the
    same vector), or for a max-pool tie the input index naming the chosen class."""

    kink: str  # label, as in formal check
    sample: int
    kind: str  # "act" | "tie"
    side: int
    ad_side: bool  # the side AD used

    def to_json(self) -> dict[str, Any]:
        """``{"kink", "sample", "kind", "side", "ad_side"}``."""
        return {
            "kink": self.kink,
            "sample": self.sample,
            "kind": self.kind,
            "side": self.side,
            "ad_side": self.ad_side,
        }


@dataclass(frozen=True, slots=True)
class Subgradient:
    """A generalized gradient at w, with the evidence that makes it one.

    ``vector``: one row per output (as ``Verdict.gradient``).  ``direction``:
    a parameter direction along which every kink with a non-zero row moves
    strictly to its side (empty without kinks).  ``sides``: one per kink node,
    in the certificate's canonical order.  ``ad_is_element``: AD's value equals
    ``vector`` (so AD is itself a Bouligand element, or the gradient);
    ``differs_from_ad``: the entries where it does not.
    """

    kind: SubgradientKind
    prefer: Prefer
    vector: Rows | None
    direction: tuple[tuple[str, Fraction], ...]
    sides: tuple[Side, ...]
    ad_is_element: bool | None
    differs_from_ad: tuple[Difference, ...]
    verdict: Verdict
    reason: str = ""
    seconds: float = 0.0
    lp_calls: int = 0

    @property
    def certified(self) -> bool:
        """True when there is a vector (the kernel re-checks it from the certificate)."""
        return self.vector is not None and self.kind != "unknown"

    def to_json(self) -> dict[str, Any]:
        """The ``subgradient`` object of ``formal check --subgradient --json``."""
        return {
            "kind": self.kind,
            "prefer": self.prefer,
            "vector": None
            if self.vector is None
            else [[format_exact(v) for v in row] for row in self.vector],
            "direction": {k: format_exact(v) for k, v in self.direction},
            "sides": [s.to_json() for s in self.sides],
            "ad_is_element": self.ad_is_element,
            "differs_from_ad": [d.to_json() for d in self.differs_from_ad],
            "reason": self.reason or None,
            "seconds": round(self.seconds, 6),
            "lp_calls": self.lp_calls,
        }

    def claim(self) -> dict[str, Any]:
        """The ``subgradient`` claim of a formal-cert/1 certificate (docs/certificates.md)."""
        if not self.certified:
            raise InvalidArgument(f"no subgradient to certify: {self.reason}")
        assert self.vector is not None
        return {
            "kind": self.kind,
            "directions": [{k: format_exact(v) for k, v in self.direction}],
            "sides": [s.side for s in self.sides],
            "vector": [[format_exact(v) for v in row] for row in self.vector],
        }


# -- the greedy walk on the kink graph (coordinates lam of V) ---------------------------
class Form:
    """A linear form (or point) on V in the coordinates lam: integers over one denominator."""

    __slots__ = ("num", "den")

    def __init__(self, num: list[int], den: int = 1):
        g = math.gcd(den, *num)
        if den < 0:
            g = -g
        self.num = [x // g for x in num] if g != 1 else num
        self.den = den // g

    @staticmethod
    def zero(r: int) -> Form:
        """The zero form on Q^r."""
        return Form([0] * r, 1)

    def __bool__(self) -> bool:
        return any(self.num)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Form) and self.den == other.den and self.num == other.num

    __hash__ = None  # type: ignore[assignment]

    def scale(self, c: Fraction | int) -> Form:
        """c times the form."""
        c = Fraction(c)
        return Form([x * c.numerator for x in self.num], self.den * c.denominator)

    def axpy(self, c: Fraction | int, v: Form) -> Form:
        """self + c v."""
        c = Fraction(c)
        if not c:
            return self
        a, b = v.den * c.denominator, self.den
        cn = c.numerator * b
        return Form([x * a + y * cn for x, y in zip(self.num, v.num)], a * b)

    def dot(self, v: Form) -> Fraction:
        """The form's value at the point v (or the dot product of two forms)."""
        return Fraction(sum(x * y for x, y in zip(self.num, v.num) if x and y), self.den * v.den)

    def fractions(self) -> list[Fraction]:
        """The coefficients as Fractions."""
        return [Fraction(x, self.den) for x in self.num]


def _pow2_below(x: Fraction) -> Fraction:
    """The largest power of two <= x (x > 0): keeps the direction's numbers short."""
    e = x.numerator.bit_length() - x.denominator.bit_length()
    p = Fraction(2) ** e
    while p > x:
        p /= 2
    while p * 2 <= x:
        p *= 2
    return p


def _q(x: Fraction) -> z3.ArithRef:
    return z3.RealVal(format_exact(x))


class _Walk:
    """Sides chosen kink by kink, with a point ``lam`` strictly inside every chosen half-space."""

    def __init__(self, g: KinkGraph, prefer: Prefer, timeout_ms: int):
        self.g, self.prefer, self.timeout_ms = g, prefer, timeout_ms
        self.r = g.rank
        self.lam = Form.zero(self.r)
        self.rows: list[Form] = []  # strict rows: row . lam > 0
        self.lp_calls = 0

    # -- feasibility -----------------------------------------------------------------
    def _holds(self, new: list[Form]) -> bool:
        return all(f.dot(self.lam) > 0 for f in new)

    def _nudge(self, f: Form) -> None:
        """lam += delta f, delta a power of two small enough to keep every old row > 0."""
        bound = Fraction(1)
        for row in self.rows:
            c = row.dot(f)
            if c < 0:
                bound = min(bound, row.dot(self.lam) / (-2 * c))
        self.lam = self.lam.axpy(_pow2_below(bound), f)

    def _lp(self, new: list[Form]) -> bool:
        """One exact LP: a lam with every old and new row >= 1; adopted when re-checked."""
        self.lp_calls += 1
        lam = [z3.Real(f"l{j}") for j in range(self.r)]
        s = z3.SolverFor("QF_LRA")
        s.set("timeout", self.timeout_ms)
        for f in self.rows + new:
            terms = [_q(c) * lam[j] for j, c in enumerate(f.fractions()) if c]
            s.add((z3.Sum(terms) if terms else z3.RealVal(0)) >= 1)
        res = s.check()
        if res == z3.unsat:
            return False
        if res != z3.sat:
            raise NotExact(f"z3 returned {res} on a side LP ({s.reason_unknown()})")
        m = s.model()
        vals = [Fraction(m.eval(v, model_completion=True).as_fraction()) for v in lam]
        den = math.lcm(*(v.denominator for v in vals)) if vals else 1
        val = Form([int(v * den) for v in vals], den)
        if not all(f.dot(val) > 0 for f in self.rows + new):
            raise NotExact("a side LP model failed the exact re-check")
        self.lam = val
        self.rows.extend(new)
        return True

    # -- one kink ----------------------------------------------------------------------
    def activation(self, f: Form, pref: int) -> int:
        """The side of an activation kink with row f (0 when f = 0)."""
        if not f:
            return 0
        v = f.dot(self.lam)
        if v * pref > 0:
            self.rows.append(f.scale(pref))
            return pref
        if v == 0:  # the next lexicographic direction: along the row, toward pref
            g = f.scale(pref)
            self._nudge(g)
            self.rows.append(g)
            return pref
        if self.prefer == "ad" and self._lp([f.scale(pref)]):
            return pref
        s = 1 if v > 0 else -1
        self.rows.append(f.scale(s))
        return s

    def tie(self, ys: list[Form], pref: int) -> int:
        """The position (in ys) naming the chosen class of a tie."""
        classes = equal_classes(ys)
        if len(classes) == 1:
            return pref

        def rows_of(c: int) -> list[Form]:
            rep = classes[c][0]
            return [rep.axpy(-1, y) for i, (y, _) in enumerate(classes) if i != c]

        values = [rep.dot(self.lam) for rep, _ in classes]
        top = max(values)
        first = next(c for c, (_, m) in enumerate(classes) if pref in m)
        order = [first] + [c for c in range(len(classes)) if c != first]
        if self.prefer == "any":  # the classes at the top first
            order = sorted(order, key=lambda c: values[c] != top)
        for c in order:
            new = rows_of(c)
            if self._holds(new):
                self.rows.extend(new)
                return pref if c == first else classes[c][1][0]
            if self._lp(new):
                return pref if c == first else classes[c][1][0]
        raise NotExact("no class of a tie is realizable (impossible for an open cone)")


def _basis_row(g: KinkGraph, row: int) -> Form:
    """Row ``row`` of the basis of V (t = basis @ lam) as a form on lam."""
    vals = [Fraction(g.basis[row, j]) for j in range(g.rank)]
    den = math.lcm(*(v.denominator for v in vals)) if vals else 1
    return Form([int(v * den) for v in vals], den)


def _ad_side(k: KinkNode) -> int:
    """The side AD used at an activation kink: its proxy's, else the one nearest to it."""
    if k.proxy == k.d_plus:
        return 1
    if k.proxy == k.d_minus:
        return -1
    return 1 if abs(k.proxy - k.d_plus) <= abs(k.proxy - k.d_minus) else -1


def choose_sides(
    g: KinkGraph, prefer: Prefer, timeout_ms: int = 60_000
) -> tuple[list[int], Form, int]:
    """Sides (engine kink order; ties: position in ``inputs``), the point lam, LP calls."""
    walk = _Walk(g, prefer, timeout_ms)
    r = g.rank
    z: dict[int, Form] = {}
    sides: list[int] = []
    basis = [_basis_row(g, row) for row in range(len(g.rows))]
    for k, node in enumerate(g.kinks):
        ys: list[Form] = []
        for i in range(len(node.inputs)):
            row = g.row_of[(k, i)]
            acc = basis[row]
            for k2, zf in z.items():
                c = g.C[row, k2]
                if c and zf:
                    acc = acc.axpy(c, zf)
            ys.append(acc)
        if node.kind == "act":
            s = walk.activation(ys[0], _ad_side(node))
            d = node.d_plus if s > 0 else node.d_minus
            z[k] = ys[0].scale(d) if s else Form.zero(r)
        else:
            s = walk.tie(ys, node.choice)
            z[k] = ys[s]
        sides.append(s)
    for f in walk.rows:  # the exact re-check of the final point against every chosen row
        if not f.dot(walk.lam) > 0:
            raise NotExact("the side walk's point failed the exact re-check")
    return sides, walk.lam, walk.lp_calls


def _with_sides(fwd: Forward, sides: list[int]) -> Forward:
    """A copy of the forward pass whose kinks pass their side's derivative in reverse mode."""
    new: list[KinkNode] = []
    states = dict(fwd.states)
    for k, s in zip(fwd.kinks, sides):
        if k.kind == "act":
            new.append(replace(k, proxy=k.d_plus if s > 0 else k.d_minus if s < 0 else k.proxy))
        else:
            choice = np.array(states[k.node], copy=True)
            choice[k.sample, k.index] = k.inputs[s]
            states[k.node] = choice
            new.append(replace(k, choice=s))
    by_node: dict[str, list[KinkNode]] = {}
    for k in new:
        by_node.setdefault(k.node, []).append(k)
    return replace(fwd, kinks=new, by_node=by_node, states=states)


def _rows(q: QArray) -> Rows:
    return tuple(tuple(Fraction(v) for v in row) for row in q.to_fractions())


def _differences(net: Network, vec: Rows, ad: Rows) -> tuple[Difference, ...]:
    par = net.parameterization()
    outs = net.output_labels()
    return tuple(
        Difference(outs[o], par.label(j), a, v)
        for o, (vrow, arow) in enumerate(zip(vec, ad))
        for j, (v, a) in enumerate(zip(vrow, arow))
        if v != a
    )


def subgradient(
    net: Network,
    proxy: str | Preset = "pytorch",
    *,
    prefer: Prefer = "ad",
    timeout: float = 60.0,
    verdict: Verdict | None = None,
) -> Subgradient:
    """A certified generalized gradient of ``net``'s output (or objective) at its parameters.

    ``verdict``: the result of ``check(net, proxy)`` when the caller already has it
    (it is computed otherwise).  Never raises for an undecidable case: the result
    then has kind ``unknown`` and the reason.

    Examples
    --------
    >>> from formal.examples import load_example
    >>> sg = subgradient(load_example("e1"), "right")
    >>> sg.kind, sg.vector, sg.ad_is_element
    ('gradient', ((Fraction(0, 1), Fraction(0, 1)),), False)
    """
    if prefer not in ("ad", "any"):
        raise InvalidArgument(f"expected prefer 'ad' or 'any', got {prefer!r}")
    t0 = time.perf_counter()
    preset = proxy if isinstance(proxy, Preset) else parse_preset(proxy)
    v = verdict if verdict is not None else check(net, preset, timeout=timeout)

    def unknown(reason: str) -> Subgradient:
        return Subgradient(
            "unknown", prefer, None, (), (), None, (), v, reason, time.perf_counter() - t0
        )

    try:
        fwd = forward(net, preset, use_filter=False)
        ad = _rows(gradient_ad(fwd))
        if not fwd.kinks:
            return Subgradient(
                "gradient",
                prefer,
                ad,
                (),
                (),
                True,
                (),
                v,
                "no kink node: f is smooth near w and AD is its gradient",
                time.perf_counter() - t0,
            )
        g = build_kink_graph(fwd)
        sides, lam, lps = choose_sides(g, prefer, int(timeout * 1000))
        vec = _rows(gradient_ad(_with_sides(fwd, sides)))
        d = g.direction(lam.fractions())
        along = jvp(fwd, [d]).to_fractions()[0]  # f'(w; d) = vector . d inside the region
        if any(
            Fraction(a) != sum((row[j] * x for j, x in d.items()), Fraction(0))
            for a, row in zip(along, vec)
        ):
            return unknown("internal: f'(w; d) differs from the vector along the direction")
        if v.differentiable:
            grad = ad if v.ad_correct else _rows(gradient_from_graph(g))
            if vec != grad:  # a realizable piece's map is the gradient; never claim otherwise
                return unknown("internal: a realizable piece's map differs from the gradient")
    except NotExact as exc:
        return unknown(str(exc))
    par = net.parameterization()
    order = sorted(range(len(fwd.kinks)), key=lambda i: kink_key(fwd.kinks[i]))
    side_list = []
    for i in order:
        k, s = fwd.kinks[i], sides[i]
        if k.kind == "act":
            used = s == 0 or k.proxy == (k.d_plus if s > 0 else k.d_minus)
            side_list.append(Side(k.label(net), k.sample, "act", s, used))
        else:
            side_list.append(Side(k.label(net), k.sample, "tie", k.inputs[s], s == k.choice))
    diffs = _differences(net, vec, ad)
    kind: SubgradientKind = "gradient" if v.differentiable else "bouligand"
    if not diffs:
        why = (
            "AD's value is the gradient"
            if v.differentiable
            else "AD's value is a Bouligand element"
        )
    elif v.differentiable:
        why = "f is differentiable; AD differs from its gradient"
    else:
        why = (
            "AD's value is not an element found at first order (its sides are not all "
            "realizable, or a proxy is not one-sided); the nearest: AD's side where realizable"
        )
        if prefer == "any":
            why = "a Bouligand element (prefer any); it differs from AD's value"
    return Subgradient(
        kind,
        prefer,
        vec,
        tuple((par.label(j), x) for j, x in sorted(d.items()) if x),
        tuple(side_list),
        not diffs,
        diffs,
        v,
        why,
        time.perf_counter() - t0,
        lps,
    )


def _kink_json(k: KinkNode) -> dict[str, Any]:
    layer, _, op = k.node.partition(".")
    kind = "maxpool" if op.startswith("maxpool") else "act"
    return {"op": kind, "layer": int(layer), "sample": k.sample, "unit": k.index}


def attach(
    cert: dict[str, Any] | None,
    net: Network,
    sg: Subgradient,
    proxy: str,
    doc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The formal-cert/1 certificate ``cert`` of the verdict with the ``subgradient`` claim added.

    When there is no certifiable verdict (``cert`` None for an unknown verdict, or
    "too-large") the certificate claims only the subgradient (``"verdict":
    "subgradient"``, kind ``bouligand``: the kernel checks the element, not
    differentiability); it embeds ``doc`` (or the too-large certificate's network).
    """
    claim = sg.claim()
    if cert is not None and cert.get("verdict") != "too-large":
        return {**cert, "subgradient": claim}
    doc = cert["network"] if cert is not None else doc
    if doc is None:
        raise InvalidArgument("cannot certify the subgradient: no formal-net/1 document")
    fwd = forward(net, parse_preset(proxy), use_filter=False)
    return {
        "format": FORMAT_TAG,
        "proxy": proxy,
        "method": sg.verdict.method,
        "network": doc,
        "parameters": list(net.parameterization().labels),
        "outputs": net.output_labels(),
        "kinks": [_kink_json(k) for k in sorted(fwd.kinks, key=kink_key)],
        "verdict": "subgradient",
        "subgradient": {**claim, "kind": "bouligand"},
    }


def certificate(
    net: Network, doc: dict[str, Any], sg: Subgradient, proxy: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    """The certificate of ``formal check --certify --subgradient``: verdict and subgradient."""
    cert = None
    if sg.verdict.differentiable is not None:
        cert = build_certificate(net, doc, sg.verdict, proxy, timeout=timeout)
    return attach(cert, net, sg, proxy, doc)


__all__ = [
    "attach",
    "certificate",
    "Difference",
    "Prefer",
    "Side",
    "Subgradient",
    "SubgradientKind",
    "choose_sides",
    "subgradient",
]
