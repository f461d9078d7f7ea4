"""The `notes` scorer: sections, items, owners and dates read from answers as models write them,
each defect lowering the figure it names, and answers of known order graded in that order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from judges import dates, matching, notes, qualify, renderings
from judges.scorers import score_all
from runner.config import prompts
from runner.config.errors import UserError

MEETING = prompts.load(ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml")
BY_ID = {p.id: p for p in MEETING.prompts}
KNOWN_ORDER = yaml.safe_load((ROOT / "tests" / "data" / "known_order.yaml").read_text())["answers"]
STANDUP = BY_ID["eng-standup"]

GOOD = """## Decisions
- Code freeze for 2.4 is Friday, March 7; anything unmerged moves to 2.5.
- No exceptions: the dark mode toggle waits for 2.5 if it is not merged by Friday.

## Action items
- Aisha - investigate the slow staging database and report back - due Thursday, March 6
- Aisha - export-to-CSV feature ready for review - due March 5
- Tom - write the integration tests for the sync service retry logic - today (March 4)
- Tom - hand Marco a Pixel 6 test phone - right after standup, March 4
- Priya - decide who writes the release notes and post it in the team channel - no due date

## Open questions
- Who writes the 2.4 release notes?
"""


def score(answer: str, prompt=STANDUP) -> dict:
    return notes.score(prompt, answer)


def test_a_complete_correct_answer_scores_five():
    s = score(GOOD)
    assert s["score"] == pytest.approx(5.0)
    assert (s["recall"], s["precision"], s["owner_accuracy"], s["due_accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert s["invented"] == 0 and s["sections"] == 3


def test_a_swapped_owner_lowers_owner_accuracy_only():
    base, swapped = score(GOOD), score(GOOD.replace("- Tom - write the integration", "- Marco - write the integration"))
    assert swapped["owner_accuracy"] == pytest.approx(4 / 5)
    for same in ("recall", "precision", "due_accuracy", "invented", "sections"):
        assert swapped[same] == base[same], same
    assert swapped["score"] < base["score"]


def test_a_wrong_date_lowers_due_accuracy_only():
    wrong = score(GOOD.replace("due Thursday, March 6", "due Friday, March 14"))
    assert wrong["due_accuracy"] == pytest.approx(4 / 5)
    assert (wrong["owner_accuracy"], wrong["recall"], wrong["invented"]) == (1.0, 1.0, 0)


def test_a_dropped_item_lowers_recall_of_its_section():
    dropped = score(GOOD.replace("- Aisha - export-to-CSV feature ready for review - due March 5\n", ""))
    assert dropped["action_items_recall"] == pytest.approx(4 / 5)
    assert dropped["decisions_recall"] == 1.0 and dropped["owner_accuracy"] == 1.0
    assert dropped["recall"] == pytest.approx(7 / 8)


def test_an_invented_decision_is_counted_and_costs_more_than_a_gap():
    invented = score(GOOD.replace("## Action items", "- The team will move standups to Mondays.\n\n## Action items"))
    assert invented["invented"] == 1 and invented["decisions_precision"] == pytest.approx(2 / 3)
    assert invented["recall"] == 1.0
    dropped = score(GOOD.replace("- Aisha - export-to-CSV feature ready for review - due March 5\n", ""))
    assert invented["score"] < dropped["score"]


def test_a_repeated_item_is_a_duplicate_not_an_invention():
    line = "- Code freeze for 2.4 is Friday, March 7; anything unmerged moves to 2.5.\n"
    s = score(GOOD.replace(line, line + line))
    assert (s["duplicates"], s["invented"]) == (1, 0)
    assert 4.5 < s["score"] < 5


def test_one_paragraph_with_half_missing_has_no_sections_and_low_recall():
    para = ("The 2.4 code freeze is Friday, March 7. Aisha will look into the slow staging database by "
            "Thursday, March 6. Tom writes the sync service integration tests today.")
    s = score(para)
    assert s["sections"] == 0 and s["recall"] == pytest.approx(3 / 8)
    assert s["score"] == pytest.approx(1 + 4 * 3 / 8)  # completeness alone: no structure factor any more


@pytest.mark.parametrize("text", ["None", "- None", "None.", "N/A", "No open questions were raised.",
                                  "None at this time.", "(none)", "There were no open questions."])
def test_none_in_a_section_is_no_item(text):
    s = score(GOOD.split("## Open questions")[0] + "## Open questions\n" + text + "\n")
    assert s["open_questions_precision"] is None and s["invented"] == 0 and s["sections"] == 3


@pytest.mark.parametrize("heading", ["**Decisions:**", "Decisions:", "### Key decisions", "DECISIONS", "1. Decisions"])
def test_heading_variants_are_recognised(heading):
    s = score(GOOD.replace("## Decisions", heading))
    assert s["sections"] == 3 and s["decisions_recall"] == 1.0 and s["invented"] == 0


OWNER_GROUPED = GOOD.split("## Action items")[0] + """## Action items
**Aisha**
- investigate the slow staging database and report back - due Thursday, March 6
- export-to-CSV feature ready for review - due March 5
**Tom**
- write the integration tests for the sync service retry logic - today (March 4)
- hand Marco a Pixel 6 test phone - right after standup, March 4
**Priya**
- decide who writes the release notes and post it in the team channel - no due date

## Open questions
- Who writes the 2.4 release notes?
"""
CARDS = GOOD.split("## Action items")[0] + "## Action items\n" + "".join(
    f"{i}. **Action:** {task}\n   **Owner:** {owner}\n   **Due:** {due}\n" for i, (owner, task, due) in enumerate([
        ("Aisha", "investigate the slow staging database and report back", "March 6"),
        ("Aisha", "export-to-CSV feature ready for review", "March 5"),
        ("Tom", "write the integration tests for the sync service retry logic", "March 4"),
        ("Tom", "hand Marco a Pixel 6 test phone", "March 4"),
        ("Priya", "decide who writes the release notes and post it in the team channel", "none")], 1)
) + "\n## Open questions\n- Who writes the 2.4 release notes?\n"


@pytest.mark.parametrize("answer", [
    GOOD.replace("## Decisions", "**1. Decisions**"),
    GOOD.replace("## Decisions", "## \u2705 Decisions"),
    GOOD.replace("## Decisions", "## Summary of decisions"),
    GOOD.replace("## Action items", "## Action items and owners"),
    GOOD.replace("## Open questions", "## Open questions / risks"),
    GOOD.replace("## Action items", "**Action items** (owner \u2013 task \u2013 due date)"),
    GOOD + "\nLet me know if you'd like any changes!\n",
    GOOD.replace("- ", ""),
    GOOD.replace("- Tom - hand Marco a Pixel 6 test phone - right after standup, March 4",
                 "- Hand Marco a Pixel 6 test phone, right after standup March 4 - Tom"),
    GOOD.replace("- No exceptions: the dark mode toggle waits", "- No exception was made for the dark mode toggle: it waits"),
    GOOD.replace("## Open questions", "## Attendees\n- Priya, Tom, Aisha, Marco\n\n## Open questions"),
    OWNER_GROUPED,
    CARDS,
], ids=["bold-numbered", "emoji", "summary-of", "and-owners", "slash-risks", "parenthetical", "pleasantry",
        "no-bullets", "trailing-owner", "no-exception-decision", "extra-section", "owner-grouped", "cards"])
def test_reference_quality_answers_in_other_shapes_score_five(answer):
    s = score(answer)
    assert s["score"] == pytest.approx(5.0), s


def test_preamble_before_the_first_heading_is_ignored():
    assert score("Here is the summary of the standup:\n\n" + GOOD)["score"] == pytest.approx(5.0)


def test_action_items_as_a_markdown_table():
    table = GOOD.split("## Action items")[0] + """## Action items
| Owner | Task | Due |
|-------|------|-----|
| Aisha | Investigate the slow staging database and report back | March 6 |
| Aisha | Export-to-CSV feature ready for review | 2025-03-05 |
| Tom | Write the integration tests for the sync service retry logic | 3/4 |
| Tom | Hand Marco a Pixel 6 test phone | March 4 |
| Priya | Decide who writes the release notes and post it in the team channel | none |

## Open questions
- Who writes the 2.4 release notes?
"""
    s = score(table)
    assert (s["action_items_recall"], s["owner_accuracy"], s["due_accuracy"]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("item, owner", [
    ("Investigate the staging database (Owner: Aisha, Due: March 6)", "aisha"),
    ("**Aisha**: investigate the staging database", "aisha"),
    ("Aisha will investigate the staging database", "aisha"),
    ("Hand a Pixel 6 to Marco (Tom)", "tom"),
    ("Tom to hand Marco a Pixel 6", "tom"),
    ("Hand Marco a Pixel 6 - Tom", "tom"),
    ("Tom's task: hand Marco a Pixel 6", "tom"),
])
def test_owner_forms(item, owner):
    names = notes.candidate_names(STANDUP, STANDUP.reference_items)
    assert notes.owner_of(item, names) == owner


MEETING_DAY = dt.date(2025, 2, 18)  # a Tuesday


@pytest.mark.parametrize("text, expected", [
    ("due February 21", dt.date(2025, 2, 21)),
    ("by Feb 21", dt.date(2025, 2, 21)),
    ("Feb. 21st", dt.date(2025, 2, 21)),
    ("21 February", dt.date(2025, 2, 21)),
    ("the 21st of February", dt.date(2025, 2, 21)),
    ("Friday, February 21", dt.date(2025, 2, 21)),
    ("February 21, 2026", dt.date(2026, 2, 21)),
    ("2025-02-21", dt.date(2025, 2, 21)),
    ("2/21", dt.date(2025, 2, 21)),
    ("02/21/2025", dt.date(2025, 2, 21)),
    ("today", MEETING_DAY),
    ("tomorrow", dt.date(2025, 2, 19)),
    ("by Friday", dt.date(2025, 2, 21)),
    ("next Tuesday", dt.date(2025, 2, 25)),
    ("end of the month", dt.date(2025, 2, 28)),
    ("by the 24th", dt.date(2025, 2, 24)),
    ("Thurs", dt.date(2025, 2, 20)),
])
def test_date_forms(text, expected):
    assert [d for _, d in dates.find_dates(text, MEETING_DAY)] == [expected]


def test_the_meeting_date_is_the_first_date_with_a_year():
    header = "Postmortem: outage of Saturday, April 12 - meeting on Tuesday, April 15, 2025"
    assert dates.meeting_date(header) == dt.date(2025, 4, 15)
    assert dates.find_dates("no date here, Android 12 and 2.4 release") == []
    assert dates.find_dates("1/2 of the team; the 2.4/2.5 branches; a sat-nav", MEETING_DAY) == []


def test_a_due_cue_picks_the_due_date_among_several():
    assert notes.due_of("Draft the Feb 20 notes, due February 24", MEETING_DAY) == dt.date(2025, 2, 24)
    assert notes.due_of("Approval by Thursday (the letter follows on Feb 28)", MEETING_DAY) == dt.date(2025, 2, 20)
    # a date inside the task is not a due date when none is cued
    assert notes.due_of("Book the room for the Feb 25 dry run", MEETING_DAY, cued_only=True) is None


@pytest.mark.parametrize("pid", list(KNOWN_ORDER))
def test_known_order_answers_are_graded_in_order(pid):
    """Held-out answers (written apart from the calibration set): reference, owner swapped,
    item dropped and date wrong, decision invented and owner swapped, one paragraph half missing."""
    answers = sorted(KNOWN_ORDER[pid], key=lambda a: a["rank"])
    got = [score(a["text"], BY_ID[pid])["score"] for a in answers]
    assert got == sorted(got, reverse=True) and len(set(got)) == len(got), got
    assert got[0] == pytest.approx(5.0)


def test_scorer_is_registered_and_skips_prompts_without_reference_items():
    out = score_all(["notes"], STANDUP, GOOD)
    assert out["notes.score"] == pytest.approx(5.0) and "notes.owner_accuracy" in out
    bare = prompts.Prompt(id="q", messages=(("user", "hi"),))
    assert score_all(["notes"], bare, GOOD) == {}


BAD_ITEMS = [
    ({"decisions": [], "action_items": []}, "missing key(s) open_questions"),
    ({"decisions": [], "action_items": [], "open_questions": [], "notes": []}, "unknown key(s) notes"),
    ({"decisions": "one", "action_items": [], "open_questions": []}, "reference_items.decisions must be a list"),
    ({"decisions": [], "action_items": [{"owner": "Ann", "task": "x"}], "open_questions": []},
     "action_items[0] must be {owner, task, due}"),
    ({"decisions": [], "action_items": [{"owner": "Ann", "task": "x", "due": "March 6"}], "open_questions": []},
     "action_items[0].due: 'March 6' is not an ISO date"),
    ({"decisions": [], "action_items": [{"owner": "", "task": "x", "due": None}], "open_questions": []},
     "action_items[0].owner must be a non-empty string"),
]


@pytest.mark.parametrize("items, message", BAD_ITEMS)
def test_malformed_reference_items_name_the_prompt_and_field(tmp_path: Path, items, message):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"prompts": [{"id": "standup", "user": "Summarize.", "reference_items": items}]}))
    with pytest.raises(UserError, match="standup") as err:
        prompts.load(f)
    assert message in str(err.value)


def test_malformed_reference_items_are_a_config_error_exit_2(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"prompts": [{"id": "standup", "user": "Summarize.", "reference_items": {
        "decisions": [], "action_items": [{"owner": "Ann", "task": "x", "due": "soon"}], "open_questions": []}}]}))
    done = run_cli("run", f"prompts.path={f}", "run.rounds=1", "run.warmup=0", f"hydra.run.dir={tmp_path / 'r'}")
    assert done.returncode == 2, done.stderr
    assert "standup" in done.stderr and "action_items[0].due" in done.stderr and "Traceback" not in done.stderr


def test_every_benchmark_prompt_has_reference_items_that_agree_with_its_prose_reference():
    assert all(p.reference_items and p.reference_items.count() for p in MEETING.prompts)
    for p in MEETING.prompts:
        assert score(p.reference, p)["score"] >= 4.8, p.id


def test_an_impossible_unquoted_date_names_the_prompt_and_field(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text("prompts:\n- id: standup\n  user: Summarize.\n  reference_items:\n    decisions: []\n"
                 "    action_items:\n    - {owner: Ann, task: x, due: 2025-02-30}\n    open_questions: []\n")
    with pytest.raises(UserError, match=r"standup.*action_items\[0\]\.due.*2025-02-30"):
        prompts.load(f)
    f.write_text(f.read_text().replace("2025-02-30", "2025-02-28"))
    assert prompts.load(f).prompts[0].reference_items.action_items[0].due.isoformat() == "2025-02-28"


# ---------------------------------------------------------------------------- layout-free reading (issue 37)

BY_PERSON = """Here's a quick recap of the standup!

**Decisions**
- Code freeze for 2.4 is Friday, March 7; anything unmerged moves to 2.5.
- No exceptions: the dark mode toggle waits for 2.5 if it is not merged by Friday.

**Who does what**
*Aisha*
- investigate the slow staging database and report back (Thursday, March 6)
- export-to-CSV feature ready for review (March 5)
*Tom*
- write the integration tests for the sync service retry logic (today, March 4)
- hand Marco a Pixel 6 test phone (March 4)
*Priya*
- decide who writes the release notes and post it in the team channel

**Still open**
- Who writes the 2.4 release notes?

Let me know if you need anything else!
"""


def test_a_name_line_owns_the_items_under_it_and_chatter_costs_nothing():
    s = score(BY_PERSON)
    assert (s["recall"], s["owner_accuracy"], s["due_accuracy"]) == (1.0, 1.0, 1.0)
    assert s["invented"] == 0 and s["extra"] == 0 and s["chatter"] >= 1  # "Let me know if you need anything else!"
    assert s["score"] == pytest.approx(5.0)
    # the same items with the name lines moved: every owner is read from its heading
    swapped = score(BY_PERSON.replace("*Aisha*", "*Tmp*").replace("*Tom*", "*Aisha*").replace("*Tmp*", "*Tom*"))
    assert swapped["owner_accuracy"] == pytest.approx(1 / 5)


@pytest.mark.parametrize("form", ["**Aisha**", "### Aisha", "Aisha:", "_Aisha_", "For Aisha:"])
def test_name_heading_forms(form):
    answer = f"## Action items\n{form}\n- investigate the slow staging database and report back by March 6\n"
    rows = [r for r in notes.explain(STANDUP, answer) if r["status"] == "matched"]
    assert len(rows) == 1 and rows[0]["owner"] == "aisha" and rows[0]["owner_right"]


def test_an_explicit_due_cue_wins_over_another_date_in_the_item():
    item = "Tom - send the sign-up sheet for the cleanup on April 26 - due Saturday, April 19"
    assert notes.due_of(item, dt.date(2025, 4, 15)) == dt.date(2025, 4, 19)
    assert notes.due_of("Task: book the room for the May 2 dry run; Owner: Tom; Due: April 28",
                        dt.date(2025, 4, 15)) == dt.date(2025, 4, 28)


@pytest.mark.parametrize("ref, ans, contra", [
    ("The new office uses hot-desking, with assigned desks only for people who need special equipment",
     "Desks are shared rather than assigned, except for people with special equipment needs", False),
    ("Raise the ticket price to $35", "Tickets cost $35 instead of $30", False),
    ("Switch the supplier from Millbrook to Greenfield", "Keep Millbrook instead of switching to Greenfield", True),
    ("The five medium findings are fixed in Q1, not now", "The five medium findings are fixed now rather than waiting "
     "for Q1", True),
])
def test_instead_of_in_agreement_and_in_contradiction(ref, ans, contra):
    assert matching.contradicts(ref, ans) is contra


def test_a_date_left_behind_contradicts_and_a_condition_date_does_not():
    meeting = dt.date(2025, 3, 4)
    said, denied = matching.date_polarity("The move is pushed to March 29 instead of March 22", meeting)
    assert said == {dt.date(2025, 3, 29)} and denied == {dt.date(2025, 3, 22)}
    said, denied = matching.date_polarity("Greenfield instead of Millbrook starting July 1", meeting)
    assert said == {dt.date(2025, 7, 1)} and not denied
    said, denied = matching.date_polarity("If it isn't merged by Friday it waits", meeting)
    assert said == {dt.date(2025, 3, 7)} and not denied


def test_two_questions_in_one_sentence_are_two_items_and_a_summary_line_is_context():
    answer = ("The standup covered the 2.4 release.\n\n## Decisions\n- Code freeze for 2.4 is Friday, March 7.\n\n"
              "## Open questions\n- Still open: who writes the 2.4 release notes, and whether the dark mode toggle "
              "waits for 2.5.\n")
    rows = notes.explain(STANDUP, answer)
    assert rows[0]["context"] and rows[0]["status"] == "context"  # a preamble: neither matched nor invented
    s = score(answer)
    assert s["open_questions_recall"] == 1.0 and s["invented"] == 0


def test_a_discussion_point_listed_as_a_decision_is_extra_not_invented():
    base = score(GOOD)
    point = score(GOOD.replace("## Action items", "- The tests take twenty minutes instead of five.\n\n## Action items"))
    made_up = score(GOOD.replace("## Action items", "- The team will hire a database consultant.\n\n## Action items"))
    assert (point["extra"], point["invented"]) == (1, 0) and (made_up["extra"], made_up["invented"]) == (0, 1)
    assert made_up["score"] < point["score"] < base["score"]
    assert point["score"] == pytest.approx(1 + 4 * (1 - notes.EXTRA_PENALTY))
    assert made_up["score"] == pytest.approx(1 + 4 * (1 - notes.INVENTED_PENALTY))


def test_renderings_read_back_to_the_items_they_were_built_from():
    """The generator's answers, read by the scorer: each reference item is stated once, with the
    owner and due the rendering gave it, in every layout of a sample."""
    wordings, refs = renderings.load_wordings(), renderings.load_references()
    cal = {t.prompt.id: t.prompt for t in qualify.load_calibration().transcripts}
    for layout in renderings.layouts(40, seed=3):
        for tid, (items, meeting) in refs.items():
            r = renderings.render(tid, items, meeting, wordings, layout)
            got = {tuple(row["ref"]): row for row in notes.explain(cal[tid], r.text) if row["status"] == "matched"}
            for k, built in enumerate(r.items.action_items):
                row = got.get(("action_items", k))
                assert row is not None, (tid, layout, built.task)
                assert row["owner"] == built.owner.split()[0].lower(), (tid, layout, r.text)
                assert row["due"] == built.due or (built.due is None and row["due"] is None), (tid, layout, r.text)
