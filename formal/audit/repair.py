"""``formal audit --repair``: a certified generalized gradient where AD's was not one.

At an audited step whose exact verdict (MSE loss with labels, else the vector
output) is non-differentiable, ad-incorrect or unknown, the engine's
:func:`formal.engine.subgradient.subgradient` (``prefer="ad"``) computes an exact
element of the Bouligand subdifferential (the gradient where f is
differentiable).  When it differs from the exact AD value under ``--proxy`` the
step is *repaired*: the vector is certified (the verdict's formal-cert/1
certificate with the ``subgradient`` claim) and the certificate is checked by the
independent kernel (:func:`formal.verify.kernel.verify`).

The MSE loss ``L = sum_b ||o_b - onehot_b||^2`` is handled through the
weighted-sum objective ``h(v) = sum_b (o_b(w) - t_b) . o_b(v)`` (weights frozen at
w, :func:`formal.audit.verdicts.mse_doc`): on every open region touching w where the
network is smooth, ``grad L(v) = 2 sum_b (o_b(v) - t_b) . Do_b(v)`` tends to
``2 grad h`` of that region as v -> w (o is continuous), so twice a Bouligand
element of h is a Bouligand element of L; AD(L) = 2 AD(h).  The kernel checks the
element of h; the record reports the loss's (``scale`` 2).

Only the minibatch rows with an exact kink are handed to the engine and the
kernel (:func:`formal.audit.verdicts.kinked_doc`): every other row has no unit on a
kink, so its term is analytic near w and its AD is its gradient; adding that
gradient to a Bouligand element of the kinked rows' objective gives one of the
whole minibatch's (on every region the smooth rows stay smooth), and AD's value
splits the same way, so the entries that differ and by how much are those of
the kinked rows.  The values listed are the whole minibatch's: AD's exact value
of the whole objective, plus the kinked rows' difference (vector outputs are
relabelled with their minibatch row).  (The whole minibatch would give the same answer, at the
kernel's cost for a 64-64-64-10 net at B = 32: one to two minutes a step.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from formal.audit.verdicts import kinked_doc
from formal.core.activations import parse_preset
from formal.core.numbers import format_exact
from formal.engine.certificate import build_certificate
from formal.engine.forward import forward, gradient_ad
from formal.engine.subgradient import Difference, attach, subgradient
from formal.engine.verdict import check
from formal.errors import FormalError
from formal.io.formalnet import from_dict
from formal.verify.kernel import Rejected, verify

RepairStatus = Literal["repaired", "ad-element", "unknown"]
"""``repaired``: a certified element that differs from AD's value; ``ad-element``: AD's
value is itself a Bouligand element (or the gradient), nothing to repair;
``unknown``: no element found (the reason says why)."""

LISTED = 20
"""At most this many differing entries are listed per step (the largest first)."""


@dataclass(frozen=True)
class RepairRecord:
    """The repair of one step: what the certified element is and where it differs from AD."""

    step: int
    target: str  # "mse" | "output"
    status: RepairStatus
    kind: str  # the Subgradient's kind: gradient | bouligand | unknown
    scale: int  # the reported vector is ``scale`` times the certified one (2 for the MSE)
    differs_total: int
    differs: tuple[Difference, ...]  # the LISTED largest |difference| entries
    max_abs_difference: Fraction | None
    verified: bool | None  # None: nothing certified (ad-element or unknown)
    kernel: str  # the kernel's summary or its rejection
    reason: str
    rows: tuple[int, ...] | None  # the minibatch rows decided and certified (None: all)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The ``repair`` object of a step record."""
        return {
            "step": self.step,
            "target": self.target,
            "status": self.status,
            "kind": self.kind,
            "scale": self.scale,
            "differs_total": self.differs_total,
            "differs_from_ad": [e.to_json("repaired") for e in self.differs],
            "max_abs_difference": None
            if self.max_abs_difference is None
            else format_exact(self.max_abs_difference),
            "certificate_verified": self.verified,
            "kernel": self.kernel,
            "reason": self.reason,
            "rows": None if self.rows is None else list(self.rows),
            "seconds": round(self.seconds, 4),
        }

    def line(self) -> str:
        """One line of the text summary."""
        if self.status != "repaired":
            return f"step {self.step}: {self.status} ({self.reason})"
        big = "" if self.max_abs_difference is None else f"{float(self.max_abs_difference):.3g}"
        ok = "kernel-verified" if self.verified else f"NOT verified ({self.kernel})"
        return (
            f"step {self.step}: {self.target} {self.kind} element differs from AD in "
            f"{self.differs_total} entries (max |diff| {big}; exact in the JSON log), "
            f"certificate {ok}"
        )


def _entries(
    diffs: tuple[Any, ...], whole: dict[str, Any], rows: list[int] | None, proxy: str, scale: int
) -> list[Difference]:
    """The differing entries at the whole minibatch's scale (see the module's docstring)."""
    if rows is None:
        return [Difference(d.output, d.param, d.ad * scale, d.value * scale) for d in diffs]
    if not isinstance(whole.get("objective"), dict):  # vector output: one row per sample
        out = []
        for d in diffs:
            b, _, rest = d.output.removeprefix("out[").partition(",")
            label = f"out[{rows[int(b)]},{rest}"
            out.append(Difference(label, d.param, d.ad * scale, d.value * scale))
        return out
    net = from_dict(whole)
    ad = gradient_ad(forward(net, parse_preset(proxy))).to_fractions()[0]
    index = {label: j for j, label in enumerate(net.parameterization().labels)}
    return [
        Difference(
            d.output,
            d.param,
            Fraction(ad[index[d.param]]) * scale,
            (Fraction(ad[index[d.param]]) + d.value - d.ad) * scale,
        )
        for d in diffs
    ]


def repair_step(
    doc: dict[str, Any],
    proxy: str,
    *,
    step: int,
    target: str,
    rows: list[int] | None = None,
    scale: int = 1,
    timeout: float = 60.0,
) -> RepairRecord:
    """The certified generalized gradient of ``doc`` (a formal-net/1 document) at its point.

    ``rows``: the minibatch rows with an exact kink (None: all); only they are
    decided and certified (see the module's docstring).  Never raises for an
    undecidable case: the record then has status ``unknown``.
    """
    t0 = time.perf_counter()

    def record(status: RepairStatus, kind: str, reason: str, **kw: Any) -> RepairRecord:
        base: dict[str, Any] = dict(
            differs_total=0, differs=(), max_abs_difference=None, verified=None, kernel=""
        )
        base.update(kw)
        return RepairRecord(
            step,
            target,
            status,
            kind,
            scale,
            reason=reason,
            rows=None if rows is None else tuple(rows),
            seconds=time.perf_counter() - t0,
            **base,
        )

    whole = doc
    if rows is not None:
        doc = kinked_doc(doc, rows)
    try:
        net = from_dict(doc)
        v = check(net, proxy, timeout=timeout)
        sg = subgradient(net, proxy, prefer="ad", verdict=v, timeout=timeout)
    except FormalError as exc:
        return record("unknown", "unknown", f"no subgradient: {exc}")
    if not sg.certified:
        return record("unknown", sg.kind, sg.reason)
    if sg.ad_is_element:
        return record("ad-element", sg.kind, sg.reason)
    try:
        entries = sorted(
            _entries(sg.differs_from_ad, whole, rows, proxy, scale),
            key=lambda e: -abs(e.value - e.ad),
        )
    except FormalError as exc:
        return record("unknown", sg.kind, f"AD of the whole minibatch: {exc}")
    try:
        cert = None
        if v.differentiable is not None:
            cert = build_certificate(net, doc, v, proxy, timeout=timeout)
        full = attach(cert, net, sg, proxy, doc)
        res = verify(json.loads(json.dumps(full), parse_float=str))
        ok, note = True, res.summary
    except Rejected as exc:
        ok, note = False, f"kernel rejected the certificate: {exc}"
    except FormalError as exc:
        ok, note = False, f"no certificate: {exc}"
    return record(
        "repaired",
        sg.kind,
        sg.reason,
        differs_total=len(entries),
        differs=tuple(entries[:LISTED]),
        max_abs_difference=abs(entries[0].value - entries[0].ad) if entries else None,
        verified=ok,
        kernel=note,
    )


__all__ = ["LISTED", "RepairRecord", "RepairStatus", "repair_step"]
