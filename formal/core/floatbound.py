"""Float64 values with rigorous error bounds: the constants and the exact-to-float conversion.

The ``float`` rules of the ops (:mod:`formal.core.rules`) compute a float64
value and a bound on its distance to the exact value; they build on the unit
roundoff :data:`U`, the smallest subnormal :data:`ETA` and :func:`gamma`.
"""

from __future__ import annotations

import numpy as np

from formal.core.qarray import QArray

U = 2.0**-53  # unit roundoff of binary64
ETA = 2.0**-1074  # smallest positive subnormal of binary64


def gamma(n: int) -> float:
    """The classical bound gamma_n = n u / (1 - n u) on accumulated rounding."""
    return n * U / (1 - n * U)


def to_float(q: QArray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values of ``q`` and a rigorous bound on their conversion error (inf: overflow)."""
    den = int(q.den)
    flat = q.num.ravel()
    if den & (den - 1) == 0 and flat.size:
        # power-of-two denominator: int -> float is correctly rounded, ldexp exact unless underflow
        k = den.bit_length() - 1
        ints = q.native()
        if ints is not None and k <= 1022 and max(int(ints.max()), -int(ints.min())) <= 2**53:
            # every |n| <= 2**53 converts exactly and n * 2**-k stays normal (or 0): all exact
            vals = np.ldexp(ints.astype(np.float64), -k)
            return vals.reshape(q.num.shape), np.zeros(q.num.shape)
        try:
            nums = (ints if ints is not None else flat).reshape(-1).astype(np.float64)
        except OverflowError:
            nums = np.array([float("inf")] * flat.size)
        vals = np.ldexp(nums, -k)
        exact = (np.abs(nums) <= 2.0**53) & (np.ldexp(vals, k) == nums)
        errs = np.where(exact, 0.0, 2 * U * np.abs(vals) + ETA)
        errs = np.where(np.isfinite(vals), errs, np.inf)
        return vals.reshape(q.num.shape), errs.reshape(q.num.shape)
    if flat.size and den < 2**1000:
        try:
            nums = flat.astype(np.float64)  # each correctly rounded (OverflowError past 2**1024)
        except OverflowError:
            pass
        else:
            if np.all(np.isfinite(nums)):
                # fl(fl(n) / fl(den)): three roundings, relative error <= 3u / (1 - u)**2 < 4u,
                # plus half a subnormal step if the quotient underflows; 0 converts exactly
                with np.errstate(under="ignore"):
                    vals = nums / float(den)
                errs = np.where(flat == 0, 0.0, 4 * U * np.abs(vals) + 2 * ETA)
                return vals.reshape(q.num.shape), errs.reshape(q.num.shape)
    vals = np.empty(flat.shape, dtype=np.float64)
    errs = np.zeros(flat.shape, dtype=np.float64)
    for i, n in enumerate(flat):
        n = int(n)
        try:
            v = n / den
        except OverflowError:
            v = float("inf")
        vals[i] = v
        if v != v or v in (float("inf"), float("-inf")):
            errs[i] = float("inf")
            continue
        p, r = v.as_integer_ratio()
        if p * den != n * r:
            errs[i] = abs(v) * U + ETA
    return vals.reshape(q.num.shape), errs.reshape(q.num.shape)


__all__ = ["ETA", "U", "gamma", "to_float"]
