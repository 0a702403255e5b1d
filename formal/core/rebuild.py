"""Copies of a :class:`~formal.network.Network` with new parameter values.

:func:`with_groups` sets parameter *groups* (the columns of w, see
:meth:`Network.parameterization`; a tie sets all its entries, with their
signs) and returns a new network whose trainable entries are re-checked for
membership in the number format.  The copy gets a fresh cache, seeded only
with entries that do not depend on the changed values (graph structure, and
per-tensor float/flint caches of tensors that are the very same objects).

:func:`params_json` and :func:`bits_json` render every tensor in the shapes of
formal-net/1: exact value strings and hex bit patterns of the format.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.network import Network
from formal.core.numbers import Format, format_exact, hex_float, parse_exact
from formal.core.qarray import QArray
from formal.errors import InvalidArgument, NotInFormat

__all__ = [
    "with_groups",
    "with_params",
    "group_values",
    "params_json",
    "bits_json",
    "resolve_names",
]

_STRUCTURAL = ("index", "consumers", "batched", "parameterization", "bias_structure")


def group_values(net: Network, groups: Iterable[int] | None = None) -> dict[int, Fraction]:
    """The current value of parameter groups (their representative entry); all by default."""
    par = net.parameterization()
    todo = range(par.size) if groups is None else groups
    out: dict[int, Fraction] = {}
    for g in todo:
        name, flat = par.slot(int(g))
        q = net.params[name]
        out[int(g)] = Fraction(int(q.num.reshape(-1)[flat]), q.den)
    return out


def with_params(
    net: Network,
    tensors: Mapping[str, QArray],
    *,
    numbers: Format | None = None,
    check: bool = True,
    changed: Mapping[str, np.ndarray] | None = None,
) -> Network:
    """A copy of ``net`` with whole tensors replaced (shapes must match).

    Trainable entries are re-checked for membership in the format: all of them
    when the format changes, else those of replaced tensors (only the flat
    indices in ``changed[name]`` when given).
    """
    params = dict(net.params)
    for name, q in tensors.items():
        if name not in params:
            raise InvalidArgument(
                f"expected a parameter of the network ({', '.join(net.param_order)}), got {name!r}"
            )
        if tuple(q.shape) != tuple(params[name].shape):
            raise InvalidArgument(
                f"expected shape {tuple(params[name].shape)} for {name}, got {tuple(q.shape)}"
            )
        params[name] = q
    fmt = numbers or net.numbers
    cache: dict[str, Any] = {k: net.cache[k] for k in _STRUCTURAL if k in net.cache}
    cache_inputs = net.cache.get("float:<input>")
    if cache_inputs is not None:
        cache["float:<input>"] = cache_inputs
    for name, q in params.items():
        if q is net.params[name]:
            for prefix in ("flint:", "float:"):
                if prefix + name in net.cache:
                    cache[prefix + name] = net.cache[prefix + name]
    out = dataclasses.replace(net, params=params, numbers=fmt, cache=cache)
    if check:
        if fmt != net.numbers:
            _check_members(out, None)
        else:
            todo = {n: (None if changed is None else changed.get(n)) for n in tensors}
            _check_members(out, todo)
    return out


def with_groups(
    net: Network,
    values: Mapping[int, Fraction],
    *,
    numbers: Format | None = None,
    check: bool = True,
) -> Network:
    """A copy of ``net`` with parameter groups set (ties keep their signs)."""
    par = net.parameterization()
    touched: dict[str, QArray] = {}
    changed: dict[str, np.ndarray] = {}
    if values:
        keys = np.fromiter((int(g) for g in values), dtype=np.int64)
        for name, groups in par.groups.items():
            flat_g = groups.reshape(-1)
            hit = np.flatnonzero(np.isin(flat_g, keys))
            if hit.size == 0:
                continue
            flat_s = par.signs[name].reshape(-1)
            q = net.params[name]
            entries = {int(j): Fraction(values[int(flat_g[j])]) * int(flat_s[j]) for j in hit}
            touched[name] = _patched(q, entries)
            changed[name] = hit
    return with_params(net, touched, numbers=numbers, check=check, changed=changed)


def _patched(q: QArray, entries: Mapping[int, Fraction]) -> QArray:
    """``q`` with some flat entries replaced, exactly (common denominator kept minimal)."""
    den = q.den
    for v in entries.values():
        den = math.lcm(den, v.denominator)
    num = q.num.reshape(-1) * (den // q.den) if den != q.den else q.num.reshape(-1).copy()
    for j, v in entries.items():
        num[j] = v.numerator * (den // v.denominator)
    return QArray(num.reshape(q.shape), den)


def _check_members(net: Network, todo: Mapping[str, np.ndarray | None] | None) -> None:
    fmt = net.numbers
    par = net.parameterization()
    names = net.trainable if todo is None else [n for n in todo if n in net.trainable]
    for name in names:
        q = net.params[name]
        flat = q.num.reshape(-1)
        sel = None if todo is None else todo.get(name)
        idx: Any = range(flat.size) if sel is None else sel
        for j in idx:
            v = Fraction(int(flat[int(j)]), q.den)
            if not fmt.contains(v):
                g = int(par.groups[name].reshape(-1)[int(j)])
                raise NotInFormat(
                    f"expected a member of {fmt.name} for parameter {par.label(g)}, got "
                    f"{format_exact(v)} "
                    f"(nearest members: {_near(fmt, v)})"
                )


def _near(fmt: Format, v: Fraction) -> str:
    lo, hi = fmt.neighbors(v)
    return " and ".join(
        "none" if x is None else f"{hex_float(x)} = {format_exact(x)}" for x in (lo, hi)
    )


def params_json(net: Network) -> dict[str, Any]:
    """Every parameter tensor as nested lists of exact value strings (formal-net/1 shapes)."""
    return {name: _nested(net.params[name], format_exact) for name in net.param_order}


def bits_json(net: Network, fmt: Format | None = None) -> dict[str, Any]:
    """Every parameter tensor as nested lists of hex bit patterns (None: not a member)."""
    f = fmt or net.numbers

    def one(v: Fraction) -> str | None:
        return f.hex_bits(v) if f.contains(v) else None

    return {name: _nested(net.params[name], one) for name in net.param_order}


def _nested(q: QArray, fn: Any) -> Any:
    vals = q.to_fractions()
    out = np.empty(vals.shape, dtype=object)
    for idx in np.ndindex(*vals.shape):
        out[idx] = fn(vals[idx])
    return out.tolist() if vals.shape else out.item()


def resolve_names(net: Network, names: list[str]) -> dict[int, Fraction | None]:
    """Parse ``NAME`` / ``NAME=VALUE`` items into group -> value (None: keep the current value).

    NAME is a tensor name (every group with an entry in it) or an entry label
    like ``0.weight[1,0]`` (the group holding that entry; a VALUE for a tied
    entry is converted to its group's sign).
    """
    par = net.parameterization()
    out: dict[int, Fraction | None] = {}
    for item in names:
        name, eq, text = item.partition("=")
        name = name.strip()
        value = parse_exact(text.strip()) if eq else None
        tensor, _, rest = name.partition("[")
        if tensor not in net.params:
            raise InvalidArgument(
                f"expected a parameter name ({', '.join(net.param_order)}) or an entry like "
                f"0.weight[1,0], got {item!r}"
            )
        if tensor not in par.groups:
            raise InvalidArgument(
                f"expected a trainable parameter, got {tensor!r} (frozen: its value is fixed "
                f"already)"
            )
        groups, signs = par.groups[tensor], par.signs[tensor]
        if rest:
            if not rest.endswith("]"):
                raise InvalidArgument(f"expected an entry like {tensor}[1,0], got {item!r}")
            try:
                idx = tuple(int(t) for t in rest[:-1].split(",") if t.strip())
            except ValueError:
                raise InvalidArgument(f"expected integer indices, got {item!r}") from None
            if len(idx) != groups.ndim or any(not 0 <= i < s for i, s in zip(idx, groups.shape)):
                raise InvalidArgument(
                    f"expected an index of {tensor} (shape {tuple(groups.shape)}), got {item!r}"
                )
            _set(out, int(groups[idx]), None if value is None else value * int(signs[idx]), item)
        else:
            mine: dict[int, Fraction | None] = {}
            for idx in np.ndindex(*groups.shape):
                _set(
                    mine, int(groups[idx]), None if value is None else value * int(signs[idx]), item
                )
            out.update(mine)
    return out


def _set(out: dict[int, Fraction | None], g: int, v: Fraction | None, item: str) -> None:
    if g in out and out[g] != v:
        raise InvalidArgument(
            f"expected one consistent value per tied group, got {item!r} setting tied entries to "
            f"different values"
        )
    out[g] = v
