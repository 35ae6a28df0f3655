"""Plots a person would rather look at than read (matplotlib, written as PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def frontier_plot(
    frontier: Sequence,
    baselines: Sequence,
    path: str | Path,
    *,
    title: str = "",
    slos: Sequence[float] = (),
) -> Path:
    """Cost per 1,000 runs against predicted P95: our Pareto frontier and each baseline.

    ``frontier`` and ``baselines`` are :class:`~wisefuse_plugins.optimizer.search.Planned`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [p.prediction.p95_s for p in frontier]
    ys = [p.prediction.cost_usd * 1000 for p in frontier]
    ax.plot(xs, ys, "-o", color="tab:blue", label="WiseFuse frontier", zorder=3)
    markers = "s^vD<>ph"
    for i, b in enumerate(baselines):
        ax.scatter(
            b.prediction.p95_s,
            b.prediction.cost_usd * 1000,
            marker=markers[i % len(markers)],
            s=60,
            label=b.planner,
            zorder=4,
        )
    for s in slos:
        ax.axvline(s, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("predicted P95 end-to-end latency (s)")
    ax.set_ylabel("cost per 1,000 runs (USD)")
    ax.set_title(title or "cost vs P95")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
