"""ONNX ``BatchNormalization`` (inference): exact centring, scaling and shift.

The scale ``1/sqrt(var + eps)`` is exact when every ``var + eps`` is the
square of a rational; otherwise an ``rsqrt_scale`` node keeps it symbolic.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.qarray import QArray
from formal.io.onnx_import import Importer, Tensor, const_tensor, f32, fractions_of, handles
from formal.ops.conv import rational_sqrt

__all__: list[str] = []


@handles("BatchNormalization")
def _batchnorm(imp: Importer, p: Any) -> None:
    at = imp.attrs(p, {"epsilon": f32(1e-5), "momentum": None, "spatial": 1, "training_mode": 0})
    if at["spatial"] != 1:
        raise imp.unsupported(f"attribute spatial = {at['spatial']}")
    if at["training_mode"] != 0:
        raise imp.unsupported(f"attribute training_mode = {at['training_mode']} (only inference)")
    x = imp.get(p.input[0])
    if x.kind != "data" or not x.batch_axis or not x.shape:
        raise imp.unsupported("a batch norm of a tensor without (N, C, ...) layout")
    C = x.shape[0]
    ch = (C,) + (1,) * (len(x.shape) - 1)
    scale, shift = imp.get(p.input[1]), imp.get(p.input[2])
    mean = fractions_of(imp.const_value(p.input[3], "the running mean")).reshape(ch)
    var = fractions_of(imp.const_value(p.input[4], "the running variance")).reshape(ch)
    r = var + at["epsilon"]
    if any(v <= 0 for v in r.reshape(-1)):
        raise imp.invalid("expected var + epsilon > 0")
    base = imp.label()
    cur = str(x.node)
    if any(v != 0 for v in mean.reshape(-1)):
        cur = imp.emit(
            base + ":center",
            "sub",
            (cur, imp.const_node(const_tensor(mean), base + ":mean")),
            x.shape,
        )
    roots = [rational_sqrt(Fraction(v)) for v in r.reshape(-1)]
    exact = all(q is not None for q in roots)
    coeff = (
        np.array([1 / Fraction(q or 1) for q in roots], dtype=object).reshape(ch) if exact else None
    )
    if not exact:
        cur = imp.emit(
            base + ":rsqrt", "rsqrt_scale", (cur,), x.shape, (("value", QArray.from_fractions(r)),)
        )
        coeff = np.full(ch, Fraction(1), dtype=object)
    assert coeff is not None
    if scale.kind == "const":
        coeff = coeff * fractions_of(scale.value).reshape(ch)  # type: ignore[arg-type]
    elif scale.kind == "static":
        pass
    else:
        raise imp.unsupported("a data tensor as the scale")
    if any(v != 1 for v in coeff.reshape(-1)):
        cur = imp.emit(
            base + ":scale", "scale", (cur,), x.shape, (("value", QArray.from_fractions(coeff)),)
        )
    if scale.kind == "static":
        g = imp.emit(base + ":gamma", "view", (str(scale.node),), ch)
        cur = imp.emit(base + ":mul", "mul", (cur, g), x.shape)
    if shift.kind == "const":
        if any(v != 0 for v in fractions_of(shift.value).reshape(-1)):  # type: ignore[arg-type]
            cur = imp.emit(
                base,
                "add",
                (
                    cur,
                    imp.const_node(
                        const_tensor(fractions_of(shift.value).reshape(ch)), base + ":beta"
                    ),
                ),
                x.shape,
            )  # type: ignore[arg-type]
    elif shift.kind == "static":
        bnode = imp.emit(base + ":beta", "view", (str(shift.node),), ch)
        cur = imp.emit(base, "add", (cur, bnode), x.shape)
    else:
        raise imp.unsupported("a data tensor as the shift")
    imp.set_output(Tensor("data", x.shape, cur))
