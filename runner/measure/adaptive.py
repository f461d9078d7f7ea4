"""Adaptive rounds (`run.target_ci`): whole rounds are added until every target metric's median
is known to the precision asked for, or `run.max_rounds` is reached."""

from __future__ import annotations

from pathlib import Path

from runner.config.prompts import Prompt
from runner.measure import closed_loop
from runner.measure.sender import Sender
from runner.metrics.stats import summarize
from runner.store import jobdir, records
from runner.store.facts import Facts


def ci_precision(req_path: Path, metrics: list[str]) -> dict[str, dict]:
    """Per metric: n and the relative half-width of the bootstrap 95% CI of the median,
    (hi - lo) / 2 / p50, from the job's ok records."""
    ok = jobdir.ok_records(req_path.parent, graded=False)
    out = {}
    for m in metrics:
        s = summarize([r[m] for r in ok])
        rel = (s["ci95"][1] - s["ci95"][0]) / 2 / s["p50"] if s and s["p50"] else None
        out[m] = {"n": s["n"] if s else 0, "rel_half_width": rel}
    return out


def until_precise(sender: Sender, prompts: tuple[Prompt, ...], run, t0: float, req_path: Path,
                  facts: Facts) -> dict:
    """Add whole rounds until every target metric's median is known to +/- run.target_ci."""
    target = run.target_ci
    metrics = list(run.target_metrics)
    rounds = run.rounds
    while True:
        precision = ci_precision(req_path, metrics)
        reached = {m: p["rel_half_width"] is not None and p["rel_half_width"] <= target
                   for m, p in precision.items()}
        if all(reached.values()) or rounds >= run.max_rounds:
            break
        done = {(r["round"], r["prompt_id"]) for r in records.read(req_path) if r.get("status") == "ok"}
        extra = [(rounds, p) for p in prompts if (rounds, p.id) not in done]  # a resume keeps them
        sender.progress.total += len(extra)
        counts = closed_loop.measure(sender, extra, run.concurrency, t0)
        facts.window = {k: facts.window[k] + counts[k] for k in counts}
        rounds += 1
    facts.rounds = rounds
    return {"target_ci": target, "max_rounds": run.max_rounds, "rounds": rounds, "reached": reached,
            "precision": precision}
