"""`formal audit --repair`: a kernel-certified generalized gradient where AD's was not one."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formal.audit.audit import audit
from formal.audit.kinks import exact_outputs
from formal.audit.mlp import MLP
from formal.audit.repair import LISTED, repair_step
from formal.audit.run import TOTAL_KEYS, audit_step
from formal.audit.verdicts import mse_doc, network_doc
from formal.cli.main import main

SAVEZ: Any = np.savez  # numpy's stub types **arrays as its own keyword options
UNIT1 = {"0.weight[1,0]", "0.weight[1,1]", "0.bias[1]"}


def constructed() -> tuple[MLP, np.ndarray, np.ndarray]:
    """binary16, x = (1, 1): unit 1 exactly on its kink (1 - 1 = 0), units 0, 2 at 2^-12, 2.5."""
    dt = np.dtype(np.float16)
    w1 = np.array([[1.0, 2.0**-12], [1.0, 0.0], [1.0, 1.0]], dtype=dt)
    b1 = np.array([-1.0, -1.0, 0.5], dtype=dt)
    w2 = np.array([[1.0, 1.0, 1.0], [-1.0, 0.5, 0.25]], dtype=dt)
    b2 = np.zeros(2, dtype=dt)
    return MLP([w1, w2], [b1, b2], "relu", dt), np.ones((1, 2), dtype=dt), np.array([0])


def unit1_adjoint() -> Fraction:
    """dL/d relu(y_1) for L = ||o - onehot(0)||^2, by hand in exact arithmetic."""
    h = [Fraction(1, 4096), Fraction(0), Fraction(5, 2)]  # relu of the exact pre-activations
    w2 = [[Fraction(1), Fraction(1), Fraction(1)], [Fraction(-1), Fraction(1, 2), Fraction(1, 4)]]
    o = [sum(w * v for w, v in zip(row, h)) for row in w2]
    r = [o[0] - 1, o[1]]
    return 2 * (r[0] * w2[0][1] + r[1] * w2[1][1])


def test_repaired_step_is_kernel_verified_and_differs_where_expected() -> None:
    mlp, x, labels = constructed()
    # proxy 2 at ReLU's kink lies outside [D-, D+] = [0, 1]: AD is not a Clarke subgradient
    rec = audit_step(mlp, x, labels, proxy="value=2", repair=True)
    assert rec.mse_verdict is not None and rec.mse_verdict.in_ndf and not rec.clarke_certified
    rep = rec.repair
    assert rep is not None and rep.status == "repaired" and rep.kind == "bouligand"
    assert rep.target == "mse" and rep.scale == 2 and rep.verified is True
    assert "subgradient verified" in rep.kernel
    # AD passes 2 * adjoint through unit 1; the nearest Bouligand element is the D+ side (1)
    adj = unit1_adjoint()
    assert adj == Fraction(14849, 4096)
    assert {e.param for e in rep.differs} == UNIT1 and rep.differs_total == 3
    for e in rep.differs:  # x = (1, 1) and the bias: each entry is adjoint * 1
        assert (e.ad, e.value) == (2 * adj, adj)
    assert rep.max_abs_difference == adj
    js = rep.to_json()
    assert js["certificate_verified"] is True and js["differs_from_ad"][0]["difference"] == (
        "-14849/4096"
    )


def test_pytorch_ad_is_a_bouligand_element_nothing_to_repair() -> None:
    """The pytorch proxy (0 at ReLU's kink) is realized by pushing the kink down: no repair."""
    mlp, x, labels = constructed()
    rec = audit_step(mlp, x, labels, repair=True)
    assert rec.mse_verdict is not None and rec.mse_verdict.in_ndf
    assert rec.repair is not None and rec.repair.status == "ad-element"
    assert rec.repair.differs_total == 0 and rec.repair.verified is None
    # the vector output (no labels) is the target without labels
    out = audit_step(mlp, x, None, proxy="value=2", repair=True)
    assert out.repair is not None and out.repair.target == "output" and out.repair.scale == 1
    assert out.repair.status == "repaired" and out.repair.verified is True
    # two outputs, three entries of unit 1 each
    assert out.repair.differs_total == 6 and {e.param for e in out.repair.differs} == UNIT1


def test_kinked_rows_give_the_whole_minibatch_answer() -> None:
    """Only the kinked row (row 1) is certified; the values listed are the whole minibatch's."""
    mlp, _, _ = constructed()
    x = np.array([[2.0, 1.0], [1.0, 1.0]], dtype=np.float16)  # row 0: unit 1 at 1, off the kink
    labels = np.array([0, 1])
    doc = network_doc(mlp.weights, mlp.biases, "relu", x, "binary16")
    mdoc = mse_doc(doc, exact_outputs(mlp.weights, mlp.biases, "relu", x), labels)
    for lab, whole, scale in ((labels, mdoc, 2), (None, doc, 1)):
        rec = audit_step(mlp, x, lab, proxy="value=2", repair=True)
        assert rec.repair is not None and rec.repair.rows == (1,)
        full = repair_step(whole, "value=2", step=0, target=rec.repair.target, scale=scale)
        assert full.rows is None and full.status == rec.repair.status == "repaired"
        assert full.verified is rec.repair.verified is True
        assert sorted(map(repr, full.differs)) == sorted(map(repr, rec.repair.differs))
        if lab is None:  # the kinked row keeps its minibatch index
            assert {e.output for e in rec.repair.differs} == {"out[1,0]", "out[1,1]"}


def test_run_without_exact_kinks_repairs_nothing() -> None:
    res = audit(precision="64", hidden="8", epochs=1, max_steps=3, repair=True)
    log = json.loads(json.dumps(res.to_json()))
    assert set(TOTAL_KEYS) <= set(log) and log["repaired_steps"] == 0
    assert log["settings"]["repair"] is True and log["exact_kink_steps"] == 0
    assert all("repair" in r and r["repair"] is None for r in log["records"])


def test_cli_snapshot_repair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot whose first hidden unit is exactly 0 on every digit: a repaired step."""
    w0 = np.zeros((3, 64), np.float16)
    w0[1] = 0.125
    w0[2, :8] = -0.25
    w2 = np.array([[0.5, 0.25, -0.5]] * 10) * np.arange(1, 11)[:, None]  # exact in binary16
    snap = {
        "0.weight": w0,
        "0.bias": np.zeros(3, np.float16),  # unit 0: 0 . x + 0 = 0 exactly
        "2.weight": w2.astype(np.float16),
        "2.bias": np.zeros(10, np.float16),
    }
    SAVEZ(tmp_path / "s.npz", **snap)
    out = tmp_path / "a.json"
    argv = ["audit", "--snapshots", str(tmp_path / "s.npz"), "--batch-size", "4"]
    assert main(argv + ["--proxy", "value=2", "--repair", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    log = json.loads(out.read_text())
    assert log["repaired_steps"] == 1 and log["steps"] == 1
    rep = log["records"][0]["repair"]
    assert rep["status"] == "repaired" and rep["certificate_verified"] is True
    assert rep["target"] == "mse" and rep["scale"] == 2
    listed = rep["differs_from_ad"]
    assert rep["differs_total"] > LISTED and len(listed) == LISTED  # capped, with the total
    assert all(e["param"].startswith(("0.weight[0,", "0.bias[0]")) for e in listed)
    diffs = [abs(Fraction(e["difference"])) for e in listed]
    assert diffs == sorted(diffs, reverse=True) and Fraction(rep["max_abs_difference"]) == diffs[0]
    assert "repaired steps          1" in text and "step 0: mse bouligand element" in text
    assert "kernel-verified" in text
    # the default pytorch proxy: AD is a Bouligand element there, nothing repaired
    assert main(argv + ["--repair", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["repaired_steps"] == 0
    assert "repaired steps          0" in capsys.readouterr().out
    assert main(argv + ["--repair", "--no-engine"]) == 2
    assert "--repair needs the exact verdicts" in capsys.readouterr().err
