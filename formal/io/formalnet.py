"""formal-net/1 JSON loader (and ``--params FILE.npz``).

Numbers are read exactly from their text: JSON numbers through ``Decimal``
(never a float), strings as ``"p/q"``, decimals or C99 hex floats.  Every
error names the file and the field.  See README.md for the format.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from formal.core.network import Network, Node, Tie, check_well_formed
from formal.core.numbers import Format, format_exact, parse_format
from formal.core.qarray import QArray
from formal.errors import FormalError, InputFileError, InvalidArgument
from formal.io.formalnet_build import Build, Where, check_members, exact_array
from formal.io.formalnet_layers import LAYER_KEYS, LAYERS
from formal.io.limits import MAX_TENSOR_ENTRIES, load_json, short, unknown_keys

FORMAT_TAG = "formal-net/1"
_ENTRY = re.compile(r"^\s*(-?)\s*([^\[\]\s]+)\s*(?:\[([0-9,\s]*)\])?\s*$")


def _parse_entry(text: Any, params: dict[str, np.ndarray], where: Where, field: str) -> Tie:
    m = _ENTRY.match(str(text))
    if not m:
        raise where.fail(
            field, f"expected an entry like '0.weight[1,0]' or '-0.bias[2]', got {short(text)}"
        )
    sign = -1 if m.group(1) else 1
    name = m.group(2)
    if name not in params:
        raise where.fail(field, f"expected a parameter name, got {name!r}")
    shape = params[name].shape
    parts = [x.strip() for x in m.group(3).split(",") if x.strip()] if m.group(3) else []
    if any(len(x) > 18 for x in parts):
        raise where.fail(field, f"expected an index of {name} (shape {shape}), got {short(text)}")
    idx = tuple(int(x) for x in parts)
    if len(idx) != len(shape) or any(not 0 <= i < s for i, s in zip(idx, shape)):
        raise where.fail(field, f"expected an index of {name} (shape {shape}), got {list(idx)}")
    return Tie(name, idx, sign)


TOP_KEYS = (
    "format",
    "description",
    "numbers",
    "inputs",
    "input_shape",
    "layers",
    "params",
    "trainable",
    "tied",
    "objective",
)
"""The keys of a formal-net/1 document (any other key is an error)."""


def load_params_npz(path: str | Path, fmt: Format) -> dict[str, np.ndarray]:
    """Read a state_dict-like .npz: exact values (object arrays of Fractions)."""
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 (closed below; numpy leaks it on damaged files)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read as .npz: {exc.strerror or exc}") from None
    with fh:
        try:
            data = np.load(fh, allow_pickle=False)
        except Exception:  # numpy raises ValueError, BadZipFile, EOFError, ... on a damaged file
            raise InputFileError(
                f"{p}: expected a .npz archive of parameter arrays (numpy.savez), got a file "
                "numpy cannot read as one"
            ) from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputFileError(
                f"{p}: expected a .npz archive of named parameter arrays (numpy.savez), got a "
                "single .npy array"
            )
        return _npz_params(data, p, fmt)


def _npz_params(data: Any, p: Path, fmt: Format) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with data:
        for name in data.files:
            arr = _npz_member(data, name, p)
            want = fmt.numpy_dtype()
            if want is None or arr.dtype != np.dtype(want):
                expected = (
                    want if want is not None else f"(none: {fmt.name} has no numpy dtype; use JSON)"
                )
                raise InvalidArgument(
                    f"{p}: parameter '{name}': expected dtype {expected} for numbers={fmt.name}, "
                    f"got {arr.dtype}"
                )
            if arr.size > MAX_TENSOR_ENTRIES:
                raise InvalidArgument(
                    f"{p}: parameter '{name}': expected at most {MAX_TENSOR_ENTRIES} entries, "
                    f"got shape {arr.shape}"
                )
            finite = np.isfinite(arr.astype(np.float64))
            if not finite.all():
                idx = tuple(int(i) for i in np.argwhere(~finite)[0])
                raise InvalidArgument(
                    f"{p}: parameter '{name}': expected finite numbers, got "
                    f"{float(arr[idx])} at {list(idx)}"
                )
            try:
                vals = fmt.from_numpy(arr)
            except FormalError as exc:
                raise InvalidArgument(f"{p}: parameter '{name}': {exc}") from None
            out[name] = np.asarray(vals, dtype=object).reshape(arr.shape)
    return out


def _npz_member(data: Any, name: str, p: Path) -> np.ndarray:
    try:
        return np.asarray(data[name])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InvalidArgument(
                f"{p}: parameter '{name}': expected an array of numbers, got an array of Python "
                "objects (not read: loading it would run pickled code)"
            ) from None
        raise InputFileError(f"{p}: parameter '{name}': damaged array ({exc})") from None
    except Exception:  # zipfile / zlib / EOF errors of a damaged archive
        raise InputFileError(
            f"{p}: parameter '{name}': the archive is damaged (truncated or corrupt)"
        ) from None


def load(path: str | Path, params: str | Path | None = None) -> Network:
    """Load a formal-net/1 JSON file (optionally with an .npz of parameters)."""
    p = Path(path)
    doc = load_json(p)
    return from_dict(doc, source=str(p), params_file=params)


def from_dict(
    doc: Any, *, source: str = "<dict>", params_file: str | Path | None = None
) -> Network:
    """Build a Network from a parsed formal-net/1 document."""
    where = Where(source)
    if not isinstance(doc, dict):
        raise where.fail("<top>", f"expected a JSON object, got {short(doc)}")
    if doc.get("format") != FORMAT_TAG:
        raise where.fail("format", f"expected {FORMAT_TAG!r}, got {short(doc.get('format'))}")
    unknown_keys(doc, TOP_KEYS, where, "")
    try:
        fmt = parse_format(str(doc.get("numbers", "")))
    except FormalError as exc:
        raise where.fail("numbers", str(exc)) from None
    if "inputs" not in doc:
        raise where.fail("inputs", "expected the input minibatch (a B x n list)")
    X = exact_array(doc["inputs"], where, "inputs", ndim=2)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise where.fail("inputs", f"expected a non-empty B x n list, got shape {X.shape}")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise where.fail("layers", "expected a non-empty list of layers (the network is empty)")
    if params_file is not None:
        raw = load_params_npz(params_file, fmt)
        where_p = Where(str(params_file))
    else:
        if "params" not in doc or not isinstance(doc["params"], dict):
            raise where.fail(
                "params", "expected an object of parameter tensors (or pass --params FILE.npz)"
            )
        raw = {k: exact_array(v, where, f"params.{k}") for k, v in doc["params"].items()}
        where_p = where
    shape_spec = doc.get("input_shape")
    in_shape: tuple[int, ...] = (X.shape[1],)
    if shape_spec is not None:
        if (
            not isinstance(shape_spec, list)
            or not shape_spec
            or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in shape_spec)
        ):
            raise where.fail(
                "input_shape", f"expected a list of positive integers, got {short(shape_spec)}"
            )
        if len(shape_spec) > 8 or any(d > MAX_TENSOR_ENTRIES for d in shape_spec):
            raise where.fail(
                "input_shape",
                f"expected at most 8 dimensions of at most {MAX_TENSOR_ENTRIES}, got "
                f"{short(shape_spec)}",
            )
        if int(np.prod(shape_spec)) != X.shape[1]:
            raise where.fail(
                "input_shape",
                f"expected {X.shape[1]} entries per input (the rows of inputs), got shape "
                f"{shape_spec}",
            )
        in_shape = tuple(shape_spec)
    batch_inputs = X.reshape((X.shape[0],) + in_shape)
    b = Build(where, where_p, raw, [Node("x", "input", (), in_shape)], "x", in_shape)
    for i, layer in enumerate(layers):
        field = f"layers[{i}]"
        if not isinstance(layer, dict):
            raise where.fail(field, "expected a layer object")
        kind = layer.get("type")
        builder = LAYERS.get(kind) if isinstance(kind, str) else None
        if builder is None:
            names = ", ".join(repr(k) for k in LAYERS)
            raise where.fail(f"{field}.type", f"expected {names}, got {short(kind)}")
        unknown_keys(layer, LAYER_KEYS[str(kind)], where, field)
        if "input" in layer:  # the layer reads an earlier layer's output (a branch)
            src = layer["input"]
            if src == "input":
                b.prev, b.shape = "x", b.nodes[0].shape
            elif isinstance(src, int) and not isinstance(src, bool) and 0 <= src < i:
                b.prev = b.outputs[src]
                b.shape = next(n.shape for n in b.nodes if n.name == b.prev)
            else:
                raise where.fail(
                    f"{field}.input",
                    f"expected an earlier layer index (0..{i - 1}) or 'input', got {short(src)}",
                )
        builder(b, i, layer)
        b.outputs.append(b.prev)
    nodes, prev, params, order = b.nodes, b.prev, b.params, b.order
    extra = sorted(set(raw) - set(params))
    if extra:
        raise where_p.fail(
            f"params.{extra[0]}", "expected only parameters of the layers, got an unknown name"
        )
    trainable = doc.get("trainable", list(order))
    if not isinstance(trainable, list):
        raise where.fail("trainable", f"expected a list of parameter names, got {short(trainable)}")
    for k, name in enumerate(trainable):
        if not isinstance(name, str) or name not in params:
            raise where.fail(
                "trainable",
                f"entry {k}: expected a parameter name ({', '.join(order)}), got {short(name)}",
            )
    for name in trainable:
        check_members(name, params[name], fmt, where_p)
    ties: list[tuple[Tie, ...]] = []
    tied_spec = doc.get("tied") or []
    if not isinstance(tied_spec, list):
        raise where.fail(
            "tied",
            f"expected a list of tie groups (lists of entries), got "
            f"{json.dumps(tied_spec, default=str)[:60]}",
        )
    for g, group in enumerate(tied_spec):
        if not isinstance(group, list) or len(group) < 2:
            raise where.fail(f"tied[{g}]", "expected a list of at least two entries")
        entries = tuple(_parse_entry(e, params, where, f"tied[{g}]") for e in group)
        head = entries[0]
        hv = head.sign * params[head.param][head.index]
        for e in entries:
            if e.param not in trainable:
                raise where.fail(
                    f"tied[{g}]",
                    f"expected entries of trainable parameters, got frozen {e.param!r}",
                )
            if e.sign * params[e.param][e.index] != hv:
                raise where.fail(
                    f"tied[{g}]",
                    f"expected tied entries to have equal values, got {e.param}{list(e.index)} = "
                    f"{format_exact(params[e.param][e.index])}",
                )
        ties.append(entries)
    out_units = int(np.prod(b.shape))
    B = X.shape[0]
    objective, kind = _objective(doc.get("objective"), B, out_units, where)
    net = Network(
        tuple(nodes),
        prev,
        QArray.from_fractions(batch_inputs),
        {k: QArray.from_fractions(v) for k, v in params.items()},
        fmt,
        tuple(order),
        tuple(n for n in order if n in trainable),
        tuple(ties),
        objective,
        kind,
        source,
    )
    check_well_formed(net)
    return net


def _objective(spec: Any, B: int, n: int, where: Where) -> tuple[QArray | None, str]:
    if spec is None:
        return None, "vector"
    if not isinstance(spec, dict) or "type" not in spec:
        raise where.fail("objective", "expected an object with a 'type' (sum or weighted_sum)")
    unknown_keys(spec, ("type", "weights"), where, "objective")
    if spec["type"] == "sum":
        row = np.empty((1, B * n), dtype=object)
        row[...] = Fraction(1)
        return QArray.from_fractions(row), "sum"
    if spec["type"] == "weighted_sum":
        w = exact_array(spec.get("weights"), where, "objective.weights", ndim=2)
        if w.shape != (B, n):
            raise where.fail(
                "objective.weights", f"expected shape ({B}, {n}) (B x output units), got {w.shape}"
            )
        return QArray.from_fractions(w.reshape(1, B * n)), "weighted_sum"
    raise where.fail(
        "objective.type", f"expected 'sum' or 'weighted_sum', got {short(spec['type'])}"
    )


__all__ = ["load", "from_dict", "load_params_npz", "check_members", "FORMAT_TAG"]
