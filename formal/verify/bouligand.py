"""The kernel's check of a ``subgradient`` claim: a Bouligand element (or the gradient) at w.

The claim (docs/certificates.md): directions ``d_1, ..., d_m`` (usually one), a side
for every listed kink node, and a vector (one row per output).  The kernel re-derives
it on its own:

1. It evaluates the network along the curve ``gamma(t) = w + t d_1 + ... + t^m d_m``
   with every value a polynomial in t (:class:`Germ`, exact ``Fraction``
   coefficients) ordered as t -> 0+: so every ReLU piece and every max-pool
   comparison is the one the network takes at ``gamma(t)`` for all small t > 0.
2. Every kink node is resolved by its germ: an activation kink's pre-activation
   minus the kink is a polynomial whose lowest-order non-zero coefficient gives
   its side; a tie's entries are compared as polynomials.
3. One tangent pass (its own AD) in which every kink passes its side's
   derivative: its first-order row ``L_k`` (a linear form on the parameters) goes
   out as ``D+ L_k`` / ``D- L_k`` / the chosen class's row.  A kink whose row is 0
   must be claimed as 0 (either side gives the same vector); a kink whose germ is
   identically 0 along the curve must have row 0 (for a tie: the germ-equal entries
   must have equal rows), else the claim is rejected.
4. The rows of that pass must equal the claimed vector, entry by entry.

Why this proves ``vector`` is in the Bouligand subdifferential: every kink with a
non-zero germ keeps its side strictly at ``gamma(t)`` for small t > 0, hence in an
open ball around each such point; there f coincides with smooth selections F^tau
that differ only at kinks whose first-order row is 0, so the Clarke set of f at
points of the balls lies in conv{grad F^tau}, and every ``grad F^tau(w')`` tends to
the same ``grad F^sigma(w)`` (the side-fixed AD at w, since a zero row contributes
nothing) as w' -> w.  Limits of gradients at differentiable points of the balls
are therefore ``grad F^sigma(w)``: an element of the Bouligand set.  With no
zero-germ kink the balls lie in the open region of the sides and the limit is the
region's gradient.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

from formal.errors import InvalidArgument
from formal.verify.evaluate import (
    ActKink,
    KinkId,
    TieKink,
    axpy,
    coordinate_seed,
    evaluate,
    is_zero,
    kink_id_text,
    output_labels,
    propagate,
    sub,
)
from formal.verify.net import Model, Proxy, Vec, exact


class SubgradientRejected(Exception):
    """A part of the subgradient claim is false (the message names it and the number)."""


class Germ:
    """A polynomial in t with exact coefficients, ordered by its sign for small t > 0.

    Supports what the kernel's evaluation does with numbers: ``+ - *``, division
    by a number, ``abs``, comparisons (with numbers and germs) and so ``max``/``min``.
    """

    __slots__ = ("c",)

    def __init__(self, coeffs: Any):
        c = [Fraction(x) for x in coeffs]
        while c and not c[-1]:
            c.pop()
        self.c: tuple[Fraction, ...] = tuple(c)

    @staticmethod
    def lift(x: Any) -> Germ:
        """A germ from a germ or a number."""
        return x if isinstance(x, Germ) else Germ([x])

    def sign(self) -> int:
        """The sign of the lowest-order non-zero coefficient (0 for the zero polynomial)."""
        for v in self.c:
            if v:
                return 1 if v > 0 else -1
        return 0

    def __add__(self, o: Any) -> Germ:
        o = Germ.lift(o)
        n = max(len(self.c), len(o.c))
        a = self.c + (Fraction(0),) * (n - len(self.c))
        b = o.c + (Fraction(0),) * (n - len(o.c))
        return Germ([x + y for x, y in zip(a, b)])

    __radd__ = __add__

    def __neg__(self) -> Germ:
        return Germ([-x for x in self.c])

    def __sub__(self, o: Any) -> Germ:
        return self + (-Germ.lift(o))

    def __rsub__(self, o: Any) -> Germ:
        return Germ.lift(o) + (-self)

    def __mul__(self, o: Any) -> Germ:
        if not isinstance(o, Germ):
            o = Fraction(o)
            return Germ([x * o for x in self.c]) if o else Germ([])
        if not self.c or not o.c:
            return Germ([])
        out = [Fraction(0)] * (len(self.c) + len(o.c) - 1)
        for i, x in enumerate(self.c):
            if x:
                for j, y in enumerate(o.c):
                    if y:
                        out[i + j] += x * y
        return Germ(out)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Germ:
        if isinstance(o, Germ):
            if len(o.c) > 1:
                raise InvalidArgument("cannot verify: division by a non-constant polynomial")
            o = o.c[0] if o.c else Fraction(0)
        return Germ([x / Fraction(o) for x in self.c])

    def __abs__(self) -> Germ:
        return -self if self.sign() < 0 else self

    def _cmp(self, o: Any) -> int:
        return (self - o).sign()

    def __lt__(self, o: Any) -> bool:
        return self._cmp(o) < 0

    def __le__(self, o: Any) -> bool:
        return self._cmp(o) <= 0

    def __gt__(self, o: Any) -> bool:
        return self._cmp(o) > 0

    def __ge__(self, o: Any) -> bool:
        return self._cmp(o) >= 0

    def __eq__(self, o: object) -> bool:
        if not isinstance(o, (Germ, int, Fraction)):
            return NotImplemented
        return self._cmp(o) == 0

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return " + ".join(f"({v}) t^{i}" for i, v in enumerate(self.c) if v) or "0"


def curve_model(m: Model, ds: list[Vec]) -> Model:
    """The network evaluated along ``w + t d_1 + t^2 d_2 + ...``: every value a :class:`Germ`."""
    moved = {c for d in ds for c, v in d.items() if v}
    params: dict[str, list[Any]] = {}
    for name, vals in m.params.items():
        row: list[Any] = []
        for j, v in enumerate(vals):
            cs = m.coord.get((name, j))
            if cs is None or cs[0] not in moved:
                row.append(v)
                continue
            c, sign = cs
            row.append(Germ([v] + [sign * d.get(c, Fraction(0)) for d in ds]))
        params[name] = row
    g = replace(m, params=params, values=[], pre=[])
    evaluate(g)
    return g


def _germ_of_input(g: Model, layer: int, sample: int, j: int) -> Germ:
    """Entry j of the input of layer ``layer`` (the layer before it, or a branch's source)."""
    src = int(g.layers[layer].attrs.get("input", layer - 1))
    vals = g.inputs[sample] if src < 0 else g.values[src][sample]
    return Germ.lift(vals[j])


class _SidePass:
    """The tangent pass with every kink resolved by its germ along the curve."""

    def __init__(self, m: Model, g: Model, listed: dict[KinkId, int], sides: list[Any]):
        self.m, self.g, self.listed, self.sides = m, g, listed, sides
        self.zero_germ = 0
        self.resolved = 0

    def claimed(self, k: KinkId) -> Any:
        p = self.listed.get(k)
        return None if p is None else self.sides[p]

    def __call__(self, k: KinkId, info: Any) -> Vec:
        if isinstance(info, ActKink):
            return self._act(k, info)
        return self._tie(k, info)

    def _act(self, k: KinkId, info: ActKink) -> Vec:
        _, layer, b, u = k
        germ = Germ.lift(self.g.pre[layer][b][u]) - self.m.pre[layer][b][u]
        s = germ.sign()
        claim = self.claimed(k)
        out: Vec = {}
        if is_zero(info.L):
            if claim not in (None, 0):
                raise SubgradientRejected(
                    f"sides: kink {kink_id_text(k)} has row 0 (side 0), claimed {claim}"
                )
            self.zero_germ += s == 0
            return out
        if s == 0:
            raise SubgradientRejected(
                f"directions: kink {kink_id_text(k)} stays on its kink along the curve "
                "(identically 0) though its row is not 0"
            )
        if claim is not None and claim != s:
            raise SubgradientRejected(
                f"sides: kink {kink_id_text(k)} is claimed on side {claim}, the curve puts it on "
                f"side {s} (lowest-order term {germ})"
            )
        self.resolved += 1
        axpy(out, info.d_plus if s > 0 else info.d_minus, info.L)
        return out

    def _tie(self, k: KinkId, info: TieKink) -> Vec:
        _, layer, b, _ = k
        rows = dict(info.entries)
        germs = {j: _germ_of_input(self.g, layer, b, j) for j, _ in info.entries}
        top = max(germs.values())
        at_top = [j for j, v in germs.items() if v == top]
        claim = self.claimed(k)
        e = at_top[0] if claim is None else claim
        if not isinstance(e, int) or e not in rows:
            raise SubgradientRejected(f"sides: {e!r} at {kink_id_text(k)} is not a tied input")
        cls = {j for j in rows if is_zero(sub(rows[j], rows[e]))}
        for j in at_top:
            if j not in cls:
                which = "stays tied with" if at_top[0] in cls else "is above the class of"
                raise SubgradientRejected(
                    f"sides: tie {kink_id_text(k)}: input {j} {which} input {e} along the curve "
                    "and their rows differ"
                )
        if len(cls) < len(rows):
            self.resolved += 1
        return dict(rows[e])


def _directions(m: Model, spec: Any) -> list[Vec]:
    if not isinstance(spec, list) or not spec:
        raise InvalidArgument("certificate: subgradient.directions: expected a non-empty list")
    index = {lab: j for j, lab in enumerate(m.labels)}
    out = []
    for i, d in enumerate(spec):
        if not isinstance(d, dict):
            raise InvalidArgument(f"certificate: subgradient.directions[{i}]: expected an object")
        v: Vec = {}
        for lab, x in d.items():
            if lab not in index:
                raise SubgradientRejected(
                    f"directions[{i}]: {lab!r} is not a trainable parameter of the network"
                )
            v[index[lab]] = _num(x, f"subgradient.directions[{i}].{lab}")
        out.append(v)
    return out


def _num(v: Any, where: str) -> Fraction:
    try:
        return exact(v, where)
    except InvalidArgument as exc:
        raise InvalidArgument(f"certificate: {exc}") from None


def check_subgradient(
    m: Model, preset: Proxy, listed: list[KinkId], claim: Any, gradient: Any = None
) -> str:
    """Check a ``subgradient`` claim against the kernel's own evaluation; a one-line summary.

    ``m`` is evaluated at w; ``listed`` are the certificate's kinks (canonical order);
    ``gradient``: the certificate's gradient when the kernel has verified f differentiable
    with it (required for kind ``gradient``).  Raises :class:`SubgradientRejected`.
    """
    if not isinstance(claim, dict):
        raise InvalidArgument("certificate: expected an object 'subgradient'")
    kind = claim.get("kind")
    if kind not in ("gradient", "bouligand"):
        raise InvalidArgument(f"certificate: subgradient.kind: unknown kind {kind!r}")
    if kind == "gradient" and gradient is None:
        raise SubgradientRejected("kind: 'gradient' needs a verified differentiable verdict")
    ds = _directions(m, claim.get("directions"))
    sides = claim.get("sides")
    if not isinstance(sides, list) or len(sides) != len(listed):
        raise SubgradientRejected(f"sides: expected {len(listed)} entries, one per listed kink")
    if any(not isinstance(s, int) or isinstance(s, bool) for s in sides):
        raise SubgradientRejected("sides: entries must be integers")
    sp = _SidePass(m, curve_model(m, ds), {k: i for i, k in enumerate(listed)}, sides)
    rows = propagate(m, coordinate_seed(m), sp, preset)
    vec = claim.get("vector")
    outs = output_labels(m)
    if not isinstance(vec, list) or len(vec) != len(rows):
        raise SubgradientRejected(f"vector: expected {len(rows)} rows")
    for o, (row, crow) in enumerate(zip(rows, vec)):
        if not isinstance(crow, list) or len(crow) != len(m.labels):
            raise SubgradientRejected(f"vector[{o}]: expected {len(m.labels)} entries")
        for j, c in enumerate(crow):
            mine = row.get(j, Fraction(0))
            if mine != _num(c, "subgradient.vector"):
                raise SubgradientRejected(
                    f"vector: entry {outs[o]} / {m.labels[j]} is claimed {c}, the side-fixed "
                    f"AD along the curve gives {mine}"
                )
            if (
                gradient is not None
                and kind == "gradient"
                and mine != _num(gradient[o][j], "gradient")
            ):
                raise SubgradientRejected(
                    f"vector: entry {outs[o]} / {m.labels[j]} differs from the verified gradient"
                )
    what = "the gradient" if kind == "gradient" else "a Bouligand element"
    return (
        f"subgradient verified: {what} ({sp.resolved} kink(s) resolved along "
        f"{len(ds)} direction{'s' if len(ds) > 1 else ''}, {sp.zero_germ} with row and germ 0)"
    )


__all__ = ["Germ", "SubgradientRejected", "check_subgradient", "curve_model"]
