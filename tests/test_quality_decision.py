"""End to end: an endpoint serves answers of known quality order (one job per kind of answer),
a real Hydra multirun grades them, and the decision never recommends one of the three worst,
with judge=none (the notes scorer) and with a checklist judge (qualified first, in process)."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli
from scripted_server import Script, ScriptedServer

from runner.config import prompts

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

KINDS = ("reference", "owner_swapped", "dropped_and_wrong_date", "invented_and_owner_swapped",
         "paragraph_half_missing")
WORST = set(KINDS[2:])
ANSWERS = yaml.safe_load((ROOT / "tests" / "data" / "known_order.yaml").read_text())["answers"]
PROMPTS = prompts.load(ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml").prompts
LIMIT = 4
JUDGED_LIMIT = 1  # transcripts a job when a pack model judges: each grade costs seconds on the CPU


def reply(model: str, messages) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    pid = next(p.id for p in PROMPTS if p.user_text() == user)
    return next(a["text"] for a in ANSWERS[pid] if a["kind"] == model)


@pytest.fixture(scope="module")
def endpoint():
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0, tokens_per_chunk=8, model_ids=KINDS, reply=reply)) as srv:
        yield srv


def sweep(tmp_path: Path, endpoint, *extra: str, limit: int = LIMIT) -> tuple[dict, dict[str, dict]]:
    out = tmp_path / "sweep"
    done = run_cli("run", "-m", "backend=openai", f"backend.base_url={endpoint.base_url}",
                   f"model.id={','.join(KINDS)}", "prompts=meeting-notes", f"prompts.limit={limit}",
                   "run.rounds=1", "run.warmup=0", "decoding.max_tokens=600", f"hydra.sweep.dir={out}", *extra,
                   timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    decision = json.loads((out / "decision.json").read_text())
    jobs = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/summary.json")}
    return decision, jobs


def kind_of(jobs: dict[str, dict], job: str) -> str:
    return jobs[job]["model_id"]


def test_notes_scorer_orders_a_sweep_and_the_decision_follows(tmp_path: Path, endpoint):
    decision, jobs = sweep(tmp_path, endpoint, "judge=none")
    quality = {s["model_id"]: s["quality"]["overall"]["mean"] for s in jobs.values()}
    assert [quality[k] for k in KINDS] == sorted(quality.values(), reverse=True), quality
    assert all(s["quality"]["source"] == "notes" and s["quality"]["trusted"] for s in jobs.values())
    assert decision["objective"]["metric"] == "quality.overall"
    assert kind_of(jobs, decision["recommended"]["job"]) == "reference"
    assert kind_of(jobs, decision["runner_up"]["job"]) not in WORST
    assert decision["quality"]["sources"] == ["notes"] and not decision["quality"]["not_used"]
    # the qualification reaches MLflow with the job's run
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    job = tmp_path / "sweep" / decision["recommended"]["job"]
    run = client.search_runs([client.get_experiment_by_name("slmbench").experiment_id],
                             filter_string=f"tags.job_dir = '{job.resolve()}'")[0]
    assert run.data.metrics["quality.qualifications.notes.passed"] == 1.0
    assert run.data.metrics["quality.qualifications.notes.spearman.pooled"] >= 0.8
    assert run.data.tags["quality.source"] == "notes" and run.data.tags["quality.trusted"] == "True"


def test_a_checklist_judge_is_qualified_first_and_never_steers_to_a_bad_answer(tmp_path: Path, endpoint,
                                                                             two_transcript_calibration):
    # the default model group's alias is smollm2-135m-int8, but the endpoint's models are the ones
    # measured: the same pack model may judge them (it is not grading itself). No injection probes:
    # the probe's grades are test_judges.test_real_grading_with_a_pack_judge's (5 grades less here).
    decision, jobs = sweep(tmp_path, endpoint, "judge=smollm2-135m-int8", "judge.mode=checklist",
                           "judge.reasoning=false", "judge.injection_probe=0", two_transcript_calibration,
                           limit=JUDGED_LIMIT)
    recommended = kind_of(jobs, decision["recommended"]["job"])
    assert recommended not in WORST, decision["summary_sentence"]
    for job, s in jobs.items():
        q = s["quality"]
        quals = q["qualifications"]
        assert set(quals) == {"notes", "smollm2-135m-int8/checklist"}
        judge_q = quals["smollm2-135m-int8/checklist"]
        for figure in ("adjacent_accuracy", "agreeableness", "injection_lift", "parse_failure_rate",
                       "seconds_per_grade"):
            assert figure in judge_q
        assert isinstance(judge_q["passed"], bool) and judge_q["spearman"]["ci95"] is not None
        # the source is the judge only when it qualified; otherwise the qualified notes scorer
        assert q["source"] == ("smollm2-135m-int8/checklist" if judge_q["passed"] else "notes") and q["trusted"]
        assert q["n_graded"] == JUDGED_LIMIT and q["judge"] == "smollm2-135m-int8/checklist"
        report = (tmp_path / "sweep" / job / "report.md").read_text()
        assert "Grader qualification on answers of known order" in report
        if not judge_q["passed"]:
            assert "Not used (failed qualification): smollm2-135m-int8/checklist" in report
        assert "model family" not in report  # the endpoint's model is not the default alias's smollm2
    # one qualification for the whole sweep: every job carries the same (cached) figures
    assert len({json.dumps(s["quality"]["qualifications"]["smollm2-135m-int8/checklist"]["spearman"])
                for s in jobs.values()}) == 1
