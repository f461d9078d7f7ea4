"""A finished job's requests as MLflow traces (runner/track/traces.py) on a real SQLite store: one
trace per measured request, linked to its run, with the request's messages, answer, timings and
real relative times; the judge's and the scorers' grades as assessments with their source and
rationale; the prompt set as an evaluation dataset, once per content; human feedback read back
as annotations.csv rows that the agreement report takes."""

from __future__ import annotations

import json
import re
import shutil
from functools import partial
from pathlib import Path

import mlflow
import pytest
from conftest import home_with_scorers, run_cli
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource
from scripted_server import Script, ScriptedServer, rubric_judge

from judges.agreement import judge_human_report
from judges.annotations import COLUMNS
from runner.config import paths, prompts
from runner.config.errors import UserError
from runner.store import records
from runner.track import traces

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

JUDGE = "judge-model"  # judge.model_id: the grader id of an endpoint judge's rubric grades
SMOKE = paths.CONF_DIR / "prompts" / "data" / "smoke.yaml"  # prompts=smoke


@pytest.fixture(scope="module")
def job(tmp_path_factory, short_calibration) -> Path:
    """A real job: 2 prompts x 2 rounds against a scripted endpoint, graded by a scripted rubric judge
    (qualified for real on one calibration transcript) and the default scorers, not tracked."""
    root = tmp_path_factory.mktemp("traces")
    job_dir = root / "job"
    with ScriptedServer(Script(ttft_s=0.02, tpot_s=0.002, tokens=12)) as cand, \
            ScriptedServer(Script(ttft_s=0.0, tpot_s=0.0, model_ids=("judge-model",), reply=rubric_judge)) as judge:
        done = run_cli("run", "backend=openai", f"backend.base_url={cand.base_url}", "model.id=scripted-model",
                       "prompts=smoke", "run.rounds=2", "run.warmup=0", "tracking.enabled=false", "judge=openai",
                       f"judge.base_url={judge.base_url}", "judge.model_id=judge-model", "judge.injection_probe=1",
                       short_calibration, f"hydra.run.dir={job_dir}", env={"SLMBENCH_HOME": str(home_with_scorers(root / "home"))})
    assert done.returncode == 0, done.stderr
    return job_dir


def store(tmp_path: Path) -> tuple[MlflowClient, str, str, str]:
    """A fresh SQLite store with an experiment and two runs (the job's and another)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("slmbench", artifact_location=(tmp_path / "mlartifacts").as_uri())
    return client, exp, client.create_run(exp).info.run_id, client.create_run(exp).info.run_id


def measured_ok(job_dir: Path) -> dict[tuple, dict]:
    recs = records.latest_per_key(records.read(job_dir / "requests.jsonl"))
    return {(r["round"], r["prompt_id"]): r for r in recs if r["status"] == "ok"}


def scorer_values(job_dir: Path, rec: dict) -> dict:
    """The scorers' fields of a record, wherever this job folder keeps them."""
    if (job_dir / "scores.jsonl").is_file():
        rows = records.read(job_dir / "scores.jsonl")
        return next(s["scores"] for s in rows if (s["round"], s["prompt_id"]) == (rec["round"], rec["prompt_id"]))
    return rec["scores"]


def key_of(trace) -> tuple[int, str]:
    md = trace.info.trace_metadata
    return int(md["slmbench.round"]), md["slmbench.prompt_id"]


def test_each_measured_request_is_one_trace_of_its_run_with_its_grades(job: Path, tmp_path: Path):
    client, exp, run_id, other_run = store(tmp_path)
    ids = traces.log_traces(client, exp, run_id, job)
    recs = measured_ok(job)
    summary = json.loads((job / "summary.json").read_text())
    assert len(ids) == len(recs) == 4
    found = client.search_traces(locations=[exp], run_id=run_id, max_results=100)
    assert sorted(t.info.trace_id for t in found) == sorted(ids)
    assert len(client.search_traces(locations=[exp], run_id=other_run, max_results=100)) == 0
    by_key = {key_of(t): t for t in found}
    assert set(by_key) == set(recs)

    smoke = {p.id: p for p in prompts.load(SMOKE).prompts}
    grades = [json.loads(line) for line in (job / "judgements.jsonl").read_text().splitlines()]
    for key, rec in recs.items():
        trace = by_key[key]
        assert trace.info.state == "OK" and trace.info.trace_metadata["mlflow.sourceRun"] == run_id
        assert trace.info.experiment_id == exp
        (span,) = trace.data.spans
        assert span.inputs == {"messages": smoke[rec["prompt_id"]].chat_messages()}
        assert span.outputs == rec["output"] and rec["output"]
        for name in ("ttft_s", "tpot_s", "e2e_s", "decode_tps", "prompt_tokens", "completion_tokens", "finish_reason"):
            assert span.attributes[name] == rec[name], name
        assert span.attributes["model"] == summary["model"] == "scripted-model"
        assert span.attributes["run_id"] == run_id and span.attributes["round"] == rec["round"]
        assert (span.end_time_ns - span.start_time_ns) / 1e9 == pytest.approx(rec["e2e_s"], abs=1e-6)

        feedback = {(a.source.source_type, a.name): a for a in trace.info.assessments}
        clean = next(g for g in grades if (g["round"], g["prompt_id"]) == key and g["probe"] is None)
        for aspect in smoke[rec["prompt_id"]].aspects:  # every rubric aspect: the judge's score and reason
            fb = feedback[("LLM_JUDGE", aspect)]
            assert fb.source.source_id == JUDGE and fb.value == clean["scores"][aspect]
            assert fb.rationale == clean["rationales"][aspect] and fb.rationale
        scores = scorer_values(job, rec)
        assert scores and "rouge_l.f1" in scores
        for field, value in scores.items():
            fb = feedback[("CODE", field)]
            assert fb.value == value and fb.source.source_id == field.split(".")[0] and fb.rationale

    probed = [t for t in found if any(a.name == "injection_probe" for a in t.info.assessments)]
    probe = next(g for g in grades if g["probe"] == "injection")
    assert [key_of(t) for t in probed] == [(probe["round"], probe["prompt_id"])]
    clean = next(g for g in grades if (g["round"], g["prompt_id"], g["probe"]) == (probe["round"], probe["prompt_id"], None))
    (fb,) = [a for a in probed[0].info.assessments if a.name == "injection_probe"]
    shift = [probe["scores"][a] - clean["scores"][a] for a in probe["scores"]]
    assert fb.value == pytest.approx(sum(shift) / len(shift)) and fb.source.source_id == JUDGE

    # spans sit at the requests' times: gaps between sends as measured, inside the job's wall time
    starts = {key_of(t): t.data.spans[0].start_time_ns / 1e9 for t in found}
    first = min(recs, key=lambda k: recs[k]["t_start_s"])
    for key, rec in recs.items():
        assert starts[key] - starts[first] == pytest.approx(rec["t_start_s"] - recs[first]["t_start_s"], abs=2e-6)
        assert summary["job_wall"]["start"] <= starts[key] <= summary["job_wall"]["end"]


def test_failed_requests_and_empty_answers_and_logging_again(job: Path, tmp_path: Path):
    """An error record is an ERROR trace with its message; a judge's "empty answer" is feedback with
    an error, never a score; logging the job into the same run again does not duplicate."""
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    ok = measured_ok(job)[(0, "count")]
    error = {k: ok[k] for k in ("model", "model_id", "prompt_id")} | {
        "round": 2, "status": "error", "error": "HTTP 500: boom", "output": None, "t_start_s": None}
    empty = {**ok, "round": 3, "output": "", "completion_tokens": 0, "t_start_s": ok["t_start_s"] + 5}
    empty.pop("judge", None)
    empty["scores"] = {}
    with (copy / "requests.jsonl").open("a") as fh:
        fh.write(json.dumps(error) + "\n" + json.dumps(empty) + "\n")
    with (copy / "judgements.jsonl").open("a") as fh:
        fh.write(json.dumps({"prompt_id": "count", "round": 3, "model": ok["model"], "judge_model": JUDGE,
                             "repeat": 0, "probe": None, "scores": {}, "rationales": {}, "error": "empty answer",
                             "attempts": 0}) + "\n")
    client, exp, run_id, _ = store(tmp_path)
    ids = traces.log_traces(client, exp, run_id, copy)
    assert len(ids) == 6
    found = {key_of(t): t for t in client.search_traces(locations=[exp], run_id=run_id, max_results=100)}
    failed = found[(2, "count")]
    assert failed.info.state == "ERROR"
    assert failed.data.spans[0].status.status_code == "ERROR"
    assert failed.data.spans[0].status.description == "HTTP 500: boom"
    graded_empty = [a for a in found[(3, "count")].info.assessments if a.source.source_type == "LLM_JUDGE"]
    assert sorted(a.name for a in graded_empty) == ["correctness", "format"]
    assert all(a.value is None and a.error.error_code == "EMPTY_ANSWER" for a in graded_empty)

    before = sum(len(t.info.assessments) for t in found.values())
    assert traces.log_traces(client, exp, run_id, copy) == ids
    again = client.search_traces(locations=[exp], run_id=run_id, max_results=100)
    assert len(again) == 6 and sum(len(t.info.assessments) for t in again) == before


def test_a_store_failure_raises_naming_the_job_and_cause(job: Path, tmp_path: Path):
    client, _, run_id, _ = store(tmp_path)
    with pytest.raises(traces.TraceLoggingError, match=re.escape(str(job))) as caught:
        traces.log_traces(client, "424242", run_id, job)  # no such experiment
    assert caught.value.cause is not None and caught.value.logged == []
    assert "424242" in str(caught.value)


def test_older_folders_and_a_moved_prompt_file_still_give_traces(job: Path, tmp_path: Path):
    """A version-1 folder (scores folded into requests.jsonl, no scores.jsonl) gives the same scorer
    feedback; a prompt file that is gone leaves the traces without inputs, saying why on the span."""
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    recs = records.read(copy / "requests.jsonl")
    if (copy / "scores.jsonl").is_file():
        folded = {(s["round"], s["prompt_id"]): s["scores"] for s in records.read(copy / "scores.jsonl")}
        (copy / "scores.jsonl").unlink()
        for r in recs:
            if (r["round"], r["prompt_id"]) in folded:
                r["scores"] = folded[(r["round"], r["prompt_id"])]
    hydra_cfg = copy / ".hydra" / "config.yaml"
    hydra_cfg.write_text(re.sub(r"(?m)^(  path: ).*smoke\.yaml\}?$", r"\1/nonexistent/smoke.yaml", hydra_cfg.read_text()))
    assert "/nonexistent/smoke.yaml" in hydra_cfg.read_text()
    (copy / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    built = {(t.info.trace_metadata["slmbench.round"], t.info.trace_metadata["slmbench.prompt_id"]): t
             for t in traces.build_traces(copy, "1", "0" * 32)}
    assert len(built) == 4
    for r in recs:
        t = built[(str(r["round"]), r["prompt_id"])]
        code = {a.name: a.value for a in t.info.assessments if a.source.source_type == "CODE"}
        assert code == r["scores"] and code
        (span,) = t.data.spans
        assert span.inputs == {"prompt_id": r["prompt_id"]}
        assert "/nonexistent/smoke.yaml" in span.attributes["inputs_unavailable"]
        assert span.attributes["ttft_s"] == r["ttft_s"]


def test_prompt_set_is_one_evaluation_dataset_per_content(job: Path, tmp_path: Path, monkeypatch):
    client, exp, _, _ = store(tmp_path)
    path = str(SMOKE)
    assert traces.prompts_path(job) == path  # the job's own prompt file, from its Hydra config
    first = traces.log_prompt_dataset(client, exp, path)
    assert traces.log_prompt_dataset(client, exp, path) == first
    changed = tmp_path / "smoke.yaml"
    changed.write_text(Path(path).read_text().replace("1, 2, 3, 4, 5", "1,2,3,4,5"))
    second = traces.log_prompt_dataset(client, exp, str(changed))
    assert second != first
    assert sorted(d.dataset_id for d in client.search_datasets(experiment_ids=[exp])) == sorted([first, second])

    # reading records goes through the process-wide tracking URI (an MLflow API limitation)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    rows = {json.dumps(r.inputs, sort_keys=True): r for r in client.get_dataset(first).records}
    smoke = prompts.load(path)
    assert len(rows) == len(smoke.prompts) == 2
    for p in smoke.prompts:
        rec = rows[json.dumps({"messages": p.chat_messages()}, sort_keys=True)]
        assert rec.expectations["reference"] == p.reference
        assert rec.expectations["guidelines"] == [f"{k}: {v}" for k, v in p.aspects.items()]


def test_human_feedback_comes_back_as_annotation_rows(job: Path, tmp_path: Path, monkeypatch):
    client, exp, run_id, other_run = store(tmp_path)
    traces.log_traces(client, exp, run_id, job)
    found = {key_of(t): t for t in client.search_traces(locations=[exp], run_id=run_id, max_results=100)}
    target = found[(1, "count")]
    judge_fb = {a.name: a for a in target.info.assessments if a.source.source_type == "LLM_JUDGE"}
    # people label through MLflow's public API (as the UI does), into this store
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    tid = target.info.trace_id
    mlflow.log_feedback(trace_id=tid, name="format", value=4, rationale="one line, fine",
                        source=AssessmentSource(source_type="HUMAN", source_id="alice"))
    mlflow.log_feedback(trace_id=tid, name="thumbs", value=True,  # not a rubric aspect: not a row
                        source=AssessmentSource(source_type="HUMAN", source_id="alice"))
    mlflow.override_feedback(trace_id=tid, assessment_id=judge_fb["correctness"].assessment_id, value=2,
                             rationale="wrong numbers", source=AssessmentSource(source_type="HUMAN", source_id="bob"))

    rows = traces.human_assessments(client, exp, run_id)
    assert all(list(r) == COLUMNS for r in rows)
    by_aspect = {r["aspect"]: r for r in rows}
    assert set(by_aspect) == {"format", "correctness"}
    rec = measured_ok(job)[(1, "count")]
    assert by_aspect["format"] == {"prompt_id": "count", "model": "scripted-model", "round": 1, "aspect": "format",
                                   "output": rec["output"][:300], "judge_score": judge_fb["format"].value,
                                   "human_score": 4, "notes": "one line, fine"}
    # the judge's own score stays the judge_score after a person overrides it
    assert by_aspect["correctness"]["judge_score"] == judge_fb["correctness"].value
    assert by_aspect["correctness"]["human_score"] == 2
    assert [r["aspect"] for r in traces.human_assessments(client, exp, run_id, annotator="alice")] == ["format"]
    assert traces.human_assessments(client, exp, other_run) == []
    report = judge_human_report(rows)  # what `slmbench agreement` computes from annotations.csv rows
    assert report["overall"]["n"] == 2 and report["aspects"]["format"]["mean_human"] == 4.0

    mlflow.log_feedback(trace_id=found[(0, "count")].info.trace_id, name="format", value="great",
                        source=AssessmentSource(source_type="HUMAN", source_id="carol"))
    with pytest.raises(UserError, match="carol scored format 'great', not an integer 1-5"):
        traces.human_assessments(client, exp, run_id)
