"""formal: exact verdicts on automatic differentiation at machine-representable parameters.

The Python API (:mod:`formal.api`) mirrors the commands: :func:`load`,
:func:`check`, :func:`subgradient`, :func:`search`, :func:`count`, :func:`export_smt` and
:func:`reproduce`, each returning a frozen result with ``to_json()``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    __version__ = _dist_version("formal")
except PackageNotFoundError:  # pragma: no cover - run from a source tree without metadata
    __version__ = "0.1.0"

from formal import (  # noqa: E402
    examples,
    ops,  # noqa: F401  (registers every op's rules)
)
from formal.api import (  # noqa: E402
    ReproduceResult,
    check,
    count,
    export_smt,
    load,
    reproduce,
    search,
    subgradient,
)
from formal.engine.outcome import Verdict  # noqa: E402
from formal.errors import FormalError, InvalidArgument  # noqa: E402

__all__ = [
    "FormalError",
    "InvalidArgument",
    "ReproduceResult",
    "Verdict",
    "__version__",
    "check",
    "count",
    "examples",
    "export_smt",
    "load",
    "reproduce",
    "search",
    "subgradient",
]
