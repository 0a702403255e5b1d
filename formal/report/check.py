"""Human-readable report of one verdict (the default output of ``formal check``)."""

from __future__ import annotations

from formal.core.network import Network
from formal.core.numbers import format_exact
from formal.engine.outcome import Verdict
from formal.engine.subgradient import Subgradient


def _yn(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _cert(value: bool | None) -> str:
    return "not certified" if value is None else ("yes" if value else "no")


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def format_verdict(net: Network, v: Verdict, *, max_kinks: int = 20) -> str:
    """The text of ``formal check``: network, verdict table, kink nodes, witness, gradient."""
    lines = [
        f"network      {net.source}  ({v.parameters} parameters in {v.numbers}, batch {net.batch})"
    ]
    lines.append(f"proxy        {v.proxy}")
    lines.append(f"hypothesis H {'holds' if v.hypothesis_h else 'fails'}: {v.hypothesis_reason}")
    lines.append("")
    verdict = [
        ["differentiable", _yn(v.differentiable)],
        ["AD correct", _yn(v.ad_correct)],
        ["in ndf (non-differentiable set)", _yn(v.in_ndf)],
        ["in inc (incorrect set)", _yn(v.in_inc)],
        ["AD in Bouligand subdifferential", _cert(v.bouligand)],
        ["AD in Clarke subdifferential", _cert(v.clarke)],
        ["kink nodes", str(v.kink_neurons)],
        ["method", v.method],
        ["seconds", f"{v.seconds:.4f}"],
    ]
    lines.append(table(verdict, ["verdict", "value"]))
    if v.reason:
        lines.append(f"reason: {v.reason}")
    if v.kinks:
        lines.append("")
        rows = []
        for k in v.kinks[:max_kinks]:
            adj = ", ".join(format_exact(a) for a in k.adjoint[:4]) + (
                " ..." if len(k.adjoint) > 4 else ""
            )
            rows.append(
                [
                    k.node,
                    k.label,
                    str(k.sample),
                    k.kind,
                    format_exact(k.value),
                    "-" if k.proxy is None else format_exact(k.proxy),
                    adj,
                ]
            )
        lines.append(table(rows, ["layer", "unit", "sample", "kind", "kink", "proxy", "adjoint"]))
        if len(v.kinks) > max_kinks:
            lines.append(f"... and {len(v.kinks) - max_kinks} more kink nodes (see --json)")
    if v.witness is not None:
        lines.append("")
        lines.append(f"witness ({v.witness.kind}):")
        for key, val in v.witness.to_json().items():
            if key != "kind":
                lines.append(f"  {key}: {val}")
    if v.certificate is not None:
        lines.append(f"certificate ({v.certificate.kind}): {v.certificate.to_json()}")
    if v.gradient is not None:
        lines.append("")
        labels = net.parameterization().labels
        outs = net.output_labels()
        for o, row in enumerate(v.gradient):
            shown = ", ".join(f"{labels[j]}={format_exact(x)}" for j, x in enumerate(row) if x)
            lines.append(f"gradient of {outs[o]}: {shown or 'all zero'}")
    return "\n".join(lines)


def format_subgradient(net: Network, sg: Subgradient, *, limit: int = 20) -> str:
    """The ``--subgradient`` block of ``formal check``: kind, vector, direction, sides, diffs."""
    head = f"subgradient  {sg.kind} (prefer {sg.prefer})"
    lines = [head + (f": {sg.reason}" if sg.reason else "")]
    if sg.vector is None:
        return "\n".join(lines)
    labels = net.parameterization().labels
    for o, row in enumerate(sg.vector):
        shown = [f"{labels[j]}={format_exact(x)}" for j, x in enumerate(row) if x]
        more = f" ... ({len(shown) - limit} more)" if len(shown) > limit else ""
        lines.append(
            f"  vector of {net.output_labels()[o]}: {', '.join(shown[:limit]) or 'all zero'}{more}"
        )
    if sg.sides:
        d = ", ".join(f"{k}={format_exact(v)}" for k, v in sg.direction[:limit])
        lines.append(f"  direction: {d or '0 (every kink row is 0)'}")
        sides = []
        for s in sg.sides[:limit]:
            side = {1: "+", -1: "-", 0: "0"}[s.side] if s.kind == "act" else f"input {s.side}"
            sides.append(f"{s.kink} s{s.sample}: {side}" + ("" if s.ad_side else " (not AD's)"))
        more = f" ... ({len(sg.sides) - limit} more)" if len(sg.sides) > limit else ""
        lines.append(f"  sides: {', '.join(sides)}{more}")
    if sg.ad_is_element:
        lines.append("  AD's value equals it")
    for diff in sg.differs_from_ad[:limit]:
        lines.append(
            f"  differs from AD at {diff.param} ({diff.output}): AD {format_exact(diff.ad)}, "
            f"subgradient {format_exact(diff.value)} "
            f"(difference {format_exact(diff.value - diff.ad)})"
        )
    if len(sg.differs_from_ad) > limit:
        lines.append(f"  ... and {len(sg.differs_from_ad) - limit} more differences (see --json)")
    return "\n".join(lines)
