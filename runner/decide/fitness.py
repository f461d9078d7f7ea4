"""Fit for the task: whether a candidate can do the job at all, apart from what the deployment
allows (the limits). A candidate is fit when it meets every acceptance bar that applies to it:

- `selection.acceptance` is a mapping: those bars, for every job (they replace the prompt set's);
- `selection.acceptance` is true: the bars its prompt set declares (`prompts.acceptance`, recorded in
  the job's summary.json), else `selection.acceptance_default`;
- `selection.acceptance` is false (or absent from a hand-made selection): no verdict (fit None).

A bar whose key the selection also limits (`selection.min.quality.overall=2.5`) gives way to that
explicit limit. A bar on a figure the job did not measure (quality without a trusted grader) is
not applied, and the candidate's notes say so. Only a fit candidate is recommended; when none is,
the decision says so first, with each candidate's numbers and what to try next.
"""

from __future__ import annotations

from runner.decide.keys import Metric, resolve_key

# What the decision names for every candidate that is not fit, whatever bars it failed.
EVIDENCE = ("quality.overall", "degenerate.share", "truncation.share")


def bars_of(summary: dict, sel: dict) -> tuple[dict, str] | None:
    """(the bars {min: {...}, max: {...}} that apply to a job, where they come from), or None."""
    acc = sel.get("acceptance")
    if not acc:
        return None
    if isinstance(acc, dict):
        bars, source = acc, "selection.acceptance"
    elif summary.get("acceptance"):
        bars, source = summary["acceptance"], f"prompt set {summary.get('prompts')}"
    else:
        bars, source = sel["acceptance_default"], "selection.acceptance_default (the prompt set declares none)"
    limited = set(sel["min"]) | set(sel["max"])
    return {kind: {k: v for k, v in (bars.get(kind) or {}).items() if k not in limited}
            for kind in ("min", "max")}, source


def assess(cands: list[dict], by_job: dict[str, dict], sel: dict, fmt, with_unit) -> None:
    """Set each evaluated candidate's `fit` (True/False, None without bars), `fit_reasons` (each failed
    bar with its value) and `acceptance` (its bars and their source); a not-applied bar goes to notes."""
    summaries = list(by_job.values())
    for c in cands:
        c["fit"], c["fit_reasons"], c["acceptance"] = None, [], None
        if not c["evaluated"]:
            continue
        s = by_job[c["job"]]
        found = bars_of(s, sel)
        if found is None:
            continue
        bars, source = found
        c["acceptance"] = {"source": source, **bars}
        for kind, op, worse in (("min", ">=", lambda v, b: v < b), ("max", "<=", lambda v, b: v > b)):
            for key, bar in bars[kind].items():
                m = resolve_key(key, summaries, f"acceptance bar {kind}.{key} ({source})")
                v = m.value(s)
                if v is None:
                    c["notes"].append(f"{m.key} not measured: acceptance bar {op} {with_unit(fmt(bar), m.unit)} "
                                      f"not applied")
                elif worse(v, bar):
                    c["fit_reasons"].append(f"{m.key} {with_unit(fmt(v), m.unit)} {'<' if kind == 'min' else '>'} "
                                            f"{with_unit(fmt(bar), m.unit)}")
        c["fit"] = not c["fit_reasons"]


def verdict(cands: list[dict]) -> bool | None:
    """True when some evaluated candidate is fit, False when evaluated ones were assessed and none
    is, None when no bar applied (acceptance off) or nothing was evaluated."""
    assessed = [c for c in cands if c["evaluated"] and c["fit"] is not None]
    if not assessed:
        return None
    return any(c["fit"] for c in assessed)


def evidence(c: dict, s: dict, fmt) -> str:
    """A candidate's case in numbers: quality, degenerate share by class, cut share by kind."""
    q = Metric("quality.overall", ("quality", "overall")).value(s)
    parts = [f"quality.overall {fmt(q)}" if q is not None else "quality not measured"]
    d = s.get("degenerate") or {}
    if d:
        kinds = ", ".join(f"{k} {d[k]:.0%}" for k in ("loop", "echo", "empty", "off_task") if d.get(k))
        parts.append(f"{d['share']:.0%} degenerate answers" + (f" ({kinds})" if kinds else ""))
    t = s.get("truncation") or {}
    if t:
        kinds = ", ".join(f"{k} {t[k]:.0%}" for k in ("cut_loop", "cut_short") if t.get(k))
        parts.append(f"{t['share']:.0%} cut at max_tokens={t.get('max_tokens')}" + (f" ({kinds})" if kinds else ""))
    return ", ".join(parts)


def next_steps(cands: list[dict], by_job: dict[str, dict]) -> str:
    """What to try next, as commands that run."""
    cut_short = any(((by_job[c["job"]].get("truncation") or {}).get("cut_short") or 0) > 0
                    for c in cands if c["evaluated"])
    steps = ["a larger model (`slmbench models import PATH --alias NAME`, then `slmbench run model=NAME`)",
             "a model behind an endpoint (`slmbench run backend=openai backend.base_url=URL model.id=MODEL`)",
             "another precision or decoding (`slmbench run -m model=ALIAS_INT8,ALIAS_FP32`; on an endpoint "
             "`decoding.frequency_penalty=0.5`, which `python benchmarks/penalties.py` measures on the pack)"]
    if cut_short:
        steps.append("a larger cap for the answers cut while still answering (`decoding.max_tokens=N`)")
    return "Try next: " + "; ".join(steps) + "."


def none_fit_sentence(cands: list[dict], by_job: dict[str, dict], labels: dict[str, str], fmt,
                      ranked: list[dict], objective: str) -> str:
    sets = sorted({str(c.get("prompts")) for c in cands if c["evaluated"]})
    cases = "; ".join(f"{labels[c['job']]}: {evidence(c, by_job[c['job']], fmt)}"
                      f" ({', '.join(c['fit_reasons'])})"
                      for c in cands if c["evaluated"] and c["fit"] is False)
    order = ", ".join(f"{i}. {labels[c['job']]}" for i, c in enumerate(ranked, 1))
    rank = f" Ranked for reference on {objective}: {order}." if order else ""
    return f"No candidate is fit for {', '.join(sets)}: {cases}.{rank} {next_steps(cands, by_job)}"


def fit_clause(c: dict, by_job: dict[str, dict], fmt, with_unit) -> str:
    """`it is fit for meeting-notes (quality.overall 4.6 >= 3.5, degenerate.share 0 <= 0.1)`."""
    s = by_job[c["job"]]
    bars = c.get("acceptance") or {}
    met = []
    summaries = [s]
    for kind, op in (("min", ">="), ("max", "<=")):
        for key, bar in (bars.get(kind) or {}).items():
            m = resolve_key(key, summaries, "acceptance")
            v = m.value(s)
            if v is not None:
                met.append(f"{m.key} {with_unit(fmt(v), m.unit)} {op} {with_unit(fmt(bar), m.unit)}")
    return f"it is fit for {s.get('prompts')}" + (f" ({', '.join(met)})" if met else "")


def unfit_note(c: dict) -> str:
    return f"not fit: {', '.join(c['fit_reasons'])}"
