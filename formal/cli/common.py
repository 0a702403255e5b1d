"""What the command modules share: loading the network, its options, writing the output."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from formal.core.network import Network
from formal.errors import InputFileError, InvalidArgument
from formal.examples import example_names, example_path
from formal.io.formalnet import load
from formal.io.limits import MAX_TIMEOUT_SECONDS


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


_SYSTEM_TREES = ("/proc", "/sys", "/dev")


def check_output_path(path: str | None) -> None:
    """Refuse an ``-o`` target that is not a regular file or a new path in an existing folder.

    Called before any work (so a long run is not wasted) and again when writing.
    """
    if path is None:
        return
    if not path.strip():
        raise InvalidArgument("-o: expected a file path, got an empty one")
    p = Path(path)
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise InvalidArgument(f"-o {path}: cannot resolve the path ({exc})") from None
    if any(str(resolved) == t or str(resolved).startswith(t + "/") for t in _SYSTEM_TREES):
        raise InvalidArgument(
            f"-o {path}: expected a regular file, got a path under /{resolved.parts[1]} (a "
            "system file system): refusing to write there"
        )
    try:
        st = os.stat(p)  # follows symlinks: the target is what would be replaced
    except FileNotFoundError:
        if os.path.islink(p):
            raise InvalidArgument(
                f"-o {path}: expected a regular file, got a dangling symlink"
            ) from None
        parent = p.parent
        if not parent.is_dir():
            raise InvalidArgument(
                f"-o {path}: the folder {str(parent)!r} does not exist (create it first)"
            ) from None
        return
    except OSError as exc:
        raise InvalidArgument(f"-o {path}: cannot inspect the target: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a folder"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket or special file"
        )
        via = " (through a symlink)" if os.path.islink(p) else ""
        raise InvalidArgument(
            f"-o {path}: expected a regular file or a new path, got {kind}{via}: refusing to "
            "replace it"
        )


def write_output(text: str, path: str | None) -> None:
    """Write all at once (to a file or stdout): never half a result, never a non-file replaced.

    A file target is written to a uniquely named temporary file in its own
    folder, then renamed over the target (atomic on POSIX); the temporary
    file is removed on any failure.  A symlink to a regular file is written
    through (its target is replaced, the link kept).
    """
    if path is None:
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")
        return
    check_output_path(path)
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except OSError as exc:
        raise InvalidArgument(f"-o {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def seconds(text: str) -> float:
    """The ``type=`` of ``--timeout``: a positive, finite number of seconds within the limit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_SECONDS):
        raise argparse.ArgumentTypeError(
            f"expected a positive --timeout in seconds (finite, at most {MAX_TIMEOUT_SECONDS:g}), "
            f"got {text!r}"
        )
    return value


def dump_json(obj: Any) -> str:
    """The JSON text of every ``--json`` output (indented, keys in insertion order)."""
    return json.dumps(obj, indent=2, sort_keys=False)


__all__ = [
    "add_network_args",
    "check_output_path",
    "dump_json",
    "load_network",
    "seconds",
    "write_output",
]
