"""Network -> formal-net/1 JSON: the exporter behind ``formal check MODEL.onnx --certify``.

:func:`to_formalnet` reads the IR graph as a chain of formal-net/1 layers
(:mod:`formal.io.formalnet_layers`): ``linear``/``matmul`` [+ bias] -> ``dense``;
``conv2d`` [+ per-channel bias] -> ``conv2d``; ``maxpool2d``/``avgpool2d``; a
per-sample ``reshape`` to 1-D -> ``flatten``; the sum of the current value and an
earlier layer's output (or the input) -> ``add``; a layer that reads an earlier
layer's output (a branch) gets ``"input": j``; an ``act`` node right after a
layer becomes that layer's ``activation`` (a per-layer proxy override is written
as its exact values, one per kink, so every override survives).  Parameters are
renamed ``"{layer}.weight"``/``"{layer}.bias"`` (a ``matmul`` weight is written
transposed); frozen tensors and ties are carried over; every number is written as
exact text (``format_exact``), so loading the result gives the same exact function.

Anything else (a node reading a value inside another layer, an op formal-net/1
has no layer for, a parameter used twice, asymmetric padding, a second activation)
raises :class:`formal.errors.UnsupportedOp` naming the node and its op.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.network import Network, Node
from formal.core.numbers import format_exact
from formal.core.qarray import QArray
from formal.errors import UnsupportedOp

__all__ = ["to_formalnet"]


def _text(arr: Any) -> Any:
    if isinstance(arr, np.ndarray) and arr.ndim > 0:
        return [_text(a) for a in arr]
    return format_exact(Fraction(arr.item() if isinstance(arr, np.ndarray) else arr))


def _fractions(q: QArray) -> np.ndarray:
    return np.asarray(q.to_fractions(), dtype=object)


class _Writer:
    def __init__(self, net: Network):
        self.net = net
        self.layers: list[dict[str, Any]] = []
        self.params: dict[str, Any] = {}
        self.rename: dict[str, tuple[str, bool]] = {}  # old param -> (new name, transposed)
        self.done: dict[str, int | str] = {net.nodes[0].name: "input"}  # node -> layer output
        self.cur = net.nodes[0].name
        self.branch: int | str | None = None  # the next layer reads this earlier output
        self.body = [  # views of parameters (a conv bias as (C, 1, 1)) go with their add
            n
            for n in net.nodes
            if n.op not in ("input", "param")
            and not (n.op == "view" and net.node(n.inputs[0]).op == "param")
        ]
        self.i = 0

    # -- helpers -------------------------------------------------------------------------
    def fail(self, n: Node, why: str) -> UnsupportedOp:
        return UnsupportedOp(f"cannot export to formal-net/1: node {n.name!r} (op {n.op!r}): {why}")

    def peek(self) -> Node | None:
        return self.body[self.i] if self.i < len(self.body) else None

    def param_of(self, name: str) -> str | None:
        n = self.net.node(name)
        return n.attr("name") if n.op == "param" else None

    def only_consumer(self, name: str, nxt: Node) -> bool:
        return [c.name for c in self.net.consumers(name)] == [nxt.name]

    def take_param(self, n: Node, old: str, new: str, transpose: bool = False) -> None:
        if old in self.rename:
            raise self.fail(n, f"parameter {old!r} is used by two layers")
        arr = _fractions(self.net.params[old])
        self.params[new] = _text(arr.T if transpose else arr)
        self.rename[old] = (new, transpose)

    def finish(self, n_last: Node, layer: dict[str, Any]) -> None:
        """Attach a following activation, then record the layer's output."""
        idx = len(self.layers)
        nxt = self.peek()
        last = n_last.name
        if nxt is not None and nxt.op == "act" and nxt.inputs == (last,):
            if not self.only_consumer(last, nxt):
                raise self.fail(n_last, "its value before the activation is read elsewhere")
            layer["activation"] = self.activation(nxt)
            last = nxt.name
            self.i += 1
        if self.branch is not None:
            layer = {"type": layer.pop("type"), "input": self.branch, **layer}
            self.branch = None
        self.layers.append(layer)
        self.done[last] = idx
        self.cur = last

    def activation(self, n: Node) -> Any:
        act = n.attr("activation")
        spec: dict[str, Any] = {"name": act.name}
        for k, v in act.params:
            spec[k] = format_exact(Fraction(v))
        proxy = n.attr("proxy")
        if proxy is not None:
            if isinstance(proxy, tuple):  # one rule per unit
                spec["proxy"] = [[format_exact(p(act, c)) for c in act.kinks] for p in proxy]
            else:
                spec["proxy"] = [format_exact(proxy(act, c)) for c in act.kinks]
        if len(spec) == 1 and act.name != "identity":
            return act.name
        return spec if len(spec) > 1 else "identity"

    # -- the chain -----------------------------------------------------------------------
    def run(self) -> None:
        while (n := self.peek()) is not None:
            self.i += 1
            idx = len(self.layers)
            if n.op == "add" and not any(self.param_of(x) for x in n.inputs):
                self.residual(n, idx)
                continue
            branch: int | str | None = None
            if not n.inputs or n.inputs[0] != self.cur:
                if n.inputs and n.inputs[0] in self.done and n.op != "act":
                    branch = self.done[n.inputs[0]]  # a branch: "input": j
                    self.cur = n.inputs[0]
                else:
                    raise self.fail(
                        n,
                        f"it reads {n.inputs[0] if n.inputs else 'nothing'!r}, which is not "
                        "the output of a layer",
                    )
            self.branch = branch
            if n.op in ("linear", "matmul"):
                self.dense(n, idx)
            elif n.op == "conv2d":
                self.conv(n, idx)
            elif n.op in ("maxpool2d", "avgpool2d"):
                self.pool(n)
            elif n.op == "reshape" and len(n.shape) == 1:
                self.finish(n, {"type": "flatten"})
            elif n.op == "act":
                raise self.fail(n, "an activation that does not follow a layer of its own")
            else:
                raise self.fail(n, "formal-net/1 has no layer for this op")
        if self.cur != self.net.output:
            raise UnsupportedOp(
                f"cannot export to formal-net/1: the output {self.net.output!r} is not the end "
                "of the layer chain"
            )

    def bias_add(self, n: Node, shape: tuple[int, ...]) -> tuple[Node, str] | None:
        """The ``add`` of a bias parameter (of ``shape``, maybe through a view) right after n."""
        nxt = self.peek()
        if nxt is None or nxt.op != "add" or n.name not in nxt.inputs:
            return None
        other = nxt.inputs[1] if nxt.inputs[0] == n.name else nxt.inputs[0]
        on = self.net.node(other)
        view = on.op == "view"
        if view:
            on = self.net.node(on.inputs[0])
        if on.op != "param" or tuple(self.net.params[on.attr("name")].shape) != shape:
            return None
        if not self.only_consumer(n.name, nxt) or (view and not self.only_consumer(other, nxt)):
            raise self.fail(n, "its value before the bias is read elsewhere")
        self.i += 1
        return nxt, on.attr("name")

    def dense(self, n: Node, idx: int) -> None:
        w = self.param_of(n.inputs[1])
        transpose = n.op == "matmul"
        if (
            w is None
            or len(self.net.params[w].shape) != 2
            or len(self.net.node(self.cur).shape) != 1
        ):
            raise self.fail(n, "expected a 1-D input times a weight parameter")
        self.take_param(n, w, f"{idx}.weight", transpose)
        units = n.shape[0]
        layer: dict[str, Any] = {"type": "dense", "units": units, "bias": False}
        last = n
        found = self.bias_add(n, (units,))
        if found is not None:
            last, b = found
            self.take_param(last, b, f"{idx}.bias")
            layer["bias"] = True
        self.finish(last, layer)

    def conv(self, n: Node, idx: int) -> None:
        w = self.param_of(n.inputs[1])
        if w is None:
            raise self.fail(n, "expected a weight parameter")
        CO, _, kh, kw = self.net.params[w].shape
        pads = tuple(n.attr("pads", (0, 0, 0, 0)))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.fail(n, f"asymmetric padding {list(pads)}")
        self.take_param(n, w, f"{idx}.weight")
        layer: dict[str, Any] = {
            "type": "conv2d",
            "out_channels": int(CO),
            "kernel_size": [int(kh), int(kw)],
            "stride": list(n.attr("strides", (1, 1))),
            "padding": [pads[0], pads[1]],
            "dilation": list(n.attr("dilations", (1, 1))),
            "groups": int(n.attr("groups", 1)),
            "bias": False,
        }
        last = n
        found = self.bias_add(n, (int(CO),))
        if found is not None:
            last, b = found
            self.take_param(last, b, f"{idx}.bias")
            layer["bias"] = True
        self.finish(last, layer)

    def pool(self, n: Node) -> None:
        pads = tuple(n.attr("pads", (0, 0, 0, 0)))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.fail(n, f"asymmetric padding {list(pads)}")
        layer: dict[str, Any] = {
            "type": n.op,
            "kernel_size": list(n.attr("kernel")),
            "stride": list(n.attr("strides")),
            "padding": [pads[0], pads[1]],
            "ceil_mode": bool(n.attr("ceil_mode", False)),
        }
        if n.op == "maxpool2d":
            layer["dilation"] = list(n.attr("dilations", (1, 1)))
            tie = n.attr("tie")
            if tie is not None:
                layer["tie"] = tie if isinstance(tie, str) else list(tie)
        else:
            if tuple(n.attr("dilations", (1, 1))) != (1, 1):
                raise self.fail(n, "a dilated average pool")
            layer["count_include_pad"] = bool(n.attr("count_include_pad", True))
        self.finish(n, layer)

    def residual(self, n: Node, idx: int) -> None:
        a, b = n.inputs
        if a == self.cur and b in self.done:
            other = b
        elif b == self.cur and a in self.done:
            other = a
        elif a in self.done and b in self.done:  # neither is the current value: a branch
            self.branch, self.cur, other = self.done[a], a, b
        else:
            raise self.fail(n, "a sum that is not the current value plus an earlier layer's output")
        if self.net.node(other).shape != n.shape:
            raise self.fail(n, "a broadcasting sum")
        self.finish(n, {"type": "add", "from": self.done[other]})

    # -- the document --------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        net = self.net
        unused = [p for p in net.param_order if p not in self.rename]
        if unused:
            raise UnsupportedOp(
                f"cannot export to formal-net/1: parameter {unused[0]!r} is not a layer's "
                "weight or bias"
            )
        X = _fractions(net.inputs)
        doc: dict[str, Any] = {
            "format": "formal-net/1",
            "numbers": net.numbers.name,
            "inputs": _text(X.reshape(X.shape[0], -1)),
        }
        in_shape = tuple(net.nodes[0].shape)
        if len(in_shape) != 1:
            doc["input_shape"] = list(in_shape)
        doc["layers"] = self.layers
        doc["params"] = self.params
        order = [self.rename[p][0] for p in net.param_order]
        trainable = [self.rename[p][0] for p in net.trainable]
        if sorted(trainable) != sorted(order):
            doc["trainable"] = trainable
        if net.ties:
            doc["tied"] = [[self._entry(t) for t in group] for group in net.ties]
        if net.objective_kind == "sum":
            doc["objective"] = {"type": "sum"}
        elif net.objective_kind == "weighted_sum":
            assert net.objective is not None
            w = _fractions(net.objective).reshape(net.batch, -1)
            doc["objective"] = {"type": "weighted_sum", "weights": _text(w)}
        elif net.objective is not None:
            raise UnsupportedOp(f"cannot export to formal-net/1: objective {net.objective_kind!r}")
        return doc

    def _entry(self, t: Any) -> str:
        new, transposed = self.rename[t.param]
        idx = tuple(reversed(t.index)) if transposed else tuple(t.index)
        sign = "-" if t.sign < 0 else ""
        return f"{sign}{new}[{','.join(str(int(i)) for i in idx)}]"


def to_formalnet(net: Network, *, description: str | None = None) -> dict[str, Any]:
    """The formal-net/1 document of ``net`` (raises UnsupportedOp naming what it cannot express).

    Loading it (:func:`formal.io.formalnet.from_dict`) gives a network with the same exact
    forward values, kinks and verdicts; parameters are renamed ``"{layer}.weight"`` /
    ``"{layer}.bias"`` in layer order.
    """
    w = _Writer(net)
    w.run()
    doc = w.document()
    if description is not None:
        doc = {"format": doc.pop("format"), "description": description, **doc}
    return doc
