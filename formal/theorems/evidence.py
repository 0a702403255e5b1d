"""Evidence for T1-T3, the tightness formula, Lemma D and Lemma Z (one function per result).

Every function takes a :class:`~formal.theorems.Recorder` and a budget and
records numbers: exhaustive counts (:func:`formal.count.exhaustive`, whose
pattern method does not use T1-T5), conditional counts, and verdicts of the
core.  Exhaustive runs are shared between results through ``rec.cache``.
The other results are in :mod:`formal.theorems.evidence_cases`.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import parse_preset
from formal.core.builders import zero_mlp as mlp
from formal.core.network import Network, bias_structure
from formal.core.numbers import parse_format
from formal.count import bias as count_bias
from formal.count.counting import (
    exhaustive,
    members_scaled,
    t3_bound,
    tightness_density,
    with_point,
)
from formal.engine.batch import require_chain
from formal.engine.forward import exact_forward
from formal.engine.patterns import explain, t2_criterion
from formal.engine.verdict import check, directional
from formal.examples import load_example
from formal.theorems.evidence_nets import tightness_per_point, tightness_sampled
from formal.theorems.record import Recorder, S

PRESETS_H = ("pytorch", "left", "right", "lambda=1/2", "lambda=1/3", "value=7", "jax")


# ---------------------------------------------------------------------------
# H networks shared by T1, T2, T3


def _bound(net: Network) -> Fraction:
    """The T3 bound of a network where H holds."""
    b = t3_bound(net)
    assert b is not None, f"{net.source}: H fails"
    return b


def _h_nets(budget: str) -> list[tuple[str, Network]]:
    nets = [
        ("1-2-1 relu, x = 1", mlp("fp(2,1)", [["1"]], [2], "relu")),
        ("1-1-1 relu6, x = 3, output bias", mlp("fp(2,1)", [["3"]], [1], "relu6", out_bias=True)),
        (
            "1-1-1 hardsigmoid, x = 3, output bias",
            mlp("fp(2,1)", [["3"]], [1], "hardsigmoid", out_bias=True),
        ),
        (
            "1-1-1 hardswish, x = 1/2, output bias",
            mlp("fp(2,1)", [["1/2"]], [1], "hardswish", out_bias=True),
        ),
        (
            "2-1-1 leaky_relu(1/100), x = (1, -1/2)",
            mlp("fp(2,1)", [["1", "-1/2"]], [1], {"name": "leaky_relu", "slope": "1/100"}),
        ),
        ("1-1-1-1 relu/relu, x = 1", mlp("fp(2,1)", [["1"]], [1, 1], "relu")),
        (
            "1-1-1 abs, x = 3/2, hardtanh output",
            mlp("fp(2,1)", [["3/2"]], [1], "abs", out_act="hardtanh", out_bias=True),
        ),
    ]
    if budget == "full":
        nets += [
            ("2-1-1 relu, x = (3, -1/2) (fp(2,2))", mlp("fp(2,2)", [["3", "-1/2"]], [1], "relu")),
            ("1-1-1 hardtanh e4m3, x = 3/4", mlp("e4m3", [["3/4"]], [1], "hardtanh")),
            (
                "1-1-1-1 hardsigmoid/hardsigmoid, x = 1 (fp(2,2))",
                mlp("fp(2,2)", [["1"]], [1, 1], "hardsigmoid"),
            ),
            (
                "1-1-1 hardswish fp(3,2), x = 3, output bias",
                mlp("fp(3,2)", [["3"]], [1], "hardswish", out_bias=True),
            ),
        ]
    return nets


def _t2_hook(chain, w, q, bv) -> dict[str, int]:
    assert chain is not None
    crit = t2_criterion(chain, w, q)
    return {"t2_mismatch": int(np.sum(crit != bv.ndf)), "t2_true": int(crit.sum())}


def _h_runs(rec: Recorder, budget: str) -> list[tuple[str, Network, Any]]:
    key = f"h-runs:{budget}"
    if key not in rec.cache:
        runs = []
        for label, net in _h_nets(budget):
            ex = exhaustive(net, PRESETS_H, hooks=[_t2_hook], cross_check=12)
            runs.append((label, net, ex))
        rec.cache[key] = runs
    return rec.cache[key]


def t1(rec: Recorder, budget: str) -> None:
    """Evidence for T1: exhaustive counts on nets satisfying H give |inc| = 0 for every preset."""
    total = 0
    for label, net, ex in _h_runs(rec, budget):
        rec.expect(bias_structure(net).holds, f"{label}: H holds ({bias_structure(net).reason})")
        incs = {p: ex.inc[p] for p in PRESETS_H}
        total += ex.omega
        rec.expect(
            all(v == 0 for v in incs.values()),
            f"{label} over {net.numbers.name}^{net.param_count()} = {ex.omega} points: |inc| = 0 "
            f"for "
            f"{', '.join(PRESETS_H)} (|ndf| = {ex.ndf}; {ex.cross_checked} points re-decided by "
            f"check)",
            omega=str(ex.omega),
            ndf=str(ex.ndf),
            inc={k: str(v) for k, v in incs.items()},
        )
    rec.note(
        f"{total} points enumerated; decisions by the pattern method (Lemma D + Gordan), which "
        f"does not use T1"
    )


def t2(rec: Recorder, budget: str) -> None:
    """Evidence for T2: the bias criterion equals exact non-differentiability at every point."""
    for label, _net, ex in _h_runs(rec, budget):
        mis = ex.extra.get("t2_mismatch", -1)
        rec.expect(
            mis == 0 and ex.extra.get("t2_true") == ex.ndf,
            f"{label}: T2's criterion (a kink unit with non-zero adjoint) equals exact "
            f"non-differentiability "
            f"at all {ex.omega} points ({ex.ndf} in ndf, {mis} disagreements)",
            omega=str(ex.omega),
            ndf=str(ex.ndf),
            mismatches=mis,
        )


def t3(rec: Recorder, budget: str) -> None:
    """Evidence for T3: the exact ndf density of each H net is at most the bound sum N k / |M|."""
    for label, net, ex in _h_runs(rec, budget):
        bound = _bound(net)
        dens = Fraction(ex.ndf, ex.omega)
        rec.expect(
            dens <= bound,
            f"{label}: density {S(dens)} ~ {float(dens):.4g} <= bound {S(bound)} ~ "
            f"{float(bound):.4g}",
            density=S(dens),
            bound=S(bound),
        )
        if len(net.parameterization().labels) <= 7:
            cc = count_bias.count_conditional(net)
            rec.expect(
                cc.space == "omega" and cc.ndf == ex.ndf,
                f"{label}: conditional counting (closed form over the biases) gives the same |ndf| "
                f"= {cc.ndf}",
                conditional=str(cc.ndf),
                exhaustive=str(ex.ndf),
            )
    rng = random.Random(3)
    big = [("e4m3", 64, "3/4"), ("e5m2", 64, "3/4"), ("binary16", 256, "1/3")]
    if budget == "full":
        big += [("bfloat16", 1024, "1/3"), ("binary32", 4096, "5/7"), ("e4m3", 512, "1")]
    for fmt_name, N, x in big:
        net = _random_net(fmt_name, N, x, rng)
        cc = count_bias.count_conditional(net, given="net")
        bound = _bound(net)
        rec.expect(
            cc.density_ndf <= bound,
            f"{fmt_name} 1-{N}-1 relu, random weights, x = {x}: exact density over the {N + 1} "
            f"biases "
            f"{float(cc.density_ndf):.4g} <= bound {float(bound):.4g} (|slice| = |M|^{N + 1})",
            density=S(cc.density_ndf),
            bound=S(bound),
        )
    net = _random_net("binary32", 64, "1/3", rng)
    cm = count_bias.conditional_mc(
        net,
        parse_preset("pytorch"),
        samples=200 if budget == "quick" else 2000,
        seed=1,
        progress=False,
    )
    assert cm.ci is not None
    lo, hi = cm.ci["density_ndf"]
    rec.expect(
        lo <= float(_bound(net)),
        f"binary32 1-64-1 relu, x = 1/3, over all of Omega: conditional Monte Carlo density "
        f"{cm.density_ndf:.4g} (95% CI [{lo:.3g}, {hi:.3g}], {cm.samples} samples) <= bound "
        f"{float(_bound(net)):.4g}",
        estimate=cm.density_ndf,
        ci=[lo, hi],
        bound=S(_bound(net)),
    )


def _random_net(fmt_name: str, N: int, x: str, rng: random.Random) -> Network:
    """1-N-1 relu net with weights drawn from the members of M in [-4, 4] (biases 0)."""
    fmt = parse_format(fmt_name)
    net = mlp(fmt_name, [[x]], [N], "relu", out_bias=True)

    def draw() -> Fraction:
        while True:
            e = rng.randint(-6, 2)
            m = rng.randint(0, (1 << fmt.mbits) - 1)
            v = (1 + Fraction(m, 1 << fmt.mbits)) * Fraction(2) ** e * rng.choice((-1, 1))
            if fmt.contains(v):
                return v

    vals = []
    for lab in net.parameterization().labels:
        vals.append(Fraction(0) if "bias" in lab else draw())
    return with_point(net, vals)


# ---------------------------------------------------------------------------
# tightness


def _family(fmt: str, N: int) -> Network:
    return mlp(fmt, [["0"]], [N], "relu", name=f"tightness family {fmt} N={N}")


_SOURCE = {
    "exact": "exhaustive enumeration, pattern method (Lemma D + Gordan, no use of T2)",
    "conditional": "conditional count, T2's closed form (the proof's own route)",
}


def tightness(rec: Recorder, budget: str) -> None:
    """Evidence for T3 tightness: the exact density equals the closed formula, below the bound."""
    cases = [
        ("fp(2,1)", 1, "exact"),
        ("fp(2,1)", 2, "exact"),
        ("fp(2,2)", 1, "exact"),
        ("fp(2,1)", 3, "conditional"),
        ("fp(3,2)", 1, "conditional"),
        ("e4m3", 1, "conditional"),
        ("e5m2", 1, "conditional"),
    ]
    if budget == "full":
        cases += [("fp(2,2)", 2, "conditional"), ("fp(3,2)", 2, "conditional")]
    for fmt_name, N, how in cases:
        net = _family(fmt_name, N)
        fmt = net.numbers
        km = 1 if fmt.contains(0) else 0
        formula = tightness_density(fmt.size(), [(N, km)])
        got: Fraction | float
        if how == "exact":
            ex = exhaustive(net, ("pytorch",), cross_check=8)
            got = Fraction(ex.ndf, ex.omega)
        else:
            cc = count_bias.count_conditional(net, theta_max=10**8)
            rec.expect(
                cc.space == "omega", f"{fmt_name}, N = {N}: conditional count over all of Omega"
            )
            got = cc.density_ndf
        bound = _bound(net)
        rec.expect(
            got == formula and got <= bound,
            f"{fmt_name}, N = {N} ({_SOURCE[how]} over all {fmt.size()}^{3 * N} points): "
            f"density {S(got)} = "
            f"1 - (1 - k_M (1 - 1/|M|)/|M|)^N = {S(formula)}; bound N k/|M| = {S(bound)}",
            measured=S(got),
            formula=S(formula),
            bound=S(bound),
        )
    # large N: the bias slice at given weights, and the formula's first-order agreement with
    # the bound
    for fmt_name in ("e4m3", "binary16", "bfloat16"):
        fmt = parse_format(fmt_name)
        for N in (16, 256):
            f = tightness_density(fmt.size(), [(N, 1)])
            b = Fraction(N, fmt.size())
            rec.expect(
                f <= b and b - f <= b * b,
                f"{fmt_name}, N = {N} (arithmetic on the two closed forms): formula "
                f"{float(f):.6g} <= bound {float(b):.6g}, gap <= "
                f"bound^2 "
                f"(first-order tightness)",
                formula=S(f),
                bound=S(b),
            )
    net = mlp("e4m3", [["0"]], [64], "relu")
    vals = [Fraction(0) if "bias" in lab else Fraction(1) for lab in net.parameterization().labels]
    cc = count_bias.count_conditional(with_point(net, vals), given="net")
    want = 1 - (1 - Fraction(1, 253)) ** 64
    rec.expect(
        cc.density_ndf == want,
        f"e4m3 N = 64, every v_i = 1: exact slice density {float(cc.density_ndf):.6g} = 1 - (1 - "
        f"1/|M|)^64",
        measured=S(cc.density_ndf),
    )
    tightness_per_point(rec, budget)
    tightness_sampled(rec, budget)


# ---------------------------------------------------------------------------
# Lemma D, Lemma Z


def lemma_d(rec: Recorder, budget: str) -> None:
    """Evidence for Lemma D: axis-trap is axis-linear yet ndf; elsewhere grad_j = f'(w; e_j)."""
    net = load_example("axis-trap")
    pre = parse_preset("pytorch")
    fwd = exact_forward(net, pre)
    e1, e2 = {0: Fraction(1)}, {1: Fraction(1)}
    d = directional(
        fwd, [e1, {0: Fraction(-1)}, e2, {1: Fraction(-1)}, {0: Fraction(1), 1: Fraction(-1)}]
    )
    axis_linear = d[0][0] == -d[1][0] and d[2][0] == -d[3][0]
    rec.expect(
        axis_linear and d[4][0] != d[0][0] + d[3][0],
        f"axis trap |w1 + w2| - |w1| - |w2| at 0: f'(e1) = {S(d[0][0])} = -f'(-e1), f'(e2) = "
        f"{S(d[2][0])} = "
        f"-f'(-e2), but f'(e1 - e2) = {S(d[4][0])} != f'(e1) + f'(-e2) = {S(d[0][0] + d[3][0])}",
    )
    v = check(net, "pytorch")
    rep = explain(require_chain(net), np.array([0, 0]), 1, [pre])
    rec.expect(
        v.in_ndf is True and not rep.differentiable,
        f"core verdict in_ndf = {v.in_ndf} ({v.method}); pattern method: {len(rep.feasible)} "
        f"feasible side "
        f"patterns with {len({rep.selected[s] for s in rep.feasible})} distinct Jacobians -> not "
        f"differentiable",
    )
    # at differentiable kink points the gradient is f'(w; e_j)
    net = mlp("fp(2,1)", [["1"]], [2], "abs", bias=False, out_act="relu")
    rng = random.Random(5)
    vals, q = members_scaled(net.numbers)
    n = 0
    for _ in range(60 if budget == "quick" else 400):
        w = [Fraction(int(rng.choice([0, 0] + list(vals))), q) for _ in range(net.param_count())]
        n2 = with_point(net, w)
        vv = check(n2, "pytorch", gradient=True)
        if not vv.kink_neurons or not vv.differentiable or vv.gradient is None:
            continue
        fw = exact_forward(n2, pre)
        dd = directional(fw, [{j: Fraction(1)} for j in range(len(w))])
        grad = vv.gradient[0]
        n += 1
        if not rec.quiet(
            all(dd[j][0] == grad[j] for j in range(len(w))),
            f"gradient != axis derivatives at {list(map(S, w))}",
        ):
            return
    rec.expect(
        n > 0,
        f"{n} differentiable kink points of a bias-free 1-2-1 abs/relu net: gradient_j = f'(w; "
        f"e_j) exactly",
    )


def lemma_z(rec: Recorder, budget: str) -> None:
    """Evidence for Lemma Z: zero kink adjoints give a differentiable point with AD correct."""
    nets = [
        mlp(
            "fp(2,1)",
            [["1"], ["-1/2"]],
            [2],
            "relu",
            bias=False,
            out_act="relu",
            objective={"type": "sum"},
        ),
        mlp("fp(2,1)", [["1"]], [1, 2], "hardtanh", bias=False, out_act="relu"),
    ]
    rng = random.Random(11)
    fired = 0
    checked = 0
    for net in nets:
        chain = require_chain(net)
        vals, q = members_scaled(net.numbers)
        for _ in range(50 if budget == "quick" else 1000):
            w = [int(rng.choice([0, 0, 0] + list(vals))) for _ in range(net.param_count())]
            wf = [Fraction(x, q) for x in w]
            for p in ("pytorch", "right"):
                v = check(with_point(net, wf), p)
                if v.method != "adjoint-zero":
                    continue
                fired += 1
                rep = explain(chain, np.array(w), q, [parse_preset(p)])
                ok = rep.differentiable and rep.ad[p] == rep.selected[sorted(rep.feasible)[0]]
                checked += 1
                if not rec.quiet(
                    ok, f"Lemma Z at {list(map(S, wf))} ({p}): the pattern method disagrees"
                ):
                    return
    rec.expect(
        fired >= 10,
        f"{fired} kink points (B = 2 bias-free and 1-1-2-1 hardtanh nets) where every kink adjoint "
        f"is 0: "
        f"the independent pattern method confirms differentiable and AD = gradient at all "
        f"{checked}",
    )


__all__ = [
    "PRESETS_H",
    "mlp",
    "t1",
    "t2",
    "t3",
    "tightness",
    "lemma_d",
    "lemma_z",
]
