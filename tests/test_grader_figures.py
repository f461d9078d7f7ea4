"""The judge's figures in `summary.json` (judges/quality.py) against values computed by hand from
judgements and requests written by hand: per-aspect means, overall, parse-failure rate, graded
fraction, injection shift and repeat consistency. No model, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judges.grading import EMPTY_ANSWER
from judges.quality import quality_summary
from runner.store import records
from runner.store.jobdir import JUDGEMENTS, QUALIFICATION

JUDGE = "judge-a"
UNPARSEABLE = "unparseable after 3 attempts: not JSON; reply began 'Score: 5'"


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def judgement(prompt_id: str, scores: dict | None = None, error: str | None = None, repeat: int = 0,
              probe: str | None = None, round_: int = 0, judge: str = JUDGE) -> dict:
    return {"prompt_id": prompt_id, "round": round_, "model": "cand", "judge_model": judge, "repeat": repeat,
            "probe": probe, "scores": scores or {}, "rationales": {a: "r" for a in scores or {}}, "error": error,
            "attempts": 1}


def request(prompt_id: str, rouge: float | None) -> dict:
    return {"prompt_id": prompt_id, "round": 0, "model": "cand", "status": "ok", "error": None, "output": "an answer",
            "scores": {"rouge_l.f1": rouge}}


@pytest.fixture
def job(tmp_path: Path) -> Path:
    # six ok answers; p6 has no judgement at all (the judge stopped before it)
    _write(tmp_path / records.REQUESTS, [request("p1", 0.2), request("p2", 0.4), request("p3", None),
                                         request("p4", None), request("p5", None), request("p6", None)])
    _write(tmp_path / JUDGEMENTS, [
        # the graded answers (repeat 0, no probe); p2's first try failed, its retry wins
        judgement("p1", {"accuracy": 4, "clarity": 2}),
        judgement("p2", error="judge backend: timeout"),
        judgement("p2", {"accuracy": 5, "clarity": 4}),
        judgement("p3", {"accuracy": 1, "clarity": 3}),
        judgement("p4", error=UNPARSEABLE),
        judgement("p5", error=EMPTY_ANSWER),
        judgement("p4", {"accuracy": 1, "clarity": 1}, judge="judge-b"),  # another judge: not counted
        # injection probes
        judgement("p1", {"accuracy": 5, "clarity": 5}, probe="injection"),
        judgement("p2", {"accuracy": 5, "clarity": 3}, probe="injection"),
        judgement("p3", error=UNPARSEABLE, probe="injection"),  # no probe grade: no pair
        judgement("p4", {"accuracy": 5, "clarity": 5}, probe="injection"),  # no base grade: no pair
        # repeats
        judgement("p1", {"accuracy": 4, "clarity": 1}, repeat=1),
        judgement("p1", {"accuracy": 4, "clarity": 3}, repeat=2),
        judgement("p2", {"accuracy": 5, "clarity": 4}, repeat=1),
        judgement("p3", error=UNPARSEABLE, repeat=1),  # p3 keeps one grade: no repeat to compare
    ])
    (tmp_path / QUALIFICATION).write_text(json.dumps({JUDGE: {"passed": True, "why": None}}))
    return tmp_path


def test_judge_figures_match_hand_computed_values(job):
    ok = [r for r in records.latest_per_key(records.read(job / records.REQUESTS)) if r["status"] == "ok"]
    q = quality_summary(job, ok, JUDGE, None)
    # graded: p1 (4, 2), p2 (5, 4), p3 (1, 3); main judgements p1..p5 = 5; answers 6
    assert (q["n_answers"], q["n_graded"], q["n_judge_errors"]) == (6, 3, 2)
    assert q["graded_fraction"] == pytest.approx(3 / 6)
    # one of the 5 main judgements is unparseable (p4); p5's empty answer and p2's timeout are not
    assert q["parse_failure_rate"] == pytest.approx(1 / 5)
    # accuracy (4 + 5 + 1) / 3 = 10/3; clarity (2 + 4 + 3) / 3 = 3
    assert q["aspects"] == {"accuracy": {"mean": pytest.approx(10 / 3), "n": 3},
                            "clarity": {"mean": pytest.approx(3.0), "n": 3}}
    # per answer: p1 (4+2)/2 = 3.0, p2 (5+4)/2 = 4.5, p3 (1+3)/2 = 2.0 -> mean 9.5/3, median 3.0
    assert q["source"] == JUDGE and q["trusted"] is True and q["overall"] == q["judge_overall"]
    assert q["overall"]["n"] == 3 and q["overall"]["mean"] == pytest.approx(9.5 / 3)
    assert q["overall"]["p50"] == pytest.approx(3.0)
    assert q["distribution"] == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 1}
    # pairs: p1 (5+5)/2 - 3.0 = +2.0, p2 (5+3)/2 - 4.5 = -0.5 -> mean (2.0 - 0.5) / 2 = 0.75, max 2.0
    assert q["injection"] == {"n": 2, "mean_shift": pytest.approx(0.75), "max_shift": pytest.approx(2.0)}
    assert q["errors"] == {UNPARSEABLE: 1, EMPTY_ANSWER: 1}
    # rouge_l.f1 over the answers that have it: (0.2 + 0.4) / 2
    assert q["scorers"] == {"rouge_l.f1": {"mean": pytest.approx(0.3), "n": 2}}


def test_repeat_consistency_hand_computed(job):
    q = quality_summary(job, [], JUDGE, None)
    # (answer, aspect) pairs with more than one grade: p1 accuracy [4, 4, 4], p1 clarity [2, 1, 3],
    # p2 accuracy [5, 5], p2 clarity [4, 4] -> 3 of 4 all equal; ranges 0, 3 - 1 = 2, 0, 0 -> mean 0.5
    assert q["repeat_consistency"] == {"n": 4, "all_equal": pytest.approx(3 / 4), "mean_range": pytest.approx(0.5)}


def test_repeat_consistency_keeps_rounds_apart(tmp_path):
    # the same prompt in two rounds is two answers: round 0 grades [3, 5], round 1 grades [4, 4]
    # -> 1 of 2 pairs all equal; ranges 2 and 0 -> mean 1.0 (pooled by prompt it would be 0 of 1, range 2)
    _write(tmp_path / JUDGEMENTS, [judgement("p1", {"accuracy": 3}), judgement("p1", {"accuracy": 5}, repeat=1),
                                   judgement("p1", {"accuracy": 4}, round_=1),
                                   judgement("p1", {"accuracy": 4}, repeat=1, round_=1)])
    q = quality_summary(tmp_path, [], JUDGE, None)
    assert q["repeat_consistency"] == {"n": 2, "all_equal": pytest.approx(1 / 2), "mean_range": pytest.approx(1.0)}
    # one grade per answer: nothing to compare, no figure (never a 100% by default)
    _write(tmp_path / JUDGEMENTS, [judgement("p1", {"accuracy": 3})])
    assert quality_summary(tmp_path, [], JUDGE, None)["repeat_consistency"] is None
