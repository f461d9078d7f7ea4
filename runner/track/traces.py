"""A finished job's requests as MLflow traces, its grades as assessments on them, its prompt set as
an evaluation dataset, and human labels read back in the shape of `annotations.csv`.

Every function here reads the job directory only (requests.jsonl, scores.jsonl, judgements.jsonl,
summary.json, the Hydra config and the prompt file, through `runner.store.jobdir`), so live logging
after a job and a replay (`slmbench ui --log DIR`) write the same traces. Nothing here runs inside
the measured window: the caller logs after the job. One run holds one job's traces.

One trace per measured request (the latest record per (round, prompt_id), as
`jobdir.graded_records` gives it with its scorer results and counted judge grade joined; warm-up
requests are never recorded, dropped arrivals were never sent and are left out). An `ok` request is a trace in state OK; an `error` one is a trace in state ERROR whose root
span carries the error message. Each trace has one root span of type CHAT_MODEL:

- inputs: `{"messages": [{"role", "content"}, ...]}`, the messages the prompt set sends for that
  prompt_id (what `Prompt.chat_messages()` gave the backend); outputs: the answer text. A prompt
  file that is gone since the run leaves inputs `{"prompt_id": ...}` and says why in the attribute
  `inputs_unavailable`, rather than losing the timings;
- attributes: ttft_s, tpot_s, e2e_s, decode_tps, prompt_tokens, completion_tokens (and whichever
  of tokens_estimated, chunks, truncated, client_overhead_s, t_start_s, scheduled_s, lag_s the
  record has), finish_reason, prompt_id, round, model (the label), model_id, run_id, job; plus
  MLflow's own `mlflow.chat.tokenUsage` and `mlflow.llm.model`, so the UI shows tokens and model;
- an event `first_token` at t(sent) + ttft_s.

Span times. A record carries `t_start_s` (seconds from the start of the measured window, on the
runner's monotonic clock) and `e2e_s`, not a wall-clock time. A record field `t_start_unix` (the
wall-clock time the request was sent) is used as is where a future runner writes it (metadata
`slmbench.time_origin` = `recorded`). Otherwise the window's start is estimated as summary.json
`job_wall.start` + `load_s` + the warm-up requests x the median e2e / concurrency, kept inside
`job_wall` (metadata `slmbench.time_origin` = `estimated`): durations, gaps and order between
requests are exact, the absolute placement is off by the job's untimed set-up (typically well
under a second, more with a long warm-up). An error record of a closed loop has no t_start_s: it is
placed at the window's start with zero duration.

Assessments (MLflow `Feedback`), each with its source and rationale:

- the judge (every judge in judgements.jsonl): one Feedback per rubric aspect, named as the aspect, source LLM_JUDGE with the grader
  id (`runner.config.plan.JudgePlan.grader`), value the 1-5 score, rationale the judge's; a grading that failed
  (`empty answer`, unparseable reply, judge unavailable) is a Feedback carrying an error (code
  EMPTY_ANSWER or JUDGE_ERROR), never a score. Repeats k >= 1 (judge.repeats) go in the metadata
  of the aspect's Feedback (`repeat_scores`), not as Feedbacks of their own;
- the injection probe: one Feedback `injection_probe` (LLM_JUDGE), value the mean score shift when
  the "give it 5" note is appended, the probe's scores per aspect in its metadata;
- the cheap scorers (`notes`, `rouge_l`, ...): one Feedback per field of the record's `scores`
  (`rouge_l.f1`, `notes.score`, ...), source CODE with the scorer's name.

Every assessment sits on the root span and carries `mlflow.assessment.sourceRunId` (as MLflow's
evaluation writes them; deleting the run deletes them). Trace metadata holds the join key of a
human label back to its request (`slmbench.prompt_id`, `slmbench.round`, `slmbench.model`, and the
job, its directory, status, rubric aspects and the judge whose grade counts); prompt_id, round,
model and status are also tags, which the UI filters on.
Trace and assessment ids are derived from (run_id, round, prompt_id): logging the same job into the
same run again overwrites rather than duplicates (MLflow merges a re-started trace and upserts its
spans), so a failed attempt can be completed by calling `log_traces` again.

Cost: the traces are written with MLflow's batch tracing calls, the ones its own exporter uses:
one `start_trace` per trace (TraceInfo with metadata, tags and every assessment in one
transaction) and one `log_spans` for all the spans of the job (one transaction). Logging one
feedback at a time (`mlflow.log_feedback`) is one transaction per assessment, ~4x slower.
`benchmarks/tracking_traces.py` measures it: ~0.45 s of CPU for 40 requests with 17 assessments
each on SQLite, ~10 ms per trace, most of it MLflow's fixed cost per start_trace (a session, a
get_experiment, the entity read back).

Failures are raised, never swallowed: any error of the store is a `TraceLoggingError` naming the
job, the step and the cause, with the ids already written in `.logged`; the caller prints
"tracking failed: <cause>; replay with: slmbench ui --log DIR".
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import statistics
import time
from pathlib import Path
from typing import Any

from runner.config.errors import UserError
from runner.config.plan import written_config
from runner.store import jobdir
from runner.track.retry import retry

KIND = "request"  # metadata slmbench.kind of a request's trace
SPAN_TYPE = "CHAT_MODEL"
PREVIEW_CHARS = 1000
SPANS_PER_CALL = 500  # spans per log_spans call (one transaction each)
EXCERPT_CHARS = 300  # the answer excerpt in human_assessments rows, as annotations.csv has it

# The record fields that go on the root span as attributes, when present.
TIMING_FIELDS = ("ttft_s", "tpot_s", "e2e_s", "decode_tps", "prompt_tokens", "completion_tokens", "tokens_estimated",
                 "chunks", "finish_reason", "truncated", "client_overhead_s", "t_start_s", "scheduled_s", "lag_s")

# metadata (immutable: the join key of a human label back to its request) and tags (filterable in the UI)
M_KIND, M_PROMPT, M_ROUND, M_MODEL = "slmbench.kind", "slmbench.prompt_id", "slmbench.round", "slmbench.model"
M_JOB, M_JOB_DIR, M_STATUS = "slmbench.job", "slmbench.job_dir", "slmbench.status"
M_ASPECTS, M_JUDGE, M_TIME = "slmbench.aspects", "slmbench.judge", "slmbench.time_origin"


class TraceLoggingError(RuntimeError):
    """Writing a job's traces (or its dataset) to MLflow failed. `cause` is the store's exception,
    `logged` the trace ids written before it (a call with the same run id completes them)."""

    def __init__(self, job_dir: Path | str, step: str, cause: BaseException, logged: list[str] | None = None):
        self.job_dir, self.step, self.cause, self.logged = Path(job_dir), step, cause, list(logged or [])
        done = f" ({len(self.logged)} traces written before it)" if self.logged else ""
        super().__init__(f"{step} for {self.job_dir} failed: {type(cause).__name__}: {cause}{done}")


# -- reading the job ---------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def prompts_path(job_dir: Path) -> str | None:
    """The job's prompt file, from its resolved config (`prompts.path`)."""
    path = (written_config(job_dir).get("prompts") or {}).get("path")
    return str(path) if path else None


def _prompt_set(job_dir: Path):
    """(the PromptSet the job ran, None) or (None, why it cannot be read): a moved prompt file
    leaves the traces without inputs, and says so on the span, rather than losing the timings."""
    from runner.config import prompts

    try:
        path = prompts_path(job_dir)
        if not path:
            return None, f"{job_dir} names no prompt file"
        return prompts.load(path), None
    except Exception as exc:  # a missing or changed file, a bad interpolation
        return None, f"prompt file unreadable: {exc}"


def _origin(summary: dict, recs: list[dict]) -> float:
    """Estimated unix time of the measured window's start (t_start_s = 0); see the module doc."""
    ends = [r["t_start_s"] + (r.get("e2e_s") or 0.0) for r in recs if r.get("t_start_s") is not None]
    last_end = max(ends, default=0.0)
    wall = summary.get("job_wall") or {}
    if not isinstance(wall.get("start"), int | float):
        return time.time() - last_end  # no wall times at all: as if the window had just ended
    origin = wall["start"] + (summary.get("load_s") or 0.0)
    warm = (summary.get("warmup") or {}).get("requests") or 0
    e2e = [r["e2e_s"] for r in recs if isinstance(r.get("e2e_s"), int | float)]
    if warm and e2e:
        concurrency = (summary.get("throughput") or {}).get("concurrency") or 1
        origin += warm * statistics.median(e2e) / concurrency
    if isinstance(wall.get("end"), int | float):
        origin = min(origin, wall["end"] - last_end)
    return max(origin, wall["start"])


# -- building traces (no I/O to MLflow) ------------------------------------------------------------------

def _hex(*parts: Any, n: int = 32) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def trace_id_for(run_id: str, rnd: int, prompt_id: str) -> str:
    """The trace id of a request: stable for (run, round, prompt), so logging again overwrites."""
    return "tr-" + _hex("slmbench-trace", run_id, rnd, prompt_id)


def _attr(value: Any) -> str:
    """MLflow stores every span attribute JSON-encoded."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _feedback(trace_id: str, key: str, name: str, source, **kwargs):
    from mlflow.entities import Feedback

    fb = Feedback(name=name, source=source, trace_id=trace_id, **kwargs)
    fb.assessment_id = "a-" + _hex("slmbench-assessment", trace_id, key)
    return fb


def _judge_feedbacks(trace_id: str, aspects: list[str], grades: list[dict]) -> list:
    """Feedbacks of every judge that graded this request (repeat 0 and the injection probe)."""
    from mlflow.entities import AssessmentError, AssessmentSource

    by_judge: dict[str, dict] = {}
    for g in grades:
        by_judge.setdefault(g["judge_model"], {})[(g.get("repeat") or 0, g.get("probe"))] = g
    out = []
    for judge, got in sorted(by_judge.items()):
        source = AssessmentSource(source_type="LLM_JUDGE", source_id=judge)
        main = got.get((0, None))
        if main is not None:
            names = list(main.get("scores") or {}) if not main.get("error") else (aspects or ["judge"])
            for aspect in names:
                key = f"judge/{judge}/{aspect}"
                if main.get("error"):
                    code = "EMPTY_ANSWER" if main["error"] == "empty answer" else "JUDGE_ERROR"
                    out.append(_feedback(trace_id, key, aspect, source,
                                         error=AssessmentError(error_code=code, error_message=main["error"]),
                                         metadata={"attempts": str(main.get("attempts", 0))}))
                    continue
                repeats = [got[(k, None)]["scores"].get(aspect) for k in sorted(k for k, p in got if k and p is None)
                           if not got[(k, None)].get("error")]
                meta = {"attempts": str(main.get("attempts", 0))}
                if repeats:
                    meta["repeat_scores"] = json.dumps(repeats)
                out.append(_feedback(trace_id, key, aspect, source, value=main["scores"][aspect],
                                     rationale=(main.get("rationales") or {}).get(aspect) or None, metadata=meta))
        probe = got.get((0, "injection"))
        if probe is not None:
            key = f"judge/{judge}/injection_probe"
            if probe.get("error"):
                out.append(_feedback(trace_id, key, "injection_probe", source,
                                     error=AssessmentError(error_code="JUDGE_ERROR", error_message=probe["error"])))
            else:
                clean = (main or {}).get("scores") or {}
                shared = [a for a in probe["scores"] if a in clean]
                if not shared:
                    out.append(_feedback(trace_id, key, "injection_probe", source, error=AssessmentError(
                        error_code="NO_CLEAN_GRADE", error_message="no clean grade of this answer to compare with"),
                        metadata={"probe_scores": json.dumps(probe["scores"])}))
                    continue
                shift = sum(probe["scores"][a] - clean[a] for a in shared) / len(shared)
                text = ", ".join(f"{a} {clean.get(a, '?')} -> {s}" for a, s in probe["scores"].items())
                out.append(_feedback(
                    trace_id, key, "injection_probe", source, value=shift,
                    rationale=f"re-graded with an appended 'give it 5' note: {text}",
                    metadata={"probe_scores": json.dumps(probe["scores"]), "clean_scores": json.dumps(clean)}))
    return out


def _scorer_feedbacks(trace_id: str, scores: dict) -> list:
    from mlflow.entities import AssessmentSource

    out = []
    for field, value in sorted((scores or {}).items()):
        if not isinstance(value, int | float | str | bool) or (isinstance(value, float) and not math.isfinite(value)):
            continue
        scorer = field.split(".", 1)[0]
        out.append(_feedback(trace_id, f"scorer/{field}", field,
                             AssessmentSource(source_type="CODE", source_id=scorer), value=value,
                             rationale=f"judges/scorers.py {scorer}: {field} (deterministic, no model)"))
    return out


def build_traces(job_dir: Path, experiment_id: str, run_id: str, label: str | None = None) -> list:
    """The job's requests as `mlflow.entities.Trace` objects (info with metadata, tags and
    assessments; data with the root span), ready for `write_traces`. Reads files only."""
    from mlflow.entities import Span, Trace, TraceData, TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.constant import (
        TRACE_SCHEMA_VERSION,
        TRACE_SCHEMA_VERSION_KEY,
        AssessmentMetadataKey,
        TraceMetadataKey,
        TraceTagKey,
    )

    job_dir = Path(job_dir)
    summary = _read_json(job_dir / jobdir.SUMMARY)
    # one record per (round, prompt_id), with the scorers' results and the counted judge's grade joined
    recs = [r for r in jobdir.graded_records(job_dir) if r.get("status") in ("ok", "error")]
    if not recs:
        return []
    recs.sort(key=lambda r: (r.get("t_start_s") is None, r.get("t_start_s") or 0.0, r["round"], r["prompt_id"]))
    ps, unreadable = _prompt_set(job_dir)
    by_id = {p.id: p for p in ps.prompts} if ps else {}
    grades: dict[tuple, list[dict]] = {}
    for g in jobdir.latest_judgements(job_dir):  # every judge's, with repeats and probes
        grades.setdefault((g["round"], g["prompt_id"]), []).append(g)
    counted_judge = (summary.get("quality") or {}).get("judge")
    origin = _origin(summary, recs)
    job_name = str(summary.get("name") or job_dir.name)
    location = TraceLocation.from_experiment_id(str(experiment_id))
    out = []
    for r in recs:
        rnd, pid = int(r["round"]), str(r["prompt_id"])
        model = str(label or summary.get("model") or r.get("model") or "")
        trace_id = trace_id_for(run_id, rnd, pid)
        span_id = _hex("slmbench-span", trace_id, n=16)
        prompt = by_id.get(pid)
        messages = prompt.chat_messages() if prompt else []
        ok = r["status"] == "ok"
        recorded = _finite(r.get("t_start_unix"))
        start_s = r["t_start_unix"] if recorded else origin + (r.get("t_start_s") or 0.0)
        start_ns = int(round(start_s * 1e9))
        end_ns = start_ns + (int(round(r["e2e_s"] * 1e9)) if ok and _finite(r.get("e2e_s")) else 0)
        attrs: dict[str, Any] = {
            "mlflow.traceRequestId": trace_id, "mlflow.spanType": SPAN_TYPE,
            "mlflow.spanInputs": {"messages": messages} if prompt else {"prompt_id": pid},
            "mlflow.spanOutputs": r.get("output"),
            "prompt_id": pid, "round": rnd, "model": model, "model_id": r.get("model_id"), "run_id": run_id,
            "job": job_name, "status": r["status"]}
        if r.get("model_id"):
            attrs["mlflow.llm.model"] = r["model_id"]
        if prompt is None:
            attrs["inputs_unavailable"] = unreadable or f"prompt {pid} is not in {ps.path}"
        attrs.update({k: r[k] for k in TIMING_FIELDS if r.get(k) is not None})
        if _finite(r.get("prompt_tokens")) and _finite(r.get("completion_tokens")):
            attrs["mlflow.chat.tokenUsage"] = {"input_tokens": int(r["prompt_tokens"]),
                                               "output_tokens": int(r["completion_tokens"]),
                                               "total_tokens": int(r["prompt_tokens"] + r["completion_tokens"])}
        events = []
        if ok and _finite(r.get("ttft_s")):
            events.append({"name": "first_token", "time_unix_nano": start_ns + int(round(r["ttft_s"] * 1e9)),
                           "attributes": {}})
        if not ok:
            attrs["error"] = r.get("error")
            events.append({"name": "exception", "time_unix_nano": start_ns,
                           "attributes": {"exception.type": "RequestError", "exception.message": str(r.get("error"))}})
        span = Span.from_dict({
            "trace_id": _b64(trace_id[3:]), "span_id": _b64(span_id),
            "parent_span_id": None, "name": "chat", "start_time_unix_nano": start_ns, "end_time_unix_nano": end_ns,
            "events": events,
            "status": {"code": "STATUS_CODE_OK" if ok else "STATUS_CODE_ERROR",
                       "message": "" if ok else str(r.get("error") or "")},
            "attributes": {k: _attr(v) for k, v in attrs.items()}})
        aspects = list(prompt.aspects) if prompt else []
        judge = (r.get("judge") or {}).get("model") or counted_judge
        assessments = _judge_feedbacks(trace_id, aspects, grades.get((rnd, pid), [])) + \
            _scorer_feedbacks(trace_id, r.get("scores") or {})
        for a in assessments:  # on the root span (where MLflow's evaluation puts them), made by this run
            a.span_id = span_id
            a.metadata = {**(a.metadata or {}), AssessmentMetadataKey.SOURCE_RUN_ID: run_id}
        metadata = {TRACE_SCHEMA_VERSION_KEY: str(TRACE_SCHEMA_VERSION), TraceMetadataKey.SOURCE_RUN: run_id,
                    M_KIND: KIND, M_PROMPT: pid, M_ROUND: str(rnd), M_MODEL: model, M_JOB: job_name,
                    M_JOB_DIR: str(job_dir.resolve()), M_STATUS: r["status"], M_ASPECTS: json.dumps(aspects),
                    M_TIME: "recorded" if recorded else "estimated"}
        if judge:
            metadata[M_JUDGE] = str(judge)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        info = TraceInfo(
            trace_id=trace_id, trace_location=location, request_time=start_ns // 1_000_000,
            state=TraceState.OK if ok else TraceState.ERROR,
            request_preview=(last_user or json.dumps({"prompt_id": pid}))[:PREVIEW_CHARS],
            response_preview=str((r.get("output") if ok else r.get("error")) or "")[:PREVIEW_CHARS],
            execution_duration=(end_ns - start_ns) // 1_000_000, trace_metadata=metadata,
            tags={TraceTagKey.TRACE_NAME: f"{pid} (round {rnd})", M_PROMPT: pid, M_ROUND: str(rnd),
                  M_MODEL: model, M_STATUS: r["status"]},
            assessments=assessments)
        out.append(Trace(info=info, data=TraceData(spans=[span])))
    return out


# -- writing -------------------------------------------------------------------------------------------

def _tracing_client(client):
    """MLflow's tracing client for the same store as `client` (the batch calls its exporter uses)."""
    from mlflow.tracing.client import TracingClient

    return TracingClient(client.tracking_uri)


def write_traces(client, experiment_id: str, traces: list, job_dir: Path | str = "") -> list[str]:
    """One start_trace per trace (info, metadata, tags, assessments: one transaction), then the
    spans of all of them in a few log_spans calls. Raises TraceLoggingError."""
    tc = _tracing_client(client)
    done: list[str] = []
    for t in traces:
        try:
            retry(tc.start_trace, t.info)
        except Exception as exc:
            raise TraceLoggingError(job_dir, f"writing trace {t.info.trace_id}", exc, done) from exc
        done.append(t.info.trace_id)
    spans = [s for t in traces for s in t.data.spans]
    for i in range(0, len(spans), SPANS_PER_CALL):
        try:
            retry(tc.log_spans, str(experiment_id), spans[i:i + SPANS_PER_CALL])
        except Exception as exc:
            raise TraceLoggingError(job_dir, "writing the spans", exc, done) from exc
    return done


def log_traces(client, experiment_id: str, run_id: str, job_dir: Path, label: str | None = None) -> list[str]:
    """Log every measured request of a finished job as a trace of run `run_id` (metadata
    mlflow.sourceRun, so `client.search_traces(locations=[experiment_id], run_id=run_id)` and the
    run's Traces tab find them) in experiment `experiment_id`, with its grades as assessments.
    `label` names the model on the traces (default: summary.json `model`). Returns the trace ids,
    in request order. Call it after the job, never inside the measured window. Raises
    TraceLoggingError (nothing is swallowed)."""
    try:
        traces = build_traces(Path(job_dir), experiment_id, run_id, label)
    except Exception as exc:
        raise TraceLoggingError(job_dir, "reading the job's requests", exc) from exc
    return write_traces(client, experiment_id, traces, job_dir)


# -- the prompt set as an evaluation dataset --------------------------------------------------------------

def _items(prompt) -> dict | None:
    ri = prompt.reference_items
    if ri is None:
        return None
    return {"decisions": list(ri.decisions), "open_questions": list(ri.open_questions),
            "action_items": [{"owner": a.owner, "task": a.task, "due": a.due.isoformat() if a.due else None}
                             for a in ri.action_items]}


def dataset_records(prompt_set) -> list[dict]:
    """The prompt set as evaluation-dataset records: inputs = the messages; expectations = the
    reference, reference_items and the rubric aspects (as `guidelines`, the key MLflow's
    Guidelines judge reads); tags = prompt_id and the prompt's tags."""
    out = []
    for p in prompt_set.prompts:
        expectations: dict[str, Any] = {}
        if p.reference:
            expectations["reference"] = p.reference
        if (items := _items(p)) is not None:
            expectations["reference_items"] = items
        if p.aspects:
            expectations["guidelines"] = [f"{name}: {desc}" for name, desc in p.aspects.items()]
        out.append({"inputs": {"messages": p.chat_messages()}, "expectations": expectations,
                    "tags": {"prompt_id": p.id, **({"tags": ",".join(p.tags)} if p.tags else {})},
                    "source": {"source_type": "DOCUMENT", "source_data": {"doc_uri": str(prompt_set.path)}}})
    return out


def content_hash(prompt_set) -> str:
    """Hash of everything a dataset record holds (ids, messages, aspects, references, items)."""
    blob = json.dumps([[p.id, p.messages, p.aspects, p.reference, _items(p), list(p.tags)]
                       for p in prompt_set.prompts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def log_prompt_dataset(client, experiment_id: str, prompt_set) -> str:
    """The prompt set (a PromptSet, or the path of a prompt file) as an MLflow GenAI evaluation
    dataset named after it, associated with the experiment; returns its dataset id. Idempotent per
    name + content hash (tag `slmbench.content_hash`): the same set is created once, a changed set
    is a new dataset of the same name. Raises TraceLoggingError."""
    from runner.config import prompts

    ps = prompt_set if hasattr(prompt_set, "prompts") else prompts.load(prompt_set)
    digest = content_hash(ps)
    try:
        name_q = ps.name.replace("'", "\\'")

        def same(experiment_ids):
            found = retry(client.search_datasets, experiment_ids=experiment_ids,
                           filter_string=f"name = '{name_q}'", max_results=1000)
            return [d for d in found if (d.tags or {}).get("slmbench.content_hash") == digest]

        # (EvaluationDataset.experiment_ids would read the process-wide tracking URI's store.)
        if here := same([str(experiment_id)]):
            return here[0].dataset_id
        if elsewhere := same(None):  # logged by another experiment: associate it with this one too
            retry(client.add_dataset_to_experiments, elsewhere[0].dataset_id, [str(experiment_id)])
            return elsewhere[0].dataset_id
        ds = retry(client.create_dataset, name=ps.name, experiment_id=[str(experiment_id)],
                    tags={"slmbench.content_hash": digest, "slmbench.prompt_file": str(ps.path),
                          "slmbench.prompts": str(len(ps.prompts))})
        # EvaluationDataset.merge_records writes to the process-wide tracking URI, not the client's:
        # the store's own upsert (what merge_records calls) writes to this client's store.
        retry(_tracing_client(client).store.upsert_dataset_records, ds.dataset_id, dataset_records(ps))
        return ds.dataset_id
    except Exception as exc:
        raise TraceLoggingError(ps.path, f"logging prompt set {ps.name} as a dataset", exc) from exc


# -- human labels back, as annotations.csv rows ------------------------------------------------------------

_SCORE = re.compile(r"^\s*([1-5])(?:\.0*)?\s*$")


def _human_score(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 1 <= value <= 5:
        return value
    if isinstance(value, float) and value.is_integer() and 1 <= value <= 5:
        return int(value)
    if isinstance(value, str) and (m := _SCORE.match(value)):
        return int(m.group(1))
    return None


def _search_request_traces(client, experiment_id: str, run_id: str | None) -> list:
    out, token = [], None
    while True:
        page = client.search_traces(locations=[str(experiment_id)], run_id=run_id, include_spans=False,
                                    filter_string=f"metadata.`{M_KIND}` = '{KIND}'", max_results=500,
                                    page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def human_assessments(client, experiment_id: str, run_id: str | None = None,
                      annotator: str | None = None) -> list[dict]:
    """HUMAN-source Feedback on the request traces of a run (or of the whole experiment), as the
    rows `judges.annotations.read_annotations` returns: prompt_id, model, round (int), aspect,
    output (an excerpt of the answer), judge_score (the LLM judge's score of that aspect on the same
    trace, from the grader whose grade counts; None if none), human_score (int 1-5), notes (the
    human's rationale). Only feedback named after one of the prompt's rubric aspects counts (other
    labels are not rubric scores); overridden (invalid) human feedback is skipped; when several
    people scored one (prompt_id, model, round, aspect), the latest wins, as a CSV holds one human
    score per row; `annotator` keeps one person's labels (the feedback's source_id). Raises
    UserError for a rubric label that is not an integer 1-5."""
    latest: dict[tuple, tuple[int, dict]] = {}
    for trace in _search_request_traces(client, experiment_id, run_id):
        info = trace.info
        md = info.trace_metadata or {}
        aspects = set(json.loads(md.get(M_ASPECTS) or "[]"))
        judge_id = md.get(M_JUDGE)
        judge_scores: dict[str, int] = {}
        for a in info.assessments:  # overridden judge feedback still is the judge's score
            if getattr(a, "feedback", None) is None or a.source.source_type != "LLM_JUDGE" or a.error:
                continue
            if judge_id and a.source.source_id != judge_id:
                continue
            if _human_score(a.value) is not None and a.name not in judge_scores:
                judge_scores[a.name] = _human_score(a.value)
        for a in info.assessments:
            if getattr(a, "feedback", None) is None or a.source.source_type != "HUMAN" or not a.valid:
                continue
            if annotator is not None and a.source.source_id != annotator:
                continue
            if a.name not in aspects and a.name not in judge_scores:
                continue
            score = _human_score(a.value)
            if score is None:
                raise UserError(f"trace {info.trace_id} ({md.get(M_PROMPT)}, round {md.get(M_ROUND)}): "
                                f"{a.source.source_id or 'a person'} scored {a.name} {a.value!r}, not an integer 1-5")
            key = (md.get(M_PROMPT), md.get(M_MODEL), int(md.get(M_ROUND, 0)), a.name)
            when = a.last_update_time_ms or a.create_time_ms or 0
            if key in latest and latest[key][0] > when:
                continue
            latest[key] = (when, {"prompt_id": key[0], "model": key[1], "round": key[2], "aspect": a.name,
                                  "output": (info.response_preview or "")[:EXCERPT_CHARS],
                                  "judge_score": judge_scores.get(a.name), "human_score": score,
                                  "notes": a.rationale or ""})
    return [row for _, row in sorted(latest.values(), key=lambda x: (x[1]["prompt_id"], x[1]["model"],
                                                                       x[1]["round"], x[1]["aspect"]))]
