"""Real frameworks, measured: PyTorch's and JAX's derivatives at every kink, max-pool ties.

:func:`measure` runs the installed framework (imported lazily) on binary32
scalars placed exactly on each kink of each activation the engine supports
and records the derivative it returns (seed 1), and which entry of a tied
2x2 max-pool window receives the gradient (``first`` / ``last`` / ``split``
in row-major window order).  :func:`mismatches` compares a preset with a
measurement (each proxy rounded to binary32, as the framework computes it);
:func:`proxy_table` renders the README table from measurements:

    python -m formal.floatad.frameworks --table

:func:`framework_gradient` evaluates a small Network (input, param, const,
linear, matmul, add, sub, neg, scale, view/reshape, act, conv2d, maxpool2d,
avgpool2d) in the framework in binary32 and returns the objective ``sum`` of
the output and the gradient of every trainable tensor: the reference that
``formal``'s float AD is compared with, bit for bit.  JAX runs eagerly (no
``jax.jit``: each op is dispatched and compiled alone, so XLA cannot fuse or
reassociate across ops) with ``jax_enable_x64`` left at its default (off;
every array here is explicitly binary32).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from formal.core.activations import PRESETS, Activation, get_activation
from formal.core.network import Network
from formal.core.numbers import BINARY32, format_exact
from formal.errors import InvalidArgument, MissingRule
from formal.ops.conv import avg_divisors

Framework = Literal["pytorch", "jax"]
FRAMEWORKS: tuple[Framework, ...] = ("pytorch", "jax")

# the activations measured: (key, activation); the framework functions are below
ACTIVATIONS: tuple[tuple[str, Activation], ...] = (
    ("relu", get_activation("relu")),
    ("leaky_relu", get_activation("leaky_relu", slope="1/100")),
    ("relu6", get_activation("relu6")),
    ("hardtanh", get_activation("hardtanh")),
    ("hardsigmoid", get_activation("hardsigmoid")),
    ("hardswish", get_activation("hardswish")),
    ("abs", get_activation("abs")),
    ("clip", get_activation("clip", min=-1, max=1)),
)

# which installed versions a framework preset describes: (framework, lowest, highest) versions
PRESET_VERSIONS: dict[str, tuple[Framework, tuple[int, int], tuple[int, int]]] = {
    "pytorch": ("pytorch", (2, 14), (99, 0)),
    "pytorch-2.13": ("pytorch", (2, 7), (2, 13)),
    "pytorch-2.6": ("pytorch", (0, 0), (2, 6)),
    "jax": ("jax", (0, 0), (99, 0)),
}


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one framework computed: derivatives at each kink and the max-pool tie rule."""

    framework: Framework
    version: str
    derivatives: tuple[tuple[str, Fraction, Fraction], ...]  # (activation key, kink, value)
    tie: str  # first | last | split | other:[...]
    maximum_tie: Fraction  # the share of maximum(x, y) at x == y passed to x

    def value(self, key: str, kink: Fraction) -> Fraction:
        """The measured derivative of activation ``key`` at ``kink``."""
        for k, c, v in self.derivatives:
            if k == key and c == kink:
                return v
        raise KeyError((key, kink))


def _torch_fns(torch: Any) -> dict[str, Callable[[Any], Any]]:
    F = torch.nn.functional
    return {
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
        "relu6": F.relu6,
        "hardtanh": F.hardtanh,
        "hardsigmoid": F.hardsigmoid,
        "hardswish": F.hardswish,
        "abs": torch.abs,
        "clip": lambda t: torch.clamp(t, -1.0, 1.0),
    }


def _jax_fns(jax: Any) -> dict[str, Callable[[Any], Any]]:
    jnp = jax.numpy
    return {
        "relu": jax.nn.relu,
        "leaky_relu": lambda t: jax.nn.leaky_relu(t, 0.01),
        "relu6": jax.nn.relu6,
        "hardtanh": jax.nn.hard_tanh,
        "hardsigmoid": jax.nn.hard_sigmoid,
        "hardswish": jax.nn.hard_swish,
        "abs": jnp.abs,
        "clip": lambda t: jnp.clip(t, -1.0, 1.0),
    }


def _tie_name(grad: list[float]) -> str:
    # window [0, 1, 0, 1] (row-major 2x2): the maximum 1 is at positions 1 and 3
    if grad == [0.0, 1.0, 0.0, 0.0]:
        return "first"
    if grad == [0.0, 0.0, 0.0, 1.0]:
        return "last"
    if grad == [0.0, 0.5, 0.0, 0.5]:
        return "split"
    return f"other:{grad}"


def measure(framework: Framework) -> Measurement:
    """Measure the installed framework (ImportError when it is not installed)."""
    if framework == "pytorch":
        return _measure_torch()
    if framework == "jax":
        return _measure_jax()
    raise InvalidArgument(f"expected a framework ({', '.join(FRAMEWORKS)}), got {framework!r}")


def _measure_torch() -> Measurement:
    import torch

    fns = _torch_fns(torch)
    out = []
    for key, act in ACTIVATIONS:
        for c in act.kinks:
            t = torch.tensor([float(c)], dtype=torch.float32, requires_grad=True)
            fns[key](t).sum().backward()
            assert t.grad is not None
            out.append((key, c, Fraction(float(t.grad.item()))))
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]], dtype=torch.float32, requires_grad=True)
    torch.nn.functional.max_pool2d(x, 2).sum().backward()
    assert x.grad is not None
    tie = _tie_name([float(v) for v in x.grad.flatten().tolist()])
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    torch.maximum(a, b).backward()
    assert a.grad is not None
    return Measurement(
        "pytorch", str(torch.__version__), tuple(out), tie, Fraction(float(a.grad.item()))
    )


def _measure_jax() -> Measurement:
    import jax

    jnp = jax.numpy
    fns = _jax_fns(jax)
    out = []
    for key, act in ACTIVATIONS:
        for c in act.kinks:
            g = jax.grad(lambda v, f=fns[key]: jnp.sum(f(v)))(jnp.array([float(c)], jnp.float32))
            out.append((key, c, Fraction(float(np.asarray(g)[0]))))
    x = jnp.array([[[[0.0, 1.0], [0.0, 1.0]]]], jnp.float32)
    pool = _jax_maxpool(jax, (2, 2), (2, 2), (0, 0, 0, 0))
    gx = jax.grad(lambda v: jnp.sum(pool(v)))(x)
    tie = _tie_name([float(v) for v in np.asarray(gx).ravel()])
    ga = jax.grad(lambda a: jnp.maximum(a, jnp.float32(1.0)))(jnp.float32(1.0))
    return Measurement("jax", str(jax.__version__), tuple(out), tie, Fraction(float(ga)))


def _jax_maxpool(jax: Any, kernel: Any, strides: Any, pads: Any) -> Callable[[Any], Any]:
    """Max-pool as flax.linen.max_pool does it: ``lax.reduce_window`` with ``lax.max``."""
    jnp = jax.numpy
    pt, pl, pb, pr = pads

    def pool(v: Any) -> Any:
        return jax.lax.reduce_window(
            v,
            -jnp.inf,
            jax.lax.max,
            (1, 1) + tuple(kernel),
            (1, 1) + tuple(strides),
            ((0, 0), (0, 0), (pt, pb), (pl, pr)),
        )

    return pool


def applies(preset: str, m: Measurement) -> bool:
    """Whether a framework preset describes the measured framework version."""
    fw, lo, hi = PRESET_VERSIONS[preset]
    if fw != m.framework:
        return False
    parts = m.version.split("+")[0].split(".")
    ver = (int(parts[0]), int(parts[1])) if len(parts) > 1 else (int(parts[0]), 0)
    return lo <= ver <= hi


def mismatches(preset: str, m: Measurement) -> list[str]:
    """Every difference between a preset and a measurement (empty when they agree)."""
    p = PRESETS[preset]
    out = []
    for key, c, v in m.derivatives:
        act = dict(ACTIVATIONS)[key]
        want = Fraction(BINARY32.round_nearest_even(p.proxy(act, c)) or 0)
        if want != v:
            out.append(
                f"{preset}: {act.describe()} at {format_exact(c)}: preset {format_exact(want)}, "
                f"{m.framework} {m.version} computes {format_exact(v)}"
            )
    if p.tie != m.tie:
        out.append(f"{preset}: max-pool tie rule {p.tie}, {m.framework} {m.version}: {m.tie}")
    return out


def _show(v: Fraction) -> str:
    """A binary32 value as the simplest rational that rounds to it (e.g. 1/100)."""
    for den in range(1, 1001):
        q = Fraction(round(v * den), den)
        if BINARY32.round_nearest_even(q) == v:
            return format_exact(q)
    return format_exact(v)


def _side(act: Activation, c: Fraction, v: Fraction) -> str:
    lo = Fraction(BINARY32.round_nearest_even(act.d_minus(c)) or 0)
    hi = Fraction(BINARY32.round_nearest_even(act.d_plus(c)) or 0)
    if v == lo and v == hi:
        return ""
    if v == lo:
        return " (D-)"
    if v == hi:
        return " (D+)"
    return ""


def _paren(q: Fraction) -> str:
    text = format_exact(q)
    return f"({text})" if "/" in text else text


def proxy_table(measured: list[Measurement]) -> str:
    """The README proxy table (markdown) from measurements, TensorFlow from its preset."""
    names = {
        "relu": "relu (0)",
        "leaky_relu": "leaky_relu(1/100) (0)",
        "relu6": "relu6 (0, 6)",
        "hardtanh": "hardtanh (-1, 1)",
        "hardsigmoid": "hardsigmoid (-3, 3)",
        "hardswish": "hardswish (-3, 3)",
        "abs": "abs (0)",
        "clip": "clamp / clip (-1, 1)",
    }
    head = "| activation (kinks) | D- / D+ |"
    rule = "|---|---|"
    for m in measured:
        head += f" {m.framework} {m.version} (measured) |"
        rule += "---|"
    head += " tensorflow (preset, from sources) |"
    rule += "---|"
    rows = [head, rule]
    tf = PRESETS["tensorflow"]
    for key, act in ACTIVATIONS:
        sides = ", ".join(f"{_paren(act.d_minus(c))} / {_paren(act.d_plus(c))}" for c in act.kinks)
        row = f"| {names[key]} | {sides} |"
        for m in measured:
            row += (
                " "
                + ", ".join(
                    _show(m.value(key, c)) + _side(act, c, m.value(key, c)) for c in act.kinks
                )
                + " |"
            )
        try:
            row += " " + ", ".join(format_exact(tf.proxy(act, c)) for c in act.kinks) + " |"
        except InvalidArgument:
            row += " n/a |"
        rows.append(row)
    row = "| max-pool tie (2x2 window) | |"
    for m in measured:
        row += f" {m.tie} index |"
    rows.append(row + " first (CPU) |")
    row = "| maximum(x, y) at x = y: share to x | |"
    for m in measured:
        row += f" {_show(m.maximum_tie)} |"
    rows.append(row + " 1 |")
    return "\n".join(rows)


def measure_installed() -> list[Measurement]:
    """Measurements of every installed framework (the others are left out)."""
    out = []
    for fw in FRAMEWORKS:
        try:
            out.append(measure(fw))
        except ImportError:
            continue
    return out


# ---------------------------------------------------------------------------
# networks evaluated by the frameworks (binary32, objective: sum of the output)


def framework_gradient(
    net: Network,
    framework: Framework,
    params: Mapping[str, np.ndarray],
    inputs: np.ndarray,
    *,
    layout: Literal["autograd", "contiguous"] = "autograd",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``sum(output)`` and the gradient of every trainable tensor, computed by the framework.

    ``params`` and ``inputs`` are binary32 arrays.  Ops outside the list of
    the module doc raise :class:`~formal.errors.MissingRule`.  PyTorch only:
    ``layout="contiguous"`` computes every matrix product of ``linear`` and
    ``matmul`` (forward and backward) with contiguous operands (a custom
    autograd function); plain autograd (``x @ W.T``) multiplies by transposed
    views, for which MKL's small-matrix kernels accumulate in shape-dependent
    orders (docs/floatad.md).
    """
    if framework == "pytorch":
        import torch

        tp = {
            k: torch.tensor(np.asarray(v, np.float32), requires_grad=k in net.trainable)
            for k, v in params.items()
        }
        xs = torch.tensor(np.asarray(inputs, np.float32))
        out = _interpret(net, _TorchOps(torch, layout), tp, xs).sum()
        out.backward()
        grads = {}
        for k in net.trainable:
            g = tp[k].grad
            if g is not None:
                grads[k] = np.asarray(g.numpy())
        return np.asarray(out.detach().numpy()), grads
    if framework == "jax":
        import jax

        jnp = jax.numpy
        jp = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in params.items()}
        xj = jnp.asarray(np.asarray(inputs, np.float32))
        ops = _JaxOps(jax)

        def f(train: dict[str, Any]) -> Any:
            return jnp.sum(_interpret(net, ops, {**jp, **train}, xj))

        train = {k: jp[k] for k in net.trainable}
        val, g = jax.value_and_grad(f)(train)
        return np.asarray(val), {k: np.asarray(v) for k, v in g.items()}
    raise InvalidArgument(f"expected a framework ({', '.join(FRAMEWORKS)}), got {framework!r}")


def _interpret(net: Network, ops: Any, params: Mapping[str, Any], x: Any) -> Any:
    vals: dict[str, Any] = {}
    for node in net.nodes:
        ins = [vals[i] for i in node.inputs]
        op = node.op
        if op == "input":
            v = x
        elif op == "param":
            v = params[node.attr("name")]
        elif op == "const":
            v = ops.const(node.attr("value").to_float())
        elif op == "linear":
            v = ops.matmul(ins[0], ops.T(ins[1]))
        elif op == "matmul":
            v = ops.matmul(ins[0], ins[1])
        elif op == "add":
            v = ins[0] + ins[1]
        elif op == "sub":
            v = ins[0] - ins[1]
        elif op == "neg":
            v = -ins[0]
        elif op == "scale":
            v = ins[0] * ops.const(node.attr("value").to_float())
        elif op in ("view", "reshape"):
            lead = (
                (ins[0].shape[0],) if len(ins[0].shape) > len(node.shape) or op == "reshape" else ()
            )
            v = ins[0].reshape(lead + tuple(node.shape))
        elif op == "act":
            v = ops.act(node.attr("activation"), ins[0])
        elif op == "conv2d":
            v = ops.conv(node, ins[0], ins[1])
        elif op == "maxpool2d":
            v = ops.maxpool(node, ins[0])
        elif op == "avgpool2d":
            v = ops.avgpool(node, ins[0])
        else:
            raise MissingRule(f"op {op!r} (node {node.name!r}) has no framework rule")
        vals[node.name] = v
    return vals[net.output]


def _contiguous_matmul(torch: Any) -> Any:
    """``a @ b`` whose forward and backward products all have contiguous operands."""

    class ContiguousMatmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: Any, b: Any) -> Any:
            a, b = a.contiguous(), b.contiguous()
            ctx.save_for_backward(a, b)
            return a @ b

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            a, b = ctx.saved_tensors
            g = g.contiguous()
            return g @ b.t().contiguous(), a.t().contiguous() @ g

    return ContiguousMatmul.apply


class _TorchOps:
    def __init__(self, torch: Any, layout: str = "autograd") -> None:
        self.torch = torch
        self.fns = _torch_fns(torch)
        self.mm = _contiguous_matmul(torch) if layout == "contiguous" else None

    def const(self, a: np.ndarray) -> Any:
        return self.torch.tensor(np.asarray(a, np.float32))

    def T(self, w: Any) -> Any:
        return w.T

    def matmul(self, a: Any, b: Any) -> Any:
        return a @ b if self.mm is None else self.mm(a, b)

    def act(self, act: Activation, x: Any) -> Any:
        key = act.name
        if key in ("hardtanh", "clip"):
            lo, hi = (float(c) for c in act.kinks)
            F = self.torch.nn.functional
            return F.hardtanh(x, lo, hi) if key == "hardtanh" else self.torch.clamp(x, lo, hi)
        if key == "leaky_relu":
            return self.torch.nn.functional.leaky_relu(x, float(dict(act.params)["slope"]))
        if key not in self.fns:
            raise MissingRule(f"activation {act.name} has no PyTorch rule here")
        return self.fns[key](x)

    def conv(self, node: Any, x: Any, w: Any) -> Any:
        pt, pl, pb, pr = node.attr("pads")
        F = self.torch.nn.functional
        x = F.pad(x, (pl, pr, pt, pb))
        return F.conv2d(
            x,
            w,
            stride=tuple(node.attr("strides")),
            dilation=tuple(node.attr("dilations", (1, 1))),
            groups=int(node.attr("groups", 1)),
        )

    def maxpool(self, node: Any, x: Any) -> Any:
        pt, pl, pb, pr = node.attr("pads")
        F = self.torch.nn.functional
        x = F.pad(x, (pl, pr, pt, pb), value=float("-inf"))
        return F.max_pool2d(
            x,
            tuple(node.attr("kernel")),
            tuple(node.attr("strides")),
            dilation=tuple(node.attr("dilations", (1, 1))),
            ceil_mode=bool(node.attr("ceil_mode", False)),
        )

    def avgpool(self, node: Any, x: Any) -> Any:
        if tuple(node.attr("pads")) != (0, 0, 0, 0) or node.attr("ceil_mode", False):
            raise MissingRule("avgpool2d with padding or ceil_mode has no PyTorch rule here")
        return self.torch.nn.functional.avg_pool2d(
            x, tuple(node.attr("kernel")), tuple(node.attr("strides"))
        )


class _JaxOps:
    def __init__(self, jax: Any) -> None:
        self.jax = jax
        self.jnp = jax.numpy
        self.fns = _jax_fns(jax)

    def const(self, a: np.ndarray) -> Any:
        return self.jnp.asarray(np.asarray(a, np.float32))

    def T(self, w: Any) -> Any:
        return w.T

    def matmul(self, a: Any, b: Any) -> Any:
        return self.jnp.matmul(a, b)

    def act(self, act: Activation, x: Any) -> Any:
        key = act.name
        if key in ("hardtanh", "clip") and tuple(act.kinks) != (-1, 1):
            raise MissingRule(f"{act.describe()} has no JAX rule here")
        if key == "leaky_relu":
            return self.jax.nn.leaky_relu(x, float(dict(act.params)["slope"]))
        if key not in self.fns:
            raise MissingRule(f"activation {act.name} has no JAX rule here")
        return self.fns[key](x)

    def conv(self, node: Any, x: Any, w: Any) -> Any:
        pt, pl, pb, pr = node.attr("pads")
        return self.jax.lax.conv_general_dilated(
            x,
            w,
            tuple(node.attr("strides")),
            ((pt, pb), (pl, pr)),
            rhs_dilation=tuple(node.attr("dilations", (1, 1))),
            feature_group_count=int(node.attr("groups", 1)),
        )

    def maxpool(self, node: Any, x: Any) -> Any:
        if tuple(node.attr("dilations", (1, 1))) != (1, 1) or node.attr("ceil_mode", False):
            raise MissingRule("maxpool2d with dilation or ceil_mode has no JAX rule here")
        pool = _jax_maxpool(self.jax, node.attr("kernel"), node.attr("strides"), node.attr("pads"))
        return pool(x)

    def avgpool(self, node: Any, x: Any) -> Any:
        if tuple(node.attr("pads")) != (0, 0, 0, 0) or node.attr("ceil_mode", False):
            raise MissingRule("avgpool2d with padding or ceil_mode has no JAX rule here")
        k, s = tuple(node.attr("kernel")), tuple(node.attr("strides"))
        tot = self.jax.lax.reduce_window(x, 0.0, self.jax.lax.add, (1, 1) + k, (1, 1) + s, "VALID")
        div = float(avg_divisors(node, tuple(x.shape[1:]))[0])
        return tot / self.jnp.float32(div)


def main(argv: list[str] | None = None) -> int:
    """``python -m formal.floatad.frameworks [--table | --check]``."""
    parser = argparse.ArgumentParser(prog="python -m formal.floatad.frameworks")
    parser.add_argument("--table", action="store_true", help="print the measured proxy table")
    parser.add_argument("--check", action="store_true", help="compare presets with measurements")
    args = parser.parse_args(argv)
    measured = measure_installed()
    if not measured:
        print("error: neither torch nor jax is installed", file=sys.stderr)
        return 2
    bad = []
    for m in measured:
        for preset in PRESET_VERSIONS:
            if applies(preset, m):
                bad.extend(mismatches(preset, m))
    if args.table or not args.check:
        print(proxy_table(measured))
    if args.check:
        for m in measured:
            checked = [p for p in PRESET_VERSIONS if applies(p, m)]
            print(f"{m.framework} {m.version}: presets checked: {', '.join(checked) or 'none'}")
        for line in bad:
            print("mismatch: " + line)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "ACTIVATIONS",
    "FRAMEWORKS",
    "Framework",
    "Measurement",
    "PRESET_VERSIONS",
    "applies",
    "framework_gradient",
    "main",
    "measure",
    "measure_installed",
    "mismatches",
    "proxy_table",
]
