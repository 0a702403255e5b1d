"""The rule registry and the one graph walk shared by every interpretation.

An *interpretation* gives each op a meaning: its float64 value with a rigorous
error bound, its exact value, a ball enclosure, a local signature, a tangent,
an adjoint, a bit-vector or an IEEE-rounded SMT term.  Each op family
(:mod:`formal.ops`) registers all of its rules here, next to each other, with
:func:`register`; interpreters (:mod:`formal.engine`, :mod:`formal.smt`) never
branch on op names: they call :func:`walk`, which dispatches every node to the
rule its interpretation's table holds for the node's op and raises one uniform
:class:`~formal.errors.MissingRule` naming the op and the interpretation when
there is none.

``import formal`` imports :mod:`formal.ops`, so every op is registered before
any interpreter runs (``tests/test_architecture.py`` proves it in a fresh
interpreter).

Tables and the signature of their rules (``net`` is the network):

- ``exact``: ``(node, ins, net) -> QArray``, the exact value;
- ``entries``: ``(node, env, net, rows, cols) -> QArray`` (1-D), the exact
  values of the entries ``(rows[i], cols[i])`` (sample, per-sample flat index)
  of a batched node; ``env.full(name)`` gives an input's exact value,
  ``env.entries(name, rows, cols)`` some entries of a batched input.  Ops
  without one are evaluated whole (the engine computes few entries where the
  float filter cannot decide a kink, :mod:`formal.engine.forward`);
- ``jvp``: ``(node, ins, tans, net) -> QArray | None``, the tangent (``None`` is
  a symbolic zero);
- ``vjp``: ``(node, ins, adj, net, need) -> list[QArray | None]``, the input
  adjoints;
- ``float``: ``(node, vals, errs, net) -> (val, err)``, float64 values and a
  rigorous bound on their distance to the exact ones;
- ``ball``: ``(node, ins, net, env) -> array of arb`` (``env``: the balls of
  the nodes evaluated so far; raise :class:`~formal.core.balls.Undecided` when
  an enclosure cannot decide);
- ``signature``: ``(node, ins, net, oracle) -> int64 array`` of local
  signature ids (:mod:`formal.core.signatures`; only a rule with
  ``uses_oracle = True`` may call ``oracle``);
- ``kink``: a :class:`~formal.core.kinks.KinkRule` object (non-smooth ops:
  activations and max-pools).  Non-smooth ops also register ``exact`` and
  ``float`` rules (values only); the engine's passes use their kink rule
  instead, which also finds the kink nodes;
- ``bv``: the exact bit-vector encoding; ``rounded``: the IEEE-rounded encoding
  (their rule signatures are documented in :mod:`formal.smt`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, get_args

from formal.core.network import Network, Node
from formal.errors import MissingRule

Interpretation = Literal[
    "exact", "entries", "jvp", "vjp", "float", "ball", "signature", "kink", "bv", "rounded"
]
INTERPRETATIONS: tuple[Interpretation, ...] = get_args(Interpretation)

RULES: dict[str, dict[str, Any]] = {name: {} for name in INTERPRETATIONS}

V = TypeVar("V")


def register(op: str, **rules: Any) -> None:
    """Register ``op``'s rules, one keyword per interpretation (``exact=``, ``float=``, ...).

    Registering the same op twice in one interpretation is an error: one op,
    one place.
    """
    for interp, fn in rules.items():
        if interp not in RULES:
            raise ValueError(
                f"unknown interpretation {interp!r}; expected one of {', '.join(INTERPRETATIONS)}"
            )
        table = RULES[interp]
        if op in table and table[op] is not fn:
            raise ValueError(f"op {op!r} already has a {interp} rule")
        table[op] = fn


def rule(interp: Interpretation, op: str) -> Any:
    """The rule of ``op`` in interpretation ``interp``; a missing one names both."""
    try:
        return RULES[interp][op]
    except KeyError:
        raise MissingRule(f"op {op!r} has no {interp} rule") from None


def has_rule(interp: Interpretation, op: str) -> bool:
    """Whether ``op`` has a rule in interpretation ``interp``."""
    return op in RULES[interp]


def registered_ops(interp: Interpretation) -> frozenset[str]:
    """The ops that have a rule in interpretation ``interp``."""
    return frozenset(RULES[interp])


def walk(
    net: Network,
    interp: Interpretation,
    step: Callable[[Node, Any, list[V]], V],
    *,
    env: dict[str, V] | None = None,
    only: Iterable[str] | None = None,
    default: Any = None,
) -> dict[str, V]:
    """Interpret ``net`` node by node in topological order: the one graph walk.

    For each node, ``step(node, rule, ins)`` applies the node's rule (looked up
    in ``interp``'s table) to the values of its inputs and returns the node's
    value.  ``env`` holds values already known (they are not recomputed);
    ``only`` restricts the walk to a set of node names (closed under inputs);
    ``default`` is the rule used for ops without one (else
    :class:`~formal.errors.MissingRule`).  A ``step`` may raise to stop early.
    """
    values: dict[str, V] = {} if env is None else env
    keep = None if only is None else set(only)
    table = RULES[interp]
    for node in net.nodes:
        if node.name in values or (keep is not None and node.name not in keep):
            continue
        fn = table.get(node.op, default)
        if fn is None:
            raise MissingRule(f"op {node.op!r} (node {node.name!r}) has no {interp} rule")
        values[node.name] = step(node, fn, [values[i] for i in node.inputs])
    return values


__all__ = [
    "INTERPRETATIONS",
    "Interpretation",
    "RULES",
    "has_rule",
    "register",
    "registered_ops",
    "rule",
    "walk",
]
