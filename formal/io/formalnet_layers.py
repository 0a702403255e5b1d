"""formal-net/1 layer types: dense, conv2d, maxpool2d, avgpool2d, flatten, add.

They follow torch's names and shape conventions.  Images are (C, H, W) per
sample: give ``"input_shape": [C, H, W]`` at the top level (each row of
``inputs`` is one flattened image, in C order).

- ``{"type": "conv2d", "out_channels": CO, "kernel_size": k | [kh, kw],
  "stride": 1, "padding": 0 | [ph, pw], "dilation": 1, "groups": 1,
  "bias": true, "activation": ...}``; parameters ``"{i}.weight"``
  (CO, C/groups, kh, kw) and ``"{i}.bias"`` (CO,), shared across positions.
- ``{"type": "maxpool2d", "kernel_size": k, "stride": k, "padding": 0,
  "dilation": 1, "ceil_mode": false, "tie": "first" | "last" | [...]}``:
  ``tie`` overrides the preset's tie-breaking rule for this layer (one rule,
  or one per output entry, per-sample flat index; see :mod:`formal.maxpool`).
- ``{"type": "avgpool2d", "kernel_size": k, "stride": k, "padding": 0,
  "ceil_mode": false, "count_include_pad": true}`` (torch's defaults).
- ``{"type": "flatten"}``: to (C*H*W,).
- ``{"type": "add", "from": j}``: a residual connection, adds the output of
  layer ``j`` (an earlier index, or ``"input"``) to the current value.

Every layer may carry an ``"activation"``, applied after it, and an ``"input": j``
(an earlier layer index or ``"input"``): the layer reads that output instead of the
previous layer's (a branch, e.g. a ResNet's convolution shortcut).
"""

from __future__ import annotations

from typing import Any

from formal.io.formalnet_build import Build
from formal.io.limits import MAX_KERNEL, MAX_UNITS, short
from formal.ops import conv as _conv  # noqa: F401  (registers the conv/pool rules)
from formal.ops.conv import out_size


def _dense(b: Build, i: int, layer: dict[str, Any]) -> None:
    """``{"type": "dense", "units": U, "bias": true, "activation": ...}``."""
    field = f"layers[{i}]"
    where, where_p = b.where, b.where_p
    units = layer.get("units")
    if not isinstance(units, int) or isinstance(units, bool) or not 0 < units <= MAX_UNITS:
        raise where.fail(
            f"{field}.units",
            f"expected a positive integer (at most {MAX_UNITS}), got {short(units)}",
        )
    if len(b.shape) != 1:
        raise where.fail(
            f"{field}.type",
            f"expected a 1-D input for a dense layer (add a flatten layer), got shape {b.shape}",
        )
    width = b.shape[0]
    wname = f"{i}.weight"
    if wname not in b.raw:
        raise where_p.fail(f"params.{wname}", "expected this parameter, it is missing")
    w = b.raw[wname]
    if w.shape != (units, width):
        raise where_p.fail(
            f"params.{wname}", f"expected shape ({units}, {width}), got {tuple(w.shape)}"
        )
    b.param(wname, (units, width))
    b.emit(f"{i}.linear", "linear", (b.prev, f"p:{wname}"), (units,))
    has_bias = layer.get("bias", True)
    if not isinstance(has_bias, bool):
        raise where.fail(f"{field}.bias", f"expected true or false, got {short(has_bias)}")
    if has_bias:
        bname = f"{i}.bias"
        if bname not in b.raw:
            raise where_p.fail(f"params.{bname}", "expected this parameter, it is missing")
        bias = b.raw[bname]
        if bias.shape != (units,):
            raise where_p.fail(
                f"params.{bname}", f"expected shape ({units},), got {tuple(bias.shape)}"
            )
        b.param(bname, (units,))
        b.emit(f"{i}.add", "add", (b.prev, f"p:{bname}"), (units,))
    b.activation(i, layer)


def _pair(b: Build, field: str, value: Any, default: int | None, minimum: int) -> tuple[int, int]:
    if value is None:
        if default is None:
            raise b.where.fail(field, "expected this field (an integer or a pair)")
        value = default
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(
            isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= MAX_KERNEL
            for v in value
        )
    ):
        raise b.where.fail(
            field,
            f"expected an integer from {minimum} to {MAX_KERNEL} or a pair of them, got "
            f"{short(value)}",
        )
    return int(value[0]), int(value[1])


def _image(b: Build, field: str) -> tuple[int, int, int]:
    if len(b.shape) != 3:
        raise b.where.fail(
            field, f"expected a (C, H, W) input (set input_shape), got shape {b.shape}"
        )
    C, H, W = b.shape
    return C, H, W


def _out(b: Build, field: str, size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    try:
        return out_size(size, k, s, p, p, d, ceil)
    except ValueError as exc:
        raise b.where.fail(field, str(exc)) from None


def _conv2d(b: Build, i: int, layer: dict[str, Any]) -> None:
    field = f"layers[{i}]"
    C, H, W = _image(b, f"{field}.type")
    CO = layer.get("out_channels")
    if not isinstance(CO, int) or isinstance(CO, bool) or not 0 < CO <= MAX_UNITS:
        raise b.where.fail(
            f"{field}.out_channels",
            f"expected a positive integer (at most {MAX_UNITS}), got {short(CO)}",
        )
    kh, kw = _pair(b, f"{field}.kernel_size", layer.get("kernel_size"), None, 1)
    sh, sw = _pair(b, f"{field}.stride", layer.get("stride"), 1, 1)
    ph, pw = _pair(b, f"{field}.padding", layer.get("padding"), 0, 0)
    dh, dw = _pair(b, f"{field}.dilation", layer.get("dilation"), 1, 1)
    g = layer.get("groups", 1)
    if not isinstance(g, int) or isinstance(g, bool) or g <= 0 or C % g or CO % g:
        raise b.where.fail(
            f"{field}.groups",
            f"expected a positive divisor of the channels ({C} in, {CO} out), got {short(g)}",
        )
    oh = _out(b, field, H, kh, sh, ph, dh, False)
    ow = _out(b, field, W, kw, sw, pw, dw, False)
    wnode = b.param(f"{i}.weight", (CO, C // g, kh, kw))
    attrs = (
        ("strides", (sh, sw)),
        ("pads", (ph, pw, ph, pw)),
        ("dilations", (dh, dw)),
        ("groups", g),
    )
    b.emit(f"{i}.conv", "conv2d", (b.prev, wnode), (CO, oh, ow), attrs)
    has_bias = layer.get("bias", True)
    if not isinstance(has_bias, bool):
        raise b.where.fail(f"{field}.bias", f"expected true or false, got {short(has_bias)}")
    if has_bias:
        conv = b.prev
        bnode = b.param(f"{i}.bias", (CO,))
        b.emit(f"{i}.bias_view", "view", (bnode,), (CO, 1, 1))
        b.emit(f"{i}.add", "add", (conv, f"{i}.bias_view"), (CO, oh, ow))
    b.activation(i, layer)


def _pool(op: str) -> Any:
    def build(b: Build, i: int, layer: dict[str, Any]) -> None:
        field = f"layers[{i}]"
        C, H, W = _image(b, f"{field}.type")
        kh, kw = _pair(b, f"{field}.kernel_size", layer.get("kernel_size"), None, 1)
        sh, sw = (
            _pair(b, f"{field}.stride", layer.get("stride"), None if "stride" in layer else kh, 1)
            if "stride" in layer
            else (kh, kw)
        )
        ph, pw = _pair(b, f"{field}.padding", layer.get("padding"), 0, 0)
        dh, dw = (
            _pair(b, f"{field}.dilation", layer.get("dilation"), 1, 1)
            if op == "maxpool2d"
            else (1, 1)
        )
        if 2 * ph > kh or 2 * pw > kw:
            raise b.where.fail(
                f"{field}.padding",
                f"expected padding at most half the kernel ({kh}, {kw}), got ({ph}, {pw})",
            )
        ceil = layer.get("ceil_mode", False)
        if not isinstance(ceil, bool):
            raise b.where.fail(f"{field}.ceil_mode", f"expected true or false, got {short(ceil)}")
        oh = _out(b, field, H, kh, sh, ph, dh, ceil)
        ow = _out(b, field, W, kw, sw, pw, dw, ceil)
        attrs: tuple[tuple[str, Any], ...] = (
            ("kernel", (kh, kw)),
            ("strides", (sh, sw)),
            ("pads", (ph, pw, ph, pw)),
            ("dilations", (dh, dw)),
            ("ceil_mode", ceil),
        )
        if op == "avgpool2d":
            cip = layer.get("count_include_pad", True)
            if not isinstance(cip, bool):
                raise b.where.fail(
                    f"{field}.count_include_pad", f"expected true or false, got {short(cip)}"
                )
            attrs += (("count_include_pad", cip),)
        else:
            tie = layer.get("tie")
            if tie is not None:
                ok = (
                    tie in ("first", "last")
                    if isinstance(tie, str)
                    else isinstance(tie, list)
                    and bool(tie)
                    and all(t in ("first", "last") for t in tie)
                )
                if not ok:
                    raise b.where.fail(
                        f"{field}.tie",
                        f"expected 'first', 'last' or a list of them, got {short(tie)}",
                    )
                attrs += (("tie", tie if isinstance(tie, str) else tuple(tie)),)
        b.emit(f"{i}.{op[:7]}", op, (b.prev,), (C, oh, ow), attrs)
        b.activation(i, layer)

    return build


def _flatten(b: Build, i: int, layer: dict[str, Any]) -> None:
    n = 1
    for d in b.shape:
        n *= d
    b.emit(f"{i}.flatten", "reshape", (b.prev,), (n,))
    b.activation(i, layer)


def _add(b: Build, i: int, layer: dict[str, Any]) -> None:
    field = f"layers[{i}].from"
    src = layer.get("from")
    if src == "input":
        other, shape = "x", b.nodes[0].shape
    elif isinstance(src, int) and not isinstance(src, bool) and 0 <= src < i:
        other = b.outputs[src]
        shape = next(n.shape for n in b.nodes if n.name == other)
    else:
        raise b.where.fail(
            field, f"expected an earlier layer index (0..{i - 1}) or 'input', got {short(src)}"
        )
    if tuple(shape) != tuple(b.shape):
        raise b.where.fail(
            field,
            f"expected the shape {b.shape} of the current value, got {tuple(shape)} from layer "
            f"{src}",
        )
    b.emit(f"{i}.residual", "add", (b.prev, other), b.shape)
    b.activation(i, layer)


_COMMON = ("type", "activation", "input")
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "dense": _COMMON + ("units", "bias"),
    "conv2d": _COMMON
    + ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
    "maxpool2d": _COMMON + ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "tie"),
    "avgpool2d": _COMMON + ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "flatten": _COMMON,
    "add": _COMMON + ("from",),
}
"""The keys each layer type accepts (any other key is an error with a suggestion)."""

LAYERS: dict[str, Any] = {
    "dense": _dense,
    "conv2d": _conv2d,
    "maxpool2d": _pool("maxpool2d"),
    "avgpool2d": _pool("avgpool2d"),
    "flatten": _flatten,
    "add": _add,
}

__all__ = ["LAYERS", "LAYER_KEYS"]
