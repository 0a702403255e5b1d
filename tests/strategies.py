"""Hypothesis strategies: small dense formal-net/1 networks with kinks forced.

Parameters are drawn from a grid of small dyadic values that every format
used here (binary32, binary16, bfloat16, e4m3) represents, with many zeros
(zero weights, zero inputs, dead units).  Kinks are then *forced*: for some
units a bias is solved exactly so that the pre-activation of one sample
equals a kink of the activation (or, without a bias, one weight entry is
solved); a solved value is kept only when it is a member of the network's
number format (frozen tensors may hold any rational).  Ties (with signs) and
frozen tensors are optional variants.  Values are written as ``"p/q"`` text.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import strategies as st
from oracle import make_act

from formal.core.numbers import parse_format

F = Fraction
GRID = [
    F(0),
    F(0),
    F(0),
    F(1, 4),
    F(-1, 4),
    F(1, 2),
    F(-1, 2),
    F(3, 4),
    F(-3, 4),
    F(1),
    F(-1),
    F(3, 2),
    F(-3, 2),
    F(2),
    F(-2),
    F(3),
    F(-3),
]
INPUT_GRID = [F(0), F(0), F(1), F(-1), F(1, 2), F(-1, 2), F(2), F(-2), F(3), F(1, 3)]
FROZEN_EXTRA = [F(1, 3), F(-2, 3), F(5, 7)]
FORMATS = ["binary32", "binary16", "bfloat16", "e4m3"]
# binary64 members of wildly different magnitudes (exact cancellation, huge denominators)
WIDE_GRID = [
    F(0),
    F(0),
    F(1),
    F(-1),
    F(2) ** 300,
    -(F(2) ** 300),
    F(1, 2**300),
    -F(1, 2**300),
    F(2) ** 52 + 1,
    1 + F(1, 2**52),
    -(1 + F(1, 2**52)),
    F(3, 2**1074),
    F(2) ** 1000,
    F(1, 2**1022),
]
WIDE_INPUTS = [F(0), F(1), F(-1), F(1, 3), F(2) ** 200, F(1, 10**30), F(-7, 2**600)]

ActivationSpec = str | dict[str, Any]  # a formal-net/1 activation: a name or a dict

KINKED: list[ActivationSpec] = [
    "relu",
    {"name": "leaky_relu", "slope": "1/4"},
    {"name": "leaky_relu", "slope": "1/100"},
    "relu6",
    "hardtanh",
    {"name": "hardtanh", "min": "-1/2", "max": 2},
    {"name": "clip", "min": 0, "max": 1},
    "hardsigmoid",
    "hardswish",
    "abs",
]
ACTIVATIONS = KINKED + ["identity"]
PL_KINKED = [a for a in KINKED if a != "hardswish"]


def _text(q: Fraction) -> str:
    return str(Fraction(q))


def _act_of(spec: Any):
    return make_act(spec)[0]


@st.composite
def networks(
    draw: st.DrawFn,
    *,
    max_layers: int = 3,
    max_width: int = 3,
    max_inputs: int = 2,
    batch: tuple[int, int] = (1, 2),
    bias: str = "any",  # "any" | "all" | "none"
    activations: list[Any] | None = None,
    hypothesis_h: bool = False,
    ties: bool = True,
    frozen: bool = True,
    objective: bool = True,
    force: bool = True,
    formats: list[str] | None = None,
    overrides: bool = False,
    grid: list[Fraction] | None = None,
    input_grid: list[Fraction] | None = None,
) -> dict[str, Any]:
    """A formal-net/1 document.

    ``hypothesis_h``: B = 1 and every kinked unit has its own trainable bias.
    """
    acts = activations if activations is not None else ACTIVATIONS
    fmt_name = draw(st.sampled_from(formats or FORMATS))
    fmt = parse_format(fmt_name)
    B = 1 if hypothesis_h else draw(st.integers(*batch))
    n_in = draw(st.integers(1, max_inputs))
    n_layers = draw(st.integers(1, max_layers))
    widths = [draw(st.integers(1, max_width)) for _ in range(n_layers)]
    specs = [draw(st.sampled_from(acts)) for _ in range(n_layers)]
    kinked = [bool(_act_of(s).kinks) for s in specs]
    if bias == "all":
        has_bias = [True] * n_layers
    elif bias == "none":
        has_bias = [False] * n_layers
    else:
        has_bias = [draw(st.booleans()) for _ in range(n_layers)]
    if hypothesis_h:
        has_bias = [hb or k for hb, k in zip(has_bias, kinked)]
    names: list[str] = []
    for i in range(n_layers):
        names.append(f"{i}.weight")
        if has_bias[i]:
            names.append(f"{i}.bias")
    # trainable set
    trainable = list(names)
    if frozen and draw(st.integers(0, 3)) == 0:
        keep = [n for n in names if draw(st.booleans())]
        if hypothesis_h:
            keep = sorted(
                set(keep) | {f"{i}.bias" for i in range(n_layers) if kinked[i]}, key=names.index
            )
        trainable = keep or [names[0]]
    # ties: pairs (head, tail) of trainable weight entries, head before tail
    shapes: dict[str, tuple[int, ...]] = {}
    width = n_in
    for i in range(n_layers):
        shapes[f"{i}.weight"] = (widths[i], width)
        if has_bias[i]:
            shapes[f"{i}.bias"] = (widths[i],)
        width = widths[i]
    slots = [
        (n, (u, j))
        for n in trainable
        if n.endswith("weight")
        for u in range(shapes[n][0])
        for j in range(shapes[n][1])
    ]
    tie_pairs: list[tuple[tuple[str, tuple[int, ...]], tuple[str, tuple[int, ...]], int]] = []
    if ties and len(slots) >= 2 and draw(st.integers(0, 3)) == 0:
        a, b = sorted(
            draw(st.lists(st.integers(0, len(slots) - 1), min_size=2, max_size=2, unique=True))
        )
        tie_pairs.append((slots[a], slots[b], draw(st.sampled_from([1, -1]))))
    if ties and not hypothesis_h and draw(st.integers(0, 5)) == 0:
        cand = [
            i
            for i in range(n_layers)
            if has_bias[i] and widths[i] >= 2 and f"{i}.bias" in trainable
        ]
        if cand:
            i = draw(st.sampled_from(cand))
            tie_pairs.append(
                ((f"{i}.bias", (0,)), (f"{i}.bias", (1,)), draw(st.sampled_from([1, -1])))
            )
    tied_entries = {p[0] for p in tie_pairs} | {p[1] for p in tie_pairs}
    tail_of = {t: (h, s) for h, t, s in tie_pairs}

    values = grid or GRID
    X = [[draw(st.sampled_from(input_grid or INPUT_GRID)) for _ in range(n_in)] for _ in range(B)]
    params: dict[str, Any] = {}
    z = [list(x) for x in X]
    for i in range(n_layers):
        act = _act_of(specs[i])
        wname, bname = f"{i}.weight", f"{i}.bias"
        grid_w = values + (FROZEN_EXTRA if wname not in trainable else [])
        W = [[draw(st.sampled_from(grid_w)) for _ in range(len(z[0]))] for _ in range(widths[i])]
        bvec = None
        if has_bias[i]:
            grid_b = values + [F(-8)] + (FROZEN_EXTRA if bname not in trainable else [])
            bvec = [draw(st.sampled_from(grid_b)) for _ in range(widths[i])]
        params[wname], params[bname] = W, bvec

        def value(name: str, idx: tuple[int, ...]) -> Fraction:
            t = params[name]
            return t[idx[0]][idx[1]] if len(idx) == 2 else t[idx[0]]

        def assign(name: str, idx: tuple[int, ...], v: Fraction) -> None:
            if len(idx) == 2:
                params[name][idx[0]][idx[1]] = v
            else:
                params[name][idx[0]] = v

        for u in range(widths[i]):  # apply ties whose head is already drawn
            for idx in [(u, j) for j in range(len(z[0]))]:
                if (wname, idx) in tail_of:
                    (hn, hi), s = tail_of[(wname, idx)]
                    assign(wname, idx, s * value(hn, hi))
            if bvec is not None and (bname, (u,)) in tail_of:
                (hn, hi), s = tail_of[(bname, (u,))]
                assign(bname, (u,), s * value(hn, hi))

        def pre(b: int, u: int, W=W, z=z, bvec=bvec) -> Fraction:
            y = sum((W[u][j] * z[b][j] for j in range(len(z[b]))), F(0))
            return y + (bvec[u] if bvec is not None else 0)

        if force and act.kinks:
            for u in range(widths[i]):
                mode = draw(st.integers(0, 2))  # 0: leave, 1-2: force a kink
                if mode == 0:
                    continue
                b = draw(st.integers(0, B - 1))
                c = draw(st.sampled_from(act.kinks))
                if bvec is not None and (bname, (u,)) not in tied_entries:
                    v = c - (pre(b, u) - bvec[u])
                    if bname not in trainable or fmt.contains(v):
                        bvec[u] = v
                    continue
                # no bias (or a tied one): solve one free weight entry of the row
                for j in range(len(z[b])):
                    if z[b][j] == 0 or (wname, (u, j)) in tied_entries:
                        continue
                    v = W[u][j] + (c - pre(b, u)) / z[b][j]
                    if wname not in trainable or fmt.contains(v):
                        W[u][j] = v
                    break
        z = [[act.value(pre(b, u)) for u in range(widths[i])] for b in range(B)]

    if overrides:  # per-layer proxy overrides (f2-style): a number, a preset, per kink, per unit
        for i, spec in enumerate(specs):
            act = _act_of(spec)
            if act.kinks and draw(st.integers(0, 2)) == 0:
                base = {"name": spec} if isinstance(spec, str) else dict(spec)
                per_kink = st.lists(
                    st.sampled_from(["0", "1", "1/2", "-1"]),
                    min_size=len(act.kinks),
                    max_size=len(act.kinks),
                )
                base["proxy"] = draw(
                    st.one_of(
                        st.sampled_from(["0", "1", "1/2", "right", "left"]),
                        per_kink,
                        st.lists(per_kink, min_size=widths[i], max_size=widths[i]),
                    )
                )
                specs[i] = base
    doc: dict[str, Any] = {
        "format": "formal-net/1",
        "numbers": fmt_name,
        "inputs": [[_text(v) for v in x] for x in X],
        "layers": [
            {"type": "dense", "units": widths[i], "bias": has_bias[i], "activation": specs[i]}
            for i in range(n_layers)
        ],
        "params": {},
    }
    for i in range(n_layers):
        doc["params"][f"{i}.weight"] = [[_text(v) for v in row] for row in params[f"{i}.weight"]]
        if has_bias[i]:
            doc["params"][f"{i}.bias"] = [_text(v) for v in params[f"{i}.bias"]]
    if trainable != names:
        doc["trainable"] = trainable
    if tie_pairs:
        doc["tied"] = [[_entry(h), ("-" if s < 0 else "") + _entry(t)] for h, t, s in tie_pairs]
    if objective:
        kind = draw(st.sampled_from(["vector", "vector", "sum", "weighted"]))
        if kind == "sum":
            doc["objective"] = {"type": "sum"}
        elif kind == "weighted":
            doc["objective"] = {
                "type": "weighted_sum",
                "weights": [
                    [draw(st.sampled_from([1, -1, 2, 0])) for _ in range(widths[-1])]
                    for _ in range(B)
                ],
            }
    return doc


def _entry(e: tuple[str, tuple[int, ...]]) -> str:
    return f"{e[0]}[{','.join(map(str, e[1]))}]"


def h_networks(**kw: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Networks satisfying hypothesis H (B = 1, every kinked unit with its own trainable bias)."""
    return networks(hypothesis_h=True, **kw)


def bias_free_networks(**kw: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Networks without any bias.

    Kinks are forced by solving weight entries; zero inputs hit kinks at 0.
    """
    return networks(bias="none", **kw)


__all__ = [
    "WIDE_GRID",
    "WIDE_INPUTS",
    "networks",
    "h_networks",
    "bias_free_networks",
    "GRID",
    "KINKED",
    "ACTIVATIONS",
    "PL_KINKED",
]


@st.composite
def image_networks(draw: st.DrawFn, *, formats: list[str] | None = None) -> dict[str, Any]:
    """conv2d -> maxpool2d -> flatten -> dense.

    Max-pool ties are likely: few distinct input values, shared weights.

    The conv bias (shared per channel) is solved so one position sits on a kink;
    optional: a residual add from the input (1x1 conv), an avgpool2d, a per-layer
    max-pool tie rule, activations after the pool and the dense layer.
    """
    fmt_name = draw(st.sampled_from(formats or ["binary32", "binary16"]))
    fmt = parse_format(fmt_name)
    B = draw(st.integers(1, 2))
    C = draw(st.integers(1, 2))
    H, Wd = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    vals = draw(
        st.lists(
            st.sampled_from([F(0), F(1), F(-1), F(2), F(1, 2)]), min_size=2, max_size=3, unique=True
        )
    )
    X = [[draw(st.sampled_from(vals)) for _ in range(C * H * Wd)] for _ in range(B)]
    grid = [F(0), F(0), F(1), F(-1), F(1, 2), F(2), F(-3, 2)]
    CO = draw(st.integers(1, 2))
    residual = C == CO and draw(st.integers(0, 3)) == 0
    k = 1 if residual else draw(st.integers(1, 2))
    pad = 0 if residual or k == 1 else draw(st.integers(0, 1))
    act0 = draw(
        st.sampled_from(
            ["relu", "abs", "hardtanh", {"name": "leaky_relu", "slope": "1/4"}, "identity"]
        )
    )
    has_bias = draw(st.booleans())
    W = [
        [[[draw(st.sampled_from(grid)) for _ in range(k)] for _ in range(k)] for _ in range(C)]
        for _ in range(CO)
    ]
    bias = [F(0)] * CO
    oh, ow = H + 2 * pad - k + 1, Wd + 2 * pad - k + 1
    act = make_act(act0)[0]
    if (
        has_bias and act.kinks
    ):  # solve the bias of channel co so position (r, c) of sample b is a kink
        co, r, c, b = (
            draw(st.integers(0, CO - 1)),
            draw(st.integers(0, oh - 1)),
            draw(st.integers(0, ow - 1)),
            draw(st.integers(0, B - 1)),
        )
        img = [
            [[X[b][(ch * H + i) * Wd + j] for j in range(Wd)] for i in range(H)] for ch in range(C)
        ]
        s = sum(
            (
                W[co][ch][p][q] * img[ch][r - pad + p][c - pad + q]
                for ch in range(C)
                for p in range(k)
                for q in range(k)
                if 0 <= r - pad + p < H and 0 <= c - pad + q < Wd
            ),
            F(0),
        )
        v = draw(st.sampled_from(act.kinks)) - s
        if fmt.contains(v):
            bias[co] = v
    layers: list[dict[str, Any]] = [
        {
            "type": "conv2d",
            "out_channels": CO,
            "kernel_size": k,
            "padding": pad,
            "bias": has_bias,
            "activation": act0,
        }
    ]
    params: dict[str, Any] = {
        "0.weight": [[[[_text(v) for v in row] for row in ch] for ch in out] for out in W]
    }
    if has_bias:
        params["0.bias"] = [_text(v) for v in bias]
    if residual:
        layers.append({"type": "add", "from": "input"})
    pk = draw(st.integers(1, 2)) if min(oh, ow) >= 2 else 1
    pool: dict[str, Any] = {
        "type": "maxpool2d",
        "kernel_size": pk,
        "stride": draw(st.integers(1, pk)),
    }
    if pk == 2 and draw(st.booleans()):
        pool["padding"] = 1
    if draw(st.integers(0, 2)) == 0:
        pool["tie"] = draw(
            st.sampled_from(["first", "last", ["first", "last"], ["last", "first", "first"]])
        )
    if draw(st.booleans()):
        pool["activation"] = draw(st.sampled_from(["relu", "abs", "identity"]))
    layers.append(pool)
    if draw(st.integers(0, 3)) == 0:
        layers.append({"type": "avgpool2d", "kernel_size": 1})
    layers.append({"type": "flatten"})
    # flattened size after the pool
    ph = pool.get("padding", 0)
    fh = (oh + 2 * ph - pk) // pool["stride"] + 1
    fw = (ow + 2 * ph - pk) // pool["stride"] + 1
    n = CO * fh * fw
    units = draw(st.integers(1, 2))
    dense_bias = draw(st.booleans())
    i = len(layers)
    layers.append(
        {
            "type": "dense",
            "units": units,
            "bias": dense_bias,
            "activation": draw(st.sampled_from(["relu", "identity", "hardtanh"])),
        }
    )
    params[f"{i}.weight"] = [
        [_text(draw(st.sampled_from(grid))) for _ in range(n)] for _ in range(units)
    ]
    if dense_bias:
        params[f"{i}.bias"] = [_text(draw(st.sampled_from(grid))) for _ in range(units)]
    doc: dict[str, Any] = {
        "format": "formal-net/1",
        "numbers": fmt_name,
        "input_shape": [C, H, Wd],
        "inputs": [[_text(v) for v in x] for x in X],
        "layers": layers,
        "params": params,
    }
    if draw(st.integers(0, 3)) == 0:
        doc["trainable"] = [n_ for n_ in params if n_ != "0.weight"] or ["0.weight"]
    if draw(st.booleans()):
        doc["objective"] = {"type": "sum"}
    return doc
