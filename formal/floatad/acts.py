"""Activations in the working precision: the frameworks' float formulas and backward rules.

Each activation has a forward formula and a backward rule written as the
frameworks' CPU kernels compute them, every operation rounded to the format:

- relu: ``x > 0 ? x : 0``; backward ``g`` or 0.
- leaky_relu(a): ``x > 0 ? x : x * fl(a)``; backward ``g`` or ``g * fl(a)``.
- relu6, hardtanh, clip: ``min(max(x, lo), hi)``; backward ``g`` inside, 0 outside.
- hardsigmoid: ``fl(r / 6)`` with ``r = min(max(fl(x + 3), 0), 6)`` (JAX style:
  ``fl(r * fl(1/6))``, XLA's rewrite of ``/ 6``); backward ``g * fl(1/6)`` inside.
- hardswish (PyTorch's kernels): ``fl(fl(x * r) / 6)``; backward 0 for
  ``x < -3``, ``g * fl(fl(x / 3) + 1/2)`` for ``x < 3``, else ``g``.
- abs: ``|x|``; backward ``g`` or ``-g``.
- sigmoid, tanh: numpy's binary32 evaluation, rounded; backward
  ``g * fl(s (1 - s))``, ``g * fl(1 - t^2)``.
- any other piecewise polynomial: its pieces by Horner's rule, rounded;
  backward the piece's derivative by Horner's rule.

At a unit whose float pre-activation equals a kink ``c`` exactly (a *float
kink touch*) the backward rule passes ``g * fl(proxy)`` (0 when the proxy is
0), the proxy of the preset or of the node's override.  ``style="jax"``
selects JAX's hardsigmoid (forward ``* fl(1/6)``: XLA rewrites the division
by the constant 6; backward selected on ``fl(x + 3)`` strictly inside (0, 6),
so that ``x = 3 - ulp`` with ``fl(x + 3) = 6`` gets the kink's value as in
JAX); touches are always decided on ``x`` itself.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import numpy as np

from formal.core.activations import Activation, Preset
from formal.core.network import Node
from formal.floatad.arith import Arithmetic
from formal.ops.activation import proxy_of

Style = Literal["pytorch", "jax"]


def style_of(preset: Preset) -> Style:
    """The float formulas a preset implies: ``jax`` for JAX presets, else ``pytorch``."""
    return "jax" if preset.name.split(",")[0].startswith("jax") else "pytorch"


def kink_masks(act: Activation, x: np.ndarray, ar: Arithmetic) -> list[tuple[Fraction, np.ndarray]]:
    """Per kink ``c`` the mask ``x == c`` (empty when c is not a member of the format)."""
    out = []
    for c in act.kinks:
        if ar.fmt.contains(c):
            out.append((c, x == ar.const(c)))
        else:
            out.append((c, np.zeros(x.shape, dtype=bool)))
    return out


def _param(act: Activation, key: str) -> Fraction:
    return dict(act.params)[key]


def _horner(coeffs: tuple[Fraction, ...], x: np.ndarray, ar: Arithmetic) -> np.ndarray:
    acc = np.full(x.shape, ar.const(coeffs[-1]), dtype=ar.dtype)
    for c in reversed(coeffs[:-1]):
        acc = acc * x + ar.const(c)
    return acc


def _pieces(act: Activation, x: np.ndarray, ar: Arithmetic, deriv: bool) -> np.ndarray:
    idx = np.zeros(x.shape, dtype=np.int64)
    for c in act.kinks:
        idx += (x.astype(np.float64) > float(c)).astype(np.int64)
    out = np.zeros(x.shape, dtype=ar.dtype)
    for k, p in enumerate(act.pieces):
        q = (tuple(Fraction(i) * c for i, c in enumerate(p))[1:] or (Fraction(0),)) if deriv else p
        out = np.where(idx == k, _horner(q, x, ar), out)
    return out.astype(ar.dtype)


def forward(act: Activation, x: np.ndarray, ar: Arithmetic, style: Style = "pytorch") -> np.ndarray:
    """rho(x) in the working precision (the table of the module doc)."""
    dt, n = ar.dtype, act.name
    zero = dt.type(0)
    if n == "identity":
        return x
    if n == "relu":
        return np.where(x > zero, x, zero).astype(dt)
    if n == "leaky_relu":
        return np.where(x > zero, x, x * ar.const(_param(act, "slope"))).astype(dt)
    if n in ("relu6", "hardtanh", "clip"):
        lo, hi = ar.const(act.kinks[0]), ar.const(act.kinks[1])
        return np.minimum(np.maximum(x, lo), hi).astype(dt)
    if n in ("hardsigmoid", "hardswish"):
        three, six = ar.const(3), ar.const(6)
        r6 = np.minimum(np.maximum(x + three, zero), six).astype(dt)
        if n == "hardsigmoid" and style == "jax":  # XLA turns / 6 into * fl(1/6)
            return (r6 * ar.const(Fraction(1, 6))).astype(dt)
        return ((r6 if n == "hardsigmoid" else x * r6) / six).astype(dt)
    if n == "abs":
        return np.abs(x)
    if n == "sigmoid":
        x32 = x.astype(np.float32)
        return (np.float32(1) / (np.float32(1) + np.exp(-x32))).astype(dt)
    if n == "tanh":
        return np.tanh(x.astype(np.float32)).astype(dt)
    return _pieces(act, x, ar, deriv=False)


def backward(
    node: Node,
    act: Activation,
    x: np.ndarray,
    y: np.ndarray,
    adj: np.ndarray,
    ar: Arithmetic,
    preset: Preset,
    style: Style,
) -> np.ndarray:
    """Input adjoint (R, *x.shape) from the output adjoint; kink touches pass the proxy."""
    dt, n = ar.dtype, act.name
    zero = dt.type(0)
    if n == "identity":
        return adj
    if n == "relu":
        g = np.where(x > zero, adj, zero)
    elif n == "leaky_relu":
        g = np.where(x > zero, adj, adj * ar.const(_param(act, "slope")))
    elif n in ("relu6", "hardtanh", "clip"):
        lo, hi = ar.const(act.kinks[0]), ar.const(act.kinks[1])
        g = np.where((x > lo) & (x < hi), adj, zero)
    elif n == "hardsigmoid":
        if style == "jax":
            s = x + ar.const(3)
            inside = (s > zero) & (s < ar.const(6))
            # JAX decides on fl(x + 3): where it is 0 or 6, relu6's proxy (0) applies
            g = np.where(inside, adj * ar.const(Fraction(1, 6)), zero)
        g = np.where((x > ar.const(-3)) & (x < ar.const(3)), adj * ar.const(Fraction(1, 6)), zero)
    elif n == "hardswish":
        slope = x / ar.const(3) + ar.const(Fraction(1, 2))
        g = np.where(x < ar.const(-3), zero, np.where(x < ar.const(3), adj * slope, adj))
    elif n == "abs":
        g = np.where(x > zero, adj, -adj)
    elif n == "sigmoid":
        g = adj * (y * (dt.type(1) - y))
    elif n == "tanh":
        g = adj * (dt.type(1) - y * y)
    else:
        g = adj * _pieces(act, x, ar, deriv=True)
    return _proxies(node, act, x, np.asarray(g, dtype=dt), adj, ar, preset)


def _proxies(
    node: Node,
    act: Activation,
    x: np.ndarray,
    g: np.ndarray,
    adj: np.ndarray,
    ar: Arithmetic,
    preset: Preset,
) -> np.ndarray:
    """Replace the adjoint at float kink touches by ``adj * fl(proxy)`` (0 for a 0 proxy)."""
    B = x.shape[0]
    for c, mask in kink_masks(act, x, ar):
        if not mask.any():
            continue
        flat = mask.reshape(B, -1)
        vals = np.zeros(flat.shape, dtype=ar.dtype)
        if node.attr("proxy") is None:
            vals[...] = ar.const(preset.proxy(act, c))
        else:
            for b, i in zip(*np.nonzero(flat)):
                vals[b, i] = ar.const(proxy_of(node, preset, act, c, int(i)))
        pv = vals.reshape(x.shape)
        with_proxy = np.where(pv == 0, ar.dtype.type(0), adj * pv)
        g = np.where(mask, with_proxy, g).astype(ar.dtype)
    return g


__all__ = ["Style", "backward", "forward", "kink_masks", "style_of"]
