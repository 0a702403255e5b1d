"""The exact engine: forward pass, kink detection, AD with proxies, directional derivatives.

A float64 pass with rigorous error bounds runs first: if it proves that no
pre-activation touches a kink (and no max-pool window ties) the verdict needs
no exact arithmetic at all.  Otherwise every value is recomputed exactly
(:class:`~formal.core.qarray.QArray`) and kinks are decided by exact comparison.

Every pass walks the graph with :func:`formal.core.rules.walk` and the ops'
rules.  Non-smooth ops (activations, max-pools) also have a ``kink`` rule
(:class:`~formal.core.kinks.KinkRule`), which the passes use in place of the
smooth rules; a *kink node* is one entry of such an op at which its derivative
does not exist: a pre-activation equal to a kink, or a max-pool window whose
maximum is attained more than once (a *tie*).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset
from formal.core.graph import ancestors, descendants, is_batched, trainable_dependence
from formal.core.kinks import KinkNode, KinkRule
from formal.core.network import Network, Node
from formal.core.qarray import QArray, int_matmul
from formal.core.rules import RULES, Interpretation, rule, walk
from formal.engine.ball import prove_no_kinks
from formal.errors import MissingRule, NotExact
from formal.ops.basic import lift


def kink_rule(op: str) -> KinkRule | None:
    """The kink rule of a non-smooth op, None for a smooth one."""
    return RULES["kink"].get(op)


def _context(kr: KinkRule, value: Any) -> dict[str, Any]:
    return {"context": value} if getattr(kr, "uses_context", False) else {}


def _no_rule(interp: Interpretation) -> Any:
    """A rule for ops without one: raises the uniform error (kink ops never call it)."""

    def missing(node: Node, *args: Any) -> Any:
        raise MissingRule(f"op {node.op!r} (node {node.name!r}) has no {interp} rule")

    return missing


# ---------------------------------------------------------------------------


@dataclass
class Forward:
    """The result of the forward pass at w."""

    net: Network
    preset: Preset
    exact: bool
    values: dict[str, QArray] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)
    kinks: list[KinkNode] = field(default_factory=list)
    by_node: dict[str, list[KinkNode]] = field(default_factory=dict)
    depends: dict[str, bool] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] | None = field(default=None, repr=False, compare=False)
    sliced: dict[tuple[int, ...], Forward | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )  # restrict_samples' results by sample tuple (not copied by dataclasses.replace)

    def kink_positions(self) -> dict[KinkNode, int]:
        """Position of each kink node in :attr:`kinks`."""
        return {k: i for i, k in enumerate(self.kinks)}


@dataclass
class FloatPass:
    """The float64 pass: per-node values and rigorous bounds on their distance to the exact ones.

    ``ok``: no kink node is possible (no suspect entry, every value finite).
    ``complete``: every node has a finite value and bound (False when the pass
    stopped early: at a suspect op, or at a non-finite value, which is then the
    last one in ``vals``).  Unpacks as ``ok, vals, errs``.
    """

    ok: bool
    vals: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    complete: bool
    suspects: frozenset[str] = frozenset()  # the kink ops that may hold a kink node
    hints: dict[str, Any] = field(default_factory=dict)  # kink ops' float_state hints

    def __iter__(self) -> Iterator[Any]:
        """``ok, vals, errs = float_pass(net)``."""
        return iter((self.ok, self.vals, self.errs))


class _Stop(Exception):
    """Stops the float pass early (suspect op or non-finite value)."""


def float_pass(net: Network, *, stop_on_suspect: bool = True) -> FloatPass:
    """The float64 pass with rigorous error bounds, THE float interpretation of a network.

    It stops at the first op that may hold a kink node unless ``stop_on_suspect``
    is false (then the values of every node are computed, e.g. for comparisons),
    and always at the first non-finite value or bound.  An op without a float
    rule raises :class:`~formal.errors.MissingRule`.
    """
    vals: dict[str, np.ndarray] = {}
    errs: dict[str, np.ndarray] = {}
    state = {"ok": True}
    suspects: set[str] = set()
    hints: dict[str, Any] = {}

    def step(node: Node, fn: Any, ins: list[np.ndarray]) -> np.ndarray:
        in_e = [errs[i] for i in node.inputs]
        kr = kink_rule(node.op)
        suspect = False
        if kr is not None:
            got = kr.float_filter(node, ins, in_e, net, **_context(kr, (vals, errs)))
            v, e, suspect = got[:3]
            if len(got) > 3:  # a hint for the rule's float_state (see exact_forward)
                hints[node.name] = got[3]
        else:
            v, e = fn(node, ins, in_e, net)
        vals[node.name], errs[node.name] = v, e
        if suspect:
            state["ok"] = False
            suspects.add(node.name)
            if stop_on_suspect:
                raise _Stop
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(e))):
            state["ok"] = False
            raise _Stop
        return v

    try:
        walk(net, "float", step, env=vals)
    except _Stop:
        return FloatPass(False, vals, errs, False, frozenset(suspects), hints)
    return FloatPass(state["ok"], vals, errs, True, frozenset(suspects), hints)


def float_filter(net: Network) -> bool:
    """True when a rigorous float64 pass proves there is no kink node at w.

    False when it cannot (or an op has no float rule: the exact pass decides).
    """
    fp = _guarded_float_pass(net, stop_on_suspect=True)
    return fp is not None and fp.ok


def _guarded_float_pass(net: Network, *, stop_on_suspect: bool) -> FloatPass | None:
    """:func:`float_pass` without numpy warnings; None when an op has no float rule."""
    # overflow to inf / inf - inf = nan is expected (huge binary64 values): the pass then
    # stops and the exact pass decides; numpy must not warn about it
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            return float_pass(net, stop_on_suspect=stop_on_suspect)
        except MissingRule:
            return None


def may_kink(net: Network) -> bool:
    """False when no op that can have kink nodes depends on a trainable parameter.

    Then f is analytic near every w (e.g. a sigmoid/tanh network) and AD is
    correct everywhere, whatever the values are (even irrational ones).
    """
    dep = trainable_dependence(net)
    for node in net.nodes:
        kr = kink_rule(node.op)
        if dep[node.name] and kr is not None:
            check = getattr(kr, "may_kink", None)
            if check is None or check(node):
                return True
    return False


def forward(net: Network, preset: Preset, *, use_filter: bool = True) -> Forward:
    """Forward pass at w: float filter first, exact values and kinks when needed.

    Irrational values (sigmoid, tanh, batch-norm square roots) make the exact
    pass raise NotExact; then ball arithmetic (:mod:`formal.engine.ball`) may
    still prove that no kink node exists, else the NotExact propagates
    ("unknown", naming the enclosure that straddles a kink).
    """
    if use_filter and not may_kink(net):
        return Forward(net, preset, exact=False)
    certified = None
    if use_filter:
        fp = _complete_float_pass(net)
        if fp is not None and fp.ok:
            return Forward(net, preset, exact=False)
        certified = fp if fp is not None and fp.complete else None
    try:
        return exact_forward(net, preset, certified=certified)
    except NotExact as exc:
        if not use_filter:
            raise
        ok, why = prove_no_kinks(net)
        if ok:
            return Forward(net, preset, exact=False)
        raise NotExact(f"{exc}; {why}") from None


def _complete_float_pass(net: Network) -> FloatPass | None:
    """The float pass through every node (None when an op has no float rule)."""
    return _guarded_float_pass(net, stop_on_suspect=False)


class ExactValues(dict[str, QArray]):
    """Exact node values, each computed on first use (with every value it reads).

    The exact forward pass decides the kink ops the float filter could not
    certify; the values of the other nodes are computed only when a later
    pass reads them (a parameter tangent reads its layer's input, a gradient
    reads every layer's input).  A kink op's value computed late must come
    with the state and kink nodes the forward pass recorded (from the float
    pass, or from the exact pass of the suspect samples): anything else is an
    internal error, raised (never a silently different verdict).
    """

    def __init__(self, fwd: Forward) -> None:
        super().__init__()
        self.fwd = fwd

    def __missing__(self, name: str) -> QArray:
        fwd = self.fwd
        net = fwd.net

        def step(node: Node, fn: Any, ins: list[QArray]) -> QArray:
            kr = kink_rule(node.op)
            if kr is None:
                return fn(node, ins, net)
            value, state, kinks = kr.forward(node, ins, net, fwd.preset, **_context(kr, fwd))
            found = kinks if fwd.depends.get(node.name) else []
            recorded = fwd.by_node.get(node.name, [])
            if [_kink_key(k) for k in found] != [_kink_key(k) for k in recorded] or not (
                _same_state(state, fwd.states[node.name])
            ):
                raise AssertionError(
                    f"kink op {node.name!r}: the exact state or kink nodes differ from those "
                    "the forward pass recorded"
                )
            return value

        walk(net, "exact", step, env=self, only=ancestors(net, name))
        return dict.__getitem__(self, name)


def _kink_key(k: KinkNode) -> tuple[Any, ...]:
    return (k.sample, k.index, k.kind, k.inputs, k.value, k.choice)


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, QArray) and isinstance(b, QArray):
        return a.shape == b.shape and bool(np.all(a.num * b.den == b.num * a.den))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


class Pending:
    """A node value not computed yet, as a rule's operand: its shape is known.

    Reading anything else (``num``, ``den``, a method) computes the value
    (:class:`ExactValues`).  Rules that only need an operand's shape (e.g. a
    convolution's input when no tangent moves its weights) never compute it.
    """

    __slots__ = ("_values", "_name", "shape")

    def __init__(self, values: ExactValues, name: str, shape: tuple[int, ...]) -> None:
        self._values = values
        self._name = name
        self.shape = shape

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._values[self._name], attr)


def operands(fwd: Forward, node: Node) -> list[QArray]:
    """The exact values of ``node``'s inputs, not yet computed ones as :class:`Pending`."""
    values = fwd.values
    if not isinstance(values, ExactValues) or fwd.shapes is None:
        return [values[i] for i in node.inputs]
    out: list[Any] = []
    for i in node.inputs:
        if i in values or i not in fwd.shapes:
            out.append(values[i])
        else:
            out.append(Pending(values, i, fwd.shapes[i]))
    return out


def exact_forward(net: Network, preset: Preset, *, certified: FloatPass | None = None) -> Forward:
    """Exact values of every node, the kink ops' states and the kink nodes that depend on w.

    ``certified``: a complete float pass.  A kink op it certifies (no entry
    near a kink) whose rule derives its state from the float values
    (``float_state``) is not evaluated: its state comes from the float pass
    and the exact values it and its inputs take are computed on first use
    (:class:`ExactValues`).  Exact arithmetic then covers the suspect ops and
    what they read, not the whole network.
    """
    fwd = Forward(net, preset, exact=True)
    fwd.depends = dict(trainable_dependence(net))
    if certified is None:

        def step(node: Node, fn: Any, ins: list[QArray]) -> QArray:
            kr = kink_rule(node.op)
            if kr is None:
                return fn(node, ins, net)
            value, state, kinks = kr.forward(node, ins, net, preset, **_context(kr, fwd))
            fwd.states[node.name] = state
            _record(fwd, node.name, kinks)
            return value

        walk(net, "exact", step, env=fwd.values)
        return fwd
    values = ExactValues(fwd)
    fwd.values = values
    fwd.shapes = {n: tuple(v.shape) for n, v in certified.vals.items()}
    floats = {
        node.name: _float_state(node, certified, net, preset)
        for node in net.nodes
        if kink_rule(node.op) is not None
    }
    if _on_suspect_samples(fwd, certified, floats):
        return fwd
    for node in net.nodes:
        kr = kink_rule(node.op)
        if kr is None:
            continue
        state = floats[node.name]
        if state is not None and node.name in certified.suspects:
            state = _suspect_entries(fwd, node, kr, state, certified)
        if state is not None:
            fwd.states[node.name] = state
            continue
        ins = [values[i] for i in node.inputs]
        value, state, kinks = kr.forward(node, ins, net, preset, **_context(kr, fwd))
        values[node.name] = value
        fwd.states[node.name] = state
        _record(fwd, node.name, kinks)
    return fwd


def _record(fwd: Forward, name: str, kinks: list[KinkNode]) -> None:
    """Record kink op ``name``'s kink nodes, when it depends on a trainable parameter."""
    if kinks and fwd.depends[name]:
        fwd.by_node[name] = kinks
        fwd.kinks.extend(kinks)


MAX_SUSPECT_ENTRIES = 4096
"""Above this many suspect entries in one op, the exact pass evaluates the op whole."""


class EntryEnv:
    """What ``entries`` rules read: whole exact values, or some entries of a batched node."""

    def __init__(self, fwd: Forward) -> None:
        self.fwd = fwd

    def full(self, name: str) -> QArray:
        """The exact value of node ``name`` (computed on first use)."""
        return self.fwd.values[name]

    def entries(self, name: str, rows: np.ndarray, cols: np.ndarray) -> QArray:
        """The exact entries ``(rows[i], cols[i])`` of batched node ``name`` (1-D)."""
        values = self.fwd.values
        net = self.fwd.net
        node = net.node(name)
        fn = RULES["entries"].get(node.op)
        if name in values or fn is None:  # computed already, or no rule (e.g. a kink op)
            v = values[name]
            return QArray(v.num.reshape(v.shape[0], -1)[rows, cols], v.den)
        return fn(node, self, net, rows, cols)


def _float_ins(node: Node, fp: FloatPass) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The float values and error bounds of ``node``'s inputs."""
    return [fp.vals[i] for i in node.inputs], [fp.errs[i] for i in node.inputs]


def _float_state(node: Node, fp: FloatPass, net: Network, preset: Preset) -> Any:
    """The kink op's state from the float pass (its rule's ``float_state``), or None.

    Valid where the pass certified the op; a suspect op's suspect entries or
    samples are then replaced by exact ones.
    """
    from_float = getattr(kink_rule(node.op), "float_state", None)
    if from_float is None:
        return None
    vals, errs = _float_ins(node, fp)
    return from_float(node, vals, errs, net, preset, fp.hints.get(node.name))


def _suspect_entries(fwd: Forward, node: Node, kr: Any, state: Any, fp: FloatPass) -> Any:
    """The state of a suspect op from the float pass plus exact values at its suspect entries.

    For an activation whose float state exists (piecewise linear): the entries
    the float enclosure cannot separate from a kink are evaluated exactly
    through the ``entries`` rules (a window or a row each, not the whole
    layer); their slopes replace the float ones and their kink nodes are
    recorded.  None when that does not apply (the op is then evaluated whole).
    """
    near = getattr(kr, "near_kink", None)
    decide = getattr(kr, "forward_entries", None)
    if near is None or decide is None or not isinstance(state, QArray):
        return None
    net = fwd.net
    mask = np.asarray(near(node, *_float_ins(node, fp))).reshape(net.batch, -1)
    rows, cols = np.nonzero(mask)
    if len(rows) > MAX_SUSPECT_ENTRIES:
        return None
    y = EntryEnv(fwd).entries(node.inputs[0], rows.astype(np.int64), cols.astype(np.int64))
    slope, kinks = decide(node, y, rows, cols, fwd.preset)
    _record(fwd, node.name, kinks)
    flat = state.reshape((net.batch, -1))
    return _replaced(flat, (rows, cols), slope).reshape(state.shape)


def _on_suspect_samples(fwd: Forward, certified: FloatPass, floats: dict[str, Any]) -> bool:
    """Fill ``fwd`` from an exact pass over the samples holding suspect entries alone.

    Applies to a minibatch where every op computes each sample from that
    sample alone (:data:`PER_SAMPLE_OPS`), every suspect op says which samples
    are suspect (``suspect_samples``), some sample is not, and every kink op
    derives a state from the float pass (``floats``, by op).  The other samples'
    states come from the float pass, where they are certified; the suspect
    samples' states and kink nodes from the exact pass of the sub-minibatch,
    their samples renumbered back.  Values stay lazy (:class:`ExactValues`,
    which checks every state again when it computes a kink op's value).
    Returns False (``fwd`` untouched) when this does not apply.
    """
    net = fwd.net
    B = net.batch
    if B == 1 or any(n.op not in PER_SAMPLE_OPS for n in net.nodes):
        return False
    if any(state is None for state in floats.values()):
        return False
    suspect = np.zeros(B, dtype=bool)
    for name in certified.suspects:
        node = net.node(name)
        which = getattr(kink_rule(node.op), "suspect_samples", None)
        if which is None:
            return False
        suspect |= which(node, *_float_ins(node, certified), net)
    if suspect.all() or not suspect.any():
        return False
    idx = np.nonzero(suspect)[0]
    sub = exact_forward(_sub_batch(net, idx), fwd.preset)
    for name, state in floats.items():
        fwd.states[name] = _replaced(state, idx, sub.states[name])
    for k in sub.kinks:
        k = dataclasses.replace(k, sample=int(idx[k.sample]))
        fwd.kinks.append(k)
        fwd.by_node.setdefault(k.node, []).append(k)
    return True


def _replaced(full: Any, index: Any, part: Any) -> Any:
    """A copy of the state ``full`` (QArray or array) with ``full[index]`` set to ``part``."""
    if isinstance(full, QArray):
        den = math.lcm(full.den, part.den)
        num = full.num * (den // full.den)  # a new array either way
        num[index] = part.num * (den // part.den)
        return QArray(num, den)
    out = np.array(full, copy=True)
    out[index] = part
    return out


def output_value(fwd: Forward) -> QArray:
    """f(w) exactly: the objective applied to the flattened output (n_obj,)."""
    net = fwd.net
    out = fwd.values[net.output]
    flat = out.num.reshape(-1, 1)
    obj = net.objective_matrix()
    return QArray(int_matmul(obj.num, flat).reshape(-1), obj.den * out.den)


def output_seeds(net: Network) -> QArray:
    """Cotangent seeds (n_obj, B, *shape) at the output node."""
    obj = net.objective_matrix()
    shape = (obj.shape[0], net.batch) + net.node(net.output).shape
    return obj.reshape(shape)


@dataclass
class Reverse:
    """Adjoints of one vectorized reverse pass."""

    kink_adjoints: np.ndarray  # (R, K) Fractions
    params: dict[str, QArray | None]


def reverse(
    fwd: Forward,
    seeds: dict[str, QArray],
    *,
    cut: bool = False,
    want_params: bool | frozenset[str] = True,
) -> Reverse:
    """Reverse mode from ``seeds`` (node -> (R, B, *shape) adjoints).

    With ``cut`` the kink nodes pass nothing down (their adjoints are still
    recorded): this yields the coefficients of the kink-graph reduction.
    Without it, kink nodes pass their proxy: this is AD.  ``want_params``: the
    parameter adjoints to compute (all trainable tensors, none, or those named).
    """
    net = fwd.net
    rows = next(iter(seeds.values())).shape[0]
    if want_params is False:  # only kink adjoints are read: samples without kinks pass nothing
        sliced = _on_kink_samples(fwd, seeds)
        if sliced is not None:
            return reverse(sliced[0], sliced[1], cut=cut, want_params=False)
        seeds = {n: kink_samples_only(fwd, n, s) for n, s in seeds.items()}
    live = np.zeros(rows, dtype=bool)
    for s in seeds.values():
        live |= (s.num.reshape(rows, -1) != 0).any(axis=1)
    if not live.all():  # rows without a non-zero seed have zero adjoints: run the others only
        return _expand_rows(fwd, seeds, live, cut, want_params)
    if want_params is False and list(seeds) == [net.output] and 0 < len(fwd.kinks) < rows:
        fast = forward_kink_adjoints(fwd, seeds[net.output])  # fewer kinks than rows
        if fast is not None:
            return Reverse(fast, {})
    adj: dict[str, QArray | None] = dict(seeds)
    index = fwd.kink_positions()
    kadj = np.zeros((rows, len(fwd.kinks)), dtype=object)
    kadj[...] = Fraction(0)
    params: dict[str, QArray | None] = {}
    demand = adjoint_demand(fwd, want_params=want_params, cut=cut)
    for node in reversed(net.nodes):
        a = adj.pop(node.name, None)
        if a is None or not fwd.depends.get(node.name, False):
            continue
        if node.op == "param":
            if node.attr("name") in net.trainable:
                prev = params.get(node.attr("name"))
                params[node.attr("name")] = a if prev is None else prev + a
            continue
        ins = operands(fwd, node)
        need = [demand.get(i, False) for i in node.inputs]
        kr = kink_rule(node.op)
        if kr is not None:
            kinks = fwd.by_node.get(node.name, [])
            for k in kinks:
                kadj[:, index[k]] = kr.kink_adjoint(a, k)
            if need[0] is False:
                continue
            contributions: list[QArray | None] = [
                kr.vjp(node, ins, a, fwd.states[node.name], kinks, net, cut)
            ]
        else:
            if not any(n is not False for n in need):
                continue
            contributions = rule("vjp", node.op)(node, ins, a, net, need)
        for name, c in zip(node.inputs, contributions):
            if c is None or not fwd.depends[name]:
                continue
            prev = adj.get(name)
            adj[name] = c if prev is None else prev + c
    return Reverse(kadj, params)


def _on_kink_samples(
    fwd: Forward, seeds: dict[str, QArray]
) -> tuple[Forward, dict[str, QArray]] | None:
    """The pass and the seeds restricted to the samples holding kink nodes, when that applies.

    For a reverse pass that reads only kink adjoints: the other samples' seeds
    reach no kink node (see :func:`kink_samples_only`), so slicing them away
    keeps every kink adjoint.  None when every sample holds a kink, a seed is
    unbatched, or :func:`restrict_samples` does not apply.
    """
    net = fwd.net
    if net.batch == 1 or not fwd.kinks:
        return None
    samples = sorted({k.sample for k in fwd.kinks})
    if len(samples) == net.batch:
        return None
    if not all(is_batched(net, n) and s.num.ndim >= 2 for n, s in seeds.items()):
        return None
    sub = restrict_samples(fwd, samples)
    if sub is None:
        return None
    return sub, {n: QArray(s.num[:, samples], s.den) for n, s in seeds.items()}


def _expand_rows(
    fwd: Forward,
    seeds: dict[str, QArray],
    live: np.ndarray,
    cut: bool,
    want_params: bool | frozenset[str],
) -> Reverse:
    """The reverse pass of the ``live`` seed rows, with zero rows put back in place."""
    rows = live.size
    kadj = np.empty((rows, len(fwd.kinks)), dtype=object)
    kadj[...] = Fraction(0)
    if not live.any():
        sub = Reverse(kadj[:0], {})
    else:
        sub = reverse(
            fwd,
            {n: QArray(s.num[live], s.den) for n, s in seeds.items()},
            cut=cut,
            want_params=want_params,
        )
        kadj[live] = sub.kink_adjoints
    params: dict[str, QArray | None] = {}
    for name, q in sub.params.items():
        if q is None:
            params[name] = None
            continue
        num = np.zeros((rows,) + q.num.shape[1:], dtype=object)  # Python int zeros
        num[live] = q.num
        params[name] = QArray(num, q.den)
    return Reverse(kadj, params)


PER_SAMPLE_OPS = frozenset(
    "param const input linear add sub neg scale reshape matmul mul view transpose pad "
    "rsqrt_scale conv2d avgpool2d maxpool2d act".split()
)
"""Ops whose value for sample b reads only sample b of their batched inputs."""


def kink_samples_only(fwd: Forward, name: str, seed: QArray) -> QArray:
    """The seed (R, B, *shape) of a batched node with the samples holding no kink node zeroed.

    When every op computes each sample from that sample alone, an adjoint
    entry of sample b comes only from sample b's seeds, so a reverse pass that
    reads only kink adjoints needs the seeds of the kink samples only.  Returns
    ``seed`` unchanged otherwise (an unbatched node, B = 1, every sample holds a
    kink, or an op outside :data:`PER_SAMPLE_OPS`).
    """
    net = fwd.net
    if net.batch == 1 or not is_batched(net, name) or seed.num.ndim < 2:
        return seed
    if any(n.op not in PER_SAMPLE_OPS for n in net.nodes):
        return seed
    keep = np.zeros(net.batch, dtype=bool)
    keep[[k.sample for k in fwd.kinks]] = True
    if keep.all():
        return seed
    num = seed.num.copy()
    num[:, ~keep] = 0
    return QArray(num, seed.den)


_SHARED_CACHE = ("parameterization", "index", "consumers", "trainable_dependence", "batched")
"""Network cache entries that depend on the graph and parameters only (not on the inputs)."""


def restrict_samples(fwd: Forward, samples: list[int]) -> Forward | None:
    """The exact forward pass of the sub-minibatch ``samples`` (sorted, distinct), sliced.

    Kink nodes keep their order (so kink adjoints keep their columns) with
    their samples renumbered.  A reverse pass whose seeds vanish outside
    ``samples`` gives the same kink and parameter adjoints on the slice (each
    sample's adjoints come from its own seeds).  None unless every op is in
    :data:`PER_SAMPLE_OPS` and every kink op's state is a batched QArray.
    """
    key = tuple(samples)
    if key in fwd.sliced:
        return fwd.sliced[key]
    sub = _restrict(fwd, samples)
    fwd.sliced[key] = sub
    return sub


def _sub_batch(net: Network, idx: np.ndarray) -> Network:
    """The network on the samples ``idx`` of its minibatch (objective rows sliced alike)."""
    objective = net.objective
    if objective is not None:
        rows = objective.num.shape[0]
        objective = QArray(
            objective.num.reshape(rows, net.batch, -1)[:, idx].reshape(rows, -1), objective.den
        )
    cache = {k: v for k, v in net.cache.items() if k in _SHARED_CACHE or k.startswith("flint:")}
    return dataclasses.replace(
        net,
        inputs=QArray(net.inputs.num[idx], net.inputs.den),
        objective=objective,
        cache=cache,
    )


def _restrict(fwd: Forward, samples: list[int]) -> Forward | None:
    net = fwd.net
    if not fwd.exact or any(n.op not in PER_SAMPLE_OPS for n in net.nodes):
        return None
    B = net.batch
    idx = np.asarray(samples, dtype=np.int64)
    states: dict[str, Any] = {}
    for name, state in fwd.states.items():
        if not (isinstance(state, QArray) and state.num.ndim >= 1 and state.shape[0] == B):
            return None
        states[name] = QArray(state.num[idx], state.den)
    sub = _sub_batch(net, idx)
    sliced = {
        name: QArray(v.num[idx], v.den) if is_batched(net, name) else v
        for name, v in fwd.values.items()  # the values computed so far (see ExactValues)
    }
    pos = {b: i for i, b in enumerate(samples)}
    renamed = {id(k): dataclasses.replace(k, sample=pos[k.sample]) for k in fwd.kinks}

    def moved(k: KinkNode) -> KinkNode:  # by identity: hashing a kink node hashes Fractions
        got = renamed.get(id(k))
        return got if got is not None else dataclasses.replace(k, sample=pos[k.sample])

    out = Forward(
        sub,
        fwd.preset,
        True,
        sliced,
        states,
        [moved(k) for k in fwd.kinks],
        {n: [moved(k) for k in ks] for n, ks in fwd.by_node.items()},
        fwd.depends,
    )
    if isinstance(fwd.values, ExactValues) and fwd.shapes is not None:
        lazy = ExactValues(out)  # the others are computed on the slice when read
        lazy.update(sliced)
        out.values = lazy
        out.shapes = {
            n: (len(samples),) + shape[1:] if is_batched(net, n) else shape
            for n, shape in fwd.shapes.items()
        }
    return out


def adjoint_demand(
    fwd: Forward, *, want_params: bool | frozenset[str], cut: bool
) -> dict[str, Any]:
    """Which adjoints a reverse pass must compute.

    Per node: True (all entries), an array of per-sample flat positions (only
    the kink entries of a kink op are read), or False.
    """
    net = fwd.net
    demand: dict[str, Any] = {}
    for node in net.nodes:
        if not fwd.depends.get(node.name, False):
            demand[node.name] = False
            continue
        if node.op == "param":
            pname = node.attr("name")
            wanted = want_params if isinstance(want_params, bool) else pname in want_params
            demand[node.name] = wanted and pname in net.trainable
            continue
        # a cut kink op still passes adjoints down through its smooth entries
        below = any(demand[i] is not False for i in node.inputs)
        kinks = fwd.by_node.get(node.name)
        if below:
            demand[node.name] = True
        elif kinks:
            demand[node.name] = np.array(sorted({k.index for k in kinks}), dtype=np.int64)
        else:
            demand[node.name] = False
    return demand


def _jvp_step(fwd: Forward) -> Any:
    """The step of a tangent walk: smooth ops' jvp rules, kink ops' jvp with their kink maps."""
    net = fwd.net

    def step(node: Node, fn: Any, tin: list[QArray | None]) -> QArray | None:
        ins = operands(fwd, node)
        kr = kink_rule(node.op)
        if kr is None:
            return fn(node, ins, tin, net)
        t0 = tin[0]
        if t0 is None:
            return None
        t0 = lift(t0, is_batched(net, node.inputs[0]))
        return kr.jvp(node, ins, t0, fwd.states[node.name], fwd.by_node.get(node.name, []), net)

    return step


def _reducing_jvp_step(fwd: Forward) -> Any:
    """:func:`_jvp_step`, with the tangents of products :func:`reduced` (same values)."""
    step = _jvp_step(fwd)

    def reducing(node: Node, fn: Any, tin: list[QArray | None]) -> QArray | None:
        out = step(node, fn, tin)
        return reduced(out) if out is not None and node.op in _PRODUCT_OPS else out

    return reducing


def forward_kink_adjoints(fwd: Forward, seed: QArray) -> np.ndarray | None:
    """AD's kink adjoints (R, K) for output seeds (R, B, *out) by forward mode.

    One tangent per kink node, started at its op's output entry, carried to
    the output: ``adjoint[r, k] = seed[r] . tangent_k``.  This is AD's adjoint
    when no op holding kink nodes reads another one (then the chain from a
    kink output to the output meets no kink node, only smooth entries) and
    the kink rules read a kink's adjoint at its output entry (checked on a
    probe).  Returns None when either fails.  Cheaper than reverse mode when
    there are fewer kink nodes than seed rows.
    """
    net = fwd.net
    held = list(fwd.by_node)
    below = descendants(net, held)
    if below & set(held) or not is_batched(net, net.output):
        return None
    K = len(fwd.kinks)
    index = fwd.kink_positions()
    tans: dict[str, QArray | None] = {
        n.name: None for n in net.nodes if n.name not in below
    }  # nothing moves below or beside the kink ops
    for name in held:
        num = np.zeros((K, net.batch) + net.node(name).shape, dtype=object)
        flat = num.reshape(K, net.batch, -1)
        for k in fwd.by_node[name]:
            flat[index[k], k.sample, k.index] = 1
        probe = QArray(num, 1)
        kr = kink_rule(net.node(name).op)
        for k in fwd.by_node[name]:  # the rule must read the output entry's adjoint
            got = kr.kink_adjoint(probe, k) if kr is not None else None
            if got is None or list(got) != [int(r == index[k]) for r in range(K)]:
                return None
        tans[name] = probe
    walk(net, "jvp", _jvp_step(fwd), env=tans, default=_no_rule("jvp"))
    t = tans[net.output]
    rows = seed.shape[0]
    out = np.empty((rows, K), dtype=object)
    out[...] = Fraction(0)
    if t is None:
        return out
    prod = int_matmul(seed.num.reshape(rows, -1), t.num.reshape(K, -1).T)
    den = seed.den * t.den
    for r in range(rows):
        for j in range(K):
            out[r, j] = Fraction(int(prod[r, j]), den)
    return out


_PRODUCT_OPS = frozenset({"conv2d", "linear", "matmul"})


def reduced(q: QArray) -> QArray:
    """``q`` with the gcd of its numerators and denominator divided out (the same values).

    A tangent along a parameter direction inherits the denominator of the
    values it multiplies (e.g. an input whose few rational pixels make every
    numerator long); when the entries it actually reads share that factor,
    dividing it out keeps every later product short.
    """
    if q.lazy or q.den == 1 or q.num.size == 0 or q.num.dtype != object:
        return q
    try:
        g = math.gcd(q.den, *q.num.reshape(-1).tolist())
    except TypeError:  # entries that are not Python ints
        return q
    if g <= 1:
        return q
    return QArray(q.num // g, q.den // g)


def jvp(fwd: Forward, directions: list[dict[int, Fraction]]) -> QArray:
    """Exact directional derivatives f'(w; d) -> (R, n_obj), for sparse directions d.

    Each direction maps parameter groups to values.
    """
    net = fwd.net
    entry_tangents = net.parameterization().tangents(directions)
    rows = len(directions)
    tans: dict[str, QArray | None] = {}
    for node in net.nodes:  # leaves: the directions' tangents (None is a symbolic zero)
        if node.op == "param":
            tans[node.name] = entry_tangents.get(node.attr("name"))
        elif node.op in ("input", "const"):
            tans[node.name] = None

    walk(net, "jvp", _reducing_jvp_step(fwd), env=tans, default=_no_rule("jvp"))
    t = tans[net.output]
    obj = net.objective_matrix()
    if t is None:
        z = np.zeros((rows, obj.shape[0]), dtype=object)
        z[...] = 0
        return QArray(z, 1)
    return QArray(int_matmul(t.num.reshape(rows, -1), obj.num.T), t.den * obj.den)


def gradient_ad(fwd: Forward) -> QArray:
    """AD(w) with the preset's proxies: (n_obj, W) exact Jacobian rows."""
    net = fwd.net
    rev = reverse(fwd, {net.output: output_seeds(net)})
    return net.parameterization().collect(rev.params, output_seeds(net).shape[0])


__all__ = [
    "ExactValues",
    "FloatPass",
    "Forward",
    "Pending",
    "Reverse",
    "adjoint_demand",
    "exact_forward",
    "float_filter",
    "float_pass",
    "forward",
    "forward_kink_adjoints",
    "gradient_ad",
    "jvp",
    "kink_rule",
    "kink_samples_only",
    "may_kink",
    "output_seeds",
    "operands",
    "output_value",
    "restrict_samples",
    "reverse",
]
