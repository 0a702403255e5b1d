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


# -- numerators held as base-2**16 digits ------------------------------------------------

_BIT_RANGES = [3, 40, 62, 63, 90, 96, 97, 300]  # int64, 48-bit limbs, to_bytes


def _digit_invariants(d: qa.Split) -> None:
    """Lower digits in [0, 2**16), the top one signed: what exact digit products need."""
    assert d.stacked is not None
    assert (d.stacked == np.round(d.stacked)).all()
    assert ((d.stacked[:-1] >= 0) & (d.stacked[:-1] < 2**16)).all()
    assert ((d.stacked[-1] >= -(2**15)) & (d.stacked[-1] < 2**15)).all()


def _minimal_digits(values: list[int]) -> int:
    """The fewest signed base-2**16 digits holding every value."""
    n = 1
    while not all(-(2 ** (16 * n - 1)) <= v < 2 ** (16 * n - 1) for v in values):
        n += 1
    return n


@pytest.mark.parametrize("bits", _BIT_RANGES)
@pytest.mark.parametrize("density", [0.02, 0.3, 1.0])
def test_split_and_rebuild_every_path(bits, density):
    """split (dense, limb and byte paths; sparse arrays split as their non-zeros) and
    digits_to_ints give back every integer, extremes -2**b and 2**b - 1 included."""
    rng = np.random.default_rng(bits)
    vals = [int(v) for v in rng.integers(-(2**62), 2**62, 1200)]
    vals = [v * 2 ** max(0, bits - 62) >> max(0, 62 - bits) for v in vals]
    vals[:2] = [-(2**bits), 2**bits - 1]
    keep = rng.random(1200) < density
    keep[:2] = True
    a = np.array([v if k else 0 for v, k in zip(vals, keep)], dtype=object).reshape(3, 20, 20)
    d = qa.split(a)
    _digit_invariants(d)
    assert d.stacked is not None and d.stacked.shape[1:] == a.shape
    back = qa.digits_to_ints(d)
    assert back.shape == a.shape and (back == a).all()
    assert all(type(v) is int for v in back.ravel())


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 5),
    st.sampled_from([3, 2**16, 2**40, 2**62 - 1]),
    st.randoms(use_true_random=False),
)
def test_normalized_digits_keep_the_value_in_the_fewest_digits(n, size, bound, rnd):
    """Any int64 digit sums (both signs, up to 2**62) normalize to the same integers, with
    digits exact products can use and no redundant top digit."""
    d = np.array([[rnd.randint(-bound, bound) for _ in range(size)] for _ in range(n)])
    if rnd.random() < 0.3:
        d[:, 0] = 0
    want = [sum(int(d[i, j]) << (16 * i) for i in range(n)) for j in range(size)]
    got = qa.normalized_digits(d)
    _digit_invariants(got)
    assert list(qa.digits_to_ints(got)) == want
    assert len(got.chunks) == _minimal_digits(want)


def _lazy(q: QArray) -> QArray:
    """The same array with its numerators held as digits only."""
    return QArray.of_digits(qa.split(q.num), q.den)


def _ints(draw, shape: tuple[int, ...], bits: int) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    flat = out.reshape(-1)
    for i in range(flat.size):
        flat[i] = draw(st.integers(-(2**bits), 2**bits))
    return out


@st.composite
def lazy_pairs(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    other = tuple(s if draw(st.booleans()) else 1 for s in shape)  # broadcast along some axes
    a = QArray(_ints(draw, shape, draw(st.sampled_from([4, 60, 130]))), draw(st.integers(1, 2**70)))
    den_b = draw(st.sampled_from([a.den, a.den * 2**37, 3, 2**90, draw(st.integers(1, 2**70))]))
    b = QArray(_ints(draw, other, draw(st.sampled_from([4, 60, 130]))), den_b)
    if draw(st.booleans()):  # the broadcast operand on either side
        a, b = b, a
    return a, b, draw(st.sampled_from(["both", "left", "right"]))


@settings(max_examples=80, deadline=None)
@given(lazy_pairs(), st.integers(-(2**40), 2**40), st.integers(1, 2**33))
def test_lazy_arithmetic_equals_integer_arithmetic(pair, p, q):
    """Sums, differences (any denominators, broadcasting), negation, scaling, small-integer
    and 0/1 products and reshapes of digit-held arrays equal the integer results."""
    a, b, which = pair
    la = _lazy(a) if which in ("both", "left") else a
    lb = _lazy(b) if which in ("both", "right") else b
    F = Fraction

    def same(x: QArray, y: QArray) -> None:
        if x.lazy:  # digits that later products can use
            _digit_invariants(x.digits())
        assert x.shape == y.shape
        assert (x.to_fractions() == y.to_fractions()).all()

    same(la + lb, a + b)
    same(la - lb, a - b)
    same(-la, -a)
    same(la.scale(F(p, q)), a.scale(F(p, q)))
    same(la.reshape((-1,)), a.reshape((-1,)))
    small = QArray(np.vectorize(lambda v: int(v) % 7 - 3, otypes=[object])(b.num), q)
    mask = QArray(np.vectorize(lambda v: int(v) % 2, otypes=[object])(b.num), 1)
    same(la.mul(small), a.mul(small))
    same(la.mul(mask), a.mul(mask))
    assert (la + lb).lazy == (la.lazy or lb.lazy)  # a digit-held operand keeps the sum in digits


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 12),
    st.integers(1, 5),
    st.sampled_from([8, 62, 100]),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_right_mul_digits_equals_the_integer_product(n, k, m, bits, cached, rnd):
    """x @ M.T from x's digits, with or without an inner subset of M's rows, from a cached
    full split or a split of the subset alone (int64 numerators or Python ints)."""
    x = np.array(
        [[rnd.randint(-(2**bits), 2**bits) for _ in range(k)] for _ in range(n)], dtype=object
    )
    mat = np.array(
        [[rnd.randint(-(2**40), 2**40) for _ in range(k)] for _ in range(m)], dtype=object
    )
    inner = np.array(sorted(rnd.sample(range(k), rnd.randint(1, k))))
    for ints in (None, mat.astype(np.int64)):
        fm = FlintMatrix(mat, ints)
        if cached:
            fm.digits(True)
        full = fm.right_mul_digits(qa.split(x), transpose=True)
        part = fm.right_mul_digits(qa.split(x[:, inner]), transpose=True, inner=inner)
        assert full is not None and part is not None
        _digit_invariants(full)
        assert (qa.digits_to_ints(full) == np.dot(x, mat.T)).all()
        assert (qa.digits_to_ints(part) == np.dot(x[:, inner], mat[:, inner].T)).all()


@pytest.mark.parametrize("x_bits", [4, 20, 40])
@pytest.mark.parametrize("m_bits", [30, 50, 62])
@pytest.mark.parametrize("transpose", [False, True])
def test_few_row_products_in_int64_only_when_no_sum_overflows(x_bits, m_bits, transpose):
    """A few rows of small integers times int64 numerators: the int64 product when the bound
    max|x| max|M| k < 2**63 allows it (else digits), exact either way, with a post map."""
    rng = np.random.default_rng(x_bits + m_bits)
    k, m = 300, 7
    x = rng.integers(-(2**x_bits), 2**x_bits, (2, k)).astype(object)
    x[0, 0] = -(2**x_bits)
    mat = rng.integers(-(2**m_bits), 2**m_bits, (m, k) if transpose else (k, m))
    fm = FlintMatrix(mat.astype(object), mat)
    used = fm._int64_product(x, transpose, 1) is not None
    assert used == (2**x_bits * int(np.abs(mat).max()) * k < 2**63)
    want = np.dot(x, (mat.T if transpose else mat).astype(object))
    got = fm.right_mul(x, transpose=transpose)
    assert got.dtype == object and all(type(v) is int for v in got.ravel())
    assert (got == want).all()
    double = fm.right_mul(x, transpose=transpose, post=lambda v: v + v, weight=2)
    assert (double == 2 * want).all()
