"""The checklist judge: questions built from reference_items, strict parsing of the verdicts,
retries then a recorded error (never a default), and the verdict -> 1-5 mapping."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import run_cli
from test_judges import Replies

from judges.checklist import ASPECTS, ChecklistJudge, aspect_scores, parse, questions, schema
from judges.rubric import JudgeParseError
from runner.config.prompts import ActionItem, Prompt, ReferenceItems

REFS = ReferenceItems(
    decisions=("Code freeze is Friday, March 7.", "The dark mode toggle gets no exception."),
    action_items=(ActionItem("Aisha", "investigate the staging database", dt.date(2025, 3, 6)),
                  ActionItem("Priya", "find a release-notes writer", None)),
    open_questions=("Who writes the release notes?",))
PROMPT = Prompt(id="standup", messages=(("user", "Summarize."),), aspects={"decisions": "d"}, reference_items=REFS)


def test_questions_come_from_the_reference_items_with_expected_verdicts():
    qs = questions(REFS)
    assert [q.id for q in qs] == [f"q{i}" for i in range(1, 8)]
    assert [q.aspect for q in qs] == ["decisions", "decisions", "action_items", "action_items", "open_questions",
                                      "faithfulness", "faithfulness"]
    assert [q.expected for q in qs] == ["yes"] * 5 + ["no", "no"]
    assert qs[2].text == "Does the summary say that Aisha will investigate the staging database by Thursday, March 6?"
    assert "by" not in qs[3].text.split("find")[1]  # no due date given: none asked for
    assert "Code freeze is Friday, March 7." in qs[5].text and "not in this list" in qs[5].text


def reply(verdicts: list[str], reasoning: bool = True) -> str:
    return json.dumps({f"q{i}": ({"reasoning": "r", "verdict": v} if reasoning else v)
                       for i, v in enumerate(verdicts, 1)})


def test_parse_and_map_verdicts_to_scores():
    qs = questions(REFS)
    empty_reasons = json.dumps({f"q{i}": {"reasoning": "", "verdict": "yes"} for i in range(1, 8)})
    assert set(parse(empty_reasons, qs)[0].values()) == {"yes"}  # an empty reason is still a reason
    verdicts, reasons = parse(reply(["yes", "no", "YES", "yes", "no", "no", "yes"]), qs)
    assert verdicts["q3"] == "yes" and reasons["q1"] == "r"
    # decisions 1 of 2 right -> 3; action items 2 of 2 -> 5; question 0 of 1 -> 1; faithfulness 1 of 2 -> 3
    assert aspect_scores(qs, verdicts) == {"decisions": 3.0, "action_items": 5.0, "open_questions": 1.0,
                                           "faithfulness": 3.0}


@pytest.mark.parametrize("text, why", [
    ('{"q1": {"reasoning": "r", "verdict": "yes"}}', "missing"),
    (reply(["yes"] * 8), "unexpected"),
    (reply(["maybe"] + ["yes"] * 6), "not yes or no"),
    ('{"q1": "yes"}', "missing"),
    ("yes, all of them", "not JSON"),
])
def test_parse_is_strict(text, why):
    with pytest.raises(JudgeParseError, match=why):
        parse(text, questions(REFS))


def test_verdict_only_replies_without_reasoning():
    qs = questions(REFS)
    verdicts, _ = parse(reply(["yes"] * 5 + ["no", "no"], reasoning=False), qs, reasoning=False)
    assert aspect_scores(qs, verdicts) == {a: 5.0 for a in ASPECTS}
    assert schema(qs, reasoning=False)["properties"]["q1"] == {"type": "string", "enum": ["yes", "no"]}
    assert schema(qs)["properties"]["q1"]["required"] == ["reasoning", "verdict"]  # reasoning first


def test_missing_ids_are_retried_then_recorded_as_an_error_never_defaulted():
    bad = '{"q1": {"reasoning": "r", "verdict": "yes"}}'
    backend = Replies(bad, bad, bad)
    g = ChecklistJudge(backend, "j", retries=2).grade(PROMPT, "summary")
    assert g.scores == {} and g.error.startswith("unparseable after 3 attempts") and "missing" in g.error
    assert len(backend.calls) == 3
    good = Replies(bad, reply(["yes"] * 5 + ["no", "no"]))
    g = ChecklistJudge(good, "j", retries=2).grade(PROMPT, "summary")
    assert g.error is None and g.attempts == 2 and g.scores["faithfulness"] == 5.0
    assert "q6 no (expected no)" in g.rationales["faithfulness"]


def test_a_prompt_without_reference_items_gets_an_error_not_a_score():
    bare = Prompt(id="bare", messages=(("user", "x"),))
    g = ChecklistJudge(Replies(), "j").grade(bare, "summary")
    assert g.scores == {} and "no reference_items" in g.error


def test_checklist_mode_on_prompts_without_reference_items_is_a_config_error(tmp_path):
    done = run_cli("run", "prompts=rag-basics", "judge=smollm2-135m-int4", "judge.mode=checklist",
                   "run.rounds=1", "run.warmup=0", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2 and "reference_items" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_judge_mode_is_a_config_error(tmp_path):
    done = run_cli("run", "judge=smollm2-135m-int4", "judge.mode=vibes", "run.rounds=1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2 and "judge.mode" in done.stderr and "checklist, rubric" in done.stderr


def test_judge_modes_come_from_the_registry_and_a_new_mode_is_graded_by_its_own_judge():
    from dataclasses import replace

    from judges import grading, modes
    from judges.rubric import Grade, RubricJudge
    from runner.config.plan import freeze
    from runner.config.schema import JudgeConfig

    cfg = freeze(JudgeConfig(model="j", mode="checklist"))
    assert isinstance(grading.make_judge(cfg, Replies()), ChecklistJudge)
    assert cfg.grader == "j/checklist" and "reasoning" in grading.judge_identity(cfg, "j")
    cfg = replace(cfg, mode="rubric")
    assert isinstance(grading.make_judge(cfg, Replies()), RubricJudge)
    assert cfg.grader == "j" and "reasoning" not in grading.judge_identity(cfg, "j")

    class Constant:
        def grade(self, prompt, answer):
            return Grade({"decisions": 3}, {"decisions": "always 3"}, None, 1)

    modes.register(modes.Mode("constant", build=lambda c, b, t, s: Constant(), modules=(modes,)))
    try:
        cfg = replace(cfg, mode="constant")
        assert cfg.grader == "j/constant"
        assert grading.make_judge(cfg, Replies()).grade(PROMPT, "x").scores == {"decisions": 3}
        with pytest.raises(ValueError, match="twice"):
            modes.register(modes.Mode("constant", build=lambda c, b, t, s: Constant(), modules=()))
    finally:
        del modes.MODES["constant"]
