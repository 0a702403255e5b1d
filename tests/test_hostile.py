"""Issue 11: each hostile input once seen to crash, hang or destroy, as a regression test.

Every case runs the CLI in-process (``main``) and asserts exit code 2 with
exactly one ``error:`` line naming what was expected, and no traceback; the
``-o`` cases also assert that the target is left as it was.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formal.cli.main import main
from formal.errors import InvalidArgument
from formal.io import limits
from formal.io.formalnet import from_dict
from formal.io.limits import read_number
from formal.io.vnnlib import parse as parse_vnnlib

E1: dict[str, Any] = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "inputs": [[1]],
    "layers": [
        {"type": "dense", "units": 1, "bias": False, "activation": "relu"},
        {"type": "dense", "units": 1, "bias": False, "activation": "relu"},
    ],
    "params": {"0.weight": [[0]], "1.weight": [[-1]]},
}
BOX = "(declare-const X_0 Real)(declare-const X_1 Real)" + "".join(
    f"(assert (<= X_{i} 1))(assert (>= X_{i} 0))" for i in (0, 1)
)


def _onnx(path: Path, nodes: list[Any], x_shape: list[int], inits: dict[str, np.ndarray]) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def _gemm(path: Path, **attrs: Any) -> str:
    from onnx import helper

    w = {"W": np.ones((2, 2), np.float32), "B": np.zeros(2, np.float32)}
    return _onnx(path, [helper.make_node("Gemm", ["x", "W", "B"], ["y"], **attrs)], [1, 2], w)


def _leaky(path: Path) -> str:
    from onnx import helper

    nodes = [
        helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
        helper.make_node("LeakyRelu", ["h"], ["y"], alpha=float("inf")),
    ]
    w = {"W": np.ones((2, 2), np.float32), "B": np.zeros(2, np.float32)}
    return _onnx(path, nodes, [1, 2], w)


def _conv(path: Path) -> str:
    from onnx import helper

    node = helper.make_node("Conv", ["x", "K"], ["y"], strides=[0, 0])
    return _onnx(path, [node], [1, 1, 3, 3], {"K": np.ones((1, 1, 2, 2), np.float32)})


def _write(path: Path, data: str | bytes) -> str:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return str(path)


def _json(path: Path, **changes: Any) -> str:
    return _write(path, json.dumps({**E1, **changes}, ensure_ascii=False))


def _npz(path: Path, **arrays: Any) -> str:
    np.savez(path, **arrays)
    return str(path)


def _noparams(t: Path) -> str:
    return _write(t / "n.json", json.dumps({k: v for k, v in E1.items() if k != "params"}))


def _ok_onnx(t: Path) -> str:
    return _gemm(t / "ok.onnx")


def _truncated_npz(t: Path) -> str:
    full = _npz(t / "full.npz", **{"0.weight": np.zeros((1, 1), np.float32)})
    data = Path(full).read_bytes()
    return _write(t / "t.npz", data[: len(data) // 2])


def _npy(t: Path) -> str:
    np.save(t / "p.npy", np.zeros((1, 1), np.float32))
    return str(t / "p.npy")


BIG = "1" + "0" * 5000  # more than Python's 4300-digit int/str limit
# name -> (argv builder, text the one error line must contain)
CASES: dict[str, tuple[Any, str]] = {
    "binary-json": (
        lambda t: ["check", _write(t / "b.json", bytes(range(256)) * 4)],
        "not UTF-8",
    ),
    "latin1-json": (
        lambda t: ["check", _write(t / "l.json", json.dumps({**E1}).encode() + b" \xe9")],
        "line 1: expected a formal-net/1 JSON file (UTF-8 text), got byte 0xe9",
    ),
    "latin1-vnnlib": (
        lambda t: [
            "check",
            _ok_onnx(t),
            "--spec",
            _write(t / "s.vnnlib", b"; \xe9\n" + BOX.encode()),
        ],
        "expected a VNN-LIB file (UTF-8 text)",
    ),
    "latin1-nnet": (
        lambda t: ["check", _write(t / "n.nnet", b"// caf\xe9\n2,1,1,2,\n")],
        "expected an NNet file (UTF-8 text)",
    ),
    "json-number-10001-digits": (
        lambda t: [
            "check",
            _write(t / "d.json", json.dumps(E1).replace("[[1]]", "[[1" + "0" * 10000 + "]]")),
        ],
        "at most 10000 digits",
    ),
    "string-number-1e6-digits": (
        lambda t: ["check", _json(t / "m.json", inputs=[["1." + "1" * 1_000_000]])],
        "field 'inputs[0,0]': expected a number of at most 10000 digits",
    ),
    "vnnlib-number-1e6-digits": (
        lambda t: [
            "check",
            _ok_onnx(t),
            "--spec",
            _write(t / "m.vnnlib", BOX.replace("(<= X_0 1)", "(<= X_0 1." + "1" * 1_000_000 + ")")),
        ],
        "at most 10000 digits",
    ),
    "huge-exponent": (
        lambda t: ["check", _json(t / "e.json", inputs=[["1e999999999"]])],
        "exponent of magnitude at most",
    ),
    "trainable-list": (
        lambda t: ["check", _json(t / "t.json", trainable=[["0.weight"]])],
        "field 'trainable': entry 0: expected a parameter name",
    ),
    "trainable-object": (
        lambda t: ["check", _json(t / "t.json", trainable=[{"a": 1}])],
        "field 'trainable': entry 0: expected a parameter name",
    ),
    "truncated-npz": (
        lambda t: ["check", _noparams(t), "--params", _truncated_npz(t)],
        "expected a .npz archive",
    ),
    "npy-as-params": (
        lambda t: ["check", _noparams(t), "--params", _npy(t)],
        "got a single .npy array",
    ),
    "object-npz": (
        lambda t: [
            "check",
            _noparams(t),
            "--params",
            _npz(t / "o.npz", **{"0.weight": np.array([[object()]], dtype=object)}),
        ],
        "got an array of Python objects",
    ),
    "nan-npz": (
        lambda t: [
            "check",
            _noparams(t),
            "--params",
            _npz(
                t / "n.npz",
                **{
                    "0.weight": np.full((1, 1), np.nan, np.float32),
                    "1.weight": np.ones((1, 1), np.float32),
                },
            ),
        ],
        "expected finite numbers, got nan at [0, 0]",
    ),
    "gemm-alpha-nan": (
        lambda t: ["check", _gemm(t / "g.onnx", alpha=float("nan"))],
        "attribute alpha = nan: expected finite numbers",
    ),
    "leakyrelu-alpha-inf": (
        lambda t: ["check", _leaky(t / "l.onnx")],
        "attribute alpha = inf: expected finite numbers",
    ),
    "conv-stride-0": (
        lambda t: ["check", _conv(t / "c.onnx")],
        "attribute strides = [0, 0]: expected integers from 1",
    ),
    "formalnet-stride-0": (
        lambda t: [
            "check",
            _json(
                t / "c.json",
                input_shape=[1, 1, 1],
                layers=[{"type": "conv2d", "out_channels": 1, "kernel_size": 1, "stride": 0}],
            ),
        ],
        "field 'layers[0].stride'",
    ),
    "timeout-nan": (lambda t: ["check", "e1", "--timeout", "nan"], "argument --timeout"),
    "timeout-inf": (lambda t: ["check", "e1", "--timeout", "inf"], "argument --timeout"),
    "timeout-1e400": (lambda t: ["check", "e1", "--timeout", "1e400"], "argument --timeout"),
    "search-timeout-nan": (
        lambda t: ["search", "e1", "--find", "kink", "--timeout", "nan"],
        "argument --timeout",
    ),
    "vnnlib-huge-index": (
        lambda t: [
            "check",
            _ok_onnx(t),
            "--spec",
            _write(
                t / "x.vnnlib", "(declare-const X_99999999999 Real)(assert (<= X_99999999999 1))"
            ),
        ],
        f"expected variable indices below {limits.MAX_DECLARED_VARIABLES}",
    ),
    "vnnlib-empty-or": (
        lambda t: ["check", _ok_onnx(t), "--spec", _write(t / "o.vnnlib", BOX + "(assert (or))")],
        "(assert (or))",
    ),
    "vnnlib-deep": (
        lambda t: [
            "check",
            _ok_onnx(t),
            "--spec",
            _write(t / "d.vnnlib", "(assert " + "(and " * 5000 + ")" * 5001),
        ],
        "nested at most",
    ),
    "unknown-layer-key": (
        lambda t: [
            "check",
            _json(t / "u.json", layers=[{"type": "dense", "units": 1, "activaton": "relu"}]),
        ],
        "unknown key 'activaton' (expected one of type, activation, input, units, bias); "
        "did you mean 'activation'?",
    ),
    "unknown-top-key": (
        lambda t: ["check", _json(t / "u.json", trainabel=["0.weight"])],
        "did you mean 'trainable'?",
    ),
    "decimal-not-leaked": (
        lambda t: [
            "check",
            _write(t / "f.json", json.dumps(E1).replace('"units": 1', '"units": 3.0', 1)),
        ],
        "expected a positive integer (at most 1000000), got 3.0",
    ),
    "deep-json": (
        lambda t: ["check", _write(t / "deep.json", "[" * 100_000 + "]" * 100_000)],
        f"JSON nested deeper than {limits.MAX_NESTING} levels",
    ),
    "nnet-huge-layer": (
        lambda t: ["check", _write(t / "h.nnet", "1,1,1,1,\n1,99999999999,\n")],
        "expected layer sizes from 1 to",
    ),
    "output-missing-folder": (
        lambda t: ["check", "e1", "-o", str(t / "nope" / "out.txt")],
        "does not exist",
    ),
    "control-character-key": (  # \x1e and \r break lines for str.splitlines
        lambda t: ["check", _json(t / "n.json", **{"\x1e\r": 1})],
        "unknown key '\\x1e\\r'",
    ),
    "output-empty": (lambda t: ["check", "e1", "-o", ""], "expected a file path"),
    "export-output-empty": (
        lambda t: ["export-smt", "e1", "--query", "kink", "-o", ""],
        "expected a file path",
    ),
    "output-folder": (lambda t: ["check", "e1", "-o", str(t)], "got a folder"),
    "output-proc": (lambda t: ["check", "e1", "-o", "/proc/self/comm"], "under /proc"),
    "output-sys": (lambda t: ["check", "e1", "-o", "/sys/kernel/formal_out"], "under /sys"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_gives_one_error_line(name: str, tmp_path: Path, capsys: Any) -> None:
    build, expected = CASES[name]
    argv = build(tmp_path)
    before = sorted(os.listdir(tmp_path))
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    for leak in ("Decimal(", "np.float64", "set_int_max_str_digits", "Traceback"):
        assert leak not in err
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file left behind
    assert out == ""


def test_output_refuses_fifo_and_symlinks_to_non_files(tmp_path: Path, capsys: Any) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to_fifo").symlink_to(fifo)
    (tmp_path / "to_dir").symlink_to(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    for target in ("fifo", "to_fifo", "to_dir", "dangling"):
        assert main(["check", "e1", "-o", str(tmp_path / target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: -o "), err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    for link in ("to_fifo", "to_dir", "dangling"):
        assert (tmp_path / link).is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["dangling", "fifo", "to_dir", "to_fifo"]


def test_output_writes_regular_files_atomically(tmp_path: Path, capsys: Any) -> None:
    new = tmp_path / "new.txt"
    assert main(["check", "e1", "-o", str(new)]) == 0
    assert "non-differentiable" in new.read_text() or "verdict" in new.read_text()
    old = tmp_path / "old.txt"
    old.write_text("previous")
    os.chmod(old, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(old)
    assert main(["check", "e1", "--json", "-o", str(link)]) == 0
    assert link.is_symlink() and "differentiable" in json.loads(old.read_text())
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "new.txt", "old.txt"]


def test_gradient_with_5000_digit_entries_is_printed(tmp_path: Path, capsys: Any) -> None:
    third = "1/" + "3" * 5000  # the gradient of relu(w2 relu(w1 x)) in w1 is w2 * x = x here
    net = _json(
        tmp_path / "g.json", inputs=[[third]], params={"0.weight": [[1]], "1.weight": [[1]]}
    )
    assert main(["check", net, "--gradient"]) == 0
    out = capsys.readouterr().out
    assert "0.weight[0,0]=" + third in out.replace(" ", "")


def test_json_integer_over_4300_digits_is_read_exactly(tmp_path: Path) -> None:
    doc = json.dumps(E1).replace("[[1]]", "[[" + BIG + "]]")
    path = _write(tmp_path / "big.json", doc)
    from formal.io.formalnet import load

    net = load(path)
    assert net.inputs.to_fractions()[0, 0] == 10**5000


def test_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from formal.cli.main import run; run()",
                "check",
                "e1",
                "--json",
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


def test_number_reading_is_exact_and_bounded() -> None:
    assert read_number("1." + "5" * 5000) == 1 + sum(
        (lambda k: __import__("fractions").Fraction(5, 10**k))(k) for k in range(1, 5001)
    )
    assert read_number("-" + BIG + "/3") == -(10**5000) / __import__("fractions").Fraction(3)
    with pytest.raises(InvalidArgument, match="at most 10000 digits"):
        read_number("9" * 10_001)


def test_vnnlib_missing_declaration_is_found_without_range() -> None:
    with pytest.raises(InvalidArgument, match="X_1 is not declared"):
        parse_vnnlib("(declare-const X_0 Real)(declare-const X_2 Real)")


def test_unknown_keys_in_nested_objects() -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'weights'"):
        from_dict({**E1, "objective": {"type": "weighted_sum", "weight": [[1]]}})
