"""Put a network exactly on kinks: one unit per kinked layer, biases in M, inputs solved exactly.

Used by the corpus tests.  For each activation layer with kinks (in order),
pick the unit closest to a kink among units whose pre-activation is not
shared by identical entries, and set its bias to the member of M nearest to
``-(y - b)`` (closed form; the bias stays a machine number).  The residuals
``y_l`` left by rounding the biases are then cancelled by moving L input
coordinates (inputs are exact reals, any value): within the current
activation pattern the pre-activations are affine in the input, so one exact
linear solve ``G dx = -y`` puts every chosen unit exactly on its kink.  The
Jacobian G comes from a reverse pass of the engine with the input made a
parameter.  The result is re-checked by an exact forward pass.

Also: exact one-sided difference quotients along one parameter, an
independent check of non-differentiability (a bias-only ray is piecewise
linear in t, so below the first breakpoint the quotient is exact).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from formal.core.activations import parse_preset
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.core.signatures import exact_oracle, signatures
from formal.engine.forward import exact_forward, output_value, reverse

PRESET = parse_preset("pytorch")


def with_values(
    net: Network, params: dict[str, QArray] | None = None, inputs: QArray | None = None
) -> Network:
    return dataclasses.replace(
        net,
        params=dict(net.params if params is None else params),
        inputs=net.inputs if inputs is None else inputs,
        cache={},
    )


def bias_of(net: Network, act: Node) -> tuple[str, int] | None:
    """(bias parameter, units per bias entry) added into an activation's pre-activation.

    Follows ``add`` nodes (a residual sum adds the bias of one branch with
    coefficient 1) down to a trainable parameter, directly or through a ``view``.
    """
    stack = [act.inputs[0]]
    while stack:
        pre = net.node(stack.pop(0))
        if pre.op != "add" or pre.shape != act.shape:
            continue
        for i in pre.inputs:
            n = net.node(i)
            if n.op == "view":
                n = net.node(n.inputs[0])
            if n.op == "param" and n.attr("name") in net.trainable:
                size = int(np.prod(net.params[n.attr("name")].shape))
                return n.attr("name"), int(np.prod(act.shape)) // size
        stack.extend(pre.inputs)
    return None


def _set(q: QArray, flat: int, value: Fraction) -> QArray:
    fr = q.to_fractions().reshape(-1)
    fr[flat] = value
    return QArray.from_fractions(fr.reshape(q.shape))


def input_jacobian(net: Network, rows: list[tuple[str, int]]) -> np.ndarray:
    """Exact d y_r / d x for entries ``(node, per-sample flat index)`` (B = 1), shape (R, n_in)."""
    shape = net.nodes[0].shape
    x_name = net.nodes[0].name
    dx = Node(
        "p:__dx",
        "param",
        (),
        shape,
        (
            (
                "name",
                "__dx",
            ),
        ),
    )
    moved = Node("__x", "add", (x_name, "p:__dx"), shape)
    nodes = [net.nodes[0], dx, moved]
    for n in net.nodes[1:]:
        nodes.append(
            dataclasses.replace(n, inputs=tuple("__x" if i == x_name else i for i in n.inputs))
        )
    zeros = QArray.zeros(shape)
    aug = dataclasses.replace(
        net,
        nodes=tuple(nodes),
        params={**net.params, "__dx": zeros},
        param_order=net.param_order + ("__dx",),
        trainable=("__dx",),
        ties=(),
        cache={},
    )
    fwd = exact_forward(aug, PRESET)
    seeds: dict[str, QArray] = {}
    R = len(rows)
    for r, (name, idx) in enumerate(rows):
        if name not in seeds:
            seeds[name] = QArray.zeros((R, 1) + aug.node(name).shape)
        seeds[name].num.reshape(R, -1)[r, idx] = 1
    rev = reverse(fwd, seeds)
    g = rev.params.get("__dx")
    if g is None:
        return np.zeros((R, int(np.prod(shape))), dtype=object)
    return g.to_fractions().reshape(R, -1)


def _solve_pivoted(G: np.ndarray, rhs: list[Fraction]) -> dict[int, Fraction]:
    """Solve G[:, cols] dx = rhs for L pivot columns chosen greedily (largest entries)."""
    L = G.shape[0]
    M = [list(map(Fraction, row)) for row in G]
    b = list(rhs)
    cols: list[int] = []
    for r in range(L):
        j = max(range(G.shape[1]), key=lambda c: abs(M[r][c]) if c not in cols else -1)
        if M[r][j] == 0:
            raise ValueError("singular input Jacobian")
        cols.append(j)
        for r2 in range(L):
            if r2 != r and M[r2][j]:
                f = M[r2][j] / M[r][j]
                M[r2] = [a - f * c for a, c in zip(M[r2], M[r])]
                b[r2] -= f * b[r]
    return {cols[r]: b[r] / M[r][cols[r]] for r in range(L)}


def _place(
    net: Network, acts: list[Node], fmt, limit: int
) -> tuple[dict[str, QArray], list[tuple[str, int]]]:
    """Bias-only step: per layer, the unit nearest its kink gets the nearest bias in M."""
    params = dict(net.params)
    chosen: list[tuple[str, int]] = []  # (pre-activation node, unit)
    for act in acts:
        found = bias_of(net, act)
        assert found is not None
        bname, per = found
        cur = with_values(net, params)
        fwd = exact_forward(cur, PRESET)
        y = fwd.values[act.inputs[0]].to_fractions().reshape(-1)
        sig = signatures(cur, act.inputs[0], exact_oracle(fwd.values)).reshape(-1)
        ids, counts = np.unique(sig, return_counts=True)
        unique = counts[np.searchsorted(ids, sig)] == 1
        c = act.attr("activation").kinks[0]
        order = sorted(
            (u for u in range(y.size) if unique[u] and y[u] != c), key=lambda u: abs(y[u] - c)
        )
        for u in order[:limit]:
            e = u // per
            b_old = params[bname].to_fractions().reshape(-1)[e]
            b_new = fmt.round_nearest_even(c - (y[u] - b_old))
            if b_new is not None:
                params[bname] = _set(params[bname], e, b_new)
                chosen.append((act.inputs[0], u))
                break
    return params, chosen


def _residuals(net: Network, chosen: list[tuple[str, int]]) -> list[Fraction]:
    fwd = exact_forward(net, PRESET)
    return [
        fwd.values[n].item((0, *(int(k) for k in np.unravel_index(u, net.node(n).shape))))
        - _kink_of(net, n)
        for n, u in chosen
    ]


def hit_kinks(net: Network, numbers=None, limit: int = 30) -> tuple[Network, list[tuple[str, int]]]:
    """A copy of ``net`` with one unit of every kinked layer exactly at its kink (B = 1).

    When rounding the biases leaves residuals, the inputs are solved for; that
    needs one input coordinate per layer, so with more layers than inputs
    only the last ``n_in`` layers get a kink.
    """
    fmt = numbers or net.numbers
    acts = [
        n for n in net.nodes if n.op == "act" and n.attr("activation").kinks and bias_of(net, n)
    ]
    params, chosen = _place(net, acts, fmt, limit)
    cur = with_values(net, params)
    res = _residuals(cur, chosen)
    n_in = int(np.prod(net.nodes[0].shape))
    if any(res) and len(chosen) > n_in:
        params, chosen = _place(net, acts[-n_in:], fmt, limit)
        cur = with_values(net, params)
        res = _residuals(cur, chosen)
    for _ in range(3):  # Newton steps on the piecewise-affine map (one suffices within a pattern)
        if not any(res):
            return cur, chosen
        G = input_jacobian(cur, chosen)
        dx = _solve_pivoted(G, [-r for r in res])
        x = cur.inputs.to_fractions().reshape(-1)
        for j, v in dx.items():
            x[j] += v
        cur = with_values(cur, inputs=QArray.from_fractions(x.reshape(cur.inputs.shape)))
        res = _residuals(cur, chosen)
    raise AssertionError("could not put the chosen units on their kinks")


def _kink_of(net: Network, pre: str) -> Fraction:
    act = next(n for n in net.nodes if n.op == "act" and n.inputs[0] == pre)
    return act.attr("activation").kinks[0]


def quotients(net: Network, param: str, flat: int, t: Fraction) -> list[tuple[Fraction, Fraction]]:
    """Exact (f(w + t e) - f(w)) / t and (f(w - t e) - f(w)) / t for every output."""
    f0 = net.cache.get("kinkhit:f0")
    if f0 is None:
        f0 = output_value(exact_forward(net, PRESET)).to_fractions()
        net.cache["kinkhit:f0"] = f0
    out = []
    for s in (1, -1):
        q = net.params[param].to_fractions().reshape(-1).copy()
        q[flat] += s * t
        moved = with_values(
            net, {**net.params, param: QArray.from_fractions(q.reshape(net.params[param].shape))}
        )
        out.append((output_value(exact_forward(moved, PRESET)).to_fractions() - f0) / t)
    return list(zip(out[0], out[1]))


def bias_rays_nonlinear(
    net: Network,
    chosen: list[tuple[str, int]],
    t: Fraction = Fraction(1, 2**70),
    *,
    first: bool = False,
) -> bool:
    """Independent evidence: is ``s -> f(w + s e_b)`` non-linear at 0?

    Here b is the bias of a chosen unit.

    A bias-only ray is piecewise linear in s, so below its first breakpoint
    the one-sided quotients are exact directional derivatives; equal quotients
    at t and t/2 confirm that t is below it.  ``q+ + q- != 0`` for some output
    means f'(w; e) != -f'(w; -e): f is not differentiable at w.  With
    ``first``, stop at the first such ray (topmost chosen unit first).
    """
    found = False
    for pre, u in reversed(chosen) if first else chosen:
        act = next(n for n in net.nodes if n.op == "act" and n.inputs[0] == pre)
        bias = bias_of(net, act)
        assert bias is not None
        name, per = bias
        q1 = quotients(net, name, u // per, t)
        q2 = quotients(net, name, u // per, t / 2)
        assert q1 == q2, "t is not below the first breakpoint of the ray"
        found = found or any(a + b != 0 for a, b in q1)
        if found and first:
            return True
    return found


__all__ = [
    "hit_kinks",
    "quotients",
    "bias_rays_nonlinear",
    "bias_of",
    "with_values",
    "input_jacobian",
]
