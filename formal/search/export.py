"""SMT-LIB2 export of the search queries, and the ``encodings/`` benchmark set.

:func:`export_query` writes the *first* proposal query of ``formal search``
(no blocked models): for kink/ndf/inc the exact bit-vector encoding in the
search format with its necessary condition (:class:`~formal.smt.queries.ExactQuery`),
for spurious-kink/missed-kink the rounded FP encoding against the exact one
(:class:`~formal.smt.queries.RoundedQuery`).  The status line is the answer
of z3 on the re-parsed text (``unknown`` when z3 times out).

:data:`BENCHMARKS` lists the files of ``encodings/`` (each one ``formal
export-smt`` invocation); :func:`generate` rewrites them.  Run
``python -m formal.smt.export encodings`` to regenerate.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import z3

from formal.core.network import Network
from formal.core.rebuild import with_groups
from formal.engine.verdict import check
from formal.examples import load_example
from formal.search.options import SearchOptions, search_domain
from formal.search.search import SearchRun
from formal.smt.fp import choose_search_format
from formal.smt.queries import checked, touch_values

__all__ = [
    "Export",
    "export_query",
    "solve_text",
    "solve_with",
    "BENCHMARKS",
    "generate",
    "Benchmark",
]


@dataclass(frozen=True, slots=True)
class Export:
    """An exported query: its SMT-LIB2 text, z3's status on it, z3's seconds, the logic."""

    text: str
    status: str  # sat | unsat | unknown (z3 on the re-parsed text)
    seconds: float
    logic: str

    def to_json(self) -> dict[str, Any]:
        """The export as JSON: logic, z3's status and seconds, the SMT-LIB2 text."""
        return {
            "logic": self.logic,
            "status": self.status,
            "seconds": round(self.seconds, 6),
            "text": self.text,
        }


def _query(net: Network, opt: SearchOptions) -> tuple[Any, str]:
    s = SearchRun(net, opt)
    q: Any
    if opt.find in ("spurious-kink", "missed-kink"):
        dom, _ = s.rounded_domain()
        q = s.rounded_query(dom)
        space = s.space(dom)
    else:
        fmt = choose_search_format(s.target, opt.search_format)
        dom = search_domain(fmt, s.dom)
        q = s.exact_query(dom)
        space = s.space(dom)
    return q, space


def solve_text(text: str, timeout: float = 60.0) -> tuple[str, float]:
    """z3's answer on SMT-LIB2 text (parsed afresh): sat | unsat | unknown, seconds."""
    s = z3.SolverFor("QF_FPBV")
    s.from_string(text)
    s.set("timeout", int(timeout * 1000))
    t0 = time.perf_counter()
    r = checked(s, int(timeout * 1000))
    return str(r), time.perf_counter() - t0


def _run_rounds(net: Network, opt: SearchOptions, q: object, rounds: int, timeout: float) -> int:
    """Replay formal search's CEGIS rounds: verify each model exactly, block non-witnesses."""
    s = SearchRun(net, opt)
    done = 0
    for _ in range(rounds):
        status, values = q.propose(int(timeout * 1000))  # type: ignore[attr-defined]
        if status != "sat" or values is None:
            break
        net2 = with_groups(s.base, values, numbers=s.target)
        if opt.find in ("spurious-kink", "missed-kink"):
            ok = touch_values(net2, s.target, s.preset, opt.order, opt.find) is not None
        else:
            v = check(net2, s.preset)
            ok = {"kink": v.kink_neurons > 0, "ndf": v.in_ndf is True, "inc": v.in_inc is True}[
                opt.find
            ]
        if ok:
            break
        q.block()  # type: ignore[attr-defined]
        done += 1
    return done


def solve_with(solver: str, path: str | Path, timeout: float = 60.0) -> tuple[str, float]:
    """Answer of an optional solver (``cvc5`` or ``bitwuzla``, the ``[solvers]`` extra) on a
    benchmark file: sat | unsat | unknown, or ``unsupported: ...`` when the solver rejects
    the input (e.g. FP sorts other than Float16/32/64 in bitwuzla's default build)."""
    text = Path(path).read_text()
    t0 = time.perf_counter()
    if solver == "cvc5":
        import cvc5

        tm = cvc5.TermManager()
        slv = cvc5.Solver(tm)
        slv.setOption("fp-exp", "true")  # FP sorts other than Float32/64 (e.g. FP(4,4))
        slv.setOption("tlimit-per", str(int(timeout * 1000)))
        parser = cvc5.InputParser(slv)
        parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, str(path))
        sm = parser.getSymbolManager()
        answers = []
        while True:
            cmd = parser.nextCommand()
            if cmd.isNull():
                break
            out = cmd.invoke(slv, sm).strip()
            if out:
                answers.append(out)
        last = answers[-1] if answers else "unknown"
        if last.startswith("(error"):
            return "unsupported: " + last, time.perf_counter() - t0
        return last, time.perf_counter() - t0
    if solver == "bitwuzla":
        import bitwuzla

        tm = bitwuzla.TermManager()
        opts = bitwuzla.Options()
        opts.set(bitwuzla.Option.TIME_LIMIT_PER, int(timeout * 1000))
        parser = bitwuzla.Parser(tm, opts)
        try:
            parser.parse(str(path), True, True)
            result = parser.bitwuzla().check_sat()
        except bitwuzla.BitwuzlaException as exc:
            return "unsupported: " + str(exc).splitlines()[0], time.perf_counter() - t0
        name = str(result).split(".")[-1].lower()
        return name, time.perf_counter() - t0
    raise ValueError(f"expected solver cvc5 or bitwuzla, got {solver!r}")


def export_query(
    net: Network,
    opt: SearchOptions,
    *,
    source: str = "",
    timeout: float = 60.0,
    after_search: int = 0,
    command: str | None = None,
) -> Export:
    """The SMT-LIB2 text of the query, with ``(set-info :status ...)`` confirmed by z3.

    ``after_search = N``: first replay up to N rounds of the search (each model
    verified exactly and blocked when it is no witness), then export: when the
    search was exhaustive the exported query is UNSAT.
    """
    q, space = _query(net, opt)
    blocked = _run_rounds(net, opt, q, after_search, timeout) if after_search else 0
    fresh = z3.Solver()  # a solver that never ran: its sexpr is declarations + assertions only
    fresh.add(q.solver.assertions())  # type: ignore[attr-defined]
    body = fresh.sexpr()
    logic = "QF_BVFP" if ("FloatingPoint" in body or "fp." in body or "to_fp" in body) else "QF_BV"
    core = f"(set-logic {logic})\n{body}(check-sat)\n(exit)\n"
    status, seconds = solve_text(core, timeout)
    info = [
        f"formal export-smt {command}"
        if command
        else f"formal export-smt {source} --query {opt.find}".strip(),
        f"numbers={s_name(net, opt)} proxy={opt.proxy} order={opt.order}",
        f"condition: {q.condition}",  # type: ignore[attr-defined]
        f"encoding: {q.describe()}",  # type: ignore[attr-defined]
        f"space: {space}",
        f"status by z3 {z3.get_version_string()}",
    ] + (
        [f"after the search: {blocked} verified non-witness model(s) blocked"]
        if after_search
        else []
    )
    header = "".join(f"; {line}\n" for line in info)
    src = " ".join(info[:2]).replace("|", "/").replace("\\", "/")
    text = (
        header
        + "(set-info :smt-lib-version 2.6)\n"
        + f"(set-info :source |{src}|)\n"
        + '(set-info :category "industrial")\n'
        + f"(set-info :status {status})\n"
        + core
    )
    return Export(text, status, seconds, logic)


def s_name(net: Network, opt: SearchOptions) -> str:
    n = opt.numbers
    return n.name if hasattr(n, "name") else str(n or net.numbers.name)  # type: ignore[union-attr]


# ---------------------------------------------------------------------------
# The benchmark set


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One file of encodings/: an example network and the export-smt options."""

    example: str
    query: str
    proxy: str = "pytorch"
    numbers: str | None = None
    search_format: str | None = None
    fix: tuple[str, ...] = ()
    lo: Fraction | None = None
    hi: Fraction | None = None
    after_search: int = 0

    @property
    def filename(self) -> str:
        """The file name under ``encodings/``: example, query, proxy, format, fixes, final."""
        parts = [self.example, self.query]
        if self.query in ("ndf", "inc"):
            parts.append(self.proxy)
        parts.append(self.search_format or self.numbers or "default")
        if self.fix:
            parts.append("fixed-" + "-".join(f.split("=")[0].replace(".", "") for f in self.fix))
        if self.after_search:
            parts.append("final")
        return (
            ".".join(p.replace("(", "").replace(")", "").replace(",", "-") for p in parts) + ".smt2"
        )

    def argv(self) -> list[str]:
        """The ``formal export-smt`` arguments that write this benchmark."""
        out = [self.example, "--query", self.query, "--proxy", self.proxy]
        if self.numbers:
            out += ["--numbers", self.numbers]
        if self.search_format:
            out += ["--search-format", self.search_format]
        for f in self.fix:
            out += ["--fix", f]
        if self.lo is not None or self.hi is not None:
            out += ["--range", f"{self.lo or 0}:{'' if self.hi is None else self.hi}"]
        if self.after_search:
            out += ["--after-search", str(self.after_search)]
        return out + ["-o", f"encodings/{self.filename}"]

    def options(self) -> SearchOptions:
        """The search options of this benchmark's query."""
        return SearchOptions(
            find=self.query,
            proxy=self.proxy,
            numbers=self.numbers,
            search_format=self.search_format,
            fix=self.fix,
            lo=self.lo,
            hi=self.hi,
        )


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("e1", "kink", search_format="e4m3"),
    Benchmark("e1", "ndf", proxy="right", search_format="e4m3"),
    Benchmark("e1", "inc", proxy="right", search_format="e4m3"),
    Benchmark("e1", "inc", proxy="pytorch", numbers="fp(3,2)"),
    Benchmark("axis-trap", "ndf", search_format="e4m3"),
    Benchmark("f1", "ndf", search_format="binary32"),
    Benchmark("f2", "ndf", search_format="binary32"),
    Benchmark("lemma2", "ndf", search_format="binary32"),
    Benchmark("lemma3", "inc", proxy="right", search_format="binary32"),
    Benchmark("rounding-trap", "kink", search_format="binary32"),
    Benchmark("rounding-trap", "spurious-kink", numbers="binary32"),
    Benchmark("rounding-trap", "missed-kink", numbers="binary32"),
    Benchmark("lemma3", "spurious-kink", numbers="binary32"),
    Benchmark("tiny-mlp", "kink", search_format="e4m3", fix=("0.weight", "1.weight", "1.bias")),
    Benchmark(
        "tiny-mlp", "spurious-kink", numbers="binary32", fix=("0.weight", "1.weight", "1.bias")
    ),
    Benchmark("tiny-mlp", "spurious-kink", numbers="binary32"),
    Benchmark("e1", "spurious-kink", numbers="binary16"),
    Benchmark("f1", "ndf", search_format="binary32", after_search=20),
    Benchmark("lemma2", "ndf", proxy="right", search_format="binary32", after_search=20),
    Benchmark("f3", "ndf", proxy="right", search_format="binary32", after_search=20),
    Benchmark("lemma3", "inc", proxy="right", search_format="binary32", after_search=20),
    Benchmark("e1", "inc", proxy="pytorch", numbers="fp(3,2)", after_search=400),
    Benchmark("e1", "inc", proxy="right", search_format="e4m3", after_search=400),
)


def generate(outdir: str | Path, *, timeout: float = 120.0) -> list[tuple[Benchmark, Export]]:
    """Write every benchmark file into ``outdir``; returns what was written."""

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for b in BENCHMARKS:
        net = load_example(b.example)
        e = export_query(
            net,
            b.options(),
            source=b.example,
            timeout=timeout,
            after_search=b.after_search,
            command=shlex.join(b.argv()),
        )
        (out / b.filename).write_text(e.text)
        done.append((b, e))
    return done


def main(argv: list[str]) -> int:  # pragma: no cover - script entry
    outdir = argv[0] if argv else "encodings"
    for b, e in generate(outdir):
        print(
            f"{b.filename:50s} {e.status:8s} {e.seconds:8.3f} s   formal export-smt "
            f"{shlex.join(b.argv())}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
