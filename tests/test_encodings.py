"""The encodings/ benchmark set: regenerated, re-solved, and compared across solvers."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import z3

from formal.search.export import BENCHMARKS, solve_text, solve_with

ROOT = Path(__file__).resolve().parents[1] / "encodings"
STATUS = re.compile(r"^\(set-info :status (sat|unsat|unknown)\)$", re.M)
VERSION = re.compile(r"^; status by z3 (\S+)$", re.M)


def committed() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(ROOT.glob("*.smt2"))}


def status_of(text: str) -> str:
    m = STATUS.search(text)
    assert m, "no (set-info :status ...) line"
    return m.group(1)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Regenerate in a fresh interpreter: z3's printer names shared terms by internal ids,
    so the text is reproducible per process, not after other z3 work in this one."""
    out = tmp_path_factory.mktemp("encodings")
    proc = subprocess.run(
        [sys.executable, "-m", "formal.search.export", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {p.name: p.read_text() for p in sorted(out.glob("*.smt2"))}


def test_regenerated_files_match_the_committed_ones(regenerated):
    files = committed()
    assert set(files) == set(regenerated) == {b.filename for b in BENCHMARKS}
    for name, text in files.items():
        assert status_of(text) in ("sat", "unsat"), name  # every committed status is decided
        assert status_of(regenerated[name]) == status_of(text), name
        version = VERSION.search(text)
        assert version is not None, name
        if version.group(1) != z3.get_version_string():
            continue  # another z3 may build other terms; the statuses above still must agree
        if ".final." not in name:
            assert regenerated[name] == text, f"{name} differs from its regeneration"
        elif status_of(text) == "unsat":
            # an exhausted search blocks every candidate; z3 may return them in another order
            assert sorted(regenerated[name].splitlines()) == sorted(text.splitlines()), name


def test_both_answers_are_represented():
    statuses = [status_of(t) for t in committed().values()]
    assert statuses.count("sat") >= 5 and statuses.count("unsat") >= 5


@pytest.mark.parametrize("name", sorted(b.filename for b in BENCHMARKS))
def test_z3_confirms_each_committed_status(name):
    text = (ROOT / name).read_text()
    answer, _ = solve_text(text, timeout=60)
    assert answer == status_of(text)


def test_readme_lists_every_file_with_its_status():
    readme = (ROOT / "README.md").read_text()
    for name, text in committed().items():
        assert f"| `{name}` | {status_of(text)} |" in readme, name


@pytest.mark.parametrize("solver", ["cvc5", "bitwuzla"])
def test_optional_solvers_agree(solver):
    if importlib.util.find_spec(solver) is None:
        pytest.skip(f"{solver} is not installed (optional extra: pip install 'formal[solvers]')")
    checked = 0
    for name, text in committed().items():
        answer, _ = solve_with(solver, ROOT / name, timeout=60)
        if answer.startswith("unsupported"):
            continue  # e.g. bitwuzla's default build has no FP(3,3)
        if answer == "unknown":
            continue  # a time-out is not a disagreement
        assert answer == status_of(text), (solver, name, answer)
        checked += 1
    assert checked >= len(BENCHMARKS) // 2
