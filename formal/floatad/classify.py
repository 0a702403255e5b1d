"""Float kink touches classified with the exact engine, and the float AD gradient.

:func:`classify` runs the forward pass in a working precision (values,
touches), reverse mode for the chosen objective (gradient of each trainable
tensor), and the engine's exact forward pass
(:func:`formal.engine.forward.exact_forward`) at the *same machine-number
parameters and inputs* (the float pass's, read exactly).  Each float touch is

- ``exact``: the exact pre-activation is on the same kink too (for a max-pool
  tie: the exact window maximum is attained at least twice);
- ``spurious``: rounding put the unit on the kink, exactly it is off;

and each kink node of the engine (an exact kink depending on the parameters)
that the float pass does not touch is ``missed``.  So ``exact + spurious``
is the number of float touches and ``exact + missed`` is the number of exact
kink nodes.  A float tie whose exact values tie too, between entries the
engine proves to be the same function of the parameters (two saturated
units, say), is no kink in either arithmetic: it is left out of the touches
and counted in ``identical_ties``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np

from formal.core.activations import Preset, parse_preset
from formal.core.builders import exact_from_float
from formal.core.network import Network
from formal.core.numbers import format_exact
from formal.core.rebuild import with_params
from formal.engine.forward import Forward, exact_forward, forward
from formal.errors import InvalidArgument
from formal.floatad.acts import Style, style_of
from formal.floatad.arith import Arithmetic, arithmetic
from formal.floatad.passes import FloatForward, FloatTouch, float_backward, float_forward
from formal.ops.conv import geometry

TouchStatus = Literal["exact", "spurious", "missed"]
ObjectiveKind = Literal["network", "mse"]


@dataclass(frozen=True, slots=True)
class TouchRecord:
    """One classified touch: where, the float and exact values, and the status."""

    node: str
    sample: int
    index: int
    kind: Literal["act", "tie"]
    label: str
    status: TouchStatus
    kink: Fraction  # the kink c (activation) or the exact tied maximum (tie)
    float_value: Fraction  # float pre-activation (act) or float window maximum (tie)
    exact_value: Fraction  # exact pre-activation (act) or exact window maximum (tie)

    def describe(self) -> str:
        """One line, e.g. ``1.act[0,2] act spurious: float 0, exact 1/1048576 (kink 0)``."""
        return (
            f"{self.label} {self.kind} {self.status}: float {format_exact(self.float_value)}, "
            f"exact {format_exact(self.exact_value)} (kink {format_exact(self.kink)})"
        )


@dataclass(frozen=True)
class FloatADReport:
    """What float AD computed and how its kink touches relate to the exact kinks."""

    numbers: str
    preset: str
    order: str
    fma: bool
    float_touches: int
    exact: int
    spurious: int
    missed: int
    exact_kinks: int
    identical_ties: int  # float ties between provably identical functions (not counted)
    touches: tuple[TouchRecord, ...]
    output: np.ndarray = field(compare=False, repr=False)  # objective value(s), dtype
    gradient: Mapping[str, np.ndarray] = field(compare=False, repr=False)  # (R, *shape)

    def counts(self) -> dict[str, int]:
        """The counts as a dict (keys of the audit log)."""
        return {
            "float_kink_touches": self.float_touches,
            "exact_touches": self.exact,
            "spurious_touches": self.spurious,
            "missed_touches": self.missed,
            "exact_kinks": self.exact_kinks,
            "identical_ties": self.identical_ties,
        }


def seeds_and_value(
    ff: FloatForward, objective: ObjectiveKind = "network", targets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Output seeds (R, B, *shape) and the objective value(s) in the working precision.

    ``network``: the net's objective matrix (vector output: identity rows; sum;
    weighted_sum), rounded to the format; its value is ``obj @ out`` in the
    arithmetic's order (the output itself for the vector objective).  ``mse``:
    ``fl(sum((out - t)^2) / N)`` with the sum in the order, seed
    ``fl(fl(2/N) * (out - t))`` (PyTorch's mean-reduced mse_loss backward).
    """
    net, ar = ff.net, ff.arith
    out = ff.values[net.output]
    dt = ar.dtype
    shape = (net.batch,) + net.node(net.output).shape
    if objective == "mse":
        if targets is None:
            raise InvalidArgument(f"expected MSE targets of shape {shape}, got none")
        t = np.asarray(targets)
        if t.shape != shape:
            raise InvalidArgument(f"expected MSE targets of shape {shape}, got {t.shape}")
        if t.dtype != dt:
            raise InvalidArgument(f"expected targets of dtype {dt}, got {t.dtype}")
        d = (out - t).astype(dt)
        n = d.size
        value = (ar.sum_terms((d * d).reshape(1, -1), axis=-1) / dt.type(n)).astype(dt)
        seed = (ar.const(Fraction(2, n)) * d).astype(dt)
        return seed.reshape((1,) + shape), value
    if objective != "network":
        raise InvalidArgument(f"expected objective 'network' or 'mse', got {objective!r}")
    if net.objective_kind == "vector":
        n = int(np.prod(shape))
        seeds = np.eye(n, dtype=np.float64).astype(dt).reshape((n,) + shape)
        return seeds, out.reshape(-1)
    obj = ar.from_exact(net.objective_matrix().to_fractions())
    value = ar.matmul(obj, out.reshape(-1, 1)).reshape(-1)
    return obj.reshape((obj.shape[0],) + shape), value


def exact_at(net: Network, ff: FloatForward) -> Network:
    """The network at the float pass's machine-number parameters and inputs, read exactly."""
    tensors = {}
    for node in net.nodes:
        if node.op == "param":
            name = node.attr("name")
            tensors[name] = exact_from_float(ff.values[node.name], name)
    out = with_params(net, tensors, numbers=ff.arith.fmt, check=False)
    x = next(ff.values[n.name] for n in net.nodes if n.op == "input")
    cache = {k: v for k, v in out.cache.items() if not k.startswith("float:")}
    return dataclasses.replace(out, inputs=exact_from_float(x, "inputs"), cache=cache)


def _exact_window(fwd: Forward, node: str, b: int, tied: tuple[int, ...]) -> list[Fraction]:
    xin = fwd.values[fwd.net.node(node).inputs[0]]
    flat = xin.num.reshape(xin.shape[0], -1)
    return [Fraction(int(flat[b, t]), xin.den) for t in tied]


def classify_touches(ff: FloatForward, fwd: Forward) -> tuple[list[TouchRecord], int]:
    """Records of every float touch (exact / spurious) and every missed exact kink node.

    Also returns the number of float ties left out: windows whose exact values
    tie too but whose tied entries the engine proves to be the same function of
    the parameters (e.g. two saturated units): no kink in either arithmetic.
    """
    net = fwd.net
    records: list[TouchRecord] = []
    seen: set[tuple[str, int, int]] = set()
    identical = 0
    for t in ff.touches:
        seen.add((t.node, t.sample, t.index))
        rec = _record(ff, fwd, t)
        if rec is None:
            identical += 1
        else:
            records.append(rec)
    for k in fwd.kinks:
        if (k.node, k.sample, k.index) in seen:
            continue
        node = net.node(k.node)
        fin = ff.values[node.inputs[0]].reshape(net.batch, -1)
        if k.kind == "act":
            fv = Fraction(float(fin[k.sample, k.index]))
        else:
            fv = Fraction(float(ff.values[k.node].reshape(net.batch, -1)[k.sample, k.index]))
        records.append(
            TouchRecord(
                k.node, k.sample, k.index, k.kind, k.label(net), "missed", k.value, fv, k.value
            )
        )
    return records, identical


def _record(ff: FloatForward, fwd: Forward, t: FloatTouch) -> TouchRecord | None:
    net = fwd.net
    node = net.node(t.node)
    label = _label(net, t.node, t.index)
    if t.kind == "act":
        pre = fwd.values[node.inputs[0]]
        ev = Fraction(int(pre.num.reshape(net.batch, -1)[t.sample, t.index]), pre.den)
        status: TouchStatus = "exact" if ev == t.value else "spurious"
        return TouchRecord(t.node, t.sample, t.index, "act", label, status, t.value, t.value, ev)
    # a tie: the exact window (all valid entries) and whether its maximum is attained twice
    out = fwd.values[t.node]
    ev = Fraction(int(out.num.reshape(net.batch, -1)[t.sample, t.index]), out.den)
    if any(k.node == t.node and k.sample == t.sample and k.index == t.index for k in fwd.kinks):
        return TouchRecord(t.node, t.sample, t.index, "tie", label, "exact", ev, t.value, ev)
    node_ = net.node(t.node)
    xin = fwd.values[node_.inputs[0]]
    idx, _, _ = geometry(node_, tuple(xin.shape[1:]))
    window = [int(i) for i in idx.reshape(-1, idx.shape[-1])[t.index] if i >= 0]
    vals = _exact_window(fwd, t.node, t.sample, tuple(window))
    if sum(1 for v in vals if v == ev) > 1:
        return None  # tied exactly too, between provably identical functions: no kink
    return TouchRecord(t.node, t.sample, t.index, "tie", label, "spurious", ev, t.value, ev)


def _label(net: Network, node: str, index: int) -> str:
    shape = net.node(node).shape
    idx = np.unravel_index(index, shape) if shape else ()
    return f"{node}[{','.join(str(int(i)) for i in idx)}]"


@dataclass(frozen=True)
class FloatAD:
    """Float AD without the exact classification: value, gradient, raw float touches."""

    output: np.ndarray = field(compare=False)
    gradient: Mapping[str, np.ndarray] = field(compare=False)
    touches: tuple[FloatTouch, ...]
    forward: FloatForward = field(compare=False, repr=False)


def float_ad(
    net: Network,
    arith: Arithmetic,
    preset: Preset | str = "pytorch",
    *,
    params: Mapping[str, np.ndarray] | None = None,
    inputs: np.ndarray | None = None,
    objective: ObjectiveKind = "network",
    targets: np.ndarray | None = None,
    style: Style | None = None,
) -> FloatAD:
    """Forward and reverse pass in ``arith`` only (no exact pass): e.g. to compare the
    gradients of two presets at the same parameters (Bertoin et al.'s set S)."""
    pre = parse_preset(preset) if isinstance(preset, str) else preset
    ff = float_forward(net, arith, pre, style=style or style_of(pre), params=params, inputs=inputs)
    seeds, value = seeds_and_value(ff, objective, targets)
    return FloatAD(value, float_backward(ff, seeds), tuple(ff.touches), ff)


def classify(
    net: Network,
    numbers: str = "binary32",
    preset: Preset | str = "pytorch",
    order: str = "sequential",
    *,
    fma: bool = False,
    params: Mapping[str, np.ndarray] | None = None,
    inputs: np.ndarray | None = None,
    objective: ObjectiveKind = "network",
    targets: np.ndarray | None = None,
    style: Style | None = None,
    arith: Arithmetic | None = None,
) -> FloatADReport:
    """Float AD of ``net`` in ``numbers`` with its kink touches classified exactly.

    ``params`` (name -> dtype array) and ``inputs`` (dtype array) replace the
    network's values (default: the network's exact values rounded to the
    format).  ``style`` picks the float formulas (default: from the preset).
    Raises :class:`~formal.errors.NotExact` when the exact pass cannot run
    (irrational values, e.g. batch normalization).
    """
    ar = arith or arithmetic(numbers, order, fma)
    pre = parse_preset(preset) if isinstance(preset, str) else preset
    ff = float_forward(net, ar, pre, style=style or style_of(pre), params=params, inputs=inputs)
    seeds, value = seeds_and_value(ff, objective, targets)
    grads = float_backward(ff, seeds)
    at = exact_at(net, ff)
    # no float touch: the engine's rigorous float filter may prove there is no exact kink
    # either (then nothing is missed and the exact pass is skipped)
    fwd = forward(at, pre) if not ff.touches else exact_forward(at, pre)
    records, identical = classify_touches(ff, fwd)
    n_ex = sum(r.status == "exact" for r in records)
    n_sp = sum(r.status == "spurious" for r in records)
    n_mi = sum(r.status == "missed" for r in records)
    return FloatADReport(
        ar.fmt.name,
        pre.name,
        ar.order,
        ar.fma,
        n_ex + n_sp,
        n_ex,
        n_sp,
        n_mi,
        len(fwd.kinks),
        identical,
        tuple(records),
        value,
        grads,
    )


__all__ = [
    "FloatAD",
    "FloatADReport",
    "float_ad",
    "ObjectiveKind",
    "TouchRecord",
    "TouchStatus",
    "classify",
    "classify_touches",
    "exact_at",
    "seeds_and_value",
]
