"""`formal reproduce --budget quick`.

Every check passes; JSON contract; plots; exit 1 on failure.
"""

from __future__ import annotations

import json

import pytest

from formal.cli.main import main


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    plots = tmp_path_factory.mktemp("plots")
    out = tmp_path_factory.mktemp("out") / "reproduce.json"
    code = main(["reproduce", "--budget", "quick", "--json", "--plots", str(plots), "-o", str(out)])
    return code, json.loads(out.read_text()), plots


def test_quick_passes(quick):
    code, doc, _ = quick
    assert code == 0
    assert {"results", "passed", "cited", "failed"} <= set(doc)
    assert doc["failed"] == 0 and doc["passed"] + doc["cited"] == len(doc["results"]) >= 16
    for r in doc["results"]:
        assert r["status"] in ("pass", "cited") and r["evidence"]
        assert {"name", "status", "evidence"} <= set(r)
        assert all(e["ok"] for e in r["evidence"])
    # T4 for B >= 2 is cited (a published proof), everything else is proved in proofs/
    assert doc["cited"] == 1 and doc["cited_names"] == ["T4 (B >= 2)"]


def test_plots_written(quick):
    _, doc, plots = quick
    pngs = list(plots.glob("*.png"))
    assert pngs and all(p.stat().st_size > 20_000 for p in pngs)
    assert doc["plots"] == [str(p) for p in sorted(pngs)]


def test_open_question(quick):
    _, doc, _ = quick
    oq = next(r for r in doc["results"] if r["name"] == "Open question")
    found = {(e["activation"], e["preset"]): e for e in oq["evidence"] if "activation" in e}
    assert len(found) == 7 * 4
    # T5: zero-side proxies give no inc; E1-type witnesses for the right / lambda presets
    for key in (
        ("relu", "pytorch"),
        ("relu", "left"),
        ("relu6", "pytorch"),
        ("hardsigmoid", "pytorch"),
    ):
        assert found[key]["inc"] == "0"
    for key in (("relu", "right"), ("relu", "lambda=1/2"), ("leaky_relu", "pytorch")):
        assert int(found[key]["inc"]) > 0 and found[key]["witness"]


def test_failure_exits_1(monkeypatch, capsys):
    import formal.theorems.catalogue as th

    def bad(rec, budget):
        rec.expect(False, "deliberately false")

    monkeypatch.setattr(
        th, "catalogue", lambda: [th.Theorem("Broken", "b", "s", "h", "p", "t", bad)]
    )
    code = main(["reproduce"])
    out, _ = capsys.readouterr()
    assert code == 1 and "FAIL" in out and "deliberately false" in out


def test_text_table(capsys):
    code = main(["reproduce", "--only", "Lemma 2", "--only", "f1"])
    out, _ = capsys.readouterr()
    assert (
        code == 0
        and "result" in out
        and "hypotheses" in out
        and "PASS" in out
        and "2 passed, 0 cited" in out
        and "0 failed" in out
    )
    code = main(["reproduce", "--only", "T4 (B"])
    out, _ = capsys.readouterr()
    assert code == 0 and "CITED" in out and "0 passed, 1 cited" in out
