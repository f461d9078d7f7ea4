"""The capacity search in the reports (summary.json `capacity`, runner/measure/capacity.py): a
sentence, the table of load points and the throughput-latency plot with the passing region, in a
job's report and, for every capacity job of a sweep, in the sweep's."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from runner.metrics import catalog
from runner.metrics.slo import slo_bounds
from runner.report.plots import capacity_plot, load_text

PLOT = "capacity.png"


def objectives(s: dict) -> dict[str, float]:
    """The run.slo bounds the search held each request to."""
    return slo_bounds(((s.get("config") or {}).get("run") or {}).get("slo"))


def _load(over: str, value: float) -> str:
    return f"{value:g} requests in flight" if over == "concurrency" else f"{value:g} {catalog.unit('capacity.rate')}"


def sentence(s: dict) -> str:
    """What the search found, in one paragraph."""
    cap = s["capacity"]
    over, pts = cap["over"], cap["points"]
    bounds = " and ".join(f"{k} <= {v:g} s" for k, v in objectives(s).items())
    target = f"at least {cap['goodput']:.0%} of requests meeting {bounds}"
    how = "closed loop" if over == "concurrency" else "open loop, offered rate"
    if cap["passing"] is not None:
        text = f"Capacity under SLO ({how}): **{_load(over, cap['passing'])}** with {target}"
        text += (f"; {_load(over, cap['failing'])} failed, first on `{cap['first_failed']}`."
                 if cap["failing"] is not None else
                 "; no load tried failed within the search's bounds, so the capacity is at least this "
                 "(raise run.search.max_points or run.search.budget_s).")
    elif cap["failing"] is not None:
        text = (f"No load met the objectives ({target}): even one request at a time missed `{cap['first_failed']}` "
                f"(capacity.{over} = 0).")
    else:
        text = "No load was judged within run.search.budget_s."
    stopped = [p for p in pts if p["stopped_early"]]
    wall = sum(p["wall_s"] for p in pts)
    early = (f"; {len(stopped)} stopped early, having recorded {sum(p['attempted'] for p in stopped)} of the "
             f"{sum(p['expected'] for p in stopped)} measured requests their windows hold" if stopped
             else "; none stopped early")
    return f"{text} {len(pts)} load point{'s' * (len(pts) != 1)} in {wall:.1f} s of measuring{early}."


def table(s: dict) -> str:
    cap = s["capacity"]
    bounds = objectives(s)
    rows = [[i, load_text(cap["over"], p), p["loop"], _num(p["requests_per_s"], 2),
             "-" if p["goodput"] is None else f"{p['goodput']:.0%}", *(_num(p["p95"].get(k), 3) for k in bounds),
             {True: "yes", False: "NO", None: "-"}[p["passed"]], f"{p['attempted']} of {p['expected']}",
             p["stop_reason"] or "-", f"{p['wall_s']:.1f}"] for i, p in enumerate(cap["points"])]
    return tabulate(rows, headers=["point", "load", "loop", "throughput.requests_per_s", "goodput",
                                   *(f"{k}.p95 (s)" for k in bounds), "passed", "requests", "stopped",
                                   "wall (s)"], tablefmt="github", disable_numparse=True)


def definitions(s: dict) -> str:
    cap = s["capacity"]
    return (f"A load passes when its goodput (requests meeting every objective / requests attempted; failed and "
            f"dropped count against it) is >= {cap['goodput']:.0%} and no stop rule fired; the search brackets by "
            f"doubling, then bisects (runner/measure/capacity.py). A point is stopped early when it can no longer "
            f"pass, or when its median TTFT over the last third of its requests is more than twice the first "
            f"third's and above the objective (runner/measure/saturation.py). "
            f"throughput.requests_per_s: {catalog.spec('throughput.requests_per_s').definition}.")


def job_section(s: dict, job_dir: Path, plots: bool = True) -> list[str]:
    """The job report's section; nothing for a job that searched nothing."""
    if not s.get("capacity"):
        return []
    plot = capacity_plot({s.get("name") or s["model"]: s["capacity"]}, objectives(s), job_dir / PLOT) \
        if plots else None
    return ["## Capacity under SLO", "", sentence(s), "", table(s), "", definitions(s),
            "The per-request table and the throughput above are those of the capacity point (the highest passing "
            "load; without one, the first point); requests.jsonl holds every point's requests (`load_point`, "
            "`load`).", "", *([f"![capacity]({plot.name})", ""] if plot else [])]


def sweep_section(summaries: list[dict], names: list[str], sweep_dir: Path, plots: bool = True) -> list[str]:
    """The sweep report's section: each capacity job's sentence and table, one plot for them all."""
    jobs = [(s, n) for s, n in zip(summaries, names, strict=True) if s.get("capacity")]
    if not jobs:
        return []
    lines = ["## Capacity under SLO", ""]
    for s, name in jobs:
        lines += [f"**{name}** ({s.get('name') or s['model']}): {sentence(s)}", "", table(s), ""]
    bounds = {k: v for s, _ in jobs for k, v in objectives(s).items()}
    plot = capacity_plot({s.get("name") or s["model"]: s["capacity"] for s, _ in jobs}, bounds,
                         sweep_dir / PLOT) if plots else None
    return [*lines, definitions(jobs[0][0]), "", *([f"![capacity]({plot.name})", ""] if plot else [])]


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
