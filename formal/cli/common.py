"""What the command modules share: loading the network, its options, writing the output."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from formal.core.network import Network
from formal.errors import InputFileError, InvalidArgument
from formal.examples import example_names, example_path
from formal.io.formalnet import load


def load_network(
    path: str, *, params: str | None = None, input: str | None = None, spec: str | None = None
) -> Network:
    """Load a network file by its suffix (formal-net JSON, ONNX, NNet) or a built-in example."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.exists():
        if path in example_names():
            p, suffix = example_path(path), ".json"
        else:
            raise InputFileError(
                f"{path}: no such file (nor a built-in example: {', '.join(example_names())})"
            )
    if suffix == ".json":
        if input is not None or spec is not None:
            raise InvalidArgument(
                f"{path}: --input/--spec apply to ONNX and NNet models; "
                "formal-net JSON carries its inputs"
            )
        return load(p, params=params)
    loaders = {".onnx": "formal.io.onnx", ".nnet": "formal.io.nnet"}
    if suffix in loaders:
        if params is not None:
            raise InvalidArgument(
                f"{path}: --params applies to formal-net JSON; "
                f"{suffix} files carry their parameters"
            )
        try:
            module: Any = importlib.import_module(loaders[suffix])
        except ModuleNotFoundError as exc:  # pragma: no cover - optional loader missing
            raise InvalidArgument(
                f"{path}: no loader for {suffix} files in this build ({exc})"
            ) from None
        kwargs: dict[str, Any] = {}
        if input is not None:
            kwargs["input"] = input
        if spec is not None:
            kwargs["spec"] = spec
        return module.load(p, **kwargs)
    raise InvalidArgument(
        f"{path}: expected a .json (formal-net/1), .onnx or .nnet file, "
        f"got suffix {suffix or '(none)'!r}"
    )


def add_network_args(parser: argparse.ArgumentParser) -> None:
    """The options naming the network: file or example, --params, --input, --spec."""
    parser.add_argument(
        "net", help="formal-net/1 JSON, ONNX or NNet file, or a built-in example name"
    )
    parser.add_argument(
        "--params", help="parameters as .npz (state_dict names; dtype must match the format)"
    )
    parser.add_argument("--input", help="ONNX/NNet: center|lo|hi of the --spec box, or a .npy file")
    parser.add_argument("--spec", help="ONNX/NNet: a VNN-LIB file whose input box gives --input")


def write_output(text: str, path: str | None) -> None:
    """Write all at once (to a file or stdout): never half a result."""
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    else:
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")


def dump_json(obj: Any) -> str:
    """The JSON text of every ``--json`` output (indented, keys in insertion order)."""
    return json.dumps(obj, indent=2, sort_keys=False)


__all__ = ["add_network_args", "dump_json", "load_network", "write_output"]
