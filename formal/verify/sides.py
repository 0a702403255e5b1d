"""A fast sufficient test for a Bouligand direction: one directional pass instead of a Jacobian.

The kernel's check of ``bouligand.direction`` (formal/verify/kernel.py) runs the pass
in which every kink uses AD's side and asks, at every kink, that the tangent along d
moves strictly to that side; a kink whose row is identically 0 is allowed in
piecewise-linear networks, which needs the whole row (a Jacobian pass, slow on large
networks).  When every tangent along d is non-zero and on AD's side, no row is 0 and
the rows are never needed: the directional pass below computes exactly the numbers
``L . d`` of that check (by induction over the layers, its tangents are the full
pass's rows applied to d), so :func:`moves_to_ad_side` returning True implies the full
check passes.  False means "not settled here": the caller runs the full check, which
also words any rejection.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from formal.verify.evaluate import ActKink, KinkId, direction_seed, propagate
from formal.verify.net import Model, Proxy, Vec


def moves_to_ad_side(m: Model, preset: Proxy, d: Vec) -> bool:
    """True when along d every kink moves strictly to AD's side (tangent non-zero)."""
    ok = [True]

    def kink(k: KinkId, info: Any) -> Vec:
        if isinstance(info, ActKink):
            p = info.proxy()
            side = 1 if p == info.d_plus else -1 if p == info.d_minus else 0
            t = info.L.get(0, Fraction(0))
            if side == 0 or not t * side > 0:
                ok[0] = False
                return {}
            return {0: (info.d_plus if side > 0 else info.d_minus) * t}
        forms = dict(info.entries)
        c = forms[info.ad_choice].get(0, Fraction(0))
        for j, v in info.entries:
            if j != info.ad_choice and not c > v.get(0, Fraction(0)):
                ok[0] = False
        return dict(forms[info.ad_choice])

    propagate(m, direction_seed(m, d), kink, preset)
    return ok[0]


__all__ = ["moves_to_ad_side"]
