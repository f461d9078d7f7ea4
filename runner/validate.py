"""Checks of a composed config beyond its types: ranges, the backend's class, the judge's model,
secrets in URLs. Each failure is a UserError naming the key."""

from __future__ import annotations

from typing import Any

from judges import modes, scorers
from judges.matching import MATCHINGS
from runner import backends
from runner.backends.hardware import DEVICE_OF, ORT_PROVIDERS, short_name
from runner.config import secrets
from runner.config.errors import UserError
from runner.config.labels import label_of
from runner.config.prompts import acceptance
from runner.decide.keys import resolve_key
from runner.models import registry

PENALTIES = ("repetition_penalty", "frequency_penalty", "presence_penalty")
PENALTY_MAX = 2.0  # ORT GenAI and vLLM accept more; past 2 a small model stops forming words


def validate(cfg: Any) -> None:
    """Range checks the type system cannot express; raises UserError naming the key."""
    caps = backends.capabilities(cfg.backend)  # an unloadable backend target is a configuration error
    judge_caps = backends.option_class(cfg.judge.backend).capabilities

    checks = [
        (cfg.decoding.temperature >= 0, "decoding.temperature", "must be >= 0"),
        (cfg.decoding.max_tokens is None or cfg.decoding.max_tokens >= 1, "decoding.max_tokens",
         "must be >= 1 (or null: derived from the prompt set's reference answers)"),
        (cfg.decoding.repetition_penalty is None or 0 < cfg.decoding.repetition_penalty <= PENALTY_MAX,
         "decoding.repetition_penalty", f"must be in (0, {PENALTY_MAX}] (1.0 = off, > 1 penalizes repeats)"),
        (cfg.decoding.frequency_penalty is None or -2 <= cfg.decoding.frequency_penalty <= 2,
         "decoding.frequency_penalty", "must be in [-2, 2] (0 = off)"),
        (cfg.decoding.presence_penalty is None or -2 <= cfg.decoding.presence_penalty <= 2,
         "decoding.presence_penalty", "must be in [-2, 2] (0 = off)"),
        (cfg.decoding.top_p is None or 0 < cfg.decoding.top_p <= 1, "decoding.top_p", "must be in (0, 1]"),
        (cfg.run.rounds >= 1, "run.rounds", "must be >= 1"),
        (cfg.run.warmup >= 0, "run.warmup", "must be >= 0"),
        (cfg.run.warmup_requests is None or cfg.run.warmup_requests >= 0, "run.warmup_requests",
         "must be >= 0 (or null: run.warmup whole passes)"),
        (cfg.run.concurrency >= 1, "run.concurrency", "must be >= 1"),
        (cfg.run.rate is None or cfg.run.rate > 0, "run.rate", "must be > 0 requests/s"),
        (cfg.run.rate is None or cfg.run.concurrency == 1, "run.rate",
         "and run.concurrency are two load profiles (open and closed loop): set one"),
        (cfg.run.rate is None or not cfg.run.target_ci, "run.target_ci", "adds rounds; it needs a closed loop, "
         "not run.rate"),
        (cfg.run.requests is None or cfg.run.requests >= 1, "run.requests", "must be >= 1"),
        (cfg.run.duration_s is None or cfg.run.duration_s > 0, "run.duration_s", "must be > 0"),
        (cfg.run.requests is None or cfg.run.duration_s is None, "run.requests",
         "and run.duration_s both bound the window: set one"),
        ((cfg.run.requests is None and cfg.run.duration_s is None and not cfg.run.warmup_s
          and not cfg.run.cooldown_s) or cfg.run.rate is not None or _searches_rate(cfg), "run.rate",
         "(or run.search.over=rate) is needed by run.requests, run.duration_s, run.warmup_s and run.cooldown_s "
         "(open-loop options)"),
        (cfg.run.warmup_s >= 0 and cfg.run.cooldown_s >= 0, "run.warmup_s", "and run.cooldown_s must be >= 0"),
        (cfg.run.burstiness > 0, "run.burstiness", "must be > 0 (1 = Poisson)"),
        (cfg.run.max_in_flight >= 1, "run.max_in_flight", "must be >= 1"),
        (set(cfg.run.slo) <= {"ttft_s", "tpot_s", "e2e_s"}, "run.slo", "may bound ttft_s, tpot_s and e2e_s"),
        (all(v is None or v > 0 for v in cfg.run.slo.values()), "run.slo", "bounds must be > 0 seconds"),
        (cfg.run.target_ci is None or 0 < cfg.run.target_ci < 1, "run.target_ci", "must be in (0, 1)"),
        (cfg.run.max_rounds >= cfg.run.rounds, "run.max_rounds", "must be >= run.rounds"),
        (0 <= cfg.run.warn_truncated_share <= 1, "run.warn_truncated_share", "must be in [0, 1]"),
        (set(cfg.run.target_metrics) <= {"ttft_s", "e2e_s", "tpot_s", "decode_tps"}, "run.target_metrics",
         "must name ttft_s, e2e_s, tpot_s or decode_tps"),
        (cfg.backend.timeout_s > 0, "backend.timeout_s", "must be > 0"),
        (not caps.needs_base_url or bool(cfg.backend.base_url), "backend.base_url",
         f"is required for backend={cfg.backend.name}"),
        (cfg.hardware.device in ("cpu", "gpu", "npu"), "hardware.device", "must be cpu, gpu or npu"),
        (short_name(cfg.hardware.execution_provider) in ORT_PROVIDERS, "hardware.execution_provider",
         f"is not an execution provider slmbench knows ({', '.join(ORT_PROVIDERS)})"),
        (short_name(cfg.hardware.execution_provider) not in DEVICE_OF or cfg.hardware.device ==
         DEVICE_OF[short_name(cfg.hardware.execution_provider)] or short_name(cfg.hardware.execution_provider)
         == "openvino", "hardware.execution_provider", f"does not run on hardware.device={cfg.hardware.device}"),
    ]
    checks += search_checks(cfg)
    checks += [(cfg.decoding[k] is None or k in caps.penalties, f"decoding.{k}",
                f"is not sent by backend={cfg.backend.name} (it sends: {', '.join(caps.penalties) or 'no penalty'})")
               for k in PENALTIES]
    judge = cfg.judge
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
            raise UserError(f"{key}={_get(cfg, key)!r} {why}")
    bars = acceptance(cfg.prompts.get("acceptance"), "prompts.acceptance") or {}
    for kind, limits in bars.items():  # a bar naming no metric is refused now, not after the sweep
        for key in limits:
            resolve_key(key, [], f"prompts.acceptance.{kind}.{key}")
    secrets.check_urls({k: _get(cfg, k) for k in ("backend.base_url", "judge.base_url", "tracking.uri")})
    scorers.resolve(judge.scorers)  # an unknown scorer name is a configuration error
    if judge.model and judge_caps.in_process:
        registry.get(judge.model)  # an unknown judge alias is a configuration error
    if judge.model and not judge.allow_self and (
            judge.model == label_of(cfg) or (judge.model_id or "") == cfg.model.id):
        raise UserError(f"judge.model={judge.model} is the candidate model: a model may not grade itself "
                        f"(pick another judge, or set judge.allow_self=true)")


def search_checks(cfg: Any) -> list[tuple[bool, str, str]]:
    """`run.search`: its settings, and the run settings a search takes over (runner/measure/capacity.py)."""
    search, run = cfg.run.search, cfg.run
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


def _searches_rate(cfg: Any) -> bool:
    return cfg.run.search.mode is not None and cfg.run.search.over == "rate"


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node
