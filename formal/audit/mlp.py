"""Fast vectorized numpy MLPs in a working precision: forward, backward, SGD step.

Every operation is computed in the working dtype (binary16 via numpy,
bfloat16 via ml_dtypes, binary32, binary64), in this order:

- ``y = fl(fl(z @ W.T) + b)``: the matrix product accumulates in binary32 for the
  16-bit formats (products of two 16-bit numbers are exact in binary32; BLAS
  order; one rounding to the working format at the end, as numpy's half matmul,
  ml_dtypes' dot and PyTorch's CPU kernels do) and in the working format itself
  for binary32/binary64 (BLAS order, fused multiply-adds where OpenBLAS uses
  them); then the bias is added in the working format;
- activations as PyTorch computes them (``max(y, 0)``, ``clamp``,
  ``relu6(y + 3) / 6``);
- backward: the derivative of an activation at a float kink touch is the
  preset's: ``pytorch`` (the open interval: ReLU'(0) = 0, 0 at every bound) or
  ``closed`` (Bertoin et al.'s other choice: ReLU'(0) = 1, the slope of the
  middle piece at both bounds).

Loss: mean softmax cross-entropy over the minibatch (float64 never used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import ml_dtypes
import numpy as np

from formal.errors import InvalidArgument

PrecisionName = Literal["16", "bf16", "32", "64"]
BackwardPreset = Literal["pytorch", "closed"]

PRECISIONS: dict[str, tuple[type, str]] = {
    "16": (np.float16, "binary16"),
    "bf16": (ml_dtypes.bfloat16, "bfloat16"),
    "32": (np.float32, "binary32"),
    "64": (np.float64, "binary64"),
}
"""Precision name -> (numpy dtype, formal number-format name)."""

ACTIVATIONS = ("relu", "relu6", "hardtanh", "hardsigmoid")
"""The hidden activations the numpy MLP computes (their kinks: 0; 0, 6; -1, 1; -3, 3)."""

KINKS: dict[str, tuple[float, ...]] = {
    "relu": (0.0,),
    "relu6": (0.0, 6.0),
    "hardtanh": (-1.0, 1.0),
    "hardsigmoid": (-3.0, 3.0),
}


def dtype_of(precision: str) -> np.dtype:
    """The numpy dtype of a precision name (16, bf16, 32, 64)."""
    if precision not in PRECISIONS:
        raise InvalidArgument(
            f"expected a precision among {', '.join(PRECISIONS)}, got {precision!r}"
        )
    return np.dtype(PRECISIONS[precision][0])


def format_name(precision: str) -> str:
    """The formal number-format name of a precision (binary16, bfloat16, ...)."""
    dtype_of(precision)
    return PRECISIONS[precision][1]


def format_of(dt: np.dtype) -> str:
    """The formal number-format name of a working dtype."""
    for typ, name in PRECISIONS.values():
        if np.dtype(typ) == dt:
            return name
    raise InvalidArgument(
        f"expected a dtype among binary16, bfloat16, binary32, binary64, got {dt}"
    )


def check_activation(name: str) -> str:
    """``name`` when the numpy MLP computes it, else InvalidArgument."""
    if name not in ACTIVATIONS:
        raise InvalidArgument(
            f"expected an activation among {', '.join(ACTIVATIONS)}, got {name!r}"
        )
    return name


@dataclass
class MLP:
    """Parameters of a dense MLP in the working dtype; hidden layers use ``activation``."""

    weights: list[np.ndarray]  # (units, fan_in)
    biases: list[np.ndarray]  # (units,)
    activation: str
    dtype: np.dtype

    @property
    def widths(self) -> tuple[int, ...]:
        """Input width, then the units of each layer."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters by state_dict-style names ("0.weight", "0.bias", ...)."""
        out: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"{i}.weight"] = w
            out[f"{i}.bias"] = b
        return out

    def copy(self) -> MLP:
        """A deep copy."""
        return MLP(
            [w.copy() for w in self.weights],
            [b.copy() for b in self.biases],
            self.activation,
            self.dtype,
        )


def init_mlp(
    widths: tuple[int, ...], activation: str, precision: str, rng: np.random.Generator
) -> MLP:
    """PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), rounded to the dtype."""
    dt = dtype_of(precision)
    check_activation(activation)
    ws, bs = [], []
    for fan_in, units in zip(widths[:-1], widths[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        ws.append(rng.uniform(-bound, bound, (units, fan_in)).astype(np.float32).astype(dt))
        bs.append(rng.uniform(-bound, bound, (units,)).astype(np.float32).astype(dt))
    return MLP(ws, bs, activation, dt)


def matmul(z: np.ndarray, w: np.ndarray, dt: np.dtype) -> np.ndarray:
    """``fl(z @ w.T)`` in dtype ``dt`` (binary32 accumulation for the 16-bit formats)."""
    if dt.itemsize == 2:
        return (z.astype(np.float32) @ w.astype(np.float32).T).astype(dt)
    return z @ w.T


def _wide(a: np.ndarray) -> np.ndarray:
    """A 16-bit array widened to binary32 (others as they are).

    One +, -, * or / of two 16-bit numbers computed in binary32 and rounded back
    gives the correctly rounded 16-bit result (24 >= 2 p + 2 bits for p = 11 and
    p = 8), so the elementwise steps below compute in binary32 and round once:
    bit for bit what the 16-bit ufuncs give, without their per-element cost.
    """
    return a.astype(np.float32) if a.dtype.itemsize == 2 else a


def act_forward(name: str, y: np.ndarray) -> np.ndarray:
    """The activation in y's dtype, computed as PyTorch does."""
    dt = y.dtype
    zero = np.zeros((), dtype=dt)
    if name == "relu":
        return np.maximum(y, zero)
    if name == "relu6":
        return np.minimum(np.maximum(y, zero), np.array(6, dtype=dt))
    if name == "hardtanh":
        return np.minimum(np.maximum(y, np.array(-1, dtype=dt)), np.array(1, dtype=dt))
    if name == "hardsigmoid":
        t = (_wide(y) + 3.0).astype(dt)
        t = np.minimum(np.maximum(t, zero), np.array(6, dtype=dt))
        return (_wide(t) / np.array(6, dtype=_wide(t).dtype)).astype(dt)
    raise InvalidArgument(f"unknown activation {name!r}")


def act_slope(name: str, y: np.ndarray, preset: BackwardPreset) -> np.ndarray:
    """rho'(y) in y's dtype with the preset's value at the kinks (open or closed interval)."""
    dt = y.dtype
    lo, hi = {"relu": (0.0, np.inf), "relu6": (0.0, 6.0), "hardtanh": (-1.0, 1.0)}.get(
        name, (-3.0, 3.0)
    )
    if preset == "pytorch":
        mask = (y > lo) & (y < hi)
    else:
        mask = (y >= lo) & (y <= hi)
    slope = np.array(1.0 / 6.0 if name == "hardsigmoid" else 1.0, dtype=dt)
    return np.where(mask, slope, np.zeros((), dtype=dt)).astype(dt)


@dataclass
class Pass:
    """The float forward pass of a minibatch: inputs and pre-activations of every layer."""

    zs: list[np.ndarray]  # zs[l]: input of layer l (zs[0] = x); len = layers
    ys: list[np.ndarray]  # ys[l]: pre-activation of layer l
    out: np.ndarray  # the last pre-activation (logits)


def forward(mlp: MLP, x: np.ndarray) -> Pass:
    """Forward pass in the working dtype; the last layer has no activation."""
    dt = mlp.dtype
    z = x.astype(dt)
    zs, ys = [], []
    last = len(mlp.weights) - 1
    for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases)):
        zs.append(z)
        y = (_wide(matmul(z, w, dt)) + _wide(b)).astype(dt)
        ys.append(y)
        if i < last:
            z = act_forward(mlp.activation, y)
    return Pass(zs, ys, ys[-1])


def softmax_xent_grad(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient wrt the logits, in the logits' dtype."""
    dt = logits.dtype
    m = logits.max(axis=1, keepdims=True)
    e = np.exp((logits - m).astype(dt)).astype(dt)
    s = e.sum(axis=1, keepdims=True, dtype=dt)
    p = (e / s).astype(dt)
    B = logits.shape[0]
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(B), labels].astype(np.float64), 1e-30))))
    g = p.copy()
    g[np.arange(B), labels] -= np.array(1, dtype=dt)
    return loss, (g / np.array(B, dtype=dt)).astype(dt)


def backward(
    mlp: MLP, fp: Pass, dout: np.ndarray, preset: BackwardPreset = "pytorch"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer (dW, db) in the working dtype, from the adjoint ``dout`` of the output."""
    dt = mlp.dtype
    grads: list[tuple[np.ndarray, np.ndarray]] = []
    g = dout.astype(dt)
    for i in range(len(mlp.weights) - 1, -1, -1):
        if i < len(mlp.weights) - 1:
            g = (_wide(g) * _wide(act_slope(mlp.activation, fp.ys[i], preset))).astype(dt)
        z = fp.zs[i]
        dw = matmul(g.T, z.T, dt) if dt.itemsize == 2 else g.T @ z
        db = g.sum(axis=0, dtype=np.float32 if dt.itemsize == 2 else dt).astype(dt)
        grads.append((dw.astype(dt), db))
        if i:
            g = matmul(g, mlp.weights[i].T, dt)
    grads.reverse()
    return grads


def sgd(mlp: MLP, grads: list[tuple[np.ndarray, np.ndarray]], lr: float) -> None:
    """In place: ``p = fl(p - fl(lr * g))`` in the working dtype."""
    dt = mlp.dtype
    step = np.array(lr, dtype=dt)
    for i, (dw, db) in enumerate(grads):
        s = _wide(step)
        mlp.weights[i] = (_wide(mlp.weights[i]) - _wide((s * _wide(dw)).astype(dt))).astype(dt)
        mlp.biases[i] = (_wide(mlp.biases[i]) - _wide((s * _wide(db)).astype(dt))).astype(dt)


def train_step(mlp: MLP, x: np.ndarray, labels: np.ndarray, lr: float) -> float:
    """One plain SGD step (the bench baseline): forward, loss, backward, update; the loss."""
    fp = forward(mlp, x)
    loss, dout = softmax_xent_grad(fp.out, labels)
    sgd(mlp, backward(mlp, fp, dout), lr)
    return loss


def grads_equal(
    a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]]
) -> bool:
    """Bitwise equality of two gradients (NaN patterns included)."""
    for (wa, ba), (wb, bb) in zip(a, b):
        if wa.tobytes() != wb.tobytes() or ba.tobytes() != bb.tobytes():
            return False
    return True


__all__ = [
    "ACTIVATIONS",
    "KINKS",
    "MLP",
    "PRECISIONS",
    "BackwardPreset",
    "Pass",
    "PrecisionName",
    "act_forward",
    "act_slope",
    "backward",
    "check_activation",
    "dtype_of",
    "format_name",
    "format_of",
    "forward",
    "grads_equal",
    "init_mlp",
    "matmul",
    "sgd",
    "softmax_xent_grad",
    "train_step",
]
