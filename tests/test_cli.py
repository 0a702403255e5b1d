"""The `formal check` command: JSON contract, human table, and every bad-input class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formal.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "formal" / "examples"
CONTRACT_KEYS = {
    "differentiable",
    "ad_correct",
    "in_ndf",
    "in_inc",
    "bouligand",
    "clarke",
    "kink_neurons",
    "parameters",
    "method",
    "witness",
    "numbers",
    "proxy",
    "seconds",
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_net(tmp_path: Path, doc: dict | str, name: str = "net.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def base_doc() -> dict:
    return json.loads((EXAMPLES / "tiny-mlp.json").read_text())


def test_check_json_contract_e1_right(capsys):
    code, out, err = run_cli(
        capsys, "check", str(EXAMPLES / "e1.json"), "--proxy", "right", "--json"
    )
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert CONTRACT_KEYS <= set(doc)
    assert doc["differentiable"] is True and doc["ad_correct"] is False
    assert doc["in_inc"] is True and doc["in_ndf"] is False
    assert doc["method"] == "kink-graph-lra"
    assert doc["witness"]["ad"] == "-1" and doc["witness"]["gradient"] == "0"
    assert doc["witness"]["param"] == "0.weight[0,0]"
    assert doc["numbers"] == "binary32" and doc["proxy"] == "right" and doc["parameters"] == 2
    assert doc["kink_neurons"] == 2


def test_check_table_for_people(capsys):
    code, out, err = run_cli(capsys, "check", "tiny-mlp")
    assert code == 0
    assert "bias-criterion" in out and "0.act[1]" in out and "witness (non-additive)" in out
    assert "df_d1: -2" in out


def test_check_gradient_flag(capsys):
    code, out, _ = run_cli(
        capsys, "check", str(EXAMPLES / "lemma3.json"), "--proxy", "left", "--json", "--gradient"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["gradient"] == [["1/6"]] and doc["ad_correct"] is True


def test_output_file_written_whole(tmp_path, capsys):
    target = tmp_path / "v.json"
    code, out, _ = run_cli(capsys, "check", "e1", "--json", "-o", str(target))
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["ad_correct"] is True


def test_params_npz(tmp_path, capsys):
    doc = base_doc()
    params = doc.pop("params")
    arrays: dict[str, Any] = {
        k: np.array(
            [[float(eval(str(v).replace("0x1p-3", "0.125"))) for v in row] for row in val]
            if isinstance(val[0], list)
            else [float(v) for v in val],
            dtype=np.float32,
        )
        for k, val in params.items()
    }
    np.savez(tmp_path / "p.npz", **arrays)
    net = write_net(tmp_path, doc)
    code, out, err = run_cli(capsys, "check", net, "--params", str(tmp_path / "p.npz"), "--json")
    assert code == 0, err
    assert json.loads(out)["in_ndf"] is True
    # wrong dtype: float64 arrays for a binary32 network
    arrays64: dict[str, Any] = {k: v.astype(np.float64) for k, v in arrays.items()}
    np.savez(tmp_path / "p64.npz", **arrays64)
    code, out, err = run_cli(capsys, "check", net, "--params", str(tmp_path / "p64.npz"))
    assert (
        code == 2
        and out == ""
        and err.startswith("error: ")
        and "float32" in err
        and "0.weight" in err
    )


# -- bad input: one line "error: ...", exit 2, nothing on stdout, never a traceback -------------


def bad(capsys, *argv: str) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_missing_file(capsys):
    err = bad(capsys, "check", "/nonexistent/net.json")
    assert "/nonexistent/net.json" in err and "no such file" in err


def test_directory_is_not_a_file(tmp_path, capsys):
    d = tmp_path / "dir.json"
    d.mkdir()
    err = bad(capsys, "check", str(d))
    assert "cannot read" in err


def test_malformed_json(tmp_path, capsys):
    err = bad(capsys, "check", write_net(tmp_path, '{"format": "formal-net/1", "layers": ['))
    assert "not valid JSON" in err and "line 1" in err


def test_wrong_format_tag(tmp_path, capsys):
    doc = base_doc()
    doc["format"] = "onnx"
    assert "field 'format'" in bad(capsys, "check", write_net(tmp_path, doc))


def test_wrong_shape(tmp_path, capsys):
    doc = base_doc()
    doc["params"]["0.weight"] = [[1, 2, 3], [1, 2, 3], [1, 2, 3]]
    err = bad(capsys, "check", write_net(tmp_path, doc))
    assert "params.0.weight" in err and "expected shape (3, 2), got (3, 3)" in err


def test_ragged_array(tmp_path, capsys):
    doc = base_doc()
    doc["params"]["0.weight"] = [[1, 2], [1], [1, 2]]
    assert "rectangular" in bad(capsys, "check", write_net(tmp_path, doc))


def test_unknown_activation(tmp_path, capsys):
    doc = base_doc()
    doc["layers"][0]["activation"] = "swish"
    err = bad(capsys, "check", write_net(tmp_path, doc))
    assert "layers[0].activation" in err and "'swish'" in err


def test_unknown_format(tmp_path, capsys):
    doc = base_doc()
    doc["numbers"] = "float13"
    err = bad(capsys, "check", write_net(tmp_path, doc))
    assert "field 'numbers'" in err and "float13" in err


def test_unknown_preset(capsys):
    err = bad(capsys, "check", "e1", "--proxy", "caffe")
    assert "caffe" in err and "pytorch" in err


def test_preset_without_convention(capsys):
    # TensorFlow has no hardtanh: the preset must say so, not guess
    err = bad(capsys, "check", "rounding-trap", "--proxy", "tensorflow")
    assert "tensorflow" in err and "hardtanh" in err


def test_parameter_not_in_format(tmp_path, capsys):
    doc = base_doc()
    doc["params"]["0.bias"] = ["0.1", "0.125", 2]
    err = bad(capsys, "check", write_net(tmp_path, doc))
    assert "params.0.bias[0]" in err and "binary32" in err
    assert "0x1.99999ap-4 = 13421773/134217728" in err and "0x1.999998p-4 = 3355443/33554432" in err


def test_frozen_parameter_need_not_be_in_format(tmp_path, capsys):
    doc = base_doc()
    doc["params"]["1.weight"] = [[1, -2, "1/3"]]
    doc["trainable"] = ["0.weight", "0.bias", "1.bias"]
    code, out, _ = run_cli(capsys, "check", write_net(tmp_path, doc), "--json")
    assert code == 0 and json.loads(out)["parameters"] == 10


@pytest.mark.parametrize("value", ['"nan"', '"inf"', "NaN", "Infinity", '"-Infinity"'])
def test_nan_and_inf(tmp_path, capsys, value):
    text = json.dumps(base_doc()).replace('"0.25"', value, 1)
    err = bad(capsys, "check", write_net(tmp_path, text))
    assert "NaN" in err or "nan" in err.lower() or "inf" in err.lower()


def test_unknown_trainable(tmp_path, capsys):
    doc = base_doc()
    doc["trainable"] = ["0.weight", "2.bias"]
    err = bad(capsys, "check", write_net(tmp_path, doc))
    assert "field 'trainable'" in err and "'2.bias'" in err


def test_empty_network(tmp_path, capsys):
    doc = base_doc()
    doc["layers"] = []
    err = bad(capsys, "check", write_net(tmp_path, doc))
    assert "empty" in err


def test_missing_parameter(tmp_path, capsys):
    doc = base_doc()
    del doc["params"]["1.bias"]
    assert "params.1.bias" in bad(capsys, "check", write_net(tmp_path, doc))


def test_unknown_extra_parameter(tmp_path, capsys):
    doc = base_doc()
    doc["params"]["7.weight"] = [[1]]
    assert "params.7.weight" in bad(capsys, "check", write_net(tmp_path, doc))


def test_bad_tie(tmp_path, capsys):
    doc = json.loads((EXAMPLES / "lemma2.json").read_text())
    doc["tied"] = [["0.weight[0,0]", "0.weight[5,0]"]]
    assert "tied[0]" in bad(capsys, "check", write_net(tmp_path, doc))


def test_unknown_option_is_one_line(capsys):
    bad(capsys, "check", "e1", "--frobnicate")


def test_bad_timeout(capsys):
    assert "--timeout" in bad(capsys, "check", "e1", "--timeout", "0")


def test_unsupported_suffix(tmp_path, capsys):
    p = tmp_path / "net.txt"
    p.write_text("x")
    assert "suffix" in bad(capsys, "check", str(p))
