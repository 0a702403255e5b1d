"""Rigorous ball enclosures (python-flint ``arb``) to rule out kinks near irrational values.

The exact engine works with rationals; sigmoid, tanh and a batch norm's
``1/sqrt(var + eps)`` have irrational values.  When the float64 filter cannot
rule out kinks downstream of such values, :func:`prove_no_kinks` evaluates the
network in ball arithmetic (midpoint-radius intervals with rigorous rounding,
at increasing precision): every activation pre-activation whose ball excludes
every kink is certainly off its kinks, and every max-pool window whose
maximum is certainly unique (or attained only by provably identical entries,
:mod:`formal.localsig`) has no tie.  If all are certified, f is analytic at
w* and AD is correct there.  A ball that still contains a kink at the highest
precision leaves the honest answer "unknown": the value may equal the kink
(a transcendental number cancelling exactly) and no finite enclosure decides.

Examples
--------
>>> from formal.enclosure import prove_no_kinks
>>> callable(prove_no_kinks)
True
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import flint
import numpy as np

from formal.core.activations import Activation
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.ops.basic import is_batched

PRECISIONS = (96, 320, 1200)


class Undecided(Exception):
    """An enclosure straddles a kink (or an op has no ball rule)."""


Rule = Callable[[Node, list[np.ndarray], Network, dict[str, np.ndarray]], np.ndarray]
BALL: dict[str, Rule] = {}


def to_balls(q: QArray) -> np.ndarray:
    """Object array of arb balls enclosing the exact values (at the current precision)."""
    den = int(q.den)
    flat = [flint.arb(flint.fmpq(int(n), den)) for n in q.num.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(q.shape)


def _cached(net: Network, key: str, q: QArray) -> np.ndarray:
    full = f"ball:{flint.ctx.prec}:{key}"
    hit = net.cache.get(full)
    if hit is None:
        hit = to_balls(q)
        net.cache[full] = hit
    return hit


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ball matrix product of 2-D object arrays (arb_mat: fast and rigorous)."""
    n, k = a.shape
    m = b.shape[1]
    if n == 0 or m == 0 or k == 0:
        z = np.empty((n, m), dtype=object)
        z[...] = flint.arb(0)
        return z
    prod = flint.arb_mat(n, k, a.reshape(-1).tolist()) * flint.arb_mat(k, m, b.reshape(-1).tolist())
    out = np.empty(n * m, dtype=object)
    out[:] = prod.entries()
    return out.reshape(n, m)


BALL["input"] = lambda node, ins, net, env: _cached(net, "<input>", net.inputs)
BALL["param"] = lambda node, ins, net, env: _cached(
    net, node.attr("name"), net.params[node.attr("name")]
)
BALL["const"] = lambda node, ins, net, env: to_balls(node.attr("value"))
BALL["add"] = lambda node, ins, net, env: ins[0] + ins[1]
BALL["sub"] = lambda node, ins, net, env: ins[0] - ins[1]
BALL["mul"] = lambda node, ins, net, env: ins[0] * ins[1]
BALL["neg"] = lambda node, ins, net, env: -ins[0]
BALL["scale"] = lambda node, ins, net, env: ins[0] * to_balls(node.attr("value"))
BALL["reshape"] = lambda node, ins, net, env: ins[0].reshape((ins[0].shape[0],) + node.shape)


def _lead(net: Network, node: Node) -> int:
    return 1 if is_batched(net, node.name) else 0


BALL["view"] = lambda node, ins, net, env: ins[0].reshape(
    ins[0].shape[: _lead(net, node)] + node.shape
)
BALL["transpose"] = lambda node, ins, net, env: ins[0].transpose(
    tuple(range(_lead(net, node))) + tuple(p + _lead(net, node) for p in node.attr("perm"))
)


def _rsqrt(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    r = to_balls(node.attr("value"))
    inv = np.vectorize(lambda v: 1 / v.sqrt(), otypes=[object])(r)
    return ins[0] * inv


BALL["rsqrt_scale"] = _rsqrt


def _pad(node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]) -> np.ndarray:
    v = Fraction(node.attr("value", 0))
    widths = [(0, 0)] + [tuple(p) for p in node.attr("pads")]
    x = ins[0]
    out = np.empty(tuple(d + a + b for d, (a, b) in zip(x.shape, widths)), dtype=object)
    out[...] = flint.arb(flint.fmpq(v.numerator, v.denominator))
    out[tuple(slice(a, a + d) for d, (a, _) in zip(x.shape, widths))] = x
    return out


BALL["pad"] = _pad


def _linear(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    x, w = ins
    return _matmul(x, np.ascontiguousarray(w.T))


def _matmul_rule(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    x, w = ins
    n = w.shape[0]
    return _matmul(x.reshape(-1, n), w).reshape(x.shape[:-1] + (w.shape[1],))


BALL["linear"] = _linear
BALL["matmul"] = _matmul_rule


def _conv(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    from formal.ops.conv import _conv_tables, gather_padded

    x, w = ins
    B, CO = x.shape[0], w.shape[0]
    tables, oh, ow, g = _conv_tables(node, x.shape[1:], w.shape)
    og = CO // g
    flat = x.reshape(B, -1)
    wf = w.reshape(CO, -1)
    parts = []
    for gi, tab in enumerate(tables):
        cols = gather_padded(flat, tab, flint.arb(0)).reshape(B * oh * ow, -1)
        parts.append(
            _matmul(cols, np.ascontiguousarray(wf[gi * og : (gi + 1) * og].T)).reshape(
                B, oh, ow, og
            )
        )
    y = np.concatenate(parts, axis=-1) if g > 1 else parts[0]
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _avgpool(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    from formal.ops.conv import _geometry, avg_divisors, gather_padded

    x = ins[0]
    B, C = x.shape[:2]
    idx, oh, ow = _geometry(node, x.shape[1:])
    div = avg_divisors(node, x.shape[1:])
    win = gather_padded(x.reshape(B, -1), idx, flint.arb(0))
    s = win.sum(axis=-1)
    inv = np.array([flint.arb(flint.fmpq(1, int(d))) for d in div], dtype=object)
    return (s * inv[None, None, :]).reshape(B, C, oh, ow)


BALL["conv2d"] = _conv
BALL["avgpool2d"] = _avgpool


def _poly(p: tuple[Fraction, ...], y: Any) -> Any:
    acc = flint.arb(0)
    for c in reversed(p):
        acc = acc * y + flint.arb(flint.fmpq(c.numerator, c.denominator))
    return acc


_SMOOTH: dict[str, Callable[[Any], Any]] = {
    "sigmoid": lambda y: 1 / (1 + (-y).exp()),
    "tanh": lambda y: y.tanh(),
}


def _act(node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]) -> np.ndarray:
    act: Activation = node.attr("activation")
    y = ins[0]
    flat = y.reshape(-1)
    out = np.empty(flat.size, dtype=object)
    if act.transcendental:
        fn = _SMOOTH.get(act.name)
        if fn is None:
            raise Undecided(f"no ball rule for activation {act.name}")
        out[:] = [fn(v) for v in flat]
        return out.reshape(y.shape)
    kinks = [flint.arb(flint.fmpq(c.numerator, c.denominator)) for c in act.kinks]
    for i, v in enumerate(flat):
        piece = 0
        for c in kinks:
            if v > c:
                piece += 1
            elif not v < c:
                where = np.unravel_index(i, y.shape)
                raise Undecided(
                    f"the enclosure of {node.name}{list(map(int, where[1:]))} (sample {int(where[0])}) contains the kink {c.mid()}"
                )
        out[i] = _poly(act.pieces[piece], v)
    return out.reshape(y.shape)


BALL["act"] = _act


def _ball_oracle(env: dict[str, np.ndarray]) -> Callable[[Node], np.ndarray]:
    from formal.engine.signature import constant_pieces

    def oracle(node: Node) -> np.ndarray:
        act: Activation = node.attr("activation")
        y = env[node.inputs[0]]
        code = np.full(y.shape, -1, dtype=np.int64)
        kinks = [flint.arb(flint.fmpq(c.numerator, c.denominator)) for c in act.kinks]
        for k in constant_pieces(act):
            for idx in np.ndindex(*y.shape):
                v = y[idx]
                if (k == 0 or v > kinks[k - 1]) and (k == len(kinks) or v < kinks[k]):
                    code[idx] = k
        return code

    return oracle


def _maxpool(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
    from formal.engine.signature import signatures
    from formal.ops.pool import _tables

    x = ins[0]
    B = x.shape[0]
    safe, valid, oh, ow = _tables(node, x.shape[1:])
    flat = x.reshape(B, -1)
    sig = None
    out = np.empty((B, safe.shape[0]), dtype=object)
    for b in range(B):
        for o in range(safe.shape[0]):
            entries = [int(safe[o, k]) for k in range(safe.shape[1]) if valid[o, k]]
            vals = [flat[b, i] for i in entries]
            # candidates: entries not certainly below some other entry
            cand = [i for i, v in zip(entries, vals) if not any(v < u for u in vals)]
            if len(cand) > 1:
                if sig is None:
                    sig = signatures(net, node.inputs[0], _ball_oracle(env)).reshape(B, -1)
                if len({int(sig[b, i]) for i in cand}) > 1:
                    raise Undecided(
                        f"max-pool {node.name} window {o} (sample {b}): a tie cannot be ruled out"
                    )
            out[b, o] = flat[b, cand[0]]
    return out.reshape((B,) + node.shape)


BALL["maxpool2d"] = _maxpool


def _evaluate(net: Network) -> None:
    env: dict[str, np.ndarray] = {}
    for node in net.nodes:
        rule = BALL.get(node.op)
        if rule is None:
            raise Undecided(f"op {node.op!r} has no rule in the ball table")
        env[node.name] = rule(node, [env[i] for i in node.inputs], net, env)


def prove_no_kinks(net: Network) -> tuple[bool, str]:
    """(True, "") if ball arithmetic proves no kink node at w; else (False, why)."""
    saved = flint.ctx.prec
    why = ""
    try:
        for prec in PRECISIONS:
            flint.ctx.prec = prec
            try:
                _evaluate(net)
                return True, ""
            except Undecided as exc:
                why = f"{exc} (ball arithmetic at {prec} bits)"
    finally:
        flint.ctx.prec = saved
    return False, why


__all__ = ["prove_no_kinks", "BALL", "to_balls", "PRECISIONS"]
