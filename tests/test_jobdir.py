"""The typed, versioned job folder: the measurement log is never rewritten, grades are joined on
read, older folders still read and newer ones are refused with their version named."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from runner.config.errors import UserError
from runner.store import jobdir
from runner.store.facts import Facts


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _record(prompt: str, rnd: int, status: str = "ok", **extra) -> dict:
    return {"model": "m", "prompt_id": prompt, "round": rnd, "status": status, "output": f"answer {prompt}",
            "ttft_s": 0.1, **extra}


def test_grades_are_joined_on_read_and_the_records_stay_as_measured(tmp_path: Path):
    _jsonl(tmp_path / jobdir.REQUESTS, [_record("a", 0, status="error"), _record("a", 0), _record("b", 0)])
    before = (tmp_path / jobdir.REQUESTS).read_bytes()
    jobdir.write_scores(tmp_path, [{"round": 0, "prompt_id": "a", "scores": {"rouge_l.f1": 0.5}}])
    _jsonl(tmp_path / jobdir.JUDGEMENTS, [
        # judge j1: a failed then a successful grading of a (the success wins), a repeat and a probe (not joined)
        {"prompt_id": "a", "round": 0, "model": "m", "judge_model": "j1", "repeat": 0, "probe": None,
         "scores": {}, "rationales": {}, "error": "unparseable", "attempts": 2},
        {"prompt_id": "a", "round": 0, "model": "m", "judge_model": "j1", "repeat": 0, "probe": None,
         "scores": {"clarity": 4}, "rationales": {"clarity": "clear"}, "error": None, "attempts": 1},
        {"prompt_id": "a", "round": 0, "model": "m", "judge_model": "j1", "repeat": 1, "probe": None,
         "scores": {"clarity": 2}, "rationales": {"clarity": "x"}, "error": None, "attempts": 1},
        {"prompt_id": "b", "round": 0, "model": "m", "judge_model": "j1", "repeat": 0, "probe": "injection",
         "scores": {"clarity": 5}, "rationales": {"clarity": "x"}, "error": None, "attempts": 1},
        # another judge graded b
        {"prompt_id": "b", "round": 0, "model": "m", "judge_model": "j2", "repeat": 0, "probe": None,
         "scores": {"clarity": 1}, "rationales": {"clarity": "vague"}, "error": None, "attempts": 1},
    ])
    recs = {r["prompt_id"]: r for r in jobdir.ok_records(tmp_path, "j1")}
    assert recs["a"]["scores"] == {"rouge_l.f1": 0.5} and "scores" not in recs["b"]
    assert recs["a"]["judge"] == {"model": "j1", "scores": {"clarity": 4}, "rationales": {"clarity": "clear"},
                                  "error": None}
    assert "judge" not in recs["b"]  # only a probe by j1, and j2 was not asked for
    assert jobdir.ok_records(tmp_path, "j2")[1]["judge"]["scores"] == {"clarity": 1}
    assert jobdir.judges(tmp_path) == ["j1", "j2"]
    assert (tmp_path / jobdir.REQUESTS).read_bytes() == before
    # without a judge named, the one the summary names is joined
    jobdir.write_summary(tmp_path, jobdir.Summary(quality={"judge": "j2"}))
    assert jobdir.graded_records(tmp_path)[1]["judge"]["model"] == "j2"
    assert "judge" not in jobdir.ok_records(tmp_path, "j1", graded=False)[0]


def test_a_version_1_folder_reads_with_its_inline_grades(tmp_path: Path):
    inline = {"model": "j1", "scores": {"clarity": 3}, "rationales": {"clarity": "ok"}, "error": None}
    _jsonl(tmp_path / jobdir.REQUESTS, [_record("a", 0, judge=inline, scores={"rouge_l.f1": 0.2})])
    (tmp_path / jobdir.SUMMARY).write_text(json.dumps({"model": "m", "quality": {"judge": "j1"}}))  # no version
    s = jobdir.read_summary(tmp_path)
    assert s["model"] == "m" and s.model == "m" and s.schema_version == 1 and s.get("load_s") is None
    [r] = jobdir.ok_records(tmp_path)
    assert r["judge"] == inline and r["scores"] == {"rouge_l.f1": 0.2}


def test_a_folder_from_a_newer_version_is_refused_with_its_version(tmp_path: Path):
    (tmp_path / jobdir.SUMMARY).write_text(json.dumps({"schema_version": jobdir.SCHEMA_VERSION + 1}))
    with pytest.raises(UserError, match=f"schema version {jobdir.SCHEMA_VERSION + 1}"):
        jobdir.read_summary(tmp_path)
    with pytest.raises(UserError, match="no summary.json"):
        jobdir.read_summary(tmp_path / "missing")


def test_the_summary_is_typed_and_round_trips_its_keys_and_unknown_ones(tmp_path: Path):
    from dataclasses import fields

    from runner.metrics import catalog

    s = jobdir.Summary(model="m", status="ok", n=3, metrics={"ttft_s": {"p50": 0.1}}, extra={"later_key": 1})
    jobdir.write_summary(tmp_path, s)
    back = jobdir.read_summary(tmp_path)
    assert isinstance(back, jobdir.Summary) and back.to_dict() == s.to_dict()
    assert back["later_key"] == 1 and back.extra == {"later_key": 1}  # a newer minor key is kept as read
    assert dict(back)["metrics"] == {"ttft_s": {"p50": 0.1}} and "nope" not in back
    assert catalog.flatten(back)["ttft_s.p50"] == 0.1  # the one flattener reads it as it reads the JSON
    typed = {f.name: f.type for f in fields(jobdir.Summary)}
    assert typed["n"] == "int" and typed["schema_version"] == "int" and typed["metrics"] == "dict"


def test_facts_cross_a_process_boundary_and_take_a_kept_window():
    facts = Facts(config_hash="abc", prompts="smoke")
    facts.update({"window": {"ok": 3}, "window_s": 1.5, "settings": {"rate": 2}})  # settings: not a fact
    again = pickle.loads(pickle.dumps(facts))
    assert again == facts and again.window == {"ok": 3} and not hasattr(again, "settings")
