"""QArray: exact rational arrays, against plain Fraction loops; flint and numpy products."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import formal.core.qarray as qa
from formal.core.qarray import FlintMatrix, QArray, int_matmul, qmatmul

F = Fraction
fractions = st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=10**4)
big_ints = st.integers(min_value=-(2**130), max_value=2**130)


def _matrix(draw, rows: int, cols: int, elems) -> list[list[Fraction]]:
    return [[draw(elems) for _ in range(cols)] for _ in range(rows)]


def _loop_matmul(a: list[list[Fraction]], b: list[list[Fraction]]) -> list[list[Fraction]]:
    return [
        [sum((a[i][k] * b[k][j] for k in range(len(b))), F(0)) for j in range(len(b[0]))]
        for i in range(len(a))
    ]


@st.composite
def matrix_pairs(draw, elems=fractions, max_dim: int = 5):
    n, k, m = (draw(st.integers(1, max_dim)) for _ in range(3))
    return _matrix(draw, n, k, elems), _matrix(draw, k, m, elems)


@settings(max_examples=60)
@given(matrix_pairs())
def test_qmatmul_equals_fraction_loops(pair):
    a, b = pair
    got = qmatmul(QArray.from_fractions(a), QArray.from_fractions(b)).to_fractions().tolist()
    assert got == _loop_matmul(a, b)


@pytest.mark.parametrize("flint_min", [0, 10**12])  # 0: always flint; huge: always numpy object dot
@settings(max_examples=25)
@given(pair=matrix_pairs(elems=big_ints, max_dim=7))
def test_int_matmul_flint_and_numpy_paths(pair, flint_min):
    """Both product paths give the exact product, as Python ints (never fmpz) in object arrays."""
    a, b = pair
    A = np.empty((len(a), len(a[0])), dtype=object)
    A[...] = [[int(v) for v in r] for r in a]
    Bm = np.empty((len(b), len(b[0])), dtype=object)
    Bm[...] = [[int(v) for v in r] for r in b]
    old = qa._FLINT_MIN_WORK
    qa._FLINT_MIN_WORK = flint_min
    try:
        got = int_matmul(A, Bm)
        fm = FlintMatrix(Bm.T.copy())
        got_t = fm.right_mul(A, transpose=True)  # A @ (B^T)^T
        got_r = FlintMatrix(Bm).right_mul(A)
        got_t2 = fm.right_mul(A, transpose=True)  # cached matrix reused
    finally:
        qa._FLINT_MIN_WORK = old
    want = _loop_matmul([[F(v) for v in r] for r in a], [[F(v) for v in r] for r in b])
    for g in (got, got_t, got_r, got_t2):
        assert [[F(int(v)) for v in r] for r in g] == want
        assert g.dtype == object and all(type(v) is int for v in g.ravel())


def test_int_matmul_empty_shapes():
    a = np.zeros((2, 0), dtype=object)
    b = np.zeros((0, 3), dtype=object)
    out = int_matmul(a, b)
    assert out.shape == (2, 3) and all(v == 0 for v in out.ravel())
    assert int_matmul(np.zeros((0, 2), dtype=object), np.zeros((2, 3), dtype=object)).shape == (
        0,
        3,
    )


@settings(max_examples=60)
@given(
    st.lists(fractions, min_size=1, max_size=8),
    st.lists(fractions, min_size=1, max_size=8),
    fractions,
)
def test_elementwise_ops(xs, ys, q):
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    a, b = QArray.from_fractions(xs), QArray.from_fractions(ys)
    assert (a + b).to_fractions().tolist() == [x + y for x, y in zip(xs, ys)]
    assert (a - b).to_fractions().tolist() == [x - y for x, y in zip(xs, ys)]
    assert (-a).to_fractions().tolist() == [-x for x in xs]
    assert a.mul(b).to_fractions().tolist() == [x * y for x, y in zip(xs, ys)]
    assert a.scale(q).to_fractions().tolist() == [x * q for x in xs]
    assert a.compare(q).tolist() == [(x > q) - (x < q) for x in xs]
    assert a.sign().tolist() == [(x > 0) - (x < 0) for x in xs]
    assert a.is_zero().tolist() == [x == 0 for x in xs]
    norm = a.normalized()
    assert norm.to_fractions().tolist() == xs
    assert all(int(v) % 1 == 0 for v in norm.num.ravel())
    assert [a.item(i) for i in range(n)] == xs
    assert np.all(a.to_float() == np.array([float(x) for x in xs]))


def test_common_denominators_and_normalization():
    a = QArray.from_fractions([F(1, 6), F(1, 4)])
    assert a.den == 12 and a.num.tolist() == [2, 3]
    b = QArray(np.array([4, 8, -12], dtype=object), 16).normalized()
    assert b.den == 4 and b.num.tolist() == [1, 2, -3]
    z = QArray.zeros((2, 3))
    assert z.shape == (2, 3) and z.to_fractions().tolist() == [[0] * 3] * 2
    assert QArray(np.array([0, 0], dtype=object), 8).normalized().den == 1
    r = QArray.from_fractions([[F(1, 2), F(1, 3)], [F(2), F(-5, 6)]]).reshape((4,))
    assert r.to_fractions().tolist() == [F(1, 2), F(1, 3), F(2), F(-5, 6)]


def test_broadcasting_add_mul():
    a = QArray.from_fractions([[F(1, 2)], [F(1, 3)]])  # (2, 1)
    b = QArray.from_fractions([F(1), F(2), F(3)])  # (3,)
    assert (a + b).to_fractions().tolist() == [
        [F(3, 2), F(5, 2), F(7, 2)],
        [F(4, 3), F(7, 3), F(10, 3)],
    ]
    assert a.mul(b).to_fractions().tolist() == [[F(1, 2), F(1), F(3, 2)], [F(1, 3), F(2, 3), F(1)]]
