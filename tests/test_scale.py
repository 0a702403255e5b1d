"""Issue 9: the fast exact paths agree with the old exact path, kept here as the reference.

The new paths are: exact integer products through float64 BLAS on base-2**16
digits (``formal.core.qarray.split_matmul``) and the kink graph whose pivots
are sought among the small parameter tensors first (no dense (T, W) rows
unless they are needed).  The reference runs the old ones: numpy object
``dot`` for every product, and the dense kink graph (every parameter row
collected, pivots = the first independent columns of the full A).
Verdicts (method, differentiability, AD correctness, Bouligand/Clarke, the
exact gradient) must be identical; witnesses may use other pivots but are
re-verified exactly by the engine either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import image_networks, networks

import formal.core.qarray as qarray
import formal.engine.forward as fwdmod
import formal.engine.kinkgraph as kinkgraph
import formal.engine.linearity as linearity
import formal.engine.verdict as verdict
import formal.ops.pool as pool
from formal.core.activations import Preset, parse_preset
from formal.core.builders import dense_network, exact_from_float
from formal.core.graph import descendants
from formal.core.kinks import KinkNode
from formal.core.network import Network
from formal.core.qarray import FlintMatrix, QArray, carry, int_matmul, split
from formal.core.signatures import exact_oracle, signatures, uncertified_oracle
from formal.engine.forward import Forward, exact_forward, forward, output_seeds, reverse
from formal.engine.kinkgraph import KinkGraph, build_kink_graph, column_basis
from formal.io.formalnet import from_dict
from formal.ops.conv import scatter_add
from formal.ops.pool import MaxPoolRule

# -- the reference: the dense kink graph of the old engine -----------------------------


def reference_kink_graph(fwd: Forward, **_: object) -> KinkGraph:
    """The old builder: one reverse pass collecting every (T + n_obj, W) parameter row."""
    net = fwd.net
    kinks = tuple(fwd.kinks)
    rows = [(k, i) for k, node in enumerate(kinks) for i in range(len(node.inputs))]
    out_seeds = output_seeds(net)
    total = len(rows) + out_seeds.shape[0]
    seeds: dict[str, QArray] = {}
    for r, (k, i) in enumerate(rows):
        node = kinks[k]
        src = net.node(node.node).inputs[0]
        if src not in seeds:
            seeds[src] = QArray.zeros((total, net.batch) + net.node(src).shape)
        s = seeds[src]
        s.num.reshape(total, net.batch, -1)[r, node.sample, node.inputs[i]] = s.den
    if net.output not in seeds:
        seeds[net.output] = QArray.zeros((total,) + out_seeds.shape[1:])
    s = seeds[net.output]
    block = np.zeros((total,) + out_seeds.shape[1:], dtype=object)
    block[...] = 0
    block[len(rows) :] = out_seeds.num
    seeds[net.output] = QArray(s.num * out_seeds.den + block, out_seeds.den)
    rev = reverse(fwd, seeds, cut=True)
    full = net.parameterization().collect(rev.params, total)
    T = len(rows)
    A = QArray(full.num[:T], full.den)
    pivots = column_basis(A.num)
    basis = np.empty((T, len(pivots)), dtype=object)
    for c, j in enumerate(pivots):
        for r in range(T):
            basis[r, c] = Fraction(int(A.num[r, j]), A.den)
    g = KinkGraph(
        kinks,
        tuple(rows),
        {rc: r for r, rc in enumerate(rows)},
        rev.kink_adjoints[:T],
        rev.kink_adjoints[T:],
        tuple(pivots),
        basis,
        tuple(range(A.shape[1])),
        A,
        fwd,
    )
    g.cache["A"] = A
    g.cache["A0"] = QArray(full.num[T:], full.den)
    return g


@contextlib.contextmanager
def reference_engine() -> Iterator[None]:
    """Run the old exact path: every node's exact value computed up front, object ``dot``
    products, the dense kink graph, every sample's seeds in every reverse pass, reverse mode
    for kink adjoints, z3 for every linearity query and the old max-pool tie loop."""
    saved = (
        qarray._FLINT_MIN_WORK,
        verdict.build_kink_graph,
        fwdmod.PER_SAMPLE_OPS,
        MaxPoolRule.forward,
        linearity._opposite_pair,
        fwdmod.forward_kink_adjoints,
        linearity._side_by_solve,
        fwdmod.exact_forward,
    )
    eager = fwdmod.exact_forward

    def every_value(net: Network, preset: Preset, certified: object = None) -> Forward:
        return eager(net, preset)

    fwdmod.exact_forward = every_value  # type: ignore[assignment]
    qarray._FLINT_MIN_WORK = 1 << 62
    linearity._opposite_pair = lambda g: None  # z3 decides every query
    linearity._side_by_solve = lambda g, sides: None
    fwdmod.forward_kink_adjoints = lambda fwd, seed: None  # reverse mode always
    verdict.build_kink_graph = reference_kink_graph
    fwdmod.PER_SAMPLE_OPS = frozenset()
    setattr(MaxPoolRule, "forward", reference_maxpool_forward)  # noqa: B010
    try:
        yield
    finally:
        qarray._FLINT_MIN_WORK, verdict.build_kink_graph, fwdmod.PER_SAMPLE_OPS = saved[:3]
        setattr(MaxPoolRule, "forward", saved[3])  # noqa: B010
        linearity._opposite_pair, fwdmod.forward_kink_adjoints = saved[4:6]
        linearity._side_by_solve = saved[6]
        fwdmod.exact_forward = saved[7]


def reference_maxpool_forward(
    self: MaxPoolRule, node, ins: list[QArray], net, preset, context=None
):
    """The old max-pool forward: every tie examined one by one in Python."""
    x = ins[0]
    B = x.shape[0]
    safe, valid, _, _, oh, ow = pool._geometry_tables(node, x.shape[1:])
    flat = x.num.reshape(B, -1)
    g = flat[:, safe]
    m = g.max(axis=-1)
    eq = (g == m[..., None]) & valid[None]
    count = eq.sum(axis=-1)
    choice = np.empty((B, safe.shape[0]), dtype=np.int64)
    choice[...] = np.take_along_axis(
        safe[None].repeat(B, 0), eq.argmax(axis=-1)[..., None], axis=-1
    )[..., 0]
    kinks: list[KinkNode] = []
    ties = np.argwhere(count > 1)
    if len(ties):
        oracle = exact_oracle(context.values) if context is not None else uncertified_oracle(net)
        sig = signatures(net, node.inputs[0], oracle).reshape(B, -1)
        for b, o in ties:
            b, o = int(b), int(o)
            pos = pool.choose(eq[b, o], pool.tie_rule(node, preset, o))
            chosen = int(safe[o, pos])
            choice[b, o] = chosen
            tied = [int(safe[o, k]) for k in range(safe.shape[1]) if eq[b, o, k]]
            reps: dict[int, int] = {}
            for i in tied:
                sv = int(sig[b, i])
                if sv not in reps or i == chosen:
                    reps[sv] = i
            if len(reps) < 2:
                continue
            inputs = tuple(sorted(reps.values(), key=tied.index))
            kinks.append(
                KinkNode(
                    node.name,
                    b,
                    o,
                    "tie",
                    inputs,
                    Fraction(int(m[b, o]), x.den),
                    choice=inputs.index(chosen),
                )
            )
    return QArray(m.reshape((B,) + node.shape), x.den), choice, kinks


@contextlib.contextmanager
def digits_everywhere() -> Iterator[None]:
    """Run the new path on every product, however small (so tiny nets exercise it)."""
    saved = qarray._FLINT_MIN_WORK
    qarray._FLINT_MIN_WORK = 0
    try:
        yield
    finally:
        qarray._FLINT_MIN_WORK = saved


def summary(v: verdict.Verdict) -> tuple:
    """What must not change: everything but the witness's directions."""
    return (
        v.method,
        v.differentiable,
        v.ad_correct,
        v.bouligand,
        v.clarke,
        v.kink_neurons,
        v.gradient,
        v.witness.kind if v.witness else None,
        tuple((k.label, k.adjoint) for k in v.kinks),
    )


def agree(doc: dict, presets: tuple[str, ...] = ("pytorch", "right")) -> None:
    for preset in presets:
        with reference_engine():
            ref = verdict.check(from_dict(doc), preset, gradient=True)
        with digits_everywhere():
            new = verdict.check(from_dict(doc), preset, gradient=True)
        assert summary(new) == summary(ref), preset


# -- exact products ------------------------------------------------------------------

BITS = st.sampled_from([0, 1, 15, 16, 17, 31, 52, 62, 63, 64, 65, 120, 400])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 40),
    st.integers(1, 6),
    BITS,
    BITS,
    st.randoms(use_true_random=False),
)
def test_digit_products_equal_object_dot(n, k, m, ba, bb, rnd):
    """Exact for every size, sign, extreme value (-2**b) and all-zero rows."""

    def draw(bits: int) -> int:
        return rnd.choice([0, -(2**bits), 2**bits - 1, rnd.randint(-(2**bits), 2**bits)])

    a = np.array([[draw(ba) for _ in range(k)] for _ in range(n)], dtype=object)
    if n > 1:
        a[rnd.randrange(n)] = 0
    b = np.array([[draw(bb) for _ in range(m)] for _ in range(k)], dtype=object)
    ref = np.dot(a, b)
    with digits_everywhere():
        got = int_matmul(a, b)
        cached = FlintMatrix(np.ascontiguousarray(b.T)).right_mul(a, transpose=True)
    assert got.dtype == object and all(type(v) is int for v in got.ravel())
    assert (got == ref).all() and (cached == ref).all()


def test_digit_products_large_inner_dimension():
    """k = 3000 terms of 62-bit by 40-bit integers: sums far beyond 2**53, still exact."""
    rng = np.random.default_rng(9)
    a = rng.integers(-(2**62), 2**62, (3, 3000)).astype(object) * 3
    b = rng.integers(-(2**40), 2**40, (3000, 2)).astype(object)
    assert (int_matmul(a, b) == np.dot(a, b)).all()


# -- verdicts ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(networks(batch=(1, 3)))
def test_verdicts_agree_on_dense_networks(doc):
    """Forced kinks, minibatches, ties, frozen tensors, objectives."""
    agree(doc)


@settings(max_examples=15, deadline=None)
@given(image_networks())
def test_verdicts_agree_on_conv_maxpool_networks(doc):
    """Convolutions, max-pools with ties, residual adds, avg-pools."""
    agree(doc, ("pytorch", "pytorch,tie=last"))


@settings(max_examples=25, deadline=None)
@given(networks(batch=(1, 3), max_width=3, max_layers=3))
def test_kink_graph_spans_the_same_space(doc):
    """The sparse graph has the reference's V (rank), C, C0, A and A0."""
    net = from_dict(doc)
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    if not fwd.kinks:
        return
    new, ref = build_kink_graph(fwd), reference_kink_graph(fwd)
    assert new.rank == ref.rank
    assert (new.C == ref.C).all() and (new.C0 == ref.C0).all()
    # the new pivots are columns of the reference A, independent, spanning its image
    cols = ref.A.num[:, list(new.pivots)]
    assert len(column_basis(cols)) == ref.rank
    for r in range(len(new.rows)):
        for j in new.pivots:
            assert new.a(r, j) == ref.a(r, j)
    assert (new.A.to_fractions() == ref.A.to_fractions()).all()
    assert (new.A0.to_fractions() == ref.A0.to_fractions()).all()


def test_small_tensor_pivots_avoid_the_dense_rows(monkeypatch):
    """A bias per kinked unit gives full row rank among small tensors: no (T, W) rows."""
    monkeypatch.setattr(kinkgraph, "_SMALL_TENSOR", 3)  # the 3 x 2 weight counts as large
    weights = [[["1", "-1"], ["1", "1"], ["1/2", "1"]], [["1", "1", "1"]]]
    biases = [["1", "-3", "0"], ["0"]]
    net = dense_network(weights, biases, [["1", "2"], ["1", "-1"]], ["relu", "identity"])
    fwd = forward(net, parse_preset("pytorch"))
    assert len(fwd.kinks) == 2
    g = build_kink_graph(fwd)
    assert "A" not in g.cache and len(g.cols) < net.param_count()
    assert g.rank == len(g.rows)
    with reference_engine():
        ref = verdict.check(net, "pytorch", gradient=True)
    assert summary(verdict.check(net, "pytorch", gradient=True)) == summary(ref)


# -- native integers, carrying, scatter in digit space ---------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            st.sampled_from([0.0, -0.0, 1e-45, -3.4e38, 2.0**-126, 1.5]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([np.float32, np.float64]),
)
def test_native_numerators_equal_the_exact_ones(values, dtype):
    """A loader's int64 numerators, when kept, equal the exact object numerators."""
    arr = np.array(values, dtype=dtype)
    q = exact_from_float(arr)
    assert all(Fraction(int(n), q.den) == Fraction(float(v)) for n, v in zip(q.num, arr))
    if q.ints is not None:
        assert q.ints.dtype == np.int64 and (q.ints.astype(object) == q.num).all()
        assert int(np.abs(q.ints).max()) < 2**62


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 8), st.randoms(use_true_random=False))
def test_carry_rebuilds_python_integers(n_sums, size, rnd):
    """Carrying int64 digit sums (small and huge results, both signs) is exact."""
    bound = rnd.choice([3, 2**20, 2**58, 2**62 - 1])
    sums = [np.array([rnd.randint(-bound, bound) for _ in range(size)]) for _ in range(n_sums)]
    ref = [sum(int(v[i]) << (16 * s) for s, v in enumerate(sums)) for i in range(size)]
    got = carry(sums)
    assert got.dtype == object and list(got) == ref


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(1, 5), st.integers(1, 4), st.randoms(use_true_random=False))
def test_scatter_add_matches_add_at(n, rows, k, rnd):
    """Sorted run sums (integers) give np.add.at's result, repeats and padding (-1) included."""
    idx = np.array([[rnd.randint(-1, n - 1) for _ in range(k)] for _ in range(rnd.randint(1, 4))])
    for dtype in (np.int64, object):
        target = np.array([[rnd.randint(-9, 9) for _ in range(n)] for _ in range(rows)], dtype)
        vals = np.array(
            [
                [
                    [
                        rnd.randint(-(2**70), 2**70) if dtype is object else rnd.randint(-99, 99)
                        for _ in range(k)
                    ]
                    for _ in range(idx.shape[0])
                ]
                for _ in range(rows)
            ],
            dtype,
        )
        ref = target.astype(object)
        for r in range(rows):
            for a in range(idx.shape[0]):
                for b in range(k):
                    if idx[a, b] >= 0:
                        ref[r, idx[a, b]] += int(vals[r, a, b])
        scatter_add(target, idx, vals)
        assert (target.astype(object) == ref).all()


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 4), st.integers(1, 6), st.integers(2, 5), BITS, st.randoms(use_true_random=False)
)
def test_mapped_products_equal_mapping_the_product(n, k, m, bits, rnd):
    """right_mul with a post map (applied to int64 digit sums) equals mapping x @ M."""
    x = np.array(
        [[rnd.randint(-(2**bits), 2**bits) for _ in range(k)] for _ in range(2 * n)], dtype=object
    )
    mat = np.array(
        [[rnd.randint(-(2**24), 2**24) for _ in range(m)] for _ in range(k)], dtype=object
    )
    tab = np.array([[rnd.randint(-1, 3) for _ in range(m)] for _ in range(2)])

    def post(cols: np.ndarray) -> np.ndarray:
        out = np.zeros((n, 4), dtype=cols.dtype)
        scatter_add(out, tab, cols.reshape(n, 2, m))
        return out

    ref = post(np.dot(x, mat))
    with digits_everywhere():
        got = FlintMatrix(mat, mat.astype(np.int64)).right_mul(x, post=post, weight=2 * m)
    assert (got == ref).all()
    assert split(x).chunks[0].shape == x.shape


# -- reverse passes that skip samples, kink graphs that reuse AD's adjoints ----------------


@settings(max_examples=25, deadline=None)
@given(networks(batch=(2, 4)))
def test_kink_sample_seeds_give_the_same_kink_adjoints(doc):
    """Zeroing the seeds of kink-free samples changes no kink adjoint."""
    net = from_dict(doc)
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    if not fwd.kinks:
        return
    seeds = {net.output: output_seeds(net)}
    fast = reverse(fwd, seeds, want_params=False).kink_adjoints
    full = reverse(fwd, seeds, want_params=True).kink_adjoints
    assert (fast == full).all()


@settings(max_examples=25, deadline=None)
@given(networks(batch=(1, 3), max_width=3, max_layers=3))
def test_kink_graph_reusing_ad_adjoints(doc):
    """Given AD's kink adjoints, the graph has the reference's C, C0 and rank."""
    net = from_dict(doc)
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    if not fwd.kinks:
        return
    kadj = reverse(fwd, {net.output: output_seeds(net)}, want_params=False).kink_adjoints
    new, ref = build_kink_graph(fwd, ad_kink_adjoints=kadj), reference_kink_graph(fwd)
    assert new.rank == ref.rank
    assert (new.C == ref.C).all() and (new.C0 == ref.C0).all()


@settings(max_examples=15, deadline=None)
@given(image_networks())
def test_maxpool_ties_match_the_old_loop(doc):
    """The vectorized tie scan gives the old loop's maxima, choices and tie kink nodes."""
    net = from_dict(doc)
    for preset in ("pytorch", "pytorch,tie=last"):
        new = exact_forward(net, parse_preset(preset))
        with reference_engine():
            ref = exact_forward(net, parse_preset(preset))
        assert new.kinks == ref.kinks
        for node in net.nodes:
            if node.op == "maxpool2d":
                assert (new.states[node.name] == ref.states[node.name]).all()


@settings(max_examples=20, deadline=None)
@given(st.one_of(networks(batch=(1, 3), max_width=3, max_layers=3), image_networks()))
def test_forward_mode_kink_adjoints_equal_reverse_mode(doc):
    """Where forward mode applies (no kink op above another) it gives AD's kink adjoints."""
    net = from_dict(doc)
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    if not fwd.kinks:
        return
    seeds = output_seeds(net)
    fast = fwdmod.forward_kink_adjoints(fwd, seeds)
    full = reverse(fwd, {net.output: seeds}, want_params=True).kink_adjoints
    if fast is not None:
        assert fast.shape == full.shape and (fast == full).all()
    else:
        held = set(fwd.by_node)
        assert any(descendants(net, [n]) & held for n in held)


@settings(max_examples=25, deadline=None)
@given(networks(batch=(2, 4)))
def test_reverse_on_the_kink_samples_alone(doc):
    """Seeds on the kink samples: the sliced pass gives the full pass's adjoints."""
    net = from_dict(doc)
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    samples = sorted({k.sample for k in fwd.kinks})
    sub = fwdmod.restrict_samples(fwd, samples)
    if not fwd.kinks or sub is None:
        return
    assert sub.net.batch == len(samples) and len(sub.kinks) == len(fwd.kinks)

    def seeds(f: Forward) -> dict[str, QArray]:
        out: dict[str, QArray] = {}
        for r, k in enumerate(f.kinks):
            src = f.net.node(k.node).inputs[0]
            if src not in out:
                out[src] = QArray.zeros((len(f.kinks), f.net.batch) + f.net.node(src).shape)
            out[src].num.reshape(len(f.kinks), f.net.batch, -1)[r, k.sample, k.inputs[0]] = 1
        return out

    full = reverse(fwd, seeds(fwd), cut=True)
    part = reverse(sub, seeds(sub), cut=True)
    assert (full.kink_adjoints == part.kink_adjoints).all()
    for name, q in full.params.items():
        other = part.params.get(name)
        if q is None or other is None:
            assert q is None or not q.num.any()
            continue
        assert (q.to_fractions() == other.to_fractions()).all()


@settings(max_examples=25, deadline=None)
@given(st.one_of(networks(batch=(1, 3), max_width=3, max_layers=3), image_networks()))
def test_side_direction_by_substitution_agrees_with_z3(doc):
    """The strict LP solved exactly (rank T) is sat exactly when z3's is, and its lam works."""
    net = from_dict(doc)
    fwd = forward(net, parse_preset("pytorch"), use_filter=False)
    if not fwd.kinks:
        return
    g = build_kink_graph(fwd)
    sides = {
        k: (node.choice if node.kind == "tie" else (1 if k % 2 else -1))
        for k, node in enumerate(g.kinks)
    }
    fast = linearity.find_side_direction(g, sides)
    ref = linearity.find_side_direction(g, sides, exact_first=False)
    assert fast.status == ref.status
    if fast.status == "sat":
        t = g.t_from_lambda(list(fast.model[0]))
        ys = g.kink_inputs(t, g.kink_outputs(t, sides))
        for k, node in enumerate(g.kinks):
            if node.kind == "act":
                assert ys[g.row_of[(k, 0)]] * sides[k] > 0
            else:
                c = ys[g.row_of[(k, sides[k])]]
                assert all(
                    c > ys[g.row_of[(k, i)]] for i in range(len(node.inputs)) if i != sides[k]
                )


# -- exact values only where a kink can be ------------------------------------------------


def _lazy_and_eager(doc: dict, preset: str) -> tuple[Forward, Forward] | None:
    net = from_dict(doc)
    fp = fwdmod._complete_float_pass(net)
    if fp is None or fp.ok or not fp.complete:
        return None
    pre = parse_preset(preset)
    return exact_forward(net, pre, certified=fp), exact_forward(from_dict(doc), pre)


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(networks(batch=(1, 3), max_width=3, max_layers=3), image_networks()),
    st.sampled_from(["pytorch", "right"]),
)
def test_lazy_exact_values_equal_the_eager_ones(doc, preset):
    """The forward pass that takes certified ops' states from the float pass finds the same
    kink nodes and states, and computes (on first use) the same value and shape per node."""
    got = _lazy_and_eager(doc, preset)
    if got is None:
        return
    lazy, eager = got

    def keys(f: Forward) -> list[tuple]:
        return [(k.node, k.sample, k.index, k.kind, k.inputs, k.value) for k in f.kinks]

    assert keys(lazy) == keys(eager)
    assert set(lazy.states) == set(eager.states)
    for name, state in eager.states.items():
        assert fwdmod._same_state(lazy.states[name], state), name
    assert lazy.shapes is not None
    for node in lazy.net.nodes:
        v, ref = lazy.values[node.name], eager.values[node.name]
        assert v.shape == ref.shape == lazy.shapes[node.name], node.name
        assert (v.num * ref.den == ref.num * v.den).all(), node.name


def test_certified_layers_stay_float():
    """784-64-64-10 with kinks in the first layer only: the deeper layers' exact values are
    not computed by the verdict (their activation states come from the certified float
    pass), and the verdict equals the eager path's."""
    rng = np.random.default_rng(3)
    sizes = [784, 64, 64, 10]
    weights = [
        (rng.standard_normal((m, n)) / np.sqrt(n)).astype(np.float32)
        for n, m in zip(sizes, sizes[1:])
    ]
    biases = [np.zeros(m, dtype=np.float32) for m in sizes[1:]]
    x = (np.floor(rng.random((1, 784)) * 16) / 16).astype(np.float32)
    x[0, :392] = 0  # first-layer kinks: units that read only zero pixels, with zero bias
    weights[0][:3, 392:] = 0
    net = dense_network(weights, biases, x, ["relu", "relu", "identity"], source="test")
    fwd = forward(net, parse_preset("pytorch"))
    assert fwd.exact and len(fwd.kinks) >= 3
    assert {k.node for k in fwd.kinks} == {fwd.kinks[0].node}
    deep = [n.name for n in net.nodes if n.op == "act"][1:]
    assert deep and not any(name in fwd.values for name in deep)
    new = verdict.check(net, "pytorch", gradient=True)
    with reference_engine():
        ref = verdict.check(net, "pytorch", gradient=True)
    assert summary(new) == summary(ref)


@settings(max_examples=30, deadline=None)
@given(image_networks())
def test_constant_piece_shortcut_agrees_with_signatures(doc):
    """The max-pool float filter's shortcut (close entries certified in one constant piece of
    the activation below) flags exactly the ops the signature numbering flags."""
    fast = fwdmod._complete_float_pass(from_dict(doc))
    saved = pool._same_constant_piece
    pool._same_constant_piece = lambda *args: False  # type: ignore[assignment]
    try:
        slow = fwdmod._complete_float_pass(from_dict(doc))
    finally:
        pool._same_constant_piece = saved
    assert fast is not None and slow is not None
    assert fast.suspects == slow.suspects


def test_exact_pass_covers_the_suspect_samples_alone():
    """B = 32 with every kink in sample 0: the exact pass runs on that sample; the other 31
    samples' states come from the float pass, and kinks, states and the verdict equal the
    eager pass's (the values of the full batch, computed on demand, too)."""
    from formal.bench.scale import batch_mlp

    weights, biases, x = batch_mlp(32)

    def build() -> Network:
        return dense_network(weights, biases, x, ["relu", "relu", "identity"], objective="sum")

    net = build()
    fwd = forward(net, parse_preset("pytorch"))
    eager = exact_forward(build(), parse_preset("pytorch"))
    assert fwd.kinks and {k.sample for k in fwd.kinks} == {0}
    batched = [n.name for n in net.nodes if n.op != "param"]
    assert not any(name in fwd.values for name in batched)  # nothing of the batch computed
    assert [(k.node, k.sample, k.index, k.value) for k in fwd.kinks] == [
        (k.node, k.sample, k.index, k.value) for k in eager.kinks
    ]
    for name, state in eager.states.items():
        assert fwd.states[name].shape == (32,) + net.node(name).shape
        assert fwdmod._same_state(fwd.states[name], state), name
    out = net.output
    assert (
        fwd.values[out].num * eager.values[out].den == eager.values[out].num * fwd.values[out].den
    ).all()
    new = verdict.check(build(), "pytorch", gradient=True)
    with reference_engine():
        ref = verdict.check(build(), "pytorch", gradient=True)
    assert summary(new) == summary(ref)


@settings(max_examples=30, deadline=None)
@given(
    st.one_of(networks(batch=(1, 3), max_width=3, max_layers=3), image_networks()),
    st.randoms(use_true_random=False),
)
def test_entry_rules_equal_the_whole_values(doc, rnd):
    """Every ``entries`` rule (linear, conv2d, add/sub with broadcasting) gives the entries of
    the whole exact value, at random positions (repeats and padded windows included)."""
    from formal.core.rules import RULES

    net = from_dict(doc)
    pre = parse_preset("pytorch")
    eager = exact_forward(net, pre)
    lazy = Forward(from_dict(doc), pre, exact=True)
    lazy.depends = dict(eager.depends)
    lazy.values = fwdmod.ExactValues(lazy)
    lazy.states = eager.states
    lazy.by_node = eager.by_node
    env = fwdmod.EntryEnv(lazy)
    checked = 0
    for node in net.nodes:
        if node.op not in RULES["entries"] or node.name not in eager.values:
            continue
        whole = eager.values[node.name]
        if whole.shape[:1] != (net.batch,) or whole.num.size == 0:
            continue
        flat = whole.num.reshape(net.batch, -1)
        n = rnd.randint(1, 6)
        rows = np.array([rnd.randrange(net.batch) for _ in range(n)], dtype=np.int64)
        cols = np.array([rnd.randrange(flat.shape[1]) for _ in range(n)], dtype=np.int64)
        got = env.entries(node.name, rows, cols)
        assert got.shape == (n,)
        assert (got.num * whole.den == flat[rows, cols] * got.den).all(), node.name
        checked += 1
    assert checked > 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**200), 2**200), min_size=1, max_size=12),
    st.integers(1, 2**80),
    st.integers(1, 2**60),
)
def test_reduced_tangents_keep_their_values(nums, den, factor):
    """Dividing out the common gcd of numerators and denominator changes no value, and a
    factor shared by all of them is gone."""
    q = QArray(np.array([v * factor for v in nums], dtype=object), den * factor)
    r = fwdmod.reduced(q)
    assert (r.num * q.den == q.num * r.den).all()
    assert q.den % r.den == 0 and r.den <= den
    assert all(type(v) is int for v in r.num.ravel())


# -- tangents held as digits through conv and linear products ---------------------------------


def _sparse_ints(rnd, shape: tuple[int, ...], bits: int, density: float) -> np.ndarray:
    out = np.zeros(shape, dtype=object)
    flat = out.reshape(-1)
    for i in range(flat.size):
        if rnd.random() < density:
            flat[i] = rnd.choice([-(2**bits), 2**bits - 1, rnd.randint(-(2**bits), 2**bits)])
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([(1, 1), (2, 1), (1, 2)]),  # strides
    st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 2)]),  # pads
    st.sampled_from([(1, 1), (2, 1)]),  # dilations
    st.sampled_from([3, 62, 200]),
    st.sampled_from([0.0, 0.05, 1.0]),
    st.randoms(use_true_random=False),
)
def test_conv_tangents_in_digits_equal_the_integer_conv(strides, pads, dil, bits, density, rnd):
    """conv2d of a digit-held tangent (only the windows reading a non-zero entry multiplied,
    padding and dilation included) equals the integer conv, and stays in digits."""
    from formal.core.network import Node
    from formal.core.numbers import parse_format
    from formal.ops.conv import _conv_digits, _conv_forward_num

    C, H, W, CO, k = 2, 6, 5, 3, (2, 3)
    w = QArray(_sparse_ints(rnd, (CO, C) + k, 40, 1.0), 2**30)
    oh = (H + pads[0] + pads[2] - dil[0] * (k[0] - 1) - 1) // strides[0] + 1
    ow = (W + pads[1] + pads[3] - dil[1] * (k[1] - 1) - 1) // strides[1] + 1
    attrs = (("strides", strides), ("pads", pads), ("dilations", dil), ("groups", 1))
    nodes = (
        Node("x", "input", (), (C, H, W)),
        Node("p:w", "param", (), w.shape, (("name", "w"),)),
        Node("conv", "conv2d", ("x", "p:w"), (CO, oh, ow), attrs),
    )
    x0 = QArray.zeros((1, C, H, W))
    net = Network(nodes, "conv", x0, {"w": w}, parse_format("binary32"), ("w",), ("w",))
    tan = QArray(_sparse_ints(rnd, (3, 2, C, H, W), bits, density), 7)
    for held in (tan, QArray.of_digits(split(tan.num), tan.den)):
        with digits_everywhere():
            got = _conv_digits(net.node("conv"), held, w, net)
        assert got is not None and got.lazy and got.shape == (3, 2, CO, oh, ow)
        want = _conv_forward_num(net.node("conv"), tan.num.reshape(6, C, H, W), w, net, (C, H, W))
        assert got.den == tan.den * w.den
        assert (got.num == want.reshape(got.shape)).all()


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([3, 62, 200]),
    st.sampled_from([0.02, 0.5, 1.0]),
    st.randoms(use_true_random=False),
)
def test_linear_tangents_in_digits_equal_the_integer_product(bits, density, rnd):
    """xd @ W.T from digits (only the columns that move meet W) equals the integer product."""
    from formal.ops.basic import _linear_jvp

    weights = [[[str(rnd.randint(-99, 99)) + "/64" for _ in range(20)] for _ in range(4)]]
    net = dense_network(weights, [["0"] * 4], [["1"] * 20], ["identity"])
    node = next(n for n in net.nodes if n.op == "linear")
    w = net.params[net.node(node.inputs[1]).attr("name")]
    x = QArray.zeros((1, 20))
    tan = QArray(_sparse_ints(rnd, (3, 1, 20), bits, density), 5)
    want = np.dot(tan.num.reshape(3, 20), w.num.T).reshape(3, 1, 4)
    for held in (tan, QArray.of_digits(split(tan.num), tan.den)):
        with digits_everywhere():
            got = _linear_jvp(node, [x, w], [held, None], net)
        assert got is not None and got.lazy and got.den == tan.den * w.den
        assert (got.num == want).all()


def test_pivots_prefer_the_columns_of_small_tensors():
    """With a bias per kinked unit, V's basis takes bias columns before any kernel column,
    so the witness directions move biases (tangents without the input's digits)."""
    weights = [[["1", "-1"], ["1", "1"], ["1/2", "1"]], [["1", "1", "1"]]]
    biases = [["1", "-3", "0"], ["0"]]
    net = dense_network(weights, biases, [["1", "2"], ["1", "-1"]], ["relu", "identity"])
    fwd = forward(net, parse_preset("pytorch"))
    g = build_kink_graph(fwd)
    par = net.parameterization()
    bias_cols = {int(j) for n, grp in par.groups.items() if grp.size == 3 for j in grp.ravel()}
    assert len(g.pivots) == len(g.rows) == 2
    assert set(g.pivots) <= bias_cols, (g.pivots, bias_cols)
    assert list(g.pivots) == sorted(g.pivots)
