"""ONNX layer handlers: linear algebra, convolutions, pooling, shapes (batch norm: onnx_norm)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.qarray import QArray
from formal.io.limits import MAX_KERNEL
from formal.io.onnx_import import (
    Importer,
    Tensor,
    align,
    const_tensor,
    fractions_of,
    handles,
    present,
)
from formal.ops.conv import out_size

# -- shapes -------------------------------------------------------------------------------


def _prod(s: Any) -> int:
    return int(np.prod(s, dtype=np.int64))


def reshape_data(imp: Importer, x: Tensor, target: list[int], base: str) -> Tensor:
    """Reshape data to the (resolved) ONNX shape ``target``; the batch axis must survive."""
    if x.batch_axis:
        if target and target[0] == imp.batch:
            per, ba = tuple(target[1:]), True
        elif imp.batch == 1:
            per, ba = tuple(target), False
        else:
            raise imp.unsupported(
                f"a reshape to {target} that mixes the batch axis (batch {imp.batch})"
            )
    else:
        per, ba = tuple(target), False
    if _prod(per) != _prod(x.shape):
        raise imp.invalid(f"cannot reshape {x.shape} to {per}")
    if per == x.shape and ba == x.batch_axis:
        return x
    return Tensor("data", per, imp.emit(base, "reshape", (str(x.node),), per), batch_axis=ba)


def _full(imp: Importer, x: Tensor) -> tuple[int, ...]:
    return ((imp.batch,) if x.kind == "data" and x.batch_axis else ()) + x.shape


def _resolve(imp: Importer, full: tuple[int, ...], target: list[int], allowzero: int) -> list[int]:
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(full):
                raise imp.invalid(
                    f"shape entry 0 at axis {i} copies a dimension the input does not have"
                )
            out.append(full[i])
        else:
            out.append(t)
    if out.count(-1) > 1:
        raise imp.invalid(f"expected at most one -1 in the shape, got {target}")
    if -1 in out:
        rest = _prod([d for d in out if d != -1])
        if rest == 0 or _prod(full) % rest:
            raise imp.invalid(f"cannot infer -1 in {target} for {_prod(full)} entries")
        out[out.index(-1)] = _prod(full) // rest
    if any(d < 0 for d in out) or _prod(out) != _prod(full):
        raise imp.invalid(f"cannot reshape {full} to {target}")
    return out


def _reshaped(imp: Importer, x: Tensor, target: list[int]) -> Tensor:
    if x.kind == "const":
        return const_tensor(np.asarray(x.value).reshape(target))
    if x.kind == "static":
        return Tensor(
            "static", tuple(target), imp.emit(imp.label(), "view", (str(x.node),), tuple(target))
        )
    return reshape_data(imp, x, target, imp.label())


@handles("Reshape")
def _reshape(imp: Importer, p: Any) -> None:
    at = imp.attrs(p, {"allowzero": 0})
    x = imp.get(p.input[0])
    if imp.opset < 5:  # pragma: no cover - opsets below 7 are rejected earlier
        raise imp.unsupported("Reshape before opset 5")
    target = _resolve(imp, _full(imp, x), imp.ints(p.input[1], "the shape"), at["allowzero"])
    imp.set_output(_reshaped(imp, x, target))


@handles("Flatten")
def _flatten(imp: Importer, p: Any) -> None:
    x = imp.get(p.input[0])
    full = _full(imp, x)
    axis = imp.attrs(p, {"axis": 1})["axis"]
    if axis < 0:
        axis += len(full)
    if not 0 <= axis <= len(full):
        raise imp.invalid(f"attribute axis = {axis} is out of range for rank {len(full)}")
    imp.set_output(_reshaped(imp, x, [_prod(full[:axis]), _prod(full[axis:])]))


@handles("Transpose")
def _transpose(imp: Importer, p: Any) -> None:
    x = imp.get(p.input[0])
    full = _full(imp, x)
    perm = imp.attrs(p, {"perm": None})["perm"]
    perm = list(reversed(range(len(full)))) if perm is None else list(perm)
    if sorted(perm) != list(range(len(full))):
        raise imp.invalid(f"attribute perm = {perm} is not a permutation of {len(full)} axes")
    if x.kind == "const":
        imp.set_output(const_tensor(np.asarray(x.value).transpose(perm)))
        return
    if x.kind == "data" and x.batch_axis:
        if perm[0] != 0:
            raise imp.unsupported(f"attribute perm = {perm} moves the batch axis")
        perm = [q - 1 for q in perm[1:]]
    shape = tuple(x.shape[q] for q in perm)
    node = imp.emit(imp.label(), "transpose", (str(x.node),), shape, (("perm", tuple(perm)),))
    imp.set_output(Tensor(x.kind, shape, node, batch_axis=x.batch_axis))


@handles("Shape")
def _shape(imp: Importer, p: Any) -> None:
    at = imp.attrs(p, {"start": 0, "end": None})
    full = _full(imp, imp.get(p.input[0]))
    imp.set_output(const_tensor(np.array(full[at["start"] : at["end"]], dtype=np.int64)))


@handles("Gather")
def _gather(imp: Importer, p: Any) -> None:
    axis = imp.attrs(p, {"axis": 0})["axis"]
    data = np.asarray(imp.const_value(p.input[0], "the gathered tensor"))
    idx = np.asarray(imp.const_value(p.input[1], "the indices")).astype(np.int64)
    imp.set_output(const_tensor(np.take(data, idx, axis=axis)))


def _axes(imp: Importer, p: Any) -> list[int]:
    if imp.opset < 13:
        return list(imp.attrs(p, {"axes": []})["axes"])
    imp.attrs(p, {})
    return imp.ints(p.input[1], "the axes") if present(p, 1) else []


@handles("Unsqueeze")
def _unsqueeze(imp: Importer, p: Any) -> None:
    axes = _axes(imp, p)
    x = imp.get(p.input[0])
    full = list(_full(imp, x))
    rank = len(full) + len(axes)
    for a in sorted(q + rank if q < 0 else q for q in axes):
        full.insert(a, 1)
    imp.set_output(_reshaped(imp, x, full))


@handles("Squeeze")
def _squeeze(imp: Importer, p: Any) -> None:
    axes = _axes(imp, p)
    x = imp.get(p.input[0])
    full = list(_full(imp, x))
    drop = (
        {q + len(full) if q < 0 else q for q in axes}
        if axes
        else {i for i, d in enumerate(full) if d == 1}
    )
    if any(full[a] != 1 for a in drop):
        raise imp.invalid(f"cannot squeeze axes {sorted(drop)} of shape {full}")
    imp.set_output(_reshaped(imp, x, [d for i, d in enumerate(full) if i not in drop]))


@handles("Concat")
def _concat(imp: Importer, p: Any) -> None:
    axis = imp.attrs(p, {"axis": None})["axis"]
    parts = [np.asarray(imp.const_value(n, "a concatenated tensor")) for n in p.input]
    imp.set_output(const_tensor(np.concatenate(parts, axis=axis)))


# -- padding ---------------------------------------------------------------------------------


@handles("Pad")
def _pad(imp: Importer, p: Any) -> None:
    x = imp.get(p.input[0])
    if imp.opset < 11:
        at = imp.attrs(p, {"mode": "constant", "pads": None, "value": Fraction(0)})
        pads, value = list(at["pads"]), at["value"]
    else:
        at = imp.attrs(p, {"mode": "constant"})
        pads = imp.ints(p.input[1], "the pads")
        value = (
            Fraction(fractions_of(imp.const_value(p.input[2], "the constant value")).reshape(-1)[0])
            if present(p, 2)
            else Fraction(0)
        )
        if present(p, 3):
            axes = imp.ints(p.input[3], "the axes")
            rank = len(_full(imp, x))
            full_pads = [0] * (2 * rank)
            for k, a in enumerate(axes):
                a = a + rank if a < 0 else a
                full_pads[a], full_pads[a + rank] = pads[k], pads[k + len(axes)]
            pads = full_pads
    if at["mode"] != "constant":
        raise imp.unsupported(f"attribute mode = {at['mode']!r} (only constant padding)")
    if x.kind != "data":
        raise imp.unsupported("padding a constant or parameter tensor")
    rank = len(_full(imp, x))
    if len(pads) != 2 * rank:
        raise imp.invalid(f"expected {2 * rank} pads, got {len(pads)}")
    if any(q < 0 for q in pads):
        raise imp.unsupported(f"attribute pads = {pads} (negative pads crop)")
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    if x.batch_axis:
        if pairs[0] != (0, 0):
            raise imp.unsupported(f"attribute pads = {pads} pads the batch axis")
        pairs = pairs[1:]
    if all(a == 0 and b == 0 for a, b in pairs):
        imp.set_output(x)
        return
    shape = tuple(d + a + b for d, (a, b) in zip(x.shape, pairs))
    node = imp.emit(
        imp.label(), "pad", (str(x.node),), shape, (("pads", tuple(pairs)), ("value", value))
    )
    imp.set_output(Tensor("data", shape, node, batch_axis=x.batch_axis))


# -- convolution and pooling --------------------------------------------------------------------


def _image(imp: Importer, name: str) -> Tensor:
    x = imp.get(name)
    if x.kind != "data" or not x.batch_axis or len(x.shape) != 3:
        raise imp.unsupported(f"a {len(_full(imp, x))}-D input (only 2-D images (N, C, H, W))")
    return x


def _window(
    imp: Importer, at: dict[str, Any], hw: tuple[int, ...], kernel: tuple[int, ...]
) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    strides = tuple(at.get("strides") or (1, 1))
    dil = tuple(at.get("dilations") or (1, 1))
    if len(kernel) != 2 or len(strides) != 2 or len(dil) != 2:
        raise imp.unsupported(f"attribute kernel_shape = {list(kernel)} (only 2-D windows)")
    for what, vals in (("kernel_shape", kernel), ("strides", strides), ("dilations", dil)):
        if any(not 1 <= int(v) <= MAX_KERNEL for v in vals):
            raise imp.invalid(
                f"attribute {what} = {list(vals)}: expected integers from 1 to {MAX_KERNEL}"
            )
    mode = at.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        pads = tuple(at.get("pads") or (0, 0, 0, 0))
        if len(pads) != 4:
            raise imp.unsupported(f"attribute pads = {list(pads)} (expected 4 values for 2-D)")
        if any(not 0 <= int(v) <= MAX_KERNEL for v in pads):
            raise imp.invalid(
                f"attribute pads = {list(pads)}: expected integers from 0 to {MAX_KERNEL}"
            )
    elif mode == "VALID":
        pads = (0, 0, 0, 0)
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(hw, kernel, strides, dil):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else big)
            end.append(big if mode == "SAME_UPPER" else small)
        pads = (begin[0], begin[1], end[0], end[1])
    else:
        raise imp.unsupported(f"attribute auto_pad = {mode!r}")
    return strides, pads, dil  # type: ignore[return-value]


def _pool_shape(
    imp: Importer, x: Tensor, kernel: Any, strides: Any, pads: Any, dil: Any, ceil: bool
) -> tuple[int, int, int]:
    C, H, W = x.shape
    try:
        oh = out_size(H, kernel[0], strides[0], pads[0], pads[2], dil[0], ceil)
        ow = out_size(W, kernel[1], strides[1], pads[1], pads[3], dil[1], ceil)
    except ValueError as exc:
        raise imp.invalid(str(exc)) from None
    return C, oh, ow


@handles("Conv")
def _conv(imp: Importer, p: Any) -> None:
    at = imp.attrs(
        p,
        {
            "auto_pad": "NOTSET",
            "dilations": None,
            "group": 1,
            "kernel_shape": None,
            "pads": None,
            "strides": None,
        },
    )
    x = _image(imp, p.input[0])
    w = imp.get(p.input[1])
    if w.kind == "data" or len(w.shape) != 4:
        raise imp.unsupported(f"a weight of shape {w.shape} (expected a 4-D constant or parameter)")
    CO, Cg, kh, kw = w.shape
    g = int(at["group"])
    if at["kernel_shape"] is not None and tuple(at["kernel_shape"]) != (kh, kw):
        raise imp.invalid(
            f"attribute kernel_shape = {at['kernel_shape']} does not match the weight {w.shape}"
        )
    if x.shape[0] != Cg * g or CO % g:
        raise imp.invalid(
            f"input channels {x.shape[0]} and weight {w.shape} do not match group = {g}"
        )
    strides, pads, dil = _window(imp, at, x.shape[1:], (kh, kw))
    _, oh, ow = _pool_shape(imp, x, (kh, kw), strides, pads, dil, False)
    base = imp.label()
    has_bias = present(p, 2)
    wnode = imp.node_of(w, base + ":weight")
    attrs = (("strides", strides), ("pads", pads), ("dilations", dil), ("groups", g))
    y = imp.emit(
        base + (":conv" if has_bias else ""), "conv2d", (str(x.node), wnode), (CO, oh, ow), attrs
    )
    if has_bias:
        b = imp.get(p.input[2])
        if b.kind == "data" or b.shape != (CO,):
            raise imp.invalid(f"expected a bias of shape ({CO},), got {b.shape}")
        if b.kind == "const":
            bnode = imp.const_node(
                const_tensor(np.asarray(b.value).reshape(CO, 1, 1)), base + ":bias"
            )
        else:
            bnode = imp.emit(base + ":bias", "view", (str(b.node),), (CO, 1, 1))
        y = imp.emit(base, "add", (y, bnode), (CO, oh, ow))
    imp.set_output(Tensor("data", (CO, oh, ow), y))


def _pool(imp: Importer, p: Any, op: str, at: dict[str, Any], kernel: tuple[int, int]) -> None:
    x = _image(imp, p.input[0])
    strides, pads, dil = _window(imp, at, x.shape[1:], kernel)
    if any(q >= k for q, k in zip(pads, kernel + kernel)):
        raise imp.unsupported(
            f"attribute pads = {list(pads)} as large as the kernel {list(kernel)}"
        )
    ceil = bool(at.get("ceil_mode", 0))
    C, oh, ow = _pool_shape(imp, x, kernel, strides, pads, dil, ceil)
    attrs: tuple[tuple[str, Any], ...] = (
        ("kernel", kernel),
        ("strides", strides),
        ("pads", pads),
        ("dilations", dil),
        ("ceil_mode", ceil),
    )
    if op == "avgpool2d":
        attrs += (("count_include_pad", bool(at.get("count_include_pad", 0))),)
    node = imp.emit(imp.label(), op, (str(x.node),), (C, oh, ow), attrs)
    imp.set_output(Tensor("data", (C, oh, ow), node))


@handles("MaxPool")
def _maxpool(imp: Importer, p: Any) -> None:
    at = imp.attrs(
        p,
        {
            "auto_pad": "NOTSET",
            "ceil_mode": 0,
            "dilations": None,
            "kernel_shape": None,
            "pads": None,
            "storage_order": 0,
            "strides": None,
        },
    )
    _pool(imp, p, "maxpool2d", at, tuple(at["kernel_shape"] or ()))  # type: ignore[arg-type]


@handles("AveragePool")
def _avgpool(imp: Importer, p: Any) -> None:
    at = imp.attrs(
        p,
        {
            "auto_pad": "NOTSET",
            "ceil_mode": 0,
            "count_include_pad": 0,
            "dilations": None,
            "kernel_shape": None,
            "pads": None,
            "strides": None,
        },
    )
    _pool(imp, p, "avgpool2d", at, tuple(at["kernel_shape"] or ()))  # type: ignore[arg-type]


@handles("GlobalAveragePool")
def _global_avg(imp: Importer, p: Any) -> None:
    imp.attrs(p, {})
    x = _image(imp, p.input[0])
    _pool(imp, p, "avgpool2d", {}, (x.shape[1], x.shape[2]))


# -- Gemm and MatMul ---------------------------------------------------------------------


def _weight_node(imp: Importer, t: Tensor, base: str) -> str:
    if t.kind == "data":
        raise imp.unsupported(
            "a product of two data tensors (only data times a constant or parameter)"
        )
    return imp.node_of(t, base)


def _times(imp: Importer, x: Tensor, w: Tensor, transposed: bool, base: str) -> Tensor:
    """x @ W (W (K, N)) or x @ W.T (transposed, W (N, K)) for data x (per sample (..., K))."""
    if len(w.shape) != 2:
        raise imp.unsupported(f"a {len(w.shape)}-D weight (only matrices)")
    K = w.shape[1] if transposed else w.shape[0]
    N = w.shape[0] if transposed else w.shape[1]
    if not x.shape or x.shape[-1] != K:
        raise imp.invalid(f"shapes {x.shape} and {w.shape} do not multiply")
    wn = _weight_node(imp, w, base + ":weight")
    if transposed and len(x.shape) == 1:
        node = imp.emit(base, "linear", (str(x.node), wn), (N,))
    elif transposed:
        wt = imp.emit(base + ":wT", "transpose", (wn,), (K, N), (("perm", (1, 0)),))
        node = imp.emit(base, "matmul", (str(x.node), wt), x.shape[:-1] + (N,))
    else:
        node = imp.emit(base, "matmul", (str(x.node), wn), x.shape[:-1] + (N,))
    return Tensor("data", x.shape[:-1] + (N,), node, batch_axis=x.batch_axis)


@handles("MatMul")
def _matmul(imp: Importer, p: Any) -> None:
    imp.attrs(p, {})
    a, b = imp.get(p.input[0]), imp.get(p.input[1])
    base = imp.label()
    if a.kind == "const" and b.kind == "const":
        imp.set_output(const_tensor(np.matmul(fractions_of(a.value), fractions_of(b.value))))  # type: ignore[arg-type]
        return
    if a.kind == "data":
        if len(a.shape) == 0:
            raise imp.unsupported("a product with a scalar-per-sample tensor")
        imp.set_output(_times(imp, a, b, False, base))
        return
    if b.kind != "data":  # a product of parameters: an unbatched matmul
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise imp.unsupported("products of parameter tensors beyond matrices")
        node = imp.emit(
            base,
            "matmul",
            (imp.node_of(a, base + ":a"), imp.node_of(b, base + ":b")),
            (a.shape[0], b.shape[1]),
        )
        imp.set_output(Tensor("static", (a.shape[0], b.shape[1]), node))
        return
    # W @ x: x must be a per-sample vector or matrix (no batch axis to mix)
    if len(a.shape) != 2:
        raise imp.unsupported(f"a {len(a.shape)}-D left factor times data")
    if b.batch_axis and len(b.shape) < 2:
        raise imp.unsupported("a matrix times batched vectors along the batch axis")
    if len(b.shape) == 1:
        imp.set_output(_times(imp, b, a, True, base))
        return
    K, N = b.shape[-2:]
    bt = imp.emit(
        base + ":xT",
        "transpose",
        (str(b.node),),
        b.shape[:-2] + (N, K),
        (("perm", tuple(range(len(b.shape) - 2)) + (len(b.shape) - 1, len(b.shape) - 2)),),
    )
    prod = _times(
        imp,
        Tensor("data", b.shape[:-2] + (N, K), bt, batch_axis=b.batch_axis),
        a,
        True,
        base + ":T",
    )
    M = a.shape[0]
    out = imp.emit(
        base,
        "transpose",
        (str(prod.node),),
        b.shape[:-2] + (M, N),
        (("perm", tuple(range(len(b.shape) - 2)) + (len(b.shape) - 1, len(b.shape) - 2)),),
    )
    imp.set_output(Tensor("data", b.shape[:-2] + (M, N), out, batch_axis=b.batch_axis))


@handles("Gemm")
def _gemm(imp: Importer, p: Any) -> None:
    at = imp.attrs(
        p, {"alpha": Fraction(1), "beta": Fraction(1), "transA": 0, "transB": 0, "broadcast": 1}
    )
    a, b = imp.get(p.input[0]), imp.get(p.input[1])
    base = imp.label()
    if a.kind != "data":
        raise imp.unsupported("a first input that is not data (the minibatch flows through A)")
    if at["transA"]:
        raise imp.unsupported("attribute transA = 1")
    has_c = present(p, 2)
    y = _times(imp, a, b, bool(at["transB"]), base + (":gemm" if has_c or at["alpha"] != 1 else ""))
    if at["alpha"] != 1:
        alpha = QArray.from_fractions(np.array([at["alpha"]], dtype=object))
        node = imp.emit(
            base + (":alpha" if has_c else ""),
            "scale",
            (str(y.node),),
            y.shape,
            (("value", alpha),),
        )
        y = Tensor("data", y.shape, node, batch_axis=y.batch_axis)
    if has_c:
        c = imp.get(p.input[2])
        if c.kind == "data":
            raise imp.unsupported("a data tensor as C")
        if at["beta"] != 1:
            if c.kind == "const":
                c = const_tensor(fractions_of(c.value) * at["beta"])  # type: ignore[arg-type]
            else:
                beta = QArray.from_fractions(np.array([at["beta"]], dtype=object))
                c = Tensor(
                    "static",
                    c.shape,
                    imp.emit(base + ":beta", "scale", (str(c.node),), c.shape, (("value", beta),)),
                )
        c = align(imp, c, y)
        shape = tuple(np.broadcast_shapes(y.shape, c.shape))
        node = imp.emit(base, "add", (str(y.node), imp.node_of(c, base + ":C")), shape)
        y = Tensor("data", shape, node, batch_axis=y.batch_axis)
    imp.set_output(y)


__all__: list[str] = []
