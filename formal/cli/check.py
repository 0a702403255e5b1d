"""``formal check``: the verdict at one parameter vector."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from formal.cli.common import add_network_args, dump_json, load_network, seconds, write_output
from formal.core.network import Network
from formal.engine.certificate import build_certificate, load_document
from formal.engine.outcome import Verdict
from formal.engine.verdict import check
from formal.errors import InvalidArgument
from formal.examples import example_names, example_path
from formal.report.check import format_verdict
from formal.verify.kernel import Rejected, verify

CROSS_CHECK_KINKS = 12
"""--cross-check runs on networks with at most this many kink nodes (else it says skipped)."""


def register(sub: Any) -> None:
    """Add ``formal check`` to the subcommands."""
    p = sub.add_parser(
        "check", help="decide differentiability and AD correctness at the given parameters"
    )
    add_network_args(p)
    p.add_argument(
        "--proxy",
        default="pytorch",
        help="proxy preset: pytorch, pytorch-2.6, pytorch-2.13, jax, tensorflow, left, right, "
        "lambda=<t>, value=<p> (optionally ,tie=first|last)",
    )
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.add_argument(
        "--gradient", action="store_true", help="also compute and print the exact gradient"
    )
    p.add_argument(
        "--timeout", type=seconds, default=60.0, help="solver time-out in seconds (default 60)"
    )
    p.add_argument(
        "-o",
        "--output",
        help="write the output to this file instead of stdout (with --certify: the certificate)",
    )
    p.add_argument(
        "--certify",
        action="store_true",
        help="write a formal-cert/1 certificate of the verdict (to -o FILE, or stdout); "
        "formal-net/1 JSON or a built-in example only",
    )
    p.add_argument(
        "--cross-check",
        action="store_true",
        help="re-check the verdict with the independent kernel of formal verify "
        f"(networks with at most {CROSS_CHECK_KINKS} kink nodes)",
    )
    p.set_defaults(func=run)


def input_note(path: str, *, input: Any = None, spec: Any = None) -> str | None:
    """Which input an ONNX/NNet model was checked at (None for formal-net JSON, which has its own).

    Without ``--spec``/``--input`` the loaders use an all-zeros input; the
    text output and the JSON (``"input"``) say so.
    """
    if Path(str(path)).suffix.lower() not in (".onnx", ".nnet"):
        return None
    if input is None and spec is None:
        return "zeros (no --spec/--input given)"
    if input is None:
        return f"center of the --spec box of {spec} (no --input given)"
    if isinstance(input, str) and input in ("center", "lo", "hi"):
        return f"{input} of the --spec box of {spec}"
    return f"{input} (--input)" if isinstance(input, (str, Path)) else "the given input array"


def run(args: argparse.Namespace) -> int:
    """``formal check``: print the verdict (text or JSON); exit code 0."""
    if args.timeout <= 0:
        raise InvalidArgument(f"expected a positive --timeout, got {args.timeout}")
    net = load_network(args.net, params=args.params, input=args.input, spec=args.spec)
    note = input_note(args.net, input=args.input, spec=args.spec)
    verdict = check(net, args.proxy, gradient=args.gradient, timeout=args.timeout)
    cert, cross = _certify(args, net, verdict)
    if args.json:
        text = dump_json(
            {
                **verdict.to_json(),
                **({"input": note} if note else {}),
                **({"cross_check": cross} if cross is not None else {}),
            }
        )
    else:
        text = format_verdict(net, verdict)
        if note:  # right below the network line
            head, _, rest = text.partition("\n")
            text = f"{head}\ninput        {note}\n{rest}"
        if cross is not None:
            text = text.rstrip("\n") + "\n" + _cross_text(cross) + "\n"
    if args.certify:  # the certificate goes to -o (or stdout), the verdict to stdout
        write_output(dump_json(cert), args.output)
        if args.output is not None:
            write_output(text, None)
        return 0
    write_output(text, args.output)
    return 0


def _certify(
    args: argparse.Namespace, net: Network, verdict: Verdict
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The certificate (--certify, or --cross-check on a small network) and the cross-check."""
    if not (args.certify or args.cross_check):
        return None, None
    if args.params is not None:
        raise InvalidArgument("cannot certify with --params: a certificate embeds the JSON file")
    cert = None
    if args.certify or (
        verdict.differentiable is not None and verdict.kink_neurons <= CROSS_CHECK_KINKS
    ):
        cert = build_certificate(
            net, _document(args.net), verdict, args.proxy, timeout=args.timeout
        )
    return cert, (_cross_check(verdict, cert) if args.cross_check else None)


def _document(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.exists() and path in example_names():
        p = example_path(path)
    if p.suffix.lower() != ".json":
        raise InvalidArgument(
            f"cannot certify {path}: certificates embed a formal-net/1 JSON network"
        )
    return load_document(p.read_text())


def _cross_check(verdict: Verdict, cert: dict[str, Any] | None) -> dict[str, Any]:
    """The kernel's verdict on the engine's certificate, and whether it agrees."""
    if verdict.differentiable is None:
        return {"agree": None, "skipped": "the verdict is unknown"}
    if cert is None:
        return {
            "agree": None,
            "skipped": f"more than {CROSS_CHECK_KINKS} kink nodes ({verdict.kink_neurons})",
        }
    try:
        res = verify(cert)
    except Rejected as exc:
        if cert.get("verdict") == "too-large":
            return {"agree": None, "skipped": str(exc)}
        return {"agree": False, "kernel": f"rejected: {exc}"}
    except InvalidArgument as exc:
        return {"agree": None, "skipped": f"cannot verify: {exc}"}
    expected = {
        (True, True): "differentiable, AD correct",
        (True, False): "differentiable, AD incorrect",
        (False, False): "non-differentiable",
    }[(bool(verdict.differentiable), bool(verdict.ad_correct))]
    return {"agree": res.verdict == expected, "kernel": res.verdict}


def _cross_text(cross: dict[str, Any]) -> str:
    if cross["agree"] is None:
        return f"cross-check  skipped ({cross['skipped']})"
    return f"cross-check  kernel says {cross['kernel']}: " + (
        "agrees" if cross["agree"] else "DISAGREES"
    )
