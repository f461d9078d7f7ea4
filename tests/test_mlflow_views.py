"""The MLflow UI's first view and human review, checked through a real `mlflow server` on loopback:
what `runner.track.views.prepare_experiment` and `runner.track.review.create_review_session` write
must be what the server hands the UI (its REST API), in the shape the installed UI bundle reads."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import mlflow_server

from runner.track import views
from runner.track.review import create_review_session

KEY_COLUMNS = ["tags.`model`", "params.`model.precision`", "tags.`hardware`", "metrics.`decode_tps.p50`",
               "metrics.`ttft_s.p95`", "metrics.`e2e_s.p95`", "metrics.`rss_peak_mb`",
               "metrics.`quality.overall`", "metrics.`quality.trusted`", "tags.`status`"]
JOBS = [("0_small-int8", "small-int8", "int8", 61.2, 0.21, 3.4),
        ("1_big-int4", "big-int4", "int4", 38.5, 0.35, 3.9)]
ASPECTS = {"correctness": "facts match the reference", "completeness": "every decision is there"}


def _build_store(root: Path) -> dict:
    """A sweep as slmbench logs it (parent + 2 job runs with the key metrics, params and tags) and two
    traces of the first job, made with MLflow's public tracing API inside that run."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    eid = client.create_experiment("slmbench", artifact_location=(root / "mlartifacts").as_uri())
    parent = client.create_run(eid, run_name="sweep", tags={"slmbench.kind": "sweep"}).info.run_id
    now = int(time.time() * 1000)
    jobs = []
    for name, model, precision, tps, ttft, quality in JOBS:
        run_id = client.create_run(eid, run_name=name, tags={
            "slmbench.kind": "job", "model": model, "hardware": "cpu", "status": "ok",
            "mlflow.parentRunId": parent}).info.run_id
        client.log_batch(run_id, params=[Param("model.precision", precision)], metrics=[
            Metric("decode_tps.p50", tps, now, 0), Metric("ttft_s.p95", ttft, now, 0),
            Metric("e2e_s.p95", ttft * 10, now, 0), Metric("rss_peak_mb", 400.0, now, 0),
            Metric("quality.overall", quality, now, 0), Metric("quality.trusted", 1.0, now, 0)])
        client.set_terminated(run_id, "FINISHED")
        jobs.append(run_id)
    client.set_terminated(parent, "FINISHED")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        traces = []
        with mlflow.start_run(run_id=jobs[0], experiment_id=eid):
            for prompt, answer in [("What is 2+2?", "4"), ("Capital of France?", "Paris")]:
                with mlflow.start_span(name="chat", span_type="CHAT_MODEL") as span:
                    span.set_inputs({"messages": [{"role": "user", "content": prompt}]})
                    span.set_outputs(answer)
                    traces.append(span.trace_id)
        if hasattr(mlflow, "flush_trace_async_logging"):
            mlflow.flush_trace_async_logging()
    finally:
        mlflow.set_tracking_uri(previous)
    return {"uri": uri, "client": client, "experiment_id": eid, "parent": parent, "jobs": jobs,
            "traces": traces}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The store, preset and with a review queue, behind a real `mlflow server` on 127.0.0.1."""
    root = tmp_path_factory.mktemp("views")
    store = _build_store(root)
    store["fragment"] = views.prepare_experiment(store["client"], store["experiment_id"])
    store["review"] = create_review_session(store["uri"], store["experiment_id"], store["jobs"][0], ASPECTS)
    with mlflow_server(store["uri"], root / "mlartifacts", root / "server.log") as base:
        yield {**store, "base": base}


def _get(served, path: str, **query) -> dict:
    url = f"{served['base']}{path}?{urllib.parse.urlencode(query)}"
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


def _post(served, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{served['base']}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    return json.loads(urllib.request.urlopen(req, timeout=30).read() or b"{}")


def _tags(served) -> dict[str, str]:
    exp = _get(served, "/api/2.0/mlflow/experiments/get", experiment_id=served["experiment_id"])["experiment"]
    return {t["key"]: t["value"] for t in exp.get("tags", [])}


def _state(served) -> dict:
    """The saved view as the UI parses it: an envelope {name, createdAt, updatedAt, state}, state JSON."""
    envelope = json.loads(_tags(served)[f"mlflow.sharedViewState.{views.VIEW_KEY}"])
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    assert isinstance(envelope["state"], str)
    return json.loads(envelope["state"])


def test_the_url_opens_the_saved_view_on_the_runs_table(served):
    eid = served["experiment_id"]
    assert served["fragment"] == \
        f"#/experiments/{eid}/runs?workflowType=machine_learning&viewStateShareKey=slmbench"
    assert views.view_url(eid, "CHART").endswith("&compareRunsMode=CHART")
    tags = _tags(served)
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    note = tags["mlflow.note.content"]
    assert "decode_tps.p50" in note and "quality.overall" in note


def test_the_saved_view_shows_the_key_columns_sorted_by_speed(served):
    state = _state(served)
    assert state["selectedColumns"] == KEY_COLUMNS
    assert state["columnOrder"][1:len(KEY_COLUMNS) + 1] == KEY_COLUMNS
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`decode_tps.p50`", False)
    # the view's filter and sort, run by the server as the runs page runs them: every job, no sweep row
    found = _post(served, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [served["experiment_id"]], "filter": state["searchFilter"],
        "order_by": [f"{state['orderByKey']} DESC"], "max_results": 100})["runs"]
    assert [r["info"]["run_id"] for r in found] == served["jobs"]  # 61.2 tok/s before 38.5
    for run in found:  # and each column has its value
        data = run["data"]
        have = {f"{kind}.`{x['key']}`" for kind in ("metrics", "params", "tags") for x in data[kind]}
        assert set(KEY_COLUMNS) <= have


def test_the_saved_view_presets_the_charts(served):
    state = _state(served)
    cards = [c for c in state["compareRunCharts"] if not c["deleted"]]
    scatter = [c for c in cards if c["type"] == "SCATTER"]
    assert [(c["xaxis"], c["yaxis"]) for c in scatter] == [
        ({"key": "decode_tps.p50", "type": "METRIC"}, {"key": "quality.overall", "type": "METRIC"})]
    assert "ttft_s.p95" in [c["metricKey"] for c in cards if c["type"] == "BAR"]
    sections = state["compareRunSections"]
    assert sections[0]["uuid"] == cards[0]["metricSectionId"] and sections[0]["display"] is True
    assert {c["metricSectionId"] for c in cards} == {sections[0]["uuid"]}
    assert all(not s["display"] for s in sections[1:])  # MLflow's generated charts: closed
    assert state["isAccordionReordered"] is True


def test_the_installed_ui_reads_this_format(served):
    """The bundle the server serves: the saved-view tag prefix, its URL parameter, the envelope's
    check, the UI-state fields the view sets, and the table/chart switch."""
    index = urllib.request.urlopen(served["base"] + "/", timeout=30).read().decode()
    assert "static/js/main" in index
    import mlflow

    js = "".join(p.read_text(errors="replace") for p in
                 (Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js").glob("*.js"))
    for needle in ['"mlflow.sharedViewState."', '"viewStateShareKey"', "Invalid saved-view envelope",
                   '"compareRunsMode"', '"selectedColumns","columnOrder","columnWidths"',
                   '"compareRunCharts"',
                   '"compareRunSections"', 'e.SCATTER="SCATTER"', '"mlflow.workflowType"',
                   '"machine_learning"', "experimentPageTabReviewQueue", '"selectedQueueId"']:
        assert needle in js, needle
    # expanded rows are never part of a saved view: the preset lists the jobs instead
    assert '["runsExpanded","runsPinned","runsHidden","runsVisibilityMap","autoRefreshEnabled"]' in js
    assert views.JOB_FILTER == _state(served)["searchFilter"]


def test_prepare_is_idempotent_and_keeps_what_a_person_changed(served):
    client, eid = served["client"], served["experiment_id"]
    before = _tags(served)
    assert views.prepare_experiment(client, eid) == served["fragment"]
    assert _tags(served) == before  # nothing rewritten, not even updatedAt
    # a person overwrites the view and the description in the UI (the calls the UI makes)
    mine = json.dumps({"name": views.VIEW_NAME, "createdAt": 1, "updatedAt": 2,
                       "state": json.dumps({"searchFilter": "", "selectedColumns": ["tags.`model`"]})})
    for key, value in ((views.VIEW_TAG, mine), ("mlflow.note.content", "my notes")):
        _post(served, "/api/2.0/mlflow/experiments/set-experiment-tag",
              {"experiment_id": eid, "key": key, "value": value})
    assert views.prepare_experiment(client, eid) == served["fragment"]
    after = _tags(served)
    assert after[views.VIEW_TAG] == mine and after["mlflow.note.content"] == "my notes"
    # removing it brings the preset back
    client.delete_experiment_tag(eid, views.VIEW_TAG)
    views.prepare_experiment(client, eid)
    assert _state(served)["selectedColumns"] == KEY_COLUMNS
    assert views.prepare_experiment(client, "999999") is None


def test_the_review_queue_holds_the_jobs_traces_with_one_question_per_aspect(served):
    review, eid = served["review"], served["experiment_id"]
    queue = _get(served, "/api/3.0/mlflow/review-queues/get-by-name", experiment_id=eid,
                 name=review.name)["review_queue"]
    assert queue["queue_id"] == review.queue_id and queue["queue_type"] == "CUSTOM"
    listed = _get(served, "/api/3.0/mlflow/label-schemas/list", experiment_id=eid)["label_schemas"]
    schemas = {s["schema_id"]: s for s in listed}
    asked = {schemas[i]["name"]: schemas[i] for i in queue["schema_ids"]}
    assert set(asked) == set(ASPECTS)
    for aspect, schema in asked.items():
        assert schema["type"] == "FEEDBACK" and schema["enable_comment"] is True
        assert schema["input"] == {"numeric": {"min_value": 1.0, "max_value": 5.0}}
        assert ASPECTS[aspect] in schema["instruction"]
    items = _get(served, "/api/3.0/mlflow/review-queues/items/list", queue_id=review.queue_id)["items"]
    assert sorted(i["item_id"] for i in items) == sorted(served["traces"])
    assert {i["status"] for i in items} == {"PENDING"}
    assert review.url == \
        f"#/experiments/{eid}/review-queue?workflowType=genai&selectedQueueId={review.queue_id}"


def test_a_second_review_session_adds_nothing_twice(served):
    again = create_review_session(served["client"], served["experiment_id"], served["jobs"][0], list(ASPECTS))
    assert (again.queue_id, again.schema_ids) == (served["review"].queue_id, served["review"].schema_ids)
    items = _get(served, "/api/3.0/mlflow/review-queues/items/list", queue_id=again.queue_id)["items"]
    assert len(items) == len(served["traces"])
    names = [s["name"] for s in _get(served, "/api/3.0/mlflow/label-schemas/list",
                                     experiment_id=served["experiment_id"])["label_schemas"]]
    assert sorted(n for n in names if n in ASPECTS) == sorted(ASPECTS)
    with pytest.raises(ValueError):
        create_review_session(served["client"], served["experiment_id"], served["jobs"][0], [])
