"""Text tables and plots for ``formal count`` and ``formal reproduce``.

Only formatting lives here (the cli modules print); plots use matplotlib's
Agg backend and write PNG files.
"""

from __future__ import annotations

import random
import textwrap
from fractions import Fraction
from pathlib import Path

from formal.core.numbers import format_exact, parse_format
from formal.count.bias import count_conditional
from formal.count.counting import CountResult, sci, tightness_density, with_point
from formal.theorems.catalogue import CheckResult
from formal.theorems.evidence import mlp


def _dens(q: Fraction | float) -> str:
    """A density: exact p/q with a float approximation (only the approximation when huge)."""
    if isinstance(q, Fraction):
        if q == 0:
            return "0"
        approx = f"{float(q):.4g}" if q.denominator < 10**300 and q.numerator < 10**300 else sci(q)
        if q.numerator.bit_length() + q.denominator.bit_length() > 120:
            return f"~ {approx} (exact p/q in --json)"
        return f"{format_exact(q)} ~ {approx}"
    return f"{q:.4g}"


def format_count(res: CountResult, source: str = "") -> str:
    """Human-readable summary of a count."""
    lines = []
    if source:
        lines.append(f"network:   {source}")
    lines.append(
        f"numbers:   {res.numbers}  (|M| = {_msize(res)}), {res.parameters} parameters, "
        f"proxy {res.proxy}"
    )
    space = (
        "Omega = M^W"
        if res.space == "omega"
        else "the bias slice (other parameters fixed at the network's values)"
    )
    size = format_exact(res.omega) if res.omega.bit_length() <= 96 else sci(res.omega)
    lines.append(f"method:    {res.method} over {space}, size {size}")
    if res.ndf is not None:
        lines.append(f"ndf:       {_int(res.ndf)}   density {_dens(res.density_ndf)}")
        lines.append(f"inc:       {_int(res.inc)}   density {_dens(res.density_inc)}")
    else:
        ci = res.ci or {}
        lo, hi = ci.get("density_ndf", (float("nan"), float("nan")))
        lines.append(
            f"ndf:       density ~ {res.density_ndf:.4g}  95% CI [{lo:.4g}, {hi:.4g}]  "
            f"({res.samples} samples)"
        )
        lo, hi = ci.get("density_inc", (float("nan"), float("nan")))
        di = res.density_inc
        lines.append(f"inc:       density ~ {float(di):.4g}  95% CI [{lo:.4g}, {hi:.4g}]")
    if res.bound is not None:
        lines.append(f"T3 bound:  density <= {_dens(res.bound)}")
        if res.tightness is not None:
            lines.append(
                f"tightness: {_dens(res.tightness)}  "
                "(exact density of the T3 tightness family with the same units)"
            )
    else:
        lines.append(f"T3 bound:  n/a ({res.hypothesis})")
    if res.cross_checked:
        lines.append(
            f"checked:   {res.cross_checked} enumerated points re-decided by the core's check "
            "(all agree)"
        )
    for n in res.notes:
        lines.append(f"note:      {n}")
    wit = res.extra.get("inc_witness") or None
    if wit:
        lines.append(
            "inc witness: " + ", ".join(f"{k} = {v['value']} ({v['bits']})" for k, v in wit.items())
        )
    wit = res.extra.get("ndf_witness") or None
    if wit:
        lines.append(
            "ndf witness: " + ", ".join(f"{k} = {v['value']} ({v['bits']})" for k, v in wit.items())
        )
    lines.append(f"seconds:   {res.seconds:.3f}")
    return "\n".join(lines)


def _int(v: int | None) -> str:
    """A count: exact up to 128 bits, else scientific (the exact value is in --json)."""
    if v is None:
        return "-"
    if v.bit_length() <= 128:
        return format_exact(v)
    return f"{sci(v)} (exact in --json)"


def _msize(res: CountResult) -> str:
    return format_exact(parse_format(res.numbers).size())


def format_reproduce(results: list[CheckResult], seconds: float, budget: str) -> str:
    """The table of ``formal reproduce``: result, hypotheses, evidence, verdict."""
    w_name, w_hyp = 16, 44
    lines = [f"formal reproduce --budget {budget}: {len(results)} results", ""]
    head = f"{'result':<{w_name}} {'verdict':<7} {'hypotheses':<{w_hyp}} time"
    lines += [head, "-" * 100]
    for r in results:
        hyp = textwrap.shorten(r.hypotheses, w_hyp, placeholder="...")
        lines.append(f"{r.name:<{w_name}} {r.status.upper():<7} {hyp:<{w_hyp}} {r.seconds:6.1f}s")
        for e in r.evidence:
            for j, chunk in enumerate(textwrap.wrap(e.text, 94) or [""]):
                lines.append(("    - " if j == 0 else "      ") + chunk)
    passed = sum(1 for r in results if r.passed)
    cited = sum(1 for r in results if r.status == "cited")
    failed = sum(1 for r in results if r.failed)
    lines += [
        "-" * 100,
        f"{passed} passed, {cited} cited (evidence holds, proof published elsewhere), "
        f"{failed} failed in {seconds:.1f}s",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# plots


PLOT_FORMATS = ("fp(3,2)", "e4m3", "e5m2", "binary16", "bfloat16")


def density_curves(budget: str = "quick", seed: int = 0) -> dict[str, dict[str, list]]:
    """Measured exact densities of 1-N-1 ReLU bias slices, the T3 bound and the tightness
    formula."""
    rng = random.Random(seed)
    top = 1024 if budget == "quick" else 16384
    data: dict[str, dict[str, list]] = {}
    for name in PLOT_FORMATS:
        fmt = parse_format(name)
        M = fmt.size()
        Ns = [1 << k for k in range(0, top.bit_length()) if (1 << k) <= top]
        rows: dict[str, list] = {"N": Ns, "bound": [], "tight": [], "x1": [], "x13": []}
        for N in Ns:
            rows["bound"].append(N / M)
            rows["tight"].append(float(tightness_density(M, [(N, 1)])))
            for key, x in (("x1", "1"), ("x13", "1/3")):
                net = mlp(name, [[x]], [N], "relu", out_bias=True)
                vals = []
                for lab in net.parameterization().labels:
                    if "bias" in lab:
                        vals.append(Fraction(0))
                    else:
                        while True:
                            e = rng.randint(-3, 2)
                            m = rng.randint(0, (1 << fmt.mbits) - 1)
                            v = (
                                rng.choice((-1, 1))
                                * (1 + Fraction(m, 1 << fmt.mbits))
                                * Fraction(2) ** e
                            )
                            if fmt.contains(v):
                                break
                        vals.append(v)
                res = count_conditional(with_point(net, vals), given="net")
                rows[key].append(float(res.density_ndf))
        data[name] = rows
    return data


def plot_densities(directory: str | Path, budget: str = "quick") -> list[Path]:
    """Write density-vs-units PNG(s); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    data = density_curves(budget)
    fig, ax = plt.subplots(figsize=(9, 6.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, rows) in enumerate(data.items()):
        c = colors[i % len(colors)]
        ax.plot(rows["N"], rows["bound"], "--", color=c, lw=1.2)
        ax.plot(
            rows["N"],
            rows["tight"],
            "-",
            color=c,
            lw=1.6,
            label=f"{name}: tightness formula (dashed: T3 bound N/|M|)",
        )
        ax.plot(rows["N"], rows["x1"], "o", color=c, ms=5)
        ax.plot(rows["N"], rows["x13"], "o", mfc="none", color=c, ms=5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    positive = [
        v for rows in data.values() for k in ("x1", "x13", "tight") for v in rows[k] if v > 0
    ]
    ax.set_ylim(min(positive) / 3, 2)
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_xlabel("hidden ReLU units N (1-N-1 network, one bias per unit)")
    ax.set_ylabel("density of ndf (exact, over the biases)")
    ax.set_title(
        "Non-differentiable parameters among machine numbers:\n"
        "exact densities (markers), T3 bound (dashed), tightness formula (solid)"
    )

    extra = [
        Line2D([], [], marker="o", ls="", color="k", label="measured, input x = 1"),
        Line2D([], [], marker="o", ls="", mfc="none", color="k", label="measured, input x = 1/3"),
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, fontsize=8, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    path = out / "density-vs-units.png"
    fig.savefig(path)
    plt.close(fig)
    return [path]


__all__ = ["format_count", "format_reproduce", "plot_densities", "density_curves"]
