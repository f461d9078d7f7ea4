"""The reports' plots (PNG, headless): latency distributions and labelled scatters."""

from __future__ import annotations

from pathlib import Path

from runner.metrics import catalog


def pyplot():
    """pyplot, headless (reports are written on servers and in CI); imported on the first plot, so
    every `slmbench` process that writes none (a failed job, a job's child process) starts ~0.5 s sooner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter(rows: list[dict], x: str, y: str, title: str, path: Path) -> Path | None:
    """One labelled point per job (sweep rows keyed by summary.csv column names)."""
    pts = [r for r in rows if r[x] is not None and r[y] is not None]
    if not pts:
        return None
    plt = pyplot()
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
    plt = pyplot()
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


def capacity_plot(series: dict[str, dict], bounds: dict[str, float], path: Path) -> Path | None:
    """Throughput against each objective's p95 over a capacity search's load points (summary.json
    `capacity`), one colour per job: filled = passed, x = failed, the objective's bound dashed, and
    the passing region (throughput up to the highest passing load's, under the bound) shaded."""
    series = {k: v for k, v in series.items() if any(p.get("requests_per_s") for p in v["points"])}
    if not series or not bounds:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(bounds), figsize=(6 * len(bounds), 4.5), squeeze=False)
    for ax, (metric, bound) in zip(axes[0], bounds.items(), strict=True):
        for i, (name, cap) in enumerate(series.items()):
            color = f"C{i}"
            pts = sorted((p for p in cap["points"] if p.get("requests_per_s") and p["p95"].get(metric) is not None),
                         key=lambda p: (p["loop"] == "open", p["load"]))
            ax.plot([p["requests_per_s"] for p in pts], [p["p95"][metric] for p in pts], color=color, alpha=0.4)
            for p in pts:
                x, y = p["requests_per_s"], p["p95"][metric]
                ax.scatter(x, y, color=color, marker="o" if p["passed"] else "x" if p["passed"] is False else ".")
                ax.annotate(load_text(cap["over"], p), (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
            searched = "closed" if cap["over"] == "concurrency" else "open"
            passing = [p["requests_per_s"] for p in pts
                       if p["passed"] and p["loop"] == searched and p["load"] == cap["passing"]]
            if passing:  # up to the capacity's throughput, under the objective
                ax.fill_between([0, max(passing)], 0, bound, color=color, alpha=0.12,
                                label=f"{name}: passing region (goodput >= {cap['goodput']:.0%})")
        ax.axhline(bound, color="red", linestyle="--", linewidth=1, label=f"objective: {metric} <= {bound:g} s")
        ax.set_xlabel(catalog.label("throughput.requests_per_s"))
        ax.set_ylabel(f"{metric}.p95 ({catalog.unit(metric)})")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Capacity search: throughput against latency\nper load point (o passed, x failed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_text(over: str, point: dict) -> str:
    """A load point as the reports label it: c=4, r=2.5, or 1 at a time (a rate search's first point)."""
    if point["loop"] == "closed":
        return "1 at a time" if over == "rate" else f"c={point['load']:g}"
    return f"r={point['load']:g}"
