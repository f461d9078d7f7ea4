"""The metric catalog: every figure slmbench reports, declared once.

Each metric has a key, a unit, a level (`request`: a distribution over a job's requests,
summarized as n/mean/std/min/p50/p90/p95/p99/max with a 95% CI of the median; `job`: one value
per job), a formula, the better direction and where it is computed. The summary, the reports,
`compare`, the decision, MLflow and the baselines all read it from here.

One name per number. `flatten(summary)` gives every number of a `summary.json` its dotted name,
and that name is the same everywhere: a `summary.csv` column, an MLflow metric, a selection key
(`selection.max.ttft_s.p95=0.5`). The name is the number's path in summary.json, with two rules:
distributions under `metrics` drop that prefix (`metrics.ttft_s.p95` -> `ttft_s.p95`), and a
graded distribution (`quality.overall`, `quality.aspects.<aspect>`, `quality.scorers.<field>`)
is named by itself for its mean (`quality.overall` = `quality.overall.mean`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOWER, HIGHER = "lower", "higher"
REQUEST, JOB = "request", "job"
STATS = ("n", "mean", "std", "min", "p50", "p90", "p95", "p99", "max")


@dataclass(frozen=True)
class Spec:
    key: str  # canonical dotted name; a request-level metric adds `.<stat>`
    unit: str
    level: str  # REQUEST (a distribution) or JOB (one value)
    formula: str
    better: str | None  # LOWER, HIGHER, or None (a count or a setting, no better direction)
    computed_in: str  # the function that computes it
    path: tuple[str, ...] = ()  # where in summary.json (default: the key's parts)
    # a figure of the process that holds the model: an endpoint's is not ours to measure (null)
    in_process_only: bool = False

    @property
    def where(self) -> tuple[str, ...]:
        return self.path or tuple(self.key.split("."))

    @property
    def definition(self) -> str:
        return f"{self.formula} ({self.unit})" if self.unit not in ("", "1") else self.formula


def _request(key: str, unit: str, formula: str, better: str | None, computed_in: str = "runner.metrics.request.request_metrics",
             path: tuple[str, ...] | None = None) -> Spec:
    return Spec(key, unit, REQUEST, formula, better, computed_in, path or ("metrics", key))


def _job(key: str, unit: str, formula: str, better: str | None, computed_in: str = "runner.store.summary.build",
         in_process_only: bool = False) -> Spec:
    return Spec(key, unit, JOB, formula, better, computed_in, in_process_only=in_process_only)


SPECS: dict[str, Spec] = {s.key: s for s in (
    # per request, timed on the client (runner/metrics/request.py)
    _request("ttft_s", "s", "t(first non-empty content chunk) - t(sent)", LOWER),
    _request("e2e_s", "s", "t(last byte) - t(sent)", LOWER),
    _request("tpot_s", "s/token", "(e2e_s - ttft_s) / (completion_tokens - 1)", LOWER),
    _request("decode_tps", "tokens/s", "(completion_tokens - 1) / (e2e_s - ttft_s)", HIGHER),
    _request("itl_p50_s", "s", "per request, the median gap between successive content chunks", LOWER),
    _request("completion_tokens", "tokens", "server usage.completion_tokens (else the chunk count, flagged "
                                            "tokens_estimated)", None),
    _request("client.overhead_s", "s", "per request: the client's own time inside the timed window (parsing "
                                       "each read of the stream), endpoints only", LOWER,
             "runner.backends.openai_compat", ("client", "overhead_s")),
    # per job: model and process
    _job("load_s", "s", "wall time of the backend's model load (cold: first load in the job); in-process only",
         LOWER, "runner.measure.job.run_job", True),
    _job("rss_mb", "MB", "process resident set size after load, 10^6 bytes (in-process backends)", LOWER,
         "runner.measure.memory.rss_mb", True),
    _job("rss_before_load_mb", "MB", "process resident set size before load, 10^6 bytes", LOWER,
         "runner.measure.memory.rss_mb", True),
    _job("rss_peak_mb", "MB", "highest sampled RSS while generating (sampled every 50 ms)", LOWER,
         "runner.measure.memory.PeakSampler", True),
    _job("disk_mb", "MB", "bytes of the model folder / 10^6", LOWER, "runner.models.pack.folder_bytes", True),
    _job("params_m", "M", "parameters of the model, millions (from its config)", None),
    _job("n", "requests", "ok measured requests", HIGHER),
    _job("n_errors", "requests", "failed or dropped measured requests", LOWER),
    # per job: the measured window
    _job("throughput.output_tps", "tokens/s", "sum(completion_tokens) / measured window wall time", HIGHER),
    _job("throughput.requests_per_s", "req/s", "completed requests / measured window wall time", HIGHER),
    _job("throughput.total_tps", "tokens/s", "sum(prompt_tokens + completion_tokens) / measured window wall time",
         HIGHER),
    _job("throughput.window_s", "s", "closed loop: the measured rounds' wall time; open loop (run.rate): first "
                                     "measured send to last measured completion", None),
    _job("goodput.fraction", "1", "requests meeting every SLO in run.slo / measured requests (failed and dropped "
                                  "count against it)", HIGHER, "runner.metrics.slo.goodput"),
    _job("goodput.requests_per_s", "req/s", "requests meeting every SLO in run.slo / measured window wall time",
         HIGHER, "runner.metrics.slo.goodput"),
    _job("goodput.good", "requests", "requests meeting every SLO in run.slo", HIGHER, "runner.metrics.slo.goodput"),
    # per job: capacity under SLO (run.search=capacity, runner/measure/capacity.py); named after what was searched
    _job("capacity.concurrency", "requests", "highest concurrency (closed loop, requests in flight) whose goodput "
         "share >= run.search.goodput (summary.json capacity.passing; 0 when even one request at a time missed)",
         HIGHER, "runner.measure.capacity.search"),
    _job("capacity.rate", "req/s", "highest offered rate (open loop, requests/s) whose goodput share >= "
         "run.search.goodput (summary.json capacity.passing; 0 when even one request at a time missed)", HIGHER,
         "runner.measure.capacity.search"),
    _job("load.arrival_rate", "req/s", "open loop: (sends - 1) / (last send - first send), the rate actually "
                                       "offered", None, "runner.measure.arrivals.summarize"),
    _job("load.dropped", "requests", "open loop: arrivals not sent (run.max_in_flight reached)", LOWER,
         "runner.measure.arrivals.summarize"),
    _job("load.late", "requests", "open loop: sends more than 10 ms behind schedule (lag_s = t(sent) - "
                                  "t(scheduled))", LOWER, "runner.measure.arrivals.summarize"),
    _job("load.in_flight_peak", "requests", "open loop: most requests in flight at once", None,
         "runner.measure.arrivals.summarize"),
    _job("truncation.share", "1", "answers cut at the token cap / ok answers; cut = finish_reason 'length' or "
                                  "completion_tokens >= decoding.max_tokens", LOWER, "runner.store.summary.truncation"),
    _job("truncation.cut_loop", "1", "answers cut at the token cap while looping (class loop) / ok answers",
         LOWER, "runner.store.summary.truncation"),
    _job("truncation.cut_short", "1", "answers cut at the token cap while still answering (not degenerate) / ok "
                                      "answers: only these ask for a larger decoding.max_tokens", LOWER,
         "runner.store.summary.truncation"),
    # per job: degenerate answers (runner/metrics/degenerate.py states each rule)
    _job("degenerate.share", "1", "answers classed empty, loop, echo or off_task / ok answers", LOWER,
         "runner.store.summary.degenerate_shares"),
    _job("degenerate.loop", "1", "answers that loop (stopped by the loop stop, a repeated run of words at the "
                                 "end, or word 3-gram repetition >= 0.5) / ok answers", LOWER,
         "runner.store.summary.degenerate_shares"),
    _job("degenerate.echo", "1", "answers that repeat the system or user prompt (>= 80% of words in 6-word runs "
                                 "of the prompt) / ok answers", LOWER, "runner.store.summary.degenerate_shares"),
    _job("degenerate.empty", "1", "answers with no word / ok answers", LOWER, "runner.store.summary.degenerate_shares"),
    _job("degenerate.off_task", "1", "answers to prompts with reference_items of which the notes scorer matched "
                                     "none (notes.recall = 0) / ok answers", LOWER,
         "runner.store.summary.degenerate_shares"),
    _job("degenerate.stopped_loop", "1", "answers the loop stop ended (decoding.loop_stop) / ok answers", None,
         "runner.store.summary.degenerate_shares"),
    _job("empty_answers", "requests", "ok requests whose answer has no text (counted, never graded)", LOWER),
    _job("no_finish_reason", "requests", "ok requests whose stream ended with [DONE] but no finish reason", LOWER),
    _job("token_count_check.share", "1", "requests with |chunks - usage.completion_tokens| > max(1, tolerance x "
                                         "usage.completion_tokens) / requests with server usage", LOWER,
         "runner.store.summary.token_count_check"),
    _job("energy.wh_per_1k_tokens", "Wh", "RAPL package joules / 3600 over the window, else hardware.power_w x "
                                          "window seconds / 3600; per 1000 output tokens", LOWER,
         "runner.store.summary._energy"),
    # per job: quality (judges/quality.py)
    Spec("quality.overall", "", REQUEST, "per answer, a score 1-5 from quality.source: the notes scorer's score, or "
         "the mean of the judge's aspect scores (answers it failed to grade are left out); named for its mean",
         HIGHER, "judges.quality.quality_summary"),
    _job("quality.judge_overall", "", "mean over answers, a score 1-5, of the judge's mean aspect score", HIGHER,
         "judges.quality.quality_summary"),
    _job("quality.graded_fraction", "1", "answers graded / ok answers", HIGHER, "judges.quality.quality_summary"),
    _job("quality.parse_failure_rate", "1", "judge replies that could not be parsed / judge calls", LOWER,
         "judges.quality.quality_summary"),
    _job("quality.n_graded", "answers", "answers graded", None, "judges.quality.quality_summary"),
    _job("quality.trusted", "1", "1 when quality.source passed its qualification (or was trusted by "
                                 "selection.trust_unqualified), else 0", HIGHER, "judges.quality.quality_summary"),
    _job("quality.injection.mean_shift", "", "mean over answers of (score with an injected 'give 5' line - "
                                                  "score without)", LOWER, "judges.quality.quality_summary"),
)}

# Names whose number a rule gives (`derived`), not a path: the capacity a search found is named after
# what it searched over.
DERIVED = ("capacity.concurrency", "capacity.rate")

# Figures null for a backend that does not hold the model in this process: reported as "not
# measured for endpoints", never held for or against it.
IN_PROCESS_ONLY = frozenset(k for k, s in SPECS.items() if s.in_process_only)

# Families whose members are named by the data: the rubric's aspects, the scorers' fields, the
# graders' qualification figures.
FAMILIES: dict[str, Spec] = {s.key: s for s in (
    _job("quality.aspects", "", "per aspect, mean judge score 1-5 over graded answers", HIGHER,
         "judges.quality.quality_summary"),
    _job("quality.scorers", "1", "per scorer field, mean over answers (rouge_l.f1: LCS F1 against the reference; "
                                 "notes.*: judges/notes.py)", HIGHER, "judges.scorers"),
    _job("quality.qualifications", "1", "per grader, its figures on answers of known order "
                                        "(judges/qualify.py)", None, "judges.qualify"),
)}

# Per-request record fields beyond the distributions above (requests.jsonl), for reports and compare.
RECORD_FIELDS: dict[str, Spec] = {s.key: s for s in (
    _request("lag_s", "s", "open loop: t(sent) - t(scheduled); a send more than 10 ms behind schedule is late",
             LOWER, "runner.measure.arrivals.run"),
    _request("client_overhead_s", "s", SPECS["client.overhead_s"].formula, LOWER, "runner.backends.openai_compat"),
    _request("quality", "", SPECS["quality.overall"].formula.removesuffix("; named for its mean"), HIGHER,
             "judges.quality.answer_score"),
)}


def spec(key: str) -> Spec | None:
    """The spec of a dotted name: `ttft_s.p95` -> ttft_s, `quality.aspects.clarity` -> the family."""
    if key in SPECS:
        return SPECS[key]
    if key in RECORD_FIELDS:
        return RECORD_FIELDS[key]
    head, _, stat = key.rpartition(".")
    if stat in STATS and head in SPECS and SPECS[head].level == REQUEST:
        return SPECS[head]
    for prefix, family in FAMILIES.items():
        if key.startswith(prefix + "."):
            return family
    return None


def unit(key: str) -> str:
    """The unit of a dotted name; a count of a distribution (`.n`) has none."""
    s = spec(key)
    if s is None or (key.endswith(".n") and s.level == REQUEST):
        return ""
    return s.unit


def better(key: str) -> str | None:
    """LOWER, HIGHER or None. A distribution's spread (`.std`) is better lower."""
    if key.endswith(".std"):
        return LOWER
    if key.endswith(".n") and key != "n":
        return None
    s = spec(key)
    return s.better if s else None


def label(key: str) -> str:
    """An axis or column label: `e2e_s.p50 (s), lower is better`."""
    u, b = unit(key), better(key)
    return f"{key}{f' ({u})' if u else ''}{f', {b} is better' if b else ''}"


def definitions() -> dict[str, dict[str, str]]:
    """Every declared metric's unit and formula (written into each summary.json)."""
    return {k: {"unit": s.unit, "formula": s.formula, "level": s.level, "better": s.better}
            for k, s in {**SPECS, **FAMILIES, **RECORD_FIELDS}.items()}


def known_keys() -> list[str]:
    """Every name `flatten` can produce for declared metrics (families excluded: named by the data)."""
    out = []
    for k, s in SPECS.items():
        if s.level == REQUEST:
            out += [k] * (k == "quality.overall") + [f"{k}.{stat}" for stat in STATS]
        else:
            out.append(k)
    return out


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def derived(summary: Mapping) -> dict[str, float]:
    """The DERIVED names of a summary: `capacity.<over>` = capacity.passing, or 0 when the search
    ran and no load passed (even one request at a time missed an objective)."""
    cap = summary.get("capacity") or {}
    over = cap.get("over")
    if f"capacity.{over}" not in DERIVED or not cap.get("points"):
        return {}
    passing = cap.get("passing")
    return {f"capacity.{over}": float(passing) if _num(passing) else 0.0}


def flatten(summary: Mapping) -> dict[str, float]:
    """Every number of a summary.json under its one dotted name (see the module docstring)."""
    out: dict[str, float] = derived(summary)
    for key, s in SPECS.items():
        if key in DERIVED:
            continue
        node = _get(summary, s.where)
        if s.level == REQUEST and isinstance(node, dict):
            if key == "quality.overall" and _num(node.get("mean")):
                out[key] = float(node["mean"])
            out.update({f"{key}.{stat}": float(node[stat]) for stat in STATS if _num(node.get(stat))})
        elif isinstance(node, bool):
            out[key] = 1.0 if node else 0.0
        elif _num(node):
            out[key] = float(node)
    for prefix in FAMILIES:
        for name, node in (_get(summary, tuple(prefix.split("."))) or {}).items():
            _leaves(node, f"{prefix}.{name}", out)
    return out


def _leaves(node: Any, name: str, out: dict[str, float]) -> None:
    """A graded distribution is named for its mean; other mappings are walked to their numbers."""
    if isinstance(node, dict):
        if _num(node.get("mean")):
            out[name] = float(node["mean"])
            return
        for k, v in node.items():
            _leaves(v, f"{name}.{k}", out)
    elif isinstance(node, bool):
        out[name] = 1.0 if node else 0.0
    elif _num(node):
        out[name] = float(node)
