"""Responses that are not an answer are errors with their cause, for the candidate's endpoint and
the judge's, and an empty answer is recorded as it is but never graded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

from runner.backends.base import BackendError, GenParams
from runner.backends.openai_compat import OpenAIBackend

COMMON = ["backend=openai", "model.id=scripted-model", "prompts=smoke", "run.rounds=1", "run.warmup=0",
          "tracking.enabled=false"]


def test_html_page_and_early_end_fail_their_jobs_and_a_good_stream_is_ok(tmp_path: Path):
    with ScriptedServer(Script(html_page=True)) as html, \
            ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=20, end_after_tokens=1)) as cut, \
            ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=20)) as good:
        done = run_cli("run", "-m", *COMMON, f"backend.base_url={html.base_url},{cut.base_url},{good.base_url}",
                       f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr  # one job produced results
    with (tmp_path / "summary.csv").open() as fh:
        rows = {int(r["job"].split("_")[0]): r for r in csv.DictReader(fh)}
    assert rows[0]["status"] == "failed" and "not an event stream" in rows[0]["error"]
    assert "text/html" in rows[0]["error"] and "<!DOCTYPE html>" in rows[0]["error"]
    assert rows[1]["status"] == "failed" and "stream ended early after 1 chunks" in rows[1]["error"]
    assert rows[2]["status"] == "ok" and rows[2]["n"] == "2"
    # the three jobs share the label; their names show the endpoint that differs
    names = {json.loads(p.read_text())["name"] for p in tmp_path.glob("*/summary.json")}
    assert len(names) == 3 and all("backend.base_url=" in n for n in names)


def test_the_judges_endpoint_follows_the_same_rules():
    with ScriptedServer(Script(html_page=True)) as html:
        judge = OpenAIBackend("scripted-model", html.base_url, timeout_s=5)
        with pytest.raises(BackendError, match=r"not a JSON reply: HTTP 200 with content-type 'text/html"):
            judge.complete([{"role": "user", "content": "grade"}], GenParams())
    with ScriptedServer(Script(status=503)) as down:
        with pytest.raises(BackendError, match=r"HTTP 503"):
            OpenAIBackend("scripted-model", down.base_url, timeout_s=5).complete(
                [{"role": "user", "content": "grade"}], GenParams())


def test_an_empty_answer_is_counted_and_never_graded(tmp_path: Path, short_calibration: str):
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=0)) as silent, \
            ScriptedServer(Script(ttft_s=0.0, tpot_s=0.0, model_ids=("judge-model",),
                                 reply=lambda model, messages: '{"score": 5}')) as judge:
        done = run_cli("run", *COMMON, f"backend.base_url={silent.base_url}", "judge=openai",
                       f"judge.base_url={judge.base_url}", "judge.model_id=judge-model", "judge.injection_probe=1",
                       short_calibration, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n"] == 2 and s["empty_answers"] == 2
    judgements = [json.loads(x) for x in (tmp_path / "judgements.jsonl").read_text().splitlines()]
    assert judgements and all(j["error"] == "empty answer" and j["scores"] == {} and j["attempts"] == 0
                              for j in judgements)
    assert s["quality"]["n_graded"] == 0 and s["quality"].get("judge_overall") is None
    assert "empty answers: 2 of 2" in (tmp_path / "report.md").read_text()
