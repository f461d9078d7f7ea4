"""Quality aggregates for `summary.json`: the judge's scores with their n, how far to trust the
judge (parse failures, score spread, repeat consistency, injection shift), and which grader's
per-answer score stands for the job's quality.

`quality.overall` is the per-answer overall quality (1-5) the decision uses, from the grader
named by `quality.source`: the judge when it qualified; else the `notes` scorer when the prompts
carry reference_items and it qualified; else `reference_coverage` (prompts with only a reference
text) when it qualified; else the first of these that graded, unqualified. `quality.trusted`
says whether the source passed qualification, `quality.qualification` holds its figures and
`quality.qualifications` every grader's that was qualified for this job (judges/qualify.py).
The judge's own overall is `quality.judge_overall`."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean

from runner.metrics.stats import summarize
from runner.store.jobdir import latest_judgements, read_qualifications


def quality_summary(job_dir: Path, ok: list[dict], judge_name: str | None, judge_family_warning: str | None) -> dict:
    out: dict = {"judge": judge_name, "scorers": _scorer_means(ok)}
    quals = read_qualifications(job_dir)
    judge_overall = None
    if judge_name:
        js = latest_judgements(job_dir, judge_name)
        main = [j for j in js if j["repeat"] == 0 and j["probe"] is None]
        graded = [j for j in main if not j["error"] and j["scores"]]
        per_aspect = defaultdict(list)
        for j in graded:
            for aspect, score in j["scores"].items():
                per_aspect[aspect].append(score)
        judge_overall = summarize([mean(j["scores"].values()) for j in graded])
        out.update({
            "n_answers": len(ok),
            "n_graded": len(graded),
            "n_judge_errors": len(main) - len(graded),
            "graded_fraction": len(graded) / len(ok) if ok else None,
            "parse_failure_rate": (sum(1 for j in main if (j["error"] or "").startswith("unparseable")) / len(main)
                                   if main else None),
            "aspects": {a: {"mean": mean(v), "n": len(v)} for a, v in sorted(per_aspect.items())},
            "judge_overall": judge_overall,
            "distribution": {str(k): v for k, v in sorted(Counter(s for v in per_aspect.values() for s in v).items())},
            "repeat_consistency": _repeat_consistency(js),
            "injection": _injection_shift(js),
            "errors": dict(Counter(j["error"] for j in main if j["error"]).most_common(3)),
            "warnings": [judge_family_warning] if judge_family_warning else [],
        })
    notes_overall = summarize([r["scores"]["notes.score"] for r in ok
                               if (r.get("scores") or {}).get("notes.score") is not None])
    coverage_overall = summarize([r["scores"]["reference_coverage.score"] for r in ok
                                  if (r.get("scores") or {}).get("reference_coverage.score") is not None])
    out.update(choose_source(judge_name, judge_overall, notes_overall, quals, coverage_overall))
    return out


def choose_source(judge_name: str | None, judge_overall: dict | None, notes_overall: dict | None,
                  quals: dict[str, dict], coverage_overall: dict | None = None) -> dict:
    """Which grader's per-answer score is `quality.overall`, and whether it is trusted."""
    def passed(name):
        return bool((quals.get(name) or {}).get("passed"))

    candidates = []
    if judge_name and judge_overall:
        candidates.append((judge_name, judge_overall))
    if notes_overall:
        candidates.append(("notes", notes_overall))
    if coverage_overall:
        candidates.append(("reference_coverage", coverage_overall))
    source, overall = next(((n, o) for n, o in candidates if passed(n)), candidates[0] if candidates else (None, None))
    q = quals.get(source) if source else None
    why = None
    if source and not passed(source):
        why = (f"grader {source} failed qualification ({q['why']})" if q and q.get("why")
               else f"grader {source} was not qualified")
    elif source is None and judge_name:
        why = f"judge {judge_name} graded no answer"
    rejected = [f"{n}: {quals[n].get('why') or 'not qualified'}" for n, _ in candidates
                if n != source and n in quals and not passed(n)]
    return {"source": source, "overall": overall, "trusted": bool(source and passed(source)),
            "untrusted_reason": why, "rejected": rejected,
            "qualification": q, "qualifications": quals}


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
