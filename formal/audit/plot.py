"""PNG plot of an audit's counts per epoch (matplotlib, the ``plots`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from formal.audit.run import AuditResult
from formal.errors import InvalidArgument

SERIES = (
    ("float_kink_touches", "float kink touches"),
    ("spurious_touches", "spurious"),
    ("exact_touches", "exact"),
    ("missed_touches", "missed"),
    ("gradient_changes", "steps whose gradient changes (ReLU'(0) = 0 vs 1)"),
)


def require_matplotlib() -> None:
    """InvalidArgument naming the extra when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InvalidArgument(
            "--plot needs matplotlib: pip install 'formal[plots]' (or matplotlib)"
        )


def plot_counts(result: AuditResult, path: str | Path) -> Path:
    """Write the per-epoch counts of ``result`` as a PNG; returns the path."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.per_epoch()
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key, label in SERIES:
        ax.plot(epochs, [r[key] for r in rows], marker="o", ms=3, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (snapshot / spec index for replays)")
    ax.set_ylabel("count per epoch")
    s = result.settings
    ax.set_title(f"formal audit: {s.get('source', '')} {s.get('precision', '')}".strip())
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


__all__ = ["plot_counts", "require_matplotlib"]
