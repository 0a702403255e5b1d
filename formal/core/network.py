"""The IR: a small typed DAG of tensor ops, parameters, inputs and objective.

A :class:`Network` is a tuple of :class:`Node` in topological order.  Every
value has a leading batch axis ``B`` and a per-sample ``shape`` recorded on
its node; parameters (``op == "param"``) have no batch axis.  Parameters are
named like a torch ``state_dict`` (``"0.weight"``, ``"0.bias"``).

The function under study is ``f(w)``: the output node flattened over
``(B, *shape)`` and then mapped by the objective matrix (identity for the
vector output, a row of ones for ``sum``, a weight row for ``weighted_sum``).
``w`` is the vector of *parameter groups* (see :class:`Parameterization`):
trainable entries, with tied entries merged (a tie may negate) and frozen
tensors excluded.

Ops (``Node.op``), their inputs and attributes:

=========  =====================  ==========================================
op         inputs                 meaning
=========  =====================  ==========================================
input      -                      the minibatch X (exact rationals)
param      -                      a parameter tensor (``attrs['name']``)
const      -                      a constant tensor (``attrs['value']``)
linear     x, W                   ``x @ W.T``  (W of shape (out, in))
add        a, b                   ``a + b`` with numpy broadcasting
sub        a, b                   ``a - b``
neg        x                      ``-x``
scale      x                      ``x * attrs['value']`` (a constant array)
act        x                      pointwise ``attrs['activation']``
reshape    x                      per-sample reshape to ``shape``
=========  =====================  ==========================================

Further ops (convolutions, pools) register rules in :mod:`formal.ops`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.numbers import Format
from formal.core.qarray import FlintMatrix, QArray
from formal.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Node:
    """One op of the graph; ``shape`` is the per-sample shape of its value."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        """The value of attribute ``key`` (``default`` when absent)."""
        for k, v in self.attrs:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class Tie:
    """Entry ``(param, index)`` equals ``sign`` times its group's representative."""

    param: str
    index: tuple[int, ...]
    sign: int


@dataclass(slots=True)
class Parameterization:
    """Map between the parameter vector ``w`` (groups) and tensor entries (slots).

    ``groups[name]`` is an int array of the tensor's shape giving each entry's
    group (column of ``w``), and ``signs[name]`` its sign (+1/-1).  Frozen
    tensors have no entry.  ``label(g)`` names group g by its first entry,
    e.g. ``"0.weight[1,0]"``.
    """

    groups: dict[str, np.ndarray]
    signs: dict[str, np.ndarray]
    blocks: list[tuple[str, tuple[int, ...], int]]  # (tensor, shape, first global slot)
    reps: np.ndarray  # global slot of each group's representative entry
    extra: dict[int, list[tuple[str, int, int]]] | None = (
        None  # tied entries beyond the representative
    )
    _labels: list[str] | None = None

    @property
    def size(self) -> int:
        """Number of parameter groups."""
        return int(self.reps.size)

    @property
    def slots(self) -> list[tuple[str, int]]:
        """The representative entry of every group, in group order."""
        return [self.slot(g) for g in range(self.size)]

    def slot(self, group: int) -> tuple[str, int]:
        """The representative entry ``(tensor, flat index)`` of a group."""
        glob = int(self.reps[group])
        for name, _shape, start in reversed(self.blocks):
            if glob >= start:
                return name, glob - start
        raise IndexError(group)

    def label(self, group: int) -> str:
        """Readable label of a group: its representative entry, e.g. ``0.weight[1,0]``."""
        name, flat = self.slot(group)
        return _label(name, self.groups[name].shape, flat)

    @property
    def labels(self) -> list[str]:
        """Labels of every group, in group order (cached)."""
        if self._labels is None:
            self._labels = [self.label(g) for g in range(self.size)]
        return self._labels

    def entries(self, group: int) -> list[tuple[str, int, int]]:
        """Tensor entries ``(param, flat index, sign)`` of one group (its representative first)."""
        extra = self._extra()
        name, flat = self.slot(group)
        return [(name, flat, 1)] + extra.get(group, [])

    def _extra(self) -> dict[int, list[tuple[str, int, int]]]:
        if self.extra is None:
            extra: dict[int, list[tuple[str, int, int]]] = {}
            for name, _shape, start in self.blocks:
                g = self.groups[name].reshape(-1)
                s = self.signs[name].reshape(-1)
                moved = np.nonzero(self.reps[g] != start + np.arange(g.size))[0]
                for flat in moved:
                    extra.setdefault(int(g[flat]), []).append((name, int(flat), int(s[flat])))
            self.extra = extra
        return self.extra

    def tangents(self, directions: list[dict[int, Fraction]]) -> dict[str, QArray]:
        """Entry tangents (R, *shape) of the tensors that sparse directions touch."""
        rows = len(directions)
        touched: dict[str, list[tuple[int, int, Fraction]]] = {}
        for r, d in enumerate(directions):
            for g, v in d.items():
                if v:
                    for name, flat, sign in self.entries(g):
                        touched.setdefault(name, []).append((r, flat, sign * Fraction(v)))
        out: dict[str, QArray] = {}
        for name, items in touched.items():
            shape = self.groups[name].shape
            den = 1
            for *_, v in items:
                den = math.lcm(den, v.denominator)
            num = np.zeros((rows, int(np.prod(shape, dtype=np.int64))), dtype=object)
            num[...] = 0
            for r, flat, v in items:
                num[r, flat] = num[r, flat] + v.numerator * (den // v.denominator)
            out[name] = QArray(num.reshape((rows,) + shape), den)
        return out

    def collect(
        self,
        adjoints: Mapping[str, QArray | None],
        rows: int,
        columns: Sequence[int] | None = None,
    ) -> QArray:
        """Sum entry adjoints (R, *shape) into group adjoints (R, W).

        With ``columns`` (group ids covering every group of the given tensors),
        the result is (R, len(columns)): those groups only, in that order.
        """
        pos = None
        if columns is not None:  # group id -> its position among the columns
            cols = np.asarray(columns, dtype=np.int64).reshape(-1)
            pos = np.full(int(cols.max()) + 1 if cols.size else 0, -1, dtype=np.int64)
            pos[cols] = np.arange(cols.size, dtype=np.int64)
        out = np.zeros((rows, self.size if columns is None else len(columns)), dtype=object)
        out[...] = 0
        den = 1
        for name, adj in adjoints.items():
            if adj is not None and name in self.groups:
                den = math.lcm(den, adj.den)
        for name, adj in adjoints.items():
            if adj is None or name not in self.groups:
                continue
            g = self.groups[name].ravel()
            if pos is not None:
                g = pos[g]
            s = self.signs[name].ravel()
            vals = adj.num.reshape(rows, -1) * (den // adj.den) * s[None, :]
            if g.size < 2 or bool((np.diff(g) > 0).all()) or len(np.unique(g)) == g.size:
                out[:, g] = out[:, g] + vals
            else:  # ties inside one tensor: accumulate entry by entry
                for j in range(g.size):
                    out[:, g[j]] = out[:, g[j]] + vals[:, j]
        return QArray(out, den)


@dataclass(frozen=True, slots=True)
class Network:
    """A network with its exact parameters, input minibatch and objective."""

    nodes: tuple[Node, ...]
    output: str
    inputs: QArray  # (B, *input_shape)
    params: Mapping[str, QArray]
    numbers: Format
    param_order: tuple[str, ...]
    trainable: tuple[str, ...]
    ties: tuple[tuple[Tie, ...], ...] = ()
    objective: QArray | None = None  # (n_obj, B * n_out); None = identity
    objective_kind: str = "vector"
    source: str = "<memory>"
    cache: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # -- structure ------------------------------------------------------------
    @property
    def batch(self) -> int:
        """Minibatch size B."""
        return int(self.inputs.num.shape[0])

    def node(self, name: str) -> Node:
        """The node named ``name``."""
        index = self.cache.get("index")
        if index is None:
            index = {n.name: n for n in self.nodes}
            self.cache["index"] = index
        return index[name]

    def consumers(self, name: str) -> list[Node]:
        """The nodes that read node ``name``."""
        table = self.cache.get("consumers")
        if table is None:
            table = {n.name: [] for n in self.nodes}
            for n in self.nodes:
                for i in n.inputs:
                    table[i].append(n)
            self.cache["consumers"] = table
        return table[name]

    def out_size(self) -> int:
        """Number of entries of the output over the minibatch (B * output size)."""
        return self.batch * int(np.prod(self.node(self.output).shape, dtype=np.int64))

    def objective_matrix(self) -> QArray:
        """The objective as a (n_obj, B * n_out) matrix (identity by default)."""
        if self.objective is not None:
            return self.objective
        n = self.out_size()
        eye = np.zeros((n, n), dtype=object)
        eye[...] = 0
        for i in range(n):
            eye[i, i] = 1
        return QArray(eye, 1)

    def output_labels(self) -> list[str]:
        """One label per objective row."""
        if self.objective_kind != "vector":
            return ["objective"]
        shape = (self.batch,) + self.node(self.output).shape
        return ["out[" + ",".join(map(str, idx)) + "]" for idx in np.ndindex(*shape)]

    def flint_param(self, name: str) -> FlintMatrix:
        """Parameter ``name`` as a flint matrix (2-D view, cached) for fast products."""
        key = "flint:" + name
        mat = self.cache.get(key)
        if mat is None:
            q = self.params[name]
            arr, ints = q.num, q.native()
            if arr.ndim != 2:
                arr = arr.reshape(arr.shape[0], -1)
                ints = None if ints is None else ints.reshape(arr.shape)
            mat = FlintMatrix(arr, ints)
            self.cache[key] = mat
        return mat

    def parameterization(self) -> Parameterization:
        """The parameter groups of the trainable entries (cached)."""
        p = self.cache.get("parameterization")
        if p is None:
            p = build_parameterization(self)
            self.cache["parameterization"] = p
        return p

    def activation_nodes(self) -> Iterator[Node]:
        """The ``act`` nodes, in graph order."""
        return (n for n in self.nodes if n.op == "act")

    def param_count(self) -> int:
        """Number of parameter groups W (the dimension of the parameter space)."""
        return self.parameterization().size


def build_parameterization(net: Network) -> Parameterization:
    """Groups: one per trainable entry, merged along ties, numbered by first appearance."""
    blocks: list[tuple[str, tuple[int, ...], int]] = []
    start: dict[str, int] = {}
    total = 0
    for name in net.param_order:
        if name in net.trainable:
            shape = tuple(net.params[name].shape)
            blocks.append((name, shape, total))
            start[name] = total
            total += int(np.prod(shape, dtype=np.int64))
    root = np.arange(total, dtype=np.int64)
    sign = np.ones(total, dtype=np.int64)
    parent: dict[int, tuple[int, int]] = {}  # union-find with signs over tied slots

    def find(x: int) -> tuple[int, int]:
        s = 1
        while x in parent:
            p, ps = parent[x]
            s *= ps
            x = p
        return x, s

    for group in net.ties:
        head = group[0]
        h = start[head.param] + int(np.ravel_multi_index(head.index, net.params[head.param].shape))
        hr, hs = find(h)
        hs *= head.sign
        for t in group[1:]:
            x = start[t.param] + int(np.ravel_multi_index(t.index, net.params[t.param].shape))
            xr, xs = find(x)
            xs *= t.sign
            if xr != hr:  # value(x) = xs*value(xr) and value(x) = hs*value(hr) -> xr = xs*hs*hr
                parent[xr] = (hr, xs * hs)
            elif xs != hs:  # already in one group with the opposite sign: the entry is forced to 0
                where = _label(t.param, net.params[t.param].shape, x - start[t.param])
                raise InvalidArgument(
                    f"expected consistent tie signs, got {where} "
                    "tied to its own negative (it could only be the constant 0)"
                )
    for x in list(parent):
        r, s_ = find(x)
        root[x], sign[x] = r, s_
    if parent:
        uniq, first, inverse = np.unique(root, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        group_of = rank[inverse]
        reps = first[order]
    else:  # no ties: every entry is its own group, numbered in order (what unique gives)
        group_of, reps = root, root
    if parent:  # representatives have sign +1 by construction (a root is its own group head)
        sign = sign * sign[reps][group_of]
    groups = {
        name: group_of[s0 : s0 + int(np.prod(shape, dtype=np.int64))].reshape(shape)
        for name, shape, s0 in blocks
    }
    signs = {
        name: sign[s0 : s0 + int(np.prod(shape, dtype=np.int64))].reshape(shape)
        for name, shape, s0 in blocks
    }
    return Parameterization(groups, signs, blocks, reps, extra=None if parent else {})


def _label(name: str, shape: tuple[int, ...], flat: int) -> str:
    if not shape:
        return name
    idx = np.unravel_index(flat, shape)
    return f"{name}[{','.join(str(int(i)) for i in idx)}]"


# ---------------------------------------------------------------------------
# Bias structure (hypothesis H of docs/theory.md section 3), derived from the graph.


@dataclass(frozen=True, slots=True)
class BiasStructure:
    """Result of the graph analysis: does hypothesis H hold, and why not."""

    holds: bool
    reason: str
    bias_of: Mapping[str, str] = field(default_factory=dict)  # act node -> bias param

    def describe(self) -> str:
        """One sentence: whether hypothesis H holds, and why."""
        return "H holds: " + self.reason if self.holds else "H fails: " + self.reason


def bias_structure(net: Network) -> BiasStructure:
    """Check hypothesis H: B = 1 and every kinked unit has its own trainable bias.

    For each activation node with kinks, its input must be ``add(x, b)`` where
    ``b`` is a trainable parameter of exactly the unit shape, used nowhere else,
    with untied entries, and the ``add`` feeds only this activation.  Max-pool
    (tie) nodes break H.
    """
    cached = net.cache.get("bias_structure")
    if cached is not None:
        return cached
    result = _bias_structure(net)
    net.cache["bias_structure"] = result
    return result


def _bias_structure(net: Network) -> BiasStructure:
    if net.batch != 1:
        return BiasStructure(False, f"the minibatch has B = {net.batch} > 1 inputs")
    tied = {t.param for group in net.ties for t in group}
    bias_of: dict[str, str] = {}
    for node in net.nodes:
        if node.op in ("maxpool2d", "max"):
            return BiasStructure(
                False,
                f"node {node.name!r} is a max ({node.op}); ties are kinks no bias moves alone",
            )
        if node.op != "act" or not node.attr("activation").kinks:
            continue
        pre = net.node(node.inputs[0])
        where = f"activation node {node.name!r}"
        if pre.op != "add":
            return BiasStructure(False, f"{where}: its pre-activation has no bias added")
        consumers = net.consumers(pre.name)
        if len(consumers) != 1:
            return BiasStructure(False, f"{where}: its pre-activation is used elsewhere too")
        bias = None
        for i in pre.inputs:
            cand = net.node(i)
            if cand.op == "param" and tuple(net.params[cand.attr("name")].shape) == tuple(
                node.shape
            ):
                bias = cand
        if bias is None:
            return BiasStructure(
                False, f"{where}: no per-unit bias parameter (missing, or shared by broadcasting)"
            )
        name = bias.attr("name")
        if name not in net.trainable:
            return BiasStructure(False, f"{where}: bias {name} is frozen")
        if name in tied:
            return BiasStructure(False, f"{where}: bias {name} has tied entries")
        users = [n for n in net.nodes if n.op == "param" and n.attr("name") == name]
        if len(users) != 1 or len(net.consumers(users[0].name)) != 1:
            return BiasStructure(False, f"{where}: bias {name} is used elsewhere too")
        bias_of[node.name] = name
    return BiasStructure(True, "B = 1 and every kinked unit has its own trainable bias", bias_of)


def check_well_formed(net: Network) -> None:
    """Raise InvalidArgument naming the first malformed node."""
    seen: set[str] = set()
    if not net.nodes:
        raise InvalidArgument("expected a network with at least one layer, got an empty network")
    for node in net.nodes:
        for i in node.inputs:
            if i not in seen:
                raise InvalidArgument(
                    f"node {node.name!r} ({node.op}) reads {i!r}, which is not defined before it"
                )
        if node.name in seen:
            raise InvalidArgument(f"node name {node.name!r} is defined twice")
        if node.op == "param" and node.attr("name") not in net.params:
            raise InvalidArgument(
                f"node {node.name!r} reads parameter {node.attr('name')!r}, which has no value"
            )
        seen.add(node.name)
    if net.output not in seen:
        raise InvalidArgument(f"output {net.output!r} is not a node")
    for name in net.trainable:
        if name not in net.params:
            raise InvalidArgument(f"trainable names parameter {name!r}, which does not exist")


def fraction_array(values: Any) -> np.ndarray:
    """Object array of Fractions (helper for builders and tests)."""
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(*arr.shape):
        out[idx] = Fraction(arr[idx])  # type: ignore[call-overload]
    return out


__all__ = [
    "Node",
    "Tie",
    "Network",
    "Parameterization",
    "BiasStructure",
    "bias_structure",
    "check_well_formed",
]
