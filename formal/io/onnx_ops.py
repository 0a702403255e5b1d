"""ONNX op handlers for :mod:`formal.io.onnx` (one function per op type, in :data:`HANDLERS`)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Activation, get_activation
from formal.core.numbers import parse_format
from formal.core.qarray import QArray
from formal.io.onnx_import import (
    FLOAT_TYPES,
    HANDLERS,
    Handler,
    Importer,
    Tensor,
    align,
    const_tensor,
    exact_from_float,
    f32,
    fractions_of,
    handles,
    present,
    tensor_array,
)

# inputs that must be constants (shapes, pads, bounds, divisors, statistics)
CONST_POSITIONS: dict[str, set[int]] = {
    "Reshape": {1},
    "Pad": {1, 2, 3},
    "Clip": {1, 2},
    "BatchNormalization": {3, 4},
    "Div": {1},
    "Unsqueeze": {1},
    "Squeeze": {1},
    "Gather": {0, 1},
    "Shape": {0},
    "Concat": set(range(64)),
    "Cast": {0},
    "Dropout": {1, 2},
}


def classify_initializers(imp: Importer, inits: dict[str, Any]) -> None:
    """Floating initializers used as values are parameters; the rest are constants."""

    value_use: set[str] = set()
    for p in imp.graph.node:
        const_pos = CONST_POSITIONS.get(p.op_type, set())
        for i, name in enumerate(p.input):
            if name in inits and i not in const_pos:
                value_use.add(name)
    for name, t in inits.items():
        arr = tensor_array(t, f"{imp.source}: initializer {name!r}")
        if name in value_use and t.data_type in FLOAT_TYPES:
            imp.params[name] = exact_from_float(arr, f"{imp.source}: initializer {name}")
            imp.param_arrays[name] = arr
            imp.param_order.append(name)
            node = imp.emit("p:" + name, "param", (), arr.shape, (("name", name),))
            imp.tensors[name] = Tensor("static", tuple(arr.shape), node)
        elif t.data_type in FLOAT_TYPES:
            imp.tensors[name] = Tensor(
                "const",
                tuple(arr.shape),
                value=exact_from_float(arr, f"{imp.source}: initializer {name}").to_fractions(),
            )
        else:
            imp.tensors[name] = Tensor("const", tuple(arr.shape), value=np.asarray(arr))


def _broadcast(imp: Importer, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise imp.invalid(f"expected broadcastable shapes, got {a} and {b}") from None


def _binary(kind: str) -> Handler:
    def handler(imp: Importer, p: Any) -> None:
        imp.attrs(p, {})
        a, b = imp.get(p.input[0]), imp.get(p.input[1])
        if a.kind == "const" and b.kind == "const":
            va, vb = fractions_of(a.value), fractions_of(b.value)  # type: ignore[arg-type]
            imp.set_output(const_tensor({"add": va + vb, "sub": va - vb, "mul": va * vb}[kind]))
            return
        if a.kind != "data" and b.kind != "data":
            shape = _broadcast(imp, a.shape, b.shape)
            node = imp.emit(
                imp.label(),
                kind,
                (imp.node_of(a, imp.label() + ":a"), imp.node_of(b, imp.label() + ":b")),
                shape,
            )
            imp.set_output(Tensor("static", shape, node))
            return
        if a.kind == "data" and b.kind == "data":
            if a.batch_axis != b.batch_axis:
                raise imp.unsupported("combining tensors with and without a batch axis")
            shape = _broadcast(imp, a.shape, b.shape)
            node = imp.emit(imp.label(), kind, (str(a.node), str(b.node)), shape)
            imp.set_output(Tensor("data", shape, node, batch_axis=a.batch_axis))
            return
        data, other, first = (a, b, True) if a.kind == "data" else (b, a, False)
        other = align(imp, other, data)
        shape = _broadcast(imp, data.shape, other.shape)
        if kind == "mul" and other.kind == "const" and shape == data.shape:
            node = imp.emit(
                imp.label(),
                "scale",
                (str(data.node),),
                shape,
                (("value", QArray.from_fractions(fractions_of(other.value))),),
            )  # type: ignore[arg-type]
        else:
            o = imp.node_of(other, imp.label() + ":const")
            node = imp.emit(
                imp.label(), kind, (str(data.node), o) if first else (o, str(data.node)), shape
            )
        imp.set_output(Tensor("data", shape, node, batch_axis=data.batch_axis))

    return handler


HANDLERS["Add"] = _binary("add")
HANDLERS["Sub"] = _binary("sub")
HANDLERS["Mul"] = _binary("mul")


@handles("Div")
def _div(imp: Importer, p: Any) -> None:
    imp.attrs(p, {})
    a = imp.get(p.input[0])
    c = fractions_of(imp.const_value(p.input[1], "the divisor"))
    if any(v == 0 for v in c.reshape(-1)):
        raise imp.invalid("expected a non-zero divisor, got a zero entry")
    inv = np.vectorize(lambda v: 1 / Fraction(v), otypes=[object])(c)
    if a.kind == "const":
        imp.set_output(const_tensor(fractions_of(a.value) * inv))  # type: ignore[arg-type]
        return
    other = align(imp, const_tensor(inv), a) if a.kind == "data" else const_tensor(inv)
    shape = _broadcast(imp, a.shape, other.shape)
    if shape != a.shape:
        raise imp.unsupported(
            f"a divisor of shape {other.shape} that broadcasts the dividend {a.shape}"
        )
    node = imp.emit(
        imp.label(),
        "scale",
        (str(a.node),),
        shape,
        (("value", QArray.from_fractions(fractions_of(other.value))),),
    )  # type: ignore[arg-type]
    imp.set_output(Tensor(a.kind, shape, node, batch_axis=a.batch_axis))


@handles("Neg")
def _neg(imp: Importer, p: Any) -> None:
    imp.attrs(p, {})
    a = imp.get(p.input[0])
    if a.kind == "const":
        imp.set_output(const_tensor(-fractions_of(a.value)))  # type: ignore[arg-type]
        return
    imp.set_output(
        Tensor(
            a.kind,
            a.shape,
            imp.emit(imp.label(), "neg", (str(a.node),), a.shape),
            batch_axis=a.batch_axis,
        )
    )


@handles("Identity")
def _identity(imp: Importer, p: Any) -> None:
    imp.attrs(p, {})
    imp.set_output(imp.get(p.input[0]))


@handles("Dropout")
def _dropout(imp: Importer, p: Any) -> None:
    """Inference: the identity (a mask output that is used, or training mode, is unsupported)."""
    at = imp.attrs(p, {"ratio": None, "seed": None, "is_test": 1})
    if present(p, 2):
        mode = np.asarray(imp.const_value(p.input[2], "training_mode")).reshape(-1)
        if mode.size and bool(mode[0]):
            raise imp.unsupported("input training_mode = true (only inference)")
    if not at["is_test"]:
        raise imp.unsupported("attribute is_test = 0 (only inference)")
    imp.set_output(imp.get(p.input[0]))


@handles("Cast")
def _cast(imp: Importer, p: Any) -> None:
    to = imp.attrs(p, {"to": None, "saturate": 1})["to"]
    a = imp.get(p.input[0])
    if to in FLOAT_TYPES:
        if a.kind != "const":
            imp.set_output(a)  # real semantics: a float cast of a real value is the value
            return
        fmt = parse_format(FLOAT_TYPES[to])
        vals = fractions_of(a.value).reshape(-1)  # type: ignore[arg-type]
        out = np.empty(vals.shape, dtype=object)
        for i, v in enumerate(vals):
            r = fmt.round_nearest_even(Fraction(v))
            if r is None:
                raise imp.invalid(f"constant {v} overflows {fmt.name}")
            out[i] = r
        imp.set_output(const_tensor(out.reshape(a.shape)))
        return
    if a.kind != "const":
        raise imp.unsupported(f"attribute to = {to} (a cast of data to an integer type)")
    v = np.asarray(a.value)
    ints = np.array([math.trunc(Fraction(x)) for x in v.reshape(-1)], dtype=np.int64).reshape(
        v.shape
    )
    imp.set_output(const_tensor(ints))


@handles("Constant")
def _constant(imp: Importer, p: Any) -> None:

    at = imp.attrs(
        p,
        {
            "value": None,
            "value_float": None,
            "value_floats": None,
            "value_int": None,
            "value_ints": None,
        },
    )
    if at["value"] is not None:
        t = at["value"]
        arr = tensor_array(t, f"{imp.where()}: attribute value")
        if t.data_type in FLOAT_TYPES:
            imp.set_output(
                const_tensor(exact_from_float(arr, f"{imp.where()}: value").to_fractions())
            )
        else:
            imp.set_output(const_tensor(np.asarray(arr)))
    elif at["value_float"] is not None:
        imp.set_output(const_tensor(np.array(at["value_float"], dtype=object)))
    elif at["value_floats"] is not None:
        imp.set_output(const_tensor(np.array(at["value_floats"], dtype=object)))
    elif at["value_int"] is not None:
        imp.set_output(const_tensor(np.array(at["value_int"], dtype=np.int64)))
    elif at["value_ints"] is not None:
        imp.set_output(const_tensor(np.array(at["value_ints"], dtype=np.int64)))
    else:
        raise imp.invalid("expected a value attribute")


# -- activations ---------------------------------------------------------------------------


def _act(imp: Importer, p: Any, act: Activation) -> None:
    x = imp.get(p.input[0])
    if x.kind != "data":
        raise imp.unsupported("an activation of a constant or parameter tensor")
    node = imp.emit(imp.label(), "act", (str(x.node),), x.shape, (("activation", act),))
    imp.set_output(Tensor("data", x.shape, node, batch_axis=x.batch_axis))


def hard_sigmoid(alpha: Fraction, beta: Fraction) -> Activation:
    """ONNX HardSigmoid ``max(0, min(1, alpha x + beta))``: kinks where alpha x + beta is 0, 1."""
    params = (("alpha", alpha), ("beta", beta))
    if alpha == 0:
        c = min(max(beta, Fraction(0)), Fraction(1))
        return Activation("hardsigmoid", params, (), ((c,),), Fraction(0))
    x0, x1 = -beta / alpha, (1 - beta) / alpha
    mid = (beta, alpha)
    if alpha > 0:
        return Activation(
            "hardsigmoid", params, (x0, x1), ((Fraction(0),), mid, (Fraction(1),)), abs(alpha)
        )
    return Activation(
        "hardsigmoid", params, (x1, x0), ((Fraction(1),), mid, (Fraction(0),)), abs(alpha)
    )


def clip(lo: Fraction | None, hi: Fraction | None) -> Activation | None:
    """Clip with optional bounds (None: unbounded on that side); None if both are absent."""
    if lo is not None and hi is not None:
        return get_activation("clip", min=lo, max=hi)
    ident = (Fraction(0), Fraction(1))
    if lo is not None:
        return Activation("clip", (("min", lo),), (lo,), ((lo,), ident))
    if hi is not None:
        return Activation("clip", (("max", hi),), (hi,), (ident, (hi,)))
    return None


@handles("Relu", "Abs", "Sigmoid", "Tanh", "HardSwish")
def _simple_act(imp: Importer, p: Any) -> None:
    imp.attrs(p, {})
    name = {
        "Relu": "relu",
        "Abs": "abs",
        "Sigmoid": "sigmoid",
        "Tanh": "tanh",
        "HardSwish": "hardswish",
    }[p.op_type]
    _act(imp, p, get_activation(name))


@handles("LeakyRelu")
def _leaky(imp: Importer, p: Any) -> None:
    alpha = imp.attrs(p, {"alpha": f32(0.01)})["alpha"]
    _act(imp, p, get_activation("leaky_relu", slope=alpha))


@handles("HardSigmoid")
def _hardsigmoid(imp: Importer, p: Any) -> None:
    at = imp.attrs(p, {"alpha": f32(0.2), "beta": f32(0.5)})
    _act(imp, p, hard_sigmoid(at["alpha"], at["beta"]))


@handles("Clip")
def _clip(imp: Importer, p: Any) -> None:
    if imp.opset < 11:
        at = imp.attrs(p, {"min": None, "max": None})
        lo, hi = at["min"], at["max"]
    else:
        imp.attrs(p, {})
        lo = (
            Fraction(fractions_of(imp.const_value(p.input[1], "the min bound")).reshape(-1)[0])
            if present(p, 1)
            else None
        )
        hi = (
            Fraction(fractions_of(imp.const_value(p.input[2], "the max bound")).reshape(-1)[0])
            if present(p, 2)
            else None
        )
    if lo is not None and hi is not None and not lo < hi:
        raise imp.unsupported(f"min = {lo} >= max = {hi} (a constant clip)")
    act = clip(lo, hi)
    if act is None:
        imp.set_output(imp.get(p.input[0]))
        return
    _act(imp, p, act)


__all__ = ["HANDLERS", "classify_initializers", "hard_sigmoid", "clip"]
