"""Classification of float kink touches against exact arithmetic, and the rank condition.

:func:`classify_touches` is the one place that decides, for a dense MLP at
machine-number parameters and inputs, which float pre-activations touch a kink
and whether the exact pre-activation at the same parameters and inputs is on
it too.  It takes the float pre-activations as computed by whatever float pass
produced them (the numpy MLP of :mod:`formal.audit.mlp` today; a float AD
from :mod:`formal.floatad` can be plugged in by passing its pre-activations),
so the float semantics and the exact check stay separate.

The exact side never uses floats for a claim: a float64 pass with a rigorous
error bound (Higham's ``gamma_n`` on every dot product, Cauchy-Schwarz on
Frobenius norms so the bound is one scalar per layer, propagated through the
activations' Lipschitz constants, inflated for the rounding of the bound
itself) excludes a kink where ``|y64 - c| > bound``; every other unit's
sample is re-evaluated exactly with Fractions, all layers of that sample.

:func:`rank_condition` checks, exactly (python-flint over Q), the rank
condition of Park, Chun, Lee (ICLR 2024, Thm 5) as stated in docs/audit.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import flint
import numpy as np

from formal.core.floatbound import ETA, U, gamma

_LIPSCHITZ = {"relu": 1.0, "relu6": 1.0, "hardtanh": 1.0, "hardsigmoid": 1.0 / 6.0}
_KINKS: dict[str, tuple[Fraction, ...]] = {
    "relu": (Fraction(0),),
    "relu6": (Fraction(0), Fraction(6)),
    "hardtanh": (Fraction(-1), Fraction(1)),
    "hardsigmoid": (Fraction(-3), Fraction(3)),
}


@dataclass(frozen=True)
class Touches:
    """Per hidden layer, bool (B, units): float touch and exact kink; exact inputs where needed.

    ``exact_inputs[l]`` maps a sample index to the exact input row of layer l
    (Fractions) for every sample that was evaluated exactly (every sample
    with an exact kink is).
    """

    float_touch: tuple[np.ndarray, ...]
    exact_kink: tuple[np.ndarray, ...]
    exact_inputs: tuple[dict[int, list[Fraction]], ...]
    exact_samples: int  # samples re-evaluated exactly (the filter could not decide them)
    n_float: int  # float kink touches (units x samples)
    n_exact: int  # float touches whose exact pre-activation is on the kink too
    n_spurious: int  # float touches whose exact pre-activation is off the kink
    n_missed: int  # exact kinks the float pass does not touch
    n_exact_kinks: int  # exact kinks (touched or missed)

    @classmethod
    def build(
        cls,
        touch: list[np.ndarray],
        exact: list[np.ndarray],
        inputs: list[dict[int, list[Fraction]]],
        exact_samples: int,
    ) -> Touches:
        """The masks with their counts."""
        nf = sum(int(np.count_nonzero(m)) for m in touch)
        if exact_samples == 0:  # no exact kink anywhere: every touch is spurious
            ne = nm = nk = 0
        else:
            ne = sum(int(np.count_nonzero(f & e)) for f, e in zip(touch, exact))
            nk = sum(int(np.count_nonzero(e)) for e in exact)
            nm = nk - ne
        return cls(
            tuple(touch), tuple(exact), tuple(inputs), exact_samples, nf, ne, nf - ne, nm, nk
        )


def float_touch_masks(activation: str, float_ys: list[np.ndarray]) -> list[np.ndarray]:
    """Per hidden layer, bool (B, units): the float pre-activation equals a kink exactly."""
    out = []
    for y in float_ys:
        m = np.zeros(y.shape, dtype=bool)
        for c in _KINKS[activation]:
            m |= y == np.array(float(c), dtype=y.dtype)
        out.append(m)
    return out


def _frobenius(m: np.ndarray) -> float:
    """An upper bound on the Frobenius norm of m (rounding and underflow included)."""
    v = m.ravel()
    sq = float(v @ v)
    return float(np.sqrt(sq * (1 + 2 * gamma(v.size + 2)) + v.size * 2.0**-1070) * (1 + 4 * U))


def _act64(name: str, y: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(y, 0.0)
    if name == "relu6":
        return np.clip(y, 0.0, 6.0)
    if name == "hardtanh":
        return np.clip(y, -1.0, 1.0)
    return np.clip(y + 3.0, 0.0, 6.0) / 6.0


def _act_exact(name: str, y: Fraction) -> Fraction:
    if name == "relu":
        return max(y, Fraction(0))
    if name == "relu6":
        return min(max(y, Fraction(0)), Fraction(6))
    if name == "hardtanh":
        return min(max(y, Fraction(-1)), Fraction(1))
    return min(max(y + 3, Fraction(0)), Fraction(6)) / 6


def _fractions(a: np.ndarray) -> np.ndarray:
    """An object array of the exact values of a float array (exact widening to float64 first)."""
    flat = a.astype(np.float64).ravel()
    out = np.empty(flat.shape, dtype=object)
    out[:] = [Fraction(v) for v in flat.tolist()]
    return out.reshape(a.shape)


def classify_touches(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    activation: str,
    x: np.ndarray,
    float_ys: list[np.ndarray],
) -> Touches:
    """Float touches of the hidden layers' pre-activations, classified exactly.

    ``weights``/``biases``: every layer (the last has no activation) as
    machine numbers (any float dtype); ``x``: the B x n minibatch as machine
    numbers; ``float_ys``: the float pre-activations of the hidden layers as
    the audited float pass computed them.
    """
    hidden = len(weights) - 1
    touch = float_touch_masks(activation, float_ys[:hidden])
    kinks = _KINKS[activation]
    lip = _LIPSCHITZ[activation]
    a = x.astype(np.float64)
    e = 0.0  # every entry of |a - z_exact| is <= e
    amb_any = np.zeros(a.shape[0], dtype=bool)
    for li in range(hidden):
        W = weights[li].astype(np.float64)
        b = biases[li].astype(np.float64)
        n = W.shape[1]
        y = a @ W.T
        y += b
        # |y - y_exact| <= gamma_{n+2} (sum_i |a_i W_ji| + |b_j|) + sum_i |e_i W_ji| + underflow;
        # sum_i |a_i W_ji| <= ||a_b|| ||W_j|| <= ||a||_F ||W||_F (Cauchy-Schwarz) and
        # sum_i |e_i W_ji| <= e sqrt(n) ||W||_F: one scalar per layer, a few vector ops;
        # (1 + 4 gamma) covers the rounding of these bounds themselves.
        g = gamma(n + 2)
        wf = _frobenius(W)
        bmax = float(np.abs(b).max()) if b.size else 0.0
        bound = (1 + 4 * g) * (g * (_frobenius(a) * wf + bmax) + e * np.sqrt(n) * wf) + (
            2 * n + 4
        ) * ETA
        if len(kinks) == 1 and kinks[0] == 0:
            amb = np.abs(y) <= bound
        else:
            amb = np.zeros(y.shape, dtype=bool)
            for c in kinks:
                amb |= np.abs(y - float(c)) <= bound
        if amb.any():
            amb_any |= amb.any(axis=1)
        a = _act64(activation, y)
        # |act64(y) - act(y_exact)| <= lip |y - y_exact| + 4u (|a| + 3) + eta, entrywise
        amax = float(np.abs(a).max()) if a.size else 0.0
        e = (1 + 4 * g) * (lip * bound + 4 * U * (amax + 3.0)) + ETA
    exact = [np.zeros(t.shape, dtype=bool) for t in touch]
    inputs: list[dict[int, list[Fraction]]] = [{} for _ in range(hidden)]
    rows = np.flatnonzero(amb_any)
    if rows.size:
        zf = _fractions(x[rows])
        for li in range(hidden):
            WF = _fractions(weights[li])
            bF = _fractions(biases[li])
            for k, r in enumerate(rows):
                inputs[li][int(r)] = list(zf[k])
            y = zf.dot(WF.T) + bF
            m = np.zeros(y.shape, dtype=bool)
            for c in kinks:
                m |= y == c
            exact[li][rows] = m
            zf = np.vectorize(lambda v: _act_exact(activation, v), otypes=[object])(y)
    return Touches.build(touch, exact, inputs, int(rows.size))


def exact_outputs(
    weights: list[np.ndarray], biases: list[np.ndarray], activation: str, x: np.ndarray
) -> np.ndarray:
    """The exact outputs (object array of Fractions, B x out) at machine-number values."""
    z = _fractions(x)
    last = len(weights) - 1
    for li, (w, b) in enumerate(zip(weights, biases)):
        y = z.dot(_fractions(w).T) + _fractions(b)
        z = (
            y
            if li == last
            else np.vectorize(lambda v: _act_exact(activation, v), otypes=[object])(y)
        )
    return z


def _rank(rows: list[list[Fraction]]) -> int:
    return int(
        flint.fmpq_mat([[flint.fmpq(v.numerator, v.denominator) for v in r] for r in rows]).rank()
    )


def rank_condition(
    masks: list[np.ndarray],
    inputs: list[dict[int, list[Fraction]]] | list[np.ndarray],
    bias: bool = True,
) -> bool:
    """The rank condition: for each hidden unit, the inputs ``[z_b, 1]`` of its kinked samples
    are linearly independent (exactly, over Q).

    ``masks[l]``: bool (B, units) kinked (unit, sample) pairs of hidden layer l;
    ``inputs[l]``: the layer's input rows (a float array of machine numbers,
    or a dict sample -> exact row).  True when there is no kink.
    """
    for li, m in enumerate(masks):
        counts = m.sum(axis=0)
        for u in np.flatnonzero(counts >= 2):
            samples = np.flatnonzero(m[:, u])
            src = inputs[li]
            rows: list[list[Fraction]] = []
            for s in samples:
                if isinstance(src, dict):
                    row = list(src[int(s)])
                else:
                    row = [Fraction(v) for v in src[int(s)].astype(np.float64).tolist()]
                rows.append(row + [Fraction(1)] if bias else row)
            if len(rows) > len(rows[0]) or _rank(rows) < len(rows):
                return False
    return True


__all__ = ["Touches", "classify_touches", "exact_outputs", "float_touch_masks", "rank_condition"]
