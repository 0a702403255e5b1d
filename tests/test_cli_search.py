"""`formal search` and `formal export-smt`: JSON contract, witnesses re-checked, bad input."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import z3

from formal.cli.main import main
from formal.core.numbers import BINARY32, parse_exact
from formal.core.rebuild import with_groups
from formal.engine.verdict import check
from formal.examples import load_example
from formal.search.export import solve_text

EXAMPLES = Path(__file__).resolve().parents[1] / "formal" / "examples"
KEYS = {
    "status",
    "reason",
    "params",
    "bits",
    "verdict",
    "seconds",
    "method",
    "space",
    "numbers",
    "proxy",
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _net_from_params(name: str, params: dict, numbers=BINARY32):
    """Rebuild the example with the JSON witness parameters (exact strings)."""
    net = load_example(name)
    par = net.parameterization()
    values = {}
    for g in range(par.size):
        tensor, flat = par.slot(g)
        nested = params[tensor]
        flat_list = list(_flatten(nested))
        values[g] = parse_exact(flat_list[flat])
    return with_groups(net, values, numbers=numbers)


def _flatten(v):
    if isinstance(v, list):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


def test_search_json_inc_witness(capsys):
    code, out, err = run_cli(
        capsys,
        "search",
        str(EXAMPLES / "e1.json"),
        "--find",
        "inc",
        "--proxy",
        "right",
        "--stages",
        "smt",
        "--json",
    )
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert KEYS <= set(doc)
    assert doc["status"] == "found" and doc["verdict"]["in_inc"] is True
    assert doc["verdict"]["method"] and doc["verdict"]["numbers"] == "binary32"
    # params are exact strings in formal-net/1 shapes; bits are the binary32 patterns of the
    # same values
    assert set(doc["params"]) == {"0.weight", "1.weight"}
    assert isinstance(doc["params"]["0.weight"][0][0], str)
    for name in doc["params"]:
        for v, b in zip(_flatten(doc["params"][name]), _flatten(doc["bits"][name])):
            assert BINARY32.hex_bits(parse_exact(v)) == b
    net2 = _net_from_params("e1", doc["params"])
    assert check(net2, "right").in_inc is True  # re-verified from the printed values alone


def test_search_json_spurious_touch_reports_both_values(capsys):
    code, out, _ = run_cli(capsys, "search", "rounding-trap", "--find", "spurious-kink", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "found"
    assert doc["float_value"] == "1" and doc["float_hex"] == "0x1p+0"
    assert parse_exact(doc["exact_value"]) != 1
    assert doc["order"] == "sequential"


def test_search_exhausted_and_unknown(capsys):
    code, out, _ = run_cli(capsys, "search", "rounding-trap", "--find", "kink", "--json")
    doc = json.loads(out)
    assert (
        code == 0
        and doc["status"] == "exhausted"
        and doc["params"] is None
        and doc["verdict"] is None
    )
    assert "closed form" in doc["reason"]
    code, out, _ = run_cli(
        capsys, "search", "axis-trap", "--find", "inc", "--timeout", "0.0001", "--json"
    )
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "unknown" and "time" in doc["reason"]


def test_search_text_output(capsys):
    code, out, _ = run_cli(
        capsys, "search", "tiny-mlp", "--find", "ndf", "--free", "0.bias", "--stages", "closed-form"
    )
    assert code == 0
    assert out.startswith("found: ndf in binary32")
    assert "0.bias = " in out and "in_ndf=true" in out


def test_search_fix_and_range(capsys):
    code, out, _ = run_cli(
        capsys,
        "search",
        "e1",
        "--find",
        "inc",
        "--proxy",
        "right",
        "--fix",
        "1.weight=-3",
        "--range",
        "1/4:8",
        "--stages",
        "smt",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "found"
    assert doc["params"]["1.weight"] == [["-3"]]
    w0 = parse_exact(doc["params"]["0.weight"][0][0])
    assert w0 == 0 or Fraction(1, 4) <= abs(w0) <= 8


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["search", "e1", "--find", "bogus"], "invalid choice"),
        (["search", "e1", "--find", "inc", "--range", "3:1"], "0 <= LO <= HI"),
        (["search", "e1", "--find", "inc", "--range", "1/2"], "LO:HI"),
        (["search", "e1", "--find", "inc", "--fix", "9.weight=1"], "expected a parameter name"),
        (["search", "e1", "--find", "inc", "--fix", "0.weight[0,0]=0.1"], "nearest members"),
        (["search", "e1", "--find", "inc", "--fix", "0.weight[3,0]=1"], "expected an index"),
        (["search", "e1", "--find", "inc", "--numbers", "fp(99,1)"], "fp(e,m)"),
        (["search", "e1", "--find", "inc", "--timeout", "-1"], "positive --timeout"),
        (["search", "e1", "--find", "inc", "--stages", "magic"], "--stages"),
        (
            ["search", "e1", "--find", "inc", "--numbers", "e5m2", "--search-format", "e4m3"],
            "search format",
        ),
        (["search", "nope.json", "--find", "inc"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, fragment):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_export_smt_writes_a_confirmed_benchmark(capsys, tmp_path):
    path = tmp_path / "missed.smt2"
    code, out, err = run_cli(
        capsys, "export-smt", "rounding-trap", "--query", "missed-kink", "-o", str(path)
    )
    assert code == 0 and "status unsat" in err
    text = path.read_text()
    assert (
        "(set-info :status unsat)" in text
        and "(check-sat)" in text
        and "(set-logic QF_BVFP)" in text
    )
    assert solve_text(text)[0] == "unsat"  # z3 re-parses the file and agrees
    path2 = tmp_path / "f1.smt2"
    code, _, err = run_cli(
        capsys,
        "export-smt",
        "f1",
        "--query",
        "ndf",
        "--search-format",
        "binary32",
        "--after-search",
        "10",
        "-o",
        str(path2),
    )
    assert code == 0 and "status unsat" in err  # an exhausted search exports an UNSAT query
    s = z3.Solver()
    s.from_string(path2.read_text())
    assert s.check() == z3.unsat


def test_export_smt_needs_an_output(capsys):
    code, _, err = run_cli(capsys, "export-smt", "e1", "--query", "kink")
    assert code == 2 and "-o" in err
