"""Bench rows of the group "scale": exact verdicts at training scale (minibatches, convolutions,
cold starts).

Every row reports the cold verdict time (the first ``check`` on a freshly
built network: no cached flint matrices, parameterization or float pass), the
warm time (best of several runs on the same network), the process's peak
resident set size (``resource.getrusage``: run one row per process with
``formal bench --only <row>`` for a per-row figure) and a baseline measured in
the same process: a single-threaded numpy float64 forward + backward pass of
the same network on the same minibatch.  BLAS threads are pinned to one (for
the baseline and for the verdict's own float64 products) with threadpoolctl
when it is installed; otherwise the row says which thread environment
variables were set (then run ``OPENBLAS_NUM_THREADS=1 formal bench``).

The conv rows read tests/data/vnncomp2021 (Convnet_maxpool, resnet_2b and
oval21's cifar_base_kw).  Kinks are forced there by moving single input
pixels so that chosen first-layer units sit exactly on the ReLU kink (inputs
are exact rationals, parameters stay machine numbers).  Their baseline is a
plain numpy im2col forward + backward of the same network
(:mod:`formal.bench.npnet`; Convnet_maxpool keeps its hand-written pass).

*Cold* means: the first ``check`` of a network object built (or loaded)
before the clock starts, with an empty cache -- nothing derived from its
parameters yet (parameterization, float values, digit splits, signatures).
What the loader itself produced (the exact parameters, and their int64
numerators when they fit) is not timed, as the loading is not.  A row runs
``COLD_RUNS`` pairs: the baseline (best of several runs), then the first
check of a network built anew; each pair's ratio compares two times taken
in the same minute of a shared machine, and the row reports the pair with
the median ratio.  Process-wide tables that depend only on shapes (im2col
index maps) may be reused between the runs, as they are between rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from formal.bench.core import forced_kink_mlp, mnist_mlp, verdict_text
from formal.bench.core import numpy_pass as dense_pass
from formal.bench.npnet import numpy_pass
from formal.bench.runner import bench_row, best_of
from formal.core.builders import dense_network
from formal.core.network import Network
from formal.core.qarray import QArray
from formal.core.rules import RULES
from formal.engine.verdict import check

COLD_RUNS = 3  # (baseline, cold check) pairs per row; the pair with the median ratio is reported
CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "vnncomp2021"


@contextlib.contextmanager
def single_thread_blas() -> Iterator[str]:
    """Pin BLAS to one thread for the baseline (threadpoolctl), saying how."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        env = ", ".join(f"{n}={os.environ.get(n, 'unset')}" for n in names)
        yield f"BLAS threads not pinned by threadpoolctl (not installed); {env}"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield "BLAS pinned to 1 thread for both (threadpoolctl)"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def measure(
    build: Callable[[], Network], baseline: Callable[[], Any], target: float, warm: bool = True
) -> dict[str, Any]:
    """Cold and warm verdict times of ``check(build())`` against ``baseline()``."""
    with single_thread_blas() as threads:
        pairs = []
        for _ in range(COLD_RUNS):  # a baseline, then a check of a network built anew
            base = best_of(baseline)
            net = build()
            t0 = time.perf_counter()
            v = check(net, "pytorch")
            cold = time.perf_counter() - t0
            pairs.append((cold / base, cold, base))
        _, cold, base = sorted(pairs)[len(pairs) // 2]  # the median pair
        hot = best_of(lambda: check(net, "pytorch"), repeat=3, min_time=0.02) if warm else 0.0
    out: dict[str, Any] = {
        "seconds": cold,
        "cold_seconds": cold,
        "baseline_seconds": base,
        "ratio": cold / base,
        "target": f"cold ratio <= {target}",
        "ok": cold / base <= target,
    }
    if warm:
        out["warm_seconds"] = hot
        out["warm_ratio"] = hot / base
    out["peak_rss_mb"] = peak_rss_mb()
    out["detail"] = (
        f"{verdict_text(v)}; cold {cold:.3f}s"
        + (f", warm {out['warm_seconds']:.4f}s (ratio {out['warm_ratio']:.1f})" if warm else "")
        + f"; peak RSS {out['peak_rss_mb']:.0f} MB (process); baseline: numpy float64 fwd+bwd, "
        + threads
    )
    return out


# -- dense rows -------------------------------------------------------------------


def batch_mlp(batch: int, seed: int = 1):
    """The 10-kink MLP of bench/core.py with ``batch`` samples (kinks in sample 0)."""
    weights, biases, x, _, _ = forced_kink_mlp(seed)
    rng = np.random.default_rng(seed + 7)
    rest = (np.floor(rng.random((batch - 1, x.shape[1])) * 16) / 16).astype(np.float32)
    return weights, biases, np.concatenate([x, rest]) if batch > 1 else x


def _dense_row(batch: int, objective: Any, target: float, kinks: bool = True) -> dict[str, Any]:
    if kinks:
        weights, biases, x = batch_mlp(batch)
    else:
        weights, biases, x = mnist_mlp(0)
    w64 = [w.astype(np.float64) for w in weights]
    b64 = [b.astype(np.float64) for b in biases]
    x64 = x.astype(np.float64)

    def build() -> Network:
        return dense_network(
            weights, biases, x, ["relu", "relu", "identity"], objective=objective, source="bench"
        )

    out = measure(build, lambda: dense_pass(w64, b64, x64), target)
    obj = "vector output" if objective is None else f"objective {objective}"
    out["detail"] = f"784-256-256-10, B = {batch}, {obj}; " + out["detail"]
    return out


@bench_row("scale-mlp-B1-10-kinks", "scale")
def bench_b1() -> dict[str, Any]:
    """784-256-256-10, one sample, 10 forced kinks: cold ratio <= 20."""
    return _dense_row(1, None, 20)


@bench_row("scale-mlp-B1-no-kinks-warm", "scale")
def bench_b1_warm() -> dict[str, Any]:
    """784-256-256-10, one sample, no kinks: the warm ratio stays <= 2."""
    out = _dense_row(1, None, 20, kinks=False)
    out["target"] = "warm ratio <= 2"
    out["ok"] = out["warm_ratio"] <= 2
    return out


@bench_row("scale-mlp-B8-vector-10-kinks", "scale")
def bench_b8_vector() -> dict[str, Any]:
    """784-256-256-10, B = 8, vector output (80 outputs), 10 forced kinks."""
    return _dense_row(8, None, 30)


@bench_row("scale-mlp-B32-10-kinks", "scale")
def bench_b32() -> dict[str, Any]:
    """784-256-256-10, B = 32, objective sum, 10 forced kinks: cold ratio <= 30."""
    return _dense_row(32, "sum", 30)


@bench_row("scale-mlp-B128-10-kinks", "scale")
def bench_b128() -> dict[str, Any]:
    """784-256-256-10, B = 128, objective sum, 10 forced kinks: completes under 1 GB."""
    out = _dense_row(128, "sum", 30)
    out["target"] = "peak RSS < 1024 MB"
    out["ok"] = out["peak_rss_mb"] < 1024
    return out


# -- convolutional rows -------------------------------------------------------------


def _first_pre_activation(net: Network) -> tuple[str, dict[str, QArray]]:
    """The first activation's input node and the exact values of every node up to it."""
    act = next(n for n in net.nodes if n.op == "act")
    pre = act.inputs[0]
    env: dict[str, QArray] = {}
    for node in net.nodes:
        if node.op == "act":
            break
        fn = RULES["exact"][node.op]
        env[node.name] = fn(node, [env[i] for i in node.inputs], net)
    return pre, env


def force_first_layer_kinks(net: Network, count: int) -> Network:
    """Move ``count`` input pixels so that as many first-layer units sit exactly on 0.

    The first pre-activation is affine in the input; its slope along one
    pixel is found exactly by moving that pixel by 1.  Chosen pixels are far
    apart so that no chosen unit reads two of them.
    """
    x = net.inputs.to_fractions().reshape(-1)
    n_in = x.size
    chosen: list[int] = []
    for p in np.linspace(n_in // 7, n_in - n_in // 7, count).astype(int):
        cur = dataclasses.replace(
            net, inputs=QArray.from_fractions(x.reshape(net.inputs.shape)), cache={}
        )
        pre, env = _first_pre_activation(cur)
        y0 = env[pre].to_fractions().reshape(-1)
        moved = x.copy()
        moved[p] += 1
        net1 = dataclasses.replace(
            net, inputs=QArray.from_fractions(moved.reshape(net.inputs.shape)), cache={}
        )
        _, env1 = _first_pre_activation(net1)
        slope = env1[pre].to_fractions().reshape(-1) - y0
        cand = [u for u in np.nonzero(slope)[0] if y0[u] != 0 and u not in chosen]
        u = max(cand, key=lambda u: abs(slope[u]))
        chosen.append(int(u))
        x[p] -= Fraction(y0[u]) / Fraction(slope[u])
    return dataclasses.replace(
        net, inputs=QArray.from_fractions(x.reshape(net.inputs.shape)), cache={}
    )


def initializers(path: Path) -> dict[str, np.ndarray]:
    """The float64 initializers of an ONNX model, by name."""
    import onnx
    from onnx import numpy_helper

    return {
        t.name: numpy_helper.to_array(t).astype(np.float64)
        for t in onnx.load(str(path)).graph.initializer
    }


def _corpus_net(rel: str, spec: str | None, seed: int) -> Network | str:
    from formal.io.onnx import load

    if not (CORPUS / rel).is_file():
        return f"corpus file {rel} not found under {CORPUS}"
    if spec is not None:
        return load(CORPUS / rel, spec=CORPUS / spec)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the fixed image of tests/test_corpus.py
        image = Path(tmp) / "image.npy"
        np.save(image, np.random.default_rng(seed).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32))
        return load(CORPUS / rel, input=str(image))


@bench_row("scale-Convnet_maxpool-2-kinks", "scale")
def bench_convnet_kinks() -> dict[str, Any]:
    """verivital/Convnet_maxpool with 2 forced first-layer kinks: cold ratio <= 30."""
    from formal.bench.models import convnet_pass

    got = _corpus_net("verivital/Convnet_maxpool.onnx", "verivital/specs/prop_0_0.004.vnnlib", 0)
    if isinstance(got, str):
        return {"skipped": got}
    net = force_first_layer_kinks(got, 2)
    p = initializers(CORPUS / "verivital/Convnet_maxpool.onnx")
    args = (p["conv1.0.weight"], p["conv1.0.bias"], p["out.weight"], p["out.bias"])
    xf = net.inputs.to_float()
    out = measure(lambda: dataclasses.replace(net, cache={}), lambda: convnet_pass(*args, xf), 30)
    out["detail"] = "conv 2x2x32 + ReLU + max-pool 4x4 + dense, im2col baseline; " + out["detail"]
    return out


@bench_row("scale-resnet_2b-6-kinks", "scale")
def bench_resnet_kinks() -> dict[str, Any]:
    """cifar10_resnet/resnet_2b with 6 forced first-layer kinks (112,006 parameters)."""
    got = _corpus_net("cifar10_resnet/onnx/resnet_2b.onnx", None, 2021)
    if isinstance(got, str):
        return {"skipped": got}
    net = force_first_layer_kinks(got, 6)
    out = measure(lambda: dataclasses.replace(net, cache={}), numpy_pass(net), 30)
    out["detail"] = (
        "resnet_2b (5 conv incl. shortcut, 2 dense), im2col numpy baseline; " + out["detail"]
    )
    return out


@bench_row("scale-cifar_base_kw-3-kinks", "scale")
def bench_cifar_base_kw_kinks() -> dict[str, Any]:
    """oval21/cifar_base_kw (conv, conv, dense, dense) with 3 forced first-layer kinks."""
    got = _corpus_net(
        "oval21/nets/cifar_base_kw.onnx",
        "oval21/vnnlib/cifar_base_kw-img4549-eps0.00392156862745098.vnnlib",
        0,
    )
    if isinstance(got, str):
        return {"skipped": got}
    net = force_first_layer_kinks(got, 3)
    out = measure(lambda: dataclasses.replace(net, cache={}), numpy_pass(net), 30)
    out["detail"] = (
        "cifar_base_kw (2 conv 4x4/2, 2 dense; 105,966 parameters), im2col numpy baseline; "
        + out["detail"]
    )
    return out


__all__ = [
    "batch_mlp",
    "force_first_layer_kinks",
    "measure",
    "peak_rss_mb",
    "single_thread_blas",
]
