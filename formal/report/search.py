"""Human-readable result of ``formal search``."""

from __future__ import annotations

from typing import Any

from formal.core.rebuild import bits_json, params_json
from formal.search.search import SearchResult


def format_search(res: SearchResult) -> str:
    """The text of ``formal search``: status, reason, witness parameters, touch, verdict."""
    lines = [
        f"{res.status}: {res.find} in {res.numbers} (proxy {res.proxy}) by {res.method}, "
        f"{res.seconds:.3f} s"
    ]
    lines.append(f"  reason: {res.reason}")
    lines.append(f"  space: {res.space}")
    if res.search_format:
        lines.append(f"  search format: {res.search_format}")
    if res.network is not None:
        vals, bits = params_json(res.network), bits_json(res.network)
        lines.append("  witness parameters (exact value, bits):")
        for name in res.network.param_order:
            lines.append(f"    {name} = {_flat(vals[name])}   {_flat(bits[name])}")
    if res.touch is not None:
        t = res.touch
        lines.append(
            f"  float touch at {t['unit']}: kink {t['kink']}, "
            f"float value {t['float_value']} ({t['float_hex']}), "
            f"exact value {t['exact_value']} ({t['order']} order)"
        )
    if res.verdict is not None:
        v = res.verdict
        lines.append(
            f"  verdict: differentiable={_b(v.differentiable)} ad_correct={_b(v.ad_correct)} "
            f"in_ndf={_b(v.in_ndf)} in_inc={_b(v.in_inc)} "
            f"kink_neurons={v.kink_neurons} ({v.method})"
        )
    return "\n".join(lines)


def _b(x: bool | None) -> str:
    return "unknown" if x is None else str(x).lower()


def _flat(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_flat(x) for x in v) + "]"
    return str(v)


__all__ = ["format_search"]
