"""Real frameworks, measured: presets against PyTorch and JAX, and float AD bit for bit.

JAX (the test extra) runs eagerly, ``jax_enable_x64`` off (all arrays are
binary32).  PyTorch is in the ``[torch]`` extra; without it those tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fwnets import conv_kinked, dense_kinked, every_layer_net

from formal.core.activations import parse_preset
from formal.floatad.acts import style_of
from formal.floatad.arith import arithmetic
from formal.floatad.frameworks import (
    PRESET_VERSIONS,
    Measurement,
    applies,
    framework_gradient,
    measure,
    mismatches,
    proxy_table,
)
from formal.floatad.passes import float_backward, float_forward, machine_params

TORCH_REASON = "PyTorch is not installed (pip install -e '.[torch]'; .ci/run installs it)"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def measured_jax() -> Measurement:
    """JAX's measured conventions."""
    pytest.importorskip("jax", reason="JAX is in the test extra")
    return measure("jax")


@pytest.fixture(scope="module")
def measured_torch() -> Measurement:
    """PyTorch's measured conventions."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    return measure("pytorch")


def _measurement(request: pytest.FixtureRequest, framework: str) -> Measurement:
    return request.getfixturevalue("measured_torch" if framework == "pytorch" else "measured_jax")


@pytest.mark.parametrize("preset", sorted(PRESET_VERSIONS))
def test_preset_equals_the_measured_framework(preset, request):
    framework, lo, hi = PRESET_VERSIONS[preset]
    m = _measurement(request, framework)
    if not applies(preset, m):
        pytest.skip(
            f"preset {preset} describes {framework} {lo[0]}.{lo[1]}..{hi[0]}.{hi[1]}; "
            f"installed: {m.version}"
        )
    assert mismatches(preset, m) == []


def test_mismatches_are_reported(measured_jax):
    # the PyTorch preset differs from JAX at hardtanh, leaky_relu, abs and clip: a test that
    # compares presets with measurements must see it
    bad = mismatches("pytorch", measured_jax)
    assert any("hardtanh" in line for line in bad)
    assert any("clip" in line for line in bad)
    assert any("abs" in line for line in bad)


def test_measured_jax_values(measured_jax):
    m = measured_jax
    assert m.value("hardtanh", -1) == 1 and m.value("hardtanh", 1) == 1
    assert m.value("clip", -1) == m.value("clip", 1) == 0.5
    assert m.value("abs", 0) == 1
    assert m.tie == "first"


def test_readme_table_is_the_measured_one(measured_jax, request):
    """The README's proxy table rows equal the table generated from measurement."""
    ms = [measured_jax]
    try:
        ms.insert(0, request.getfixturevalue("measured_torch"))
    except pytest.skip.Exception:
        pass
    table = proxy_table(ms)
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| activation (kinks) | D- / D+ | pytorch")
    block = readme[start:].split("\n\n")[0].splitlines()
    got = [re.sub(r"\| [^|]*\(measured\) ", "| ", row) for row in block]
    # compare the columns of the frameworks measured here (the README may list one more)
    want_rows = table.splitlines()
    assert len(got) == len(want_rows)
    for readme_row, row in zip(block[2:], want_rows[2:]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        have = [c.strip() for c in readme_row.strip("|").split("|")]
        if len(ms) == 2:
            assert cells == have
        else:  # torch absent: the README's jax and tensorflow columns still match
            assert cells[:2] == have[:2] and cells[2:] == have[3:]


# ---------------------------------------------------------------------------
# float AD bit for bit


def _formal(net, preset: str, order: str, fma: bool, conv: str, filt: str):
    ar = arithmetic("binary32", order, fma, conv, filt)
    pre = parse_preset(preset)
    ff = float_forward(net, ar, pre, style=style_of(pre))
    shape = (1, net.batch) + net.node(net.output).shape
    grads = float_backward(ff, np.ones(shape, dtype=np.float32))
    params = machine_params(net, ar)
    x = ar.from_exact(net.inputs.to_fractions())
    return ff, {k: v[0] for k, v in grads.items()}, params, x


CASES = [
    (act, kind, seed)
    for act in ("relu", "relu6", "hardtanh", "hardsigmoid")
    for kind in ("dense", "conv-b1", "conv-b2")
    for seed in ((0, 1) if kind == "dense" else (0,))
]


def _net(kind: str, act: str, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "dense":
        return dense_kinked(rng, [5, 7, 6, 3], 4, act)
    if kind == "conv-b1":
        return conv_kinked(rng, act, batch=1, size=3)
    return conv_kinked(rng, act, batch=2, size=4)


def _check(net, framework: str, order: str, fma: bool, layout: str = "autograd") -> None:
    torch_b1 = framework == "pytorch" and net.batch == 1
    conv = "chw" if torch_b1 else "hwc"
    filt = "per_sample" if framework == "pytorch" else "position_major"
    ff, grads, params, x = _formal(net, framework, order, fma, conv, filt)
    assert any(t.kind == "act" for t in ff.touches)  # a unit is exactly on a kink
    _, ref = framework_gradient(net, framework, params, x, layout=layout)  # type: ignore[arg-type]
    assert set(ref) == set(grads)
    for name in ref:
        diff = np.flatnonzero(ref[name].reshape(-1) != grads[name].reshape(-1))
        assert diff.size == 0, f"{name}: {diff.size} entries differ, first at {diff[0]}"


@pytest.mark.parametrize("act,kind,seed", CASES)
def test_float_ad_equals_jax_grad(act, kind, seed):
    pytest.importorskip("jax", reason="JAX is in the test extra")
    net = _net(kind, act, seed)
    _check(net, "jax", "blas", False)
    _check(net, "jax", "sequential", True)


@pytest.mark.parametrize("act,kind,seed", CASES)
def test_float_ad_equals_torch_autograd(act, kind, seed):
    pytest.importorskip("torch", reason=TORCH_REASON)
    net = _net(kind, act, seed)
    _check(net, "pytorch", "blas", False, layout="contiguous")
    _check(net, "pytorch", "sequential", True, layout="contiguous")


def test_the_kink_matters_for_the_comparison():
    """With another preset at the forced unit, formal's gradient differs from JAX's."""
    pytest.importorskip("jax", reason="JAX is in the test extra")
    net = _net("dense", "relu", 0)
    ar = arithmetic("binary32", "blas")
    pre = parse_preset("right")  # relu'(0) = 1 where JAX uses 0
    ff = float_forward(net, ar, pre)
    shape = (1, net.batch) + net.node(net.output).shape
    grads = float_backward(ff, np.ones(shape, dtype=np.float32))
    _, ref = framework_gradient(
        net, "jax", machine_params(net, ar), ar.from_exact(net.inputs.to_fractions())
    )
    assert any((ref[k] != grads[k][0]).any() for k in ref)


@pytest.mark.parametrize("framework", ["jax", "pytorch"])
@pytest.mark.parametrize("act", ["relu", "relu6", "hardtanh", "abs"])
def test_every_layer_with_exact_kinks_and_ties_equals_the_framework(framework, act):
    """conv (padding) -> act -> max-pool (overlapping) -> avg-pool -> flatten -> linear on
    small integers: no rounding anywhere, dozens of exact kinks and max-pool ties; the
    tie rule decides the gradient here (with ``tie=last`` it differs, checked for relu)."""
    pytest.importorskip("torch" if framework == "pytorch" else "jax", reason=TORCH_REASON)
    net = every_layer_net(act)
    ff, grads, params, x = _formal(net, framework, "sequential", False, "hwc", "position_major")
    assert sum(t.kind == "tie" for t in ff.touches) >= 5
    assert sum(t.kind == "act" for t in ff.touches) >= 5
    _, ref = framework_gradient(net, framework, params, x)  # type: ignore[arg-type]
    for name in ref:
        assert (ref[name] == grads[name]).all(), name
    if act == "relu":
        ar = arithmetic("binary32")
        other = float_forward(net, ar, parse_preset(f"{framework},tie=last"))
        g = float_backward(other, np.ones((1, net.batch, 2), dtype=np.float32))
        assert any((ref[k] != g[k][0]).any() for k in ref)
