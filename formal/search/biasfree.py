"""Bias-free reasoning for ``formal search --find inc``: theorems first, then a direct witness.

Dense chains without biases are where the incorrect set lives (docs/theory.md
section 4), and where the generic SMT stage is slowest: every pre-activation is
a product of weights, and at binary32 the bit-blasted queries time out.  This
module answers the question from the structure instead:

* :func:`inc_empty` proves ``inc(f)`` empty on all of ``R^W`` (so on every
  searched space) with a theorem whose hypotheses it checks on the network:

  - **zero input**: a dense chain with no trainable bias, every bias absent
    or frozen at 0, every input entry 0, and ``rho(0) = 0`` for every
    activation.  By induction every pre-activation and activation is 0 for
    every w, so f is identically 0 (differentiable, gradient 0), and AD's
    gradient of every weight is an outer product with a layer input, which
    is 0: AD = 0 = grad f everywhere, whatever the proxies;
  - **T5 (ii)** (proofs/t5-anchored.md): B = 1, dense chain, every weight
    trainable and untied; every proxy one-sided; for every activation feeding
    a kinked layer, ``rho(y) = 0`` implies ``rho'(y) = 0`` or y is a kink with
    proxy 0 (checked piece by piece; only piecewise-affine activations are
    accepted).  ReLU and ReLU6 with the pytorch, jax, tensorflow and left
    presets;
  - **T5 (i), corollary**: same setting, no kinked activation has a kink at 0,
    every proxy lies in ``[D-, D+]``, and no frozen bias of a kinked layer
    equals a kink: every kink neuron is then anchored.

* :func:`witness_candidates` builds, for the presets T5 does not cover, the
  E1 pattern at depth (theory.md section 4): in a kinked layer ``a`` with a
  kink at 0 every weight is 0 (each unit sits on its kink at 0, anchored by a
  non-zero input), the next kinked layer ``a + 1`` has negative weights (its
  units sit on 0 and stay dead under every small move, since their inputs
  are ``>= 0``), and the layers above have positive weights.  For ReLU-like
  activations f is then locally constant while AD carries ``p^2`` through
  the two kinks: AD is wrong exactly when the proxy p at 0 is non-zero.  A
  *one path* variant (one unit on its kink, one weight per layer above, all
  else 0) comes first, as it keeps the exact check cheap.  The
  candidates are only proposals: :meth:`SearchState.verify` re-checks each
  one with the exact engine before a ``found``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from formal.core.activations import Activation, Preset
from formal.core.network import Network
from formal.core.numbers import format_exact
from formal.engine.batch import Chain, dense_chain
from formal.smt.fp import Domain

__all__ = ["Emptiness", "Candidate", "inc_empty", "witness_candidates", "t5_setting"]


@dataclass(frozen=True, slots=True)
class Emptiness:
    """A theorem proving inc(f) empty on all of R^W: its name (the method) and why it applies."""

    method: str
    reason: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """Parameter values (group -> value) of one constructed point, and how it was built."""

    values: dict[int, Fraction]
    how: str


def _act_name(act: Activation | None) -> str:
    return "identity" if act is None else act.describe()


def t5_setting(net: Network) -> tuple[Chain | None, str]:
    """The dense chain of T5's setting (B = 1, untied trainable weights), or None and why not."""
    chain = dense_chain(net)
    if chain is None:
        return None, "not a dense chain"
    if net.ties:
        return None, "tied parameters"
    if net.batch != 1:
        return None, f"B = {net.batch} > 1"
    for ly in chain.layers:
        if ly.weight not in net.trainable:
            return None, f"weight {ly.weight} is frozen"
    return chain, "B = 1, dense chain, every weight trainable and untied"


def _zero_side(act: Activation | None, preset: Preset) -> str | None:
    """None when rho(y) = 0 implies rho'(y) = 0 or a kink with proxy 0; else why not.

    Decided exactly for piecewise-affine activations; higher-degree pieces are
    refused (the condition is not checked for them).
    """
    if act is None:
        return "the identity is 0 at 0 with slope 1"
    bounds = (None,) + tuple(act.kinks) + (None,)
    for i, piece in enumerate(act.pieces):
        lo, hi = bounds[i], bounds[i + 1]
        coeffs = list(piece) + [Fraction(0)] * 2
        if any(c != 0 for c in coeffs[2:]):
            return f"{act.describe()} has a piece of degree > 1 (not checked)"
        a0, a1 = coeffs[0], coeffs[1]
        if a1 == 0:
            continue  # constant: 0 everywhere (slope 0) or never 0
        r = -a0 / a1
        if (lo is None or r > lo) and (hi is None or r < hi):
            return f"{act.describe()} is 0 at {format_exact(r)} with slope {format_exact(a1)}"
    for c in act.kinks:
        if act.value(c) == 0 and preset.proxy(act, c) != 0:
            return (
                f"{act.describe()} is 0 at its kink {format_exact(c)} where the {preset.name} "
                f"proxy is {format_exact(preset.proxy(act, c))}, not 0"
            )
    return None


def _zero_input(net: Network) -> Emptiness | None:
    chain = dense_chain(net)
    if chain is None or any(int(v) != 0 for v in net.inputs.num.reshape(-1)):
        return None
    for ly in chain.layers:
        if ly.bias is not None:
            if ly.bias in net.trainable:
                return None
            if any(int(v) != 0 for v in net.params[ly.bias].num.reshape(-1)):
                return None
        if ly.act is not None and ly.act.value(Fraction(0)) != 0:
            return None
    return Emptiness(
        "theorem-zero-input",
        "zero input: a dense chain whose inputs are all 0, with no bias other than frozen zeros, "
        "and rho(0) = 0 for every activation computes 0 at every w (f is identically 0), and AD's "
        "gradient of each weight is an outer product with that layer's input, which is 0; so "
        "AD = grad f = 0 on all of R^W, whatever the proxies",
    )


def _t5_ii(net: Network, chain: Chain, preset: Preset, setting: str) -> Emptiness | None:
    kinked = [i for i, ly in enumerate(chain.layers) if ly.act is not None and ly.act.kinks]
    for i in kinked:
        act = chain.layers[i].act
        assert act is not None
        if any(preset.kind(act, c) not in ("left", "right") for c in act.kinks):
            return None
    feeding = sorted({i - 1 for i in kinked if i > 0})
    for i in feeding:
        if _zero_side(chain.layers[i].act, preset) is not None:
            return None
    acts = sorted({_act_name(chain.layers[i].act) for i in kinked})
    return Emptiness(
        "theorem-T5",
        f"T5 (ii) (proofs/t5-anchored.md): {setting}; every proxy of {preset.name} at the kinks "
        f"of {', '.join(acts)} is one-sided, and every activation feeding a kinked layer is 0 only "
        f"where its slope (or its proxy at a kink) is 0; so AD = grad f wherever f is "
        f"differentiable: inc(f) is empty on all of R^W",
    )


def _t5_i(net: Network, chain: Chain, preset: Preset, setting: str) -> Emptiness | None:
    kinked = [ly for ly in chain.layers if ly.act is not None and ly.act.kinks]
    for ly in kinked:
        act = ly.act
        assert act is not None
        if Fraction(0) in act.kinks:
            return None
        if any(preset.kind(act, c) == "outside" for c in act.kinks):
            return None
        if ly.bias is not None and ly.bias not in net.trainable:
            vals = set(net.params[ly.bias].to_fractions().reshape(-1).tolist())
            if any(c in vals for c in act.kinks):
                return None
    acts = sorted({_act_name(ly.act) for ly in kinked})
    return Emptiness(
        "theorem-T5",
        f"T5 (i) (proofs/t5-anchored.md): {setting}; no kink of {', '.join(acts)} is at 0 and no "
        f"frozen bias equals a kink, so every kink neuron has a non-zero input or a trainable "
        f"bias (anchored); the {preset.name} proxies lie in [D-, D+]; so AD = grad f wherever f "
        f"is differentiable: inc(f) is empty on all of R^W",
    )


def inc_empty(net: Network, preset: Preset) -> Emptiness | None:
    """A theorem whose checked hypotheses make inc(f) empty on all of R^W; None if none applies.

    The claim covers every point of R^W, hence every searched subspace (fixed
    parameters, ranges, formats).
    """
    zero = _zero_input(net)
    if zero is not None:
        return zero
    chain, setting = t5_setting(net)
    if chain is None:
        return None
    if not any(ly.act is not None and ly.act.kinks for ly in chain.layers):
        return None  # the theorem stage already answers networks without kinks
    return _t5_ii(net, chain, preset, setting) or _t5_i(net, chain, preset, setting)


def _nonzero_value(dom: Domain) -> Fraction | None:
    """1 when the domain allows it, else its smallest allowed non-zero magnitude."""
    if dom.allows(Fraction(1)):
        return Fraction(1)
    return dom.lo_member


def _layer_input(net: Network, chain: Chain, a: int) -> list[Fraction]:
    """The exact input of layer ``a`` for the (single) sample of a B = 1 dense chain."""
    z = [Fraction(q) for q in net.inputs.to_fractions().reshape(-1).tolist()]
    for ly in chain.layers[:a]:
        w = net.params[ly.weight].to_fractions().tolist()
        y = [sum((wi * zi for wi, zi in zip(row, z) if zi), Fraction(0)) for row in w]
        if ly.bias is not None:
            y = [yi + b for yi, b in zip(y, net.params[ly.bias].to_fractions().tolist())]
        z = y if ly.act is None else [ly.act.value(yi) for yi in y]
    return z


class _Builder:
    """Assigns pattern values to the free entries of a chain's tensors (one candidate)."""

    def __init__(self, net: Network, free: set[int], v: Fraction) -> None:
        self.net, self.free, self.v = net, free, v
        self.par = net.parameterization()
        self.values: dict[int, Fraction] = {}

    def entries(self, name: str) -> list[tuple[int, Fraction]]:
        """(group or -1 when not free, current value) of every entry of tensor ``name``."""
        groups = self.par.groups.get(name)
        flat = groups.reshape(-1).tolist() if groups is not None else None
        cur = self.net.params[name].to_fractions().reshape(-1).tolist()
        return [
            (int(flat[j]) if flat is not None and int(flat[j]) in self.free else -1, c)
            for j, c in enumerate(cur)
        ]

    def all_free(self, name: str) -> bool:
        """Every entry of tensor ``name`` is searched."""
        return all(g >= 0 for g, _ in self.entries(name))

    def put(self, name: str, want: str) -> bool:
        """Give the free entries of ``name`` the value of pattern ``want`` (0, neg, pos, any);
        False if a fixed entry does not fit the pattern."""
        target = {"0": Fraction(0), "neg": -self.v}.get(want, self.v)
        for g, cur in self.entries(name):
            fits = {"0": cur == 0, "neg": cur < 0, "pos": cur > 0, "any": True}[want]
            if g >= 0:
                self.values[g] = target
            elif not fits:
                return False
        return True

    def set_flat(self, name: str, values: dict[int, Fraction]) -> None:
        """Set every entry of an all-free tensor: ``values`` by flat index, 0 elsewhere."""
        for j, (g, _) in enumerate(self.entries(name)):
            self.values[g] = values.get(j, Fraction(0))


def _sparse(net: Network, chain: Chain, a: int, free: set[int], v: Fraction) -> Candidate | None:
    """One kink path: unit u of layer a on its kink (row 0), the other units of layer a dead,
    one negative weight u -> k of layer a + 1, one non-zero weight per layer above along a
    path to output 0, every other weight 0.  Few relevant kinks keep the exact check cheap.
    Needs B = 1 and every touched tensor free; current path values are kept when they fit."""
    layers = chain.layers
    b = _Builder(net, free, v)
    touched = [ly.weight for ly in layers[a:]] + [
        ly.bias for ly in layers[a:] if ly.bias is not None
    ]
    if net.batch != 1 or not all(b.all_free(t) for t in touched):
        return None
    z = _layer_input(net, chain, a)
    j = next((i for i, q in enumerate(z) if q != 0), None)
    if j is None:
        return None  # layer a has input 0: its weights get AD adjoint 0 (no witness here)
    width = len(z)
    dead = -v if z[j] > 0 else v
    b.set_flat(layers[a].weight, {r * width + j: dead for r in range(1, layers[a].units)})
    for ly in layers[a : a + 2]:
        if ly.bias is not None:
            b.set_flat(ly.bias, {})
    prev = 0  # unit u = 0 of layer a
    for depth, ly in enumerate(layers[a + 1 :]):
        w = net.params[ly.weight].to_fractions()
        column = [w[k, prev] for k in range(ly.units)]
        want = (lambda q: q < 0) if depth == 0 else (lambda q: q != 0)
        k = next((i for i, q in enumerate(column) if want(q)), 0)
        value = column[k] if want(column[k]) else (-v if depth == 0 else v)
        b.set_flat(ly.weight, {k * ly.fan_in + prev: value})
        if depth > 0 and ly.bias is not None:
            cur = net.params[ly.bias].to_fractions().reshape(-1).tolist()
            b.set_flat(ly.bias, {i: c for i, c in enumerate(cur) if i != k} | {k: max(cur[k], v)})
        prev = k
    return Candidate(
        b.values,
        f"one path: unit 0 of layer {a} on the kink 0 (weights 0, input non-zero), its other "
        f"units dead, one negative weight into layer {a + 1} (its units on 0, dead nearby), one "
        f"non-zero weight per layer above, every other weight 0",
    )


def witness_candidates(
    net: Network, preset: Preset, dom: Domain, free: list[int]
) -> Iterator[Candidate]:
    """E1-pattern points of a dense chain (module docstring), for each pair of kinked layers.

    Per pair two variants: *one path* (:func:`_sparse`: few relevant kinks, path
    values kept where they fit) and *dense* (layer a + 1 all ``-v``, the weights
    above all ``+v``: no cancellation between paths; fixed entries allowed when
    they fit the pattern).  Only free groups change.  Candidates are proposals,
    to be verified exactly.
    """
    chain = dense_chain(net)
    v = _nonzero_value(dom)
    if chain is None or net.ties or v is None:
        return
    free_set = set(free)
    layers = chain.layers
    zero_kinked = [ly.act is not None and Fraction(0) in ly.act.kinks for ly in layers]
    seen: list[dict[int, Fraction]] = []
    for a in range(len(layers) - 1):
        if not (zero_kinked[a] and zero_kinked[a + 1]):
            continue
        sparse = _sparse(net, chain, a, free_set, v)
        if sparse is not None:
            seen.append(sparse.values)
            yield sparse
        b = _Builder(net, free_set, v)
        plan = [(layers[a].weight, "0"), (layers[a + 1].weight, "neg")]
        plan += [(ly.bias, "0") for ly in layers[a : a + 2] if ly.bias is not None]
        plan += [(ly.weight, "pos") for ly in layers[a + 2 :]]
        plan += [(ly.bias, "any") for ly in layers[a + 2 :] if ly.bias is not None]
        if not all(b.put(name, want) for name, want in plan) or b.values in seen:
            continue
        seen.append(b.values)
        yield Candidate(
            b.values,
            f"layer {a} weights 0 (its units on the kink 0), layer {a + 1} weights "
            f"{format_exact(-v)} (units on 0, dead nearby), weights above {format_exact(v)}",
        )
