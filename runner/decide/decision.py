"""The decision over a sweep: which candidate (model x hardware x decoding) to ship, and why.

Inputs are the jobs' `summary.json` files and a `selection` config (`conf/selection/default.yaml`):
hard limits on any summary metric, a licence policy, and an objective. Every job is a candidate:
eligible when it meets every limit (each failed limit is named with its value, limit and unit),
failed jobs are listed as not evaluated. The recommended candidate is the best eligible one by
the objective; the runner-up is the second, and the margin between them is called "clear" only
when the two candidates' 95% CIs do not overlap. A Pareto front over speed, memory, footprint and
quality is computed alongside (it does not depend on the limits).

Outputs in the sweep directory: `decision.json` (the previous one kept as
`decision.previous.json`), `pareto.png`, and the decision section at the top of `report.md`
(between `<!-- decision:start -->` and `<!-- decision:end -->`).

Metric keys are dotted paths into summary.json, resolved first under `metrics.`, then at the top
level, then under `quality.`: `e2e_s.p95` is `metrics.e2e_s.p95`, `rss_mb` is the top-level
`rss_mb`, `quality.overall` is `quality.overall.mean`. Hydra turns `selection.max.tpot_s.p95=0.03`
into nested mappings; they are flattened back into dotted keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.config.errors import UserError
from runner.decide import fitness
from runner.decide.keys import Metric, _is_num, inferred_goal, resolve_key
from runner.decide.selection import AUTO, AUTO_QUALITY, AUTO_SPEED, normalize_selection
from runner.metrics.catalog import IN_PROCESS_ONLY
from runner.store.summary_shape import in_process

# What a remote server's client cannot measure (the model was loaded, and lives, elsewhere).
PARETO_DIMS = (("e2e_s.p50", "speed", "min"), ("rss_mb", "memory", "min"), ("disk_mb", "footprint", "min"),
               ("quality.overall", "quality", "max"))
RegistryLookup = Callable[[str], Any]

def check_selection(selection: Any) -> dict:
    """Validate a selection before a sweep runs (no summaries yet: keys are checked against
    the known metric list). Returns the normalized selection; raises UserError."""
    sel = normalize_selection(selection)
    _plan(sel, [])
    return sel


# ---------------------------------------------------------------------------- the decision


@dataclass
class _Plan:
    limits: dict[str, list[tuple[Metric, float]]]
    kind: str  # "metric" | "weights"
    objective: Metric | None
    goal: str
    weights: list[tuple[Metric, float]]
    auto: bool
    dims: list[tuple[Metric, str, str]]


def _plan(sel: dict, summaries: list[dict]) -> _Plan:
    limits = {kind: [(resolve_key(k, summaries, f"selection.{kind}.{k}"), v) for k, v in sel[kind].items()]
              for kind in ("max", "min")}
    dims = [(resolve_key(k, summaries, "pareto"), label, goal) for k, label, goal in PARETO_DIMS]
    if sel["weights"]:
        weights = [(resolve_key(k, summaries, f"selection.weights.{k}"), w) for k, w in sel["weights"].items()]
        return _Plan(limits, "weights", None, "max", weights, False, dims)
    key, auto = sel["objective"]["metric"], sel["objective"]["metric"] == AUTO
    if auto:
        quality = resolve_key(AUTO_QUALITY, summaries, "objective")
        judged = any(quality.value(s) is not None for s in summaries if s.get("status") == "ok")
        key = AUTO_QUALITY if judged else AUTO_SPEED
    metric = resolve_key(key, summaries, "selection.objective.metric")
    goal = sel["objective"]["goal"] or inferred_goal(metric.key)
    if goal is None:
        raise UserError(f"selection.objective.metric={metric.key}: its better direction is not known; "
                        f"set selection.objective.goal=max or min")
    return _Plan(limits, "metric", metric, goal, [], auto, dims)


def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool) or not _is_num(v):
        return str(v)
    if isinstance(v, int):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        s = f"{v:.2f}".rstrip("0")
        return s + "0" if s.endswith(".") else s
    return f"{v:.3g}"


def _pair(v: float, limit: float) -> tuple[str, str]:
    """Value and limit as text, with enough digits to tell them apart."""
    a, b = fmt(v), fmt(limit)
    if a == b and v != limit:
        a, b = f"{v:.6g}", f"{limit:.6g}"
    return a, b


def with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit not in ("", "1") else text  # "1": a ratio, shown bare


def _limit_text(metric: Metric, op: str, limit: float) -> str:
    return f"{metric.key} {op} {with_unit(fmt(limit), metric.unit)}"


def _name(node: Any) -> str | None:
    return node.get("name") if isinstance(node, dict) else None


def _attr(entry: Any, name: str) -> Any:
    if entry is None:
        return None
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


def _default_registry() -> RegistryLookup:
    from runner.models import registry

    models: dict | None = None

    def lookup(alias: str):
        nonlocal models
        if models is None:
            models = registry.all_models()
        return models.get(alias)

    return lookup


def _known_licence(value: Any) -> str | None:
    if not isinstance(value, str) or value.strip().lower() in ("", "unknown", "none", "null"):
        return None
    return value.strip()


def _licence_reasons(cands: list[dict], summaries: dict[str, dict], sel: dict,
                     lookup: RegistryLookup | None) -> None:
    """Add the licence policy's reasons; UserError naming every model without licence data."""
    if not sel["licenses"] and not sel["commercial"]:
        return
    lookup = lookup or _default_registry()
    allowed = {x.casefold() for x in sel["licenses"] or []}
    missing: dict[str, str] = {}
    for c in cands:
        if not c["evaluated"]:
            continue
        model = c["model"]
        licence = _known_licence(summaries[c["job"]].get("license"))
        entry = lookup(model) if model and (licence is None or sel["commercial"]) else None
        licence = licence or _known_licence(_attr(entry, "license"))
        if sel["licenses"]:
            if licence is None:
                missing.setdefault(str(model), "no licence in its summary.json or the model registry")
            elif licence.casefold() not in allowed:
                c["reasons"].append(f"licence {licence} not in [{', '.join(sel['licenses'])}]")
                c["failed_limits"].append(f"licence in [{', '.join(sel['licenses'])}]")
        if sel["commercial"]:
            use = _attr(entry, "commercial_use")
            if entry is None:
                missing.setdefault(str(model), "not in the model registry")
            elif use is None:
                missing.setdefault(str(model), "commercial_use is not set in its registry entry")
            elif not use:
                c["reasons"].append(f"licence {licence or 'unknown'}: commercial use not allowed "
                                    "(registry commercial_use=false)")
                c["failed_limits"].append("commercial use allowed")
    if missing:
        policy = " and ".join(p for p in (f"licenses=[{', '.join(sel['licenses'])}]" if sel["licenses"] else "",
                                          "commercial=true" if sel["commercial"] else "") if p)
        detail = "; ".join(f"{m}: {why}" for m, why in missing.items())
        raise UserError(f"licence policy {policy} needs licence data, but model(s) {', '.join(missing)} have none "
                        f"({detail}); set license/commercial_use in conf/model/<alias>.yaml or drop the policy")


def _weighted(cands: list[dict], summaries: dict[str, dict], weights: list[tuple[Metric, float]]) -> None:
    """objective_value = sum(w * (x - min) / (max - min)) over the evaluated candidates; its
    interval from the same sum over the CI bounds (per-job values without a CI count as exact)."""
    evaluated = [c for c in cands if c["evaluated"]]
    ranges = {}
    for m, _ in weights:
        vals = [v for v in (m.value(summaries[c["job"]]) for c in evaluated) if v is not None]
        ranges[m.key] = (min(vals), max(vals)) if vals else None
    for c in evaluated:
        s = summaries[c["job"]]
        score, lo, hi, any_ci = 0.0, 0.0, 0.0, False
        for m, w in weights:
            v, rng = m.value(s), ranges[m.key]
            if v is None or rng is None:
                score = None
                break

            def norm(x, rng=rng):
                return (x - rng[0]) / (rng[1] - rng[0]) if rng[1] > rng[0] else 0.0

            score += w * norm(v)
            ci = m.ci(s)
            ends = sorted((w * norm(ci[0]), w * norm(ci[1]))) if ci else (w * norm(v), w * norm(v))
            any_ci = any_ci or ci is not None
            lo, hi = lo + ends[0], hi + ends[1]
        c["objective_value"] = score
        c["objective_ci"] = [lo, hi] if score is not None and any_ci else None


def _pareto(cands: list[dict], summaries: dict[str, dict], dims: list[tuple[Metric, str, str]]) -> tuple[list, list]:
    """Present dimensions (measured for at least one evaluated candidate) and the jobs on the front.
    A candidate missing a present dimension is not on the front, unless the figure is one its
    backend cannot measure (an endpoint's load time, memory, disk): it is then compared on the
    figures it has, and dominates only a candidate whose every known figure it also knows (an
    unknown memory is never better than a measured one). Equal points are all on the front."""
    evaluated = [c for c in cands if c["evaluated"]]
    present = [d for d in dims if any(d[0].value(summaries[c["job"]]) is not None for c in evaluated)]
    if not present:
        return present, []
    points: dict[str, list] = {}
    for c in evaluated:
        s = summaries[c["job"]]
        remote = not in_process(s)
        vals = [m.value(s) for m, _, _ in present]
        if all(v is not None or (remote and m.key in IN_PROCESS_ONLY)
               for v, (m, _, _) in zip(vals, present, strict=True)):
            points[c["job"]] = [None if v is None else v if goal == "min" else -v
                                for v, (_, _, goal) in zip(vals, present, strict=True)]

    def dominates(a, b):  # a must know every figure b knows: an unknown figure is never better
        if any(x is None and y is not None for x, y in zip(a, b, strict=True)):
            return False
        shared = [(x, y) for x, y in zip(a, b, strict=True) if y is not None]
        return bool(shared) and all(x <= y for x, y in shared) and any(x < y for x, y in shared)

    front = [job for job, p in points.items() if not any(dominates(q, p) for o, q in points.items() if o != job)]
    return present, front


def _labels(cands: list[dict]) -> dict[str, str]:
    """Model name, plus the hardware/decoding/prompts only where the sweep varied them."""
    varying = [f for f in ("decoding", "hardware", "prompts") if len({c.get(f) for c in cands}) > 1]
    labels = {}
    for c in cands:
        extra = [str(c.get(f)) for f in varying]
        name = c.get("name") or c["model"]  # the model's label, with the override that sets it apart
        labels[c["job"]] = f"{name} ({', '.join(extra)})" if extra else str(name)
    if len(set(labels.values())) < len(labels):  # same configuration twice: the job tells them apart
        counts = {v: list(labels.values()).count(v) for v in labels.values()}
        labels = {j: f"{lbl} [{j}]" if counts[lbl] > 1 else lbl for j, lbl in labels.items()}
    return labels


def objective_text(decision: dict) -> str:
    o = decision["objective"]
    if o["kind"] == "weights":
        terms = " ".join(f"{w:+g} x {k}" for k, w in o["weights"].items())
        return f"the weighted score ({terms}, each min-max-normalized over the evaluated jobs)"
    return o["metric"]


def _sentence(decision: dict, cands: list[dict], labels: dict[str, str], plan: _Plan, by_job: dict[str, dict]) -> str:
    failed = [c for c in cands if not c["evaluated"]]
    tail = (f" {len(failed)} failed job{'s were' if len(failed) > 1 else ' was'} not evaluated "
            f"({', '.join(c['job'] for c in failed)})." if failed else "")
    cut = [labels[c["job"]] for c in cands if c["evaluated"] and c.get("truncated")]
    if cut:
        tail += (f" Answers were cut at max_tokens while still answering for {', '.join(cut)}: quality was graded "
                 f"on cut answers (raise decoding.max_tokens).")
    if not any(c["evaluated"] for c in cands):
        first = failed[0]["reasons"][0] if failed else "no jobs"
        who = f"all {len(cands)} jobs" if len(cands) > 1 else "the only job"
        return f"Nothing could be decided: {who} failed ({first})."
    if decision["fit"] is False:
        ranked = sorted((c for c in cands if c["rank"] is not None), key=lambda c: c["rank"])
        return fitness.none_fit_sentence(cands, by_job, labels, fmt, ranked, objective_text(decision)) + tail
    rec = decision["recommended"]
    any_limit = bool(decision["limits"]["max"] or decision["limits"]["min"] or decision["limits"]["licenses"]
                     or decision["limits"]["commercial"])
    if rec is None:
        eligible = [c for c in cands if c["eligible"]]
        if eligible:
            return (f"Nothing could be decided: no eligible candidate has a value for {objective_text(decision)} "
                    f"(the objective); choose another (objective.metric=...).{tail}")
        ruled: dict[str, list[str]] = {}
        for c in cands:
            for lim in c["failed_limits"]:
                ruled.setdefault(lim, [])
                if labels[c["job"]] not in ruled[lim]:
                    ruled[lim].append(labels[c["job"]])
        parts = "; ".join(f"{lim} ruled out {', '.join(who)}" for lim, who in ruled.items())
        return f"No candidate meets every limit: {parts}. Nothing to ship until a limit is relaxed.{tail}"
    unit = "" if plan.kind == "weights" else plan.objective.unit
    value = with_unit(fmt(rec["objective_value"]), unit)
    best = next(c for c in cands if c["job"] == rec["job"])
    if best["fit"]:
        fit = fitness.fit_clause(best, by_job, fmt, with_unit)
        head = f"Ship {labels[rec['job']]} as the default: {fit}, " + ("meets every limit and " if any_limit
                                                                       else "and, with no limits set, ")
    else:
        head = f"Ship {labels[rec['job']]} as the default: " + ("it meets every limit and " if any_limit
                                                                else "with no limits set, it ")
    body = f"scores {value} on {objective_text(decision)}"
    ru = decision["runner_up"]
    if ru is None:
        return f"{head}{body}; no other candidate is eligible, so there is no runner-up.{tail}"
    direction = "above" if plan.goal == "max" else "below"
    noise = {"clear": "clear margin",
             "too close to call": "too close to call: their 95% CIs overlap",
             None: "noise unknown: no CI for this metric"}[decision["margin_vs_noise"]]
    second = next(c for c in cands if c["job"] == ru["job"])
    if second["fit"] is False:
        noise += f"; {labels[ru['job']]} is {fitness.unfit_note(second)}"
    margin = with_unit(fmt(decision["margin"]), unit)
    return f"{head}{body}, {margin} {direction} {labels[ru['job']]} ({noise}).{tail}"


def decide(summaries: list[tuple[str, dict]], selection: Any, registry_lookup: RegistryLookup | None = None) -> dict:
    """The decision over a sweep's jobs: `summaries` is [(job dir name, summary.json dict)].
    `registry_lookup(alias)` returns the model's registry entry (`license`, `commercial_use`) or
    None; it is consulted only by a licence policy (default: runner.models.registry)."""
    sel = normalize_selection(selection)
    if not summaries:
        raise UserError("no job summaries: nothing to decide")
    summaries, quality_use = _trusted_quality(summaries, sel["trust_unqualified"])
    by_job = {job: s for job, s in summaries}
    plan = _plan(sel, [s for _, s in summaries])
    used: list[Metric] = [m for m, _, _ in plan.dims]
    for m in [*(m for m, _ in plan.limits["max"]), *(m for m, _ in plan.limits["min"]),
              *([plan.objective] if plan.objective else []), *(m for m, _ in plan.weights),
              resolve_key(AUTO_SPEED, [], "plot")]:
        if m.key not in {u.key for u in used}:
            used.append(m)

    cands: list[dict] = []
    for job, s in summaries:
        cfg = s.get("config") or {}
        ok = s.get("status") == "ok"
        c = {"job": job, "model": s.get("model"), "name": s.get("name") or s.get("model"),
             "hardware": _name(cfg.get("hardware")),
             "decoding": _name(cfg.get("decoding")), "prompts": s.get("prompts"), "status": s.get("status"),
             "evaluated": ok, "eligible": False, "reasons": [], "failed_limits": [], "notes": [],
             "objective_value": None, "objective_ci": None, "rank": None, "on_pareto": False,
             "license": s.get("license"), "metrics": {m.key: m.value(s) for m in used}}
        cands.append(c)
        if not ok:
            c["reasons"].append(f"not evaluated: {s.get('error') or 'job ' + str(s.get('status') or 'failed')}")
            continue
        if s.get("partial"):
            c["notes"].append(f"partial: {s.get('n')} of {s.get('n_expected')} requests ok")
        device = s.get("device") or {}
        if device and not device.get("verified"):
            c["notes"].append(f"device unverified: {device.get('asked')} was asked for, and the backend reports "
                              f"no device; its figures may come from another")
        cut = s.get("truncation") or {}
        short = cut.get("n_cut_short", cut.get("cut"))  # a summary without the split: every cut answer
        if short:  # any answer cut while still answering is flagged; run.warn_truncated_share only sets a warning
            c["notes"].append(f"answers cut at max_tokens={cut['max_tokens']} while still answering (cut_short): "
                              f"{short} of {cut['of']} ({short / cut['of']:.0%}); its quality was graded on cut "
                              f"answers")
            c["truncated"] = True
        if cut.get("n_cut_loop"):  # a loop runs to any cap: a larger one would not help
            c["notes"].append(f"answers looping when the cap hit (cut_loop): {cut['n_cut_loop']} of {cut['of']}")
        remote = not in_process(s)
        for kind, op, worse in (("max", "<=", lambda v, lim: v > lim), ("min", ">=", lambda v, lim: v < lim)):
            for m, lim in plan.limits[kind]:
                v = m.value(s)
                if v is None and m.key in IN_PROCESS_ONLY and remote:
                    c["notes"].append(f"{m.key} not measured for endpoints: limit {op} "
                                      f"{with_unit(fmt(lim), m.unit)} not applied")
                    continue
                if v is None:
                    c["reasons"].append(f"{m.key} not measured (limit {op} {with_unit(fmt(lim), m.unit)})")
                elif worse(v, lim):
                    a, b = _pair(v, lim)
                    c["reasons"].append(f"{m.key} {with_unit(a, m.unit)} {'>' if kind == 'max' else '<'} "
                                        f"{with_unit(b, m.unit)}")
                else:
                    continue
                c["failed_limits"].append(_limit_text(m, op, lim))
    _licence_reasons(cands, by_job, sel, registry_lookup)

    if plan.kind == "weights":
        _weighted(cands, by_job, plan.weights)
    else:
        for c in cands:
            if c["evaluated"]:
                c["objective_value"] = plan.objective.value(by_job[c["job"]])
                c["objective_ci"] = plan.objective.ci(by_job[c["job"]])
    for c in cands:
        c["eligible"] = c["evaluated"] and not c["reasons"]
    fitness.assess(cands, by_job, sel, fmt, with_unit)
    fit = fitness.verdict(cands)

    # fit candidates first (an unfit one is ranked for reference, never recommended), then by the objective
    ranked = sorted((c for c in cands if c["eligible"] and c["objective_value"] is not None),
                    key=lambda c: (c["fit"] is False,
                                   -c["objective_value"] if plan.goal == "max" else c["objective_value"]))
    for i, c in enumerate(ranked, 1):
        c["rank"] = i
    present, front = _pareto(cands, by_job, plan.dims)
    for c in cands:
        c["on_pareto"] = c["job"] in front

    def brief(c):
        return None if c is None else {k: c[k] for k in ("job", "model", "name", "hardware", "decoding",
                                                          "objective_value", "objective_ci")}

    rec = ranked[0] if ranked and ranked[0]["fit"] is not False else None
    ru = ranked[1] if rec and len(ranked) > 1 else None
    margin = noise = None
    if rec and ru:
        margin = abs(rec["objective_value"] - ru["objective_value"])
        a, b = rec["objective_ci"], ru["objective_ci"]
        if a and b:
            noise = "too close to call" if a[0] <= b[1] and b[0] <= a[1] else "clear"

    if plan.kind == "weights":
        objective = {"kind": "weights", "metric": None, "goal": "max", "auto": False,
                     "weights": {m.key: w for m, w in plan.weights},
                     "noise": "interval sum of the weighted, normalized 95% CIs (metrics without a CI as exact)"}
    else:
        objective = {"kind": "metric", "metric": plan.objective.key, "goal": plan.goal, "auto": plan.auto,
                     "weights": None, "unit": plan.objective.unit, "noise": plan.objective.noise_source}
    decision = {
        # fit for the task (runner/decide/fitness.py): true, false (no candidate is), or null (no bars)
        "fit": fit,
        "fit_reasons": {c["job"]: c["fit_reasons"] for c in cands if c["fit"] is False},
        "acceptance": {"mode": ("off" if not sel["acceptance"] else "explicit" if isinstance(sel["acceptance"], dict)
                                else "prompt set or default"), "default": sel["acceptance_default"]},
        "recommended": brief(rec),
        "runner_up": brief(ru),
        "margin": margin,
        "margin_vs_noise": noise,
        "objective": objective,
        "limits": {"max": {m.key: v for m, v in plan.limits["max"]},
                   "min": {m.key: v for m, v in plan.limits["min"]},
                   "licenses": sel["licenses"], "commercial": sel["commercial"]},
        "dimensions": [{"key": m.key, "label": label, "goal": goal} for m, label, goal in present],
        "missing_dimensions": [{"key": m.key, "label": label} for m, label, _ in plan.dims
                               if m.key not in {p[0].key for p in present}],
        "pareto": front,
        "candidates": cands,
        "not_evaluated": [{"job": c["job"], "model": c["model"], "hardware": c["hardware"],
                           "decoding": c["decoding"], "error": c["reasons"][0][len("not evaluated: "):]}
                          for c in cands if not c["evaluated"]],
        "quality": quality_use,
        "summary_sentence": "",
    }
    labels = _labels(cands)
    for c in cands:
        c["label"] = labels[c["job"]]
    decision["summary_sentence"] = _sentence(decision, cands, labels, plan, by_job) + _quality_sentence(quality_use)
    return decision


def _trusted_quality(summaries: list[tuple[str, dict]], trust_unqualified: bool) -> tuple[list, dict]:
    """The summaries as the decision sees them: each grader's numbers are kept only when that
    grader passed qualification (judges/qualify.py) or the selection trusts unqualified ones;
    and `quality.overall` only from one grader across the sweep (scales of two graders differ).
    Returns them with what was hidden or trusted anyway, and why."""
    hidden: dict[str, str] = {}
    trusted_anyway: dict[str, str] = {}
    views = []
    for job, s in summaries:
        q = dict(s.get("quality") or {})
        quals = q.get("qualifications") or {}
        judge = q.get("judge")
        if judge and not (quals.get(judge) or {}).get("passed") and not trust_unqualified:
            q.pop("judge_overall", None)  # a failed judge's own numbers steer nothing, source or not
            q.pop("aspects", None)
        if "notes" in quals and not quals["notes"].get("passed") and not trust_unqualified:
            q["scorers"] = {k: v for k, v in (q.get("scorers") or {}).items() if not k.startswith("notes.")}
        if q.get("overall") is not None and not q.get("trusted"):
            reason = q.get("untrusted_reason") or "its grader was not qualified"
            if trust_unqualified:
                trusted_anyway[job] = reason
            else:
                hidden[job] = reason
                q.pop("overall", None)
        views.append((job, {**s, "quality": q}))
    used = Counter(v["quality"].get("source") for _, v in views
                   if v.get("status") == "ok" and v["quality"].get("overall") is not None)
    main = sorted(used.items(), key=lambda kv: (-kv[1], str(kv[0])))[0][0] if used else None
    for job, v in views:
        src = v["quality"].get("source")
        if v["quality"].get("overall") is not None and src != main:
            hidden[job] = f"graded by {src}, not {main} like the other jobs (their scales differ)"
            v["quality"].pop("overall", None)
    return views, {"sources": [main] if main else [], "not_used": hidden, "trusted_unqualified": trusted_anyway}


def _quality_sentence(use: dict) -> str:
    if use["not_used"]:
        reasons = sorted(set(use["not_used"].values()))
        return (f" Quality was not used for {len(use['not_used'])} job(s): {'; '.join(reasons)} "
                f"(selection.trust_unqualified=true uses it anyway).")
    if use["trusted_unqualified"]:
        reasons = sorted(set(use["trusted_unqualified"].values()))
        return (f" Quality from an unqualified grader was used because selection.trust_unqualified=true: "
                f"{'; '.join(reasons)}.")
    return ""
