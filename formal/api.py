"""The Python API: what the ``formal`` commands do, as functions returning typed results.

Each entry point takes what the command takes (a network file of any
format, a built-in example name or a :class:`~formal.core.network.Network`)
and returns the frozen result the command prints, with ``to_json()`` giving
the command's ``--json`` object:

========================  ==============================  ===========================
function                  command                         result
========================  ==============================  ===========================
:func:`load`              (every command's NET)           ``Network``
:func:`check`             ``formal check``                ``Verdict``
:func:`subgradient`       ``formal check --subgradient``  ``Subgradient``
:func:`search`            ``formal search``               ``SearchResult``
:func:`count`             ``formal count``                ``CountResult``
:func:`export_smt`        ``formal export-smt``           ``Export``
:func:`reproduce`         ``formal reproduce``            ``ReproduceResult``
:func:`audit`             ``formal audit``                ``AuditResult``
========================  ==============================  ===========================

Bad input raises :class:`~formal.errors.InvalidArgument` (a ``ValueError``)
with the message the command would print.  This module sits above
:mod:`formal.cli` in the layers and shares its loaders and option checks,
so the API and the commands cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from formal.audit.audit import audit as _audit
from formal.audit.run import AuditResult
from formal.cli.check import input_note
from formal.cli.common import load_network
from formal.cli.reproduce import Budget, ReproduceResult
from formal.cli.reproduce import reproduce as _run_reproduce
from formal.cli.search import make_options
from formal.core.network import Network
from formal.count.omega import CountResult
from formal.engine.outcome import Verdict
from formal.engine.subgradient import Prefer, Subgradient
from formal.engine.subgradient import subgradient as _subgradient
from formal.engine.verdict import check as _check
from formal.errors import InvalidArgument
from formal.search.export import Export, export_query
from formal.search.options import SearchResult
from formal.search.search import search as _search

NetLike = Network | str | os.PathLike[str]
"""A network, a path to a formal-net JSON / ONNX / NNet file, or a built-in example name."""

CountMethodName = Literal["exact", "conditional", "sample"]


def load(
    source: str | os.PathLike[str],
    *,
    params: str | os.PathLike[str] | None = None,
    spec: str | os.PathLike[str] | None = None,
    input: Any = None,
) -> Network:
    """Load a network as the commands do: by suffix (``.json``, ``.onnx``, ``.nnet``) or by name.

    ``params``: an ``.npz`` of parameters for formal-net JSON.  ``spec`` (a
    VNN-LIB file) and ``input`` (``"center"``, ``"lo"``, ``"hi"``, a ``.npy``
    path or an array) choose the input of an ONNX/NNet model; without either
    its input is all zeros, recorded in ``net.cache["input_note"]``.

    Examples
    --------
    >>> import formal
    >>> net = formal.load("e1")
    >>> net.param_count(), net.numbers.name
    (2, 'binary32')
    """
    if isinstance(source, Network):
        raise InvalidArgument("formal.load: expected a path or an example name, got a Network")
    path = os.fspath(source)
    inp = os.fspath(input) if isinstance(input, os.PathLike) else input
    net = load_network(
        path,
        params=None if params is None else os.fspath(params),
        input=inp,
        spec=None if spec is None else os.fspath(spec),
    )
    note = input_note(path, input=inp, spec=spec)
    if note:
        net.cache["input_note"] = note
    return net


def _net(net: NetLike, **load_kwargs: Any) -> Network:
    """``net`` itself, or the network it names (loaded with ``load_kwargs``)."""
    if isinstance(net, Network):
        if any(v is not None for v in load_kwargs.values()):
            raise InvalidArgument(
                "params/spec/input apply when loading a file; got a Network, which has them"
            )
        return net
    if isinstance(net, (str, os.PathLike)):
        return load(net, **load_kwargs)
    raise InvalidArgument(
        f"expected a Network, a file path or an example name, got {type(net).__name__}"
    )


def check(
    net: NetLike,
    proxy: str = "pytorch",
    *,
    gradient: bool = False,
    timeout: float = 60.0,
    params: str | None = None,
    spec: str | None = None,
    input: Any = None,
) -> Verdict:
    """Decide differentiability and AD correctness at the network's parameters (``formal check``).

    Examples
    --------
    >>> import formal
    >>> v = formal.check("e1", proxy="right")
    >>> v.in_inc, v.differentiable
    (True, True)
    >>> v.to_json()["in_inc"]
    True
    """
    n = _net(net, params=params, spec=spec, input=input)
    return _check(n, proxy, gradient=gradient, timeout=timeout)


def subgradient(
    net: NetLike,
    proxy: str = "pytorch",
    *,
    prefer: Prefer = "ad",
    timeout: float = 60.0,
    verdict: Verdict | None = None,
    params: str | None = None,
    spec: str | None = None,
    input: Any = None,
) -> Subgradient:
    """A certified generalized gradient at the parameters (``formal check --subgradient``).

    The exact gradient where f is differentiable (``kind == "gradient"``), else an
    element of the Bouligand subdifferential (``"bouligand"``) with the direction and
    kink sides that make it one; ``prefer="ad"`` returns AD's own value whenever its
    sign pattern is realizable.  ``verdict``: a ``check`` result to reuse.

    Examples
    --------
    >>> import formal
    >>> sg = formal.subgradient("e1", proxy="right")
    >>> sg.kind, [str(x) for x in sg.vector[0]], sg.ad_is_element
    ('gradient', ['0', '0'], False)
    >>> [(d.param, str(d.ad), str(d.value)) for d in sg.differs_from_ad]
    [('0.weight[0,0]', '-1', '0')]
    """
    n = _net(net, params=params, spec=spec, input=input)
    return _subgradient(n, proxy, prefer=prefer, timeout=timeout, verdict=verdict)


def search(
    net: NetLike,
    find: str,
    *,
    numbers: str | None = None,
    proxy: str = "pytorch",
    fix: Sequence[str] = (),
    free: Sequence[str] | None = None,
    range: str | None = None,
    subnormals: bool = False,
    timeout: float = 60.0,
    seed: int = 0,
    search_format: str | None = None,
    order: str = "sequential",
    stages: str | Sequence[str] | None = None,
    params: str | None = None,
    spec: str | None = None,
    input: Any = None,
) -> SearchResult:
    """Search machine numbers for a witness (``formal search --find FIND``).

    ``find``: kink, ndf, inc, spurious-kink or missed-kink; the other options
    are the command's (``range="1/256:256"``, ``fix=["0.bias"]``, ...).  The
    result's ``status`` is found, exhausted or unknown (never a guess).

    Examples
    --------
    >>> import formal
    >>> r = formal.search("e1", "inc", proxy="right", stages="given")
    >>> r.status, r.to_json()["verdict"]["in_inc"]
    ('found', True)
    """
    opt = make_options(
        find,
        numbers=numbers,
        proxy=proxy,
        fix=fix,
        free=free,
        range_=range,
        subnormals=subnormals,
        timeout=timeout,
        seed=seed,
        search_format=search_format,
        order=order,
        stages=stages,
    )
    return _search(_net(net, params=params, spec=spec, input=input), opt)


def count(
    net: NetLike,
    method: CountMethodName = "exact",
    proxy: str = "pytorch",
    *,
    numbers: str | None = None,
    samples: int = 1000,
    seed: int = 0,
    max_points: int = 10**9,
    cross_check: int = 16,
    slice: bool = False,
    max_seconds: float | None = None,
    progress: bool = False,
    params: str | None = None,
    spec: str | None = None,
    input: Any = None,
) -> CountResult:
    """Count |ndf_Omega| and |inc_Omega| on machine numbers (``formal count``).

    ``max_seconds``: estimate the time first (as the command does) and raise
    :class:`~formal.errors.InvalidArgument` past it; None runs without the
    estimate.  ``progress``: a tqdm bar on stderr when it is a terminal.

    Examples
    --------
    >>> import formal
    >>> r = formal.count("e1", numbers="fp(2,1)", proxy="right")
    >>> r.omega, r.ndf, r.inc
    (121, 10, 5)
    """
    from formal.cli.count import guard_time
    from formal.core.activations import parse_preset
    from formal.core.numbers import parse_format
    from formal.count.bias import count_conditional
    from formal.count.counting import count as _count
    from formal.count.counting import reformat

    if method not in ("exact", "conditional", "sample"):
        raise InvalidArgument(f"expected method exact, conditional or sample, got {method!r}")
    if samples <= 0 or max_points <= 0 or cross_check < 0:
        raise InvalidArgument(
            f"expected samples >= 1, max_points >= 1, cross_check >= 0; got {samples}, "
            f"{max_points}, {cross_check}"
        )
    parse_preset(proxy)
    n = _net(net, params=params, spec=spec, input=input)
    if numbers:
        n = reformat(n, parse_format(numbers))
    if max_seconds is not None:
        guard_time(
            n,
            method,
            proxy,
            samples=samples,
            seed=seed,
            max_points=max_points,
            limit=max_seconds,
            yes=False,
        )
    if method == "conditional":
        return count_conditional(
            n, proxy, max_points=max_points, given="net" if slice else "auto", progress=progress
        )
    return _count(
        n,
        method,
        proxy,
        samples=samples,
        seed=seed,
        max_points=max_points,
        progress=progress,
        cross_check=cross_check,
    )


def export_smt(
    net: NetLike,
    query: str,
    *,
    numbers: str | None = None,
    proxy: str = "pytorch",
    fix: Sequence[str] = (),
    free: Sequence[str] | None = None,
    range: str | None = None,
    subnormals: bool = False,
    timeout: float = 60.0,
    seed: int = 0,
    search_format: str | None = None,
    order: str = "sequential",
    after_search: int = 0,
    params: str | None = None,
    spec: str | None = None,
    input: Any = None,
) -> Export:
    """The SMT-LIB2 query of a search (``formal export-smt``); ``Export.text`` is the file.

    The status in the text (``sat``/``unsat``/``unknown``) is z3's answer on the
    re-parsed query; nothing is written to disk.
    """
    if after_search < 0:
        raise InvalidArgument(f"expected after_search >= 0, got {after_search}")
    opt = make_options(
        query,
        numbers=numbers,
        proxy=proxy,
        fix=fix,
        free=free,
        range_=range,
        subnormals=subnormals,
        timeout=timeout,
        seed=seed,
        search_format=search_format,
        order=order,
    )
    source = os.fspath(net) if isinstance(net, (str, os.PathLike)) else ""
    n = _net(net, params=params, spec=spec, input=input)
    return export_query(
        n, opt, source=source or n.source, timeout=timeout, after_search=after_search
    )


def reproduce(
    budget: Budget = "quick", only: Sequence[str] | None = None, *, progress: bool = True
) -> ReproduceResult:
    """Run the theorem checks of docs/theory.md (``formal reproduce``).

    ``only``: run the results whose name contains one of these texts (each must
    match a result).  ``result.ok`` is False when a check failed.
    """
    return _run_reproduce(budget, only, progress=progress)


def audit(**options: Any) -> AuditResult:
    """Audit a training run (``formal audit``): digits training, snapshots or ONNX centers.

    Options are :func:`formal.audit.audit.audit`'s (``source="digits"``,
    ``precision="16"``, ``hidden="64,64"``, ``epochs``, ``batch_size``, ``lr``,
    ``seed``, ``max_steps``; ``source="snapshots", snapshots=PATH``;
    ``source="onnx", model=PATH, specs=[...]``).  ``result.to_json()`` is the
    JSON log of ``formal audit -o``.

    Examples
    --------
    >>> import formal
    >>> r = formal.api.audit(precision="32", hidden="8", max_steps=2)
    >>> r.totals()["steps"]
    2
    """
    return _audit(**options)


__all__ = [
    "AuditResult",
    "CountMethodName",
    "NetLike",
    "ReproduceResult",
    "audit",
    "check",
    "count",
    "export_smt",
    "load",
    "reproduce",
    "search",
    "subgradient",
]
