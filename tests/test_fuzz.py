"""Issue 11: fuzzing every reader with mutated valid inputs (bytes, structure and numbers).

In-process, each mutated formal-net JSON document, ONNX model, VNN-LIB file,
NNet file and .npz archive goes through its loader: it must give a Network
(or Spec) or raise a :class:`~formal.errors.FormalError`, nothing else.  A
smaller sample goes through ``formal check`` in a subprocess under memory and
CPU limits (``resource``): exit 0, 1 or 2, and on 2 exactly one ``error:``
line and no traceback.  Budget: about a minute in all (``max_examples``).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formal.errors import FormalError
from formal.io import formalnet, nnet, vnnlib
from formal.io import onnx as onnx_io

NET: dict[str, Any] = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "inputs": [[1, "-0.5"]],
    "layers": [
        {"type": "dense", "units": 2, "bias": True, "activation": "relu"},
        {
            "type": "dense",
            "units": 1,
            "bias": False,
            "activation": {"name": "leaky_relu", "slope": "1/8"},
        },
    ],
    "params": {
        "0.weight": [[1, 2], ["0.75", "0x1p-1"]],
        "0.bias": ["0.25", 0],
        "1.weight": [[1, -2]],
    },
    "trainable": ["0.weight", "0.bias", "1.weight"],
    "tied": [["0.weight[0,0]", "1.weight[0,0]"]],
    "objective": {"type": "sum"},
}
CONV_NET: dict[str, Any] = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "input_shape": [1, 3, 3],
    "inputs": [[1, 0, -1, 2, 0, 1, 0, 0, 1]],
    "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 2, "stride": 1, "bias": False},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 1, "tie": "first"},
        {"type": "flatten"},
    ],
    "params": {"0.weight": [[[[1, -1], [0, 1]]]]},
}
VNNLIB = (
    "; a box\n(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
    "(assert (<= X_0 0.5))\n(assert (>= X_0 -0.25))\n(assert (<= X_1 1e-3))\n"
    "(assert (>= X_1 (- 1)))\n(assert (or (and (<= Y_0 0)) (and (>= Y_0 1))))\n"
)
NNET = (
    "// net\n2,2,1,2,\n2,2,1,\n0,\n-9,-9,\n9,9,\n0,0,0,\n1,1,1,\n"
    "1.0,0.5,\n-1.0,2,\n0.5,\n0.0,\n2.0,-1.0,\n0.25,\n"
)

HOSTILE_NUMBERS = st.sampled_from(
    [
        "nan",
        "inf",
        "-0",
        "1/0",
        "0x1p99999999",
        "1e400",
        "1e-99999999",
        "9" * 5000,
        "1." + "3" * 12_000,
        "0x",
        "--1",
        "1/3",
        "",
        " ",
        "1e",
        "٣",
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | HOSTILE_NUMBERS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
SLOW = settings(
    max_examples=int(os.environ.get("FORMAL_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated_docs(draw: Any) -> Any:
    """A valid network with one to three fields replaced, deleted or given extra keys."""
    doc = copy.deepcopy(draw(st.sampled_from([NET, CONV_NET])))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "number", "delete", "extra"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "extra" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        elif action == "number":
            parent[path[-1]] = draw(HOSTILE_NUMBERS | st.integers(-(10**6), 10**6))
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return doc


def _mutate_bytes(data: bytes, draw: Any) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "duplicate"]))
    if not data:
        return data
    i = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:i]
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    j = draw(st.integers(i, min(len(data), i + 200)))
    return data[:j] + data[i:j] * draw(st.integers(1, 50)) + data[j:]


def _loads_or_formal_error(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except FormalError:
        pass


@SLOW
@given(doc=mutated_docs())
def test_fuzz_formalnet_structure(doc: Any) -> None:
    _loads_or_formal_error(formalnet.from_dict, doc, source="fuzz.json")


@SLOW
@given(data=st.data())
def test_fuzz_text_readers_bytes(tmp_path_factory: Any, data: Any) -> None:
    base, suffix, reader = data.draw(
        st.sampled_from(
            [
                (json.dumps(NET).encode(), ".json", formalnet.load),
                (VNNLIB.encode(), ".vnnlib", vnnlib.load),
                (NNET.encode(), ".nnet", nnet.load),
            ]
        )
    )
    mutated = base
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = _mutate_bytes(mutated, data.draw)
    path = tmp_path_factory.mktemp("fuzz") / f"f{suffix}"
    path.write_bytes(mutated)
    _loads_or_formal_error(reader, path)


def _onnx_model(
    alpha: float, strides: list[int], pads: list[int], kernel: int, w: np.ndarray
) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["x", "K"], ["c"], strides=strides, pads=pads),
        helper.make_node("LeakyRelu", ["c"], ["r"], alpha=alpha),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "W"], ["y"], alpha=alpha, transB=1),
    ]
    inits = [
        numpy_helper.from_array(np.ones((1, 1, kernel, kernel), np.float32), "K"),
        numpy_helper.from_array(w, "W"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


FLOATS = st.floats(width=32) | st.sampled_from([0.0, -0.0, 1e-45, 3.4e38])
SMALL_INTS = st.integers(-3, 5) | st.sampled_from([0, 10**6, 2**31 - 1, -(2**31)])


@SLOW
@given(
    alpha=FLOATS,
    strides=st.lists(SMALL_INTS, min_size=1, max_size=3),
    pads=st.lists(SMALL_INTS, min_size=1, max_size=5),
    kernel=st.integers(1, 5),
    cols=st.integers(1, 20),
    w=st.lists(FLOATS, min_size=1, max_size=4),
)
def test_fuzz_onnx_structure(
    alpha: float, strides: list[int], pads: list[int], kernel: int, cols: int, w: list[float]
) -> None:
    weights = np.resize(np.array(w, np.float32), (2, cols))
    model = _onnx_model(alpha, strides, pads, kernel, weights)
    _loads_or_formal_error(onnx_io.from_model, model, source="fuzz.onnx")


@SLOW
@given(data=st.data())
def test_fuzz_onnx_and_npz_bytes(tmp_path_factory: Any, data: Any) -> None:
    import io

    d = tmp_path_factory.mktemp("fuzzb")
    if data.draw(st.booleans()):
        model = _onnx_model(0.01, [1, 1], [0, 0, 0, 0], 2, np.ones((2, 9), np.float32))
        raw = model.SerializeToString()
        path = d / "m.onnx"
        path.write_bytes(_mutate_bytes(raw, data.draw))
        _loads_or_formal_error(onnx_io.load, path)
    else:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {
            "0.weight": np.ones((2, 2), np.float32),
            "0.bias": np.zeros(2, np.float32),
            "1.weight": np.ones((1, 2), np.float32),
        }
        np.savez(buf, **arrays)
        path = d / "p.npz"
        path.write_bytes(_mutate_bytes(buf.getvalue(), data.draw))
        doc = {k: v for k, v in NET.items() if k not in ("params", "tied")}
        _loads_or_formal_error(formalnet.from_dict, doc, source="n.json", params_file=path)


def _limits() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))


@settings(
    max_examples=int(os.environ.get("FORMAL_FUZZ_CLI_EXAMPLES", "24")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=mutated_docs(), command=st.sampled_from(["check", "search", "export-smt"]))
def test_fuzz_cli_in_subprocess(tmp_path_factory: Any, doc: Any, command: str) -> None:
    d: Path = tmp_path_factory.mktemp("cli")
    net = d / "net.json"
    net.write_text(json.dumps(doc))
    argv = {
        "check": ["check", str(net), "--timeout", "5"],
        "search": ["search", str(net), "--find", "kink", "--timeout", "5", "--stages", "given"],
        "export-smt": [
            "export-smt",
            str(net),
            "--query",
            "kink",
            "--timeout",
            "5",
            "-o",
            str(d / "q.smt2"),
        ],
    }[command]
    proc = subprocess.run(
        [sys.executable, "-c", "from formal.cli.main import run; run()", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limits,
    )
    assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if proc.returncode == 2:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []


pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    # preexec_fn forks; JAX (imported by other test modules) warns at fork time, which is
    # harmless here: the child only sets rlimits and then execs a fresh interpreter
    pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning"),
]
