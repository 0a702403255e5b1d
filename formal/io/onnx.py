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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from formal.core.network import Network, Node, check_well_formed
from formal.core.numbers import Format, parse_format
from formal.core.qarray import QArray
from formal.errors import InputFileError, InvalidArgument, UnsupportedOp
from formal.ops import conv as _conv  # noqa: F401  (registers the conv/pool rules)

_FLOAT_TYPES = {
    1: "binary32",
    10: "binary16",
    11: "binary64",
    16: "bfloat16",
    17: "e4m3",
    19: "e5m2",
}
MIN_OPSET, MAX_OPSET = 7, 21


@dataclass
class Tensor:
    """An ONNX tensor during import.

    ``kind``: ``data`` (batched IR value; ``shape`` per sample, ``batch_axis``
    says whether the ONNX tensor has a leading batch axis), ``static``
    (unbatched IR value built from parameters; ``shape`` full) or ``const``
    (a folded constant ``value``: object array of Fractions or an int array).
    """

    kind: str
    shape: tuple[int, ...]
    node: str | None = None
    value: np.ndarray | None = None
    batch_axis: bool = True

    @property
    def onnx_shape_rank(self) -> int:
        return len(self.shape) + (1 if self.kind == "data" and self.batch_axis else 0)


def exact_from_float(arr: np.ndarray, what: str) -> QArray:
    """Exact values of a float array (any IEEE / ml_dtypes type) with a power-of-two denominator."""
    a = np.asarray(arr)
    with np.errstate(invalid="ignore", over="ignore"):
        x = a.astype(np.float64).reshape(-1)  # exact widening
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        idx = tuple(int(i) for i in np.unravel_index(int(bad[0]), a.shape))
        raise InvalidArgument(
            f"{what}: expected finite values, got {what}{list(idx)} = {x[bad[0]]!r}"
        )
    m, e = np.frexp(x)
    mi = np.ldexp(m, 53).astype(np.int64)  # x = mi * 2**(e - 53), exactly
    t = e.astype(np.int64) - 53
    nz = mi != 0
    if not nz.any():
        return QArray.zeros(a.shape)
    low = np.where(nz, mi & -mi, 1)
    tz = np.frexp(low.astype(np.float64))[1].astype(np.int64) - 1
    tt = np.where(nz, t + tz, 0)
    k = int(max(0, -int(tt[nz].min())))
    odd = np.where(nz, mi >> tz, 0).astype(object)
    num = odd << (tt + k).astype(object)
    return QArray(num.reshape(a.shape), 1 << k)


class Importer:
    """Translate one ONNX graph; see :mod:`formal.io.onnx_ops` for the op handlers."""

    def __init__(self, model: Any, source: str, batch: int):
        import onnx

        self.onnx = onnx
        self.model = model
        self.graph = model.graph
        self.source = source
        self.batch = batch
        self.opset = self._opset()
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.params: dict[str, QArray] = {}
        self.param_arrays: dict[str, np.ndarray] = {}
        self.param_order: list[str] = []
        self.current: Any = None

    def _opset(self) -> int:
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                if not MIN_OPSET <= o.version <= MAX_OPSET:
                    raise UnsupportedOp(
                        f"{self.source}: expected ONNX opset {MIN_OPSET}..{MAX_OPSET}, got opset {o.version}"
                    )
                return int(o.version)
        raise UnsupportedOp(f"{self.source}: the model imports no default-domain opset")

    # -- errors -------------------------------------------------------------------
    def where(self) -> str:
        p = self.current
        name = p.name or (p.output[0] if len(p.output) else "?")
        return f"{self.source}: node {name!r} ({p.op_type})"

    def unsupported(self, what: str) -> UnsupportedOp:
        return UnsupportedOp(f"{self.where()}: {what}")

    def invalid(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"{self.where()}: {what}")

    # -- attributes -----------------------------------------------------------------
    def attrs(self, p: Any, allowed: dict[str, Any]) -> dict[str, Any]:
        """Attribute values (floats exact), defaults for absent ones; unknown -> UnsupportedOp."""
        out = dict(allowed)
        for a in p.attribute:
            if a.name not in allowed:
                value = self.onnx.helper.get_attribute_value(a)
                raise self.unsupported(f"attribute {a.name} = {_short(value)} is not supported")
            out[a.name] = _attr_value(self.onnx, a)
        return out

    # -- graph building -----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base or "node"
        k = 1
        while name in self.names:
            k += 1
            name = f"{base}#{k}"
        self.names.add(name)
        return name

    def emit(
        self,
        base: str,
        op: str,
        inputs: Sequence[str],
        shape: tuple[int, ...],
        attrs: tuple[tuple[str, Any], ...] = (),
    ) -> str:
        name = self.fresh(base)
        self.nodes.append(Node(name, op, tuple(inputs), tuple(int(s) for s in shape), attrs))
        return name

    def get(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise self.invalid(f"input {name!r} is not defined before this node")
        return self.tensors[name]

    def const_node(self, t: Tensor, base: str) -> str:
        """Materialize a folded constant as an IR ``const`` node (cached on the tensor)."""
        if t.node is None:
            assert t.value is not None
            t.node = self.emit(
                base, "const", (), t.shape, (("value", QArray.from_fractions(_fractions(t.value))),)
            )
        return t.node

    def node_of(self, t: Tensor, base: str) -> str:
        return self.const_node(t, base) if t.kind == "const" else str(t.node)

    def label(self) -> str:
        p = self.current
        return p.name or (p.output[0] if len(p.output) else p.op_type)

    def set_output(self, t: Tensor, index: int = 0) -> None:
        p = self.current
        for k, name in enumerate(p.output):
            if k != index and name:
                consumers = [n for n in self.graph.node if name in n.input] + [
                    o for o in self.graph.output if o.name == name
                ]
                if consumers:
                    raise self.unsupported(
                        f"output #{k} ({name!r}) is used, only the first output is supported"
                    )
        self.tensors[p.output[index]] = t

    # -- helpers used by handlers ---------------------------------------------------------
    def const_value(self, name: str, what: str) -> np.ndarray:
        t = self.get(name)
        if t.kind != "const":
            raise self.unsupported(
                f"{what} {name!r} must be a constant, got a {('parameter' if t.kind == 'static' else 'data')} tensor"
            )
        assert t.value is not None
        return t.value

    def ints(self, name: str, what: str) -> list[int]:
        v = self.const_value(name, what)
        return [int(x) for x in np.asarray(v).reshape(-1)]


def _fractions(v: np.ndarray) -> np.ndarray:
    arr = np.asarray(v)
    if arr.dtype == object:
        return arr
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, x in enumerate(arr.reshape(-1).tolist()):
        flat[i] = Fraction(x)
    return out


def _short(value: Any) -> str:
    text = repr(value.decode() if isinstance(value, bytes) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _attr_value(onnx: Any, a: Any) -> Any:
    A = onnx.AttributeProto
    if a.type == A.FLOAT:
        return Fraction(a.f)  # a.f is the float32 value widened exactly to a Python float
    if a.type == A.FLOATS:
        return [Fraction(f) for f in a.floats]
    if a.type == A.INT:
        return int(a.i)
    if a.type == A.INTS:
        return [int(i) for i in a.ints]
    if a.type == A.STRING:
        return a.s.decode()
    if a.type == A.TENSOR:
        return a.t
    return onnx.helper.get_attribute_value(a)


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
    from formal.io import vnnlib

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
                f"{spec.source}: expected {size} inputs (X_0..X_{size - 1}) for input shape {shape}, got {spec.n_inputs}"
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
        q = _fractions(data.astype(object))
    elif data.dtype.kind == "f" or data.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        q = exact_from_float(data, where).to_fractions()
    elif data.dtype == object:
        q = _fractions(data)
    else:
        raise InvalidArgument(f"{where}: expected a numeric array, got dtype {data.dtype}")
    if q.size % size or q.size == 0:
        raise InvalidArgument(
            f"{where}: expected {size} values per sample (input shape {shape}), got {q.size} values with shape {data.shape}"
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

    from formal.io import onnx_ops

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
        _ops=onnx_ops,
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
    _ops: Any = None,
) -> Network:
    """Build a Network from an in-memory ``onnx.ModelProto``."""
    from formal.io import onnx_ops

    ops = _ops or onnx_ops
    graph = model.graph
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
    fmt_name = _FLOAT_TYPES.get(gin.type.tensor_type.elem_type)
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
            f"{source}: the graph input {gin.name!r} has no batch axis; expected one sample, got {X.shape[0]}"
        )
    imp.tensors[gin.name] = Tensor(
        "data", shape, imp.emit(gin.name, "input", (), shape), batch_axis=batch_axis
    )
    ops.classify_initializers(imp, inits)
    for proto in graph.node:
        imp.current = proto
        if proto.domain not in ("", "ai.onnx"):
            raise imp.unsupported(
                f"op {proto.domain}.{proto.op_type} (custom domain) is not supported"
            )
        handler = ops.HANDLERS.get(proto.op_type)
        if handler is None:
            raise imp.unsupported(
                f"op {proto.op_type} is not supported (supported: {', '.join(sorted(ops.HANDLERS))})"
            )
        handler(imp, proto)
    outs = [o.name for o in graph.output]
    if output is None:
        if len(outs) != 1:
            raise UnsupportedOp(
                f"{source}: expected one graph output, got {len(outs)} ({', '.join(outs)}); pass output=NAME"
            )
        output = outs[0]
    if output not in imp.tensors or imp.tensors[output].kind != "data":
        raise UnsupportedOp(f"{source}: the output {output!r} does not depend on the input")
    out_node = str(imp.tensors[output].node)
    return _network(imp, X, out_node, trainable, numbers)


def _network(
    imp: Importer,
    X: np.ndarray,
    out_node: str,
    trainable: Sequence[str] | None,
    numbers: str | None,
) -> Network:
    from formal.io.formalnet import Where, check_members

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
                f"{imp.source}: expected parameters of one element type (it defines M), got {a} as {fmts[a]} and {b} as {fmts[b]}"
            )
        fmt = parse_format(_dtype_format(fmts[order[0]]))
    else:
        fmt = parse_format("binary32")
    train = list(order) if trainable is None else list(trainable)
    for name in train:
        if name not in order:
            raise InvalidArgument(
                f"{imp.source}: expected trainable names among the parameters ({', '.join(order[:8])}{', ...' if len(order) > 8 else ''}), got {name!r}"
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
