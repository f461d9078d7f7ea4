"""What the extra size buys: the sweep's largest model against its smallest, on the same prompts,
decoding and hardware. Quality gained, and what it costs in first-token time, decode speed, memory
and disk, as one sentence and one plot (the question a team brings to a small-model sweep)."""

from __future__ import annotations

from pathlib import Path

from runner.metrics import catalog
from runner.report.plots import pyplot

# (summary.csv column, its name in the sentence); each figure is read as the column's p50 or value.
FIGURES = [("quality.overall", "quality"), ("ttft_s.p50", "first-token time"),
           ("decode_tps.p50", "decode speed"), ("rss_mb", "memory"), ("disk_mb", "disk")]


def _size(row: dict) -> float | None:
    return row.get("params_m")


def compared_group(rows: list[dict]) -> list[dict]:
    """The ok jobs of the largest group that shares prompts, decoding and hardware, by size."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and _size(r):
            groups.setdefault((r["prompts"], r["decoding"], r["hardware"]), []).append(r)
    return sorted(max(groups.values(), key=len, default=[]), key=lambda r: (_size(r), r["job"]))


def comparable_pair(rows: list[dict]) -> tuple[dict, dict] | None:
    """(smallest, largest) by parameter count in the compared group; None when fewer than two sizes ran."""
    group = compared_group(rows)
    if len({_size(r) for r in group}) < 2:
        return None
    return group[0], group[-1]


def _num(v: float | None) -> str:
    """Three significant figures or so, without exponents (1664 MB, 24.6 s, 2.75 s)."""
    if v is None:
        return "n/a"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _ratio(big: float | None, small: float | None) -> str:
    if big is None or small in (None, 0):
        return "n/a"
    return f"{big / small:.2g}x"


def sentence(small: dict, big: dict) -> str:
    q_small, q_big = small.get("quality.overall"), big.get("quality.overall")
    quality = (f"quality.overall {_num(q_big)} against {_num(q_small)} ({q_big - q_small:+.2f} on the 1-5 "
               f"scale, graded by {big.get('quality.source') or 'no grader'})" if None not in (q_small, q_big)
               else "no quality figure for both (no grader ran)")
    costs = [f"{_ratio(big.get(k), small.get(k))} the {name} ({k} {_num(big.get(k))} against "
             f"{_num(small.get(k))} {catalog.unit(k)})" for k, name in FIGURES[1:]]
    return (f"What the extra size buys: {big['model']} ({_size(big):g}M parameters) against {small['model']} "
            f"({_size(small):g}M) gives {quality}, at {', '.join(costs[:-1])} and {costs[-1]}.")


def plot(group: list[dict], path: Path) -> Path:
    """One bar panel per figure, the models of the compared group in order of size."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(3.2 * len(FIGURES), 3.8))
    names = [f"{r['model']}\n{_size(r):g}M" for r in group]
    for ax, (key, name) in zip(axes, FIGURES, strict=True):
        values = [r.get(key) if r.get(key) is not None else 0 for r in group]
        ax.bar(range(len(group)), values, color=[f"C{i}" for i in range(len(group))])
        ax.set_xticks(range(len(group)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{name}\n{catalog.label(key)}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if key == "quality.overall":
            ax.set_ylim(0, 5)  # the whole 1-5 scale: a gain reads against it, not against the bars
    fig.suptitle("What the extra size buys and costs (models by parameter count)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(rows: list[dict], sweep_dir: Path, plots: bool = True) -> list[str]:
    pair = comparable_pair(rows)
    if pair is None:
        return []
    lines = ["## Small against big", "", sentence(*pair), ""]
    if plots:
        lines += [f"![what the extra size buys]({plot(compared_group(rows), sweep_dir / 'size_tradeoff.png').name})", ""]
    return lines
