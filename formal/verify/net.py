"""The kernel's own reading of a formal-net/1 network: layers, exact parameters,
coordinates (trainable entries merged along ties), activations and its own proxy table
(written from docs/proxies.md).  Evaluation is in :mod:`formal.verify.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from formal.errors import InvalidArgument, UnsupportedOp

Vec = dict[int, Fraction]
"""A sparse linear form: coordinate -> coefficient."""

Shape = tuple[int, ...]


def exact(v: Any, where: str) -> Fraction:
    """An exact number from JSON text: int, "p/q", decimal or C99 hex float."""
    if isinstance(v, bool):
        raise InvalidArgument(f"{where}: expected a number, got {v!r}")
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, str):
        t = v.strip()
        try:
            if t.lstrip("+-").lower().startswith("0x"):
                return Fraction(float.fromhex(t))
            return Fraction(t)
        except (ValueError, ZeroDivisionError, OverflowError):
            pass
    raise InvalidArgument(f"{where}: expected an exact number, got {v!r}")


def _flat(v: Any, where: str) -> tuple[list[Fraction], Shape]:
    if isinstance(v, list):
        if not v:
            return [], (0,)
        parts = [_flat(x, where) for x in v]
        shapes = {s for _, s in parts}
        if len(shapes) != 1:
            raise InvalidArgument(f"{where}: ragged array")
        return [x for p, _ in parts for x in p], (len(v),) + parts[0][1]
    return [exact(v, where)], ()


# -- activations (kinks, one-sided derivatives) and the proxy table ---------------
@dataclass(frozen=True)
class Act:
    """A piecewise activation: value, derivative off the kinks, kinks (c, D-, D+)."""

    name: str
    lo: Fraction = Fraction(-1)
    hi: Fraction = Fraction(1)
    slope: Fraction = Fraction(1, 100)

    def value(self, x: Fraction) -> Fraction:
        """rho(x), exactly."""
        n = self.name
        if n == "identity":
            return x
        if n == "relu":
            return max(x, Fraction(0))
        if n == "leaky_relu":
            return x if x >= 0 else self.slope * x
        if n == "relu6":
            return min(max(x, Fraction(0)), Fraction(6))
        if n in ("hardtanh", "clip"):
            return min(max(x, self.lo), self.hi)
        if n == "hardsigmoid":
            return min(max(x / 6 + Fraction(1, 2), Fraction(0)), Fraction(1))
        if n == "hardswish":
            return Fraction(0) if x <= -3 else x if x >= 3 else x * (x + 3) / 6
        return abs(x)  # abs

    def kinks(self) -> list[tuple[Fraction, Fraction, Fraction]]:
        """(c, D-, D+) for every kink."""
        n, z, o = self.name, Fraction(0), Fraction(1)
        if n == "identity":
            return []
        if n == "relu":
            return [(z, z, o)]
        if n == "leaky_relu":
            return [] if self.slope == 1 else [(z, self.slope, o)]
        if n == "relu6":
            return [(z, z, o), (Fraction(6), o, z)]
        if n in ("hardtanh", "clip"):
            return [(self.lo, z, o), (self.hi, o, z)]
        if n == "hardsigmoid":
            return [(Fraction(-3), z, Fraction(1, 6)), (Fraction(3), Fraction(1, 6), z)]
        if n == "hardswish":
            return [(Fraction(-3), z, Fraction(-1, 2)), (Fraction(3), Fraction(3, 2), o)]
        return [(z, -o, o)]  # abs

    def derivative(self, x: Fraction) -> Fraction:
        """rho'(x) at a point that is not a kink."""
        n = self.name
        if n == "hardswish" and -3 < x < 3:
            return (2 * x + 3) / 6
        # every other piece is affine: the slope of the piece containing x
        below = [(c, dm, dp) for c, dm, dp in self.kinks() if c < x]
        above = [(c, dm, dp) for c, dm, dp in self.kinks() if c > x]
        if above:
            return above[0][1]
        if below:
            return below[-1][2]
        return Fraction(1)


_ACT_PARAMS = {"leaky_relu": ("slope",), "hardtanh": ("min", "max"), "clip": ("min", "max")}
_NOT_RATIONAL = ("sigmoid", "tanh")

# proxy at kink c of activation (by name and kink position), from docs/proxies.md
_TABLE: dict[str, dict[str, tuple[str, ...]]] = {
    # entries: "-" (D-), "+" (D+), "mid" ((D- + D+)/2), or an exact number
    "pytorch": {
        "relu": ("-",),
        "leaky_relu": ("-",),
        "relu6": ("-", "+"),
        "hardtanh": ("-", "+"),
        "hardsigmoid": ("-", "+"),
        "hardswish": ("-", "+"),
        "abs": ("0",),
        "clip": ("0", "0"),
    },
    "pytorch-2.6": {
        "relu": ("-",),
        "leaky_relu": ("-",),
        "relu6": ("-", "+"),
        "hardtanh": ("-", "+"),
        "hardsigmoid": ("-", "+"),
        "hardswish": ("-1/2", "3/2"),
        "abs": ("0",),
        "clip": ("1", "1"),
    },
    "pytorch-2.13": {
        "relu": ("-",),
        "leaky_relu": ("-",),
        "relu6": ("-", "+"),
        "hardtanh": ("-", "+"),
        "hardsigmoid": ("-", "+"),
        "hardswish": ("-", "+"),
        "abs": ("0",),
        "clip": ("1", "1"),
    },
    "jax": {
        "relu": ("-",),
        "leaky_relu": ("+",),
        "relu6": ("-", "+"),
        "hardtanh": ("+", "-"),
        "hardsigmoid": ("-", "+"),
        "hardswish": ("-", "+"),
        "abs": ("+",),
        "clip": ("mid", "mid"),
    },
    "tensorflow": {
        "relu": ("-",),
        "leaky_relu": ("-",),
        "relu6": ("-", "+"),
        "hardsigmoid": ("-", "+"),
        "hardswish": ("-", "+"),
        "abs": ("0",),
        "clip": ("1", "1"),
    },
}


@dataclass(frozen=True)
class Proxy:
    """A preset: the proxy at (activation, kink index) and the max-pool tie rule."""

    name: str
    rule: Callable[[Act, int], Fraction]
    tie: str = "first"


def _side(act: Act, i: int, code: str) -> Fraction:
    _, dm, dp = act.kinks()[i]
    if code == "-":
        return dm
    if code == "+":
        return dp
    if code == "mid":
        return (dm + dp) / 2
    return Fraction(code)


def parse_proxy(text: str) -> Proxy:
    """The kernel's own reading of a --proxy preset name."""
    head, _, rest = text.partition(",")
    tie = "first"
    if rest:
        key, _, val = rest.partition("=")
        if key.strip() != "tie" or val.strip() not in ("first", "last"):
            raise InvalidArgument(f"cannot verify: unknown preset suffix {rest!r}")
        tie = val.strip()
    head = head.strip()
    if head in _TABLE:
        table = _TABLE[head]

        def rule(act: Act, i: int) -> Fraction:
            if act.name not in table:
                raise InvalidArgument(f"preset {head} has no convention for {act.name}")
            return _side(act, i, table[act.name][i])

        return Proxy(text, rule, tie)
    if head in ("left", "right"):
        code = "-" if head == "left" else "+"
        return Proxy(text, lambda a, i: _side(a, i, code), tie)
    if head.startswith("lambda="):
        t = exact(head[7:], "proxy")
        return Proxy(text, lambda a, i: t * a.kinks()[i][1] + (1 - t) * a.kinks()[i][2], tie)
    if head.startswith("value="):
        v = exact(head[6:], "proxy")
        return Proxy(text, lambda a, i: v, tie)
    raise InvalidArgument(f"cannot verify: unknown proxy preset {text!r}")


def _activation(spec: Any, where: str, units: int) -> tuple[Act, list[Any] | None]:
    """An activation and per-unit proxy overrides (None: the preset's)."""
    if spec is None:
        spec = "identity"
    override: Any = None
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and "name" in spec:
        name = str(spec["name"])
        params = {k: v for k, v in spec.items() if k not in ("name", "proxy")}
        override = spec.get("proxy")
    else:
        raise InvalidArgument(f"{where}: expected an activation name or object")
    if name == "linear":
        name = "identity"
    if name in _NOT_RATIONAL:
        raise UnsupportedOp(f"cannot verify: activation {name} is not rational")
    known = (
        "identity",
        "relu",
        "leaky_relu",
        "relu6",
        "hardtanh",
        "clip",
        "hardsigmoid",
        "hardswish",
        "abs",
    )
    if name not in known:
        raise UnsupportedOp(f"cannot verify: activation {name!r}")
    allowed = _ACT_PARAMS.get(name, ())
    if any(k not in allowed for k in params):
        raise InvalidArgument(f"{where}: unexpected activation parameters {sorted(params)}")
    act = Act(
        name,
        lo=exact(params.get("min", -1), where),
        hi=exact(params.get("max", 1), where),
        slope=exact(params.get("slope", "1/100"), where),
    )
    if override is None:
        return act, None
    if isinstance(override, list) and override and isinstance(override[0], list):
        if len(override) != units:
            raise InvalidArgument(f"{where}: expected one proxy per unit")
        return act, list(override)
    return act, [override] * units


def override_value(spec: Any, act: Act, i: int) -> Fraction:
    """The proxy a unit's own override gives at kink ``i``."""
    if isinstance(spec, list):
        return exact(spec[i], "proxy")
    if isinstance(spec, str) and spec.strip().lstrip("+-")[:1].isalpha():
        return parse_proxy(spec).rule(act, i)
    return exact(spec, "proxy")


# -- the network ---------------------------------------------------------------------
@dataclass
class Layer:
    """One formal-net/1 layer: its op, attributes, parameters and activation."""

    index: int
    op: str
    shape_in: Shape
    shape_out: Shape
    attrs: dict[str, Any]
    act: Act
    overrides: list[Any] | None


@dataclass
class Model:
    """A parsed network: layers, exact parameters, coordinates, inputs and objective."""

    layers: list[Layer]
    params: dict[str, list[Fraction]]
    shapes: dict[str, Shape]
    inputs: list[list[Fraction]]
    in_shape: Shape
    coord: dict[tuple[str, int], tuple[int, int]]  # entry -> (coordinate, sign)
    labels: list[str]
    objective: list[list[Fraction]] | None  # rows over B * n outputs
    values: list[list[list[Fraction]]] = field(default_factory=list)  # [layer][b] post
    pre: list[list[list[Fraction]]] = field(default_factory=list)  # [layer][b] before act

    @property
    def batch(self) -> int:
        """Number of samples."""
        return len(self.inputs)


def size(shape: Shape) -> int:
    """Number of entries of a shape."""
    return math.prod(shape)


def _label(name: str, shape: Shape, flat: int) -> str:
    if not shape:
        return name
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return f"{name}[{','.join(str(i) for i in reversed(idx))}]"


def _pair(v: Any, default: int) -> tuple[int, int]:
    if v is None:
        v = default
    if isinstance(v, int):
        return v, v
    return int(v[0]), int(v[1])


def _outsize(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise InvalidArgument("window larger than the padded input")
    if not ceil:
        return span // s + 1
    o = -(-span // s) + 1
    if (o - 1) * s >= size + p:
        o -= 1
    return o


def parse(doc: Any) -> Model:
    """Read a formal-net/1 document (the kernel's own parser)."""
    if not isinstance(doc, dict) or doc.get("format") != "formal-net/1":
        raise InvalidArgument("expected an embedded formal-net/1 document")
    X, xs = _flat(doc.get("inputs"), "inputs")
    if len(xs) != 2 or xs[0] == 0:
        raise InvalidArgument("inputs: expected a B x n list")
    B, n = xs
    inputs = [X[b * n : (b + 1) * n] for b in range(B)]
    in_shape: Shape = tuple(doc.get("input_shape") or (n,))
    if size(in_shape) != n:
        raise InvalidArgument("input_shape does not match the inputs")
    raw = {}
    for k, v in (doc.get("params") or {}).items():
        raw[k] = _flat(v, f"params.{k}")
    params: dict[str, list[Fraction]] = {}
    shapes: dict[str, Shape] = {}
    order: list[str] = []

    def param(name: str, shape: Shape) -> list[Fraction]:
        if name not in raw or raw[name][1] != shape:
            raise InvalidArgument(f"params.{name}: expected shape {shape}")
        params[name], shapes[name] = raw[name]
        order.append(name)
        return params[name]

    layers: list[Layer] = []
    shape = in_shape
    outs: list[Shape] = []
    for i, spec in enumerate(doc.get("layers") or []):
        op = spec.get("type")
        attrs: dict[str, Any] = {"input": i - 1}
        if "input" in spec:  # a branch: read an earlier layer's output (or the input, -1)
            src = spec["input"]
            attrs["input"] = -1 if src == "input" else src
            src = attrs["input"]
            if isinstance(src, bool) or not (isinstance(src, int) and -1 <= src < i):
                raise InvalidArgument(f"layers[{i}].input: expected an earlier layer")
            shape = in_shape if attrs["input"] < 0 else outs[attrs["input"]]
        if op == "dense":
            if len(shape) != 1:
                raise InvalidArgument(f"layers[{i}]: dense needs a 1-D input")
            u = int(spec["units"])
            param(f"{i}.weight", (u, shape[0]))
            attrs["bias"] = bool(spec.get("bias", True))
            if attrs["bias"]:
                param(f"{i}.bias", (u,))
            out: Shape = (u,)
        elif op in ("conv2d", "maxpool2d", "avgpool2d"):
            if len(shape) != 3:
                raise InvalidArgument(f"layers[{i}]: expected a (C, H, W) input")
            C, H, W = shape
            kh, kw = _pair(spec.get("kernel_size"), 1)
            sh, sw = (
                _pair(spec.get("stride"), 1)
                if ("stride" in spec or op == "conv2d")
                else (kh, kw)
            )
            ph, pw = _pair(spec.get("padding"), 0)
            dh, dw = _pair(spec.get("dilation"), 1)
            ceil = bool(spec.get("ceil_mode", False)) and op != "conv2d"
            oh, ow = _outsize(H, kh, sh, ph, dh, ceil), _outsize(W, kw, sw, pw, dw, ceil)
            attrs.update(k=(kh, kw), s=(sh, sw), p=(ph, pw), d=(dh, dw))
            if op == "conv2d":
                CO, g = int(spec["out_channels"]), int(spec.get("groups", 1))
                param(f"{i}.weight", (CO, C // g, kh, kw))
                attrs["groups"] = g
                attrs["bias"] = bool(spec.get("bias", True))
                if attrs["bias"]:
                    param(f"{i}.bias", (CO,))
                out = (CO, oh, ow)
            else:
                out = (C, oh, ow)
                attrs["cip"] = bool(spec.get("count_include_pad", True))
                attrs["tie"] = spec.get("tie")
        elif op == "flatten":
            out = (size(shape),)
        elif op == "add":
            src = spec.get("from")
            attrs["from"] = -1 if src == "input" else int(src)
            out = shape
        else:
            raise UnsupportedOp(f"cannot verify: layer type {op!r}")
        act, ov = _activation(spec.get("activation"), f"layers[{i}].activation", size(out))
        layers.append(Layer(i, op, shape, out, attrs, act, ov))
        outs.append(out)
        shape = out
    if not layers:
        raise InvalidArgument("layers: expected a non-empty list")
    coord, labels = _coordinates(doc, order, shapes)
    obj = doc.get("objective")
    nout = size(shape)
    objective: list[list[Fraction]] | None = None
    if obj is not None:
        if obj.get("type") == "sum":
            objective = [[Fraction(1)] * (B * nout)]
        elif obj.get("type") == "weighted_sum":
            wv, ws = _flat(obj.get("weights"), "objective.weights")
            if ws != (B, nout):
                raise InvalidArgument("objective.weights: wrong shape")
            objective = [wv]
        else:
            raise InvalidArgument("objective: expected sum or weighted_sum")
    return Model(layers, params, shapes, inputs, in_shape, coord, labels, objective)


def _coordinates(
    doc: dict[str, Any], order: list[str], shapes: dict[str, Shape]
) -> tuple[dict[tuple[str, int], tuple[int, int]], list[str]]:
    """Parameter coordinates: trainable entries merged along ties (union-find with signs)."""
    trainable = doc.get("trainable", order)
    slots: list[tuple[str, int]] = [
        (n, j) for n in order if n in trainable for j in range(size(shapes[n]))
    ]
    index = {s: i for i, s in enumerate(slots)}
    parent: dict[int, tuple[int, int]] = {}

    def find(x: int) -> tuple[int, int]:
        s = 1
        while x in parent:
            x, ps = parent[x]
            s *= ps
        return x, s

    def entry(text: str) -> tuple[int, int]:
        t = text.strip()
        sign = -1 if t.startswith("-") else 1
        t = t.lstrip("-").strip()
        name, _, rest = t.partition("[")
        idx = [int(v) for v in rest.rstrip("]").split(",") if v.strip()] if rest else []
        shape = shapes.get(name.strip())
        if shape is None or len(idx) != len(shape):
            raise InvalidArgument(f"tied: bad entry {text!r}")
        flat = 0
        for i, s in zip(idx, shape):
            flat = flat * s + i
        if (name.strip(), flat) not in index:
            raise InvalidArgument(f"tied: entry {text!r} is not trainable")
        return index[(name.strip(), flat)], sign

    for group in doc.get("tied") or []:
        h, hs0 = entry(group[0])
        hr, hs = find(h)
        hs *= hs0
        for e in group[1:]:
            x, xs0 = entry(e)
            xr, xs = find(x)
            xs *= xs0
            if xr != hr:
                parent[xr] = (hr, xs * hs)
    roots = [find(i) for i in range(len(slots))]
    first: dict[int, int] = {}
    for i, (r, _) in enumerate(roots):
        first.setdefault(r, i)
    rank = {r: k for k, r in enumerate(sorted(first, key=lambda r: first[r]))}
    coord = {}
    for i, (r, s) in enumerate(roots):
        rep_sign = roots[first[r]][1]
        coord[slots[i]] = (rank[r], s * rep_sign)
    labels = [""] * len(rank)
    for r, k in rank.items():
        name, flat = slots[first[r]]
        labels[k] = _label(name, shapes[name], flat)
    return coord, labels
