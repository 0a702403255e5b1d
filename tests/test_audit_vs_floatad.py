"""The audit's touch classifier against formal.floatad and the exact engine.

Both sides see the same machine-number MLP and minibatch.  The exact kinks are
a property of exact arithmetic, so the audit's filter-plus-Fractions count must
equal the engine's kink list, unit by unit; given the same float
pre-activations, both classifiers must split the float touches the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from formal.audit.kinks import classify_touches
from formal.audit.mlp import MLP, forward
from formal.audit.verdicts import network_doc
from formal.core.activations import parse_preset
from formal.engine.forward import forward as exact_forward
from formal.floatad import classify
from formal.io.formalnet import from_dict

_QUARTERS = st.integers(-4, 4).map(lambda k: k / 4)


@st.composite
def _mlps(draw: Any) -> tuple[MLP, np.ndarray]:
    act = draw(st.sampled_from(["relu", "relu6", "hardtanh"]))
    widths = [draw(st.integers(1, 3)) for _ in range(3)] + [1]
    batch = draw(st.integers(1, 3))
    dt = np.dtype(np.float16)

    def arr(shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        return np.array(draw(st.lists(_QUARTERS, min_size=n, max_size=n)), dtype=dt).reshape(shape)

    ws = [arr((o, i)) for i, o in zip(widths[:-1], widths[1:])]
    bs = [arr((o,)) for o in widths[1:]]
    return MLP(ws, bs, act, dt), arr((batch, widths[0]))


@settings(max_examples=30, deadline=None)
@given(_mlps())
def test_audit_and_engine_find_the_same_exact_kinks(case: tuple[MLP, np.ndarray]) -> None:
    mlp, x = case
    fp = forward(mlp, x)
    t = classify_touches(mlp.weights, mlp.biases, mlp.activation, x, fp.ys[:-1])
    net = from_dict(network_doc(mlp.weights, mlp.biases, mlp.activation, x, "binary16"))
    fwd = exact_forward(net, parse_preset("pytorch"))
    engine = sorted(
        (net.node(k.node).name, k.sample, k.index) for k in fwd.kinks if k.kind == "act"
    )
    assert t.n_exact_kinks == len(engine), (t.n_exact_kinks, engine)
    # the same float pre-activations, classified by both: the same split
    report = classify(
        net,
        "binary16",
        "pytorch",
        "blas",
        params=mlp.state_dict(),
        inputs=x,
    )
    counts = report.counts()
    assert counts["exact_kinks"] == t.n_exact_kinks
    assert counts["exact_touches"] + counts["missed_touches"] == t.n_exact_kinks
    assert counts["exact_touches"] + counts["spurious_touches"] == counts["float_kink_touches"]
