"""The reports' plots (PNG, headless): latency distributions and labelled scatters."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

from runner.metrics import catalog  # noqa: E402


def scatter(rows: list[dict], x: str, y: str, title: str, path: Path) -> Path | None:
    """One labelled point per job (sweep rows keyed by summary.csv column names)."""
    pts = [r for r in rows if r[x] is not None and r[y] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in pts:
        ax.scatter(r[x], r[y])
        ax.annotate(r["job"], (r[x], r[y]), fontsize=8)
    ax.set_xlabel(catalog.label(x))
    ax.set_ylabel(catalog.label(y))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_plot(series: dict[str, list[dict]], path: Path) -> Path | None:
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 * len(series) + 3))
    for ax, key, label in ((axes[0], "ttft_s", "TTFT (s)"), (axes[1], "e2e_s", "end-to-end latency (s)")):
        data = [[r[key] for r in recs if r[key] is not None] for recs in series.values()]
        ax.boxplot(data, vert=False, tick_labels=list(series), showfliers=True)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Latency per request (box: p25-p75, line: p50, whiskers: 1.5 IQR)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
