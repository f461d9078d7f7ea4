"""Checks of a job's plan beyond its types, before any request: ranges, names that must resolve,
secrets in URLs, the launch, what grading needs. Each failure is a UserError naming the key
(runner/config/plan.py builds the plan from the composed config; its types were checked against
the schema then)."""

from __future__ import annotations

from typing import Any

from judges import modes, scorers
from judges.matching import MATCHINGS
from judges.qualify import load_calibration
from runner.backends.hardware import DEVICE_OF, ORT_PROVIDERS, short_name
from runner.config import secrets
from runner.config.errors import UserError
from runner.config.prompts import acceptance
from runner.decide.decision import check_selection
from runner.decide.keys import resolve_key
from runner.models import embedder, registry

PENALTIES = ("repetition_penalty", "frequency_penalty", "presence_penalty")
PENALTY_MAX = 2.0  # ORT GenAI and vLLM accept more; past 2 a small model stops forming words


def validate(plan: Any, parallel_launcher: str | None = None) -> None:
    """Every check of a job that can fail before a request is sent: ranges the type system cannot
    express, names that must resolve, files that must read; raises UserError naming the key.
    `parallel_launcher`: the launcher, when the job runs beside others of its sweep."""
    _ranges(plan)
    _names(plan)
    _launch(plan, parallel_launcher)
    _grading(plan)


def _ranges(plan: Any) -> None:
    caps = plan.capabilities
    judge_caps = plan.judge.capabilities

    checks = [
        (plan.decoding.temperature >= 0, "decoding.temperature", "must be >= 0"),
        (plan.decoding.max_tokens is None or plan.decoding.max_tokens >= 1, "decoding.max_tokens",
         "must be >= 1 (or null: derived from the prompt set's reference answers)"),
        (plan.decoding.repetition_penalty is None or 0 < plan.decoding.repetition_penalty <= PENALTY_MAX,
         "decoding.repetition_penalty", f"must be in (0, {PENALTY_MAX}] (1.0 = off, > 1 penalizes repeats)"),
        (plan.decoding.frequency_penalty is None or -2 <= plan.decoding.frequency_penalty <= 2,
         "decoding.frequency_penalty", "must be in [-2, 2] (0 = off)"),
        (plan.decoding.presence_penalty is None or -2 <= plan.decoding.presence_penalty <= 2,
         "decoding.presence_penalty", "must be in [-2, 2] (0 = off)"),
        (plan.decoding.top_p is None or 0 < plan.decoding.top_p <= 1, "decoding.top_p", "must be in (0, 1]"),
        (plan.run.rounds >= 1, "run.rounds", "must be >= 1"),
        (plan.run.warmup >= 0, "run.warmup", "must be >= 0"),
        (plan.run.warmup_requests is None or plan.run.warmup_requests >= 0, "run.warmup_requests",
         "must be >= 0 (or null: run.warmup whole passes)"),
        (plan.run.concurrency >= 1, "run.concurrency", "must be >= 1"),
        (plan.run.rate is None or plan.run.rate > 0, "run.rate", "must be > 0 requests/s"),
        (plan.run.rate is None or plan.run.concurrency == 1, "run.rate",
         "and run.concurrency are two load profiles (open and closed loop): set one"),
        (plan.run.rate is None or not plan.run.target_ci, "run.target_ci", "adds rounds; it needs a closed loop, "
         "not run.rate"),
        (plan.run.requests is None or plan.run.requests >= 1, "run.requests", "must be >= 1"),
        (plan.run.duration_s is None or plan.run.duration_s > 0, "run.duration_s", "must be > 0"),
        (plan.run.requests is None or plan.run.duration_s is None, "run.requests",
         "and run.duration_s both bound the window: set one"),
        ((plan.run.requests is None and plan.run.duration_s is None and not plan.run.warmup_s
          and not plan.run.cooldown_s) or plan.run.rate is not None or _searches_rate(plan), "run.rate",
         "(or run.search.over=rate) is needed by run.requests, run.duration_s, run.warmup_s and run.cooldown_s "
         "(open-loop options)"),
        (plan.run.warmup_s >= 0 and plan.run.cooldown_s >= 0, "run.warmup_s", "and run.cooldown_s must be >= 0"),
        (plan.run.burstiness > 0, "run.burstiness", "must be > 0 (1 = Poisson)"),
        (plan.run.max_in_flight >= 1, "run.max_in_flight", "must be >= 1"),
        (set(plan.run.slo) <= {"ttft_s", "tpot_s", "e2e_s"}, "run.slo", "may bound ttft_s, tpot_s and e2e_s"),
        (all(v is None or v > 0 for v in plan.run.slo.values()), "run.slo", "bounds must be > 0 seconds"),
        (plan.run.target_ci is None or 0 < plan.run.target_ci < 1, "run.target_ci", "must be in (0, 1)"),
        (plan.run.max_rounds >= plan.run.rounds, "run.max_rounds", "must be >= run.rounds"),
        (0 <= plan.run.warn_truncated_share <= 1, "run.warn_truncated_share", "must be in [0, 1]"),
        (set(plan.run.target_metrics) <= {"ttft_s", "e2e_s", "tpot_s", "decode_tps"}, "run.target_metrics",
         "must name ttft_s, e2e_s, tpot_s or decode_tps"),
        (plan.backend.timeout_s > 0, "backend.timeout_s", "must be > 0"),
        (not caps.needs_base_url or bool(plan.backend.base_url), "backend.base_url",
         f"is required for backend={plan.backend.name}"),
        (plan.hardware.device in ("cpu", "gpu", "npu"), "hardware.device", "must be cpu, gpu or npu"),
        (short_name(plan.hardware.execution_provider) in ORT_PROVIDERS, "hardware.execution_provider",
         f"is not an execution provider slmbench knows ({', '.join(ORT_PROVIDERS)})"),
        (short_name(plan.hardware.execution_provider) not in DEVICE_OF or plan.hardware.device ==
         DEVICE_OF[short_name(plan.hardware.execution_provider)] or short_name(plan.hardware.execution_provider)
         == "openvino", "hardware.execution_provider", f"does not run on hardware.device={plan.hardware.device}"),
    ]
    checks += search_checks(plan)
    checks += [(getattr(plan.decoding, k) is None or k in caps.penalties, f"decoding.{k}",
                f"is not sent by backend={plan.backend.name} (it sends: {', '.join(caps.penalties) or 'no penalty'})")
               for k in PENALTIES]
    judge = plan.judge
    checks += [
        (not judge_caps.needs_base_url or bool(judge.base_url), "judge.base_url",
         f"is required for judge.backend={judge.backend}"),
        (judge.repeats >= 1, "judge.repeats", "must be >= 1"),
        (judge.retries >= 0, "judge.retries", "must be >= 0"),
        (judge.injection_probe >= 0, "judge.injection_probe", "must be >= 0"),
        (judge.mode in modes.MODES, "judge.mode", f"is not a judge mode (known: {', '.join(sorted(modes.MODES))})"),
        (-1 <= judge.qualification.min_spearman <= 1, "judge.qualification.min_spearman", "must be in [-1, 1]"),
        (judge.notes.match in MATCHINGS, "judge.notes.match", f"must be one of {', '.join(MATCHINGS)}"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise UserError(f"{key}={_get(plan, key)!r} {why}")


def _names(plan: Any) -> None:
    """What the plan names must exist: metrics, scorers, the judge's model, the selection's keys."""
    judge, judge_caps = plan.judge, plan.judge.capabilities
    bars = acceptance(plan.prompts.get("acceptance"), "prompts.acceptance") or {}
    for kind, limits in bars.items():  # a bar naming no metric is refused now, not after the sweep
        for key in limits:
            resolve_key(key, [], f"prompts.acceptance.{kind}.{key}")
    secrets.check_urls({k: _get(plan, k) for k in ("backend.base_url", "judge.base_url", "tracking.uri")})
    scorers.resolve(judge.scorers)  # an unknown scorer name is a configuration error
    if judge.model and judge_caps.in_process:
        registry.get(judge.model)  # an unknown judge alias is a configuration error
    if judge.model and not judge.allow_self and (
            judge.model == plan.label or (judge.model_id or "") == plan.model.id):
        raise UserError(f"judge.model={judge.model} is the candidate model: a model may not grade itself "
                        f"(pick another judge, or set judge.allow_self=true)")
    check_selection(plan.selection)


def _launch(plan: Any, parallel_launcher: str | None) -> None:
    if parallel_launcher and not plan.capabilities.parallel_safe and not plan.run.allow_parallel_inprocess:
        raise UserError(f"backend={plan.backend.name} runs the model inside the job's process: under hydra/launcher="
                        f"{parallel_launcher} several jobs would share this machine's cores and bias each other's "
                        f"numbers. Use the default launcher (or n_jobs=1) for in-process models, a parallel "
                        f"launcher for backend=openai endpoints, or set run.allow_parallel_inprocess=true "
                        f"when every job gets a machine of its own")


def _grading(plan: Any) -> None:
    """The prompts carry what the judge and scorers need; the calibration set and the embedding
    model they use are there."""
    prompt_set, judge = plan.prompt_set, plan.judge
    bare = [p.id for p in prompt_set.prompts if not p.aspects]
    if judge.model and bare:
        raise UserError(f"prompt set {prompt_set.name}: {len(bare)} prompts have no rubric aspects "
                        f"({', '.join(bare[:5])}); judging needs them (or use judge=none)")
    load_calibration(judge.qualification.calibration)  # a bad calibration set fails before any run
    if judge.notes.match == "semantic" and (
            ("notes" in judge.scorers and any(p.reference_items for p in prompt_set.prompts))
            or ("reference_coverage" in judge.scorers and any(p.reference for p in prompt_set.prompts))):
        embedder.require()  # a missing or changed embedding model fails before any run, naming the fix
    unreferenced = [p.id for p in prompt_set.prompts if p.reference_items is None]
    if judge.model and modes.get(judge.mode).needs_reference_items and unreferenced:
        raise UserError(f"judge.mode={judge.mode} asks questions built from each prompt's reference_items, but "
                        f"prompt set {prompt_set.name} has {len(unreferenced)} prompts without them "
                        f"({', '.join(unreferenced[:5])}); use judge.mode=rubric or add reference_items")


def search_checks(plan: Any) -> list[tuple[bool, str, str]]:
    """`run.search`: its settings, and the run settings a search takes over (runner/measure/capacity.py)."""
    search, run = plan.run.search, plan.run
    on = search.mode is not None
    floor = 1 if search.over == "concurrency" else 0
    return [
        (search.mode in (None, "capacity"), "run.search.mode", "must be capacity (or null: no search)"),
        (search.over in ("concurrency", "rate"), "run.search.over",
         "must be concurrency (closed loop: requests in flight) or rate (open loop: requests/s)"),
        (0 < search.goodput <= 1, "run.search.goodput",
         "must be in (0, 1]: the share of a load's requests that must meet every run.slo objective"),
        (search.max_points >= 2, "run.search.max_points", "must be >= 2 (the first point is one request at a time)"),
        (search.budget_s > 0, "run.search.budget_s", "must be > 0 seconds"),
        (0 < search.tolerance < 1, "run.search.tolerance", "must be in (0, 1): bisection over rates ends when "
         "failing / passing - 1 <= it"),
        (search.max_load is None or search.max_load > floor, "run.search.max_load",
         f"must be > {floor} (or null: no limit but run.search.max_points and budget_s)"),
        (not on or any(v is not None for v in run.slo.values()), "run.slo",
         "bounds nothing: run.search=capacity looks for the highest load meeting these objectives; set one "
         "(e.g. run.slo.ttft_s=0.5)"),
        (not on or (run.concurrency == 1 and run.rate is None), "run.search.mode",
         "sets each point's load itself: leave run.concurrency (1) and run.rate (null) unset"),
        (not on or not run.target_ci, "run.target_ci", "adds rounds at one load; it does not combine with run.search"),
    ]


def _searches_rate(plan: Any) -> bool:
    return plan.run.search.mode is not None and plan.run.search.over == "rate"


def _get(plan: Any, dotted: str) -> Any:
    node = plan
    for part in dotted.split("."):
        node = getattr(node, part)
    return node
