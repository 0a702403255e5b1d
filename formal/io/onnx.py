"""ONNX models into the IR: parameters from initializers, inputs from a box or a file.

``load(path, input=..., spec=...)`` reads an ONNX model (the ``onnx``
package only, no runtime; tested with opsets 8-18, opsets 7-21 accepted,
every attribute checked) and returns a :class:`~formal.network.Network`:

- **Parameters** are the floating-point initializers used as values
  (weights, biases, Add/Sub/Mul operands, batch-norm scale and shift), named
  as in the file (PyTorch exports keep ``state_dict`` names).  Their element
  type defines M: float32 -> binary32, float16 -> binary16, bfloat16,
  float8 e4m3fn / e5m2, double -> binary64; their values are read exactly.
  Initializers used only as shapes, pads, clip bounds, divisors or batch-norm
  statistics are constants (frozen; they need not be in M).
- **The input minibatch**: the graph input that is not an initializer.  If
  its rank is >= 2 its first axis is the batch.  ``input`` is ``"center"``,
  ``"lo"`` or ``"hi"`` of the ``spec`` box (VNN-LIB), a ``.npy`` file (one
  sample of the input shape, or a batch), or an array; the default is the
  center of the spec box if a spec is given, else zeros.  Box points are
  rounded to the input's element type (float32 models receive float32
  tensors); pass ``exact_input=True`` to keep the exact rationals.
- **Ops**: Gemm (transA/transB, alpha, beta), MatMul, Add, Sub, Mul, Div by a
  constant, Neg, Relu, LeakyRelu, Clip, HardSigmoid (alpha, beta), HardSwish,
  Abs, Sigmoid, Tanh, Conv (2-D: strides, pads, dilations, groups, auto_pad),
  MaxPool, AveragePool, GlobalAveragePool, Pad (constant), Flatten, Reshape,
  Transpose, Constant, Identity, Cast, Dropout and BatchNormalization
  (inference), Unsqueeze/Squeeze, and constant folding of Shape/Gather/Concat
  on static shapes.  A spec with several boxes (a disjunction) uses box 0.
  Anything else raises :class:`~formal.errors.UnsupportedOp` naming the op,
  the node and the attribute.

Float attributes (LeakyRelu alpha, HardSigmoid alpha/beta, epsilon, Gemm
alpha/beta) are float32 in ONNX and are read as the exact float32 values:
ONNX HardSigmoid's default alpha is ``0x1.99999ap-3``, not 1/5.

Examples
--------
>>> import onnx  # doctest: +SKIP
>>> net = load("mnist.onnx", spec="prop_0.vnnlib", input="center")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from formal.core.builders import exact_from_float
from formal.core.network import Network, check_well_formed
from formal.core.numbers import Format, parse_format
from formal.core.qarray import QArray
from formal.errors import InputFileError, InvalidArgument, UnsupportedOp
from formal.io import onnx_layers as _layers  # noqa: F401  (registers the layer handlers)
from formal.io import onnx_norm as _norm  # noqa: F401  (registers BatchNormalization)
from formal.io import vnnlib
from formal.io.formalnet_build import Where, check_members
from formal.io.onnx_import import FLOAT_TYPES, HANDLERS, Importer, Tensor, fractions_of
from formal.io.onnx_ops import classify_initializers
from formal.ops import conv as _conv  # noqa: F401  (registers the conv/pool rules)


def _check_arity(imp: Importer, proto: Any) -> None:
    """Refuse a node with fewer inputs or outputs than its ONNX schema requires."""
    import onnx.defs

    try:
        schema = onnx.defs.get_schema(proto.op_type, imp.opset, domain="")
    except onnx.defs.SchemaError:  # an op unknown to this onnx build: its handler decides
        return
    if len(proto.input) < schema.min_input or len(proto.output) < schema.min_output:
        raise imp.invalid(
            f"expected at least {schema.min_input} input(s) and {schema.min_output} output(s), "
            f"got {len(proto.input)} and {len(proto.output)}"
        )

def input_values(
    source: str,
    shape: tuple[int, ...],
    rounding: Format | None,
    input: Any,
    spec: Any,
) -> np.ndarray:
    """The minibatch (B, *shape) as an object array of Fractions.

    ``input``: "center" / "lo" / "hi" of the ``spec`` box (a VNN-LIB path or
    :class:`~formal.io.vnnlib.Spec`), a .npy path, an array, or None (the
    box center with a spec, else zeros).  Box points are rounded to
    ``rounding`` when given.
    """
    size = int(np.prod(shape, dtype=np.int64))
    if isinstance(spec, (str, Path)):
        spec = vnnlib.load(spec)
    if input is None:
        input = "center" if spec is not None else "zeros"
    if isinstance(input, str) and input in ("center", "lo", "hi"):
        if spec is None:
            raise InvalidArgument(
                f"{source}: --input {input} needs a --spec VNN-LIB file with the input box"
            )
        if spec.n_inputs != size:
            raise InvalidArgument(
                f"{spec.source}: expected {size} inputs (X_0..X_{size - 1}) for input shape "
                f"{shape}, got {spec.n_inputs}"
            )
        pts = spec.point(input)
        if rounding is not None:
            pts = [_round(rounding, q, spec.source) for q in pts]
        arr = np.empty(size, dtype=object)
        arr[:] = pts
        return arr.reshape((1,) + shape)
    if isinstance(input, str) and input == "zeros":
        z = np.empty((1,) + shape, dtype=object)
        z[...] = Fraction(0)
        return z
    if isinstance(input, (str, Path)):
        p = Path(input)
        if p.suffix.lower() != ".npy":
            raise InvalidArgument(
                f"expected --input center, lo, hi or a .npy file, got input={str(input)!r}"
            )
        try:
            data = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{p}: cannot read as .npy: {exc}") from None
        where = str(p)
    else:
        data = np.asarray(input)
        where = "input"
    if data.dtype.kind in "iub":
        q = fractions_of(data.astype(object))
    elif data.dtype.kind == "f" or data.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        q = exact_from_float(data, where).to_fractions()
    elif data.dtype == object:
        q = fractions_of(data)
    else:
        raise InvalidArgument(f"{where}: expected a numeric array, got dtype {data.dtype}")
    if q.size % size or q.size == 0:
        raise InvalidArgument(
            f"{where}: expected {size} values per sample (input shape {shape}), got {q.size} "
            f"values with shape {data.shape}"
        )
    return q.reshape((q.size // size,) + shape)


def _round(fmt: Format, q: Fraction, source: str) -> Fraction:
    r = fmt.round_nearest_even(q)
    if r is None:
        raise InvalidArgument(f"{source}: input value {q} overflows {fmt.name}")
    return r


def load(
    path: str | Path,
    *,
    input: Any = None,
    spec: Any = None,
    exact_input: bool = False,
    trainable: Sequence[str] | None = None,
    numbers: str | None = None,
    output: str | None = None,
) -> Network:
    """Load an ONNX model as a Network (see the module docstring)."""
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p))
    except FileNotFoundError:
        raise InputFileError(f"{p}: no such file") from None
    except Exception as exc:  # protobuf decode errors have no common base class
        raise InputFileError(f"{p}: not a readable ONNX model: {exc}") from None
    return from_model(
        model,
        source=str(p),
        input=input,
        spec=spec,
        exact_input=exact_input,
        trainable=trainable,
        numbers=numbers,
        output=output,
    )


def from_model(
    model: Any,
    *,
    source: str = "<onnx>",
    input: Any = None,
    spec: Any = None,
    exact_input: bool = False,
    trainable: Sequence[str] | None = None,
    numbers: str | None = None,
    output: str | None = None,
) -> Network:
    """Build a Network from an in-memory ``onnx.ModelProto``."""
    graph = model.graph
    _check_names(graph, source)
    inits = {t.name: t for t in graph.initializer}
    data_inputs = [i for i in graph.input if i.name not in inits]
    if len(data_inputs) != 1:
        names = ", ".join(i.name for i in data_inputs) or "none"
        raise UnsupportedOp(
            f"{source}: expected exactly one graph input (the minibatch), got {names}"
        )
    gin = data_inputs[0]
    dims = [
        d.dim_value if d.HasField("dim_value") else None for d in gin.type.tensor_type.shape.dim
    ]
    batch_axis = len(dims) >= 2
    per = dims[1:] if batch_axis else dims
    if any(d is None or d <= 0 for d in per):
        raise UnsupportedOp(
            f"{source}: graph input {gin.name!r} has a symbolic or empty non-batch dimension {dims}"
        )
    shape = tuple(int(d or 0) for d in per)
    fmt_name = FLOAT_TYPES.get(gin.type.tensor_type.elem_type)
    X = input_values(
        source,
        shape,
        None if exact_input or fmt_name is None else parse_format(fmt_name),
        input,
        spec,
    )
    imp = Importer(model, source, X.shape[0])
    if not batch_axis and X.shape[0] != 1:
        raise InvalidArgument(
            f"{source}: the graph input {gin.name!r} has no batch axis; expected one sample, got "
            f"{X.shape[0]}"
        )
    imp.tensors[gin.name] = Tensor(
        "data", shape, imp.emit(gin.name, "input", (), shape), batch_axis=batch_axis
    )
    classify_initializers(imp, inits)
    for proto in graph.node:
        imp.current = proto
        if proto.domain not in ("", "ai.onnx"):
            raise imp.unsupported(
                f"op {proto.domain}.{proto.op_type} (custom domain) is not supported"
            )
        handler = HANDLERS.get(proto.op_type)
        if handler is None:
            raise imp.unsupported(
                f"op {proto.op_type} is not supported (supported: {', '.join(sorted(HANDLERS))})"
            )
        _check_arity(imp, proto)
        handler(imp, proto)
    outs = [o.name for o in graph.output]
    if output is None:
        if len(outs) != 1:
            raise UnsupportedOp(
                f"{source}: expected one graph output, got {len(outs)} ({', '.join(outs)}); pass "
                f"output=NAME"
            )
        output = outs[0]
    if output not in imp.tensors or imp.tensors[output].kind != "data":
        raise UnsupportedOp(f"{source}: the output {output!r} does not depend on the input")
    out_node = str(imp.tensors[output].node)
    return _network(imp, X, out_node, trainable, numbers)


def _check_names(graph: Any, source: str) -> None:
    """Every name of the graph must be text (a damaged file can hold bytes that are not UTF-8)."""
    named = [*graph.initializer, *graph.input, *graph.output]
    for k, node in enumerate(graph.node):
        texts = [node.name, node.op_type, node.domain, *node.input, *node.output]
        texts += [a.name for a in node.attribute]
        if not all(isinstance(t, str) for t in texts):
            raise InputFileError(
                f"{source}: node #{k}: expected UTF-8 names, got bytes (a damaged model?)"
            )
    if not all(isinstance(t.name, str) for t in named):
        raise InputFileError(f"{source}: expected UTF-8 tensor names, got bytes (a damaged model?)")


def _network(
    imp: Importer,
    X: np.ndarray,
    out_node: str,
    trainable: Sequence[str] | None,
    numbers: str | None,
) -> Network:
    used = {n.attr("name") for n in imp.nodes if n.op == "param"}
    order = [n for n in imp.param_order if n in used]
    fmts = {n: imp.param_arrays[n].dtype for n in order}
    if numbers is not None:
        fmt = parse_format(numbers)
    elif order:
        kinds = {str(d) for d in fmts.values()}
        if len(kinds) > 1:
            a = order[0]
            b = next(n for n in order if str(fmts[n]) != str(fmts[a]))
            raise InvalidArgument(
                f"{imp.source}: expected parameters of one element type (it defines M), got {a} as "
                f"{fmts[a]} and {b} as {fmts[b]}"
            )
        fmt = parse_format(_dtype_format(fmts[order[0]]))
    else:
        fmt = parse_format("binary32")
    train = list(order) if trainable is None else list(trainable)
    for name in train:
        if name not in order:
            raise InvalidArgument(
                f"{imp.source}: expected trainable names among the parameters "
                f"({', '.join(order[:8])}{', ...' if len(order) > 8 else ''}), got {name!r}"
            )
    if numbers is not None:
        where = Where(imp.source)
        for name in train:
            check_members(name, imp.params[name].to_fractions(), fmt, where)
    net = Network(
        tuple(imp.nodes),
        out_node,
        QArray.from_fractions(X),
        {n: imp.params[n] for n in order},
        fmt,
        tuple(order),
        tuple(n for n in order if n in train),
        (),
        None,
        "vector",
        imp.source,
    )
    check_well_formed(net)
    for (
        n
    ) in order:  # float64 holds every value of these formats exactly: prefill the filter's cache
        net.cache["float:" + n] = (
            imp.param_arrays[n].astype(np.float64),
            np.zeros(imp.param_arrays[n].shape),
        )
    return net


def _dtype_format(dt: np.dtype) -> str:
    return {
        "float32": "binary32",
        "float16": "binary16",
        "float64": "binary64",
        "bfloat16": "bfloat16",
        "float8_e4m3fn": "e4m3",
        "float8_e5m2": "e5m2",
    }[str(dt)]


__all__ = ["load", "from_model", "exact_from_float", "input_values", "Importer", "Tensor"]
