"""The formal-net/1 loader's building blocks: exact fields, activations, and the layer state.

:class:`Where` prefixes errors with the file and the field; :func:`exact_array`
reads nested lists of exact numbers; :func:`check_members` checks that a
trainable tensor lies in M; :class:`Build` is the state of the layer loop that
each layer type of :mod:`formal.io.formalnet_layers` extends.  Shared by the
ONNX and NNet importers for their error messages and membership checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Activation, parse_proxy_override
from formal.core.builders import activation_of
from formal.core.network import Node
from formal.core.numbers import Format, format_exact, hex_float
from formal.errors import FormalError, InvalidArgument
from formal.io.limits import MAX_TENSOR_ENTRIES, read_number, short


class Where:
    """Prefixes error messages with the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str) -> InvalidArgument:
        """The error for ``field`` of this source (to raise)."""
        return InvalidArgument(f"{self.source}: field '{field}': {message}")


def exact_field(value: Any, where: Where, field: str) -> Fraction:
    """One exact number of a JSON document (errors name the file and the field)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise where.fail(field, f"expected a number, got {short(value)}")
    try:
        return read_number(value)
    except FormalError as exc:
        raise where.fail(field, str(exc)) from None


def exact_array(value: Any, where: Where, field: str, ndim: int | None = None) -> np.ndarray:
    """Nested lists of exact numbers -> object array of Fractions (rectangular)."""

    def shape_of(v: Any) -> tuple[int, ...]:
        if isinstance(v, list):
            if not v:
                return (0,)
            inner = [shape_of(x) for x in v]
            if any(s != inner[0] for s in inner):
                raise where.fail(
                    field, "expected a rectangular nested list, got rows of different lengths"
                )
            return (len(v),) + inner[0]
        return ()

    shape = shape_of(value)
    if int(np.prod(shape, dtype=object)) > MAX_TENSOR_ENTRIES:
        raise where.fail(field, f"expected at most {MAX_TENSOR_ENTRIES} entries, got {shape}")
    if ndim is not None and len(shape) != ndim:
        raise where.fail(field, f"expected a {ndim}-D array, got shape {shape}")
    arr = np.empty(shape, dtype=object)
    flat = arr.reshape(-1)
    for i, v in enumerate(_flatten(value)):
        flat[i] = exact_field(v, where, f"{field}{_index(shape, i)}")
    return arr


def _flatten(v: Any) -> Iterator[Any]:
    if isinstance(v, list):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


def _index(shape: tuple[int, ...], flat: int) -> str:
    if not shape:
        return ""
    return "[" + ",".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


def parse_activation(spec: Any, where: Where, field: str) -> tuple[Activation, Any]:
    """A layer's ``activation`` (name or object) and its proxy override (None if absent)."""
    if spec is None:
        spec = "identity"
    if isinstance(spec, str):
        name, proxy = spec, None
    elif isinstance(spec, dict):
        if "name" not in spec:
            raise where.fail(field, "expected an activation object with a 'name'")
        name = spec["name"]
        proxy = spec.get("proxy")
    else:
        raise where.fail(field, f"expected an activation name or object, got {short(spec)}")
    try:
        act = activation_of(
            {**{k: v for k, v in spec.items() if k != "proxy"}, "name": str(name)}
            if isinstance(spec, dict)
            else name
        )
        override: Any = None
        if proxy is not None:
            if (
                isinstance(proxy, list) and proxy and isinstance(proxy[0], list)
            ):  # one spec per unit
                override = tuple(parse_proxy_override(p, act) for p in proxy)
            else:
                override = parse_proxy_override(
                    str(proxy) if isinstance(proxy, Decimal) else proxy, act
                )
    except FormalError as exc:
        raise where.fail(field, str(exc)) from None
    return act, override


def check_members(name: str, values: np.ndarray, fmt: Format, where: Where) -> None:
    """Every entry of a trainable tensor must be exactly in M."""
    flat = values.reshape(-1)
    for i, v in enumerate(flat):
        if not fmt.contains(v):
            lo, hi = fmt.neighbors(v)
            near = (
                " and ".join(_show(x) for x in (lo, hi) if x is not None) or "none (out of range)"
            )
            raise where.fail(
                f"params.{name}{_index(values.shape, i)}",
                f"expected a member of {fmt.name}, got {format_exact(v)} (nearest members: {near})",
            )


def _show(x: Fraction) -> str:
    try:
        return f"{hex_float(x)} = {format_exact(x)}"
    except FormalError:
        return format_exact(x)


class Build:
    """State of the layer loop: the nodes so far, the current value ``prev`` and its ``shape``."""

    def __init__(
        self,
        where: Where,
        where_p: Where,
        raw: dict[str, np.ndarray],
        nodes: list[Node],
        prev: str,
        shape: tuple[int, ...],
    ):
        self.where, self.where_p, self.raw = where, where_p, raw
        self.nodes, self.prev, self.shape = nodes, prev, shape
        self.params: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self.outputs: list[str] = []

    def param(self, name: str, shape: tuple[int, ...]) -> str:
        """Register parameter ``name`` (must exist with this shape); returns its node."""
        if name not in self.raw:
            raise self.where_p.fail(f"params.{name}", "expected this parameter, it is missing")
        v = self.raw[name]
        if tuple(v.shape) != tuple(shape):
            raise self.where_p.fail(
                f"params.{name}", f"expected shape {tuple(shape)}, got {tuple(v.shape)}"
            )
        self.params[name] = v
        self.order.append(name)
        self.nodes.append(Node(f"p:{name}", "param", (), v.shape, (("name", name),)))
        return f"p:{name}"

    def emit(
        self,
        name: str,
        op: str,
        inputs: tuple[str, ...],
        shape: tuple[int, ...],
        attrs: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        """Append a node and make it the current value."""
        self.nodes.append(Node(name, op, inputs, shape, attrs))
        self.prev, self.shape = name, shape

    def activation(self, i: int, layer: dict[str, Any]) -> None:
        """Emit layer ``i``'s activation node (none for the identity without a proxy)."""
        field = f"layers[{i}]"
        units = int(np.prod(self.shape))
        act, override = parse_activation(layer.get("activation"), self.where, f"{field}.activation")
        if override is not None and isinstance(override, tuple) and len(override) != units:
            raise self.where.fail(
                f"{field}.activation.proxy",
                f"expected one proxy per unit ({units}), got {len(override)}",
            )
        if act.name != "identity" or override is not None:
            attrs: tuple[tuple[str, Any], ...] = (("activation", act),)
            if override is not None:
                attrs += (("proxy", override),)
            self.emit(f"{i}.act", "act", (self.prev,), self.shape, attrs)


__all__ = ["Where", "Build", "exact_field", "exact_array", "parse_activation", "check_members"]
