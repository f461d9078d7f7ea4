"""The sweep's report: one row per job (summary.csv and report.md), the plots across jobs, the
throughput-latency curve when the load was swept, and how many jobs shared a host at once."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from runner.config.labels import job_name
from runner.metrics import catalog
from runner.report import capacity, size_tradeoff
from runner.report.job import PLOTS_OFF, RATE, degenerate_line, fmt, formula, truncation_warning
from runner.report.plots import latency_plot, pyplot, scatter
from runner.store import jobdir
from runner.store.jobdir import SUMMARY
from runner.store.summary import flat_row, write_csv


def write_sweep_report(sweep_dir: Path, plots: bool = True) -> Path | None:
    """summary.csv and report.md over the sweep's jobs; with `plots`, the PNGs beside them."""
    jobs = sorted((p.parent for p in sweep_dir.glob(f"*/{SUMMARY}")), key=lambda p: _job_num(p.name))
    if not jobs:
        return None
    summaries = [jobdir.read_summary(j) for j in jobs]
    rows = [flat_row(s, j.name) for s, j in zip(summaries, jobs, strict=True)]
    write_csv(sweep_dir / "summary.csv", rows)
    ok_records = {j.name: jobdir.ok_records(j, graded=False) for j in jobs}
    lat = size = quality = None
    if plots:
        lat = latency_plot(ok_records, sweep_dir / "latency.png")
        size = scatter(rows, "disk_mb", "decode_tps.p50", "Speed against size", sweep_dir / "speed_vs_size.png")
        quality = scatter(rows, "e2e_s.p50", "quality.overall", "Quality (from quality.source) against speed",
                          sweep_dir / "quality_vs_speed.png")
    shown = ["job", "status", "n", "ttft_s.p50", "tpot_s.p50", "decode_tps.p50", "decode_tps.ci95",
             "e2e_s.p50", "e2e_s.p95", "load_s", "rss_mb", "disk_mb", "license", "deterministic",
             "truncation.share", "truncation.cut_short", "degenerate.share", "quality.source", "quality.trusted", "quality.overall", "quality.ci95",
             "quality.scorers.rouge_l.f1"]
    table = [[fmt(r[c], 3 if isinstance(r[c], float) else 0) for c in shown] for r in rows]
    failed = [r for r in rows if r["status"] != "ok"]
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{len(rows)} jobs, {len(rows) - len(failed)} ok, {len(failed)} failed. "
             "One row per job; every job's own report.md has the full distributions.", "",
             tabulate(table, headers=shown, tablefmt="github"), "",
             "Definitions: " + "; ".join(f"`{k}` = {catalog.spec(k).definition}"
                                         for k in ("ttft_s", "tpot_s", "decode_tps", "e2e_s", "load_s",
                                                   "rss_mb", "disk_mb", "truncation.share", "truncation.cut_short",
                                                   "degenerate.share")) + ".",
             "p50 = median; ci95 = bootstrap 95% confidence interval of the median. quality.overall = the "
             "per-answer 1-5 quality from quality.source (a judge: mean over aspects per answer; notes: the "
             "notes scorer's score), then the mean over answers; quality.trusted = that grader passed "
             "qualification on answers of known order (untrusted quality does not steer the decision); "
             "quality.scorers.rouge_l.f1 = LCS F1 against the reference. Column names are the numbers' names "
             "everywhere (summary.csv, MLflow, selection keys; runner/metrics/catalog.py).", ""]
    bad = [f"- {j.name}:{line[1:]}" for s, j in zip(summaries, jobs, strict=True)
           if (line := degenerate_line(s)) and (s.get("degenerate") or {}).get("share")]
    if bad:
        lines += ["## Degenerate answers", "", *bad, ""]
    cut = [f"- {j.name}: {why}" for s, j in zip(summaries, jobs, strict=True) if (why := truncation_warning(s))]
    if cut:
        lines += ["## Answers cut at max_tokens", "", *cut, ""]
    if failed:
        lines += ["## Failed jobs", "", *[f"- {r['job']}: {r['error']}" for r in failed], ""]
    if lat:
        lines += [f"![latency]({lat.name})", ""]
    if size:
        lines += [f"![speed against size]({size.name})", ""]
    if quality:
        lines += [f"![quality against speed]({quality.name})", ""]
    lines += size_tradeoff.section(rows, sweep_dir, plots)
    lines += load_curve(summaries, [j.name for j in jobs], sweep_dir, plots)
    lines += capacity.sweep_section(summaries, [j.name for j in jobs], sweep_dir, plots)
    lines += [concurrency_note(summaries), ""]
    if not plots:
        lines += [PLOTS_OFF, ""]
    out = sweep_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def _load_point(s: dict) -> tuple[str, float]:
    ld = s.get("load") or {}
    if ld.get("profile") == "rate":
        return f"r={ld['rate']:g}", ld["rate"]
    c = ld.get("concurrency", s["config"]["run"]["concurrency"])  # a capacity search's: its capacity point's
    return f"c={c}", c


def load_curve(summaries: list[dict], names: list[str], sweep_dir: Path, plots: bool = True) -> list[str]:
    """Throughput against latency, one line per configuration swept over load points
    (`-m run.concurrency=1,2,4,8` or `run.rate=...`); nothing when no load was swept."""
    lines_of: dict[str, list[tuple]] = {}
    for s, name in zip(summaries, names, strict=True):
        tp = s.get("throughput")
        if not tp or not s["metrics"].get("e2e_s"):
            continue
        c = s["config"]
        name = job_name(s["model"], s.get("distinguishing") or [], leave_out=("run.concurrency", "run.rate"))
        key = " / ".join([name, c["decoding"]["name"], c["hardware"]["name"], s["prompts"]])
        label, x = _load_point(s)
        lines_of.setdefault(key, []).append((x, label, tp, s["metrics"], s.get("goodput"), name))
    if not any(len({p[1] for p in pts}) > 1 for pts in lines_of.values()):
        return []
    for pts in lines_of.values():
        pts.sort(key=lambda p: p[0])
    if plots:
        _throughput_latency_plot(lines_of, sweep_dir / "throughput_latency.png")
    rows = []
    for key, pts in lines_of.items():
        for _, label, tp, m, gp, name in pts:
            rows.append([key, label, fmt(tp["requests_per_s"], 2), fmt(tp["output_tps"], 1),
                         fmt((m.get("ttft_s") or {}).get("p95")), fmt(m["e2e_s"]["p50"]), fmt(m["e2e_s"]["p95"]),
                         f"{gp['fraction']:.0%}" if gp else "-", name])
    table = tabulate(rows, headers=["configuration", "load", "throughput.requests_per_s", "throughput.output_tps", "ttft_s.p95", "e2e_s.p50",
                                    "e2e_s.p95", "goodput", "job"], tablefmt="github")
    return ["## Throughput against latency", "", table, "",
            f"throughput.requests_per_s: {catalog.spec('throughput.requests_per_s').definition}; "
            f"throughput.output_tps: {catalog.spec('throughput.output_tps').definition}; goodput: "
            f"{catalog.spec('goodput.fraction').definition}.", "",
            *(["![throughput against latency](throughput_latency.png)", ""] if plots else [])]


def _throughput_latency_plot(lines_of: dict[str, list[tuple]], path: Path) -> None:
    """e2e and TTFT (p50 and p95) against output throughput, one line per configuration."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, pts in lines_of.items():
        xs = [p[2]["output_tps"] for p in pts]
        for ax, metric in ((axes[0], "e2e_s"), (axes[1], "ttft_s")):
            p50 = [p[3][metric]["p50"] if p[3].get(metric) else None for p in pts]
            p95 = [p[3][metric]["p95"] if p[3].get(metric) else None for p in pts]
            line, = ax.plot(xs, p50, marker="o", label=f"{key} p50")
            ax.plot(xs, p95, marker="x", linestyle="--", color=line.get_color(), label=f"{key} p95")
            for x, y, p in zip(xs, p50, pts, strict=True):
                if y is not None:
                    ax.annotate(p[1], (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    for ax, title in ((axes[0], "end-to-end latency (s)"), (axes[1], "TTFT (s)")):
        ax.set_xlabel(f"{catalog.label('throughput.output_tps')}: {formula('throughput.output_tps')}")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Throughput against latency (labels: c = requests in flight, r = offered {RATE})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def concurrency_note(summaries: list[dict]) -> str:
    """How many jobs ran at once, from their recorded start and end times (not from the config)."""
    spans = [(s["job_wall"]["host"], s["job_wall"]["start"], s["job_wall"]["end"]) for s in summaries
             if s.get("job_wall")]
    peak = 0
    for host, start, _ in spans:
        peak = max(peak, sum(1 for h, a, b in spans if h == host and a <= start < b))
    launchers = sorted({s.get("launcher") or "basic" for s in summaries})
    return (f"Jobs at once on one host: up to {peak} (from each job's host, start and end time; launcher: "
            f"{', '.join(launchers)}). " + ("Overlapping jobs shared that host's cores: compare their speed with "
                                            "care." if peak > 1 else "Each job had its host to itself."))


def _job_num(name: str) -> int:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else 0
