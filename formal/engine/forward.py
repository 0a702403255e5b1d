"""The exact engine: forward pass, kink detection, AD with proxies, directional derivatives.

A float64 pass with rigorous error bounds runs first: if it proves that no
pre-activation touches a kink (and no max-pool window ties) the verdict needs
no exact arithmetic at all.  Otherwise every value is recomputed exactly
(:class:`~formal.qarray.QArray`) and kinks are decided by exact comparison.

Non-smooth ops (activations, max-pools) implement :class:`KinkRule` and are
registered in :data:`KINK_RULES`; a *kink node* is one entry of such an op at
which its derivative does not exist: a pre-activation equal to a kink, or a
max-pool window whose maximum is attained more than once (a *tie*).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from formal.core.activations import Activation, Preset
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.errors import NotExact
from formal.ops.basic import ETA, EXACT, FLOAT, JVP, VJP, U, is_batched, lift, rule


@dataclass(frozen=True, slots=True)
class KinkNode:
    """One kink node: where the network's derivative may fail to exist.

    ``inputs`` are the per-sample flat indices (into the op's input) whose
    tangents enter the kink map: one for an activation kink, the tied
    entries for a max tie.  ``choice`` is the position in ``inputs`` that AD
    sends the gradient to (ties only).
    """

    node: str
    sample: int
    index: int  # per-sample flat index of the op's output
    kind: str  # "act" | "tie"
    inputs: tuple[int, ...]
    value: Fraction  # the kink c, or the tied maximum
    d_minus: Fraction = Fraction(0)
    d_plus: Fraction = Fraction(0)
    proxy: Fraction = Fraction(0)
    choice: int = 0

    def label(self, net: Network) -> str:
        shape = net.node(self.node).shape
        idx = np.unravel_index(self.index, shape) if shape else ()
        where = ",".join(str(int(i)) for i in idx)
        return f"{self.node}[{where}]"

    def apply(self, tangents: list[Fraction]) -> Fraction:
        """The kink map on exact tangents (directional derivative rule)."""
        if self.kind == "act":
            v = tangents[0]
            return self.d_plus * v if v >= 0 else self.d_minus * v
        return max(tangents)


class KinkRule(Protocol):
    """Rules of a non-smooth op, handled by the engine.

    Optional members: ``may_kink(node) -> bool`` (False when the node can
    never have a kink node, e.g. an activation without kinks: then f may be
    analytic everywhere, see :func:`may_kink`), and ``uses_context = True``
    (``forward`` then receives ``context=`` the Forward built so far, and
    ``float_filter`` receives ``context=`` the float ``(vals, errs)`` dicts:
    a max-pool reads them to tell identical entries from real ties).
    """

    def forward(self, node: Node, ins: list[QArray], net: Network, preset: Preset) -> tuple[QArray, Any, list[KinkNode]]:
        """Exact value, a private state (pieces/argmax), and the kink nodes found."""

    def float_filter(self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network) -> tuple[np.ndarray, np.ndarray, bool]:
        """Float value, error bound, and whether some entry may be a kink node."""

    def jvp(self, node: Node, ins: list[QArray], tan: QArray, state: Any, kinks: list[KinkNode], net: Network) -> QArray:
        """Directional tangent: smooth entries linearly, kink entries by their kink map."""

    def vjp(self, node: Node, ins: list[QArray], adj: QArray, state: Any, kinks: list[KinkNode], net: Network, cut: bool) -> QArray:
        """Input adjoint; kink entries pass the proxy (AD) or nothing (cut)."""

    def kink_adjoint(self, adj: QArray, k: KinkNode) -> np.ndarray:
        """The adjoint of kink node k's output, one entry per row."""


def _act_of(node: Node) -> Activation:
    return node.attr("activation")


class ActRule:
    """Pointwise activations: kinks where the pre-activation equals a kink of rho."""

    def may_kink(self, node: Node) -> bool:
        return bool(_act_of(node).kinks)

    def forward(self, node: Node, ins: list[QArray], net: Network, preset: Preset):
        act = _act_of(node)
        y = ins[0]
        if act.transcendental:
            raise NotExact(f"activation node {node.name!r} ({act.name}) has transcendental values")
        pieces = act.piece_map(y)
        value = act.apply(y, pieces)
        kinks: list[KinkNode] = []
        on_kink = np.zeros(y.shape, dtype=bool)
        for c in act.kinks:
            hit = y.compare(c) == 0
            on_kink |= hit
            for pos in zip(*np.nonzero(hit.reshape(y.shape[0], -1))):
                b, i = int(pos[0]), int(pos[1])
                kinks.append(
                    KinkNode(node.name, b, i, "act", (i,), c, act.d_minus(c), act.d_plus(c), _proxy(node, preset, act, c, i))
                )
        slope = act.slope(y, pieces)
        slope = QArray(np.where(on_kink, 0, slope.num), slope.den)
        return value, slope, kinks

    def float_filter(self, node: Node, vals: list[np.ndarray], errs: list[np.ndarray], net: Network):
        act = _act_of(node)
        y, e = vals[0], errs[0]
        suspect = False
        for c in act.kinks:
            cf = float(c)
            margin = e + abs(cf) * U + ETA
            suspect = suspect or bool(np.any(np.abs(y - cf) <= 2 * margin))
        z = act.apply_float(y)
        coeff = np.zeros_like(y)
        for p in act.pieces:
            mag = np.zeros_like(y)
            for c in reversed(p):
                mag = mag * np.abs(y) + abs(float(c))
            coeff = np.maximum(coeff, mag)
        err = float(act.lipschitz) * e * (1 + 4 * U) + 8 * U * coeff + 4 * ETA
        if act.transcendental:
            err = err + 8 * U * np.abs(z)
        return z, 2.0 * err, suspect

    def jvp(self, node, ins, tan, state, kinks, net):
        out = tan.mul(QArray(state.num[None], state.den))
        if not kinks:
            return out
        flat_t = tan.num.reshape(tan.shape[0], tan.shape[1], -1)
        patches = [  # kink entries follow the one-sided rule
            (r, k.sample, k.index, k.apply([Fraction(int(flat_t[r, k.sample, k.index]), tan.den)]))
            for k in kinks
            for r in range(tan.shape[0])
        ]
        return patch(out, patches)

    def vjp(self, node, ins, adj, state, kinks, net, cut):
        out = adj.mul(QArray(state.num[None], state.den))
        if cut or not kinks:
            return out
        flat_a = adj.num.reshape(adj.shape[0], adj.shape[1], -1)
        patches = [
            (r, k.sample, k.index, Fraction(int(flat_a[r, k.sample, k.index]), adj.den) * k.proxy)
            for k in kinks
            for r in range(adj.shape[0])
        ]
        return patch(out, patches)

    def kink_adjoint(self, adj: QArray, k: KinkNode) -> np.ndarray:
        flat = adj.num.reshape(adj.shape[0], adj.shape[1], -1)
        return np.array([Fraction(int(v), adj.den) for v in flat[:, k.sample, k.index]], dtype=object)


def patch(arr: QArray, entries: list[tuple[int, int, int, Fraction]]) -> QArray:
    """Copy of ``arr`` (R, B, ...) with entries ``(r, b, flat index)`` set to exact values."""
    den = arr.den
    for *_, q in entries:
        den = math.lcm(den, q.denominator)
    num = arr.num * (den // arr.den) if den != arr.den else arr.num.copy()
    flat = num.reshape(num.shape[0], num.shape[1], -1)
    for r, b, i, q in entries:
        flat[r, b, i] = q.numerator * (den // q.denominator)
    return QArray(num, den)


def _proxy(node: Node, preset: Preset, act: Activation, c: Fraction, unit: int) -> Fraction:
    override = node.attr("proxy")
    if override is None:
        return preset.proxy(act, c)
    if isinstance(override, tuple):  # one rule per unit
        return Fraction(override[unit % len(override)](act, c))
    return Fraction(override(act, c))


KINK_RULES: dict[str, KinkRule] = {"act": ActRule()}


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

    def kink_positions(self) -> dict[KinkNode, int]:
        return {k: i for i, k in enumerate(self.kinks)}


def float_values(net: Network, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64 value of a parameter/input and a bound on its conversion error (cached)."""
    key = "float:" + name
    hit = net.cache.get(key)
    if hit is not None:
        return hit
    q = net.inputs if name == "<input>" else net.params[name]
    den = int(q.den)
    flat = q.num.ravel()
    if den & (den - 1) == 0 and flat.size:
        # power-of-two denominator: int -> float is correctly rounded, ldexp exact unless underflow
        k = den.bit_length() - 1
        try:
            nums = flat.astype(np.float64)
        except OverflowError:
            nums = np.array([float("inf")] * flat.size)
        vals = np.ldexp(nums, -k)
        exact = (np.abs(nums) <= 2.0**53) & (np.ldexp(vals, k) == nums)
        errs = np.where(exact, 0.0, 2 * U * np.abs(vals) + ETA)
        errs = np.where(np.isfinite(vals), errs, np.inf)
        out = (vals.reshape(q.num.shape), errs.reshape(q.num.shape))
        net.cache[key] = out
        return out
    vals = np.empty(flat.shape, dtype=np.float64)
    errs = np.zeros(flat.shape, dtype=np.float64)
    for i, n in enumerate(flat):
        n = int(n)
        try:
            v = n / den
        except OverflowError:
            v = float("inf")
        vals[i] = v
        if v != v or v in (float("inf"), float("-inf")):
            errs[i] = float("inf")
            continue
        p, r = v.as_integer_ratio()
        if p * den != n * r:
            errs[i] = abs(v) * U + ETA
    out = (vals.reshape(q.num.shape), errs.reshape(q.num.shape))
    net.cache[key] = out
    return out


def float_filter(net: Network) -> bool:
    """True when a rigorous float64 pass proves there is no kink node at w."""
    # overflow to inf / inf - inf = nan is expected (huge binary64 values): the pass then
    # answers False and the exact pass decides; numpy must not warn about it
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return float_pass(net)[0]


def float_pass(net: Network, *, stop_on_suspect: bool = True) -> tuple[bool, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The float64 pass with rigorous error bounds: (no kink node proven, values, bounds).

    It stops at the first op that may hold a kink node unless ``stop_on_suspect``
    is false (then the values of every node are computed, e.g. for comparisons).
    """
    vals: dict[str, np.ndarray] = {}
    errs: dict[str, np.ndarray] = {}
    ok = True
    for node in net.nodes:
        if node.op == "input":
            vals[node.name], errs[node.name] = float_values(net, "<input>")
        elif node.op == "param":
            vals[node.name], errs[node.name] = float_values(net, node.attr("name"))
        elif node.op == "const":
            q = node.attr("value")
            vals[node.name], errs[node.name] = q.to_float(), np.abs(q.to_float()) * U + ETA
        elif node.op in KINK_RULES:
            kr = KINK_RULES[node.op]
            ctx: dict[str, Any] = {"context": (vals, errs)} if getattr(kr, "uses_context", False) else {}
            v, e, suspect = kr.float_filter(
                node, [vals[i] for i in node.inputs], [errs[i] for i in node.inputs], net, **ctx
            )
            vals[node.name], errs[node.name] = v, e
            if suspect and stop_on_suspect:
                return False, vals, errs
            ok = ok and not suspect
        elif node.op in FLOAT:
            v, e = FLOAT[node.op](node, [vals[i] for i in node.inputs], [errs[i] for i in node.inputs], net)
            vals[node.name], errs[node.name] = v, e
        else:
            return False, vals, errs
        if not (np.all(np.isfinite(vals[node.name])) and np.all(np.isfinite(errs[node.name]))):
            return False, vals, errs
    return ok, vals, errs


def may_kink(net: Network) -> bool:
    """False when no op that can have kink nodes depends on a trainable parameter.

    Then f is analytic near every w (e.g. a sigmoid/tanh network) and AD is
    correct everywhere, whatever the values are (even irrational ones).
    """
    trainable = set(net.trainable)
    dep: dict[str, bool] = {}
    for node in net.nodes:
        if node.op == "param":
            dep[node.name] = node.attr("name") in trainable
        else:
            dep[node.name] = any(dep[i] for i in node.inputs)
        if dep[node.name] and node.op in KINK_RULES:
            check = getattr(KINK_RULES[node.op], "may_kink", None)
            if check is None or check(node):
                return True
    return False


def forward(net: Network, preset: Preset, *, use_filter: bool = True) -> Forward:
    """Forward pass at w: float filter first, exact values and kinks when needed.

    Irrational values (sigmoid, tanh, batch-norm square roots) make the exact
    pass raise NotExact; then ball arithmetic (:mod:`formal.enclosure`) may
    still prove that no kink node exists, else the NotExact propagates
    ("unknown", naming the enclosure that straddles a kink).
    """
    if use_filter and not may_kink(net):
        return Forward(net, preset, exact=False)
    if use_filter and float_filter(net):
        return Forward(net, preset, exact=False)
    try:
        return exact_forward(net, preset)
    except NotExact as exc:
        if not use_filter:
            raise
        from formal.engine.ball import prove_no_kinks

        ok, why = prove_no_kinks(net)
        if ok:
            return Forward(net, preset, exact=False)
        raise NotExact(f"{exc}; {why}") from None


def exact_forward(net: Network, preset: Preset) -> Forward:
    fwd = Forward(net, preset, exact=True)
    trainable = set(net.trainable)
    for node in net.nodes:
        ins = [fwd.values[i] for i in node.inputs]
        if node.op == "param":
            fwd.depends[node.name] = node.attr("name") in trainable
        else:
            fwd.depends[node.name] = any(fwd.depends[i] for i in node.inputs)
        if node.op in KINK_RULES:
            kr = KINK_RULES[node.op]
            ctx = {"context": fwd} if getattr(kr, "uses_context", False) else {}
            value, state, kinks = kr.forward(node, ins, net, preset, **ctx)
            fwd.states[node.name] = state
            if kinks and fwd.depends[node.name]:
                fwd.by_node[node.name] = kinks
                fwd.kinks.extend(kinks)
        else:
            value = rule(EXACT, node.op, "exact")(node, ins, net)
        fwd.values[node.name] = value
    return fwd


def output_value(fwd: Forward) -> QArray:
    """f(w) exactly: the objective applied to the flattened output (n_obj,)."""
    net = fwd.net
    out = fwd.values[net.output]
    flat = out.num.reshape(-1, 1)
    obj = net.objective_matrix()
    from formal.core.qarray import int_matmul

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
    want_params: bool = True,
) -> Reverse:
    """Reverse mode from ``seeds`` (node -> (R, B, *shape) adjoints).

    With ``cut`` the kink nodes pass nothing down (their adjoints are still
    recorded): this yields the coefficients of the kink-graph reduction.
    Without it, kink nodes pass their proxy: this is AD.
    """
    net = fwd.net
    rows = next(iter(seeds.values())).shape[0]
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
        ins = [fwd.values[i] for i in node.inputs]
        need = [demand.get(i, False) for i in node.inputs]
        if node.op in KINK_RULES:
            kr = KINK_RULES[node.op]
            kinks = fwd.by_node.get(node.name, [])
            for k in kinks:
                kadj[:, index[k]] = kr.kink_adjoint(a, k)
            if need[0] is False:
                continue
            contributions: list[QArray | None] = [kr.vjp(node, ins, a, fwd.states[node.name], kinks, net, cut)]
        else:
            if not any(n is not False for n in need):
                continue
            contributions = rule(VJP, node.op, "vjp")(node, ins, a, net, need)
        for name, c in zip(node.inputs, contributions):
            if c is None or not fwd.depends[name]:
                continue
            prev = adj.get(name)
            adj[name] = c if prev is None else prev + c
    return Reverse(kadj, params)


def adjoint_demand(fwd: Forward, *, want_params: bool, cut: bool) -> dict[str, Any]:
    """Which adjoints a reverse pass must compute: True (all entries), an array of
    per-sample flat positions (only the kink entries of a kink op are read), or False.
    """
    net = fwd.net
    demand: dict[str, Any] = {}
    for node in net.nodes:
        if not fwd.depends.get(node.name, False):
            demand[node.name] = False
            continue
        if node.op == "param":
            demand[node.name] = want_params and node.attr("name") in net.trainable
            continue
        # a cut kink op still passes adjoints down through its smooth entries
        below = any(demand[i] is not False for i in node.inputs)
        kinks = fwd.by_node.get(node.name)
        if below:
            demand[node.name] = True
        elif kinks:
            demand[node.name] = np.unique(np.array([k.index for k in kinks], dtype=np.int64))
        else:
            demand[node.name] = False
    return demand


def jvp(fwd: Forward, directions: list[dict[int, Fraction]]) -> QArray:
    """Exact directional derivatives f'(w; d) -> (R, n_obj), for sparse directions d (group -> value)."""
    net = fwd.net
    entry_tangents = net.parameterization().tangents(directions)
    rows = len(directions)
    tans: dict[str, QArray | None] = {}
    for node in net.nodes:
        if node.op == "param":
            tans[node.name] = entry_tangents.get(node.attr("name"))
            continue
        if node.op in ("input", "const"):
            tans[node.name] = None
            continue
        ins = [fwd.values[i] for i in node.inputs]
        tin = [tans[i] for i in node.inputs]
        if node.op in KINK_RULES:
            t0 = tin[0]
            if t0 is None:
                tans[node.name] = None
                continue
            t0 = lift(t0, is_batched(net, node.inputs[0]))
            tans[node.name] = KINK_RULES[node.op].jvp(
                node, ins, t0, fwd.states[node.name], fwd.by_node.get(node.name, []), net
            )
        else:
            tans[node.name] = rule(JVP, node.op, "jvp")(node, ins, tin, net)
    t = tans[net.output]
    obj = net.objective_matrix()
    if t is None:
        z = np.zeros((rows, obj.shape[0]), dtype=object)
        z[...] = 0
        return QArray(z, 1)
    from formal.core.qarray import int_matmul

    return QArray(int_matmul(t.num.reshape(rows, -1), obj.num.T), t.den * obj.den)


def gradient_ad(fwd: Forward) -> QArray:
    """AD(w) with the preset's proxies: (n_obj, W) exact Jacobian rows."""
    net = fwd.net
    rev = reverse(fwd, {net.output: output_seeds(net)})
    return net.parameterization().collect(rev.params, output_seeds(net).shape[0])


__all__ = [
    "KinkNode",
    "KinkRule",
    "KINK_RULES",
    "Forward",
    "forward",
    "exact_forward",
    "reverse",
    "jvp",
    "gradient_ad",
    "output_value",
    "output_seeds",
]
