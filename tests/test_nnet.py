"""The NNet loader: structure, exact values, normalization, membership in M, errors, and
agreement with the ONNX version of an ACAS Xu network."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from formal.cli.main import main
from formal.core.activations import parse_preset
from formal.engine.forward import exact_forward, output_value
from formal.engine.verdict import check
from formal.errors import InputFileError, InvalidArgument
from formal.io.nnet import load, parse

F = Fraction
# 2 inputs -> 2 ReLU units -> 1 output; means/ranges for inputs and the output
TOY = """// a toy network
// second comment
2,2,1,2,
2,2,1,
0,
-10,-10,
10,10,
1,2,3,
2,4,5,
1.0,-1.0,
0.5,0.25,
0.0,
-0.125,
2.0,-3.0,
0.75,
"""


def out(net) -> list[Fraction]:
    return list(output_value(exact_forward(net, parse_preset("pytorch"))).to_fractions())


def test_structure_and_exact_values():
    net = parse(TOY, input=[[F(3), F(-1)]])
    assert net.param_order == ("0.weight", "0.bias", "1.weight", "1.bias")
    assert net.numbers.name == "binary64" and net.param_count() == 9
    # h = relu([3 - (-1), 1.5 - 0.25] + [0, -1/8]) = [4, 9/8]; y = 2*4 - 3*9/8 + 3/4
    assert out(net) == [F(8) - F(27, 8) + F(3, 4)]
    assert check(net).hypothesis_h is True


def test_normalization_of_input_and_output():
    net = parse(
        TOY, input=[[F(30), F(-1)]], normalize=True
    )  # x0 clipped to 10: (10 - 1)/2, (-1 - 2)/4
    x = net.inputs.to_fractions().reshape(-1).tolist()
    assert x == [F(9, 2), F(-3, 4)]
    h = [max(F(0), x[0] - x[1]), max(F(0), F(1, 2) * x[0] + F(1, 4) * x[1] - F(1, 8))]
    y = 2 * h[0] - 3 * h[1] + F(3, 4)
    assert out(net) == [y * 5 + 3]


def test_members_of_another_format_are_checked():
    with pytest.raises(InvalidArgument, match=r"0\.weight\[0,1\]|binary16"):
        parse(TOY.replace("1.0,-1.0,", "1.0,0.1,"), numbers="binary16")
    assert parse(TOY, numbers="binary16").numbers.name == "binary16"


@pytest.mark.parametrize(
    "text, message",
    [
        (TOY.rsplit("\n", 3)[0], "unexpected end of file"),
        (TOY.replace("0.5,0.25,", "0.5,abc,"), r"line 11: expected a number"),
        (TOY.replace("2,2,1,\n", "3,2,1,\n"), "do not match inputSize"),
        (TOY.replace("0.75,", "nan,"), "finite"),
    ],
)
def test_malformed_files_name_the_line(text, message):
    with pytest.raises(InputFileError, match=message):
        parse(text, source="toy.nnet")


def onnx_to_nnet(net_onnx) -> tuple[str, list[Fraction]]:
    """Write the ACAS Xu ONNX network as NNet text (float32 values printed exactly)."""
    p = {k: v.to_fractions() for k, v in net_onnx.params.items()}
    ws = [p[f"Operation_{i}_MatMul_W"].T for i in range(1, 7)] + [p["linear_7_MatMul_W"].T]
    bs = [p[f"Operation_{i}_Add_B"] for i in range(1, 7)] + [p["linear_7_Add_B"]]
    sizes = [5] + [w.shape[0] for w in ws]
    lines = [
        f"{len(ws)},5,5,50,",
        ",".join(map(str, sizes)) + ",",
        "0,",
        "-9,-9,-9,-9,-9,",
        "9,9,9,9,9,",
        "0,0,0,0,0,0,",
        "1,1,1,1,1,1,",
    ]

    def text(v: Fraction) -> str:
        return repr(float(v))  # shortest round-trip text of the double holding the float32 value

    for w, b in zip(ws, bs):
        lines += [",".join(text(v) for v in row) + "," for row in w]
        lines += [text(v) + "," for v in b]
    return "\n".join(lines) + "\n", list(p["input_AvgImg"].reshape(-1))


def test_acasxu_nnet_agrees_with_onnx(corpus, tmp_path, capsys):
    from formal.io.onnx import load as load_onnx

    base = corpus / "vnncomp2021" / "acasxu"
    net_onnx = load_onnx(base / "ACASXU_run2a_1_1_batch_2000.onnx", spec=base / "prop_1.vnnlib")
    text, offset = onnx_to_nnet(net_onnx)
    x = net_onnx.inputs.to_fractions().reshape(-1)
    net = parse(text, input=[[a - b for a, b in zip(x, offset)]])
    assert out(net) == out(net_onnx)  # the same exact function
    path = tmp_path / "acas.nnet"
    path.write_text(text)
    spec = tmp_path / "box.vnnlib"
    point = [a - b for a, b in zip(x, offset)]  # exact rationals, written "p/q"
    spec.write_text(
        "".join(
            f"(declare-const X_{i} Real)(assert (<= X_{i} {v}))(assert (>= X_{i} {v}))"
            for i, v in enumerate(point)
        )
    )
    assert main(["check", str(path), "--spec", str(spec), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["method"] == "no-kinks" and doc["numbers"] == "binary64" and doc["parameters"] == 13_305
    )
    assert (
        load(path, spec=spec).inputs.to_fractions().tolist() == net.inputs.to_fractions().tolist()
    )
