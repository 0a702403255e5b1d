"""Bench rows of the group "models": exact verdict time vs a numpy float64 forward+backward.

Both rows read the corpus shipped in ``tests/data/vnncomp2021`` (VNN-COMP 2021) and
skip with a reason when it is absent.  The verdict is timed on a loaded
network (best of several runs; the first, cold run is reported too); the
baseline is a plain numpy float64 forward pass plus a backward pass for the
gradient of the summed outputs with respect to every parameter, on the same
weights and input, measured in the same process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from formal.bench.core import numpy_pass, timed_verdict
from formal.bench.runner import bench_row
from formal.io.onnx import load

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "vnncomp2021"


def _missing(*rels: str) -> str | None:
    for rel in rels:
        if not (CORPUS / rel).is_file():
            return f"corpus file {rel} not found under {CORPUS.resolve()}"
    return None


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {
        t.name: numpy_helper.to_array(t).astype(np.float64)
        for t in onnx.load(str(path)).graph.initializer
    }


def _load(rel: str, spec: str) -> tuple[Any, float, dict[str, np.ndarray]]:
    """Load a corpus model with its spec: the network, load seconds, float64 initializers."""

    t0 = time.perf_counter()
    net = load(CORPUS / rel, spec=CORPUS / spec)
    load_s = time.perf_counter() - t0
    return net, load_s, _initializers(CORPUS / rel)


@bench_row("mnist-net_256x2-box-center", "models")
def bench_mnist() -> dict[str, Any]:
    """mnistfc/mnist-net_256x2.onnx (269,322 binary32 parameters) at the center of prop_0's box."""
    rel, spec = "mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_0_0.03.vnnlib"
    why = _missing(rel, spec)
    if why:
        return {"skipped": why}
    net, load_s, p = _load(rel, spec)
    weights = [p[f"layers.{i}.weight"] for i in (0, 2, 4)]
    biases = [p[f"layers.{i}.bias"] for i in (0, 2, 4)]
    x = net.inputs.to_float().reshape(1, -1)
    out = timed_verdict(net, lambda: numpy_pass(weights, biases, x), 10)
    out["detail"] = f"784-256-256-10 ReLU, VNN-COMP 2021 mnistfc; load {load_s:.3f}s; " + out.pop(
        "verdict"
    )
    return out


def convnet_pass(
    w: np.ndarray, b: np.ndarray, wo: np.ndarray, bo: np.ndarray, x: np.ndarray
) -> Any:
    """Float64 conv 2x2 (32 ch) + ReLU + max-pool 4x4/4 + dense 1152->10, forward and backward."""
    img = x.reshape(28, 28)
    patches = np.lib.stride_tricks.sliding_window_view(img, (2, 2)).reshape(729, 4)
    pre = patches @ w.reshape(32, 4).T + b  # (729, 32)
    act = np.maximum(pre, 0).T.reshape(32, 27, 27)
    win = act[:, :24, :24].reshape(32, 6, 4, 6, 4).transpose(0, 1, 3, 2, 4).reshape(32, 6, 6, 16)
    arg = win.argmax(axis=-1)
    pooled = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0].reshape(-1)
    y = wo @ pooled + bo
    g = np.ones_like(y)
    g_wo = np.outer(g, pooled)
    g_pool = (wo.T @ g).reshape(32, 6, 6)
    g_win = np.zeros((32, 6, 6, 16))
    np.put_along_axis(g_win, arg[..., None], g_pool[..., None], axis=-1)
    g_act = np.zeros((32, 27, 27))
    g_act[:, :24, :24] = g_win.reshape(32, 6, 6, 4, 4).transpose(0, 1, 3, 2, 4).reshape(32, 24, 24)
    g_pre = g_act.reshape(32, 729).T * (pre > 0)
    return g_pre.T @ patches, g_pre.sum(axis=0), g_wo, g


@bench_row("Convnet_maxpool-box-center", "models")
def bench_convnet() -> dict[str, Any]:
    """verivital/Convnet_maxpool.onnx (conv + ReLU + max-pool, shared biases), prop_0 box center."""
    rel, spec = "verivital/Convnet_maxpool.onnx", "verivital/specs/prop_0_0.004.vnnlib"
    why = _missing(rel, spec)
    if why:
        return {"skipped": why}
    net, load_s, p = _load(rel, spec)
    args = (
        p["conv1.0.weight"],
        p["conv1.0.bias"],
        p["out.weight"],
        p["out.bias"],
        net.inputs.to_float(),
    )
    out = timed_verdict(net, lambda: convnet_pass(*args), 10)
    out["detail"] = (
        f"conv 2x2x32 + ReLU + max-pool 4x4, VNN-COMP 2021 verivital; load {load_s:.3f}s; "
        + out.pop("verdict")
    )
    return out


__all__ = ["bench_mnist", "bench_convnet", "convnet_pass"]
