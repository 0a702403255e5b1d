"""Shared test configuration: hypothesis profiles and the corpus location.

Profiles: ``ci`` (derandomized, so CI runs are reproducible) and ``dev`` (the
default locally).  Select with ``HYPOTHESIS_PROFILE=ci``; CI environments that
set ``CI`` get ``ci`` automatically.  Deadlines are off in both: exact
arithmetic and solver calls vary in speed, and tests make no timing claims.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis imports libcst when it reports a failure (to write patch files); libcst
# imports mypy_extensions.TypedDict, which warns at import time.  Under the project's
# filterwarnings = error that warning replaced the failure report by an INTERNALERROR,
# so import it once here with the warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import libcst  # noqa: F401
    except ImportError:  # pragma: no cover - libcst is optional
        pass

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

CORPUS = Path(__file__).resolve().parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "formal" / "examples"


@pytest.fixture
def corpus() -> Path:
    """The corpus of real networks shipped in tests/data (VNN-COMP 2021; see its README)."""
    return CORPUS.resolve()
