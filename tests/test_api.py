"""The Python API (formal/api.py) against the CLI: loaders, results, errors, the README script."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest

import formal
from formal.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
NANO = ROOT / "tests/data/vnncomp2021/test/test_nano.onnx"
TOY_NNET = """// toy
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


def _readme_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return next(b for b in blocks if "dense_network" in b)


def test_readme_script_tabulates_solver_queries_and_searches() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_readme_script(), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["network", "proxy", "in", "ndf", "in", "inc", "search", "inc"] + [
        "witness"
    ]
    table = {(ln[:18].strip(), ln[19:].split()[0]): ln[19:].split()[1:] for ln in lines[1:]}
    assert len(lines) == 7
    assert table[("w = (0, -3, -3)", "right")] == ["False", "True", "found", "0,", "-3,", "-3"]
    for w0 in ("0", "1/2", "-3"):
        assert table[(f"w = ({w0}, -3, -3)", "pytorch")] == ["False", "False", "exhausted"]
        assert table[(f"w = ({w0}, -3, -3)", "right")][2:] == ["found", "0,", "-3,", "-3"]
    # and the table printed in the README is what the script prints
    readme = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    assert all(ln.rstrip() in readme for ln in lines)


def test_load_every_format(tmp_path: Path) -> None:
    e1 = formal.load("e1")
    assert e1.param_count() == 2
    same = formal.load(ROOT / "formal/examples/e1.json")
    assert same.param_count() == 2
    onnx = formal.load(str(NANO))
    assert onnx.cache["input_note"] == "zeros (no --spec/--input given)"
    nnet = tmp_path / "toy.nnet"
    nnet.write_text(TOY_NNET)
    net = formal.load(nnet)
    assert net.param_count() == 9 and "input_note" in net.cache
    with pytest.raises(formal.InvalidArgument, match="no such file"):
        formal.load("nosuch-net")
    with pytest.raises(formal.InvalidArgument, match="--input/--spec"):
        formal.load("e1", spec="x.vnnlib")


def test_check_by_path_matches_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    v = formal.check("e1", proxy="right")
    assert dataclasses.is_dataclass(v) and v.in_inc is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.in_inc = False  # type: ignore[misc]
    assert main(["check", "e1", "--proxy", "right", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = v.to_json()
    for key in ("in_inc", "in_ndf", "differentiable", "method", "witness"):
        assert cli[key] == api[key]
    with pytest.raises(formal.InvalidArgument):
        formal.check(3)  # type: ignore[arg-type]


def test_onnx_check_says_which_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(NANO), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "zeros (no --spec/--input given)"
    assert main(["check", str(NANO)]) == 0
    assert "input        zeros (no --spec/--input given)" in capsys.readouterr().out
    assert main(["check", "e1", "--json"]) == 0
    assert "input" not in json.loads(capsys.readouterr().out)


def test_search_count_export_reproduce_results() -> None:
    s = formal.search("e1", "inc", proxy="right", stages="given")
    assert s.status == "found" and s.to_json()["verdict"]["in_inc"] is True
    with pytest.raises(formal.InvalidArgument, match="--stages"):
        formal.search("e1", "inc", stages="")
    with pytest.raises(formal.InvalidArgument, match="--stages"):
        formal.search("e1", "inc", stages=["nosuch"])
    c = formal.count("e1", numbers="fp(2,1)", proxy="right")
    assert (c.omega, c.ndf, c.inc) == (121, 10, 5)
    assert c.to_json()["ndf"] in (10, "10")
    e = formal.export_smt("e1", "kink", timeout=30)
    assert e.status in ("sat", "unsat") and e.to_json()["text"].startswith("; formal export-smt")
    r = formal.reproduce("quick", ["Lemma D"], progress=False)
    assert [x.name for x in r.results] == ["Lemma D"] and r.ok
    assert r.to_json()["passed"] == 1
    with pytest.raises(formal.InvalidArgument, match="Lemma Z"):
        formal.reproduce("quick", ["nosuch"])


def test_count_estimates_and_refuses_past_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    # e1 over e4m3: 253^2 = 64009 points, past the pilot threshold: the rate is measured
    argv = ["count", "e1", "--numbers", "e4m3", "--max-seconds", "1e-6"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: count --method exact would take about") and "--yes" in err
    assert "points/s measured on" in err and "--max-seconds 1e-06" in err
    with pytest.raises(formal.InvalidArgument, match="--yes"):
        formal.count("e1", numbers="e4m3", max_seconds=1e-6)


def test_cli_errors_and_version(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["reproduce", "--only", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Lemma D" in err and "'nosuch'" in err
    assert main(["search", "e1", "--find", "inc", "--stages", ""]) == 2
    assert "--stages" in capsys.readouterr().err
    assert main(["export-smt", "e1", "--query", "kink", "-o", ""]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["bench", "--group", "abc"]) == 2
    assert "expected --group from" in capsys.readouterr().err
    assert main(["bench", "--issue", "2"]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"formal {formal.__version__}" == "formal 0.1.0"


def test_bench_rows_are_grouped_by_what_they_measure(capsys: pytest.CaptureFixture[str]) -> None:
    from formal.bench.runner import load_rows
    from formal.cli.bench import ratio_text

    groups = {r.group for r in load_rows()}
    assert {"verdict", "count", "smt", "models"} <= groups
    assert not any(g.isdigit() for g in groups), groups
    assert main(["bench", "--list", "--group", "smt"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert listed and all(ln.startswith("smt ") for ln in listed if ln)
    assert [ratio_text(x) for x in (0.00132456, 4.5678, 12345.6)] == ["0.00132", "4.57", "1.23e+04"]
