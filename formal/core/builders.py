"""The one dense-network builder: weights, biases, inputs and activations -> a Network.

:func:`dense_network` builds the IR of a dense chain directly (no JSON
parsing), with exactly the nodes the formal-net/1 loader emits for
``{"type": "dense", ...}`` layers: ``x`` (input), ``p:{i}.weight`` (param),
``{i}.linear``, optionally ``p:{i}.bias`` and ``{i}.add``, and ``{i}.act``
unless the activation is the identity.  Values are taken exactly: QArrays as
they are, float arrays through :func:`exact_from_float` (every float is a
dyadic rational), anything else (ints, Fractions, ``"p/q"``/decimal/hex
strings, nested lists of them) through :func:`~formal.core.numbers.parse_exact`.
Trainable entries must be members of the number format.

:func:`zero_mlp` is the shorthand of the theorem checks: a dense net of given
widths whose parameters are all 0 (exhaustive runs range over M anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from formal.core.activations import Activation, get_activation
from formal.core.network import Network, Node, check_well_formed
from formal.core.numbers import BINARY32, Format, format_exact, parse_exact, parse_format
from formal.core.qarray import QArray
from formal.errors import InvalidArgument, NotInFormat

__all__ = ["dense_network", "zero_mlp", "exact_from_float", "exact_values", "activation_of"]


def exact_from_float(arr: np.ndarray, what: str = "values") -> QArray:
    """Exact values of a float array (any IEEE / ml_dtypes type) with a power-of-two denominator.

    The common denominator is the smallest power of two that makes every
    numerator an integer.  Non-finite entries raise :class:`InvalidArgument`
    naming ``what`` and the first bad index.
    """
    a = np.asarray(arr)
    with np.errstate(invalid="ignore", over="ignore"):
        x = a.astype(np.float64).reshape(-1)  # exact widening
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        idx = tuple(int(i) for i in np.unravel_index(int(bad[0]), a.shape))
        raise InvalidArgument(
            f"{what}: expected finite values, got {what}{list(idx)} = {x[bad[0]]!r}"
        )
    m, e = np.frexp(x)
    mi = np.ldexp(m, 53).astype(np.int64)  # x = mi * 2**(e - 53), exactly
    t = e.astype(np.int64) - 53
    nz = mi != 0
    if not nz.any():
        return QArray.zeros(a.shape)
    low = np.where(nz, mi & -mi, 1)
    tz = np.frexp(low.astype(np.float64))[1].astype(np.int64) - 1
    tt = np.where(nz, t + tz, 0)
    k = int(max(0, -int(tt[nz].min())))
    odd = np.where(nz, mi >> tz, 0)
    shift = tt + k
    bits = np.frexp(np.abs(odd).astype(np.float64))[1]  # |odd| < 2**bits (exact: |odd| < 2**53)
    if int((bits + shift)[nz].max()) <= 62:  # every numerator fits in int64: computed natively
        ints = (odd << shift).reshape(a.shape)
        return QArray(ints.astype(object), 1 << k, ints=ints)
    num = odd.astype(object) << shift.astype(object)
    return QArray(num.reshape(a.shape), 1 << k)


def _is_float_array(values: Any) -> bool:
    return isinstance(values, np.ndarray) and (
        values.dtype.kind == "f"
        or values.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
    )


def exact_values(values: Any, what: str = "values") -> QArray:
    """A QArray of exact values: a QArray as is, a float array exactly, else parsed exactly."""
    if isinstance(values, QArray):
        return values
    if _is_float_array(values):
        return exact_from_float(values, what)
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(*arr.shape):
        v = arr[idx]
        out[idx] = parse_exact(str(v) if isinstance(v, Decimal) else v)
    return QArray.from_fractions(out)


def activation_of(spec: Any) -> Activation:
    """An Activation from itself, None (identity), a name, or a formal-net object.

    The object form is that of formal-net/1: ``{"name": "leaky_relu",
    "slope": "1/100"}`` (parameters as exact text or numbers).
    """
    if isinstance(spec, Activation):
        return spec
    if spec is None:
        return get_activation("identity")
    if isinstance(spec, str):
        return get_activation(spec)
    if isinstance(spec, dict) and "name" in spec:
        params = {
            k: str(v) if isinstance(v, Decimal) else v for k, v in spec.items() if k != "name"
        }
        return get_activation(str(spec["name"]), **params)
    raise InvalidArgument(f"expected an activation name or object, got {spec!r}")


def _objective(spec: Any, batch: int, units: int) -> tuple[QArray | None, str]:
    """The formal-net/1 ``objective`` (None, sum, weighted_sum) as a row and a kind."""
    if spec is None:
        return None, "vector"
    kind = spec if isinstance(spec, str) else spec.get("type") if isinstance(spec, dict) else None
    if kind == "sum":
        row = np.empty((1, batch * units), dtype=object)
        row[...] = Fraction(1)
        return QArray.from_fractions(row), "sum"
    if kind == "weighted_sum":
        w = exact_values(spec.get("weights"), "objective.weights")
        if w.shape != (batch, units):
            raise InvalidArgument(
                f"objective.weights: expected shape ({batch}, {units}) (B x output units), "
                f"got {w.shape}"
            )
        return QArray(w.num.reshape(1, batch * units), w.den), "weighted_sum"
    raise InvalidArgument(f"expected objective 'sum' or 'weighted_sum', got {spec!r}")


def _check_members(name: str, raw: Any, q: QArray, fmt: Format) -> None:
    """Every entry of a trainable tensor must be a member of the format (vectorized for floats)."""
    if _is_float_array(raw) and bool(fmt.contains_float_array(raw).all()):
        return
    for idx in np.ndindex(*q.shape):
        v = q.item(idx)
        if not fmt.contains(v):
            raise NotInFormat(
                f"expected a member of {fmt.name} for parameter {name}{list(idx)}, "
                f"got {format_exact(v)}"
            )


def dense_network(
    weights: Sequence[Any],
    biases: Sequence[Any | None],
    inputs: Any,
    activations: Sequence[Any],
    *,
    numbers: Format | str = BINARY32,
    trainable: Sequence[str] | None = None,
    objective: Any = None,
    source: str = "<dense>",
) -> Network:
    """A dense chain ``x -> act_i(W_i x + b_i)`` as a Network (the formal-net/1 node layout).

    ``weights[i]`` has shape (units, width); ``biases[i]`` is None (no bias
    node) or has shape (units,); ``inputs`` is the B x n minibatch;
    ``activations[i]`` is anything :func:`activation_of` takes.  Parameters are
    named ``{i}.weight`` / ``{i}.bias``; every one is trainable unless
    ``trainable`` names a subset.  ``objective``: None (vector output),
    ``"sum"`` / ``{"type": "sum"}`` or ``{"type": "weighted_sum", "weights": B x n}``.
    """
    fmt = parse_format(numbers) if isinstance(numbers, str) else numbers
    if not (len(weights) == len(biases) == len(activations)) or not weights:
        raise InvalidArgument(
            f"expected as many weights, biases and activations (>= 1), got {len(weights)}, "
            f"{len(biases)} and {len(activations)}"
        )
    x = exact_values(inputs, "inputs")
    if len(x.shape) != 2 or 0 in x.shape:
        raise InvalidArgument(f"inputs: expected a non-empty B x n array, got shape {x.shape}")
    nodes = [Node("x", "input", (), (x.shape[1],))]
    params: dict[str, QArray] = {}
    raw: dict[str, Any] = {}
    order: list[str] = []
    prev, width = "x", x.shape[1]

    def param(name: str, value: Any, ndim: int) -> tuple[str, QArray]:
        q = exact_values(value, name)
        want = (q.shape[0] if q.shape else 0, width) if ndim == 2 else (units,)
        if tuple(q.shape) != want or 0 in want:
            raise InvalidArgument(f"{name}: expected shape {want}, got {tuple(q.shape)}")
        params[name], raw[name] = q, value
        order.append(name)
        nodes.append(Node(f"p:{name}", "param", (), q.shape, (("name", name),)))
        return f"p:{name}", q

    units = 0
    for i, (w, b, a) in enumerate(zip(weights, biases, activations)):
        wnode, wq = param(f"{i}.weight", w, 2)
        units = wq.shape[0]
        nodes.append(Node(f"{i}.linear", "linear", (prev, wnode), (units,)))
        prev = f"{i}.linear"
        if b is not None:
            bnode, _ = param(f"{i}.bias", b, 1)
            nodes.append(Node(f"{i}.add", "add", (prev, bnode), (units,)))
            prev = f"{i}.add"
        act = activation_of(a)
        if act.name != "identity":
            nodes.append(Node(f"{i}.act", "act", (prev,), (units,), (("activation", act),)))
            prev = f"{i}.act"
        width = units
    train = tuple(order) if trainable is None else tuple(n for n in order if n in trainable)
    unknown = sorted(set(trainable or ()) - set(order))
    if unknown:
        raise InvalidArgument(
            f"expected trainable names among {', '.join(order)}, got {unknown[0]!r}"
        )
    for name in train:
        _check_members(name, raw[name], params[name], fmt)
    obj, kind = _objective(objective, x.shape[0], width)
    net = Network(tuple(nodes), prev, x, params, fmt, tuple(order), train, (), obj, kind, source)
    check_well_formed(net)
    return net


def zero_mlp(
    numbers: str,
    inputs: list[list[str]],
    hidden: Sequence[int],
    act: Any,
    *,
    bias: bool = True,
    out_act: Any = "identity",
    out_bias: bool = False,
    out_units: int = 1,
    objective: Any = None,
    name: str = "",
) -> Network:
    """A dense net ``n -> hidden... -> out_units``, every parameter 0 (via :func:`dense_network`).

    ``bias`` gives the hidden layers biases, ``out_bias`` the output layer;
    ``act`` is the hidden activation and ``out_act`` the output one.
    """
    width = len(inputs[0])
    sizes = list(hidden) + [out_units]
    weights: list[Any] = []
    biases: list[Any] = []
    acts: list[Any] = []
    for i, units in enumerate(sizes):
        last = i == len(hidden)
        weights.append([[0] * width for _ in range(units)])
        biases.append([0] * units if (out_bias if last else bias) else None)
        acts.append(out_act if last else act)
        width = units
    source = name or f"{numbers} {len(inputs[0])}-{'-'.join(map(str, hidden))}-{out_units}"
    return dense_network(
        weights, biases, inputs, acts, numbers=numbers, objective=objective, source=source
    )
