"""`formal count`: JSON contract, exact values, every bad-input path."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from formal.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "formal" / "examples"
KEYS = {"omega", "ndf", "inc", "density_ndf", "density_inc", "bound", "method", "seconds"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_exact_json_e1_e4m3(capsys):
    code, out, err = run_cli(
        capsys,
        "count",
        str(EXAMPLES / "e1.json"),
        "--numbers",
        "e4m3",
        "--proxy",
        "right",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert KEYS <= set(doc)
    assert doc["omega"] == "64009" and doc["method"] == "exact" and doc["numbers"] == "e4m3"
    # f = relu(w2 relu(w1)): ndf iff (w1 = 0, w2 > 0) or (w2 = 0, w1 > 0): 2 * 126 points
    assert doc["ndf"] == "252" and doc["density_ndf"] == str(Fraction(252, 64009))
    # inc with right: w1 = 0 and w2 < 0 (E1): 126 points
    assert doc["inc"] == "126" and doc["bound"] is None
    assert doc["inc_witness"]["0.weight[0,0]"]["value"] == "0"


def test_exact_h_net_has_bound_and_zero_inc(capsys, tmp_path):
    doc = {
        "format": "formal-net/1",
        "numbers": "binary32",
        "inputs": [["1"]],
        "layers": [
            {"type": "dense", "units": 2, "bias": True, "activation": "relu"},
            {"type": "dense", "units": 1, "bias": False, "activation": "identity"},
        ],
        "params": {"0.weight": [[1], [2]], "0.bias": [0, "0.5"], "1.weight": [[1, -1]]},
    }
    path = tmp_path / "h.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run_cli(capsys, "count", str(path), "--numbers", "fp(2,1)", "--json")
    res = json.loads(out)
    assert code == 0 and res["inc"] == "0" and res["bound"] == "2/11"
    assert Fraction(res["density_ndf"]) <= Fraction(res["bound"])
    code, out, _ = run_cli(
        capsys, "count", str(path), "--numbers", "fp(2,1)", "--method", "conditional", "--json"
    )
    cond = json.loads(out)
    assert cond["ndf"] == res["ndf"] and cond["space"] == "omega"
    code, out, _ = run_cli(
        capsys,
        "count",
        str(path),
        "--numbers",
        "e4m3",
        "--method",
        "conditional",
        "--slice",
        "--json",
    )
    sl = json.loads(out)
    assert sl["space"] == "bias-slice" and sl["omega"] == str(253**2)
    # weights 1, 2 and x = 1: both -w x are members, both output weights non-zero
    assert sl["ndf"] == str(253**2 - 252**2)


def test_sample_json(capsys):
    code, out, _ = run_cli(
        capsys,
        "count",
        "tiny-mlp",
        "--numbers",
        "binary16",
        "--method",
        "sample",
        "--samples",
        "50",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["method"] == "sample" and doc["samples"] == 50
    lo, hi = doc["ci"]["density_ndf"]
    assert 0 <= lo <= doc["density_ndf"] <= hi
    assert doc["inc"] == "0" and doc["bound"] == "3/63487"


def test_human_output(capsys):
    code, out, _ = run_cli(capsys, "count", "e1", "--numbers", "fp(2,1)")
    assert code == 0 and "ndf:" in out and "T3 bound:  n/a" in out and "0x" in out


def test_bad_inputs_exit_2(capsys, tmp_path):
    code, out, err = run_cli(capsys, "count", "tiny-mlp", "--numbers", "fp(2,1)")
    assert (
        code == 2
        and out == ""
        and err.startswith("error: ")
        and "0.weight[1,0]" in err
        and err.count("\n") == 1
    )
    code, _, err = run_cli(capsys, "count", "e1", "--method", "conditional")
    assert code == 2 and "hypothesis H" in err
    code, _, err = run_cli(capsys, "count", "tiny-mlp", "--numbers", "e4m3")
    assert code == 2 and "253^13" in err
    code, _, err = run_cli(capsys, "count", "e1", "--numbers", "fp(9)")
    assert code == 2 and "fp(9)" in err
    code, _, err = run_cli(capsys, "count", "e1", "--method", "sample", "--samples", "0")
    assert code == 2 and "--samples" in err
    code, _, err = run_cli(capsys, "count", "e1", "--proxy", "nope")
    assert code == 2 and "nope" in err
    code, _, err = run_cli(capsys, "count", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
