"""Graph facts of a network, each computed in one place (and cached on the network).

- :func:`batched_nodes` / :func:`is_batched`: whether a node's value has the
  minibatch axis (it depends on the input);
- :func:`trainable_dependence` / :func:`depends_on_trainable`: whether a node's
  value depends on a trainable parameter (a parameter named in
  ``net.trainable``);
- :func:`ancestors` (a node and everything it reads) and :func:`descendants`
  (everything that reads a set of nodes, directly or not).

Caches live in ``net.cache`` and only depend on the graph and ``trainable``
(networks rebuilt with other values keep them, see :mod:`formal.core.rebuild`).
"""

from __future__ import annotations

from collections.abc import Iterable

from formal.core.network import Network


def batched_nodes(net: Network) -> dict[str, bool]:
    """Per node: whether its value is batched (``(B, *shape)``), i.e. depends on the input."""
    table: dict[str, bool] | None = net.cache.get("batched")
    if table is None:
        table = {}
        for n in net.nodes:
            if n.op == "input":
                table[n.name] = True
            elif n.op in ("param", "const"):
                table[n.name] = False
            else:
                table[n.name] = any(table[i] for i in n.inputs)
        net.cache["batched"] = table
    return table


def is_batched(net: Network, name: str) -> bool:
    """Whether node ``name``'s value has the minibatch axis."""
    return bool(batched_nodes(net)[name])


def trainable_dependence(net: Network) -> dict[str, bool]:
    """Per node: whether its value depends on a trainable parameter.

    A ``param`` node depends on one iff its tensor is named in ``net.trainable``;
    inputs and constants never do; any other node iff one of its inputs does.
    """
    table: dict[str, bool] | None = net.cache.get("trainable_dependence")
    if table is None:
        trainable = set(net.trainable)
        table = {}
        for n in net.nodes:
            if n.op == "param":
                table[n.name] = n.attr("name") in trainable
            else:
                table[n.name] = any(table[i] for i in n.inputs)
        net.cache["trainable_dependence"] = table
    return table


def depends_on_trainable(net: Network, name: str) -> bool:
    """Whether node ``name``'s value depends on a trainable parameter."""
    return bool(trainable_dependence(net)[name])


def ancestors(net: Network, name: str) -> frozenset[str]:
    """Node ``name`` and every node it reads, directly or not (cached)."""
    key = "ancestors:" + name
    hit: frozenset[str] | None = net.cache.get(key)
    if hit is None:
        seen: set[str] = set()
        stack = [name]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            stack.extend(net.node(n).inputs)
        hit = frozenset(seen)
        net.cache[key] = hit
    return hit


def descendants(net: Network, roots: Iterable[str]) -> set[str]:
    """Every node that reads one of ``roots``, directly or not (a root only if it is read so)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        for c in net.consumers(n):
            if c.name not in seen:
                seen.add(c.name)
                stack.append(c.name)
    return seen


__all__ = [
    "ancestors",
    "batched_nodes",
    "depends_on_trainable",
    "descendants",
    "is_batched",
    "trainable_dependence",
]
