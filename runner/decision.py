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

import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tabulate import tabulate

from runner import catalog
from runner.errors import UserError
from runner.paths import CONF_DIR
from runner.store import jobdir

SUMMARY = jobdir.SUMMARY
DECISION = "decision.json"
PREVIOUS = "decision.previous.json"
PLOT = "pareto.png"
# What a remote server's client cannot measure (the model was loaded, and lives, elsewhere).
ENDPOINT_UNMEASURED = {"load_s", "rss_mb", "rss_peak_mb", "rss_before_load_mb", "disk_mb"}
REPORT = "report.md"
START, END = "<!-- decision:start -->", "<!-- decision:end -->"
DEFAULT_SELECTION = CONF_DIR / "selection" / "default.yaml"
SELECTION_KEYS = ("max", "min", "licenses", "commercial", "objective", "weights", "trust_unqualified")
AUTO = "auto"
AUTO_QUALITY, AUTO_SPEED = "quality.overall", "decode_tps.p50"

DISTRIBUTIONS = tuple(k for k, m in catalog.SPECS.items() if m.level == catalog.REQUEST and m.where[0] == "metrics")
STATS = catalog.STATS
OPEN_PREFIXES = tuple(f"{f}." for f in catalog.FAMILIES)  # names come from the prompt set / scorers / graders
KNOWN = tuple(catalog.known_keys())
KNOWN_TEXT = ("{" + ",".join(DISTRIBUTIONS) + "}.{" + ",".join(STATS) + "}, "
              + ", ".join(k for k, m in catalog.SPECS.items() if m.level == catalog.JOB)
              + ", quality.overall[.{" + ",".join(STATS) + "}], " + ", ".join(f"{f}.<name>" for f in catalog.FAMILIES))

# The Pareto dimensions: (metric key, what it stands for, goal).
PARETO_DIMS = (("e2e_s.p50", "speed", "min"), ("rss_mb", "memory", "min"), ("disk_mb", "footprint", "min"),
               ("quality.overall", "quality", "max"))
_MISSING = object()

RegistryLookup = Callable[[str], Any]


# ---------------------------------------------------------------------------- metric keys


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _walk(node: Any, parts: tuple[str, ...]) -> Any:
    """Follow `parts` into nested mappings; a key may itself hold dots (scorer field `rouge_l.f1`)."""
    if not parts:
        return node
    if not isinstance(node, dict):
        return _MISSING
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in node:
            found = _walk(node[key], parts[i:])
            if found is not _MISSING:
                return found
    return _MISSING


@dataclass(frozen=True)
class Metric:
    key: str  # as shown: "e2e_s.p95", "rss_mb", "quality.overall"
    path: tuple[str, ...]  # into summary.json

    def _node(self, summary: dict) -> Any:
        node = _walk(summary, self.path)
        return None if node is _MISSING else node

    def value(self, summary: dict) -> float | None:
        node = self._node(summary)
        if isinstance(node, dict):
            node = node.get("mean")
        if isinstance(node, bool):  # a flag (quality.trusted) is 1 or 0, as in runner/catalog.flatten
            return float(node)
        return float(node) if _is_num(node) and math.isfinite(node) else None

    def ci(self, summary: dict) -> list[float] | None:
        """The 95% CI that stands for this metric's noise: the `ci95` (of the median) of the
        distribution the value comes from (`metrics.<name>.ci95`, `quality.overall.ci95`)."""
        node = self._node(summary)
        holder = node if isinstance(node, dict) else _walk(summary, self.path[:-1])
        ci = holder.get("ci95") if isinstance(holder, dict) else None
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_num(x) for x in ci):
            return [float(min(ci)), float(max(ci))]
        return None

    @property
    def unit(self) -> str:
        return catalog.unit(self.key)

    @property
    def noise_source(self) -> str:
        if self.path[0] == "metrics" and len(self.path) == 3:
            return f"95% CI of the median of {self.path[1]}"
        if self.path[:2] == ("quality", "overall"):
            return "95% CI of the median of quality.overall"
        return "none (a per-job value without a distribution)"


def inferred_goal(key: str) -> str | None:
    """max or min for a metric whose better direction is known (runner/catalog.py), else None."""
    return {catalog.LOWER: "min", catalog.HIGHER: "max"}.get(catalog.better(key))


def resolve_key(key: str, summaries: list[dict], where: str) -> Metric:
    """The metric a selection key names: tried under `metrics.`, then the top level, then
    `quality.`, against every summary, then against the known metric list."""
    text = str(key).strip()
    if text.startswith("metrics."):
        text = text[len("metrics."):]
    parts = tuple(text.split("."))
    if not text or "" in parts:
        raise UserError(f"{where}: '{key}' is not a metric key (known: {KNOWN_TEXT})")
    if parts[0] in DISTRIBUTIONS and len(parts) == 1:
        raise UserError(f"{where}: '{key}' is a distribution: name a statistic, e.g. {text}.p50 or {text}.p95 "
                        f"(one of {', '.join(STATS)})")
    for path, shown in ((("metrics", *parts), text), (parts, text), (("quality", *parts), f"quality.{text}")):
        nodes = [n for n in (_walk(s, path) for s in summaries) if n is not _MISSING]
        if not nodes:
            continue
        for node in nodes:
            if path[0] == "metrics" and len(path) == 2:
                raise UserError(f"{where}: '{key}' is a distribution: name a statistic, e.g. {text}.p50")
            if node is None or _is_num(node) or isinstance(node, bool) or (
                    isinstance(node, dict) and _is_num(node.get("mean"))):
                continue
            kind = "a group of values" if isinstance(node, dict) else f"not a number ({node!r})"
            raise UserError(f"{where}: '{key}' names {kind} in summary.json, not a metric (known: {KNOWN_TEXT})")
        return Metric(shown, path)
    if text in KNOWN or text.startswith(OPEN_PREFIXES):
        return Metric(text, ("metrics", *parts) if parts[0] in DISTRIBUTIONS else parts)
    raise UserError(f"{where}: '{key}' names no metric in the sweep's summaries or the known metrics "
                    f"(known: {KNOWN_TEXT})")


# ---------------------------------------------------------------------------- the selection config


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def flatten(mapping: Any, where: str, prefix: str = "") -> dict[str, float]:
    """{"tpot_s": {"p95": 0.03}, "rss_mb": 1500} -> {"tpot_s.p95": 0.03, "rss_mb": 1500}.
    Hydra nests `selection.max.tpot_s.p95=0.03`; YAML may write `tpot_s.p95: 0.03`. A null value
    is no limit; a later duplicate wins (an override merged after the file)."""
    mapping = _plain(mapping)
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise UserError(f"selection.{where} must map metric keys to numbers, got {mapping!r}")
    out: dict[str, float] = {}
    for k, v in mapping.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            for kk, vv in flatten(v, where, key).items():
                out.pop(kk, None)
                out[kk] = vv
        elif v is None:
            out.pop(key, None)
        elif _is_num(v) and math.isfinite(v):
            out.pop(key, None)
            out[key] = v
        else:
            raise UserError(f"selection.{where}.{key}={v!r}: must be a number")
    return out


def normalize_selection(selection: Any) -> dict:
    """The selection as a plain dict with flat limit and weight keys; UserError when malformed."""
    sel = _plain(selection)
    if sel is None:
        sel = {}
    if not isinstance(sel, dict):
        raise UserError(f"selection must be a mapping, got {sel!r}")
    unknown = sorted(str(k) for k in sel if k not in SELECTION_KEYS)
    if unknown:
        raise UserError(f"unknown selection key(s) {', '.join(unknown)} (known: {', '.join(SELECTION_KEYS)})")
    licenses = sel.get("licenses")
    if isinstance(licenses, str):
        licenses = [licenses]
    if licenses is not None and (not isinstance(licenses, list) or not all(isinstance(x, str) for x in licenses)):
        raise UserError(f"selection.licenses must be a list of licence names, got {licenses!r}")
    commercial = sel.get("commercial")
    if commercial is not None and not isinstance(commercial, bool):
        raise UserError(f"selection.commercial must be true or false, got {commercial!r}")
    objective = sel.get("objective")
    if objective is None:
        objective = {}
    if isinstance(objective, str):
        objective = {"metric": objective}
    if not isinstance(objective, dict) or set(objective) - {"metric", "goal"}:
        raise UserError(f"selection.objective must be {{metric: KEY, goal: max|min}}, got {objective!r}")
    goal = objective.get("goal")
    if goal is not None:
        goal = {"maximize": "max", "minimize": "min"}.get(str(goal).lower(), str(goal).lower())
        if goal not in ("max", "min"):
            raise UserError(f"selection.objective.goal={objective['goal']!r}: must be max or min (or null)")
    metric = objective.get("metric")
    trust = sel.get("trust_unqualified")
    if trust is not None and not isinstance(trust, bool):
        raise UserError(f"selection.trust_unqualified must be true or false, got {trust!r}")
    return {"max": flatten(sel.get("max"), "max"), "min": flatten(sel.get("min"), "min"),
            "trust_unqualified": bool(trust),
            "licenses": list(licenses) if licenses else None, "commercial": bool(commercial),
            "objective": {"metric": str(metric) if metric not in (None, "") else AUTO, "goal": goal},
            "weights": {k: v for k, v in flatten(sel.get("weights"), "weights").items()}}


def check_selection(selection: Any) -> dict:
    """Validate a selection before a sweep runs (no summaries yet: keys are checked against
    the known metric list). Returns the normalized selection; raises UserError."""
    sel = normalize_selection(selection)
    _plan(sel, [])
    return sel


_HYDRA_MAPPING_OVERRIDE = re.compile(r"^selection\.(max|min|weights)\.[^=]+=")


def hydra_overrides(args: list[str]) -> list[str]:
    """`selection.max.tpot_s.p95=0.03` adds a key to a mapping, which Hydra's struct mode refuses
    without a `+`; `++` (add or override) makes such overrides work as written on `slmbench run`."""
    return ["++" + a if _HYDRA_MAPPING_OVERRIDE.match(a) else a for a in args]


def load_selection(overrides: list[str], path: Path = DEFAULT_SELECTION) -> dict:
    """The default selection with `slmbench decide` overrides applied (OmegaConf dotlist).
    `selection.` prefixes, Hydra's `+`/`++` and `~key` (remove) are accepted."""
    try:
        base = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException) as exc:
        raise UserError(f"selection config {path}: {str(exc).splitlines()[0]}") from None
    dotlist = []
    for raw in overrides:
        item = raw.strip().lstrip("+")
        removal = item.startswith("~")
        item = item.lstrip("~")
        if item.startswith("selection."):
            item = item[len("selection."):]
        if removal:
            item = item.split("=", 1)[0] + "=null"
        if "=" not in item or not item.split("=", 1)[0]:
            raise UserError(f"selection override '{raw}' must be KEY=VALUE (e.g. max.e2e_s.p95=2.0)")
        key, value = item.split("=", 1)
        if key == "objective":  # objective=e2e_s.p50 means objective.metric=e2e_s.p50
            key = "objective.metric"
        dotlist.append(f"{key}={value}")
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as exc:
        raise UserError(f"selection overrides {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
    return _plain(merged)


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


def _fmt(v: Any) -> str:
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
    a, b = _fmt(v), _fmt(limit)
    if a == b and v != limit:
        a, b = f"{v:.6g}", f"{limit:.6g}"
    return a, b


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit not in ("", "1") else text  # "1": a ratio, shown bare


def _limit_text(metric: Metric, op: str, limit: float) -> str:
    return f"{metric.key} {op} {_with_unit(_fmt(limit), metric.unit)}"


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
    A candidate missing a present dimension is not on the front; equal points are all on it."""
    evaluated = [c for c in cands if c["evaluated"]]
    present = [d for d in dims if any(d[0].value(summaries[c["job"]]) is not None for c in evaluated)]
    if not present:
        return present, []
    points = {}
    for c in evaluated:
        vals = [m.value(summaries[c["job"]]) for m, _, _ in present]
        if all(v is not None for v in vals):
            points[c["job"]] = [v if goal == "min" else -v for v, (_, _, goal) in zip(vals, present, strict=True)]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))

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


def _objective_text(decision: dict) -> str:
    o = decision["objective"]
    if o["kind"] == "weights":
        terms = " ".join(f"{w:+g} x {k}" for k, w in o["weights"].items())
        return f"the weighted score ({terms}, each min-max-normalized over the evaluated jobs)"
    return o["metric"]


def _sentence(decision: dict, cands: list[dict], labels: dict[str, str], plan: _Plan) -> str:
    failed = [c for c in cands if not c["evaluated"]]
    tail = (f" {len(failed)} failed job{'s were' if len(failed) > 1 else ' was'} not evaluated "
            f"({', '.join(c['job'] for c in failed)})." if failed else "")
    cut = [labels[c["job"]] for c in cands if c["evaluated"] and c.get("truncated")]
    if cut:
        tail += (f" Answers were cut at max_tokens for {', '.join(cut)}: quality was graded on cut answers "
                 f"(raise decoding.max_tokens).")
    if not any(c["evaluated"] for c in cands):
        first = failed[0]["reasons"][0] if failed else "no jobs"
        who = f"all {len(cands)} jobs" if len(cands) > 1 else "the only job"
        return f"Nothing could be decided: {who} failed ({first})."
    rec = decision["recommended"]
    any_limit = bool(decision["limits"]["max"] or decision["limits"]["min"] or decision["limits"]["licenses"]
                     or decision["limits"]["commercial"])
    if rec is None:
        eligible = [c for c in cands if c["eligible"]]
        if eligible:
            return (f"Nothing could be decided: no eligible candidate has a value for {_objective_text(decision)} "
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
    value = _with_unit(_fmt(rec["objective_value"]), unit)
    head = f"Ship {labels[rec['job']]} as the default: " + ("it meets every limit and " if any_limit
                                                            else "with no limits set, it ")
    body = f"scores {value} on {_objective_text(decision)}"
    ru = decision["runner_up"]
    if ru is None:
        return f"{head}{body}; no other candidate is eligible, so there is no runner-up.{tail}"
    direction = "above" if plan.goal == "max" else "below"
    noise = {"clear": "clear margin",
             "too close to call": "too close to call: their 95% CIs overlap",
             None: "noise unknown: no CI for this metric"}[decision["margin_vs_noise"]]
    margin = _with_unit(_fmt(decision["margin"]), unit)
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
        cut = s.get("truncation") or {}
        if cut.get("warn"):
            c["notes"].append(f"answers cut at max_tokens={cut['max_tokens']}: {cut['cut']} of {cut['of']} "
                              f"({cut['share']:.0%}); its quality was graded on cut answers")
            c["truncated"] = True
        for kind, op, worse in (("max", "<=", lambda v, lim: v > lim), ("min", ">=", lambda v, lim: v < lim)):
            for m, lim in plan.limits[kind]:
                v = m.value(s)
                remote = not ((cfg.get("backend") or {}).get("capabilities") or {}).get("in_process", True)
                if v is None and m.key in ENDPOINT_UNMEASURED and remote:
                    c["notes"].append(f"{m.key} not measured for endpoints: limit {op} "
                                      f"{_with_unit(_fmt(lim), m.unit)} not applied")
                    continue
                if v is None:
                    c["reasons"].append(f"{m.key} not measured (limit {op} {_with_unit(_fmt(lim), m.unit)})")
                elif worse(v, lim):
                    a, b = _pair(v, lim)
                    c["reasons"].append(f"{m.key} {_with_unit(a, m.unit)} {'>' if kind == 'max' else '<'} "
                                        f"{_with_unit(b, m.unit)}")
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

    ranked = sorted((c for c in cands if c["eligible"] and c["objective_value"] is not None),
                    key=lambda c: -c["objective_value"] if plan.goal == "max" else c["objective_value"])
    for i, c in enumerate(ranked, 1):
        c["rank"] = i
    present, front = _pareto(cands, by_job, plan.dims)
    for c in cands:
        c["on_pareto"] = c["job"] in front

    def brief(c):
        return None if c is None else {k: c[k] for k in ("job", "model", "name", "hardware", "decoding",
                                                          "objective_value", "objective_ci")}

    rec = ranked[0] if ranked else None
    ru = ranked[1] if len(ranked) > 1 else None
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
    decision["summary_sentence"] = _sentence(decision, cands, labels, plan) + _quality_sentence(quality_use)
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


# ---------------------------------------------------------------------------- report, plot, files


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def decision_markdown(decision: dict, plot_name: str | None) -> list[str]:
    """The report's decision section, markers included (`slmbench decide` replaces it in place)."""
    o = decision["objective"]
    lim = decision["limits"]
    units = {}
    for c in decision["candidates"]:
        units.update({k: Metric(k, tuple(k.split("."))).unit for k in c["metrics"]})
    limits = [f"`{k}` <= {_with_unit(_fmt(v), units.get(k, ''))}" for k, v in lim["max"].items()]
    limits += [f"`{k}` >= {_with_unit(_fmt(v), units.get(k, ''))}" for k, v in lim["min"].items()]
    if lim["licenses"]:
        limits.append(f"licence in [{', '.join(lim['licenses'])}]")
    if lim["commercial"]:
        limits.append("commercial use allowed (model registry)")
    if o["kind"] == "weights":
        goal = f"maximize {_objective_text(decision)}"
    else:
        goal = (f"{'maximize' if o['goal'] == 'max' else 'minimize'} `{o['metric']}`"
                + (" (auto: qualified quality when measured, else decode speed)" if o["auto"] else ""))
    qu = decision.get("quality") or {}
    trust = (f"quality from {', '.join(qu['sources'])} (qualified on answers of known order)" if qu.get("sources")
             else "no qualified quality")
    if qu.get("not_used"):
        trust += f"; untrusted quality not used for {', '.join(f'`{j}`' for j in qu['not_used'])}"
    if qu.get("trusted_unqualified"):
        trust += (f"; UNTRUSTED quality used (selection.trust_unqualified=true) for "
                  f"{', '.join(f'`{j}`' for j in qu['trusted_unqualified'])}")
    lines = [START, "# Decision", "", f"**{decision['summary_sentence']}**", "",
             f"- objective: {goal}; noise: {o['noise']}",
             f"- quality: {trust}",
             f"- limits: {'; '.join(limits) if limits else 'none'}"]
    rec, ru = decision["recommended"], decision["runner_up"]
    if rec:
        line = f"- recommended: **{rec.get('name') or rec['model']}** (job `{rec['job']}`)"
        if ru:
            line += (f"; runner-up: {ru['model']} (job `{ru['job']}`), margin {_fmt(decision['margin'])} "
                     f"({decision['margin_vs_noise'] or 'noise unknown'})")
        lines.append(line)
    lines.append("")

    metric_cols = [d["key"] for d in decision["dimensions"]]
    for k in [*lim["max"], *lim["min"], *((o["weights"] or {}) if o["kind"] == "weights" else [o["metric"]])]:
        if k not in metric_cols:
            metric_cols.append(k)
    order = sorted(decision["candidates"], key=lambda c: (
        c["rank"] is None, c["rank"] or 0, not c["evaluated"], not c["eligible"]))
    rows = []
    for c in order:
        rank = "-" if c["rank"] is None else str(c["rank"])
        if rec and c["job"] == rec["job"]:
            rank += " (recommended)"
        elif ru and c["job"] == ru["job"]:
            rank += " (runner-up)"
        eligible = "not evaluated" if not c["evaluated"] else "yes" if c["eligible"] else "no"
        rows.append([rank, c["job"], c.get("name") or c["model"], c["hardware"] or "-", c["decoding"] or "-", eligible,
                     _fmt(c["objective_value"]), *(_fmt(c["metrics"].get(k)) for k in metric_cols),
                     "yes" if c["on_pareto"] else "", "; ".join(c["reasons"] + c["notes"]) or "-"])
    objective_col = "objective (weighted)" if o["kind"] == "weights" else f"objective: {o['metric']} ({o['goal']})"
    headers = ["rank", "job", "model", "hardware", "decoding", "eligible", objective_col,
               *(f"{k} ({units[k]})" if units.get(k) else k for k in metric_cols), "pareto", "why not / notes"]
    lines += [tabulate([[_cell(x) for x in r] for r in rows], headers=headers, tablefmt="github",
                       disable_numparse=True), ""]

    if decision["not_evaluated"]:
        lines += ["Not evaluated (failed jobs):", "",
                  *[f"- `{n['job']}`: {_cell(n['error'])}" for n in decision["not_evaluated"]], ""]
    if decision["dimensions"]:
        dims = ", ".join(f"{d['label']} (`{d['key']}`, {'lower' if d['goal'] == 'min' else 'higher'} is better)"
                         for d in decision["dimensions"])
        front = ", ".join(f"`{j}`" for j in decision["pareto"]) or "none"
        lines.append(f"Pareto front over {dims}: {front}. A job is on it when no other job is at least as good "
                     "on every dimension and better on one; a job missing a dimension is not on it.")
        if decision["missing_dimensions"]:
            lines.append("Not measured for any job: " + ", ".join(
                f"{d['label']} (`{d['key']}`)" for d in decision["missing_dimensions"]) + ".")
        lines.append("")
    if plot_name:
        lines += [f"![Pareto front]({plot_name})", ""]
    lines += ["Re-decide without re-running: `slmbench decide SWEEP_DIR max.e2e_s.p95=2.0 min.quality.overall=3 "
              "licenses=[Apache-2.0] objective.metric=e2e_s.p50` (keys: conf/selection/default.yaml).", END]
    return lines


def write_plot(decision: dict, path: Path) -> Path | None:
    """Quality (or decode_tps.p50 without quality) against e2e_s.p50; the front highlighted.
    Removes a stale plot when nothing can be drawn."""
    cands = [c for c in decision["candidates"] if c["evaluated"]]
    ykey = ("quality.overall" if any(c["metrics"].get("quality.overall") is not None for c in cands)
            else AUTO_SPEED)
    pts = [c for c in cands if c["metrics"].get("e2e_s.p50") is not None and c["metrics"].get(ykey) is not None]
    if not pts:
        path.unlink(missing_ok=True)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = (decision["recommended"] or {}).get("job")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    groups = [("on the Pareto front", lambda c: c["on_pareto"], "tab:red"),
              ("dominated", lambda c: not c["on_pareto"], "tab:gray")]
    for label, pick, colour in groups:
        for eligible, marker in ((True, "o"), (False, "X")):
            sel = [c for c in pts if pick(c) and c["eligible"] == eligible]
            if sel:
                ax.scatter([c["metrics"]["e2e_s.p50"] for c in sel], [c["metrics"][ykey] for c in sel],
                           c=colour, marker=marker, s=60, zorder=3,
                           label=f"{label}{'' if eligible else ', not eligible'}")
    for r in (c for c in pts if c["job"] == rec):
        ax.scatter([r["metrics"]["e2e_s.p50"]], [r["metrics"][ykey]], s=320, marker="*", c="gold",
                       edgecolors="black", zorder=4, label="recommended")
    for c in pts:
        ax.annotate(c["job"], (c["metrics"]["e2e_s.p50"], c["metrics"][ykey]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    dims = ", ".join(d["label"] for d in decision["dimensions"])
    ax.set_xlabel(catalog.label("e2e_s.p50"))
    ax.set_ylabel(catalog.label(ykey) + ("" if ykey == "quality.overall" else " (no quality measured)"), fontsize=9)
    ax.margins(x=0.35, y=0.12)  # room for the labels
    ax.set_title(f"Pareto front over {dims}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", markerscale=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _job_key(name: str) -> tuple[int, str]:
    head = name.split("_", 1)[0]
    return (int(head) if head.isdigit() else 0, name)


def read_summaries(sweep_dir: Path) -> list[tuple[str, dict]]:
    files = sorted(sweep_dir.glob(f"*/{SUMMARY}"), key=lambda p: _job_key(p.parent.name))
    if not files and (sweep_dir / SUMMARY).is_file():
        files = [sweep_dir / SUMMARY]  # a single run: a sweep of one candidate
    if not files:
        raise UserError(f"{sweep_dir}: no job summaries (*/{SUMMARY}): nothing to decide")
    out = []
    for f in files:
        try:
            out.append((f.parent.name, jobdir.check_version(json.loads(f.read_text()), f)))
        except (OSError, ValueError) as exc:
            raise UserError(f"{f}: unreadable summary ({exc})") from None
    return out


def update_report(report: Path, section: list[str]) -> Path:
    """Replace the decision section of report.md in place, or insert it at the top."""
    text = report.read_text() if report.is_file() else ""
    lines = text.splitlines()
    if START in lines and END in lines and lines.index(START) < lines.index(END):
        i, j = lines.index(START), lines.index(END)
        new = lines[:i] + section + lines[j + 1:]
    else:
        rest = [ln for ln in lines if ln not in (START, END)]
        new = section + ([""] + rest if rest else [])
    report.write_text("\n".join(new) + "\n")
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_decision(sweep_dir: Path, selection: Any, registry_lookup: RegistryLookup | None = None) -> dict:
    """Decide over a sweep directory's jobs; write decision.json (the previous one kept as
    decision.previous.json), pareto.png and the decision section of report.md. Nothing is
    written when the input is bad (UserError)."""
    sweep_dir = Path(sweep_dir)
    decision = decide(read_summaries(sweep_dir), selection, registry_lookup)
    decision["sweep"] = sweep_dir.name
    plot = write_plot(decision, sweep_dir / PLOT)
    decision["plot"] = plot.name if plot else None
    out = sweep_dir / DECISION
    if out.is_file():
        os.replace(out, sweep_dir / PREVIOUS)
    _write_json(out, decision)
    update_report(sweep_dir / REPORT, decision_markdown(decision, decision["plot"]))
    return decision


def decide_main(sweep_dir: Path, overrides: list[str], registry_lookup: RegistryLookup | None = None) -> int:
    """`slmbench decide SWEEP_DIR [overrides]`: 0 with a recommendation, 1 when nothing could be
    decided; bad input raises UserError (exit 2)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: no such directory")
    selection = load_selection(list(overrides))
    decision = write_decision(sweep_dir, selection, registry_lookup)
    rows = [[c["rank"] or "-", c["job"], "not evaluated" if not c["evaluated"] else "yes" if c["eligible"] else "no",
             _fmt(c["objective_value"]), "yes" if c["on_pareto"] else "", "; ".join(c["reasons"]) or "-"]
            for c in decision["candidates"]]
    print(tabulate(rows, headers=["rank", "job", "eligible", "objective", "pareto", "why not"], tablefmt="simple",
                   disable_numparse=True))
    print()
    print(decision["summary_sentence"])
    wrote = [DECISION] + ([PREVIOUS] if (sweep_dir / PREVIOUS).is_file() else []) + (
        [decision["plot"]] if decision["plot"] else []) + [REPORT]
    print(f"wrote {', '.join(str(sweep_dir / w) for w in wrote)}")
    return 0 if decision["recommended"] else 1


__all__ = ["check_selection", "decide", "decide_main", "decision_markdown", "hydra_overrides", "load_selection",
           "normalize_selection", "resolve_key", "update_report", "write_decision", "write_plot"]
