"""Check a formal-cert/1 certificate against the kernel's own evaluation of the network.

Every claim is re-derived here; :class:`Rejected` names the claim and the number
that failed.  The mathematics (docs/certificates.md): a realizable sign pattern
carries a witness direction whose kink rows have the claimed strict signs; an
excluded prefix carries Gordan multipliers ``y >= 0``, not all 0, with
``sum y_i r_i = 0``; the tree of patterns must cover every child of every
node; every realizable pattern's linear map must equal the claimed gradient.
Then ``d -> f'(w; d)`` equals ``g d`` on a dense set of directions, hence
everywhere (it is continuous), so f is differentiable with gradient g (Lemma D).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from formal.errors import InvalidArgument
from formal.verify.bouligand import SubgradientRejected, check_subgradient
from formal.verify.evaluate import (
    ActKink,
    KinkId,
    TieKink,
    axpy,
    coordinate_seed,
    direction_seed,
    dot,
    evaluate,
    find_kinks,
    is_zero,
    kink_id_text,
    output_labels,
    propagate,
    sub,
    tie_classes,
)
from formal.verify.net import Model, Proxy, Vec, exact, parse, parse_proxy
from formal.verify.sides import moves_to_ad_side

FORMAT_TAG = "formal-cert/1"


class Rejected(Exception):
    """A claim of the certificate is false: the message names the claim and the number."""


@dataclass(frozen=True)
class Result:
    """What was verified: the verdict and a one-line summary."""

    verdict: str
    summary: str


def _num(v: Any, where: str) -> Fraction:
    try:
        return exact(v, where)
    except InvalidArgument as exc:
        raise InvalidArgument(f"certificate: {exc}") from None


def _direction(m: Model, spec: Any, where: str) -> Vec:
    if not isinstance(spec, dict):
        raise InvalidArgument(f"certificate: {where}: expected an object label -> number")
    index = {lab: j for j, lab in enumerate(m.labels)}
    d: Vec = {}
    for lab, v in spec.items():
        if lab not in index:
            raise Rejected(f"{where}: {lab!r} is not a trainable parameter of the network")
        d[index[lab]] = _num(v, f"{where}.{lab}")
    return d


class _Ctx:
    def __init__(self, cert: dict[str, Any]):
        self.cert = cert
        self.m = parse(cert.get("network"))
        evaluate(self.m)
        self.preset: Proxy = parse_proxy(str(cert.get("proxy", "")))
        self.outs = output_labels(self.m)
        self.kinks = find_kinks(self.m)
        listed = cert.get("kinks")
        if not isinstance(listed, list):
            raise InvalidArgument("certificate: expected a list 'kinks'")
        ids = []
        for k in listed:
            ids.append((str(k["op"]), int(k["layer"]), int(k["sample"]), int(k["unit"])))
        mine = set(self.kinks)
        for k in ids:
            if k not in mine:
                raise Rejected(f"kinks: {kink_id_text(k)} is not a kink node of the network")
        order = {k: i for i, k in enumerate(self.kinks)}
        if [order[k] for k in ids] != sorted(order[k] for k in ids):
            raise Rejected("kinks: not in the canonical order (layer, sample, pool/act, unit)")
        self.listed: list[KinkId] = ids
        self.pos = {k: i for i, k in enumerate(ids)}

    # -- directional derivatives -------------------------------------------------------
    def directional(self, d: Vec) -> list[Fraction]:
        """f'(w; d) per output row, by the chain rule of one-sided derivatives."""

        def kink(k: KinkId, info: Any) -> Vec:
            if isinstance(info, ActKink):
                t = info.L.get(0, Fraction(0))
                return {0: (info.d_plus if t >= 0 else info.d_minus) * t}
            return {0: max(v.get(0, Fraction(0)) for _, v in info.entries)}

        rows = propagate(self.m, direction_seed(self.m, d), kink, self.preset)
        return [r.get(0, Fraction(0)) for r in rows]

    def ad(self) -> list[Vec]:
        """AD's value: the chain rule with the preset's proxies and tie rule."""

        def kink(k: KinkId, info: Any) -> Vec:
            if isinstance(info, ActKink):
                out: Vec = {}
                axpy(out, info.proxy(), info.L)
                return out
            return dict(next(v for j, v in info.entries if j == info.ad_choice))

        return propagate(self.m, coordinate_seed(self.m), kink, self.preset)


def _matrix_equal(name: str, ctx: _Ctx, got: list[Vec], claimed: Any) -> None:
    if not isinstance(claimed, list) or len(claimed) != len(got):
        raise Rejected(f"{name}: expected {len(got)} rows")
    for o, (row, crow) in enumerate(zip(got, claimed)):
        if not isinstance(crow, list) or len(crow) != len(ctx.m.labels):
            raise Rejected(f"{name}[{o}]: expected {len(ctx.m.labels)} entries")
        for j, c in enumerate(crow):
            mine = row.get(j, Fraction(0))
            if mine != _num(c, name):
                raise Rejected(
                    f"{name}: entry {ctx.outs[o]} / {ctx.m.labels[j]} is claimed {c}, the kernel "
                    f"computes {mine}"
                )


def verify(cert: Any) -> Result:
    """Check every claim of a parsed certificate; raises :class:`Rejected` or InvalidArgument."""
    if not isinstance(cert, dict) or cert.get("format") != FORMAT_TAG:
        raise InvalidArgument(f"expected a {FORMAT_TAG} certificate")
    verdict = cert.get("verdict")
    if verdict == "too-large":
        raise Rejected(
            f"nothing to verify: too large to certify (at least {cert.get('patterns_at_least')} "
            f"patterns, limit {cert.get('limit')})"
        )
    ctx = _Ctx(cert)
    if cert.get("parameters") != ctx.m.labels:
        raise Rejected("parameters: the labels differ from the network's trainable coordinates")
    if verdict == "non-differentiable":
        res = _verify_ndf(ctx)
    elif verdict in ("differentiable", "ad-incorrect"):
        res = _verify_diff(ctx, verdict)
    elif verdict == "subgradient":  # only a subgradient claim (formal/verify/bouligand.py)
        res = Result("subgradient", "no verdict claimed")
    else:
        raise InvalidArgument(f"certificate: unknown verdict {verdict!r}")
    if "subgradient" not in cert and verdict != "subgradient":
        return res
    grad = cert.get("gradient") if verdict in ("differentiable", "ad-incorrect") else None
    try:
        extra = check_subgradient(ctx.m, ctx.preset, ctx.listed, cert.get("subgradient"), grad)
    except SubgradientRejected as exc:
        raise Rejected(f"subgradient.{exc}") from None
    return Result(res.verdict, f"{res.summary}; {extra}")


def _verify_ndf(ctx: _Ctx) -> Result:
    w = ctx.cert.get("nonadditive")
    if not isinstance(w, dict):
        raise InvalidArgument("certificate: expected 'nonadditive'")
    if w.get("output") not in ctx.outs:
        raise Rejected(f"nonadditive.output: {w.get('output')!r} is not an output")
    o = ctx.outs.index(w["output"])
    d1 = _direction(ctx.m, w.get("d1"), "nonadditive.d1")
    d2 = _direction(ctx.m, w.get("d2"), "nonadditive.d2")
    ds = dict(d1)
    axpy(ds, Fraction(1), d2)
    got = [ctx.directional(d)[o] for d in (d1, d2, ds)]
    for key, mine in zip(("df_d1", "df_d2", "df_d1_plus_d2"), got):
        if _num(w.get(key), f"nonadditive.{key}") != mine:
            raise Rejected(f"nonadditive.{key}: claimed {w.get(key)}, the kernel computes {mine}")
    if got[2] == got[0] + got[1]:
        raise Rejected("nonadditive: f'(d1 + d2) = f'(d1) + f'(d2); no non-additivity")
    extra = ""
    b = ctx.cert.get("bouligand")
    if isinstance(b, dict) and b.get("direction") is not None:
        _verify_bouligand(ctx, _direction(ctx.m, b["direction"], "bouligand.direction"))
        extra = "; Bouligand direction verified"
    return Result(
        "non-differentiable",
        f"f'(w; d) is not additive at {w['output']}: {got[0]} + {got[1]} != {got[2]}{extra}",
    )


def _verify_bouligand(ctx: _Ctx, d: Vec) -> None:
    """Every kink moves strictly to AD's side along d, in the pass where every kink uses AD's
    side.  A kink whose row is identically 0 in that pass does not move at first order; in a
    piecewise-linear network it then stays on its kink in the whole open cone, contributing
    0 on both sides, so it is allowed there (not with hardswish, whose pieces are curved)."""
    if moves_to_ad_side(ctx.m, ctx.preset, d):  # settled by one directional pass (sides.py)
        return
    curved = any(layer.act.name == "hardswish" for layer in ctx.m.layers)
    # layers at or before the first trainable one compute constants of w: a kink there stays
    # on its kink near w and its zero row contributes 0 on both sides, curved pieces or not
    heads = [name.split(".", 1)[0] for name, _ in ctx.m.coord]
    first_trained = (
        min((int(h) for h in heads), default=len(ctx.m.layers))
        if all(h.isdigit() for h in heads)
        else 0  # unknown naming: no layer is taken as constant
    )

    def kink(k: KinkId, info: Any) -> Vec:
        out: Vec = {}
        if isinstance(info, ActKink):
            p = info.proxy()
            side = 1 if p == info.d_plus else -1 if p == info.d_minus else 0
            if is_zero(info.L) and (not curved or k[1] < first_trained):
                return out
            t = dot(info.L, d)
            if side == 0 or not t * side > 0:
                raise Rejected(
                    f"bouligand.direction: kink {kink_id_text(k)} does not move strictly to "
                    f"AD's side (tangent {t}, proxy {p})"
                )
            axpy(out, info.d_plus if side > 0 else info.d_minus, info.L)
            return out
        forms = dict(info.entries)
        c = forms[info.ad_choice]
        for j, v in info.entries:
            if j != info.ad_choice and not (is_zero(sub(c, v)) and not curved):
                if not dot(sub(c, v), d) > 0:
                    raise Rejected(
                        f"bouligand.direction: tie {kink_id_text(k)}: AD's entry is not "
                        f"strictly largest (vs input {j})"
                    )
        return dict(c)

    propagate(ctx.m, coordinate_seed(ctx.m), kink, ctx.preset)


Node = tuple[int, ...]


class _PatternPass:
    """One Jacobian pass under a (partial) pattern: rows, children of each node, the map."""

    def __init__(self, ctx: _Ctx, entries: list[int], where: str):
        self.ctx, self.entries, self.where = ctx, entries, where
        self.rows: dict[tuple[int, int | None], Vec] = {}
        self.children: dict[Node, set[int]] = {}
        self.path: list[int] = []  # canonical entries so far (listed kinks only)

    def __call__(self, k: KinkId, info: Any) -> Vec:
        ctx = self.ctx
        p = ctx.pos.get(k)
        if isinstance(info, ActKink):
            kids = {0} if is_zero(info.L) else {1, -1}
        else:
            classes = tie_classes(info)
            kids = {min(c) for c in classes}
        if p is None:  # a kink the certificate does not list: allowed only if it never splits
            if len(kids) != 1 and len(self.path) < len(self.entries):
                raise Rejected(
                    f"{self.where}: kink {kink_id_text(k)} is not listed but splits directions"
                )
            e = next(iter(kids))
        elif p >= len(self.entries):
            return {}  # beyond an excluded prefix: nothing is claimed
        else:
            self.children[tuple(self.path)] = kids
            e = self.entries[p]
            if isinstance(info, TieKink):
                cls = next((c for c in tie_classes(info) if e in c), None)
                if cls is None:
                    raise Rejected(
                        f"{self.where}: sign pattern entry {e} at "
                        f"{kink_id_text(k)} is not a tied input"
                    )
                e = min(cls)
            if e not in kids:
                raise Rejected(
                    f"{self.where}: sign pattern entry {self.entries[p]} at {kink_id_text(k)} is "
                    f"not a valid piece (valid: {sorted(kids)})"
                )
            self.path.append(e)
        if isinstance(info, ActKink):
            out: Vec = {}
            if e:
                if p is not None:
                    row: Vec = {}
                    axpy(row, Fraction(e), info.L)
                    self.rows[(p, None)] = row
                axpy(out, info.d_plus if e > 0 else info.d_minus, info.L)
            return out
        tangents = dict(info.entries)
        cls = next(c for c in tie_classes(info) if e in c)
        for j, v in info.entries:
            if j not in cls and p is not None:
                self.rows[(p, j)] = sub(tangents[e], v)
        return dict(tangents[e])


def _entries(spec: Any, n: int, where: str, full: bool) -> list[int]:
    if not isinstance(spec, list) or (full and len(spec) != n) or len(spec) > n:
        raise Rejected(f"{where}: expected {n} sign pattern entries")
    if any(not isinstance(e, int) or isinstance(e, bool) for e in spec):
        raise Rejected(f"{where}: sign pattern entries must be integers")
    return list(spec)


def _verify_diff(ctx: _Ctx, verdict: str) -> Result:
    cert = ctx.cert
    n = len(ctx.listed)
    grad = cert.get("gradient")
    patterns = cert.get("patterns")
    excluded = cert.get("excluded") or []
    if not isinstance(patterns, list) or not patterns:
        raise Rejected("patterns: expected at least one realizable pattern")
    leaves: set[Node] = set()
    internal: dict[Node, set[int]] = {}
    for i, pat in enumerate(patterns):
        where = f"patterns[{i}]"
        entries = _entries(pat.get("signs"), n, where + ".signs", True)
        pp = _PatternPass(ctx, entries, where)
        G = propagate(ctx.m, coordinate_seed(ctx.m), pp, ctx.preset)
        d = _direction(ctx.m, pat.get("witness"), where + ".witness")
        for (p, j), row in pp.rows.items():
            if not dot(row, d) > 0:
                which = kink_id_text(ctx.listed[p]) + ("" if j is None else f" vs input {j}")
                raise Rejected(
                    f"{where}.witness: does not realize the sign pattern at {which} "
                    f"(row . d = {dot(row, d)})"
                )
        _matrix_equal(f"{where}: gradient", ctx, G, grad)
        leaves.add(tuple(pp.path))
        internal.update(pp.children)
    for i, ex in enumerate(excluded):
        where = f"excluded[{i}]"
        entries = _entries(ex.get("prefix"), n, where + ".prefix", False)
        pp = _PatternPass(ctx, entries, where)
        propagate(ctx.m, coordinate_seed(ctx.m), pp, ctx.preset)
        total: Vec = {}
        positive = False
        for y in ex.get("multipliers") or []:
            key = (int(y["kink"]), None if y.get("vs") is None else int(y["vs"]))
            v = _num(y.get("y"), where + ".multipliers")
            if v < 0:
                raise Rejected(f"{where}: Farkas multiplier {y.get('y')} is negative")
            if key not in pp.rows:
                raise Rejected(f"{where}: Farkas multiplier on {key}, not a row of the prefix")
            positive = positive or v > 0
            axpy(total, v, pp.rows[key])
        if not positive:
            raise Rejected(f"{where}: Farkas multipliers are all 0")
        if not is_zero(total):
            j = next(k for k, v in total.items() if v)
            raise Rejected(
                f"{where}: Farkas multipliers do not cancel: coefficient of "
                f"{ctx.m.labels[j]} is {total[j]}"
            )
        leaves.add(tuple(pp.path))
        internal.update(pp.children)
    for node, kids in internal.items():
        for c in kids:
            child = node + (c,)
            if child not in leaves and child not in internal:
                raise Rejected(f"coverage: sign pattern prefix {list(child)} is not covered")
    ad = ctx.ad()
    if verdict == "differentiable":
        _matrix_equal("gradient (AD equals it)", ctx, ad, grad)
        return Result(
            "differentiable, AD correct",
            f"{len(patterns)} realizable patterns, {len(excluded)} excluded prefixes; "
            "AD equals the gradient",
        )
    _matrix_equal("ad", ctx, ad, cert.get("ad"))
    if ad_equal(ad, grad, ctx):
        raise Rejected("ad: AD equals the gradient; no AD error")
    return Result(
        "differentiable, AD incorrect",
        f"{len(patterns)} realizable patterns, {len(excluded)} excluded prefixes; "
        "AD differs from the gradient",
    )


def ad_equal(ad: list[Vec], grad: Any, ctx: _Ctx) -> bool:
    """True when AD's rows equal the claimed gradient (already verified) entry by entry."""
    return all(
        row.get(j, Fraction(0)) == _num(c, "gradient")
        for row, crow in zip(ad, grad)
        for j, c in enumerate(crow)
    )


Check = Callable[[Any], Result]
__all__ = ["FORMAT_TAG", "Rejected", "Result", "verify"]
