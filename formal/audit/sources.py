"""Where the audited steps come from: digits training, npz snapshots, ONNX + VNN-LIB centers.

- :func:`load_digits`: scikit-learn's 8x8 digits, shipped as
  ``formal/data/digits.npz`` (1797 x 64 pixel values 0..16, labels); inputs
  are ``pixels / 16`` (exact in every format);
- :func:`training_batches`: shuffled minibatches for a number of epochs;
- :func:`load_snapshots`: state_dict-named parameter snapshots (``0.weight``,
  ``0.bias``, ... or ``layers.0.weight`` ...: the layer order is the numeric
  order of the names) from one ``.npz`` or a folder of them (sorted by name);
- :func:`onnx_batches`: a dense ONNX model (Gemm/MatMul, bias, ReLU-like
  activations, flatten) at the center of each VNN-LIB box, one step each.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from formal.audit.mlp import ACTIVATIONS, MLP, check_activation, dtype_of
from formal.audit.run import Batch
from formal.core.floatbound import to_float
from formal.errors import InputFileError, InvalidArgument, UnsupportedOp

DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits.npz"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(inputs 1797 x 64 as float64 ``pixels / 16``, labels 0..9) of the shipped digits."""
    try:
        with np.load(DIGITS) as d:
            images, labels = d["images"], d["labels"]
    except OSError as exc:
        raise InputFileError(f"{DIGITS}: the shipped digits data is missing: {exc}") from None
    return images.astype(np.float64) / 16.0, labels.astype(np.int64)


def training_batches(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    max_steps: int | None = None,
) -> Iterator[Batch]:
    """Shuffled minibatches (a new permutation per epoch; the last partial batch dropped)."""
    if batch_size <= 0 or epochs <= 0:
        raise InvalidArgument(f"expected batch size and epochs >= 1, got {batch_size}, {epochs}")
    rng = np.random.default_rng(seed + 1_000_003)
    n = 0
    for e in range(epochs):
        perm = rng.permutation(len(x))
        for i in range(0, len(x) - batch_size + 1, batch_size):
            if max_steps is not None and n >= max_steps:
                return
            idx = perm[i : i + batch_size]
            yield Batch(x[idx], y[idx], e)
            n += 1


def _layer_names(names: Sequence[str], where: str) -> list[tuple[str, str]]:
    """(weight, bias) names in numeric layer order."""
    weights = [n for n in names if n.endswith(".weight")]
    if not weights:
        raise InvalidArgument(f"{where}: expected state_dict names like '0.weight', got {names}")

    def key(n: str) -> tuple[int, ...]:
        return tuple(int(t) for t in re.findall(r"\d+", n)) or (0,)

    out = []
    for w in sorted(weights, key=key):
        b = w[: -len("weight")] + "bias"
        if b not in names:
            raise InvalidArgument(f"{where}: {w} has no {b} (the audit needs biases)")
        out.append((w, b))
    return out


def _snapshot(path: Path, activation: str, precision: str) -> MLP:
    dt = dtype_of(precision)
    try:
        with np.load(path) as d:
            arrays = {k: np.asarray(d[k]) for k in d.files}
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable .npz: {exc}") from None
    ws, bs = [], []
    prev = None
    for wn, bn in _layer_names(list(arrays), str(path)):
        w, b = arrays[wn], arrays[bn]
        if w.ndim != 2 or b.shape != (w.shape[0],) or (prev is not None and w.shape[1] != prev):
            raise InvalidArgument(f"{path}: {wn} {w.shape} / {bn} {b.shape} do not chain")
        prev = w.shape[0]
        for name, a in ((wn, w), (bn, b)):
            if a.dtype.kind != "f":
                raise InvalidArgument(f"{path}: {name}: expected floats, got {a.dtype}")
            cast = a.astype(dt)
            with np.errstate(invalid="ignore"):
                same = cast.astype(np.float64) == a.astype(np.float64)
            if not bool(same.all()):
                raise InvalidArgument(
                    f"{path}: {name} is not representable in precision {precision} "
                    f"(saved as {a.dtype}); pass the precision it was trained in"
                )
        ws.append(w.astype(dt))
        bs.append(b.astype(dt))
    return MLP(ws, bs, check_activation(activation), dt)


def load_snapshots(source: str | Path, activation: str, precision: str) -> list[MLP]:
    """The snapshots of a ``.npz`` file or of every ``.npz`` in a folder (sorted by name)."""
    p = Path(source)
    if p.is_dir():
        files = sorted(p.glob("*.npz"))
        if not files:
            raise InputFileError(f"{p}: no .npz snapshots in this folder")
    elif p.exists():
        files = [p]
    else:
        raise InputFileError(f"{p}: no such file or folder")
    return [_snapshot(f, activation, precision) for f in files]


def snapshot_batches(
    snaps: list[MLP], x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int
) -> Iterator[Batch]:
    """Snapshot i audited on the i-th digits minibatch (epoch = snapshot index)."""
    it = training_batches(x, y, batch_size=batch_size, epochs=10**6, seed=seed)
    for i, (m, b) in enumerate(zip(snaps, it)):
        if m.widths[0] != x.shape[1]:
            raise InvalidArgument(
                f"snapshot {i}: expected {x.shape[1]} inputs (digits), got {m.widths[0]}"
            )
        yield Batch(b.x, b.labels, i, m)


def _floats(q: Any, dt: np.dtype) -> np.ndarray:
    vals, errs = to_float(q)
    if bool((errs != 0).any()):
        raise InvalidArgument("the model's values are not all float64 numbers")
    return vals.astype(dt)


def onnx_mlp(path: str, spec: str, activation_hint: str, precision: str) -> tuple[MLP, Any]:
    """The dense layers of an ONNX model (in the precision) and its input at the spec's center."""
    from formal.io.onnx import load

    net = load(path, spec=spec, input="center")
    dt = dtype_of(precision)
    ws, bs, acts = [], [], []
    consumers: dict[str, list[Any]] = {}
    for n in net.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    for n in net.nodes:
        if n.op in ("input", "param", "reshape"):
            continue
        if n.op == "linear":
            ws.append(_floats(net.params[_param(net, n.inputs[1])], dt))
            bs.append(np.zeros(ws[-1].shape[0], dtype=dt))
        elif n.op == "add" and ws and _param(net, n.inputs[1], strict=False):
            bs[-1] = _floats(net.params[_param(net, n.inputs[1])], dt)
        elif n.op == "act":
            acts.append(n.attr("activation").name)
        else:
            raise UnsupportedOp(f"{path}: the audit takes dense ReLU-like models, got op {n.op}")
    kinds = set(acts) or {activation_hint}
    if len(kinds) != 1 or len(acts) != len(ws) - 1 or next(iter(kinds)) not in ACTIVATIONS:
        raise UnsupportedOp(
            f"{path}: expected one activation among {', '.join(ACTIVATIONS)} after every layer "
            f"but the last, got {acts}"
        )
    x = _floats(net.inputs, np.dtype(np.float64)).reshape(1, -1)
    return MLP(ws, bs, kinds.pop(), dt), x.astype(dt)


def _param(net: Any, node_name: str, strict: bool = True) -> str:
    node = next(n for n in net.nodes if n.name == node_name)
    if node.op != "param":
        if strict:
            raise UnsupportedOp(f"expected a parameter tensor, got {node.op} {node_name}")
        return ""
    return str(node.attr("name"))


def onnx_batches(path: str, specs: Sequence[str], precision: str) -> Iterator[Batch]:
    """One step per VNN-LIB file: the model at the center of its box (B = 1, no labels)."""
    for i, s in enumerate(specs):
        mlp, x = onnx_mlp(path, s, "relu", precision)
        yield Batch(x, None, i, mlp)


__all__ = [
    "DIGITS",
    "load_digits",
    "load_snapshots",
    "onnx_batches",
    "onnx_mlp",
    "snapshot_batches",
    "training_batches",
]
