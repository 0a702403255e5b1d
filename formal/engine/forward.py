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

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset
from formal.core.kinks import KinkNode, KinkRule
from formal.core.network import Network
from formal.core.qarray import QArray
from formal.core.rules import RULES
from formal.errors import NotExact
from formal.ops.basic import ETA, EXACT, FLOAT, JVP, VJP, U, is_batched, lift, rule

KINK_RULES: dict[str, KinkRule] = RULES["kink"]


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


def float_pass(
    net: Network, *, stop_on_suspect: bool = True
) -> tuple[bool, dict[str, np.ndarray], dict[str, np.ndarray]]:
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
            ctx: dict[str, Any] = (
                {"context": (vals, errs)} if getattr(kr, "uses_context", False) else {}
            )
            v, e, suspect = kr.float_filter(
                node, [vals[i] for i in node.inputs], [errs[i] for i in node.inputs], net, **ctx
            )
            vals[node.name], errs[node.name] = v, e
            if suspect and stop_on_suspect:
                return False, vals, errs
            ok = ok and not suspect
        elif node.op in FLOAT:
            v, e = FLOAT[node.op](
                node, [vals[i] for i in node.inputs], [errs[i] for i in node.inputs], net
            )
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
            contributions: list[QArray | None] = [
                kr.vjp(node, ins, a, fwd.states[node.name], kinks, net, cut)
            ]
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
