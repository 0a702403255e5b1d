"""Max-pooling as a kink rule: ties, AD's tie-breaking, directional derivatives.

``maxpool2d`` (input (B, C, H, W); attributes ``kernel``, ``strides``,
``pads`` (top, left, bottom, right; padding never wins), ``dilations``,
``ceil_mode``) outputs the maximum of each window.  Its kink nodes are
**ties**: windows whose maximum is attained by entries that are *different*
functions of the parameters near w* (entries that are provably the same
function, see :mod:`formal.core.signatures`, are merged first: the max of identical
functions is that function).  A tie's kink map is ``max`` of the tied
tangents (docs/theory.md section 2).

**Which entry AD sends the gradient to** (``KinkNode.choice``): the preset's
``tie`` rule, scanning the window in row-major order (kernel row, then
column): ``first`` is PyTorch (``max_pool2d`` CPU/CUDA keep the first
maximum: ``val > maxval``), JAX (``lax.reduce_window`` max's JVP picks the
earliest index via select-and-scatter) and TensorFlow (CPU); ``last`` is
available for other conventions.  A node attribute ``tie`` overrides the
preset: ``"first"``/``"last"`` for the whole node, or a tuple with one rule
per output entry (per-sample flat index, cycled).  ICLR 2024 Lemma 7's
"mixed" choice is ``tie=("first", "last")`` on its two windows.

Examples
--------
>>> from formal.ops.pool import choose
>>> choose([True, False, True], "first"), choose([True, False, True], "last")
(0, 2)
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset
from formal.core.balls import Undecided
from formal.core.floatbound import ETA, U
from formal.core.kinks import KinkNode, output_adjoint, patch
from formal.core.network import Network, Node
from formal.core.qarray import QArray
from formal.core.rules import register
from formal.core.signatures import (
    Oracle,
    ball_oracle,
    exact_oracle,
    float_oracle,
    signatures,
    uncertified_oracle,
)
from formal.errors import InvalidArgument
from formal.ops.conv import window_index, window_signatures


def picks_first(node: Node, preset: Preset, outs: np.ndarray) -> np.ndarray:
    """Per output entry in ``outs`` (per-sample flat indices): whether AD keeps the first tie."""
    if isinstance(node.attr("tie"), (list, tuple)):  # a rule per output entry
        return np.array([tie_rule(node, preset, int(o)) == "first" for o in outs], dtype=bool)
    return np.full(len(outs), tie_rule(node, preset, 0) == "first")


def choose(eq: Any, rule: str) -> int:
    """Position AD picks among the window entries where ``eq`` holds."""
    pos = [i for i, e in enumerate(eq) if e]
    return pos[0] if rule == "first" else pos[-1]


def tie_rule(node: Node, preset: Preset, out_index: int) -> str:
    """The tie rule (``"first"`` or ``"last"``) of output entry ``out_index`` of a max-pool."""
    spec = node.attr("tie")
    if spec is None:
        return preset.tie
    if isinstance(spec, str):
        rule = spec
    else:
        rule = spec[out_index % len(spec)]
    if rule not in ("first", "last"):
        raise InvalidArgument(
            f"expected tie rule 'first' or 'last' on node {node.name!r}, got {rule!r}"
        )
    return rule


def _tables(node: Node, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(n_out, K) window table with padding replaced by the window's first entry, and validity."""
    safe, valid, _, _, oh, ow = _geometry_tables(node, in_shape)
    return safe, valid, oh, ow


def _geometry_tables(
    node: Node, in_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    C, H, W = in_shape
    key = (
        C,
        H,
        W,
        tuple(node.attr("kernel")),
        tuple(node.attr("strides")),
        tuple(node.attr("pads")),
        tuple(node.attr("dilations", (1, 1))),
        bool(node.attr("ceil_mode", False)),
    )
    out = _safe_cached(*key)
    if out is None:
        raise InvalidArgument(f"max-pool node {node.name!r}: a window lies entirely in the padding")
    return out


@functools.lru_cache(maxsize=64)
def _safe_cached(
    C: int, H: int, W: int, kernel: Any, strides: Any, pads: Any, dil: Any, ceil: bool
) -> Any:
    """Tables of one geometry (also transposed, (K, n_out): reductions over K are then fast)."""
    idx, oh, ow = window_index(C, H, W, kernel, strides, pads, dil, ceil)
    win = idx.reshape(-1, idx.shape[-1])
    valid = win >= 0
    if not valid.any(axis=1).all():
        return None
    first = win[np.arange(win.shape[0]), valid.argmax(axis=1)]
    safe = np.where(valid, win, first[:, None])
    tables = (safe, valid, np.ascontiguousarray(safe.T), np.ascontiguousarray(valid.T))
    for t in tables:
        t.setflags(write=False)
    return tables + (oh, ow)


class MaxPoolRule:
    """Kink rule of ``maxpool2d`` (see the module docstring)."""

    uses_context = True

    def may_kink(self, node: Node) -> bool:
        """Whether a window has more than one entry (else the max-pool is smooth)."""
        kh, kw = node.attr("kernel")
        return kh * kw > 1

    # -- exact ------------------------------------------------------------------
    def forward(
        self, node: Node, ins: list[QArray], net: Network, preset: Preset, context: Any = None
    ):
        """Exact maxima, the entry AD picks per window (state) and the ties found."""
        x = ins[0]
        B = x.shape[0]
        safe, valid, oh, ow = _tables(node, x.shape[1:])
        flat = x.num.reshape(B, -1)
        g = flat[:, safe]  # (B, n_out, K) integer numerators
        m = g.max(axis=-1)
        eq = (g == m[..., None]) & valid[None]
        count = eq.sum(axis=-1)
        choice = np.empty((B, safe.shape[0]), dtype=np.int64)
        # the common case, no tie: the unique maximum
        choice[...] = np.take_along_axis(
            safe[None].repeat(B, 0), eq.argmax(axis=-1)[..., None], axis=-1
        )[..., 0]
        kinks: list[KinkNode] = []
        ties = np.argwhere(count > 1)
        if len(ties):
            oracle: Oracle = (
                exact_oracle(context.values) if context is not None else uncertified_oracle(net)
            )
            sig = signatures(net, node.inputs[0], oracle).reshape(B, -1)
            # ties whose tied entries all have one signature are no kinks (one group):
            # only AD's choice is recorded, vectorized; the others are examined one by one
            tb, to = ties[:, 0], ties[:, 1]
            te = eq[tb, to]  # (n_ties, K)
            ts = sig[tb[:, None], safe[to]]
            lo = np.where(te, ts, np.iinfo(np.int64).max).min(axis=1)
            hi = np.where(te, ts, np.iinfo(np.int64).min).max(axis=1)
            K = safe.shape[1]
            first = te.argmax(axis=1)
            last = K - 1 - te[:, ::-1].argmax(axis=1)
            choice[tb, to] = safe[to, np.where(picks_first(node, preset, to), first, last)]
            for b, o in ties[lo != hi]:
                b, o = int(b), int(o)
                rule = tie_rule(node, preset, o)
                pos = choose(eq[b, o], rule)
                chosen = int(safe[o, pos])
                choice[b, o] = chosen
                tied = [int(safe[o, k]) for k in range(safe.shape[1]) if eq[b, o, k]]
                reps: dict[int, int] = {}
                for i in tied:  # one representative per group of identical entries
                    s = int(sig[b, i])
                    if s not in reps or i == chosen:
                        reps[s] = i
                if len(reps) < 2:
                    continue
                inputs = tuple(sorted(reps.values(), key=tied.index))
                kinks.append(
                    KinkNode(
                        node.name,
                        b,
                        o,
                        "tie",
                        inputs,
                        Fraction(int(m[b, o]), x.den),
                        choice=inputs.index(chosen),
                    )
                )
        value = QArray(m.reshape((B,) + node.shape), x.den)
        return value, choice, kinks

    def jvp(
        self,
        node: Node,
        ins: list[QArray],
        tan: QArray,
        state: Any,
        kinks: list[KinkNode],
        net: Network,
    ) -> QArray:
        """Tangent: the chosen entry's; ties by the max of the tied tangents."""
        r, B = tan.shape[:2]
        flat = tan.num.reshape(r, B, -1)
        out = np.take_along_axis(flat, np.broadcast_to(state[None], (r,) + state.shape), axis=-1)
        res = QArray(out.reshape((r, B) + node.shape), tan.den)
        if not kinks:
            return res
        patches = [
            (
                row,
                k.sample,
                k.index,
                k.apply([Fraction(int(flat[row, k.sample, i]), tan.den) for i in k.inputs]),
            )
            for k in kinks
            for row in range(r)
        ]
        return patch(res, patches)

    def vjp(
        self,
        node: Node,
        ins: list[QArray],
        adj: QArray,
        state: Any,
        kinks: list[KinkNode],
        net: Network,
        cut: bool,
    ) -> QArray:
        """Input adjoint: scattered to the chosen entries (ties cut when ``cut``)."""
        x = ins[0]
        r, B = adj.shape[:2]
        a = adj.num.reshape(r, B, -1)
        if cut and kinks:
            a = a.copy()
            for k in kinks:
                a[:, k.sample, k.index] = 0
        n_in = int(np.prod(x.shape[1:]))
        xbar = np.empty((r, B, n_in), dtype=object)
        xbar[...] = 0
        for b in range(B):
            np.add.at(xbar[:, b, :], (slice(None), state[b]), a[:, b, :])  # type: ignore[arg-type]
        return QArray(xbar.reshape((r,) + x.shape), adj.den)

    def kink_adjoint(self, adj: QArray, k: KinkNode) -> np.ndarray:
        """The adjoint of kink node k's output, one entry per row."""
        return output_adjoint(adj, k)

    # -- float filter -------------------------------------------------------------
    def float_filter(
        self,
        node: Node,
        vals: list[np.ndarray],
        errs: list[np.ndarray],
        net: Network,
        context: Any = None,
    ):
        """Float maxima, error bounds, and whether some window may tie."""
        x, e = vals[0], errs[0]
        B = x.shape[0]
        _, _, safe_t, valid_t, oh, ow = _geometry_tables(node, x.shape[1:])
        g = x.reshape(B, -1)[:, safe_t]  # (B, K, n_out): padding repeats a real entry, harmless
        ge = e.reshape(B, -1)[:, safe_t]
        m = g.max(axis=1)
        err = ge.max(axis=1)  # |max(a) - max(b)| <= max |a_i - b_i|
        # an entry can equal the exact maximum only if its upper bound reaches the max's lower bound
        lo = (g - ge).max(axis=1)[:, None, :]
        slack = 4 * U * (np.abs(g) + np.abs(lo)) + ETA
        close = g + 2 * ge + slack >= lo
        close &= valid_t[None]
        suspect = False
        many = close.sum(axis=1) > 1
        if many.any():
            if context is None:
                suspect = True
            else:
                vals_d, errs_d = context
                oracle = float_oracle(vals_d, errs_d)
                suspect = not _same_constant_piece(
                    net.node(node.inputs[0]), oracle, close, many, safe_t
                )
                if suspect:  # the general test: one local signature per window's close set
                    sig = signatures(net, node.inputs[0], oracle).reshape(B, -1)
                    ws = sig[:, safe_t]  # (B, K, n_out)
                    ref = np.take_along_axis(ws, close.argmax(axis=1)[:, None, :], axis=1)
                    suspect = bool(np.any(close & (ws != ref)))
        shape = (B,) + node.shape
        # the entries AD would pick when the op is certified (not suspect): every close
        # entry then has one signature, so all of them equal the maximum exactly
        K, n_out = close.shape[1], close.shape[2]
        first = close.argmax(axis=1)
        last = K - 1 - close[:, ::-1].argmax(axis=1)
        out = np.arange(n_out)[None, :]
        hint = (safe_t[first, out], safe_t[last, out])
        return m.reshape(shape), err.reshape(shape), suspect, hint

    def float_state(
        self,
        node: Node,
        vals: list[np.ndarray],
        errs: list[np.ndarray],
        net: Network,
        preset: Preset,
        hint: Any = None,
    ) -> np.ndarray | None:
        """The state :meth:`forward` gives (AD's entry per window) from a certifying float pass.

        Certified (:meth:`float_filter` found no possible tie between entries
        that are different functions): the entries whose float enclosure can
        reach the maximum share one local signature, hence are all exactly
        equal to it, and the exact pass would pick the first or last of them
        by the tie rule; ``hint`` holds both picks.
        """
        if hint is None:
            return None
        first, last = hint
        rules = picks_first(node, preset, np.arange(first.shape[1]))
        return np.where(rules[None, :], first, last).astype(np.int64)


def _same_constant_piece(
    inp: Node, oracle: Oracle, close: np.ndarray, many: np.ndarray, safe_t: np.ndarray
) -> bool:
    """Whether, in every window with several close entries, those entries are certified to
    lie inside one constant piece of the activation ``inp`` (e.g. dead ReLUs).

    Such entries are one constant function near w (the activation's signature
    rule, :mod:`formal.core.signatures`), so the window holds no tie; this
    settles the common case without numbering the network's entries.
    """
    if inp.op != "act":
        return False
    B = close.shape[0]
    codes = oracle(inp).reshape(B, -1)[:, safe_t]  # (B, K, n_out) constant piece or -1
    ref = np.take_along_axis(codes, close.argmax(axis=1)[:, None, :], axis=1)
    bad = close & ((codes != ref) | (ref < 0)) & many[:, None, :]
    return not bool(bad.any())


def _max_exact(node: Node, ins: list[QArray], net: Network) -> QArray:
    x = ins[0]
    B = x.shape[0]
    safe, _, _, _ = _tables(node, x.shape[1:])
    m = x.num.reshape(B, -1)[:, safe].max(axis=-1)  # padding repeats a real entry: harmless
    return QArray(m.reshape((B,) + node.shape), x.den)


def _max_ball(
    node: Node, ins: list[np.ndarray], net: Network, env: dict[str, np.ndarray]
) -> np.ndarray:
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
                    sig = signatures(net, node.inputs[0], ball_oracle(env)).reshape(B, -1)
                if len({int(sig[b, i]) for i in cand}) > 1:
                    raise Undecided(
                        f"max-pool {node.name} window {o} (sample {b}): a tie cannot be ruled out"
                    )
            out[b, o] = flat[b, cand[0]]
    return out.reshape((B,) + node.shape)


MAXPOOL = MaxPoolRule()

register(
    "maxpool2d",
    kink=MAXPOOL,
    exact=_max_exact,
    float=lambda node, vals, errs, net: MAXPOOL.float_filter(node, vals, errs, net)[:2],
    ball=_max_ball,
    signature=lambda node, ins, net, oracle: window_signatures(node, ins[0], False),
)

__all__ = ["MAXPOOL", "MaxPoolRule", "choose", "tie_rule"]
