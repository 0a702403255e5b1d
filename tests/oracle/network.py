"""The network: a formal-net/1 document as let-bound sympy expressions; the three computations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from oracle.activations import Act, make_act, override_value, proxy_value
from oracle.expr import (
    Lets,
    NeedChoice,
    OracleBudget,
    TangentWalk,
    const_value,
    germ_of,
    subexpression_values,
)
from oracle.germs import Germ, Vec, exact, g_coeff, g_const, rat, trim
from oracle.lp import strictly_feasible


@dataclass
class LayerInfo:
    """A layer's activation and its proxy override (None: the preset's)."""

    act: Act
    proxy: Any


@dataclass
class Let:
    """A named intermediate value (a sympy Dummy): what it is, for the reverse pass.

    ``lin``: a polynomial in parameters and earlier lets (dense/conv/avg-pool/residual
    outputs); ``act``: ``rho(args[0])``; ``max``: the max of ``args`` (a pooling window,
    in row-major window order, padding left out).
    """

    kind: str
    layer: int
    sample: int
    index: int  # per-sample flat index in the layer's output
    args: tuple[sp.Expr, ...] = ()
    act: Act | None = None
    tie: str | None = None  # max: the layer's override for this entry (None: the preset's)


@dataclass
class Cell:
    """A full-dimensional cone of the pattern search: g(d) = L d on it."""

    choices: dict[Any, int]
    L: tuple[Vec, ...]  # (n_obj, W)


@dataclass
class Decision:
    differentiable: bool
    gradient: tuple[Vec, ...] | None
    cells: list[Cell] = field(default_factory=list)
    complete: bool = True  # every full-dimensional cell listed

    def piece_gradients(self) -> list[tuple[Vec, ...]]:
        """Distinct gradients of g's linear pieces on full-dimensional cones.

        These are the Bouligand subgradients.
        """
        out: list[tuple[Vec, ...]] = []
        for c in self.cells:
            if c.L not in out:
                out.append(c.L)
        return out


def _pair(v: Any, default: Any) -> tuple[int, int]:
    v = default if v is None else v
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _tensor(value: Any) -> np.ndarray:
    arr = np.array(value, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(*arr.shape):
        out[idx] = exact(arr[idx])
    return out


class Oracle:
    """A formal-net/1 document as exact sympy expressions of the parameter-group symbols.

    Layers: dense, conv2d, maxpool2d, avgpool2d, flatten, add (torch conventions;
    ``ceil_mode`` is not supported).  Every intermediate value is a let-bound
    symbol (:class:`Let`), so expressions stay small and the reverse pass can
    apply proxies (activations) and tie rules (max-pools) by name.
    """

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.X = [[exact(v) for v in row] for row in doc["inputs"]]
        self.B = len(self.X)
        self.in_shape = tuple(doc.get("input_shape") or [len(self.X[0])])
        raw = doc["params"]
        self.params: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self.layers: list[LayerInfo] = []
        for i, spec in enumerate(doc["layers"]):
            if spec["type"] in ("dense", "conv2d"):
                for name in [f"{i}.weight"] + ([f"{i}.bias"] if spec.get("bias", True) else []):
                    self.params[name] = _tensor(raw[name])
                    self.order.append(name)
            self.layers.append(LayerInfo(*make_act(spec.get("activation"))))
        self.trainable = [n for n in self.order if n in doc.get("trainable", self.order)]
        self._parameterize(doc.get("tied") or [])
        self._build()
        self._decisions: dict[str, Decision] = {}

    # -- parameter groups: trainable entries, ties merged, numbered by first appearance
    def _entries(self) -> list[tuple[str, tuple[int, ...]]]:
        return [
            (name, tuple(int(i) for i in idx))
            for name in self.trainable
            for idx in np.ndindex(*self.params[name].shape)
        ]

    def entry_value(self, name: str, idx: tuple[int, ...]) -> Fraction:
        return self.params[name][idx]

    def _parameterize(self, tied: list[list[str]]) -> None:
        entries = self._entries()
        pos = {e: i for i, e in enumerate(entries)}
        adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(entries))}
        for group in tied:
            parsed = []
            for text in group:
                m = re.match(r"^\s*(-?)\s*([^\[\]\s]+)\s*\[([0-9,\s]*)\]\s*$", text)
                assert m, text
                sign = -1 if m.group(1) else 1
                idx = tuple(int(x) for x in m.group(3).split(",") if x.strip())
                parsed.append((pos[(m.group(2), idx)], sign))
            (h, hs) = parsed[0]
            for x, xs in parsed[1:]:
                adj[h].append((x, hs * xs))
                adj[x].append((h, hs * xs))
        group_of: dict[int, int] = {}
        sign_of: dict[int, int] = {}
        self.labels: list[str] = []
        self.w: list[Fraction] = []
        for i in range(len(entries)):
            if i in group_of:
                continue
            g = len(self.labels)
            name, idx = entries[i]
            self.labels.append(f"{name}[{','.join(map(str, idx))}]")
            self.w.append(self.entry_value(name, idx))
            group_of[i], sign_of[i] = g, 1
            stack = [i]
            while stack:
                x = stack.pop()
                for y, s in adj[x]:
                    if y in group_of:
                        if sign_of[y] != sign_of[x] * s:
                            raise ValueError("oracle: contradictory tie signs")
                        continue
                    group_of[y], sign_of[y] = g, sign_of[x] * s
                    stack.append(y)
        self.entry_group = {entries[i]: (group_of[i], sign_of[i]) for i in range(len(entries))}
        for e, (g, s) in self.entry_group.items():
            assert self.entry_value(*e) == s * self.w[g], ("tied values differ", e)
        self.W = len(self.labels)
        self.symbols = [sp.Symbol(f"w{g}", real=True) for g in range(self.W)]
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.env = dict(zip(self.symbols, self.w))

    def entry_expr(self, name: str, idx: tuple[int, ...]) -> sp.Expr:
        if (name, idx) in self.entry_group:
            g, s = self.entry_group[(name, idx)]
            return s * self.symbols[g]
        return rat(self.entry_value(name, idx))

    # -- building -----------------------------------------------------------------
    def _let(
        self, kind: str, expr: sp.Expr, layer: int, sample: int, index: int, **kw: Any
    ) -> sp.Symbol:
        sym = sp.Dummy(f"{kind}{layer}_{sample}_{index}", real=True)
        self.lets[sym] = expr
        self.info[sym] = Let(kind, layer, sample, index, **kw)
        return sym

    def _build(self) -> None:
        self.lets: Lets = {}
        self.info: dict[sp.Symbol, Let] = {}
        outs: list[sp.Expr] = []
        for b in range(self.B):
            x = np.empty(self.in_shape, dtype=object)
            x.reshape(-1)[:] = [rat(v) for v in self.X[b]]
            cur = x
            outputs: list[np.ndarray] = []
            for i, spec in enumerate(self.doc["layers"]):
                cur = getattr(self, "_" + spec["type"])(i, spec, cur, b, x, outputs)
                cur = self._activation(i, cur, b)
                outputs.append(cur)
            self.out_shape = cur.shape
            outs += list(cur.reshape(-1))
        self.outputs = outs
        n = len(outs) // self.B
        spec = self.doc.get("objective")
        if spec is None:
            self.obj = [[Fraction(int(i == j)) for j in range(len(outs))] for i in range(len(outs))]
            self.output_labels = [
                "out[" + ",".join(map(str, (b,) + idx)) + "]"
                for b in range(self.B)
                for idx in np.ndindex(*self.out_shape)
            ]
        elif spec["type"] == "sum":
            self.obj = [[Fraction(1)] * len(outs)]
            self.output_labels = ["objective"]
        else:
            self.obj = [[exact(v) for row in spec["weights"] for v in row]]
            self.output_labels = ["objective"]
        assert all(len(r) == self.B * n for r in self.obj)
        self.exprs = [sp.Add(*[rat(c) * e for c, e in zip(row, outs) if c]) for row in self.obj]

    def _dense(self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any) -> np.ndarray:
        z = cur.reshape(-1)
        out = np.empty(int(spec["units"]), dtype=object)
        for u in range(out.size):
            y = sp.Add(*[self.entry_expr(f"{i}.weight", (u, j)) * z[j] for j in range(z.size)])
            if spec.get("bias", True):
                y = y + self.entry_expr(f"{i}.bias", (u,))
            out[u] = self._let("lin", y, i, b, u)
        return out

    def _conv2d(self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any) -> np.ndarray:
        C, H, Wd = cur.shape
        CO = int(spec["out_channels"])
        kh, kw = _pair(spec.get("kernel_size"), None)
        sh, sw = _pair(spec.get("stride"), 1)
        ph, pw = _pair(spec.get("padding"), 0)
        dh, dw = _pair(spec.get("dilation"), 1)
        g = int(spec.get("groups", 1))
        oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        out = np.empty((CO, oh, ow), dtype=object)
        cin = C // g
        for co in range(CO):
            c0 = (co // (CO // g)) * cin
            for r in range(oh):
                for c in range(ow):
                    terms = []
                    for ci in range(cin):
                        for p in range(kh):
                            for q in range(kw):
                                rr, cc = r * sh - ph + p * dh, c * sw - pw + q * dw
                                if 0 <= rr < H and 0 <= cc < Wd:
                                    terms.append(
                                        self.entry_expr(f"{i}.weight", (co, ci, p, q))
                                        * cur[c0 + ci, rr, cc]
                                    )
                    y = sp.Add(*terms)
                    if spec.get("bias", True):
                        y = y + self.entry_expr(f"{i}.bias", (co,))
                    out[co, r, c] = self._let("lin", y, i, b, (co * oh + r) * ow + c)
        return out

    def _windows(self, spec: dict[str, Any], cur: np.ndarray, dilate: bool):
        if spec.get("ceil_mode", False):
            raise NotImplementedError("oracle: ceil_mode")
        C, H, Wd = cur.shape
        kh, kw = _pair(spec.get("kernel_size"), None)
        sh, sw = _pair(spec.get("stride"), (kh, kw))
        ph, pw = _pair(spec.get("padding"), 0)
        dh, dw = _pair(spec.get("dilation"), 1) if dilate else (1, 1)
        oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        for ch in range(C):
            for r in range(oh):
                for c in range(ow):
                    entries = [
                        cur[ch, r * sh - ph + p * dh, c * sw - pw + q * dw]
                        for p in range(kh)
                        for q in range(kw)
                        if 0 <= r * sh - ph + p * dh < H and 0 <= c * sw - pw + q * dw < Wd
                    ]
                    yield (ch, r, c), (C, oh, ow), entries, kh * kw

    def _maxpool2d(
        self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any
    ) -> np.ndarray:
        res = {}
        tie = spec.get("tie")
        for pos, shape, entries, _ in self._windows(spec, cur, True):
            flat = (pos[0] * shape[1] + pos[1]) * shape[2] + pos[2]
            rule = tie if isinstance(tie, str) or tie is None else tie[flat % len(tie)]
            res[pos] = self._let("max", sp.Max(*entries), i, b, flat, args=tuple(entries), tie=rule)
            out_shape = shape
        out = np.empty(out_shape, dtype=object)
        for pos, v in res.items():
            out[pos] = v
        return out

    def _avgpool2d(
        self, i: int, spec: dict[str, Any], cur: np.ndarray, b: int, *_: Any
    ) -> np.ndarray:
        res = {}
        include = spec.get("count_include_pad", True)
        for pos, shape, entries, full in self._windows(spec, cur, False):
            flat = (pos[0] * shape[1] + pos[1]) * shape[2] + pos[2]
            res[pos] = self._let(
                "lin", sp.Add(*entries) / (full if include else len(entries)), i, b, flat
            )
            out_shape = shape
        out = np.empty(out_shape, dtype=object)
        for pos, v in res.items():
            out[pos] = v
        return out

    def _flatten(self, i: int, spec: dict[str, Any], cur: np.ndarray, *_: Any) -> np.ndarray:
        return cur.reshape(-1)

    def _add(
        self,
        i: int,
        spec: dict[str, Any],
        cur: np.ndarray,
        b: int,
        x: np.ndarray,
        outputs: list[np.ndarray],
    ) -> np.ndarray:
        other = x if spec["from"] == "input" else outputs[int(spec["from"])]
        out = np.empty(cur.shape, dtype=object)
        for k, (u, v) in enumerate(zip(cur.reshape(-1), other.reshape(-1))):
            out.reshape(-1)[k] = self._let("lin", u + v, i, b, k)
        return out

    def _activation(self, i: int, cur: np.ndarray, b: int) -> np.ndarray:
        info = self.layers[i]
        if info.act.name in ("identity", "linear") and info.proxy is None:
            return cur
        out = np.empty(cur.shape, dtype=object)
        for k, y in enumerate(cur.reshape(-1)):
            out.reshape(-1)[k] = self._let(
                "act", info.act.formula(y), i, b, k, args=(y,), act=info.act
            )
        return out

    # -- values and directional derivatives (germs) ---------------------------
    def value(self) -> list[Fraction]:
        memo: dict[sp.Expr, Germ] = {}
        env = {s: g_const(v) for s, v in self.env.items()}
        return [g_coeff(germ_of(e, env, memo, self.lets), 0) for e in self.exprs]

    def expression(self, row: int = 0) -> sp.Expr:
        """Objective row ``row`` as one sympy expression of the parameter symbols.

        Let-bound symbols are expanded.
        """
        e = self.exprs[row]
        for let, y in reversed(list(self.lets.items())):
            e = e.subs(let, y)
        return e

    def sympy_value(self) -> list[Fraction]:
        """f(w) by sympy's own evaluation (xreplace), a check of the germ evaluator."""
        sub: dict[sp.Symbol, sp.Expr] = {s: rat(v) for s, v in self.env.items()}
        for let, y in self.lets.items():  # build order: each let reads earlier ones only
            sub[let] = y.xreplace(sub)
        vals = [e.xreplace(sub) for e in self.exprs]
        assert all(v.is_Rational for v in vals), vals
        return [exact(v) for v in vals]

    def directional(self, d: list[Fraction] | dict[int, Fraction]) -> list[Fraction]:
        """f'(w; d) for every objective row, from the germ of f(w + t d)."""
        if isinstance(d, dict):
            dd = [Fraction(0)] * self.W
            for j, v in d.items():
                dd[j] = Fraction(v)
            d = dd
        env = {s: trim([self.w[i], Fraction(d[i])]) for i, s in enumerate(self.symbols)}
        memo: dict[sp.Expr, Germ] = {}
        f0 = self.value()
        out = []
        for e, v0 in zip(self.exprs, f0):
            g = germ_of(e, env, memo, self.lets)
            assert g_coeff(g, 0) == v0, "germ at t = 0 must be f(w)"
            out.append(g_coeff(g, 1))
        return out

    def directional_labels(self, d: dict[str, Fraction]) -> list[Fraction]:
        """f'(w; d) for a direction given by parameter-group labels."""
        pos = {lab: i for i, lab in enumerate(self.labels)}
        return self.directional({pos[k]: Fraction(v) for k, v in d.items()})

    def additivity_violations(
        self, pairs: list[tuple[list[Fraction], list[Fraction]]]
    ) -> list[int]:
        """Indices of pairs (d1, d2) with f'(d1 + d2) != f'(d1) + f'(d2) (Lemma D refutations)."""
        bad = []
        for k, (d1, d2) in enumerate(pairs):
            s = [a + b for a, b in zip(d1, d2)]
            v1, v2, v3 = self.directional(d1), self.directional(d2), self.directional(s)
            if any(c != a + b for a, b, c in zip(v1, v2, v3)):
                bad.append(k)
        return bad

    # -- differentiability: full-dimensional cones of first-order patterns ------
    def decide(self, *, complete: bool = False, budget: int = 600) -> Decision:
        """Differentiability and the gradient (see the module docstring).

        With ``complete=False`` the search stops at the second distinct ``L``
        (non-differentiable); ``complete=True`` lists every full-dimensional
        cell (needed for Bouligand/Clarke checks).  More than ``budget`` pattern
        walks raises :class:`OracleBudget` (the cell count can be exponential).
        """
        key = "complete" if complete else "first"
        hit = self._decisions.get(key) or self._decisions.get("complete")
        if hit is not None:
            return hit
        values = subexpression_values(self.exprs, self.env, self.lets)
        cells: list[Cell] = []
        grads: set[tuple[Vec, ...]] = set()
        stack: list[dict[Any, int]] = [{}]
        walks = 0
        while stack:
            walks += 1
            if walks > budget:
                raise OracleBudget(f"more than {budget} pattern walks")
            choices = stack.pop()
            walk = TangentWalk(values, self.W, self.index, choices, self.lets)
            try:
                L = tuple(walk.tan(e) for e in self.exprs)
            except NeedChoice as nc:
                if strictly_feasible(nc.constraints):
                    stack += [{**choices, nc.key: k} for k in range(nc.n)]
                continue
            if strictly_feasible(walk.constraints):
                cells.append(Cell(choices, L))
                grads.add(L)
                if len(grads) > 1 and not complete:
                    break
        assert cells, "the full-dimensional cones cover a dense set: at least one exists"
        diff = len(grads) == 1
        decision = Decision(diff, cells[0].L if diff else None, cells, complete=complete or diff)
        self._decisions[key] = decision
        return decision

    # -- AD with proxies: a reverse pass over the let-bound values ---------------
    def let_values(self) -> dict[sp.Expr, Fraction]:
        """Exact value of every parameter symbol and let at w."""
        memo: dict[sp.Expr, Germ] = {}
        env = {s: g_const(v) for s, v in self.env.items()}
        out: dict[sp.Expr, Fraction] = dict(self.env)
        for sym in self.lets:
            out[sym] = g_coeff(germ_of(sym, env, memo, self.lets), 0)
        return out

    def depends(self, layer: int) -> bool:
        """Structurally, does layer `layer`'s output involve a trainable parameter?"""
        return any(int(n.split(".")[0]) <= layer for n in self.trainable)

    def kink_units(self) -> list[tuple[int, int, int, Fraction]]:
        """(layer, sample, flat index, kink) of every activation entry whose input equals a kink."""
        vals = self.let_values()
        out = []
        for info in self.info.values():
            if info.kind == "act":
                assert info.act is not None, "an act let carries its activation"
                y = const_value(info.args[0], vals)
                if y in info.act.kinks:
                    out.append((info.layer, info.sample, info.index, y))
        return out

    def proxy_at(self, preset: str, i: int, u: int, c: Fraction) -> Fraction:
        layer = self.layers[i]
        if layer.proxy is not None:
            return override_value(layer.proxy, layer.act, c, u)
        return proxy_value(preset, layer.act, c)

    def ad(self, preset: str) -> tuple[tuple[Vec, ...], dict[tuple[int, int, int], list[Fraction]]]:
        """AD(w) (n_obj x W) and the adjoint of every kink unit's output (per objective row)."""
        vals = self.let_values()
        default_tie = "last" if preset.replace(" ", "").endswith("tie=last") else "first"
        rows: list[Vec] = []
        kadj: dict[tuple[int, int, int], list[Fraction]] = {}
        order = list(self.lets)
        for e in self.exprs:
            adj: dict[sp.Expr, Fraction] = {}
            self._push(e, Fraction(1), adj, vals)
            for sym in reversed(order):
                info = self.info[sym]
                a = adj.get(sym, Fraction(0))
                if info.kind == "act":
                    assert info.act is not None, "an act let carries its activation"
                    y = const_value(info.args[0], vals)
                    if y in info.act.kinks:
                        kadj.setdefault((info.layer, info.sample, info.index), []).append(a)
                        slope = self.proxy_at(preset, info.layer, info.index, y)
                    else:
                        slope = info.act.d_plus(y)
                    if a and slope:
                        self._push(info.args[0], a * slope, adj, vals)
                elif not a:
                    continue
                elif info.kind == "max":
                    xs = [const_value(x, vals) for x in info.args]
                    top = [k for k, x in enumerate(xs) if x == max(xs)]
                    k = top[0] if (info.tie or default_tie) == "first" else top[-1]
                    self._push(info.args[k], a, adj, vals)
                else:
                    self._push(self.lets[sym], a, adj, vals)
            rows.append(tuple(adj.get(s, Fraction(0)) for s in self.symbols))
        return tuple(rows), kadj

    def _push(
        self,
        expr: sp.Expr,
        a: Fraction,
        adj: dict[sp.Expr, Fraction],
        vals: dict[sp.Expr, Fraction],
    ) -> None:
        """adj[s] += a * d expr / d s at w, for every free symbol s of a polynomial expr."""
        cache = self.__dict__.setdefault("_partials", {})
        parts = cache.get(expr)
        if parts is None:
            parts = [(s, sp.diff(expr, s)) for s in expr.free_symbols]
            cache[expr] = parts
        for s, dexpr in parts:
            c = const_value(dexpr, vals)
            if c:
                adj[s] = adj.get(s, Fraction(0)) + a * c


def axis_directions(W: int) -> list[list[Fraction]]:
    return [[Fraction(int(i == j)) for i in range(W)] for j in range(W)]
