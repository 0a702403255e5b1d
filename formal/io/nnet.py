"""The NNet text format (Stanford / ACAS Xu networks) into the IR.

Layout: ``//`` comment lines, then ``numLayers, inputSize, outputSize,
maxLayerSize``, the ``numLayers + 1`` layer sizes, a legacy flag, the input
minimums, maximums, means (inputs then output) and ranges, then for each
layer its weight rows (one line per unit) followed by its biases (one line
per unit).  Hidden layers use ReLU, the last layer is linear.

Parameters are named like formal-net/1 (``"0.weight"``, ``"0.bias"``, ...).
Their text is read as every NNet reader does, as the nearest binary64 number
(C ``atof``), so M is binary64 by default; ``numbers=`` picks another format
and then every parameter must be exactly in it (an error names the first one
that is not).  The network maps the *normalized* input (VNN-COMP's ACAS Xu
specifications are written in normalized coordinates); ``normalize=True``
applies the file's input normalization ``(clip(x, min, max) - mean) / range``
to the (constant) input and its output scaling ``y * range + mean``.

Examples
--------
>>> text = ("2,1,1,2,\\n1,2,1,\\n0,\\n-9,\\n9,\\n0,0,\\n1,1,\\n"
...         "1.0,\\n-1.0,\\n0.5,\\n0.0,\\n2.0,-1.0,\\n0.25,\\n")
>>> net = parse(text, input=[[Fraction(1)]])
>>> [n.op for n in net.nodes if n.op != "param"]
['input', 'linear', 'add', 'act', 'linear', 'add']
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from formal.core.activations import get_activation
from formal.core.network import Network, Node, check_well_formed
from formal.core.numbers import parse_format
from formal.core.qarray import QArray
from formal.errors import InputFileError
from formal.io.formalnet_build import Where, check_members
from formal.io.limits import MAX_NUMBER_DIGITS, MAX_TENSOR_ENTRIES, MAX_UNITS, read_text
from formal.io.onnx import input_values


class _Reader:
    def __init__(self, text: str, source: str):
        self.source = source
        self.lines = []
        for k, line in enumerate(text.splitlines(), start=1):
            s = line.strip()
            if s and not s.startswith("//"):
                self.lines.append((k, s))
        self.pos = 0

    def row(self, what: str, count: int | None = None) -> list[str]:
        if self.pos >= len(self.lines):
            raise InputFileError(f"{self.source}: unexpected end of file, expected {what}")
        k, s = self.lines[self.pos]
        self.pos += 1
        vals = [v.strip() for v in s.split(",") if v.strip()]
        if count is not None and len(vals) < count:
            raise InputFileError(
                f"{self.source}: line {k}: expected {count} values for {what}, got {len(vals)}"
            )
        self.line = k
        return vals[:count] if count is not None else vals

    def ints(self, what: str, count: int) -> list[int]:
        vals = self.row(what, count)
        try:
            return [int(v) for v in vals]
        except ValueError:
            raise InputFileError(
                f"{self.source}: line {self.line}: expected integers for {what}, got {vals}"
            ) from None

    def floats(self, what: str, count: int) -> list[Fraction]:
        vals = self.row(what, count)
        out = []
        for v in vals:
            if len(v) > MAX_NUMBER_DIGITS:
                raise InputFileError(
                    f"{self.source}: line {self.line}: expected a number of at most "
                    f"{MAX_NUMBER_DIGITS} digits for {what}, got one of {len(v)} characters"
                )
            try:
                f = float(v)
            except ValueError:
                raise InputFileError(
                    f"{self.source}: line {self.line}: expected a number for {what}, got {v!r}"
                ) from None
            if f != f or f in (float("inf"), float("-inf")):
                raise InputFileError(
                    f"{self.source}: line {self.line}: expected a finite number for {what}, got "
                    f"{v!r}"
                )
            out.append(Fraction(f))
        return out


def parse(
    text: str,
    *,
    source: str = "<nnet>",
    input: Any = None,
    spec: Any = None,
    numbers: str | None = None,
    normalize: bool = False,
) -> Network:
    """Build a Network from NNet text (see the module docstring)."""
    r = _Reader(text, source)
    n_layers, n_in, n_out, _ = r.ints("numLayers, inputSize, outputSize, maxLayerSize", 4)
    if n_layers < 1:
        raise InputFileError(f"{source}: expected at least one layer, got numLayers={n_layers}")
    if n_layers > MAX_UNITS:
        raise InputFileError(
            f"{source}: expected at most {MAX_UNITS} layers, got numLayers={n_layers}"
        )
    sizes = r.ints("the layer sizes", n_layers + 1)
    if any(not 0 < z <= MAX_UNITS for z in sizes):
        raise InputFileError(
            f"{source}: expected layer sizes from 1 to {MAX_UNITS}, got {sizes[:16]}"
        )
    for i in range(n_layers):
        if sizes[i] * sizes[i + 1] > MAX_TENSOR_ENTRIES:
            raise InputFileError(
                f"{source}: expected at most {MAX_TENSOR_ENTRIES} weights per layer, got "
                f"{sizes[i + 1]} x {sizes[i]} in layer {i}"
            )
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise InputFileError(
            f"{source}: layer sizes {sizes} do not match inputSize={n_in}, outputSize={n_out}"
        )
    r.row("the legacy symmetric flag")
    mins = r.floats("the input minimums", n_in)
    maxs = r.floats("the input maximums", n_in)
    means = r.floats("the means", n_in + 1)
    ranges = r.floats("the ranges", n_in + 1)
    params: dict[str, np.ndarray] = {}
    order: list[str] = []
    for i in range(n_layers):
        w = np.empty((sizes[i + 1], sizes[i]), dtype=object)
        for u in range(sizes[i + 1]):
            w[u] = r.floats(f"row {u} of the weights of layer {i}", sizes[i])
        b = np.empty(sizes[i + 1], dtype=object)
        for u in range(sizes[i + 1]):
            b[u] = r.floats(f"bias {u} of layer {i}", 1)[0]
        params[f"{i}.weight"], params[f"{i}.bias"] = w, b
        order += [f"{i}.weight", f"{i}.bias"]
    fmt = parse_format(numbers or "binary64")
    if numbers is not None:
        for name in order:
            check_members(name, params[name], fmt, Where(source))
    X = input_values(source, (n_in,), None, input, spec)
    if normalize:
        for j in range(n_in):
            for bidx in range(X.shape[0]):
                v = min(max(Fraction(X[bidx, j]), mins[j]), maxs[j])
                X[bidx, j] = (v - means[j]) / ranges[j]
    nodes = [Node("x", "input", (), (n_in,))]
    prev = "x"
    relu = get_activation("relu")
    for i in range(n_layers):
        units = sizes[i + 1]
        for kind in ("weight", "bias"):
            name = f"{i}.{kind}"
            nodes.append(Node(f"p:{name}", "param", (), params[name].shape, (("name", name),)))
        nodes.append(Node(f"{i}.linear", "linear", (prev, f"p:{i}.weight"), (units,)))
        nodes.append(Node(f"{i}.add", "add", (f"{i}.linear", f"p:{i}.bias"), (units,)))
        prev = f"{i}.add"
        if i < n_layers - 1:
            nodes.append(Node(f"{i}.act", "act", (prev,), (units,), (("activation", relu),)))
            prev = f"{i}.act"
    if normalize and (ranges[-1] != 1 or means[-1] != 0):
        nodes.append(
            Node(
                "out.scale",
                "scale",
                (prev,),
                (n_out,),
                (("value", QArray.from_fractions([ranges[-1]])),),
            )
        )
        mean = np.full((n_out,), means[-1], dtype=object)
        nodes.append(
            Node("out.mean", "const", (), (n_out,), (("value", QArray.from_fractions(mean)),))
        )
        nodes.append(Node("out", "add", ("out.scale", "out.mean"), (n_out,)))
        prev = "out"
    net = Network(
        tuple(nodes),
        prev,
        QArray.from_fractions(X),
        {k: QArray.from_fractions(v) for k, v in params.items()},
        fmt,
        tuple(order),
        tuple(order),
        (),
        None,
        "vector",
        source,
    )
    check_well_formed(net)
    return net


def load(
    path: str | Path,
    *,
    input: Any = None,
    spec: Any = None,
    numbers: str | None = None,
    normalize: bool = False,
) -> Network:
    """Read a .nnet file (see the module docstring)."""
    p = Path(path)
    text = read_text(p, "an NNet file")
    return parse(text, source=str(p), input=input, spec=spec, numbers=numbers, normalize=normalize)


__all__ = ["load", "parse"]
