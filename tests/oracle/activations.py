"""Activations, written from their definitions, and the proxy presets (docs/theory.md, 1)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy as sp

from oracle.expr import germ_of
from oracle.germs import Germ, exact, g_coeff, rat, trim

# ---------------------------------------------------------------------------
# Activations, from their definitions


X = sp.Symbol("x", real=True)


@dataclass(frozen=True)
class Act:
    """An activation: name, parameters, its sympy formula in X, and its kinks.

    The kinks are read from the definition.
    """

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
    return germ_of(_formula_x(act), {X: trim([x, Fraction(direction)])}, {})


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
# Proxy presets, typed in from docs/theory.md section 1 (one entry per kink, ascending).
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
    "pytorch-2.6": dict(_PT, hardswish=(_F(-1, 2), _F(3, 2)), clip=(_F(1), _F(1))),
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


def override_value(spec: Any, act: Act, c: Fraction, unit: int) -> Fraction:
    """A per-layer proxy override of formal-net/1.

    A number, a preset name, a list per kink, or a list per unit.
    """
    if isinstance(spec, list):
        if spec and isinstance(spec[0], list):
            return override_value(spec[unit], act, c, unit)
        return exact(spec[act.kinks.index(c)])
    if isinstance(spec, str) and not re.match(r"^\s*[+-]?[0-9.]", spec):
        return proxy_value(spec, act, c)
    return exact(spec)
