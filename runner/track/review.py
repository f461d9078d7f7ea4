"""Human review of a job's answers in the MLflow UI: a review queue holding the job's traces, with one
question (label schema) per rubric aspect.

What MLflow 3.17.2 offers without Databricks (tried on a SQLite store and a local `mlflow server`):

- `mlflow.genai.labeling` (labeling sessions, the Review App) is Databricks only: it needs
  `databricks-agents` and a Databricks workspace.
- Label schemas (`mlflow.genai.label_schemas`, experimental since 3.14) and review queues
  (`mlflow.genai.review_queues`, idem) are in the OSS tracking store, with REST endpoints
  (`/api/3.0/mlflow/label-schemas/*`, `/api/3.0/mlflow/review-queues/*`) and a *Review* page in the
  UI. A queue names its questions (schema ids), its items (trace ids) and its reviewers (at most 10;
  none = anyone); a reviewer's answer is a `Feedback` assessment on the trace named after the
  question, source HUMAN with the reviewer's user name (`default` on a server without login);
  *Submit* on the review page writes them and marks the item complete (checked by driving the page
  in headless Chromium: a numeric question's answer is stored as a float, 5.0).
- So a person's scores land where `runner.track.traces.human_assessments` reads them: HUMAN
  feedback named after a rubric aspect, 1-5.

The fluent functions of `mlflow.genai` write to the process-wide tracking URI; this module uses
`TracingClient(uri)` (what they call) so it writes to the store it is given, whatever is global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

SCALE = ("1", "2", "3", "4", "5")
INSTRUCTION = "Score the answer for {aspect}{desc}: a whole number from 1 (poor) to 5 (excellent)."

README_CLICKS = """Reviewing a job's answers by hand (MLflow 3.17 without Databricks): `slmbench` puts the
job's traces in a review queue with one question per rubric aspect, and prints its link. In the UI:
at the top of the left sidebar choose *GenAI* (the *Review* page is only in that view; the link
already says so), open *Review*, pick the queue (`slmbench review: <job>`) and press *Start review*.
Each trace shows the prompt and the answer on the left and one question per aspect on the right:
type a score 1-5 for each, a rationale if you like, and press *Submit*; the trace is marked
complete and the next unreviewed one opens (*Next unreviewed* skips one, *Exit review* stops). Each
score is a Feedback on the trace named after the aspect, source *HUMAN*, under your user name
(`default` on a server without login), beside the judge's score of the same aspect; *View full
trace* shows both. One trace can also be scored from the trace view: *Traces* > the trace >
*Assess* > *Add feedback*, with the aspect's name as the feedback's name."""


@dataclass
class ReviewSession:
    """What create_review_session made (or found): the queue, its questions and items, and the URL
    fragment of its Review page (append it to the UI's address)."""

    queue_id: str
    name: str
    experiment_id: str
    schema_ids: dict[str, str]  # aspect -> label schema id
    trace_ids: list[str] = field(default_factory=list)
    url: str = ""


def _client(tracking):
    from mlflow.tracing.client import TracingClient

    if isinstance(tracking, str):
        return TracingClient(tracking)
    return TracingClient(tracking.tracking_uri)  # an MlflowClient


def _schema_input(scale: str):
    from mlflow.genai.label_schemas import InputCategorical, InputNumeric

    if scale == "categorical":
        return InputCategorical(options=list(SCALE))
    return InputNumeric(min_value=1, max_value=5)


def _not_found(exc: Exception) -> bool:
    text = str(exc).lower()
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in text \
        or "does not exist" in text


def ensure_schemas(tc, experiment_id: str, aspects: list[str] | dict[str, str],
                   scale: Literal["numeric", "categorical"] = "numeric") -> dict[str, str]:
    """One feedback label schema per aspect (named as the aspect, 1-5, rationale allowed): made when
    absent, an existing one of that name is used as it is. Returns aspect -> schema id."""
    descs = aspects if isinstance(aspects, dict) else dict.fromkeys(aspects, "")
    out: dict[str, str] = {}
    for aspect, desc in descs.items():
        try:
            schema = tc._get_label_schema_by_name(str(experiment_id), aspect)
        except Exception as exc:
            if not _not_found(exc):
                raise
            schema = tc._create_label_schema(
                experiment_id=str(experiment_id), name=aspect, type="feedback", input=_schema_input(scale),
                instruction=INSTRUCTION.format(aspect=aspect, desc=f" ({desc})" if desc else ""),
                enable_comment=True)
        out[aspect] = schema.schema_id
    return out


def run_trace_ids(client, experiment_id: str, run_id: str) -> list[str]:
    """The trace ids of a run (metadata mlflow.sourceRun), oldest first."""
    ids, token = [], None
    while True:
        page = client.search_traces(locations=[str(experiment_id)], run_id=run_id, include_spans=False,
                                    max_results=500, page_token=token, order_by=["timestamp_ms ASC"])
        ids.extend(t.info.trace_id for t in page)
        token = page.token
        if not token:
            return ids


def review_url(experiment_id: str, queue_id: str) -> str:
    q = urlencode({"workflowType": "genai", "selectedQueueId": queue_id})
    return f"#/experiments/{experiment_id}/review-queue?{q}"


def create_review_session(tracking, experiment_id: str, run_id: str, aspects: list[str] | dict[str, str],
                          name: str | None = None, users: list[str] | None = None,
                          scale: Literal["numeric", "categorical"] = "numeric") -> ReviewSession:
    """A review queue for a job's traces in experiment `experiment_id`: one question per rubric
    aspect (`aspects`: names, or names -> descriptions), the traces of run `run_id` as its items,
    `users` as its reviewers (None: anyone). `tracking` is a tracking URI or an MlflowClient.
    Idempotent by queue name (default `slmbench review: <run name>`): calling it again adds the
    run's new traces and keeps every answer and status. Raises MlflowException from the store."""
    from mlflow import MlflowClient

    if not aspects:
        raise ValueError("no rubric aspects to ask about")
    mc = tracking if isinstance(tracking, MlflowClient) else MlflowClient(tracking)
    tc = _client(tracking)
    eid = str(experiment_id)
    name = name or f"slmbench review: {mc.get_run(run_id).info.run_name}"
    schema_ids = ensure_schemas(tc, eid, aspects, scale)
    try:
        queue = tc._get_review_queue_by_name(eid, name)
    except Exception as exc:
        if not _not_found(exc):
            raise
        queue = tc._create_review_queue(eid, name=name, queue_type="custom", users=users or [],
                                        schema_ids=list(schema_ids.values()))
    trace_ids = run_trace_ids(mc, eid, run_id)
    for i in range(0, len(trace_ids), 100):
        tc._add_items_to_review_queue(queue.queue_id, item_ids=trace_ids[i:i + 100])
    return ReviewSession(queue_id=queue.queue_id, name=name, experiment_id=eid, schema_ids=schema_ids,
                         trace_ids=trace_ids, url=review_url(eid, queue.queue_id))
