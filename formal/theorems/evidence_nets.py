"""Evidence built from networks and engine verdicts: Lemma 7 (convolution with a shared bias
and a max-pool, decided by :func:`formal.engine.verdict.check` under each tie rule), T5's
frozen-bias counterexamples (and :func:`t5_applies`, the hypothesis check the catalogue uses),
and T3 tightness from engine verdicts (exhaustive per point, and stratified sampling on
large formats) rather than from the closed form its proof uses.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from itertools import combinations

import numpy as np

from formal.core.builders import dense_network
from formal.core.builders import zero_mlp as mlp
from formal.core.network import Network, Node
from formal.core.numbers import Format, parse_format
from formal.core.qarray import QArray
from formal.count.counting import member_at, tightness_density, with_point
from formal.engine.batch import dense_chain
from formal.engine.verdict import check
from formal.theorems.record import Recorder, S

# ---------------------------------------------------------------------------
# Lemma 7 as a network


def lemma7_net(fmt: str = "fp(3,2)", tie: tuple[str, ...] | None = None) -> Network:
    """ICLR 2024 Lemma 7: a 1x1 convolution (kernel u) with one shared bias b on the image
    x = (1, 0, -1, 0) gives (u + b, b, -u + b, b); max-pools over {1, 2} and {3, 4};
    objective m1 - m2.  ``tie`` overrides the preset's tie rule per window."""
    x = QArray.from_fractions([[[[Fraction(1), Fraction(0), Fraction(-1), Fraction(0)]]]])
    conv = (("strides", (1, 1)), ("pads", (0, 0, 0, 0)), ("dilations", (1, 1)), ("groups", 1))
    pool: list[tuple[str, object]] = [
        ("kernel", (1, 2)),
        ("strides", (1, 2)),
        ("pads", (0, 0, 0, 0)),
    ]
    if tie is not None:
        pool.append(("tie", tie))
    nodes = (
        Node("x", "input", (), (1, 1, 4)),
        Node("p:u", "param", (), (1, 1, 1, 1), (("name", "u"),)),
        Node("p:b", "param", (), (1,), (("name", "b"),)),
        Node("c", "conv2d", ("x", "p:u"), (1, 1, 4), conv),
        Node("bv", "view", ("p:b",), (1, 1, 1)),
        Node("y", "add", ("c", "bv"), (1, 1, 4)),
        Node("m", "maxpool2d", ("y",), (1, 1, 2), tuple(pool)),
    )
    zero = np.zeros((1, 1, 1, 1), dtype=object)
    zero[...] = Fraction(0)
    params = {"u": QArray.from_fractions(zero), "b": QArray.from_fractions([Fraction(0)])}
    return Network(
        nodes,
        "m",
        x,
        params,
        parse_format(fmt),
        ("u", "b"),
        ("u", "b"),
        objective=QArray.from_fractions([[Fraction(1), Fraction(-1)]]),
        objective_kind="scalar",
        source="Lemma 7 (conv + shared bias + max-pool)",
    )


LEMMA7_RULES: tuple[tuple[str, str, tuple[str, ...] | None, tuple[int, int]], ...] = (
    ("first-index", "pytorch,tie=first", None, (2, 0)),
    ("second-index", "pytorch,tie=last", None, (0, 0)),
    ("mixed", "pytorch", ("first", "last"), (1, 0)),
    ("mixed (other way)", "pytorch", ("last", "first"), (1, 0)),
)


def lemma7(rec: Recorder, budget: str) -> None:
    """Evidence for Lemma 7: engine verdicts on the conv + max-pool network under each tie rule."""
    fmt = "fp(3,2)" if budget == "quick" else "e4m3"
    grad = ((Fraction(1), Fraction(0)),)
    for label, preset, tie, ad in LEMMA7_RULES:
        v = check(lemma7_net(fmt, tie), preset, gradient=True)
        got = v.ad_gradient[0] if v.ad_gradient is not None else grad[0]
        rec.expect(
            v.kink_neurons == 2
            and all(k.kind == "tie" for k in v.kinks)
            and v.differentiable is True
            and v.gradient == grad
            and got == (Fraction(ad[0]), Fraction(ad[1]))
            and v.in_inc is (ad != (1, 0)),
            f"{label} tie rule ({preset}{'' if tie is None else f', node tie={tie}'}): "
            f"formal.check on the conv + max-pool net at (u, b) = (0, 0) finds "
            f"{v.kink_neurons} ties, differentiable = {v.differentiable} ({v.method}), gradient "
            f"{list(map(S, v.gradient[0])) if v.gradient else None}, AD {list(map(S, got))}, "
            f"in_inc = {v.in_inc}",
            preset=preset,
            ad=[S(a) for a in got],
        )
    # every tie point (0, b) of the format, and points off the tie
    net = lemma7_net(fmt)
    members = net.numbers.enumerate()
    bad = 0
    for preset, ad in (("pytorch,tie=first", (2, 0)), ("pytorch,tie=last", (0, 0))):
        for b in members:
            v = check(with_point(net, [Fraction(0), b]), preset, gradient=True)
            ok = (
                v.differentiable is True
                and v.gradient == grad
                and v.ad_gradient == ((Fraction(ad[0]), Fraction(ad[1])),)
            )
            bad += not ok
    rng = random.Random(7)
    off = [(rng.choice(members), rng.choice(members)) for _ in range(20)]
    off = [(u, b) for u, b in off if u != 0]
    for u, b in off:
        v = check(with_point(net, [u, b]), "pytorch", gradient=True)
        bad += not (v.kink_neurons == 0 and v.gradient == grad and v.ad_correct is True)
    rec.expect(
        bad == 0,
        f"formal.check at all {len(members)} tie points (0, b) of {fmt}^2 under tie=first and "
        f"tie=last (AD (2, 0) and (0, 0), gradient (1, 0) everywhere) and at {len(off)} random "
        f"points with u != 0 (no tie, AD = gradient (1, 0)): {bad} disagreements",
    )
    vals = net.numbers.enumerate()
    wrong = sum(1 for u in vals for b in vals if max(u + b, b) - max(-u + b, b) != u)
    rec.expect(
        wrong == 0,
        f"independent exact evaluation (Fractions, no engine): f(u, b) = u at all "
        f"{len(vals) ** 2} points of {fmt}^2",
    )


# ---------------------------------------------------------------------------
# T5 and frozen biases

ZERO_SIDE = ("relu", "relu6")


def t5_applies(net: Network) -> tuple[bool, str]:
    """T5's hypotheses, with frozen biases: a frozen bias anchors nothing.

    B = 1, dense chain, every weight trainable and untied.  A kinked layer with
    a frozen bias entry equal to a kink c != 0 can put a unit with no input on
    c unanchored, which breaks part (i)'s corollary (HardTanh-like kinks are
    always anchored); then only part (ii) can apply, whose activations are the
    zero-side ones (ReLU, ReLU6).  The proxy condition depends on the preset.
    """
    chain = dense_chain(net)
    if chain is None:
        return False, "not a dense chain"
    if net.ties:
        return False, "tied parameters"
    for ly in chain.layers:
        if ly.weight not in net.trainable:
            return False, f"weight {ly.weight} is frozen"
    if net.batch != 1:
        return False, f"B = {net.batch} > 1"
    on_kink = []
    kinked = [ly for ly in chain.layers if ly.act is not None and ly.act.kinks]
    for ly in kinked:
        assert ly.act is not None
        if ly.bias is None or ly.bias in net.trainable:
            continue
        vals = set(net.params[ly.bias].to_fractions().reshape(-1).tolist())
        hit = [c for c in ly.act.kinks if c != 0 and c in vals]
        if hit:
            on_kink.append(f"bias {ly.bias} is frozen at the {ly.act.name} kink {S(hit[0])}")
    base = "B = 1, dense chain, every weight trainable and untied"
    if not on_kink:
        return True, base + " (biases trainable, absent, or frozen off the non-zero kinks); " + (
            "the proxy condition depends on the preset (see statement)"
        )
    if all(ly.act is not None and ly.act.name in ZERO_SIDE for ly in kinked):
        return True, (
            base + "; " + on_kink[0] + " (no anchor): part (ii) only, zero-side proxies "
            "(pytorch, jax, tensorflow, left)"
        )
    return False, (
        on_kink[0] + ": a unit with no input sits on that kink and a frozen bias is no anchor "
        "(part (i) fails; part (ii) needs ReLU/ReLU6)"
    )


def frozen_bias_net(acts: tuple[str, str], b1: int | None, b2: int, frozen: bool) -> Network:
    """1-1-1 net, x = 1, at w1 = 0, v = 1: the output unit's input is 0 and its bias b2."""
    trainable = ["0.weight", "1.weight"] + (["0.bias"] if b1 is not None else [])
    if not frozen:
        trainable.append("1.bias")
    return dense_network(
        [[[0]], [[1]]],
        [[b1] if b1 is not None else None, [b2]],
        [[1]],
        list(acts),
        numbers="fp(3,2)",
        trainable=trainable,
        source=f"1-1-1 {acts[0]}/{acts[1]}, x = 1, output bias {b2} "
        + ("frozen" if frozen else "trainable"),
    )


FROZEN_CASES: tuple[tuple[tuple[str, str], int | None, int], ...] = (
    (("relu", "hardtanh"), None, 1),
    (("hardsigmoid", "hardsigmoid"), -3, 3),
)


def t5_frozen(rec: Recorder, budget: str) -> None:
    """Frozen biases: counterexamples to the old corollary, rejected by :func:`t5_applies`."""
    for acts, b1, b2 in FROZEN_CASES:
        frozen = frozen_bias_net(acts, b1, b2, True)
        ok, why = t5_applies(frozen)
        v = check(frozen, "lambda=1/2", gradient=True)
        rec.expect(
            ok is False and v.differentiable is True and v.in_inc is True,
            f"{frozen.source}: formal.check with lambda=1/2 (proxies in [D-, D+]): "
            f"differentiable = {v.differentiable}, AD {list(map(S, v.ad_gradient[0])) if v.ad_gradient else None} "  # noqa: E501
            f"!= gradient {list(map(S, v.gradient[0])) if v.gradient else None}, in_inc = "
            f"{v.in_inc}: a frozen bias puts the unit with input 0 on a kink; T5 applies = {ok} "
            f"({why})",
            applies=ok,
            in_inc=v.in_inc,
        )
        trained = frozen_bias_net(acts, b1, b2, False)
        ok2, _ = t5_applies(trained)
        incs = {p: check(trained, p).in_inc for p in ("pytorch", "left", "right", "lambda=1/2")}
        rec.expect(
            ok2 is True and not any(incs.values()),
            f"same point with the output bias trainable (an anchor): T5 applies = {ok2}; "
            f"formal.check in_inc = {incs}",
        )
    # part (ii) survives frozen biases: ReLU, frozen biases on and off the kinks, pytorch
    n_pts = bad = 0
    rng = random.Random(13)
    fmt = parse_format("fp(2,1)")
    members = fmt.enumerate()
    for b1, b2 in ((1, -1), (0, 0), (-1, 2)):
        net = dense_network(
            [[[0]], [[0]]],
            [[b1], [b2]],
            [[1]],
            ["relu", "relu6"],
            numbers="fp(2,1)",
            trainable=["0.weight", "1.weight"],
        )
        if not t5_applies(net)[0]:
            bad += 1
            continue
        for _ in range(30 if budget == "quick" else 200):
            w = [rng.choice(members + [Fraction(0)] * 4) for _ in range(2)]
            v = check(with_point(net, w), "pytorch")
            n_pts += 1
            bad += v.in_inc is True
    rec.expect(
        bad == 0 and n_pts > 0,
        f"part (ii) with frozen biases (1-1-1 relu/relu6, biases frozen at (1, -1), (0, 0), "
        f"(-1, 2)): T5 applies, and formal.check finds in_inc at 0 of {n_pts} random points "
        f"(pytorch)",
    )


# ---------------------------------------------------------------------------
# T3 tightness from engine verdicts


def tightness_per_point(rec: Recorder, budget: str) -> None:
    """Every point of fp(2,1)^3 (N = 1) decided by formal.check; density = formula."""
    net = mlp("fp(2,1)", [["0"]], [1], "relu")
    vals = net.numbers.enumerate()
    ndf = sum(
        1 for w in vals for b in vals for v in vals if check(with_point(net, [w, b, v])).in_ndf
    )
    M = len(vals)
    dens = Fraction(ndf, M**3)
    formula = tightness_density(M, [(1, 1)])
    rec.expect(
        dens == formula,
        f"exhaustive engine verdicts: formal.check at all {M**3} points of fp(2,1)^3 (N = 1): "
        f"|ndf| = {ndf}, density {S(dens)} = formula {S(formula)}",
        measured=S(dens),
        formula=S(formula),
    )


def _clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for k successes in n at level 1 - alpha (k in {0, n}
    closed form; otherwise bisection on the binomial tail)."""

    def tail_ge(p: float) -> float:  # P(X >= k)
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    def tail_le(p: float) -> float:  # P(X <= k)
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(0, k + 1))

    def solve(f, target: float, increasing: bool) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if (f(mid) < target) == increasing:
                lo = mid
            else:
                hi = mid
        return lo if increasing else hi

    lo = 0.0 if k == 0 else solve(tail_ge, alpha / 2, True)
    hi = 1.0 if k == n else solve(tail_le, alpha / 2, False)
    return lo, hi


def _nonzero(fmt: Format, rng: random.Random) -> Fraction:
    """A uniform non-zero member of M."""
    while True:
        m = member_at(fmt, rng.randrange(fmt.size()))
        if m != 0:
            return m


def tightness_sampled(rec: Recorder, budget: str) -> None:
    """Stratified sampling of engine verdicts on the tightness family, against the formula.

    Omega is partitioned by (Z, V): the units whose bias is 0 and those whose output
    weight is 0 (exact stratum probabilities).  Strata with Z empty have no kink
    neuron; a few of their points are decided too.  In every other stratum points are
    drawn uniformly and decided by formal.check; each stratum's ndf fraction gets a
    Clopper-Pearson interval (Bonferroni over the strata) and the weighted sum is
    compared with the formula 1 - (1 - (1 - 1/|M|)/|M|)^N.
    """
    per = 6 if budget == "quick" else 30
    cases = [("binary16", 1), ("bfloat16", 2), ("binary32", 2)]
    if budget == "full":
        cases += [("e4m3", 3), ("binary32", 3)]
    rng = random.Random(17)
    for fmt_name, N in cases:
        net = mlp(fmt_name, [["0"]], [N], "relu")
        fmt = net.numbers
        M = fmt.size()
        labels = net.parameterization().labels
        col = {lab: j for j, lab in enumerate(labels)}
        p0 = Fraction(1, M)
        units = range(N)
        strata = [
            (frozenset(Z), frozenset(V))
            for z in range(1, N + 1)
            for Z in combinations(units, z)
            for v in range(N + 1)
            for V in combinations(units, v)
        ]
        alpha = 0.05 / len(strata)

        lo = hi = Fraction(0)
        lo_f = hi_f = 0.0
        disagree = 0
        draws = 0
        for Z, V in strata:
            prob = Fraction(1)
            for i in units:
                prob *= (p0 if i in Z else 1 - p0) * (p0 if i in V else 1 - p0)
            k = 0
            for _ in range(per):
                w = [member_at(fmt, rng.randrange(M)) for _ in labels]
                for i in units:
                    w[col[f"0.bias[{i}]"]] = Fraction(0) if i in Z else _nonzero(fmt, rng)
                    w[col[f"1.weight[0,{i}]"]] = Fraction(0) if i in V else _nonzero(fmt, rng)
                k += bool(check(with_point(net, w)).in_ndf)
                draws += 1
            predicted = 1 if Z - V else 0
            disagree += k != predicted * per
            a, b = _clopper_pearson(k, per, alpha)
            lo += prob * Fraction(a)
            hi += prob * Fraction(b)
            lo_f, hi_f = float(lo), float(hi)
        # the strata with no bias at 0: no pre-activation on the kink, so no kink neuron
        smooth = 0
        for _ in range(per):
            w = [member_at(fmt, rng.randrange(M)) for _ in labels]
            for i in units:
                w[col[f"0.bias[{i}]"]] = _nonzero(fmt, rng)
            vv = check(with_point(net, w))
            smooth += vv.kink_neurons == 0 and vv.in_ndf is False
        formula = tightness_density(M, [(N, 1)])
        rec.expect(
            lo <= formula <= hi and smooth == per and disagree == 0,
            f"sampled engine verdicts, {fmt_name} N = {N}: formal.check at {draws} points drawn "
            f"in the {len(strata)} strata (which biases and output weights are 0) with a kink: "
            f"weighted ndf density in [{lo_f:.6g}, {hi_f:.6g}] (Clopper-Pearson, Bonferroni, "
            f"95%) contains the formula {float(formula):.6g}; {disagree} strata differ from "
            f"the formula's 0/1 prediction; {smooth}/{per} points with no bias at 0 have no "
            f"kink and are differentiable",
            formula=S(formula),
            interval=[lo_f, hi_f],
        )


__all__ = [
    "lemma7_net",
    "lemma7",
    "LEMMA7_RULES",
    "t5_applies",
    "frozen_bias_net",
    "t5_frozen",
    "FROZEN_CASES",
    "tightness_per_point",
    "tightness_sampled",
]
