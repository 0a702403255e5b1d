"""`formal audit`: classification of float kink touches, JSON log, sources, sweeps, resume."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formal.audit.audit import audit
from formal.audit.kinks import classify_touches, rank_condition
from formal.audit.mlp import (
    MLP,
    act_forward,
    backward,
    forward,
    init_mlp,
    sgd,
    softmax_xent_grad,
)
from formal.audit.run import TOTAL_KEYS, audit_step, proxies_between
from formal.audit.sources import load_digits, snapshot_batches, training_batches
from formal.audit.sweep import read_results, run_sweep
from formal.audit.tables import bertoin_specs, bertoin_table, iclr_specs, run_spec
from formal.cli.main import main

SAVEZ: Any = np.savez  # numpy's stub types **arrays as its own keyword options
MNISTFC = Path(__file__).resolve().parent / "data" / "vnncomp2021" / "mnistfc"
REQUIRED = {
    "steps",
    "float_kink_touches",
    "spurious_touches",
    "exact_touches",
    "missed_touches",
    "gradient_changes",
    "ndf_steps",
    "inc_steps",
    "clarke_certified_steps",
}


def consistent(log: dict[str, Any]) -> None:
    """The invariants every JSON log satisfies."""
    recs = log["records"]
    assert log["steps"] == len(recs)
    assert log["exact_touches"] + log["spurious_touches"] == log["float_kink_touches"]
    for r in recs:
        assert r["exact_touches"] + r["spurious_touches"] == r["float_touches"]
        assert sum(r["touches_by_layer"]) == r["float_touches"]
        if r["float_touches"] == 0:
            assert not r["gradient_changed"]  # no touch: both presets give the same gradient
        v = r["verdict"]
        if v["in_ndf"] or v["in_inc"]:
            assert v["reverified"] is True, v
        if r["exact_touches"] + r["missed_touches"] == 0:
            assert v["method"] == "no-kinks"
    per_step = {
        "float_kink_touches": "float_touches",
        "spurious_touches": "spurious_touches",
        "exact_touches": "exact_touches",
        "missed_touches": "missed_touches",
    }
    for key, rkey in per_step.items():
        assert log[key] == sum(r[rkey] for r in recs)
    assert log["gradient_changes"] == sum(r["gradient_changed"] for r in recs)


def test_digits_shipped_and_exact() -> None:
    x, y = load_digits()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert set(np.unique(y)) == set(range(10))
    assert bool(((x * 16) == np.round(x * 16)).all()) and x.max() == 1.0  # pixels / 16, exact


def test_json_keys_and_consistency_fp16() -> None:
    res = audit(precision="16", hidden="32,32", epochs=2, max_steps=60, seed=1)
    log = json.loads(json.dumps(res.to_json()))
    assert REQUIRED <= set(log) and set(TOTAL_KEYS) <= set(log)
    assert log["steps"] == 60
    consistent(log)
    # binary16 on the digits touches kinks and the touches change the gradient
    assert log["float_kink_touches"] > 0 and log["gradient_changes"] > 0
    assert log["per_epoch"][0]["epoch"] == 0 and sum(e["steps"] for e in log["per_epoch"]) == 60


def test_binary64_has_no_spurious_touch() -> None:
    res = audit(precision="64", hidden="16", epochs=1, max_steps=20)
    assert res.totals()["spurious_touches"] == 0


def constructed() -> tuple[MLP, np.ndarray, np.ndarray]:
    """binary16: unit 0 is a spurious touch, unit 1 an exact one, unit 2 off the kink."""
    dt = np.dtype(np.float16)
    w1 = np.array([[1.0, 2.0**-12], [1.0, 0.0], [1.0, 1.0]], dtype=dt)
    b1 = np.array([-1.0, -1.0, 0.5], dtype=dt)
    w2 = np.array([[1.0, 1.0, 1.0], [-1.0, 0.5, 0.25]], dtype=dt)
    b2 = np.zeros(2, dtype=dt)
    return MLP([w1, w2], [b1, b2], "relu", dt), np.ones((1, 2), dtype=dt), np.array([0])


def test_spurious_touch_constructed() -> None:
    mlp, x, labels = constructed()
    fp = forward(mlp, x)
    # fl16(1 + 2^-12) = 1, so the float pre-activation of unit 0 is 0; exactly it is 2^-12
    assert fp.ys[0][0, 0] == 0 and fp.ys[0][0, 1] == 0
    t = classify_touches(mlp.weights, mlp.biases, "relu", x, fp.ys[:1])
    assert t.float_touch[0].tolist() == [[True, True, False]]
    assert t.exact_kink[0].tolist() == [[False, True, False]]
    assert (t.n_float, t.n_spurious, t.n_exact, t.n_missed) == (2, 1, 1, 0)
    rec = audit_step(mlp, x, labels)
    assert rec.spurious_touches == 1 and rec.exact_touches == 1
    assert rec.gradient_changed  # ReLU'(0) = 1 passes the adjoint through units 0 and 1
    _, dout = softmax_xent_grad(fp.out, labels)
    g0, g1 = backward(mlp, fp, dout, "pytorch"), backward(mlp, fp, dout, "closed")
    assert g0[0][1][0] == 0 and g1[0][1][0] != 0  # the bias gradient of the spurious unit
    # the exact kink (unit 1, adjoint != 0, own bias): non-differentiable, re-verified
    assert rec.verdict.in_ndf is True and rec.verdict.reverified is True
    assert rec.mse_verdict is not None and rec.mse_verdict.in_ndf is True
    assert rec.clarke_certified and rec.rank_condition_exact is True


def test_missed_kink_classified() -> None:
    """A float pass that misses an exact kink (the float pre-activation is not on it)."""
    w = [np.array([[1.0, -1.0]]), np.array([[1.0]])]
    b = [np.array([0.0]), np.array([0.0])]
    x = np.array([[0.75, 0.75], [0.5, 0.25]])
    float_ys = [np.array([[2.0**-30], [0.0]])]  # row 0 misses its kink, row 1 touches spuriously
    t = classify_touches(w, b, "relu", x, float_ys)
    assert (t.n_missed, t.n_spurious, t.n_exact) == (1, 1, 0)
    assert t.exact_inputs[0][0] == [Fraction(3, 4), Fraction(3, 4)]


def test_filter_decides_far_units_without_exact_work() -> None:
    w = [np.array([[1.0, 1.0]]), np.array([[1.0]])]
    b = [np.array([0.5]), np.array([0.0])]
    x = np.array([[0.25, 0.5]])
    t = classify_touches(w, b, "hardtanh", x, [np.array([[1.25]])])
    assert t.exact_samples == 0 and t.n_float == 0


def test_rank_condition() -> None:
    m = [np.array([[True], [True]])]
    same = [np.array([[1.0, 2.0], [1.0, 2.0]])]
    diff = [np.array([[1.0, 2.0], [1.0, 3.0]])]
    assert rank_condition(m, same) is False  # [z, 1] rows equal: dependent
    assert rank_condition(m, diff) is True
    assert rank_condition([np.array([[True]])], [np.array([[0.0, 0.0]])]) is True  # the bias
    # the rank certificate needs proxies in [D-, D+]
    assert proxies_between("relu", "pytorch") and proxies_between("hardsigmoid", "pytorch")
    assert not proxies_between("relu", "value=2")


def test_snapshots_replay(tmp_path: Path) -> None:
    x, y = load_digits()
    mlp = init_mlp((64, 8, 10), "relu", "16", np.random.default_rng(3))
    snaps = []
    for i in range(3):
        SAVEZ(tmp_path / f"snap{i:02d}.npz", **mlp.state_dict())
        snaps.append(mlp.copy())
        mlp.weights[0] = (mlp.weights[0] * np.float16(0.5)).astype(np.float16)
    res = audit(source="snapshots", snapshots=str(tmp_path), precision="16", batch_size=16)
    assert res.totals()["steps"] == 3
    direct = [
        audit_step(b.mlp, b.x, b.labels, step=i, epoch=b.epoch)
        for i, b in enumerate(snapshot_batches(snaps, x, y, batch_size=16, seed=0))
        if b.mlp is not None
    ]
    assert [r.to_json() for r in res.records] == [r.to_json() for r in direct]
    one = audit(source="snapshots", snapshots=str(tmp_path / "snap01.npz"), precision="16")
    assert one.totals()["steps"] == 1
    SAVEZ(
        tmp_path / "f32.npz",
        **{"0.weight": np.full((10, 64), 0.1, np.float32), "0.bias": np.zeros(10, np.float32)},
    )
    with pytest.raises(ValueError, match="not representable in precision bf16"):
        audit(source="snapshots", snapshots=str(tmp_path / "f32.npz"), precision="bf16")


def test_onnx_vnnlib_source() -> None:
    specs = [str(MNISTFC / "prop_0_0.03.vnnlib"), str(MNISTFC / "prop_1_0.03.vnnlib")]
    res = audit(
        source="onnx", model=str(MNISTFC / "mnist-net_256x2.onnx"), specs=specs, precision="32"
    )
    log = res.to_json()
    assert log["steps"] == 2
    consistent(log)
    assert all(r["loss"] is None for r in log["records"])  # vector output, no labels


def tiny_specs() -> list[dict[str, Any]]:
    return bertoin_specs(2, widths=(4,), precisions=("16", "32"), batch_size=64, max_steps=4)


def test_dask_sweep_equals_serial() -> None:
    pytest.importorskip("dask.distributed", reason="dask.distributed is in the test extra")
    specs = tiny_specs() + iclr_specs(
        1, epochs=1, activations=("hardtanh",), hidden=(4, 4), batch_size=64, max_steps=2
    )
    serial = run_sweep(specs, run_spec)
    dask = run_sweep(specs, run_spec, mode="dask", workers=2, processes=False)
    assert serial == dask
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1, processes=False, dashboard_address=":0", silence_logs=50
    ) as cluster:  # an existing scheduler, by address
        assert (
            run_sweep(specs[:2], run_spec, mode="dask", scheduler=cluster.scheduler_address)
            == (serial[:2])
        )
    assert [r["key"] for r in serial] == [s["key"] for s in specs]
    table = bertoin_table(serial[:4], specs[:4])
    assert table["cells"]["16"]["4"]["runs"] == 2


def test_resume_skips_finished_runs(tmp_path: Path) -> None:
    specs = tiny_specs()
    results = tmp_path / "sweep.jsonl"
    calls: list[str] = []

    def counted(spec: dict[str, Any]) -> dict[str, Any]:
        calls.append(spec["key"])
        return run_spec(spec)

    first = run_sweep(specs[:2], counted, results=results)
    assert len(read_results(results)) == 2
    with open(results, "a") as fh:
        fh.write('{"key": "cut')  # an interrupted write: run again, not an error
    full = run_sweep(specs, counted, results=results)
    assert calls == [s["key"] for s in specs[:2]] + [s["key"] for s in specs[2:]]
    assert full[:2] == first and full == run_sweep(specs, run_spec)


def test_cli_audit_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit.json"
    png = tmp_path / "counts.png"
    argv = ["audit", "--hidden", "8", "--max-steps", "5", "-o", str(out)]
    if __import__("importlib").util.find_spec("matplotlib") is not None:
        argv += ["--plot", str(png)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "float kink touches" in text
    log = json.loads(out.read_text())
    assert REQUIRED <= set(log) and log["steps"] == 5
    if "--plot" in argv:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "--precision", "8"], "invalid choice"),
        (["audit", "table", "nope"], "expected 'table bertoin' or 'table iclr'"),
        (["audit", "model.onnx", "--spec", "a.vnnlib"], "no such file"),
        (["audit", "model.onnx"], "expected --spec"),
        (["audit", "--snapshots", "/nonexistent/x.npz"], "no such file"),
        (["audit", "--hidden", "8,0"], "expected widths >= 1"),
        (["audit", "--proxy", "nonsense"], "preset"),
        (["audit", "-o", "/proc/x.json"], "refusing to write there"),
    ],
)
def test_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_training_batches_deterministic() -> None:
    x, y = load_digits()
    a = [b.x for b in training_batches(x, y, batch_size=100, epochs=2, seed=5)]
    b = [b.x for b in training_batches(x, y, batch_size=100, epochs=2, seed=5)]
    assert len(a) == 2 * 17 and all(np.array_equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("precision", ["16", "bf16"])
def test_16bit_steps_round_once_per_operation(precision: str) -> None:
    """The binary32-then-round elementwise steps equal the 16-bit ufuncs bit for bit."""
    rng = np.random.default_rng(7)
    mlp = init_mlp((64, 16, 10), "hardsigmoid", precision, rng)
    dt = mlp.dtype
    grads = [(w * dt.type(0.37), b * dt.type(-1.5)) for w, b in zip(mlp.weights, mlp.biases)]
    naive = [
        (
            (w - (dt.type(0.05) * dw).astype(dt)).astype(dt),
            (b - (dt.type(0.05) * db).astype(dt)).astype(dt),
        )
        for (w, b), (dw, db) in zip(zip(mlp.weights, mlp.biases), grads)
    ]
    y = (rng.normal(size=(8, 16)) * 4).astype(dt)
    three, six = dt.type(3), dt.type(6)
    want = (np.minimum(np.maximum(y + three, dt.type(0)), six) / six).astype(dt)
    assert act_forward("hardsigmoid", y).tobytes() == want.tobytes()
    sgd(mlp, grads, 0.05)
    for (w, b), (nw, nb) in zip(zip(mlp.weights, mlp.biases), naive):
        assert w.tobytes() == nw.tobytes() and b.tobytes() == nb.tobytes()


def test_bench_rows_registered() -> None:
    from formal.bench.audit import audit_ratio
    from formal.bench.runner import load_rows

    names = {r.name: r.group for r in load_rows()}
    assert names["audit-step-mlp64-b32-binary32"] == "audit"
    row = audit_ratio("64", repeat=1)
    assert {"seconds", "baseline_seconds", "ratio", "detail"} <= set(row)
    assert row["ratio"] == pytest.approx(row["seconds"] / row["baseline_seconds"])
    assert "56 steps" in row["detail"]
