"""The formal-net/1 loader at library level.

Exact number parsing, and one clear error per bad input.

Every error is a FormalError (an InvalidArgument) whose message names the
file and the field; the CLI's exit-code behaviour is tested in test_cli.py.
"""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from formal.errors import FormalError, InputFileError, InvalidArgument
from formal.examples import example_names, load_example
from formal.io.formalnet import from_dict, load

F = Fraction
BASE: dict[str, Any] = {
    "format": "formal-net/1",
    "numbers": "binary32",
    "inputs": [[1, "1/2"]],
    "layers": [
        {"type": "dense", "units": 2, "bias": True, "activation": "relu"},
        {"type": "dense", "units": 1, "bias": False},
    ],
    "params": {"0.weight": [[1, 2], [3, 4]], "0.bias": [0, 0], "1.weight": [[1, 1]]},
}


DELETE = object()


def savez(path: Any, arrays: dict[str, Any]) -> None:
    """np.savez with arrays named like parameters ("0.weight" is no Python identifier)."""
    np.savez(path, **arrays)


def mod(**changes) -> dict:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        keys = path.split("__")
        tgt: Any = doc
        for k in keys[:-1]:
            tgt = tgt[int(k)] if isinstance(tgt, list) else tgt[k]
        last: str | int = int(keys[-1]) if isinstance(tgt, list) else keys[-1]
        if value is DELETE:
            del tgt[last]
        else:
            tgt[last] = value
    return doc


# (document, field named in the message, text in the message)
BAD = {
    "format": (mod(format="formal-net/2"), "format", "expected 'formal-net/1'"),
    "numbers": (mod(numbers="binary31"), "numbers", "expected a number format"),
    "no-inputs": (mod(inputs=DELETE), "inputs", "input minibatch"),
    "empty-inputs": (mod(inputs=[]), "inputs", "expected a 2-D array"),
    "ragged-inputs": (mod(inputs=[[1, 2], [1]]), "inputs", "rectangular"),
    "nan-input": (mod(inputs=[["nan", 1]]), "inputs[0,0]", "NaN/inf"),
    "bool-input": (mod(inputs=[[True, 1]]), "inputs[0,0]", "expected a number"),
    "no-layers": (mod(layers=[]), "layers", "non-empty list"),
    "layer-type": (mod(layers__0__type="dens"), "layers[0].type", "got 'dens'"),
    "units": (mod(layers__0__units=0), "layers[0].units", "positive integer"),
    "bool-units": (mod(layers__0__units=True), "layers[0].units", "positive integer"),
    "bias-flag": (mod(layers__0__bias="yes"), "layers[0].bias", "true or false"),
    "missing-weight": (mod(**{"params__0.weight": DELETE}), "params.0.weight", "missing"),
    "missing-bias": (mod(**{"params__0.bias": DELETE}), "params.0.bias", "missing"),
    "shape": (
        mod(**{"params__0.weight": [[1, 2, 3], [3, 4, 5]]}),
        "params.0.weight",
        "expected shape (2, 2)",
    ),
    "extra-param": (mod(**{"params__5.weight": [[1]]}), "params.5.weight", "unknown name"),
    "no-params": (mod(params=DELETE), "params", "--params FILE.npz"),
    "not-member": (
        mod(**{"params__0.bias": ["0.1", 0]}),
        "params.0.bias[0]",
        "expected a member of binary32, got 1/10 (nearest members: "
        "0x1.999998p-4 = 3355443/33554432 and "
        "0x1.99999ap-4 = 13421773/134217728)",
    ),
    "not-member-e4m3": (
        mod(numbers="e4m3", **{"params__0.bias": [1000, 0]}),
        "params.0.bias[0]",
        "0x1.cp+8 = 448",
    ),
    "subnormal-below": (mod(**{"params__0.bias": ["0x1p-150", 0]}), "params.0.bias[0]", "0x1p-149"),
    "trainable-type": (mod(trainable="0.weight"), "trainable", "list of parameter names"),
    "trainable-name": (mod(trainable=["9.bias"]), "trainable", "got '9.bias'"),
    "tied-type": (mod(tied=5), "tied", "list of tie groups"),
    "tied-short": (mod(tied=[["0.weight[0,0]"]]), "tied[0]", "at least two entries"),
    "tied-name": (
        mod(tied=[["7.weight[0,0]", "0.weight[1,1]"]]),
        "tied[0]",
        "expected a parameter name",
    ),
    "tied-index": (
        mod(tied=[["0.weight[0,2]", "0.weight[1,1]"]]),
        "tied[0]",
        "expected an index of 0.weight",
    ),
    "tied-values": (mod(tied=[["0.weight[0,0]", "0.weight[1,1]"]]), "tied[0]", "equal values"),
    "tied-frozen": (
        mod(tied=[["0.weight[0,0]", "1.weight[0,0]"]], trainable=["0.weight"]),
        "tied[0]",
        "frozen '1.weight'",
    ),
    "objective-type": (mod(objective={"type": "mean"}), "objective.type", "got 'mean'"),
    "objective-form": (mod(objective="sum"), "objective", "with a 'type'"),
    "objective-shape": (
        mod(objective={"type": "weighted_sum", "weights": [[1, 2]]}),
        "objective.weights",
        "(1, 1)",
    ),
    "activation-name": (
        mod(layers__0__activation="gelu"),
        "layers[0].activation",
        "got activation='gelu'",
    ),
    "activation-param": (
        mod(layers__0__activation={"name": "relu", "slope": "1/2"}),
        "layers[0].activation",
        "'slope'",
    ),
    "activation-object": (
        mod(layers__0__activation={"slope": "1/2"}),
        "layers[0].activation",
        "with a 'name'",
    ),
    "activation-type": (mod(layers__0__activation=3), "layers[0].activation", "name or object"),
    "hardtanh-bounds": (
        mod(layers__0__activation={"name": "hardtanh", "min": 1, "max": -1}),
        "layers[0].activation",
        "min < max",
    ),
    "proxy-per-kink": (
        mod(layers__0__activation={"name": "relu6", "proxy": ["0"]}),
        "layers[0].activation",
        "one per kink",
    ),
    "proxy-per-unit": (
        mod(layers__0__activation={"name": "relu", "proxy": [["0"], ["1"], ["1"]]}),
        "layers[0].activation.proxy",
        "one proxy per unit (2)",
    ),
    "proxy-preset": (
        mod(layers__0__activation={"name": "relu", "proxy": "torch"}),
        "layers[0].activation",
        "proxy='torch'",
    ),
    "layer-object": (mod(layers__0="dense"), "layers[0]", "layer object"),
    "number-text": (mod(**{"params__0.bias": ["abc", 0]}), "params.0.bias[0]", "hex float"),
    "number-null": (mod(**{"params__0.bias": [None, 0]}), "params.0.bias[0]", "got null"),
    "exponent": (mod(**{"params__0.bias": ["1e999999999", 0]}), "params.0.bias[0]", "exponent"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_document_gives_one_clear_error(name):
    doc, field, text = BAD[name]
    with pytest.raises(InvalidArgument) as info:
        from_dict(doc, source="net.json")
    msg = str(info.value)
    assert msg.startswith(f"net.json: field '{field}': "), msg
    assert text in msg, msg
    assert "\n" not in msg


def test_top_level_must_be_an_object():
    with pytest.raises(InvalidArgument, match="expected a JSON object"):
        from_dict([], source="x.json")


def test_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="cannot read"):
        load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "formal-net/1",')
    with pytest.raises(InputFileError, match="not valid JSON"):
        load(bad)
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(BASE).replace('"1/2"', "NaN"))
    with pytest.raises(InputFileError, match="NaN"):
        load(nan)


def test_numbers_are_read_exactly(tmp_path):
    """JSON decimals are read from their text (0.1 is 1/10, not the nearest double).

    Hex and p/q strings too.
    """
    doc = copy.deepcopy(BASE)
    doc["inputs"] = [[0.1, "-2/3"]]
    doc["params"]["0.bias"] = ["0x1.8p-3", "-0x1p-149"]
    doc["params"]["0.weight"] = [[0.5, 1.25], ["3", "1e2"]]
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc).replace("0.1,", "0.1000,"))
    net = load(path)
    assert net.inputs.to_fractions().tolist() == [[F(1, 10), F(-2, 3)]]
    assert net.params["0.bias"].to_fractions().tolist() == [F(3, 16), -F(1, 2**149)]
    assert net.params["0.weight"].to_fractions().tolist() == [[F(1, 2), F(5, 4)], [F(3), F(100)]]


def test_frozen_parameters_need_not_be_members():
    doc = mod(**{"params__0.bias": ["1/3", 0]}, trainable=["0.weight", "1.weight"])
    net = from_dict(doc)
    assert net.params["0.bias"].to_fractions().tolist() == [F(1, 3), F(0)]
    assert net.trainable == ("0.weight", "1.weight")


def test_params_from_npz(tmp_path):
    doc = mod(params=DELETE)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    npz = tmp_path / "p.npz"
    savez(
        npz,
        {
            "0.weight": np.array([[1, 2], [3, 0.1]], dtype=np.float32),
            "0.bias": np.zeros(2, np.float32),
            "1.weight": np.ones((1, 2), np.float32),
        },
    )
    net = load(path, params=npz)
    assert net.params["0.weight"].item((1, 1)) == F(
        np.float32(0.1).item()
    )  # the float32 value, exactly
    wrong = tmp_path / "w.npz"
    savez(wrong, {"0.weight": np.zeros((2, 2)), "0.bias": np.zeros(2), "1.weight": np.ones((1, 2))})
    with pytest.raises(InvalidArgument, match="expected dtype float32"):
        load(path, params=wrong)
    with pytest.raises(InputFileError, match="cannot read as .npz"):
        load(path, params=tmp_path / "nope.npz")
    nan = tmp_path / "nan.npz"
    savez(
        nan,
        {
            "0.weight": np.array([[1, 2], [3, np.nan]], dtype=np.float32),
            "0.bias": np.zeros(2, np.float32),
            "1.weight": np.ones((1, 2), np.float32),
        },
    )
    with pytest.raises(FormalError):
        load(path, params=nan)
    e4 = tmp_path / "e4.npz"
    doc8 = dict(doc, numbers="e4m3")
    (tmp_path / "n8.json").write_text(json.dumps(doc8))
    savez(
        e4,
        {
            "0.weight": np.array([[1, 2], [3, 448]], dtype=ml_dtypes.float8_e4m3fn),
            "0.bias": np.zeros(2, ml_dtypes.float8_e4m3fn),
            "1.weight": np.ones((1, 2), ml_dtypes.float8_e4m3fn),
        },
    )
    try:
        net8 = load(tmp_path / "n8.json", params=e4)
    except (
        InvalidArgument
    ) as exc:  # npz cannot always store ml_dtypes; then the loader must say so cleanly
        assert "dtype" in str(exc)
    else:
        assert net8.params["0.weight"].item((1, 1)) == 448


def test_tied_entries_must_be_consistent_at_first_use():
    doc = mod(tied=[["0.weight[0,0]", "-0.weight[0,0]"]], **{"params__0.weight": [[0, 2], [3, 4]]})
    net = from_dict(doc)  # values agree (0 = -0) ...
    with pytest.raises(
        InvalidArgument, match="tie signs"
    ):  # ... but w = -w leaves no free parameter
        net.parameterization()


@pytest.mark.parametrize("name", example_names())
def test_examples_load(name):
    net = load_example(name)
    assert net.param_count() >= 1 and net.source.endswith(f"{name}.json")
