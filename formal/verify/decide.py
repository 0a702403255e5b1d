"""The kernel's own decision: differentiability and AD correctness, without the engine.

``formal check --cross-check`` runs this next to the engine (docs/certificates.md,
"--cross-check").  It uses only the kernel's reading of the formal-net/1 network
(:mod:`formal.verify.net`), its tangent passes (:mod:`formal.verify.evaluate`) and
its own exact LP (:mod:`formal.verify.lp`):

1. find the kink nodes itself (at most :data:`DECIDE_KINKS` kink nodes and
   :data:`DECIDE_PARAMS` parameter coordinates, else :class:`Skipped`);
2. walk the tree of sign patterns in the canonical kink order (the same tree a
   certificate lists: an activation kink splits into ``+1`` / ``-1``, or the single
   entry ``0`` when its tangent row is identically 0; a max-pool tie splits into the
   classes of tied inputs with identical rows); the rows of a kink depend only on the
   entries before it, so one Jacobian pass gives the rows of every sibling;
3. keep a prefix when its strict rows ``r . d > 0`` have a solution (the exact LP,
   whose answer is re-checked: a witness direction, or Gordan multipliers);
4. at every realizable pattern take its linear map ``G_s`` (one Jacobian pass).

The realizable regions are open cones covering all directions but finitely many
hyperplanes, and ``f'(w; d) = G_s d`` on each, so ``d -> f'(w; d)`` is linear iff all
the ``G_s`` are equal: then f is differentiable with that gradient (Lemma D of
docs/theory.md), and AD (the kernel's own, with the preset's proxies) is correct iff
it equals it; two different maps prove non-differentiability.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from formal.verify.evaluate import (
    ActKink,
    KinkId,
    TieKink,
    axpy,
    coordinate_seed,
    dot,
    evaluate,
    find_kinks,
    is_zero,
    propagate,
    sub,
    tie_classes,
)
from formal.verify.lp import LPError, strictly_feasible
from formal.verify.net import Model, Proxy, Vec, parse, parse_proxy

DECIDE_KINKS = 12
"""The kernel decides networks with at most this many kink nodes (else :class:`Skipped`)."""

DECIDE_PARAMS = 20_000
"""... and at most this many parameter coordinates (its Jacobian passes are pure Python)."""

DECIDE_PATTERNS = 4096
"""Most realizable sign patterns the decision walks before it gives up (:class:`Skipped`)."""

NDF = "non-differentiable"
DIFF_OK = "differentiable, AD correct"
DIFF_BAD = "differentiable, AD incorrect"


class Skipped(Exception):
    """The network is beyond the decision's limits (the message says which)."""


@dataclass(frozen=True)
class Decision:
    """The kernel's verdict, with what it is based on.

    ``verdict`` uses the kernel's words (as :func:`formal.verify.kernel.verify`):
    ``non-differentiable``, ``differentiable, AD correct``, ``differentiable, AD
    incorrect``.  ``differing`` names two realizable patterns with different linear
    maps (non-differentiable); ``gradient`` is the common map (differentiable).
    """

    verdict: str
    kinks: int
    patterns: int
    excluded: int
    differing: tuple[tuple[int, ...], tuple[int, ...]] | None
    gradient: list[Vec] | None
    ad: list[Vec]

    def summary(self) -> str:
        """One line: the verdict and the size of the walk."""
        if self.differing is not None:
            a, b = self.differing
            return (
                f"{self.verdict}: patterns {list(a)} and {list(b)} have different linear maps "
                f"({self.kinks} kinks)"
            )
        return (
            f"{self.verdict}: {self.kinks} kinks, {self.patterns} realizable patterns with one "
            f"linear map, {self.excluded} excluded prefixes"
        )


Option = tuple[list[Vec], Vec]
"""A kink's piece: its strict rows and the tangent it sends on."""


class _Pass:
    """One Jacobian pass under a pattern prefix (later kinks take their first piece).

    Records, per kink position, every piece (entry -> rows, out tangent) and the entry taken.
    """

    def __init__(self, pos: dict[KinkId, int], prefix: list[int]):
        self.pos, self.prefix = pos, prefix
        self.options: dict[int, dict[int, Option]] = {}
        self.taken: dict[int, int] = {}

    def __call__(self, k: KinkId, info: Any) -> Vec:
        p = self.pos[k]
        opts: dict[int, Option] = {}
        if isinstance(info, ActKink):
            if is_zero(info.L):
                opts[0] = ([], {})
            else:
                for s, slope in ((1, info.d_plus), (-1, info.d_minus)):
                    row: Vec = {}
                    axpy(row, Fraction(s), info.L)
                    out: Vec = {}
                    axpy(out, slope, info.L)
                    opts[s] = ([row], out)
        else:
            assert isinstance(info, TieKink)
            for cls in tie_classes(info):
                e = min(cls)
                tangents = dict(info.entries)
                rows = [sub(tangents[e], v) for j, v in info.entries if j not in cls]
                opts[e] = (rows, dict(tangents[e]))
        e = self.prefix[p] if p < len(self.prefix) else next(iter(opts))
        self.options[p], self.taken[p] = opts, e
        return dict(opts[e][1])


def _same_map(a: list[Vec], b: list[Vec]) -> bool:
    return len(a) == len(b) and all(is_zero(sub(x, y)) for x, y in zip(a, b))


def ad_map(m: Model, preset: Proxy) -> list[Vec]:
    """AD's value: the chain rule with the preset's proxies and its max-pool tie rule."""

    def kink(k: KinkId, info: Any) -> Vec:
        if isinstance(info, ActKink):
            out: Vec = {}
            axpy(out, info.proxy(), info.L)
            return out
        return dict(next(v for j, v in info.entries if j == info.ad_choice))

    return propagate(m, coordinate_seed(m), kink, preset)


def decide(
    doc: Any,
    proxy: str,
    *,
    max_kinks: int = DECIDE_KINKS,
    max_params: int = DECIDE_PARAMS,
    max_patterns: int = DECIDE_PATTERNS,
) -> Decision:
    """Decide the verdict of a formal-net/1 document under a preset, independently.

    Raises :class:`Skipped` beyond the limits, ``InvalidArgument``/``UnsupportedOp`` for
    input the kernel cannot read (the messages say ``cannot verify: ...``).
    """
    m = parse(doc)
    if len(m.labels) > max_params:
        raise Skipped(f"{len(m.labels)} parameters > limit {max_params}")
    evaluate(m)
    preset = parse_proxy(proxy)
    kinks = find_kinks(m)
    if len(kinks) > max_kinks:
        raise Skipped(f"{len(kinks)} kinks > limit {max_kinks}")
    pos = {k: i for i, k in enumerate(kinks)}
    n = len(kinks)

    def run(prefix: list[int]) -> tuple[_Pass, list[Vec]]:
        pp = _Pass(pos, prefix)
        return pp, propagate(m, coordinate_seed(m), pp, preset)

    first: list[Any] = []  # [pattern, map] of the first realizable pattern
    count = {"patterns": 0, "excluded": 0}
    differing: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def walk(depth: int, pp: _Pass, g: list[Vec], path: list[int], rows: list[Vec], d: Vec) -> bool:
        """False to stop (two maps differ)."""
        if depth == n:
            count["patterns"] += 1
            if count["patterns"] > max_patterns:
                raise Skipped(f"more than {max_patterns} realizable sign patterns")
            if not first:
                first.extend([tuple(path), g])
            elif not _same_map(first[1], g):
                differing.append((first[0], tuple(path)))
                return False
            return True
        for e, (new, _) in pp.options[depth].items():
            both = rows + new
            if all(dot(r, d) > 0 for r in new):
                dd: Vec | None = d
            else:
                dd = strictly_feasible(both)
            if dd is None:
                count["excluded"] += 1
                continue
            if pp.taken[depth] == e:
                child, gc = pp, g
            else:
                child, gc = run(path + [e])
            if not walk(depth + 1, child, gc, path + [e], both, dd):
                return False
        return True

    root, g0 = run([])
    walk(0, root, g0, [], [], {})
    ad = ad_map(m, preset)
    if differing:
        return Decision(NDF, n, count["patterns"], count["excluded"], differing[0], None, ad)
    if not first:  # the regions cover a dense set of directions: one is always realizable
        raise LPError("no realizable sign pattern (an internal error of the kernel's LP)")
    grad = first[1]
    verdict = DIFF_OK if _same_map(grad, ad) else DIFF_BAD
    return Decision(verdict, n, count["patterns"], count["excluded"], None, grad, ad)


__all__ = [
    "DECIDE_KINKS",
    "DECIDE_PARAMS",
    "DECIDE_PATTERNS",
    "Decision",
    "Skipped",
    "ad_map",
    "decide",
]
