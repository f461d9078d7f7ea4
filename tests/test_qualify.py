"""Grader qualification: the figures on fixed inputs, checked against values worked by hand;
the shipped calibration set; the cache; `slmbench judge qualify` on scorers and bad input."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from judges import qualify
from judges.qualify import KINDS, Graded, figures, spearman, verdict
from runner.config.errors import UserError

RANKS = {k: i for i, k in enumerate(KINDS, 1)} | {"injected": 4}


def grades(*per_transcript: list[float]) -> dict:
    """Transcripts' grades in KINDS order, then the injected answer's grade."""
    return {f"t{i}": {k: Graded(v) for k, v in zip([*KINDS, "injected"], g, strict=True)}
            for i, g in enumerate(per_transcript)}


def test_spearman_against_hand_worked_values():
    assert spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # x ranks 1..5, y = [1,2,3,5,4]: d^2 = 0+0+0+1+1 = 2; rho = 1 - 6*2/(5*24) = 0.9
    assert spearman([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.9)
    # ties: y = [1,1,2,3,4] -> average ranks [1.5,1.5,3,4,5]; Pearson with [1..5] = 0.9746794
    assert spearman([1, 2, 3, 4, 5], [1, 1, 2, 3, 4]) == pytest.approx(0.9746794, abs=1e-6)
    assert spearman([1, 2, 3], [3, 3, 3]) is None  # constant grades order nothing


def test_figures_of_a_perfect_and_robust_grader():
    f = figures(grades([5, 4, 3, 2, 1, 2], [5, 4.5, 4, 3, 2, 2.5]), {"t0": RANKS, "t1": RANKS}, seconds=1.2)
    assert f["spearman"]["pooled"] == pytest.approx(spearman([-r for r in [1, 2, 3, 4, 5] * 2],
                                                             [5, 4, 3, 2, 1, 5, 4.5, 4, 3, 2]))
    assert f["spearman"]["per_transcript"] == {"t0": pytest.approx(1.0), "t1": pytest.approx(1.0)}
    assert f["adjacent_accuracy"] == 1.0
    assert f["agreeableness"] == 0.0
    assert f["injection_lift"] == pytest.approx(((2 - 2) + (2.5 - 3)) / 2)  # -0.25
    assert f["parse_failure_rate"] == 0.0 and f["seconds_per_grade"] == pytest.approx(1.2 / 12)


def test_figures_of_an_agreeable_injectable_grader():
    """Everything 4 or 5, top marks when told: agreeable, lifted, ties order nothing."""
    f = figures(grades([5, 5, 4, 4, 4, 5], [5, 4, 4, 4, 4, 5]), {"t0": RANKS, "t1": RANKS}, seconds=1.0)
    assert f["agreeableness"] == 1.0  # ranks 4 and 5 all graded >= 4
    assert f["injection_lift"] == pytest.approx(1.0)
    # t0 pairs: 5>5 no, 5>4 yes, 4>4 no, 4>4 no; t1: 5>4 yes, then three ties
    assert f["adjacent_accuracy"] == pytest.approx(2 / 8)
    v = verdict(f, 0.6, 0.25)
    assert not v["passed"] and "injection lift +1.00 > +0.25" in v["why"]


def test_parse_failures_count_and_drop_out_of_the_correlation():
    g = grades([5, 4, 3, 2, 1, 1], [5, 4, 3, 2, 1, 1])
    g["t1"]["reference"] = Graded(None, "unparseable after 3 attempts: not JSON")
    g["t1"]["owner_swapped"] = Graded(None, "judge backend: connection refused")
    f = figures(g, {"t0": RANKS, "t1": RANKS}, seconds=1.0)
    assert f["parse_failure_rate"] == pytest.approx(1 / 12) and f["n_errors"] == 2
    assert f["spearman"]["per_transcript"]["t1"] == pytest.approx(1.0)  # over the remaining graded answers
    assert verdict(f, 0.6, 0.25)["passed"]  # 2 of 12 failed: within the 20% allowed
    for kind in ("dropped_and_wrong_date", "invented_and_owner_swapped"):
        g["t1"][kind] = Graded(None, "unparseable after 3 attempts: not JSON")
    f = figures(g, {"t0": RANKS, "t1": RANKS}, seconds=1.0)
    v = verdict(f, 0.6, 0.25)
    assert f["spearman"]["pooled"] > 0.9 and not v["passed"] and "4 of 12 grades failed" in v["why"]


def test_the_bootstrap_ci_resamples_transcripts_and_is_reproducible():
    g = grades([5, 4, 3, 2, 1, 1], [1, 2, 3, 4, 5, 5], [5, 4, 3, 2, 1, 1])
    a = figures(g, {t: RANKS for t in g}, seconds=1.0)
    b = figures(g, {t: RANKS for t in g}, seconds=1.0)
    lo, hi = a["spearman"]["ci95"]
    assert a["spearman"]["ci95"] == b["spearman"]["ci95"]
    assert lo <= a["spearman"]["pooled"] <= hi and lo < 0 < hi  # one transcript reversed: the CI spans 0
    assert figures(grades([5, 4, 3, 2, 1, 1]), {"t0": RANKS}, 1.0)["spearman"]["ci95"] is None


def test_verdict_thresholds():
    f = {"spearman": {"pooled": 0.59}, "injection_lift": 0.0}
    assert not verdict(f, 0.6, 0.25)["passed"] and "0.59 < 0.6" in verdict(f, 0.6, 0.25)["why"]
    assert verdict(f, 0.5, 0.25) == {"passed": True, "why": None, "thresholds": {
        "min_spearman": 0.5, "max_injection_lift": 0.25, "max_error_rate": 0.2, "max_reworded_gap": 0.5,
        "reworded_above_one_defect": True, "words_not_facts": True, "min_invariance": 0.98, "min_directional": 0.99,
        "min_item_agreement": 0.9, "min_real_spearman": 0.8}}
    assert not verdict({"spearman": {"pooled": None}, "injection_lift": 0.0}, 0.6, 0.25)["passed"]


def test_the_shipped_calibration_set():
    cal = qualify.load_calibration()
    assert len(cal.transcripts) >= 5
    benchmark = yaml.safe_load((ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml").read_text())
    assert not {t.prompt.id for t in cal.transcripts} & {p["id"] for p in benchmark["prompts"]}
    for t in cal.transcripts:
        kinds = {a.kind: a for a in t.answers}
        assert kinds["injected"].text.startswith(kinds["invented_and_owner_swapped"].text)
        assert t.prompt.reference_items.count() >= 6


def test_notes_qualifies_and_the_result_is_cached(tmp_path: Path, unqualified_home: Path, monkeypatch):
    monkeypatch.setenv("SLMBENCH_HOME", str(unqualified_home))
    calls = []
    grader = qualify.scorer_grader("notes")
    inner = grader.grade
    grader.grade = lambda p, a: calls.append(1) or inner(p, a)
    cal = qualify.load_calibration()
    first = qualify.qualify(grader, cal)
    # the calibration answers, then the behavioural renderings and the hand-labelled real answers
    n = sum(len(t.answers) for t in cal.transcripts) + first["behaviour"]["renderings"] + first["behaviour"][
        "defective"] + first["real_answers"]["n"]
    assert first["passed"] and not first["cached"] and len(calls) == n
    assert first["spearman"]["pooled"] >= 0.8 and first["adjacent_accuracy"] >= 0.75
    assert first["injection_lift"] <= 0
    again = qualify.qualify(grader, cal, min_spearman=0.999)
    assert again["cached"] and len(calls) == n  # no grading the second time
    assert not again["passed"]  # thresholds apply at read time
    # the cache key is the grader's identity and the calibration set's digest: change either, grade again
    edited = tmp_path / "cal.yaml"
    edited.write_text(Path(cal.path).read_text().replace("description: ", "description:  ", 1))  # the set, not a transcript
    other = qualify.load_calibration(edited)
    assert other.digest != cal.digest and qualify.cache_path(grader, other) != qualify.cache_path(grader, cal)
    # the behavioural and real-answer figures read the transcripts, which the edit left alone: reused
    assert not qualify.qualify(grader, other)["cached"] and len(calls) == n + sum(len(t.answers) for t in cal.transcripts)
    judge, changed = qualify.Grader("j", {"code": "a"}, grader.grade), qualify.Grader("j", {"code": "b"}, grader.grade)
    assert qualify.cache_path(judge, cal) != qualify.cache_path(changed, cal)


def test_graders_side_by_side_measure_once_and_the_other_reads_the_cache(unqualified_home: Path, monkeypatch):
    """Two jobs at once (a parallel launcher's) needing the same grader: the second waits for the
    first's figures instead of grading the calibration set again."""
    monkeypatch.setenv("SLMBENCH_HOME", str(unqualified_home))
    cal = qualify.load_calibration()
    grading, calls = threading.Event(), []

    def grade(prompt, answer: str) -> Graded:
        calls.append(1)
        grading.set()
        time.sleep(0.002)
        return Graded(1 + len(answer) % 5)

    grader = qualify.Grader("side-by-side", {"code": "slow"}, grade)
    first: list[dict] = []
    job = threading.Thread(target=lambda: first.append(qualify.qualify(grader, cal)))
    job.start()
    assert grading.wait(30)  # the first is measuring: the second starts now
    second = qualify.qualify(grader, cal)
    job.join(60)
    assert len(calls) == sum(len(t.answers) for t in cal.transcripts)
    assert not first[0]["cached"] and second["cached"] and second["spearman"] == first[0]["spearman"]


def test_a_grader_that_reverses_the_order_fails(unqualified_home: Path, monkeypatch):
    monkeypatch.setenv("SLMBENCH_HOME", str(unqualified_home))
    notes_grader = qualify.scorer_grader("notes")
    flipped = qualify.Grader("flipped", {"x": 1}, lambda p, a: Graded(6 - notes_grader.grade(p, a).overall))
    q = qualify.qualify(flipped, qualify.load_calibration())
    assert not q["passed"] and q["spearman"]["pooled"] < 0 and q["injection_lift"] > 0
    assert not q["reworded_above_one_defect"]["all"] and not q["words_not_facts"]["all"]  # reversed on these too


def test_malformed_calibration_sets(tmp_path: Path):
    cal = yaml.safe_load(qualify.CALIBRATION.read_text())
    cal["transcripts"][0]["answers"] = cal["transcripts"][0]["answers"][:5]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(cal))
    with pytest.raises(UserError, match="answers must be one each"):
        qualify.load_calibration(f)
    with pytest.raises(UserError, match="not found|No such file"):
        qualify.load_calibration(tmp_path / "missing.yaml")


def test_cli_qualifies_scorers(fresh_home: Path):
    env = {"SLMBENCH_HOME": str(fresh_home)}
    done = run_cli("judge", "qualify", "notes", env=env)
    assert done.returncode == 0, done.stderr
    for figure in ("grader notes (semantic matching)", "Spearman, pooled", "adjacent-pair accuracy", "agreeableness",
                   "injection lift", "parse-failure rate", "reworded gap, pooled", "words not facts",
                   "seconds per grade", "QUALIFIED"):
        assert figure in done.stdout
    js = run_cli("judge", "qualify", "rouge_l", "--json", "--min-spearman", "0.99", env=env)
    assert js.returncode == 1  # not qualified under a stricter bar
    assert json.loads(js.stdout)["passed"] is False


@pytest.mark.parametrize("args, message", [
    (["judge", "qualify", "no-such-grader"], "neither a judge"),
    (["judge", "qualify", "length"], "no quality figure"),
    (["judge", "qualify", "notes", "--calibration", "/nonexistent.yaml"], "calibration set"),
    (["judge", "qualify", "openai", "--base-url", "http://127.0.0.1:9/v1"], "unreachable"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args, message):
    done = run_cli(*args, env={"SLMBENCH_HOME": str(tmp_path)})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_bad_calibration_set_fails_the_run_before_anything_is_measured(tmp_path: Path):
    done = run_cli("run", "judge=none", "prompts=smoke", "judge.qualification.calibration=/nonexistent.yaml",
                   f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2 and "calibration set /nonexistent.yaml" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "requests.jsonl").exists()
