"""Kink-graph linear algebra: pivot columns (exact and modular paths), null spaces, gradients."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import formal.engine.kinkgraph as tangent
from formal.core.activations import parse_preset
from formal.engine.forward import forward
from formal.engine.kinkgraph import (
    _exact_pivots,
    build_kink_graph,
    column_basis,
    gradient_from_graph,
    left_null_space,
)
from formal.examples import load_example


def rank_fraction(rows: list[list[Fraction]]) -> int:
    m = [list(r) for r in rows]
    rank, col = 0, 0
    ncols = len(m[0]) if m else 0
    while rank < len(m) and col < ncols:
        p = next((i for i in range(rank, len(m)) if m[i][col]), None)
        if p is None:
            col += 1
            continue
        m[rank], m[p] = m[p], m[rank]
        for i in range(len(m)):
            if i != rank and m[i][col]:
                f = m[i][col] / m[rank][col]
                m[i] = [a - f * b for a, b in zip(m[i], m[rank])]
        rank += 1
        col += 1
    return rank


matrices = st.integers(1, 5).flatmap(
    lambda t: st.lists(st.lists(st.integers(-3, 3), min_size=7, max_size=7), min_size=t, max_size=t)
)


@settings(max_examples=60, deadline=None)
@given(matrices, st.booleans())
def test_pivots_are_a_basis_of_the_column_space(rows, modular):
    A = np.array(rows, dtype=object)
    if modular:
        old = tangent._SMALL
        tangent._SMALL = 0  # force the mod-p path with its exact certificate
        try:
            piv = column_basis(A)
        finally:
            tangent._SMALL = old
    else:
        piv = column_basis(A)
    full = [[Fraction(v) for v in r] for r in rows]
    sub = [[Fraction(rows[i][j]) for j in piv] for i in range(len(rows))]
    assert len(piv) == rank_fraction(full) == rank_fraction(sub)
    assert piv == sorted(piv)


def test_modular_path_detects_dependent_rows():
    rng = np.random.default_rng(3)
    A = rng.integers(-(2**40), 2**40, size=(12, 400)).astype(object)
    A[7] = 3 * A[2] - 5 * A[9]
    old = tangent._SMALL
    tangent._SMALL = 0
    try:
        piv = column_basis(A)
    finally:
        tangent._SMALL = old
    assert len(piv) == 11
    assert piv == _exact_pivots(A)


def test_left_null_space():
    P = [[Fraction(1), Fraction(2)], [Fraction(2), Fraction(4)], [Fraction(0), Fraction(1)]]
    null = left_null_space(P)
    assert len(null) == 1
    y = null[0]
    assert all(sum(y[i] * P[i][j] for i in range(3)) == 0 for j in range(2))


@pytest.mark.parametrize(
    "name, proxy, grad",
    [
        ("lemma2", "pytorch", [Fraction(1)]),
        ("lemma3", "pytorch", [Fraction(1, 6)]),
        ("e1", "right", [Fraction(0), Fraction(0)]),
    ],
)
def test_gradient_from_graph(name, proxy, grad):
    net = load_example(name)
    fwd = forward(net, parse_preset(proxy))
    g = build_kink_graph(fwd)
    assert list(gradient_from_graph(g).to_fractions()[0]) == grad


def test_e1_kink_graph_coefficients():
    # f = relu(w2 relu(w1)), x = 1 at (0, -1): y1 = w1 (a = e1),
    # y2 = w2 z1 (C[2,1] = w2 = -1, a = z1 = 0)
    net = load_example("e1")
    g = build_kink_graph(forward(net, parse_preset("pytorch")))
    assert g.A.to_fractions().tolist() == [[1, 0], [0, 0]]
    assert g.C[1, 0] == -1 and g.C0.tolist() == [[0, 1]]
    assert g.rank == 1 and g.pivots == (0,)
