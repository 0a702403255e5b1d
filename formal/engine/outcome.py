"""The verdict type: :class:`Verdict`, its :class:`Witness` and :class:`KinkReport`.

A verdict is built by name (:meth:`Verdict.correct`, :meth:`Verdict.non_differentiable`,
:meth:`Verdict.ad_mismatch`, :meth:`Verdict.unknown`); its fixed sets of methods and
witness kinds are the ``Literal`` types :data:`Method` and :data:`WitnessKind`.
``to_json`` gives the objects of ``formal check --json`` (keys in the README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, TypedDict, Unpack

from formal.core.kinks import KinkKind
from formal.core.numbers import format_exact

Method = Literal["no-kinks", "adjoint-zero", "bias-criterion", "kink-graph-lra", "unknown"]
"""How a verdict was reached (``Verdict.method``; the ``method`` key of the JSON)."""

WitnessKind = Literal["non-additive", "ad-mismatch", "bouligand-direction"]
"""What a :class:`Witness` shows (``Witness.kind``)."""

Rows = tuple[tuple[Fraction, ...], ...]
"""An exact matrix (one row per output), e.g. a gradient."""


class VerdictContext(TypedDict):
    """The facts of every verdict that do not depend on the answer: size, format, proxy, H."""

    parameters: int
    numbers: str
    proxy: str
    hypothesis_h: bool
    hypothesis_reason: str


@dataclass(frozen=True, slots=True)
class KinkReport:
    """One kink node for the report: where, which kink, AD's adjoint there."""

    node: str
    label: str
    sample: int
    kind: KinkKind
    value: Fraction
    proxy: Fraction | None
    adjoint: tuple[Fraction, ...]  # per output row (empty when not computed)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one kink node (exact numbers as strings)."""
        return {
            "node": self.node,
            "unit": self.label,
            "sample": self.sample,
            "kind": self.kind,
            "kink": format_exact(self.value),
            "proxy": None if self.proxy is None else format_exact(self.proxy),
            "adjoint": [format_exact(a) for a in self.adjoint],
        }


@dataclass(frozen=True, slots=True)
class Witness:
    """Checkable evidence.  ``kind``:

    - ``non-additive``: ``f'(w; d1 + d2) != f'(w; d1) + f'(w; d2)`` at ``output``;
    - ``ad-mismatch``: f is differentiable (``proof``) and AD differs from the
      exact gradient at ``param`` for ``output``;
    - ``bouligand-direction``: a direction moving every kink strictly to AD's side.
    """

    kind: WitnessKind
    output: str = ""
    param: str = ""
    d1: tuple[tuple[str, Fraction], ...] = ()
    d2: tuple[tuple[str, Fraction], ...] = ()
    values: tuple[tuple[str, Fraction], ...] = ()
    proof: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the witness: only the fields it has (exact numbers as strings)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.output:
            out["output"] = self.output
        if self.param:
            out["param"] = self.param
        if self.d1:
            out["d1"] = {k: format_exact(v) for k, v in self.d1}
        if self.d2:
            out["d2"] = {k: format_exact(v) for k, v in self.d2}
        for k, v in self.values:
            out[k] = format_exact(v)
        if self.proof:
            out["proof"] = self.proof
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer at one parameter w.  ``None`` means undecided (with ``reason``).

    Build it by name, with one of the constructors below, each fixing the six
    answers consistently: :meth:`correct` (differentiable, AD correct),
    :meth:`non_differentiable`, :meth:`ad_mismatch` (differentiable, AD wrong)
    and :meth:`unknown`.  The rest of the fields are keywords; the common
    ones come as a :class:`VerdictContext` (``**context``).
    """

    differentiable: bool | None
    ad_correct: bool | None
    in_ndf: bool | None
    in_inc: bool | None
    bouligand: bool | None
    clarke: bool | None
    kink_neurons: int
    parameters: int
    method: Method
    numbers: str
    proxy: str
    seconds: float
    hypothesis_h: bool
    hypothesis_reason: str
    witness: Witness | None = None
    certificate: Witness | None = None
    kinks: tuple[KinkReport, ...] = ()
    reason: str = ""
    gradient: Rows | None = None
    ad_gradient: Rows | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def correct(
        cls,
        method: Method,
        *,
        kink_neurons: int = 0,
        kinks: tuple[KinkReport, ...] = (),
        reason: str = "",
        gradient: Rows | None = None,
        seconds: float = 0.0,
        **context: Unpack[VerdictContext],
    ) -> Verdict:
        """f is differentiable at w and AD's value is its gradient (so in every subdifferential)."""
        return cls(
            differentiable=True,
            ad_correct=True,
            in_ndf=False,
            in_inc=False,
            bouligand=True,
            clarke=True,
            method=method,
            kink_neurons=kink_neurons,
            kinks=kinks,
            reason=reason,
            gradient=gradient,
            seconds=seconds,
            **context,
        )

    @classmethod
    def non_differentiable(
        cls,
        method: Method,
        *,
        witness: Witness,
        bouligand: bool | None,
        clarke: bool | None,
        kink_neurons: int,
        kinks: tuple[KinkReport, ...] = (),
        certificate: Witness | None = None,
        reason: str = "",
        seconds: float = 0.0,
        **context: Unpack[VerdictContext],
    ) -> Verdict:
        """f is not differentiable at w (``witness``), so AD is not its gradient there."""
        return cls(
            differentiable=False,
            ad_correct=False,
            in_ndf=True,
            in_inc=False,
            bouligand=bouligand,
            clarke=clarke,
            method=method,
            kink_neurons=kink_neurons,
            witness=witness,
            certificate=certificate,
            kinks=kinks,
            reason=reason,
            seconds=seconds,
            **context,
        )

    @classmethod
    def ad_mismatch(
        cls,
        method: Method,
        *,
        witness: Witness,
        kink_neurons: int,
        kinks: tuple[KinkReport, ...] = (),
        reason: str = "",
        gradient: Rows | None = None,
        ad_gradient: Rows | None = None,
        seconds: float = 0.0,
        **context: Unpack[VerdictContext],
    ) -> Verdict:
        """f is differentiable at w but AD differs from its gradient (``witness``).

        Bouligand/Clarke stay ``None`` (not certified).
        """
        return cls(
            differentiable=True,
            ad_correct=False,
            in_ndf=False,
            in_inc=True,
            bouligand=None,
            clarke=None,
            method=method,
            kink_neurons=kink_neurons,
            witness=witness,
            kinks=kinks,
            reason=reason,
            gradient=gradient,
            ad_gradient=ad_gradient,
            seconds=seconds,
            **context,
        )

    @classmethod
    def unknown(
        cls,
        reason: str,
        *,
        method: Method = "unknown",
        kink_neurons: int = 0,
        kinks: tuple[KinkReport, ...] = (),
        seconds: float = 0.0,
        **context: Unpack[VerdictContext],
    ) -> Verdict:
        """Undecided (every answer ``None``), with the ``reason``."""
        return cls(
            differentiable=None,
            ad_correct=None,
            in_ndf=None,
            in_inc=None,
            bouligand=None,
            clarke=None,
            method=method,
            kink_neurons=kink_neurons,
            kinks=kinks,
            reason=reason,
            seconds=seconds,
            **context,
        )

    def to_json(self, *, labels: list[str] | None = None) -> dict[str, Any]:
        """The JSON object of ``formal check --json`` (keys documented in the README)."""
        out: dict[str, Any] = {
            "differentiable": self.differentiable,
            "ad_correct": self.ad_correct,
            "in_ndf": self.in_ndf,
            "in_inc": self.in_inc,
            "bouligand": self.bouligand,
            "clarke": self.clarke,
            "kink_neurons": self.kink_neurons,
            "parameters": self.parameters,
            "method": self.method,
            "witness": None if self.witness is None else self.witness.to_json(),
            "certificate": None if self.certificate is None else self.certificate.to_json(),
            "numbers": self.numbers,
            "proxy": self.proxy,
            "seconds": round(self.seconds, 6),
            "hypothesis_h": self.hypothesis_h,
            "hypothesis": self.hypothesis_reason,
            "kinks": [k.to_json() for k in self.kinks],
            "reason": self.reason or None,
        }
        if self.gradient is not None:
            out["gradient"] = [[format_exact(v) for v in row] for row in self.gradient]
        if self.ad_gradient is not None:
            out["ad_gradient"] = [[format_exact(v) for v in row] for row in self.ad_gradient]
        out.update(self.extra)
        return out


__all__ = [
    "KinkReport",
    "Method",
    "Rows",
    "Verdict",
    "VerdictContext",
    "Witness",
    "WitnessKind",
]
