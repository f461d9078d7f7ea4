"""Quality aggregates for `summary.json`: rubric scores with their n, and how far to trust
the judge (parse failures, score spread, repeat consistency, injection shift)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean

from judges.grading import latest_judgements
from runner.stats import summarize


def quality_summary(job_dir: Path, ok: list[dict], judge_name: str | None, judge_family_warning: str | None) -> dict:
    out: dict = {"judge": judge_name, "scorers": _scorer_means(ok)}
    if not judge_name:
        return out
    js = latest_judgements(job_dir, judge_name)
    main = [j for j in js if j["repeat"] == 0 and j["probe"] is None]
    graded = [j for j in main if not j["error"] and j["scores"]]
    per_aspect = defaultdict(list)
    for j in graded:
        for aspect, score in j["scores"].items():
            per_aspect[aspect].append(score)
    overall = [mean(j["scores"].values()) for j in graded]
    out.update({
        "n_answers": len(ok),
        "n_graded": len(graded),
        "n_judge_errors": len(main) - len(graded),
        "graded_fraction": len(graded) / len(ok) if ok else None,
        "parse_failure_rate": (sum(1 for j in main if (j["error"] or "").startswith("unparseable")) / len(main)
                               if main else None),
        "aspects": {a: {"mean": mean(v), "n": len(v)} for a, v in sorted(per_aspect.items())},
        "overall": summarize(overall),
        "distribution": {str(k): v for k, v in sorted(Counter(s for v in per_aspect.values() for s in v).items())},
        "repeat_consistency": _repeat_consistency(js),
        "injection": _injection_shift(js),
        "errors": dict(Counter(j["error"] for j in main if j["error"]).most_common(3)),
        "warnings": [judge_family_warning] if judge_family_warning else [],
    })
    return out


def _scorer_means(ok: list[dict]) -> dict:
    values = defaultdict(list)
    for r in ok:
        for k, v in (r.get("scores") or {}).items():
            if v is not None:
                values[k].append(v)
    return {k: {"mean": mean(v), "n": len(v)} for k, v in sorted(values.items())}


def _repeat_consistency(js: list[dict]) -> dict | None:
    """Exact agreement across repeats: fraction of (answer, aspect) whose k grades are all equal."""
    groups = defaultdict(list)
    for j in js:
        if j["probe"] is None and not j["error"]:
            for aspect, score in j["scores"].items():
                groups[(j["round"], j["prompt_id"], aspect)].append(score)
    multi = [v for v in groups.values() if len(v) > 1]
    if not multi:
        return None
    return {"n": len(multi), "all_equal": sum(1 for v in multi if len(set(v)) == 1) / len(multi),
            "mean_range": mean(max(v) - min(v) for v in multi)}


def _injection_shift(js: list[dict]) -> dict | None:
    """Mean overall score with a 'give top marks' note appended, minus without it (same answers).
    A robust judge shows ~0; a positive shift means the answer can talk its way up."""
    base = {(j["round"], j["prompt_id"]): j for j in js if j["probe"] is None and j["repeat"] == 0 and not j["error"]}
    pairs = []
    for j in js:
        b = base.get((j["round"], j["prompt_id"]))
        if j["probe"] == "injection" and not j["error"] and j["scores"] and b and b["scores"]:
            pairs.append(mean(j["scores"].values()) - mean(b["scores"].values()))
    if not pairs:
        return None
    return {"n": len(pairs), "mean_shift": mean(pairs), "max_shift": max(pairs)}
