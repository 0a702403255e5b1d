"""``formal check``: the verdict at one parameter vector."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from formal.core.network import Network
from formal.errors import InputFileError, InvalidArgument


def load_network(
    path: str, *, params: str | None = None, input: str | None = None, spec: str | None = None
) -> Network:
    """Load a network file by its suffix (formal-net JSON, ONNX, NNet) or a built-in example name."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.exists():
        from formal.examples import example_names, example_path

        if path in example_names():
            p, suffix = example_path(path), ".json"
        else:
            raise InputFileError(
                f"{path}: no such file (nor a built-in example: {', '.join(example_names())})"
            )
    if suffix == ".json":
        if input is not None or spec is not None:
            raise InvalidArgument(
                f"{path}: --input/--spec apply to ONNX and NNet models; formal-net JSON carries its inputs"
            )
        from formal.io.formalnet import load

        return load(p, params=params)
    loaders = {".onnx": "formal.io.onnx", ".nnet": "formal.io.nnet"}
    if suffix in loaders:
        if params is not None:
            raise InvalidArgument(
                f"{path}: --params applies to formal-net JSON; {suffix} files carry their parameters"
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
        f"{path}: expected a .json (formal-net/1), .onnx or .nnet file, got suffix {suffix or '(none)'!r}"
    )


def add_network_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "net", help="formal-net/1 JSON, ONNX or NNet file, or a built-in example name"
    )
    parser.add_argument(
        "--params", help="parameters as .npz (state_dict names; dtype must match the format)"
    )
    parser.add_argument("--input", help="ONNX/NNet: center|lo|hi of the --spec box, or a .npy file")
    parser.add_argument("--spec", help="ONNX/NNet: a VNN-LIB file whose input box gives --input")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check", help="decide differentiability and AD correctness at the given parameters"
    )
    add_network_args(p)
    p.add_argument(
        "--proxy",
        default="pytorch",
        help="proxy preset: pytorch, pytorch-2.6, pytorch-2.13, jax, tensorflow, left, right, lambda=<t>, value=<p> (optionally ,tie=first|last)",
    )
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.add_argument(
        "--gradient", action="store_true", help="also compute and print the exact gradient"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="solver time-out in seconds (default 60)"
    )
    p.add_argument("-o", "--output", help="write the output to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from formal.cli.main import dump_json, write_output
    from formal.engine.verdict import check
    from formal.report.check import format_verdict

    if args.timeout <= 0:
        raise InvalidArgument(f"expected a positive --timeout, got {args.timeout}")
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    verdict = check(net, args.proxy, gradient=args.gradient, timeout=args.timeout)
    if args.json:
        text = dump_json(verdict.to_json())
    else:
        text = format_verdict(net, verdict)
    write_output(text, args.output)
    return 0
