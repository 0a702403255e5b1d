"""Exact real semantics of a network in z3 bit-vectors (no rounding, no ``fp.to_real``).

Every value is a :class:`BVQ`: a signed bit-vector numerator over a constant
positive integer denominator, ``v = num / den``, with a proven bound
``|num| <= bound`` that fixes the bit width (so no operation can overflow).
Searched parameters enter through their exact view
(:meth:`formal.smt.fp.FPVar.exact_parts`): ``|v| = sig * 2**sh / den`` with a
small significand, so a product parameter x value is a narrow multiply and a
barrel shift.  Constants (inputs, frozen and fixed parameters) fold to exact
Python rationals.  Since the encoding is exact, an UNSAT answer about it is a
statement about the reals on the searched domain; every SAT model is still
re-verified by the exact engine (:mod:`formal.engine.forward`) before it is reported.

:class:`NetworkEncoding` runs the forward pass (values, kink conditions per
activation entry) and, on request, AD's reverse pass with the preset's proxies
(the adjoint of every kink entry).  Each op's meaning is its ``bv`` rule
(:mod:`formal.core.smtrules`), registered by its family in :mod:`formal.ops`;
``registered_ops("bv")`` lists them.  The BVQ arithmetic is :mod:`formal.core.bvq`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Preset
from formal.core.bvq import BVQ, add, const, model_value, signed
from formal.core.graph import batched_nodes, trainable_dependence
from formal.core.network import Network, Node
from formal.core.rules import rule, walk
from formal.core.smtrules import BVRule, KinkSite, const_array, map2, per_unit
from formal.smt.fp import FPVar


class NetworkEncoding:
    """Exact forward (and optionally AD reverse) pass of ``net`` over BVQ values.

    ``params`` maps each parameter tensor name to an object array of BVQ of
    the tensor's shape (constants for fixed entries, :func:`var` for searched
    ones).  After construction, ``values`` and ``may`` (per entry: whether the
    tangent may be non-zero for some direction) hold every node's arrays and
    ``sites`` every activation entry that may sit on a kink.
    """

    def __init__(
        self, net: Network, params: Mapping[str, np.ndarray], preset: Preset | None = None
    ) -> None:
        walk(net, "bv", lambda node, r, ins: r.check(node))  # refuse before encoding anything
        self.net = net
        self.params = params
        self.preset = preset
        self.values: dict[str, np.ndarray] = {}
        self.batched: Mapping[str, bool] = batched_nodes(net)
        self.depends: Mapping[str, bool] = trainable_dependence(net)
        self.sites: list[KinkSite] = []
        self.may: dict[str, np.ndarray] = {}
        walk(net, "bv", self._step, env=self.values)

    def _step(self, node: Node, r: BVRule, ins: list[np.ndarray]) -> np.ndarray:
        """The node's value, then whether its tangent may be non-zero (which reads it)."""
        self.values[node.name] = r.value(node, ins, self)
        self.may[node.name] = r.tangent(node, self)
        return self.values[node.name]

    def kink_adjoints(self) -> dict[tuple[str, int, int], list[BVQ]]:
        """AD's adjoint of every kinked output entry, one BVQ per objective row."""
        net = self.net
        if self.preset is None:
            raise AssertionError("kink_adjoints needs a preset")
        obj = net.objective_matrix().to_fractions()
        out_shape = (net.batch,) + net.node(net.output).shape
        seeds = [const_array(obj[r].reshape(out_shape)) for r in range(obj.shape[0])]
        result: dict[tuple[str, int, int], list[BVQ]] = {}
        for seed in seeds:
            adj: dict[str, np.ndarray] = {net.output: seed}
            for node in reversed(net.nodes):
                a = adj.pop(node.name, None)
                if a is None or not self.depends[node.name]:
                    continue
                r: BVRule = rule("bv", node.op)
                if r.kinked:
                    flat = per_unit(a)
                    for b in range(flat.shape[0]):
                        for i in range(flat.shape[1]):
                            result.setdefault((node.name, b, i), []).append(flat[b, i])
                for name, c in r.adjoint(node, a, self):
                    if c is None or not self.depends[name] or not self.batched[name]:
                        continue
                    prev = adj.get(name)
                    adj[name] = c if prev is None else map2(add, prev, c)
        return result


def var(v: FPVar, negate: bool = False) -> BVQ:
    """The exact value of a searched parameter (optionally negated, for ties)."""
    mag, den = v.exact_parts()
    return signed(v.sign if not negate else ~v.sign, mag, den, v.dom.max_k)


def parameter_leaves(
    net: Network,
    fixed: Mapping[int, Fraction],
    variables: Mapping[int, FPVar],
    var_leaf: Callable[[FPVar, bool], Any],
    const_leaf: Callable[[Fraction], Any],
) -> dict[str, np.ndarray]:
    """Leaf arrays of every parameter tensor: searched groups as ``var_leaf(var, negate)``,
    fixed groups and all other entries as ``const_leaf(value)`` (ties keep their signs)."""
    par = net.parameterization()
    out: dict[str, np.ndarray] = {}
    for name, q in net.params.items():
        vals: Any = q.to_fractions()
        arr = np.empty(vals.shape, dtype=object)
        groups = par.groups.get(name)
        signs = par.signs.get(name)
        for idx in np.ndindex(*vals.shape):
            if groups is not None:
                g = int(groups[idx])
                s = int(signs[idx]) if signs is not None else 1
                if g in variables:
                    arr[idx] = var_leaf(variables[g], s < 0)
                    continue
                if g in fixed:
                    arr[idx] = const_leaf(fixed[g] * s)
                    continue
            arr[idx] = const_leaf(vals[idx])
        out[name] = arr
    return out


def param_arrays(
    net: Network, fixed: Mapping[int, Fraction], variables: Mapping[int, FPVar]
) -> dict[str, np.ndarray]:
    """BVQ arrays of every parameter tensor: searched groups as variables, others constant."""
    return parameter_leaves(net, fixed, variables, lambda v, neg: var(v, negate=neg), const)


__all__ = [
    "KinkSite",
    "NetworkEncoding",
    "model_value",
    "param_arrays",
    "parameter_leaves",
    "var",
]
