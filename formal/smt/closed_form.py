"""Closed-form answers to bias-linear questions: exact rational solve + membership in M.

A pre-activation entry ``y = y[b, i]`` of a kinked activation is affine in
its unit's own bias, ``y = alpha + b_i``, and in each entry of its own weight
row, ``y = alpha + x[b, k] * W[i, k]`` (when the tensor feeds nothing else).
With every other parameter fixed, the only value of that parameter putting
the unit on the kink c is ``p* = p + (c - y) / beta`` (beta = 1 or x[b, k]):
one exact rational.  It is a witness iff it is a member of the format (and of
the searched domain); otherwise *no* value of that parameter works in that
slice.  docs/method.md section 7: this replaces ``fp.to_real`` queries that do not
finish for binary32.

For biases the engine's float64 pass with rigorous error bounds
(:func:`formal.engine.forward.float_pass`) first discards every unit whose
interval of possible ``b*`` holds no member of M; only the rest is computed
exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from formal.core.activations import Activation, Preset
from formal.core.graph import descendants
from formal.core.network import Network, Node
from formal.core.rules import has_rule
from formal.engine.forward import Forward, exact_forward, float_pass
from formal.errors import MissingRule
from formal.smt.fp import Domain

__all__ = [
    "Slot",
    "Candidate",
    "CandidateScan",
    "linear_slots",
    "candidates",
    "slots_complete",
    "own_param",
    "untied_groups",
]


@dataclass(frozen=True, slots=True)
class Slot:
    """A parameter group entering one unit's pre-activation affinely."""

    group: int
    node: str  # the activation node
    unit: int  # flat index of the unit
    kind: str  # "bias" | "weight"
    source: str = ""  # the linear's input node (weights)
    column: int = -1  # k in W[i, k] (weights)
    sign: int = 1


@dataclass(frozen=True, slots=True)
class Candidate:
    """Setting ``group`` to ``value`` puts ``node[unit]`` (sample) exactly on ``kink``."""

    slot: Slot
    sample: int
    kink: Fraction
    value: Fraction


def untied_groups(net: Network) -> np.ndarray:
    """Boolean mask over groups: exactly one entry in the whole network (untied)."""
    par = net.parameterization()
    cached = net.cache.get("smt:unique_groups")
    if cached is None:
        allg = [g.reshape(-1) for g in par.groups.values()]
        counts = (
            np.bincount(np.concatenate(allg), minlength=par.size)
            if allg
            else np.zeros(0, dtype=np.int64)
        )
        cached = counts == 1
        net.cache["smt:unique_groups"] = cached
    return cached


def own_param(net: Network, node: Node) -> bool:
    """Whether ``node`` is a trainable param node whose tensor is read by this node only,
    and which feeds one consumer (its entries move one operand alone)."""
    name = node.attr("name")
    readers = [n for n in net.nodes if n.op == "param" and n.attr("name") == name]
    return len(readers) == 1 and len(net.consumers(node.name)) == 1 and name in net.trainable


def linear_slots(
    net: Network, free: Iterable[int] | None = None, *, weights: bool = True
) -> list[Slot]:
    """Every (free, untied) bias or own-row weight entering a kinked unit affinely."""
    par = net.parameterization()
    unique = untied_groups(net)
    mask = unique.copy()
    if free is not None:
        sel = np.zeros(par.size, dtype=bool)
        sel[np.fromiter((int(g) for g in free), dtype=np.int64)] = True
        mask &= sel
    out: list[Slot] = []
    for node in net.nodes:
        if node.op != "act" or not node.attr("activation").kinks:
            continue
        pre = net.node(node.inputs[0])
        lin = None
        if pre.op == "add" and len(net.consumers(pre.name)) == 1:
            for i in pre.inputs:
                cand = net.node(i)
                if (
                    cand.op == "param"
                    and own_param(net, cand)
                    and tuple(net.params[cand.attr("name")].shape) == tuple(node.shape)
                ):
                    name = cand.attr("name")
                    g = par.groups[name].reshape(-1)
                    s = par.signs[name].reshape(-1)
                    for u in np.flatnonzero(mask[g]):
                        out.append(Slot(int(g[u]), node.name, int(u), "bias", sign=int(s[u])))
                elif cand.op == "linear" and len(net.consumers(cand.name)) == 1:
                    lin = cand
        elif pre.op == "linear" and len(net.consumers(pre.name)) == 1:
            lin = pre
        if lin is None or not weights or len(node.shape) != 1:
            continue
        wnode = net.node(lin.inputs[1])
        if wnode.op != "param" or not own_param(net, wnode):
            continue
        name = wnode.attr("name")
        g2 = par.groups[name]
        s2 = par.signs[name]
        for u, k in zip(*np.nonzero(mask[g2])):
            out.append(
                Slot(
                    int(g2[u, k]), node.name, int(u), "weight", lin.inputs[0], int(k), int(s2[u, k])
                )
            )
    return out


def _float_bounds(net: Network) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Float64 values and rigorous error bounds of every node, by the engine's float pass
    (None unless every node has finite ones)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            flt = float_pass(net, stop_on_suspect=False)
        except MissingRule:
            return None
    if not flt.complete:
        return None
    return {name: (v, flt.errs[name]) for name, v in flt.vals.items()}


def _group_value(net: Network, slot: Slot) -> Fraction:
    par = net.parameterization()
    name, flat = par.slot(slot.group)
    q = net.params[name]
    return Fraction(int(q.num.reshape(-1)[flat]), q.den)


def _may_hold_member(dom: Domain, lo: float, hi: float) -> bool:
    """Could [lo, hi] (floats, exact endpoints) contain an allowed member?"""
    dt = dom.fmt.numpy_dtype()
    if (
        dt is not None
        and dt.itemsize <= 4
        and np.isfinite(lo)
        and np.isfinite(hi)
        and abs(lo) < 1e30
        and abs(hi) < 1e30
    ):
        # members of a <= 32-bit format are float64 numbers: look at the rounding of the midpoint
        with np.errstate(over="ignore"):
            m = dt.type((lo + hi) / 2)
            near = (
                [m, np.nextafter(m, dt.type(np.inf)), np.nextafter(m, dt.type(-np.inf))]
                if dt.kind == "f" and dt.itemsize >= 2
                else []
            )
        if near and hi - lo < 0.5 * abs(float(np.spacing(m))):
            return any(lo <= float(v) <= hi for v in near)
    a, b = Fraction(lo), Fraction(hi)
    if a <= 0 <= b:
        return True
    up = dom.fmt.neighbors(a)[1] if a <= dom.fmt.max_value else None
    return up is not None and up <= b


class CandidateScan:
    """Closed-form kink candidates in the domain, produced lazily (iterate it).

    After iteration, ``examined`` counts the slots seen and ``complete`` says
    whether every slot was examined (``limit`` not reached).
    """

    def __init__(
        self,
        net: Network,
        preset: Preset,
        dom: Domain,
        free: Iterable[int] | None = None,
        *,
        weights: bool = True,
        limit: int = 100_000,
    ) -> None:
        self.net = net
        self.preset = preset
        self.dom = dom
        self.slots = linear_slots(net, free, weights=weights)
        self.limit = limit
        self.examined = 0
        self.complete = True
        self.found = 0
        self._fwd: Forward | None = None

    def _exact(self, name: str, b: int, index: int) -> Fraction:
        """Exact value of entry (b, index) of node ``name``: a direct dot product for a
        first-layer pre-activation, else from one exact forward pass."""
        net = self.net
        node = net.node(name)
        lin: Node | None = node if node.op == "linear" else None
        bias: Node | None = None
        if node.op == "add" and len(node.inputs) == 2:
            a, c = (net.node(i) for i in node.inputs)
            if (
                a.op == "linear"
                and c.op == "param"
                and tuple(net.params[c.attr("name")].shape) == tuple(node.shape)
            ):
                lin, bias = a, c
        if (
            lin is not None
            and net.node(lin.inputs[0]).op == "input"
            and net.node(lin.inputs[1]).op == "param"
        ):
            w = net.params[net.node(lin.inputs[1]).attr("name")]
            x = net.inputs
            row = w.num[index]
            xs = x.num[b]
            acc = sum((int(p) * int(q) for p, q in zip(row, xs) if q), 0)
            y = Fraction(acc, w.den * x.den)
            if bias is not None:
                bq = net.params[bias.attr("name")]
                y += Fraction(int(bq.num.reshape(-1)[index]), bq.den)
            return y
        if self._fwd is None:
            self._fwd = exact_forward(net, self.preset)
        v = self._fwd.values[name]
        return Fraction(int(v.num.reshape(v.shape[0], -1)[b, index]), v.den)

    def __iter__(self) -> Iterator[Candidate]:
        net, dom = self.net, self.dom
        flt = _float_bounds(net)
        B = net.batch
        for slot in self.slots:
            if self.examined >= self.limit:
                self.complete = False
                return
            self.examined += 1
            node = net.node(slot.node)
            act: Activation = node.attr("activation")
            pre = node.inputs[0]
            p_now = _group_value(net, slot) * slot.sign
            for b in range(B):
                for c in act.kinks:
                    if slot.kind == "bias" and flt is not None:
                        yf, ye = flt[pre]
                        y0 = float(yf.reshape(B, -1)[b, slot.unit])
                        e0 = float(ye.reshape(B, -1)[b, slot.unit])
                        centre = float(p_now) + float(c) - y0
                        slack = (
                            4
                            * (abs(centre) + abs(float(p_now)) + abs(float(c)) + abs(y0))
                            * 2.0**-52
                        )
                        width = 2 * e0 + slack + 2.0**-1070
                        if not _may_hold_member(dom, centre - width, centre + width):
                            continue  # the entry b* (the domain is symmetric) is provably not in M
                    yv = self._exact(pre, b, slot.unit)
                    if slot.kind == "bias":
                        beta = Fraction(1)
                    else:
                        beta = self._exact(slot.source, b, slot.column)
                        if beta == 0:
                            continue
                    entry = p_now + (c - yv) / beta
                    value = entry * slot.sign  # the group's value
                    if dom.allows(value):
                        self.found += 1
                        yield Candidate(slot, b, c, value)


def candidates(
    net: Network,
    preset: Preset,
    dom: Domain,
    free: Iterable[int] | None = None,
    *,
    weights: bool = True,
    limit: int = 100_000,
) -> tuple[list[Candidate], int, bool]:
    """All closed-form kink candidates: (candidates, slots examined, complete)."""
    scan = CandidateScan(net, preset, dom, free, weights=weights, limit=limit)
    out = list(scan)
    return out, scan.examined, scan.complete


def slots_complete(net: Network, free: Iterable[int], preset: Preset) -> tuple[bool, str]:
    """Whether the closed-form candidates are *all* the kink points of the searched space.

    True when every free group is a slot (own-unit bias or own-row weight) of
    a unit of a kinked activation node N, each unit has at most one free slot,
    no kinked activation lies downstream of any such N, and at the base point
    no other unit sits on a kink.  Then each such pre-activation is
    ``alpha + beta * p`` with alpha, beta constant on the space, and every
    other kinked pre-activation is constant and off its kinks.
    """
    free = set(free)
    par = net.parameterization()
    slots = linear_slots(net, free)
    by_group = {s.group: s for s in slots}
    if set(by_group) != free:
        missing = sorted(free - set(by_group))
        return False, f"{par.label(missing[0])} does not enter a kinked unit affinely on its own"
    units: dict[tuple[str, int], int] = {}
    for s in slots:
        units[(s.node, s.unit)] = units.get((s.node, s.unit), 0) + 1
    crowded = [u for u, n in units.items() if n > 1]
    if crowded:
        return (
            False,
            f"unit {crowded[0][0]}[{crowded[0][1]}] has {units[crowded[0]]} searched parameters",
        )
    nodes = {s.node for s in slots}
    down = descendants(net, nodes)
    for node in net.nodes:
        if (
            node.name in down
            and has_rule("kink", node.op)
            and (node.op != "act" or node.attr("activation").kinks)
        ):
            return (
                False,
                f"non-smooth node {node.name!r} ({node.op}) lies downstream of a searched "
                "parameter",
            )
    fwd = exact_forward(net, preset)
    for k in fwd.kinks:
        if k.kind != "act" or (k.node, k.index) not in units:
            return False, f"{k.label(net)} sits on a kink whatever the searched values"
    return (
        True,
        "each searched parameter moves one pre-activation of the last kinked layer(s) "
        "affinely, alone",
    )
