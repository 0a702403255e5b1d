"""Piecewise-analytic activations, their kinks, and the proxy presets of AD.

An activation ``rho`` is continuous and piecewise polynomial: finitely many
*kinks* ``c_1 < ... < c_n`` split the line into ``n + 1`` open intervals, each
carrying a polynomial piece with exact rational coefficients.  At a kink the
one-sided derivatives ``D-rho(c)`` (the left piece's slope) and ``D+rho(c)``
(the right piece's slope) differ.  Smooth transcendental activations (sigmoid,
tanh) have no kinks and are marked ``transcendental``: their values are not
rational, so an exact verdict that depends on them is "unknown".

AD uses, at a kink, some *proxy* value in place of the missing derivative.
A :class:`Preset` names the proxies a framework uses.  The table, read from
the frameworks' backward/JVP source (late 2026), is in README.md:

=============  ==================  ==============  ===============
activation     pytorch             jax             tensorflow
=============  ==================  ==============  ===============
relu (0)       0 = D-              0 = D-          0 = D-
leaky_relu(0)  slope = D-          1 = D+          slope = D-
relu6 (0, 6)   0, 0 (D-, D+)       0, 0            0, 0
hardtanh       0, 0 (D-, D+)       1, 1 (D+, D-)   n/a
hardsigmoid    0, 0 (D-, D+)       0, 0            0, 0
hardswish      0, 1 (D-, D+)       0, 1            0, 1
abs (0)        0 (midpoint)        1 = D+          0 (midpoint)
clip bounds    0 (>= 2.14)         1/2             1
=============  ==================  ==============  ===============

``pytorch-2.6`` is PyTorch before 2.7 (hardswish -1/2, 3/2) and
``pytorch-2.13`` is PyTorch up to 2.13 (clamp passes 1 at its bounds).

Examples
--------
>>> relu = get_activation("relu")
>>> relu.kinks
(Fraction(0, 1),)
>>> PRESETS["pytorch"].proxy(relu, 0)
Fraction(0, 1)
>>> parse_preset("lambda=1/4").proxy(relu, 0)  # t D- + (1 - t) D+ = 1/4 * 0 + 3/4 * 1
Fraction(3, 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.numbers import parse_exact
from formal.core.qarray import QArray
from formal.errors import InvalidArgument

Poly = tuple[Fraction, ...]  # coefficients, lowest degree first


def _poly(*coeffs: Any) -> Poly:
    return tuple(Fraction(c) for c in coeffs)


def _peval(p: Poly, x: Fraction) -> Fraction:
    acc = Fraction(0)
    for c in reversed(p):
        acc = acc * x + c
    return acc


def _pderiv(p: Poly) -> Poly:
    return tuple(Fraction(i) * c for i, c in enumerate(p))[1:] or (Fraction(0),)


@dataclass(frozen=True, slots=True)
class Activation:
    """A scalar activation applied pointwise.

    ``pieces[i]`` is the polynomial on the i-th open interval between kinks;
    ``lipschitz`` bounds |rho'| (used by the float filter's error bound).
    """

    name: str
    params: tuple[tuple[str, Fraction], ...] = ()
    kinks: tuple[Fraction, ...] = ()
    pieces: tuple[Poly, ...] = ((Fraction(0), Fraction(1)),)
    lipschitz: Fraction = Fraction(1)
    transcendental: bool = False
    float_fn: Callable[[np.ndarray], np.ndarray] | None = None

    # -- pieces and one-sided derivatives -------------------------------------
    def piece_index(self, x: Fraction) -> int:
        """Index of the piece whose closed interval contains x (left piece at a kink)."""
        for i, c in enumerate(self.kinks):
            if x <= c:
                return i
        return len(self.kinks)

    def value(self, x: Fraction) -> Fraction:
        """rho(x) exactly (the left piece at a kink); transcendental activations are refused."""
        if self.transcendental:
            raise InvalidArgument(f"expected a piecewise-polynomial activation, got {self.name}")
        return _peval(self.pieces[self.piece_index(Fraction(x))], Fraction(x))

    def d_minus(self, c: Fraction) -> Fraction:
        """Left derivative D-rho(c)."""
        c = Fraction(c)
        return _peval(_pderiv(self.pieces[self.piece_index(c)]), c)

    def d_plus(self, c: Fraction) -> Fraction:
        """Right derivative D+rho(c)."""
        c = Fraction(c)
        i = self.piece_index(c)
        if c in self.kinks:
            i += 1
        return _peval(_pderiv(self.pieces[i]), c)

    def derivative(self, x: Fraction) -> Fraction:
        """rho'(x) away from kinks."""
        x = Fraction(x)
        if x in self.kinks:
            raise InvalidArgument(f"expected a point off the kinks of {self.name}, got x={x}")
        return self.d_minus(x)

    def describe(self) -> str:
        """The name with its parameters, e.g. ``leaky_relu(slope=1/100)``."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})"

    @property
    def degree(self) -> int:
        """The highest polynomial degree among the pieces."""
        return max(len(p) for p in self.pieces) - 1

    # -- exact, vectorized ----------------------------------------------------
    def piece_map(self, y: QArray) -> np.ndarray:
        """Integer array: the piece index of each entry (left piece at a kink)."""
        idx = np.zeros(y.shape, dtype=np.int64)
        for c in self.kinks:
            idx += (y.compare(c) > 0).astype(np.int64)
        return idx

    def apply(self, y: QArray, pieces: np.ndarray | None = None) -> QArray:
        """Exact values ``rho(y)`` (piecewise polynomial only)."""
        if self.transcendental:
            raise InvalidArgument(f"expected a piecewise-polynomial activation, got {self.name}")
        return self._eval_pieces(self.pieces, y, self.piece_map(y) if pieces is None else pieces)

    def slope(self, y: QArray, pieces: np.ndarray) -> QArray:
        """Exact derivative of the selected piece at each entry."""
        return self._eval_pieces(tuple(_pderiv(p) for p in self.pieces), y, pieces)

    @staticmethod
    def _eval_pieces(polys: tuple[Poly, ...], y: QArray, pieces: np.ndarray) -> QArray:
        deg = max(len(p) for p in polys) - 1
        lcm = 1
        for p in polys:
            for c in p:
                lcm = math.lcm(lcm, c.denominator)
        num = np.empty(y.shape, dtype=object)
        num[...] = 0
        powers: list[Any] = [None] * (deg + 1)
        for i in range(deg + 1):
            # num^i * den^(deg - i) (no pass over the entries for a power or factor of 1)
            if not i:
                powers[i] = np.full(y.shape, y.den**deg, dtype=object)
                continue
            pw = y.num if i == 1 else y.num**i
            powers[i] = pw if deg == i else pw * (y.den ** (deg - i))
        for k, p in enumerate(polys):
            mask = pieces == k
            if not mask.any():
                continue
            acc: Any = None
            for i, c in enumerate(p):
                if c:
                    f = c.numerator * (lcm // c.denominator)
                    term = powers[i] if f == 1 else powers[i] * f
                    acc = term if acc is None else acc + term
            if acc is None:
                acc = np.zeros(y.shape, dtype=object)
                acc[...] = 0
            num = np.where(mask, acc, num)
        return QArray(num.astype(object), lcm * y.den**deg)

    # -- float ---------------------------------------------------------------
    def apply_float(self, y: np.ndarray) -> np.ndarray:
        """rho on a float array: ``float_fn`` when given, else the pieces evaluated in float."""
        if self.float_fn is not None:
            return self.float_fn(y)
        out = np.zeros_like(y)
        idx = np.zeros(y.shape, dtype=np.int64)
        for c in self.kinks:
            idx += (y > float(c)).astype(np.int64)
        for k, p in enumerate(self.pieces):
            val = np.zeros_like(y)
            for c in reversed(p):
                val = val * y + float(c)
            out = np.where(idx == k, val, out)
        return out


# ---------------------------------------------------------------------------
# The catalogue.  Each factory documents kinks and one-sided derivatives.


def identity() -> Activation:
    """Identity: no kinks."""
    return Activation("identity")


def relu() -> Activation:
    """ReLU: kink 0, D- = 0, D+ = 1."""
    return Activation("relu", (), (Fraction(0),), (_poly(0), _poly(0, 1)))


def leaky_relu(slope: Any = Fraction(1, 100)) -> Activation:
    """LeakyReLU(a): kink 0, D- = a, D+ = 1 (a != 1)."""
    a = Fraction(slope)
    if a == 1:
        return Activation("leaky_relu", (("slope", a),))
    return Activation(
        "leaky_relu",
        (("slope", a),),
        (Fraction(0),),
        (_poly(0, a), _poly(0, 1)),
        max(Fraction(1), abs(a)),
    )


def relu6() -> Activation:
    """ReLU6 = min(max(x, 0), 6): kinks 0 (D- 0, D+ 1) and 6 (D- 1, D+ 0)."""
    return Activation("relu6", (), (Fraction(0), Fraction(6)), (_poly(0), _poly(0, 1), _poly(6)))


def hardtanh(min: Any = -1, max: Any = 1, name: str = "hardtanh") -> Activation:  # noqa: A002
    """HardTanh(lo, hi) = clip(x, lo, hi): kinks lo (D- 0, D+ 1) and hi (D- 1, D+ 0)."""
    lo, hi = Fraction(min), Fraction(max)
    if not lo < hi:
        raise InvalidArgument(f"expected min < max for {name}, got min={lo}, max={hi}")
    return Activation(
        name, (("min", lo), ("max", hi)), (lo, hi), (_poly(lo), _poly(0, 1), _poly(hi))
    )


def clip(min: Any = -1, max: Any = 1) -> Activation:  # noqa: A002
    """Clip/clamp(lo, hi): the HardTanh function; frameworks give it other proxies."""
    return hardtanh(min, max, name="clip")


def hardsigmoid() -> Activation:
    """HardSigmoid = relu6(x + 3) / 6: kinks -3 (D- 0, D+ 1/6) and 3 (D- 1/6, D+ 0)."""
    return Activation(
        "hardsigmoid",
        (),
        (Fraction(-3), Fraction(3)),
        (_poly(0), _poly(Fraction(1, 2), Fraction(1, 6)), _poly(1)),
        Fraction(1, 6),
    )


def hardswish() -> Activation:
    """HardSwish = x relu6(x + 3) / 6: kinks -3 (D- 0, D+ -1/2) and 3 (D- 3/2, D+ 1)."""
    return Activation(
        "hardswish",
        (),
        (Fraction(-3), Fraction(3)),
        (_poly(0), _poly(0, Fraction(1, 2), Fraction(1, 6)), _poly(0, 1)),
        Fraction(3, 2),
    )


def abs_() -> Activation:
    """Abs: kink 0, D- = -1, D+ = 1."""
    return Activation("abs", (), (Fraction(0),), (_poly(0, -1), _poly(0, 1)))


def sigmoid() -> Activation:
    """Logistic sigmoid: smooth, no kinks, transcendental values."""
    return Activation(
        "sigmoid",
        lipschitz=Fraction(1, 4),
        transcendental=True,
        float_fn=lambda y: 1.0 / (1.0 + np.exp(-y)),
    )


def tanh() -> Activation:
    """tanh: smooth, no kinks, transcendental values."""
    return Activation("tanh", transcendental=True, float_fn=np.tanh)


_FACTORIES: dict[str, Callable[..., Activation]] = {
    "identity": identity,
    "linear": identity,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "relu6": relu6,
    "hardtanh": hardtanh,
    "clip": clip,
    "hardsigmoid": hardsigmoid,
    "hardswish": hardswish,
    "abs": abs_,
    "sigmoid": sigmoid,
    "tanh": tanh,
}
_PARAMS = {"leaky_relu": ("slope",), "hardtanh": ("min", "max"), "clip": ("min", "max")}


def activation_names() -> tuple[str, ...]:
    """The names of every built-in activation, in registration order."""
    return tuple(_FACTORIES)


def get_activation(name: str, **params: Any) -> Activation:
    """Build an activation by name; parameters are exact numbers (strings allowed)."""
    if name not in _FACTORIES:
        raise InvalidArgument(
            f"expected an activation ({', '.join(_FACTORIES)}), got activation={name!r}"
        )
    allowed = _PARAMS.get(name, ())
    for key in params:
        if key not in allowed:
            raise InvalidArgument(
                f"expected parameters {list(allowed)} for activation {name}, got {key!r}"
            )
    return _FACTORIES[name](**{k: parse_exact(v) for k, v in params.items()})


# ---------------------------------------------------------------------------
# Proxy presets

ProxyRule = Callable[[Activation, Fraction], Fraction]


def _left(act: Activation, c: Fraction) -> Fraction:
    return act.d_minus(c)


def _right(act: Activation, c: Fraction) -> Fraction:
    return act.d_plus(c)


def _lam(t: Fraction) -> ProxyRule:
    return lambda act, c: t * act.d_minus(c) + (1 - t) * act.d_plus(c)


def _table(table: dict[str, Any], preset: str) -> ProxyRule:
    """A framework rule: ``table[name]`` is 'left', 'right', 'mid', a number or a per-kink tuple."""

    def rule(act: Activation, c: Fraction) -> Fraction:
        if act.name not in table:
            raise InvalidArgument(f"preset {preset} has no convention for activation {act.name}")
        entry = table[act.name]
        if isinstance(entry, tuple):
            entry = entry[act.kinks.index(c)]
        if entry == "left":
            return act.d_minus(c)
        if entry == "right":
            return act.d_plus(c)
        if entry == "mid":
            return (act.d_minus(c) + act.d_plus(c)) / 2
        return Fraction(entry)

    return rule


_PYTORCH = {
    "relu": "left",  # aten threshold_backward: grad * (x > 0)
    "leaky_relu": "left",  # leaky_relu_backward: x > 0 ? grad : grad * slope
    "relu6": ("left", "right"),  # hardtanh_backward with (0, 6): 0 at both bounds
    "hardtanh": ("left", "right"),  # hardtanh_backward: (x <= min || x >= max) ? 0 : grad
    "hardsigmoid": ("left", "right"),  # hardsigmoid_backward: (-3 < x < 3) ? grad / 6 : 0
    # hardswish_backward (>= 2.7): x <= -3 -> 0, x < 3 -> (2x + 3) / 6, else 1: 0 at -3, 1 at 3
    "hardswish": ("left", "right"),
    "abs": 0,  # abs backward: grad * sgn(x), sgn(0) = 0
    "clip": 0,  # clamp_backward (>= 2.14): 0 at the bounds
}
# hardswish_backward before 2.7: x < -3 -> 0, x <= 3 -> (2x + 3) / 6, else 1: -1/2 at -3, 3/2 at 3
_PYTORCH_213 = dict(_PYTORCH, clip=1)  # clamp passes gradient 1 at its bounds up to 2.13
# before 2.7 hardswish differed too; clamp passed 1 at its bounds (clamp_backward's
# where(self >= min & self <= max, grad, 0)) as in every release up to 2.13
_PYTORCH_26 = dict(_PYTORCH_213, hardswish=("right", "left"))
_JAX = {
    "relu": "left",  # jax.nn.relu custom_jvp: where(x > 0, g, 0)
    "leaky_relu": "right",  # jnp.where(x >= 0, x, slope * x): derivative 1 at 0
    "relu6": ("left", "right"),  # jax.nn.relu6 custom_jvp: 0 at 0 and 6
    "hardtanh": ("right", "left"),  # jnp.where chains: 1 at -1 and 1
    "hardsigmoid": ("left", "right"),  # relu6(x + 3) / 6
    "hardswish": ("left", "right"),  # x * hard_sigmoid(x)
    "abs": "right",  # lax.abs jvp: select(x >= 0, g, -g)
    "clip": "mid",  # jnp.clip via minimum/maximum: ties split 1/2
}
_TENSORFLOW = {
    "relu": "left",  # ReluGrad: x > 0
    "leaky_relu": "left",  # LeakyReluGrad: x > 0 ? g : g * alpha
    "relu6": ("left", "right"),  # Relu6Grad: 0 < x < 6
    "hardsigmoid": ("left", "right"),  # keras hard_sigmoid
    "hardswish": ("left", "right"),  # keras hard_swish
    "abs": 0,  # Abs grad: g * sign(x)
    "clip": 1,  # clip_by_value gradient passes 1 at the bounds
}


@dataclass(frozen=True, slots=True)
class Preset:
    """A named proxy convention: the value AD uses at each kink, and the max-pool tie rule.

    ``tie`` says which index of a max-pool argmax set receives the gradient:
    ``first`` (row-major window order; PyTorch, JAX and TensorFlow on CPU) or
    ``last``.
    """

    name: str
    rule: ProxyRule
    tie: str = "first"

    def proxy(self, act: Activation, c: Any) -> Fraction:
        """The proxy rho'(c) this preset uses at the kink c of act (InvalidArgument off a kink)."""
        c = Fraction(c)
        if c not in act.kinks:
            raise InvalidArgument(f"expected a kink of {act.describe()}, got {c}")
        return Fraction(self.rule(act, c))

    def kind(self, act: Activation, c: Any) -> str:
        """'left', 'right', 'between' (in the closed segment) or 'outside'."""
        p, lo, hi = self.proxy(act, c), act.d_minus(Fraction(c)), act.d_plus(Fraction(c))
        if p == lo:
            return "left"
        if p == hi:
            return "right"
        if min(lo, hi) <= p <= max(lo, hi):
            return "between"
        return "outside"


PRESETS: dict[str, Preset] = {
    "pytorch": Preset("pytorch", _table(_PYTORCH, "pytorch")),
    "pytorch-2.6": Preset("pytorch-2.6", _table(_PYTORCH_26, "pytorch-2.6")),
    "pytorch-2.13": Preset("pytorch-2.13", _table(_PYTORCH_213, "pytorch-2.13")),
    "jax": Preset("jax", _table(_JAX, "jax")),
    "tensorflow": Preset("tensorflow", _table(_TENSORFLOW, "tensorflow")),
    "left": Preset("left", _left),
    "right": Preset("right", _right),
}


def parse_preset(text: str) -> Preset:
    """Parse ``NAME``, ``lambda=t`` or ``value=p``, optionally ``,tie=first|last``."""
    base, _, rest = str(text).partition(",")
    tie = "first"
    if rest:
        key, _, val = rest.partition("=")
        if key.strip() != "tie" or val.strip() not in ("first", "last"):
            raise InvalidArgument(
                f"expected ',tie=first' or ',tie=last' after the preset, got {rest!r}"
            )
        tie = val.strip()
    base = base.strip()
    if base in PRESETS:
        p = PRESETS[base]
        return Preset(p.name if tie == "first" else f"{p.name},tie={tie}", p.rule, tie)
    if base.startswith("lambda="):
        t = parse_exact(base[len("lambda=") :])
        return Preset(text, _lam(t), tie)
    if base.startswith("value="):
        v = parse_exact(base[len("value=") :])
        return Preset(text, lambda act, c: v, tie)
    raise InvalidArgument(
        f"expected a proxy preset ({', '.join(PRESETS)}, lambda=<t>, value=<p>), got proxy={text!r}"
    )


def parse_proxy_override(spec: Any, act: Activation) -> ProxyRule:
    """A per-layer proxy in formal-net JSON: a preset name, a number, or a list (one per kink)."""
    if isinstance(spec, list):
        if len(spec) != len(act.kinks):
            raise InvalidArgument(
                f"expected {len(act.kinks)} proxy values for {act.describe()} (one per kink), got "
                f"{len(spec)}"
            )
        values = {c: parse_exact(v) for c, v in zip(act.kinks, spec)}
        return lambda a, c: values[c]
    if isinstance(spec, str) and not _looks_numeric(spec):
        return parse_preset(spec).rule
    value = parse_exact(spec)
    return lambda a, c: value


def _looks_numeric(text: str) -> bool:
    t = text.strip().lstrip("+-")
    return bool(t) and (t[0].isdigit() or t[0] == ".")


__all__ = [
    "Activation",
    "Preset",
    "PRESETS",
    "get_activation",
    "activation_names",
    "parse_preset",
    "parse_proxy_override",
]
