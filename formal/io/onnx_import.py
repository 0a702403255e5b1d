"""The ONNX importer's state and shared helpers (the op handlers live in onnx_ops / onnx_layers).

:class:`Importer` translates one ONNX graph into IR nodes; :class:`Tensor` is
an ONNX tensor during import; :data:`HANDLERS` maps op types to handlers,
filled by :func:`handles` in :mod:`formal.io.onnx_ops` and
:mod:`formal.io.onnx_layers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.builders import exact_from_float
from formal.core.network import Node
from formal.core.qarray import QArray
from formal.errors import InvalidArgument, UnsupportedOp
from formal.io.limits import MAX_TENSOR_ENTRIES

FLOAT_TYPES = {
    1: "binary32",
    10: "binary16",
    11: "binary64",
    16: "bfloat16",
    17: "e4m3",
    19: "e5m2",
}
"""ONNX element types of floating initializers -> number format names."""
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
        """The rank of the tensor in ONNX, counting the batch axis of a batched data tensor."""
        return len(self.shape) + (1 if self.kind == "data" and self.batch_axis else 0)


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
                        f"{self.source}: expected ONNX opset {MIN_OPSET}..{MAX_OPSET}, got opset "
                        f"{o.version}"
                    )
                return int(o.version)
        raise UnsupportedOp(f"{self.source}: the model imports no default-domain opset")

    # -- errors -------------------------------------------------------------------
    def where(self) -> str:
        """The current ONNX node named for messages: source, node name, op type."""
        p = self.current
        name = p.name or (p.output[0] if len(p.output) else "?")
        return f"{self.source}: node {name!r} ({p.op_type})"

    def unsupported(self, what: str) -> UnsupportedOp:
        """An UnsupportedOp naming the current node: the importer cannot translate ``what``."""
        return UnsupportedOp(f"{self.where()}: {what}")

    def invalid(self, what: str) -> InvalidArgument:
        """An InvalidArgument naming the current node: the model itself is wrong (``what``)."""
        return InvalidArgument(f"{self.where()}: {what}")

    # -- attributes -----------------------------------------------------------------
    def attrs(self, p: Any, allowed: dict[str, Any]) -> dict[str, Any]:
        """Attribute values (floats exact), defaults for absent ones; unknown -> UnsupportedOp."""
        out = dict(allowed)
        for a in p.attribute:
            if a.name not in allowed:
                value = self.onnx.helper.get_attribute_value(a)
                raise self.unsupported(f"attribute {a.name} = {_short(value)} is not supported")
            try:
                value = _attr_value(self.onnx, a)
            except (ValueError, OverflowError):  # NaN, infinities, undecodable strings
                raw = self.onnx.helper.get_attribute_value(a)
                raise self.invalid(
                    f"attribute {a.name} = {_short(raw)}: expected finite numbers or UTF-8 text"
                ) from None
            kind = _expected_kind(a.name, allowed[a.name])
            if kind is not None and not _is_kind(value, kind):
                raise self.invalid(f"attribute {a.name} = {_short(value)}: expected {kind}")
            out[a.name] = value
        return out

    # -- graph building -----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A node name not used yet: ``base``, or ``base#k`` for the first free k."""
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
        """Append an IR node (fresh name from ``base``) and return its name."""
        name = self.fresh(base)
        self.nodes.append(Node(name, op, tuple(inputs), tuple(int(s) for s in shape), attrs))
        return name

    def get(self, name: str) -> Tensor:
        """The tensor named ``name``; InvalidArgument when no earlier node defines it."""
        if name not in self.tensors:
            raise self.invalid(f"input {name!r} is not defined before this node")
        return self.tensors[name]

    def const_node(self, t: Tensor, base: str) -> str:
        """Materialize a folded constant as an IR ``const`` node (cached on the tensor)."""
        if t.node is None:
            assert t.value is not None
            t.node = self.emit(
                base,
                "const",
                (),
                t.shape,
                (("value", QArray.from_fractions(fractions_of(t.value))),),
            )
        return t.node

    def node_of(self, t: Tensor, base: str) -> str:
        """The IR node of a tensor, materializing a folded constant first."""
        return self.const_node(t, base) if t.kind == "const" else str(t.node)

    def label(self) -> str:
        """The current ONNX node's label: its name, else its first output, else its op type."""
        p = self.current
        return p.name or (p.output[0] if len(p.output) else p.op_type)

    def set_output(self, t: Tensor, index: int = 0) -> None:
        """Bind output ``index`` of the current node to ``t``; other used outputs: unsupported."""
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
        """The folded value of input ``name`` (``what`` in messages); it must be a constant."""
        t = self.get(name)
        if t.kind != "const":
            raise self.unsupported(
                f"{what} {name!r} must be a constant, got a "
                f"{('parameter' if t.kind == 'static' else 'data')} tensor"
            )
        assert t.value is not None
        return t.value

    def ints(self, name: str, what: str) -> list[int]:
        """The integers of the constant input ``name`` (shapes, axes, pads), flattened."""
        v = self.const_value(name, what)
        return [int(x) for x in np.asarray(v).reshape(-1)]


def tensor_array(t: Any, where: str) -> np.ndarray:
    """The numpy array of an ONNX TensorProto; a damaged tensor is an InvalidArgument."""
    from onnx import numpy_helper

    n = 1
    for d in t.dims:
        n *= max(int(d), 0)
    if n > MAX_TENSOR_ENTRIES:
        raise InvalidArgument(
            f"{where}: expected at most {MAX_TENSOR_ENTRIES} entries, got dims {list(t.dims)}"
        )
    try:
        return np.asarray(numpy_helper.to_array(t))
    except Exception as exc:  # onnx raises ValueError, TypeError, KeyError on damaged tensors
        raise InvalidArgument(
            f"{where}: expected a tensor whose data matches its type and dims {list(t.dims)}, "
            f"got a damaged one ({type(exc).__name__})"
        ) from None


def fractions_of(v: Any) -> np.ndarray:
    """An object array of exact Fractions with the shape of ``v`` (object arrays as they are)."""
    arr = np.asarray(v)
    if arr.dtype == object:
        return arr
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = float(arr.reshape(-1)[~np.isfinite(arr.reshape(-1))][0])
        raise InvalidArgument(f"expected finite numbers, got {bad}")
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, x in enumerate(arr.reshape(-1).tolist()):
        flat[i] = Fraction(x)
    return out


def _short(value: Any) -> str:
    text = repr(value.decode() if isinstance(value, bytes) else value)
    return text if len(text) <= 60 else text[:57] + "..."


_INT_LISTS = ("strides", "pads", "dilations", "kernel_shape", "axes", "perm", "shape")


def _expected_kind(name: str, default: Any) -> str | None:
    if isinstance(default, bool) or isinstance(default, int):
        return "an integer"
    if isinstance(default, Fraction):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if default is None and name in _INT_LISTS:
        return "a list of integers"
    return None


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "an integer":
        return isinstance(value, int)
    if kind == "a number":
        return isinstance(value, Fraction)
    if kind == "a string":
        return isinstance(value, str)
    return isinstance(value, list) and all(isinstance(v, int) for v in value)


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


Handler = Callable[[Importer, Any], None]
HANDLERS: dict[str, Handler] = {}
"""ONNX op type -> handler (filled on import of formal.io.onnx_ops, onnx_layers, onnx_norm)."""


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Decorator: register the function as the handler of these ONNX op types."""

    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


def const_tensor(v: np.ndarray) -> Tensor:
    """A folded constant tensor of value ``v``."""
    v = np.asarray(v)
    return Tensor("const", tuple(v.shape), value=v)


def present(p: Any, i: int) -> bool:
    """Does node ``p`` have a non-empty input number ``i``?"""
    return len(p.input) > i and bool(p.input[i])


def align(imp: Importer, other: Tensor, data: Tensor) -> Tensor:
    """Drop the leading axis of a constant/parameter that lines up with the batch axis."""
    rank = data.onnx_shape_rank
    t = other.shape
    if len(t) > rank:
        raise imp.unsupported(
            f"broadcasting a {len(t)}-D constant or parameter against {rank}-D data"
        )
    if data.batch_axis and len(t) == rank:
        if t[0] != 1:
            raise imp.unsupported(
                f"a constant or parameter of shape {t} varies along the batch axis"
            )
        new = t[1:]
        if other.kind == "const":
            assert other.value is not None
            return const_tensor(other.value.reshape(new))
        return Tensor(
            "static", new, imp.emit(imp.label() + ":view", "view", (str(other.node),), new)
        )
    return other


def f32(x: float) -> Fraction:
    """The exact value of ``x`` rounded to float32 (ONNX float attributes are float32)."""
    return Fraction(float(np.float32(x)))


__all__ = [
    "FLOAT_TYPES",
    "Handler",
    "Tensor",
    "Importer",
    "HANDLERS",
    "handles",
    "fractions_of",
    "tensor_array",
    "const_tensor",
    "present",
    "align",
    "f32",
    "exact_from_float",
]
