"""formal-cert/1 certificates: the verdict's evidence in a form an independent kernel checks.

:func:`build_certificate` turns a verdict into a JSON object (docs/certificates.md):

- non-differentiable: the non-additivity witness (two directions, three exact
  directional derivatives) and, when the verdict has one, the Bouligand direction;
- differentiable: the tree of kink sign patterns of the kink graph's reduced map
  (docs/method.md section 5), walked in the canonical kink order (layer, sample,
  pool before activation, unit).  Each realizable pattern carries a witness
  direction; each excluded prefix carries exact Gordan multipliers ``y >= 0``
  with ``sum y_i r_i = 0`` over its strict rows (found by z3 in QF_LRA and
  re-checked here exactly).  Plus the exact gradient, and AD's value when it
  differs.  More than ``limit`` realizable patterns: ``"too-large"`` with the count.

A kink row that is identically 0 gives the single piece 0; a tie's inputs with
equal rows form one class (named by its smallest input index); so every region of
the tree is open and the unlisted degenerate pieces lie in hyperplanes.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any, TypeVar

import z3

from formal.core.activations import Preset, parse_preset
from formal.core.kinks import KinkNode
from formal.core.network import Network
from formal.core.numbers import format_exact
from formal.core.qarray import QArray
from formal.engine.forward import forward, gradient_ad
from formal.engine.kinkgraph import KinkGraph, build_kink_graph, gradient_from_graph
from formal.engine.linearity import find_side_direction
from formal.engine.outcome import Verdict, Witness
from formal.errors import InvalidArgument, NotExact

FORMAT_TAG = "formal-cert/1"
PATTERN_LIMIT = 256
"""Most realizable sign patterns a certificate lists; beyond it: "too-large"."""

Form = list[Fraction]
_T = TypeVar("_T")


class TooLarge(Exception):
    """More realizable patterns than the limit."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count


def kink_key(k: KinkNode) -> tuple[int, int, int, int]:
    """Canonical order of a kink node: layer index, sample, pool before activation, unit."""
    layer, _, op = k.node.partition(".")
    return (int(layer), k.sample, 0 if op.startswith("maxpool") else 1, k.index)


def _kink_json(k: KinkNode) -> dict[str, Any]:
    layer, _, op = k.node.partition(".")
    return {
        "op": "maxpool" if op.startswith("maxpool") else "act",
        "layer": int(layer),
        "sample": k.sample,
        "unit": k.index,
    }


def _rows(q: QArray) -> list[list[str]]:
    return [[format_exact(Fraction(v)) for v in row] for row in q.to_fractions()]


def _sparse(net: Network, d: dict[int, Fraction]) -> dict[str, str]:
    par = net.parameterization()
    return {par.label(j): format_exact(v) for j, v in sorted(d.items()) if v}


def _witness_dir(pairs: tuple[tuple[str, Fraction], ...]) -> dict[str, str]:
    return {k: format_exact(v) for k, v in pairs}


def build_certificate(
    net: Network,
    doc: dict[str, Any],
    verdict: Verdict,
    proxy: str,
    *,
    timeout: float = 60.0,
    limit: int = PATTERN_LIMIT,
) -> dict[str, Any]:
    """The formal-cert/1 object for ``verdict`` (InvalidArgument when it cannot be built)."""
    if verdict.differentiable is None:
        raise InvalidArgument(f"cannot certify an unknown verdict: {verdict.reason}")
    base: dict[str, Any] = {
        "format": FORMAT_TAG,
        "proxy": proxy,
        "method": verdict.method,
        "network": doc,
        "parameters": list(net.parameterization().labels),
        "outputs": net.output_labels(),
    }
    preset = parse_preset(proxy)
    try:
        fwd = forward(net, preset, use_filter=False)
    except NotExact as exc:
        raise InvalidArgument(f"cannot certify: {exc}") from None
    kinks = sorted(fwd.kinks, key=kink_key)
    base["kinks"] = [_kink_json(k) for k in kinks]
    if verdict.differentiable is False:
        w = verdict.witness
        assert w is not None and w.kind == "non-additive"
        vals = dict(w.values)
        base.update(
            verdict="non-differentiable",
            nonadditive={
                "output": w.output,
                "d1": _witness_dir(w.d1),
                "d2": _witness_dir(w.d2),
                **{k: format_exact(v) for k, v in vals.items()},
            },
            bouligand=_bouligand(verdict.certificate)
            or (_side_direction(net, fwd, timeout) if verdict.bouligand else None),
        )
        return base
    if not fwd.kinks:
        grad = gradient_ad(fwd)
        patterns: list[dict[str, Any]] = [{"signs": [], "witness": {}}]
        excluded: list[dict[str, Any]] = []
    else:
        g = build_kink_graph(fwd)
        try:
            patterns, excluded = enumerate_patterns(net, g, kinks, timeout, limit)
        except TooLarge as exc:
            base.update(verdict="too-large", patterns_at_least=exc.count, limit=limit)
            return base
        grad = gradient_from_graph(g)
    base.update(
        verdict="differentiable" if verdict.ad_correct else "ad-incorrect",
        gradient=_rows(grad),
        patterns=patterns,
        excluded=excluded,
    )
    if not verdict.ad_correct:
        base["ad"] = _rows(gradient_ad(fwd))
    return base


def _bouligand(cert: Witness | None) -> dict[str, Any] | None:
    if cert is None or cert.kind != "bouligand-direction":
        return None
    return {"direction": _witness_dir(cert.d1), "proof": cert.proof}


def _side_direction(net: Network, fwd: Any, timeout: float) -> dict[str, Any] | None:
    """A direction moving every kink strictly to AD's side (for a Bouligand claim made by T4,
    which carries no direction); None when the strict LP finds none."""
    g = build_kink_graph(fwd)
    sides: dict[int, int] = {}
    for k, node in enumerate(g.kinks):
        if node.kind == "tie":
            sides[k] = node.choice
        elif node.proxy == node.d_plus:
            sides[k] = 1
        elif node.proxy == node.d_minus:
            sides[k] = -1
        else:
            return None
    res = find_side_direction(g, sides, int(timeout * 1000))
    if res.status != "sat":
        return None
    d = g.direction(list(res.model[0]))
    proof = "strict LP on the kink graph (exact or z3 QF_LRA)"
    return {"direction": _sparse(net, d), "proof": proof}


# -- the pattern tree on the kink graph (coordinates lam of V) ----------------------------
def equal_classes(ys: Sequence[_T]) -> list[tuple[_T, list[int]]]:
    """The positions of ``ys`` grouped by equal rows, each class with its row, in order."""
    classes: list[tuple[_T, list[int]]] = []
    for i, y in enumerate(ys):
        for rep, members in classes:
            if rep == y:
                members.append(i)
                break
        else:
            classes.append((y, [i]))
    return classes


def _add(a: Form, b: Form, c: Fraction = Fraction(1)) -> Form:
    return [x + c * y for x, y in zip(a, b)]


def _dotf(a: Form, lam: Form) -> Fraction:
    return sum((x * y for x, y in zip(a, lam) if x), Fraction(0))


def enumerate_patterns(
    net: Network, g: KinkGraph, kinks: list[KinkNode], timeout: float, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Realizable patterns (with witnesses) and excluded prefixes (with Gordan multipliers)."""
    r = g.rank
    engine_pos = {id(k): i for i, k in enumerate(g.kinks)}
    order = [engine_pos[id(k)] for k in kinks]  # canonical position -> engine kink index
    patterns: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    zero: Form = [Fraction(0)] * r

    def kink_inputs(k: int, z: dict[int, Form]) -> list[Form]:
        node = g.kinks[k]
        ys = []
        for i in range(len(node.inputs)):
            row = g.row_of[(k, i)]
            acc: Form = [Fraction(g.basis[row, j]) for j in range(r)]
            for k2, zf in z.items():
                c = g.C[row, k2]
                if c:
                    acc = _add(acc, zf, Fraction(c))
            ys.append(acc)
        return ys

    def walk(
        depth: int,
        z: dict[int, Form],
        signs: list[int],
        strict: list[tuple[int, int | None, Form]],
        lam: Form | None,
    ) -> None:
        if depth == len(order):
            assert lam is not None
            if len(patterns) >= limit:
                raise TooLarge(len(patterns) + 1)
            patterns.append({"signs": list(signs), "witness": _sparse(net, g.direction(lam))})
            return
        k = order[depth]
        node = g.kinks[k]
        ys = kink_inputs(k, z)
        branches: list[tuple[int, list[tuple[int, int | None, Form]], Form]]
        if node.kind == "act":
            if not any(ys[0]):
                branches = [(0, [], zero)]
            else:
                branches = [
                    (
                        s,
                        [(depth, None, [s * v for v in ys[0]])],
                        [(node.d_plus if s > 0 else node.d_minus) * v for v in ys[0]],
                    )
                    for s in (1, -1)
                ]
        else:
            classes = equal_classes(ys)
            branches = []
            for rep, members in classes:
                name = min(node.inputs[i] for i in members)
                rows: list[tuple[int, int | None, Form]] = [
                    (depth, node.inputs[i], _add(rep, ys[i], Fraction(-1)))
                    for i in range(len(ys))
                    if i not in members
                ]
                branches.append((name, rows, rep))
        for entry, rows, out in branches:
            new = strict + rows
            z2 = dict(z)
            z2[k] = out
            cand = lam if lam is not None and all(_dotf(f, lam) > 0 for _, _, f in rows) else None
            if cand is None:
                cand, mult = _feasible(new, r, timeout)
                if cand is None:
                    excluded.append({"prefix": signs + [entry], "multipliers": mult})
                    continue
            walk(depth + 1, z2, signs + [entry], new, cand)

    walk(0, {}, [], [], zero)
    return patterns, excluded


def _q(x: Fraction) -> z3.ArithRef:
    return z3.RealVal(format_exact(x))  # any size (str(int) stops at 4300 digits)


def _feasible(
    rows: list[tuple[int, int | None, Form]], r: int, timeout: float
) -> tuple[Form | None, list[dict[str, Any]]]:
    """A lam with every row . lam >= 1, or exact Gordan multipliers proving there is none."""
    lam = [z3.Real(f"l{j}") for j in range(r)]
    s = z3.SolverFor("QF_LRA")
    s.set("timeout", int(timeout * 1000))
    for _, _, f in rows:
        terms = [_q(c) * lam[j] for j, c in enumerate(f) if c]
        s.add((z3.Sum(terms) if terms else z3.RealVal(0)) >= 1)
    res = s.check()
    if res == z3.sat:
        m = s.model()
        val = [Fraction(m.eval(v, model_completion=True).as_fraction()) for v in lam]
        if all(_dotf(f, val) > 0 for _, _, f in rows):
            return val, []
        raise InvalidArgument("cannot certify: solver model failed exact re-check")
    if res != z3.unsat:
        raise InvalidArgument(f"cannot certify: z3 returned {res} ({s.reason_unknown()})")
    ys = [z3.Real(f"y{i}") for i in range(len(rows))]
    d = z3.SolverFor("QF_LRA")
    d.set("timeout", int(timeout * 1000))
    d.add(*[y >= 0 for y in ys])
    d.add(z3.Sum(ys) == 1)
    for j in range(r):
        terms = [_q(f[j]) * ys[i] for i, (_, _, f) in enumerate(rows) if f[j]]
        if terms:
            d.add(z3.Sum(terms) == 0)
    if d.check() != z3.sat:
        raise InvalidArgument("cannot certify: no Gordan multipliers found for an empty cone")
    m = d.model()
    yv = [Fraction(m.eval(y, model_completion=True).as_fraction()) for y in ys]
    total = [Fraction(0)] * r
    for v, (_, _, f) in zip(yv, rows):
        total = _add(total, f, v)
    if any(total) or any(v < 0 for v in yv) or not any(yv):
        raise InvalidArgument("cannot certify: Gordan multipliers failed exact re-check")
    return None, [
        {"kink": k, "vs": vs, "y": format_exact(v)} for v, (k, vs, _) in zip(yv, rows) if v
    ]


def load_document(text: str) -> dict[str, Any]:
    """A formal-net/1 file's JSON with every decimal kept as its exact text."""
    import json

    doc = json.loads(text, parse_float=str)
    if not isinstance(doc, dict):
        raise InvalidArgument("expected a formal-net/1 JSON object")
    return doc


__all__ = [
    "FORMAT_TAG",
    "PATTERN_LIMIT",
    "TooLarge",
    "build_certificate",
    "load_document",
    "enumerate_patterns",
    "kink_key",
]
_ = Preset
