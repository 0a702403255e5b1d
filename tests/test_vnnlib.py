"""VNN-LIB input boxes: exact numerals, box points, unions of boxes, errors naming the input."""

from __future__ import annotations

from fractions import Fraction

import pytest

from formal.errors import InputFileError, InvalidArgument
from formal.io.vnnlib import load, parse

F = Fraction
HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"


def test_bounds_are_exact_and_output_constraints_are_skipped():
    spec = parse(
        HEAD + "; a comment (with parens\n(assert (<= X_0 0.029999999329447746))\n"
        "(assert (>= X_0 0.0))\n"
        "(assert (and (< X_1 1e-3) (> X_1 (- 2.5E-1))))\n(assert (>= Y_0 3.99))\n"
    )
    assert spec.n_inputs == 2 and spec.n_outputs == 1 and len(spec.boxes) == 1
    box = spec.boxes[0]
    assert box.lo == (F(0), F(-1, 4)) and box.hi == (F(29999999329447746, 10**18), F(1, 1000))
    assert spec.point("center") == [F(29999999329447746, 2 * 10**18), F(1, 2000) - F(1, 8)]
    assert spec.point("lo") == [F(0), F(-1, 4)] and spec.point("hi") == list(box.hi)


def test_reversed_atoms_and_repeated_bounds_intersect():
    spec = parse(
        HEAD + "(assert (>= 1 X_0))(assert (<= -1 X_0))(assert (<= X_0 0.5))"
        "(assert (<= X_1 2))(assert (>= X_1 2))"
    )
    assert spec.boxes[0].lo == (F(-1), F(2)) and spec.boxes[0].hi == (F(1, 2), F(2))


def test_disjunction_gives_a_union_of_boxes():
    spec = parse(
        HEAD + "(assert (<= X_1 1))(assert (>= X_1 0))\n"
        "(assert (or (and (<= X_0 1) (>= X_0 0)) (and (<= X_0 5) (>= X_0 4) (<= X_1 1/2))))"
    )
    assert len(spec.boxes) == 2
    assert spec.point("center", box=1) == [F(9, 2), F(1, 4)]
    with pytest.raises(InvalidArgument, match="box index below 2"):
        spec.point("center", box=2)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            HEAD + "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))",
            "X_1 has no lower bound",
        ),
        (HEAD + "(assert (<= X_0 1)", "unbalanced"),
        (HEAD + "(assert (<= X_0 one))", "expected a numeral"),
        ("(declare-const X_1 Real)(assert (<= X_1 1))", "X_0 is not declared"),
        (
            HEAD + "(assert (<= X_0 0))(assert (>= X_0 1))(assert (<= X_1 1))(assert (>= X_1 0))",
            "empty box",
        ),
        ("(declare-const Y_0 Real)", "found none"),
    ],
)
def test_malformed_specs_name_the_problem(text, message):
    with pytest.raises(InputFileError, match=message):
        parse(text, "spec.vnnlib")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="cannot read"):
        load(tmp_path / "nope.vnnlib")


def test_corpus_specs(corpus):
    acas = load(corpus / "vnncomp2021" / "acasxu" / "prop_1.vnnlib")
    assert acas.n_inputs == 5 and acas.n_outputs == 5
    assert acas.boxes[0].lo[0] == F(6, 10) and acas.boxes[0].hi[0] == F(679857769, 10**9)
    mnist = load(corpus / "vnncomp2021" / "mnistfc" / "prop_0_0.03.vnnlib")
    assert mnist.n_inputs == 784 and mnist.n_outputs == 10
    background = [i for i in range(784) if mnist.boxes[0].lo[i] == 0]
    assert len(background) > 500
    center = mnist.point()
    assert all(center[i] == mnist.boxes[0].hi[i] / 2 for i in background)
