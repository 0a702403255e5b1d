"""The independent kernel of ``formal verify``: independence, and rejection of tampered claims.

Each tampering test changes one number of a genuine certificate (a direction
entry, a gradient entry, a Farkas multiplier, a sign pattern, AD's value) and
expects exit 1 with a message naming that claim.
"""

from __future__ import annotations

import ast
import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from formal.cli.main import main
from formal.engine.certificate import build_certificate, load_document
from formal.engine.verdict import check
from formal.examples import example_path, load_example
from formal.verify.kernel import Rejected, verify

VERIFY = Path(__file__).resolve().parent.parent / "formal" / "verify"


def test_kernel_imports_nothing_of_formal_but_errors() -> None:
    files = sorted(VERIFY.glob("*.py"))
    assert len(files) >= 3
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{f.name}: relative import"
                names = [node.module or ""]
            for n in names:
                top = n.split(".")[0]
                if top == "formal":
                    assert n == "formal.errors" or n.startswith("formal.verify"), (f.name, n)
                else:  # stdlib only: no numpy, sympy, z3, flint
                    assert top in {
                        "__future__",
                        "math",
                        "json",
                        "fractions",
                        "dataclasses",
                        "typing",
                        "collections",
                    }, (f.name, n)


def cert_of(name: str, proxy: str = "pytorch") -> dict[str, Any]:
    net = load_example(name)
    v = check(net, proxy)
    doc = load_document(example_path(name).read_text())
    return build_certificate(net, doc, v, proxy)


def reject(cert: dict[str, Any], *words: str) -> str:
    with pytest.raises(Rejected) as exc:
        verify(cert)
    msg = str(exc.value)
    for w in words:
        assert w in msg, msg
    return msg


def bump(text: str) -> str:
    from fractions import Fraction

    return str(Fraction(text) + Fraction(1, 3))


def test_tamper_direction_entry() -> None:
    cert = cert_of("tiny-mlp")
    assert verify(cert).verdict == "non-differentiable"
    bad = copy.deepcopy(cert)
    key = next(iter(bad["nonadditive"]["d1"]))
    bad["nonadditive"]["d1"][key] = bump(bad["nonadditive"]["d1"][key])
    reject(bad, "nonadditive.df_d1")
    bad = copy.deepcopy(cert)
    bad["nonadditive"]["df_d1_plus_d2"] = bump(bad["nonadditive"]["df_d1_plus_d2"])
    reject(bad, "nonadditive.df_d1_plus_d2")


def test_tamper_gradient_entry() -> None:
    cert = cert_of("e1")
    assert verify(cert).verdict == "differentiable, AD correct"
    bad = copy.deepcopy(cert)
    bad["gradient"][0][0] = bump(bad["gradient"][0][0])
    reject(bad, "gradient", "0.weight[0,0]")


def test_tamper_farkas_multiplier() -> None:
    cert = cert_of("lemma2")
    assert cert["excluded"], "lemma2 has excluded sign patterns"
    bad = copy.deepcopy(cert)
    m = bad["excluded"][0]["multipliers"][0]
    m["y"] = bump(m["y"])
    reject(bad, "excluded[0]", "Farkas multipliers do not cancel")
    bad = copy.deepcopy(cert)
    for m in bad["excluded"][0]["multipliers"]:
        m["y"] = "0"
    reject(bad, "excluded[0]", "all 0")
    bad = copy.deepcopy(cert)
    bad["excluded"][0]["multipliers"][0]["y"] = "-1"
    reject(bad, "negative")


def test_tamper_sign_pattern() -> None:
    cert = cert_of("lemma2")
    bad = copy.deepcopy(cert)
    bad["patterns"][0]["signs"][0] = -bad["patterns"][0]["signs"][0]
    reject(bad, "patterns[0]")
    bad = copy.deepcopy(cert)
    bad["patterns"][0]["signs"][0] = 5
    reject(bad, "patterns[0]", "not a valid piece")
    bad = copy.deepcopy(cert)  # drop one excluded prefix: the tree no longer covers it
    bad["excluded"].pop()
    reject(bad, "coverage")


def test_tamper_ad_value_and_verdict() -> None:
    cert = cert_of("lemma3")
    assert cert["verdict"] == "ad-incorrect"
    bad = copy.deepcopy(cert)
    bad["ad"][0][0] = bump(bad["ad"][0][0])
    reject(bad, "ad")
    bad = copy.deepcopy(cert)
    bad["verdict"] = "differentiable"  # claim AD correct
    reject(bad, "AD equals it")


def test_tamper_witness_direction() -> None:
    cert = cert_of("lemma2")
    bad = copy.deepcopy(cert)
    w = bad["patterns"][0]["witness"]
    key = next(iter(w))
    w[key] = str(-int(w[key]))
    reject(bad, "patterns[0].witness", "does not realize")


def test_tamper_network() -> None:
    cert = cert_of("e1")
    bad = copy.deepcopy(cert)
    bad["network"]["params"]["1.weight"] = [[-2]]
    reject(bad)  # the gradient or the tree no longer fits the network


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_exit_codes(tmp_path: Path, capsys: Any) -> None:
    cert = cert_of("f2")
    good = tmp_path / "c.json"
    good.write_text(json.dumps(cert))
    code, out, _ = run(capsys, "verify", str(good))
    assert code == 0 and out.startswith("verified: differentiable, AD incorrect")
    code, out, _ = run(capsys, "verify", str(example_path("f2")), str(good))
    assert code == 0
    code, out, _ = run(capsys, "verify", str(example_path("f1")), str(good))
    assert code == 1 and "rejected: network" in out
    bad = copy.deepcopy(cert)
    bad["gradient"][0][0] = bump(bad["gradient"][0][0])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code, out, _ = run(capsys, "verify", str(tmp_path / "bad.json"))
    assert code == 1 and out.startswith("rejected: ") and "gradient" in out
    (tmp_path / "junk.json").write_text("{")
    code, _, err = run(capsys, "verify", str(tmp_path / "junk.json"))
    assert code == 2 and err.startswith("error:")
    sig = copy.deepcopy(cert)
    sig["network"]["layers"][0]["activation"] = "sigmoid"
    (tmp_path / "sig.json").write_text(json.dumps(sig))
    code, _, err = run(capsys, "verify", str(tmp_path / "sig.json"))
    assert code == 2 and "cannot verify" in err
    other = copy.deepcopy(cert)
    other["network"]["layers"][0]["type"] = "lstm"
    (tmp_path / "lstm.json").write_text(json.dumps(other))
    code, _, err = run(capsys, "verify", str(tmp_path / "lstm.json"))
    assert code == 2 and "cannot verify: layer type 'lstm'" in err


def test_tamper_bouligand_direction() -> None:
    cert = cert_of("tiny-mlp")
    assert cert["bouligand"] is not None
    assert "Bouligand direction verified" in verify(cert).summary
    bad = copy.deepcopy(cert)
    d = bad["bouligand"]["direction"]
    key = next(iter(d))
    d[key] = bump(str(-Fraction(d[key])))
    reject(bad, "bouligand.direction", "does not move strictly")
