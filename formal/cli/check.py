"""``formal check``: the verdict at one parameter vector."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from formal.cli.common import add_network_args, dump_json, load_network, seconds, write_output
from formal.core.network import Network
from formal.engine.certificate import build_certificate, load_document
from formal.engine.outcome import Verdict
from formal.engine.subgradient import attach, subgradient
from formal.engine.verdict import check
from formal.errors import InvalidArgument, UnsupportedOp
from formal.examples import example_names, example_path
from formal.io.formalnet import from_dict
from formal.io.formalnet_write import to_formalnet
from formal.report.check import format_subgradient, format_verdict
from formal.verify.decide import DECIDE_PARAMS, Skipped, decide
from formal.verify.kernel import Rejected, verify
from formal.verify.lp import LPError

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
        help="write a formal-cert/1 certificate of the verdict (to -o FILE, or stdout); it "
        "embeds the network (ONNX/NNet/--params inputs exported to formal-net/1)",
    )
    p.add_argument(
        "--cross-check",
        action="store_true",
        help="re-decide the verdict with the independent kernel of formal verify and check "
        f"the engine's certificate (networks with at most {CROSS_CHECK_KINKS} kink nodes and "
        f"{DECIDE_PARAMS} parameters); exit 1 on a disagreement",
    )
    p.add_argument(
        "--subgradient",
        action="store_true",
        help="also give a certified generalized gradient: the gradient where f is "
        "differentiable, else a Bouligand element (with --certify: in the certificate)",
    )
    p.add_argument(
        "--prefer",
        choices=("ad", "any"),
        default="ad",
        help="with --subgradient: prefer AD's own value when it is a Bouligand element "
        "(default ad), or take any",
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
    sg = (
        subgradient(net, args.proxy, prefer=args.prefer, timeout=args.timeout, verdict=verdict)
        if args.subgradient
        else None
    )
    skip = sg is not None and args.certify and verdict.differentiable is None
    cert, cross = (None, None) if skip else _certify(args, net, verdict)
    if sg is not None and args.certify:
        cert = attach(cert, net, sg, args.proxy, None if cert else _document(args.net))
    if args.json:
        text = dump_json(
            {
                **verdict.to_json(),
                **({"input": note} if note else {}),
                **({"cross_check": cross} if cross is not None else {}),
                **({"subgradient": sg.to_json()} if sg is not None else {}),
            }
        )
    else:
        text = format_verdict(net, verdict)
        if note:  # right below the network line
            head, _, rest = text.partition("\n")
            text = f"{head}\ninput        {note}\n{rest}"
        if cross is not None:
            text = text.rstrip("\n") + "\n" + _cross_text(cross) + "\n"
        if sg is not None:
            text = text.rstrip("\n") + "\n\n" + format_subgradient(net, sg) + "\n"
    code = 1 if cross is not None and cross["agree"] is False else 0  # a disagreement
    if args.certify:  # the certificate goes to -o (or stdout), the verdict to stdout
        write_output(dump_json(cert), args.output)
        if args.output is not None:
            write_output(text, None)
        return code
    write_output(text, args.output)
    return code


def _certify(
    args: argparse.Namespace, net: Network, verdict: Verdict
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The certificate (--certify, or --cross-check on a small network) and the cross-check."""
    if not (args.certify or args.cross_check):
        return None, None
    doc = _json_document(args.net) if args.params is None else None
    exported = doc is None
    if exported and args.certify and getattr(args, "subgradient", False):
        raise InvalidArgument(  # the subgradient claim names the original parameters
            "cannot certify --subgradient of an ONNX/NNet/--params input: give a formal-net/1 "
            "file"
        )
    if doc is None:  # ONNX, NNet or --params: certify the network exported to formal-net/1
        try:
            doc = load_document(
                dump_json(to_formalnet(net, description=f"exported from {args.net}"))
            )
        except UnsupportedOp as exc:
            if args.certify:
                raise
            why = {"agree": None, "skipped": str(exc)}
            return None, {**why, "decision": dict(why)}
    cnet, cverdict = net, verdict
    cert = None
    small = verdict.kink_neurons <= CROSS_CHECK_KINKS and verdict.parameters <= DECIDE_PARAMS
    if args.certify or (verdict.differentiable is not None and small):
        if exported:  # the certificate names the exported parameters: re-check that network
            cnet = from_dict(doc, source=f"{args.net} (exported)")
            cverdict = check(cnet, args.proxy, timeout=args.timeout)
            if _words(cverdict) != _words(verdict):
                raise InvalidArgument(
                    f"cannot certify: the exported network's verdict ({_words(cverdict)}) "
                    f"differs from the verdict ({_words(verdict)})"
                )
        cert = build_certificate(cnet, doc, cverdict, args.proxy, timeout=args.timeout)
    if not args.cross_check:
        return cert, None
    cross = _cross_check(cverdict, cert)
    cross["verified"] = cross["agree"]  # the certificate check alone
    cross["decision"] = _decision(doc, args.proxy, verdict)
    votes = [cross["verified"], cross["decision"]["agree"]]
    cross["agree"] = False if False in votes else True if True in votes else None
    return cert, cross


def _words(verdict: Verdict) -> str:
    """The verdict in the kernel's words (``unknown`` when the engine did not decide)."""
    if verdict.differentiable is None:
        return "unknown"
    return {
        (True, True): "differentiable, AD correct",
        (True, False): "differentiable, AD incorrect",
        (False, False): "non-differentiable",
    }[(bool(verdict.differentiable), bool(verdict.ad_correct))]


def _decision(doc: dict[str, Any], proxy: str, verdict: Verdict) -> dict[str, Any]:
    """The kernel's own decision (formal/verify/decide.py) next to the engine's verdict."""
    try:
        d = decide(doc, proxy)
    except Skipped as exc:
        return {"agree": None, "skipped": str(exc)}
    except (InvalidArgument, UnsupportedOp, LPError) as exc:
        return {"agree": None, "skipped": f"cannot decide: {exc}"}
    engine = _words(verdict)
    return {
        "agree": None if engine == "unknown" else d.verdict == engine,
        "verdict": d.verdict,
        "engine": engine,
        "kinks": d.kinks,
        "patterns": d.patterns,
        "excluded": d.excluded,
    }


def _document(path: str) -> dict[str, Any]:
    doc = _json_document(path)
    if doc is None:
        raise InvalidArgument(
            f"cannot certify {path}: certificates embed a formal-net/1 JSON network"
        )
    return doc


def _json_document(path: str) -> dict[str, Any] | None:
    """The formal-net/1 document of a JSON file or example (None for ONNX/NNet)."""
    p = Path(path)
    if not p.exists() and path in example_names():
        p = example_path(path)
    if p.suffix.lower() != ".json":
        return None
    return load_document(p.read_text())


def _cross_check(verdict: Verdict, cert: dict[str, Any] | None) -> dict[str, Any]:
    """The kernel's verdict on the engine's certificate, and whether it agrees."""
    if verdict.differentiable is None:
        return {"agree": None, "skipped": "the verdict is unknown"}
    if cert is None:
        return {
            "agree": None,
            "skipped": f"more than {CROSS_CHECK_KINKS} kink nodes ({verdict.kink_neurons}) "
            f"or {DECIDE_PARAMS} parameters ({verdict.parameters})",
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
    if "kernel" not in cross:
        line = f"cross-check  skipped ({cross['skipped']})"
    else:
        line = f"cross-check  kernel says {cross['kernel']}: " + (
            "agrees" if cross["verified"] else "DISAGREES"
        )
    dec = cross["decision"]
    if "verdict" not in dec:
        return line + f"\ncross-check  kernel decision skipped ({dec['skipped']})"
    word = {True: "agree", False: "DISAGREE", None: "nothing to compare"}[dec["agree"]]
    return line + (
        f"\ncross-check  kernel decides {dec['verdict']} (engine: {dec['engine']}): {word}"
    )
