"""The kernel's exact evaluation and tangent passes over a parsed network.

Tangents are sparse linear forms over the parameter coordinates (dicts
``coordinate -> Fraction``).  :func:`propagate` runs one tangent pass in which
every kink node's map is chosen by a callback: a sign pattern, AD's proxies,
or the true directional derivative along one direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from formal.verify.net import Layer, Model, Proxy, Shape, Vec, override_value, size


# -- exact evaluation ----------------------------------------------------------------
def _unravel(flat: int, shape: Shape) -> list[int]:
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return list(reversed(idx))


def _windows(layer: Layer) -> list[list[tuple[int, int | None]]]:
    """For each output entry (per sample): (kernel position, input flat index or None)."""
    C, H, W = layer.shape_in
    _, OH, OW = layer.shape_out
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.attrs[k] for k in ("k", "s", "p", "d"))
    out = []
    for c in range(C):
        for oy in range(OH):
            for ox in range(OW):
                win: list[tuple[int, int | None]] = []
                for a in range(kh):
                    for bb in range(kw):
                        y, x = oy * sh - ph + a * dh, ox * sw - pw + bb * dw
                        inside = 0 <= y < H and 0 <= x < W
                        win.append((a * kw + bb, (c * H + y) * W + x if inside else None))
                out.append(win)
    return out


def _conv_terms(layer: Layer) -> list[list[tuple[int, int]]]:
    """For each output entry: (weight flat index, input flat index) pairs."""
    C, H, W = layer.shape_in
    CO, OH, OW = layer.shape_out
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.attrs[k] for k in ("k", "s", "p", "d"))
    g = layer.attrs["groups"]
    cin, cout = C // g, CO // g
    out = []
    for co in range(CO):
        grp = co // cout
        for oy in range(OH):
            for ox in range(OW):
                terms = []
                for ci in range(cin):
                    c = grp * cin + ci
                    for a in range(kh):
                        for bb in range(kw):
                            y, x = oy * sh - ph + a * dh, ox * sw - pw + bb * dw
                            if 0 <= y < H and 0 <= x < W:
                                terms.append(
                                    (((co * cin + ci) * kh + a) * kw + bb, (c * H + y) * W + x)
                                )
                out.append(terms)
    return out


def evaluate(m: Model) -> None:
    """The exact forward pass: fills ``m.pre`` and ``m.values``."""
    m.pre, m.values = [], []
    for layer in m.layers:
        pre_l, val_l = [], []
        src = layer.attrs["input"]
        for b in range(m.batch):
            x = m.inputs[b] if src < 0 else m.values[src][b]
            pre_l.append(_linear_value(m, layer, x, b))
            val_l.append([layer.act.value(v) for v in pre_l[-1]])
        m.pre.append(pre_l)
        m.values.append(val_l)


def _linear_value(m: Model, layer: Layer, x: list[Fraction], b: int) -> list[Fraction]:
    i, op = layer.index, layer.op
    if op == "dense":
        w = m.params[f"{i}.weight"]
        n = len(x)
        out = [
            sum((w[u * n + j] * x[j] for j in range(n)), Fraction(0))
            for u in range(layer.shape_out[0])
        ]
        if layer.attrs["bias"]:
            out = [v + c for v, c in zip(out, m.params[f"{i}.bias"])]
        return out
    if op == "conv2d":
        w = m.params[f"{i}.weight"]
        per = size(layer.shape_out[1:])
        out = [sum((w[a] * x[j] for a, j in t), Fraction(0)) for t in _conv_terms(layer)]
        if layer.attrs["bias"]:
            bias = m.params[f"{i}.bias"]
            out = [v + bias[k // per] for k, v in enumerate(out)]
        return out
    if op == "maxpool2d":
        return [max(x[j] for _, j in win if j is not None) for win in _windows(layer)]
    if op == "avgpool2d":
        return [
            sum((x[j] for _, j in win if j is not None), Fraction(0)) / _count(layer, win)
            for win in _windows(layer)
        ]
    if op == "flatten":
        return list(x)
    src = layer.attrs["from"]
    other = m.inputs[b] if src < 0 else m.values[src][b]
    return [a + c for a, c in zip(x, other)]


def _count(layer: Layer, win: list[tuple[int, int | None]]) -> int:
    if layer.attrs["cip"]:
        return len(win)  # padded positions count; positions past the padding do not (rare)
    return sum(1 for _, j in win if j is not None)


def outputs(m: Model) -> list[Fraction]:
    """The network's output rows: objective rows, or every (sample, unit) output."""
    flat = [v for b in range(m.batch) for v in m.values[-1][b]]
    if m.objective is None:
        return flat
    return [sum((c * v for c, v in zip(row, flat)), Fraction(0)) for row in m.objective]


def output_labels(m: Model) -> list[str]:
    """One label per output row, as ``formal check`` names them."""
    if m.objective is not None:
        return ["objective"]
    shape = (m.batch,) + m.layers[-1].shape_out
    return ["out[" + ",".join(map(str, _unravel(j, shape))) + "]" for j in range(size(shape))]


# -- tangent passes --------------------------------------------------------------------
KinkId = tuple[str, int, int, int]
"""("act" | "maxpool", layer index, sample, per-sample flat unit index)."""


def kink_id_text(k: KinkId) -> str:
    """A readable kink id, e.g. ``1.act[s0,u2]``."""
    return f"{k[1]}.{k[0]}[s{k[2]},u{k[3]}]"


@dataclass(frozen=True)
class ActKink:
    """What a kink callback learns at an activation kink."""

    L: Vec
    d_minus: Fraction
    d_plus: Fraction
    proxy: Callable[[], Fraction]


@dataclass(frozen=True)
class TieKink:
    """What a kink callback learns at a max-pool tie: the tied inputs, AD's choice."""

    entries: list[tuple[int, Vec]]  # (input flat index, tangent), window order
    ad_choice: int  # input flat index AD sends the gradient to


KinkFn = Callable[[KinkId, Any], Vec]


def axpy(acc: Vec, a: Fraction, v: Vec) -> None:
    """acc += a v (in place)."""
    if a:
        for k, x in v.items():
            acc[k] = acc.get(k, Fraction(0)) + a * x


def is_zero(v: Vec) -> bool:
    """True when every coefficient is 0."""
    return not any(v.values())


def dot(v: Vec, d: Vec) -> Fraction:
    """<v, d>."""
    return sum((x * d.get(k, Fraction(0)) for k, x in v.items()), Fraction(0))


def sub(a: Vec, b: Vec) -> Vec:
    """a - b."""
    out = dict(a)
    axpy(out, Fraction(-1), b)
    return out


def coordinate_seed(m: Model) -> Callable[[str, int], Vec]:
    """Entry tangents of the identity Jacobian: entry -> {its coordinate: its sign}."""
    return lambda name, j: (
        {m.coord[(name, j)][0]: Fraction(m.coord[(name, j)][1])} if (name, j) in m.coord else {}
    )


def direction_seed(m: Model, d: Vec) -> Callable[[str, int], Vec]:
    """Entry tangents of one direction d (coordinate -> value), as forms over key 0."""

    def seed(name: str, j: int) -> Vec:
        c = m.coord.get((name, j))
        if c is None:
            return {}
        v = d.get(c[0], Fraction(0))
        return {0: c[1] * v} if v else {}

    return seed


def propagate(m: Model, seed: Callable[[str, int], Vec], kink: KinkFn, preset: Proxy) -> list[Vec]:
    """One tangent pass; ``kink`` gives the tangent out of every kink node."""
    tan: list[list[list[Vec]]] = []
    for layer in m.layers:
        tl = []
        src = layer.attrs["input"]
        for b in range(m.batch):
            xv = m.inputs[b] if src < 0 else m.values[src][b]
            xt = [{} for _ in xv] if src < 0 else tan[src][b]
            pre = _linear_tangent(m, layer, xv, xt, b, seed, kink, tan, preset.tie)
            tl.append(_act_tangent(m, layer, b, pre, kink, preset))
        tan.append(tl)
    flat = [v for b in range(m.batch) for v in tan[-1][b]]
    if m.objective is None:
        return flat
    rows = []
    for row in m.objective:
        acc: Vec = {}
        for c, v in zip(row, flat):
            axpy(acc, c, v)
        rows.append(acc)
    return rows


def _act_tangent(
    m: Model, layer: Layer, b: int, pre: list[Vec], kink: KinkFn, preset: Proxy
) -> list[Vec]:
    act = layer.act
    if act.name == "identity":
        return pre
    kinks = act.kinks()
    out = []
    for u, (x, t) in enumerate(zip(m.pre[layer.index][b], pre)):
        hit = next((k for k, (c, _, _) in enumerate(kinks) if c == x), None)
        if hit is None:
            acc: Vec = {}
            axpy(acc, act.derivative(x), t)
            out.append(acc)
            continue
        _, dm, dp = kinks[hit]
        ov = layer.overrides[u] if layer.overrides is not None else None

        def proxy(ov: Any = ov, hit: int = hit) -> Fraction:
            return preset.rule(act, hit) if ov is None else override_value(ov, act, hit)

        out.append(kink(("act", layer.index, b, u), ActKink(t, dm, dp, proxy)))
    return out


def _linear_tangent(
    m: Model,
    layer: Layer,
    xv: list[Fraction],
    xt: list[Vec],
    b: int,
    seed: Callable[[str, int], Vec],
    kink: KinkFn,
    tan: list[list[list[Vec]]],
    tie_rule: str,
) -> list[Vec]:
    i, op = layer.index, layer.op
    if op == "dense":
        w = m.params[f"{i}.weight"]
        n = len(xv)
        out = []
        for u in range(layer.shape_out[0]):
            acc: Vec = {}
            for j in range(n):
                axpy(acc, w[u * n + j], xt[j])
                axpy(acc, xv[j], seed(f"{i}.weight", u * n + j))
            if layer.attrs["bias"]:
                axpy(acc, Fraction(1), seed(f"{i}.bias", u))
            out.append(acc)
        return out
    if op == "conv2d":
        w = m.params[f"{i}.weight"]
        per = size(layer.shape_out[1:])
        out = []
        for k, terms in enumerate(_conv_terms(layer)):
            acc = {}
            for a, j in terms:
                axpy(acc, w[a], xt[j])
                axpy(acc, xv[j], seed(f"{i}.weight", a))
            if layer.attrs["bias"]:
                axpy(acc, Fraction(1), seed(f"{i}.bias", k // per))
            out.append(acc)
        return out
    if op == "maxpool2d":
        out = []
        tie_attr = layer.attrs.get("tie")
        for k, win in enumerate(_windows(layer)):
            top = m.pre[i][b][k]
            at = [j for _, j in win if j is not None and xv[j] == top]
            if len(at) == 1:
                out.append(dict(xt[at[0]]))
                continue
            if isinstance(tie_attr, list):
                rule = tie_attr[k % len(tie_attr)]
            else:
                rule = tie_attr or tie_rule
            choice = at[0] if rule == "first" else at[-1]
            out.append(kink(("maxpool", i, b, k), TieKink([(j, xt[j]) for j in at], choice)))
        return out
    if op == "avgpool2d":
        out = []
        for win in _windows(layer):
            acc = {}
            cnt = Fraction(1, _count(layer, win))
            for _, jj in win:
                if jj is not None:
                    axpy(acc, cnt, xt[jj])
            out.append(acc)
        return out
    if op == "flatten":
        return list(xt)
    src = layer.attrs["from"]
    other = [{} for _ in xv] if src < 0 else tan[src][b]
    out = []
    for mine, theirs in zip(xt, other):
        acc = dict(mine)
        axpy(acc, Fraction(1), theirs)
        out.append(acc)
    return out


def find_kinks(m: Model) -> list[KinkId]:
    """Every kink node, in (layer, sample, unit) order: a tangent pass that records them."""
    seen: list[KinkId] = []

    def record(k: KinkId, info: Any) -> Vec:
        seen.append(k)
        return {}

    propagate(m, lambda name, j: {}, record, Proxy("left", lambda a, i: Fraction(0)))
    return sorted(seen, key=kink_order)


def kink_order(k: KinkId) -> tuple[int, int, int, int]:
    """The canonical (topological) order: layer, sample, pool before activation, unit."""
    return (k[1], k[2], 0 if k[0] == "maxpool" else 1, k[3])


def tie_classes(info: TieKink) -> list[set[int]]:
    """The tied inputs grouped by identical tangent rows, in window order."""
    out: list[tuple[Vec, set[int]]] = []
    for j, v in info.entries:
        for rep, members in out:
            if is_zero(sub(rep, v)):
                members.add(j)
                break
        else:
            out.append((v, {j}))
    return [m for _, m in out]
