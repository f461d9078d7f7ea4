"""What the answers were, beside how fast they came: cut at the token cap, and counted by the
server in agreement with the stream."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from scripted_server import Script, ScriptedServer

from runner.metrics.request import truncated

COMMON = ["run", "backend=openai", "model.id=scripted-model", "prompts=smoke", "run.rounds=2", "run.warmup=0",
          "tracking.enabled=false"]


def test_answers_cut_at_max_tokens_are_flagged_in_summary_report_and_decision(tmp_path: Path):
    # a 40-token answer capped at 10, sent two tokens per chunk: 5 chunks for 10 counted tokens
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=40, tokens_per_chunk=2)) as srv:
        done = run_cli(*COMMON, f"backend.base_url={srv.base_url}", "decoding.max_tokens=10",
                       f"hydra.run.dir={tmp_path / 'cut'}")
    assert done.returncode == 0, done.stderr
    assert "were cut at max_tokens=10" in done.stderr  # the run warns
    s = json.loads((tmp_path / "cut" / "summary.json").read_text())
    t = s["truncation"]
    assert t["cut"] == t["of"] == s["n"] and t["share"] == 1.0 and t["warn"]
    recs = [json.loads(x) for x in (tmp_path / "cut" / "requests.jsonl").read_text().splitlines()]
    assert all(r["truncated"] and r["completion_tokens"] == 10 and r["chunks"] == 5 for r in recs)
    tc = s["token_count_check"]
    assert tc["mismatched"] == tc["checked"] == s["n"] and tc["chunks_per_token"] == 0.5
    report = (tmp_path / "cut" / "report.md").read_text()
    assert "**CUT**: quality was graded on cut answers" in report
    decision = json.loads((tmp_path / "cut" / "decision.json").read_text())
    assert any("answers cut at max_tokens=10" in n for n in decision["candidates"][0]["notes"])
    assert "cut at max_tokens" in decision["summary_sentence"]


def test_whole_answers_are_not_flagged(tmp_path: Path):
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=12)) as srv:
        done = run_cli(*COMMON, f"backend.base_url={srv.base_url}", "decoding.max_tokens=64",
                       f"hydra.run.dir={tmp_path / 'whole'}")
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert s["truncation"]["cut"] == 0 and not s["truncation"]["warn"] and "cut at max_tokens" not in done.stderr
    assert s["token_count_check"]["mismatched"] == 0 and s["token_count_check"]["chunks_per_token"] == 1.0
    report = (tmp_path / "whole" / "report.md").read_text()
    assert "**CUT**" not in report
    # one cut answer, below the run's warning share: flagged in the report and the decision, no run warning
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=12)) as srv:
        done = run_cli(*COMMON, f"backend.base_url={srv.base_url}", "decoding.max_tokens=12", "run.warn_truncated_share=1",
                       f"hydra.run.dir={tmp_path / 'cut'}")
    s = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert s["truncation"]["cut"] > 0 and not s["truncation"]["warn"] and "cut at max_tokens" not in done.stderr
    assert "**CUT**" in (tmp_path / "cut" / "report.md").read_text()
    decision = json.loads((tmp_path / "cut" / "decision.json").read_text())
    assert any("answers cut at max_tokens=12" in n for n in decision["candidates"][0]["notes"])
    overhead = s["client"]["overhead_s"]  # the endpoint client's own time per request, measured
    assert overhead["n"] == s["n"] and 0 < overhead["p50"] < s["metrics"]["e2e_s"]["p50"]
    assert "client overhead: p50" in report


def test_a_server_that_says_stop_at_the_cap_still_counts_as_cut():
    assert truncated("length", 3, 100)
    assert truncated("stop", 10, 10)  # reached the cap: cut, whatever the server says
    assert not truncated("stop", 9, 10)
    assert not truncated("stop", 10, None)


def test_run_strict_from_a_config_file_sets_the_exit_code(tmp_path: Path):
    """`strict: true` in a config file counts like `run.strict=true` on the command line."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "strict_experiment.yaml").write_text("defaults:\n  - config\n  - _self_\nrun:\n  strict: true\n")
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=5)) as good:
        dead = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: that job fails
        sweep = ["-m", f"backend.base_url={good.base_url},{dead}", *COMMON[1:]]
        lenient = run_cli("run", *sweep, f"hydra.sweep.dir={tmp_path / 'lenient'}")
        strict = run_cli("run", "--config-dir", str(conf), "--config-name", "strict_experiment", *sweep,
                         f"hydra.sweep.dir={tmp_path / 'strict'}")
    assert lenient.returncode == 0, lenient.stderr  # one job produced results
    assert strict.returncode == 1, strict.stderr  # the same sweep, strict from the file
    assert len(list((tmp_path / "strict").glob("*/summary.json"))) == 2


def test_itl_percentiles_interpolate_like_every_other_percentile():
    from runner.backends.base import Completion
    from runner.metrics.request import request_metrics

    # chunks at 0, 0.1, 0.11, 0.14: gaps 0.1, 0.01, 0.03 -> p50 0.03 and, with 4 gaps, the mean of the middle two
    c = Completion(t_sent=0.0, t_end=0.2, deltas=[(0.0, "a"), (0.1, "b"), (0.11, "c"), (0.14, "d")],
                   completion_tokens=4)
    assert abs(request_metrics(c)["itl"]["p50_s"] - 0.03) < 1e-9
    c.deltas.append((0.19, "e"))  # gaps 0.1, 0.01, 0.03, 0.05: the upper median would say 0.05
    itl = request_metrics(c)["itl"]
    assert abs(itl["p50_s"] - 0.04) < 1e-9 and abs(itl["p95_s"] - 0.0925) < 1e-9  # numpy's linear rule
