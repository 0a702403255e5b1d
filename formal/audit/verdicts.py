"""Exact verdicts of one audited step: the engine's check, its certificate, the kernel's verify.

A step with an exact kink is handed to the engine as a formal-net/1 network
(the machine-number parameters and the minibatch, written exactly as hex
floats): :func:`formal.engine.verdict.check` decides ndf/inc of the vector
output at the minibatch; every ndf or inc verdict is then re-verified by the
independent kernel (:func:`formal.verify.kernel.verify`) on the engine's
formal-cert/1 certificate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from formal.core.numbers import format_exact
from formal.engine.certificate import build_certificate
from formal.engine.verdict import check
from formal.errors import FormalError
from formal.io.formalnet import from_dict
from formal.verify.kernel import Rejected, verify


def _hex(a: np.ndarray) -> Any:
    return np.vectorize(lambda v: float(v).hex(), otypes=[object])(
        np.asarray(a, dtype=np.float64)
    ).tolist()


def network_doc(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    activation: str,
    x: np.ndarray,
    numbers: str,
) -> dict[str, Any]:
    """The formal-net/1 document of a dense MLP at machine-number parameters and inputs."""
    layers: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        layers.append(
            {
                "type": "dense",
                "units": int(w.shape[0]),
                "bias": True,
                "activation": "identity" if i == last else activation,
            }
        )
        params[f"{i}.weight"] = _hex(w)
        params[f"{i}.bias"] = _hex(b)
    return {
        "format": "formal-net/1",
        "numbers": numbers,
        "inputs": _hex(x),
        "layers": layers,
        "params": params,
    }


@dataclass(frozen=True)
class StepVerdict:
    """The exact verdict of a step with kinks, and how it was re-verified."""

    method: str
    differentiable: bool | None
    ad_correct: bool | None
    in_ndf: bool | None
    in_inc: bool | None
    clarke: bool | None
    reason: str
    reverified: bool | None  # None: nothing to re-verify (differentiable and correct, unknown)
    reverify_note: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the verdict."""
        return {
            "method": self.method,
            "differentiable": self.differentiable,
            "ad_correct": self.ad_correct,
            "in_ndf": self.in_ndf,
            "in_inc": self.in_inc,
            "clarke": self.clarke,
            "reason": self.reason,
            "reverified": self.reverified,
            "reverify_note": self.reverify_note,
            "seconds": round(self.seconds, 4),
        }


NO_KINKS = StepVerdict(
    "no-kinks",
    True,
    True,
    False,
    False,
    True,
    "no kinks: differentiable, AD correct",
    None,
    "",
    0.0,
)
"""The verdict of a step whose exact pass has no unit on a kink (decided by the filter)."""


def mse_doc(doc: dict[str, Any], outputs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """``doc`` with the objective whose verdict is the MSE loss's: weights ``o(w) - onehot``.

    For L(v) = sum_b ||o_b(v) - t_b||^2 and h(v) = sum_b (o_b(w) - t_b) . o_b(v) (weights
    frozen at the point w), the chain rule for directional derivatives gives
    L'(w; d) = 2 h'(w; d) for every d, and AD(L)(w) = 2 AD(h)(w).  Both are locally
    Lipschitz, so each is differentiable at w iff its directional derivative is
    linear in d: L is ndf (inc) at w iff h is.
    """
    B, n = outputs.shape
    weights = [
        [format_exact(outputs[b, o] - (1 if int(labels[b]) == o else 0)) for o in range(n)]
        for b in range(B)
    ]
    return dict(doc, objective={"type": "weighted_sum", "weights": weights})


def _kernel(doc: dict[str, Any], proxy: str, timeout: float) -> str:
    """The kernel's verdict on the engine's certificate for ``doc`` (raises when rejected)."""
    net = from_dict(doc)
    v = check(net, proxy, timeout=timeout)
    cert = build_certificate(net, doc, v, proxy, timeout=timeout)
    return verify(json.loads(json.dumps(cert), parse_float=str)).verdict


def kinked_doc(doc: dict[str, Any], samples: list[int]) -> dict[str, Any]:
    """``doc`` restricted to the minibatch rows ``samples`` (and their objective weights)."""
    sub = dict(doc, inputs=[doc["inputs"][s] for s in samples])
    obj = doc.get("objective")
    if isinstance(obj, dict) and obj.get("type") == "weighted_sum":
        sub["objective"] = dict(obj, weights=[obj["weights"][s] for s in samples])
    return sub


def reverify(
    doc: dict[str, Any],
    samples: list[int],
    want: str,
    proxy: str = "pytorch",
    timeout: float = 60.0,
) -> tuple[bool, str]:
    """Re-verify an ndf or inc verdict on the minibatch rows that have an exact kink.

    Every other row has no unit on a kink, so its output (and its term of a
    weighted sum) is analytic near w and its AD exact: the verdict of the
    vector output, or of a weighted-sum objective, equals the verdict on the
    kinked rows alone.  That smaller network is decided again and the
    certificate checked by the independent kernel (:func:`formal.verify.kernel.verify`),
    whose verdict must be ``want`` (non-differentiable or ad-incorrect).
    """
    try:
        got = _kernel(kinked_doc(doc, samples), proxy, timeout)
    except Rejected as exc:
        return False, f"kernel rejected the certificate: {exc}"
    except FormalError as exc:
        return False, f"no certificate: {exc}"
    if got != want:
        return False, f"kernel verdict {got!r} on the kinked rows, engine {want!r}"
    return True, f"kernel: {got} (on the {len(samples)} kinked rows)"


def exact_verdict(
    doc: dict[str, Any],
    samples: list[int],
    proxy: str = "pytorch",
    *,
    timeout: float = 60.0,
    check_kernel: bool = True,
) -> StepVerdict:
    """The engine's verdict on ``doc`` (vector output), ndf/inc re-verified by the kernel.

    ``samples``: the minibatch rows with an exact kink (see :func:`reverify`).
    """
    net = from_dict(doc)
    v = check(net, proxy, timeout=timeout)
    ok: bool | None = None
    note = ""
    if check_kernel and (v.in_ndf or v.in_inc):
        want = "non-differentiable" if v.in_ndf else "ad-incorrect"
        ok, note = reverify(doc, samples, want, proxy, timeout)
    return StepVerdict(
        v.method,
        v.differentiable,
        v.ad_correct,
        v.in_ndf,
        v.in_inc,
        v.clarke,
        v.reason,
        ok,
        note,
        v.seconds,
    )


__all__ = [
    "NO_KINKS",
    "StepVerdict",
    "exact_verdict",
    "mse_doc",
    "kinked_doc",
    "network_doc",
    "reverify",
]
