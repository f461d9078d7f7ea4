"""judges/renderings.py: the generator of answers in many layouts, with one known defect or none,
for behavioural tests of the meeting-notes grader. Fast: no model, no network."""

from __future__ import annotations

import ast
import collections
import datetime as dt
import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest

from judges import renderings as R
from judges.dates import find_dates
from runner.config.prompts import ActionItem, ReferenceItems

REFS = R.load_references()
WORDINGS = R.load_wordings()
TIDS = ("office-move", "app-release-go-no-go", "help-center-review", "security-audit-followup", "fundraising-dinner")
LAYOUTS = R.layouts(600)
SAMPLE = R.layouts(40, seed=3)
# a date the parser might not read (a month alone, "September launch", names no due date)
DAY_WORD = re.compile(r"\b(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|today|tonight|tomorrow)\b", re.I)


def norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def render(tid, layout, defect=None, seed=0):
    refs, meeting = REFS[tid]
    return R.render(tid, refs, meeting, WORDINGS, layout, defect, seed)


def has(text: str, phrase: str) -> bool:
    """`phrase` in `text`, its first letter in either case (a task opens a line capitalised)."""
    return phrase in text or (phrase[:1].upper() + phrase[1:]) in text


# ---------------------------------------------------------------------------------------------- wordings

def test_the_five_calibration_transcripts_all_have_wordings():
    assert set(REFS) == set(TIDS) == set(WORDINGS)


@pytest.mark.parametrize("tid", TIDS)
def test_wordings_match_the_reference_items_and_say_them_in_other_words(tid):
    refs, meeting = REFS[tid]
    w = WORDINGS[tid]
    pairs = [("decisions", refs.decisions), ("action_items", [a.task for a in refs.action_items]),
             ("open_questions", refs.open_questions)]
    for key, ref in pairs:
        assert len(w[key]) == len(ref), (key, len(w[key]), len(ref))
        for options, reference in zip(w[key], ref, strict=True):
            assert len(options) >= 2 and len({norm(o) for o in options}) == len(options), options
            assert all(norm(o) != norm(reference) for o in options), (reference, options)
            # not the reference's words reordered
            assert all(sorted(norm(o).split()) != sorted(norm(reference).split()) for o in options)
    assert len(w["negated_decisions"]) == len(refs.decisions)
    for neg, ref in zip(w["negated_decisions"], refs.decisions, strict=True):
        assert norm(neg) != norm(ref) and all(norm(neg) != norm(o) for opts in w["decisions"] for o in opts)
    assert len(w["invented_decisions"]) >= 2
    assert not {norm(s) for s in w["invented_decisions"]} & {norm(o) for opts in w["decisions"] for o in opts}
    owners = {a.owner for a in refs.action_items}
    for options, item in zip(w["action_items"], refs.action_items, strict=True):
        for o in options:
            assert o[:1].islower(), o  # lower-case imperative
            assert item.owner not in o, (item.owner, o)  # no owner
            assert not find_dates(o, meeting) and not DAY_WORD.search(o), o  # no due date
            assert not any(o.startswith(name) for name in owners)
    for options in w["open_questions"]:
        assert all(o.rstrip().endswith("?") or "?" in o or o.startswith("whether") for o in options), options
    assert len(w.get("purpose", [])) >= 2


# ---------------------------------------------------------------------------------------------- layouts

def test_600_distinct_layouts_cover_every_value_and_the_named_pairs():
    assert len(LAYOUTS) == 600 and len(set(LAYOUTS)) == 600
    for dim, values in (("sections", R.SECTION_STYLES), ("items", R.ITEM_STYLES), ("owner", R.OWNER_PLACEMENTS),
                        ("dates", R.DATE_FORMS), ("wrapper", R.WRAPPERS), ("wording", (0, 1))):
        assert {getattr(lay, dim) for lay in LAYOUTS} == set(values), dim
    assert {(lay.sections, lay.items) for lay in LAYOUTS} == set(itertools.product(R.SECTION_STYLES, R.ITEM_STYLES))
    assert {(lay.items, lay.owner) for lay in LAYOUTS} == set(itertools.product(R.ITEM_STYLES, R.OWNER_PLACEMENTS))


def test_even_20_layouts_cover_every_value_and_pair():
    few = R.layouts(20, seed=7)
    assert len(set(few)) == 20
    assert {(lay.sections, lay.items) for lay in few} == set(itertools.product(R.SECTION_STYLES, R.ITEM_STYLES))
    assert {(lay.items, lay.owner) for lay in few} == set(itertools.product(R.ITEM_STYLES, R.OWNER_PLACEMENTS))
    assert {lay.dates for lay in few} == set(R.DATE_FORMS) and {lay.wrapper for lay in few} == set(R.WRAPPERS)


def test_layouts_are_deterministic_and_the_seed_changes_them():
    assert R.layouts(600) == LAYOUTS
    assert R.layouts(600, seed=1) != LAYOUTS
    assert R.layouts(50) == LAYOUTS[:50]


def test_table_layouts_vary_their_column_names_and_order():
    tables = [lay for lay in LAYOUTS if lay.items == "table"]
    assert all(not lay.columns for lay in LAYOUTS if lay.items != "table")
    roles = {name: role for role, names in R.COLUMN_NAMES.items() for name in names}
    for lay in tables:
        assert sorted(roles[c] for c in lay.columns) == ["due", "owner", "task"], lay.columns
    assert len({lay.columns for lay in tables}) >= 20
    assert len({tuple(roles[c] for c in lay.columns) for lay in tables}) == 6  # every order of the three roles
    for role, names in R.COLUMN_NAMES.items():
        assert {c for lay in tables for c in lay.columns if roles[c] == role} == set(names), role


# ---------------------------------------------------------------------------------------------- dates

MEETING = dt.date(2025, 2, 11)  # a Tuesday


@pytest.mark.parametrize("form, due, written", [
    ("iso", dt.date(2025, 2, 14), "2025-02-14"),
    ("weekday_month_day", dt.date(2025, 2, 14), "Friday, February 14"),
    ("mon_day", dt.date(2025, 2, 14), "Feb 14"),
    ("day_month", dt.date(2025, 2, 14), "14 February"),
    ("numeric_us", dt.date(2025, 2, 14), "2/14"),
    ("numeric_eu", dt.date(2025, 2, 14), "14/2"),
    ("next_weekday", dt.date(2025, 2, 14), "next Friday"),
    ("weekday", dt.date(2025, 2, 14), "Friday"),
    ("weekday", dt.date(2025, 2, 18), "Tuesday"),  # 7 days on: still the coming one
    # fall-backs for this date only
    ("numeric_us", dt.date(2025, 3, 5), "Mar 5"),
    ("numeric_eu", dt.date(2025, 3, 5), "5 March"),
    ("numeric_us", dt.date(2025, 3, 3), "3/3"),
    ("numeric_eu", dt.date(2025, 3, 3), "3/3"),
    ("next_weekday", dt.date(2025, 2, 21), "Friday, February 21"),
    ("weekday", dt.date(2025, 2, 11), "Tuesday, February 11"),  # the meeting's own day
    ("weekday", dt.date(2025, 2, 19), "Wednesday, February 19"),
])
def test_due_dates_in_each_form_and_their_fallbacks(form, due, written):
    assert R.format_due(due, form, MEETING) == written
    assert [d for _, d in find_dates(f"due {written}.", MEETING)] == [due]  # and reads back as that date


# ---------------------------------------------------------------------------------------------- content

@pytest.mark.parametrize("tid", TIDS)
def test_every_rendering_states_every_item_owner_and_due_in_the_layouts_form(tid):
    refs, meeting = REFS[tid]
    w = WORDINGS[tid]
    for lay in SAMPLE:
        r = render(tid, lay)
        assert r.items == refs and r.changed == () and r.defect is None
        for a, options in zip(refs.action_items, w["action_items"], strict=True):
            assert a.owner in r.text
            task = options[lay.wording]
            if lay.items == "prose" and lay.owner == "after":  # "Booking the ... falls to Samuel"
                verb, rest = task.split(" ", 1)
                assert re.search(rf"\b{verb[:3]}\w*ing {re.escape(rest)}", r.text, re.I), (lay, task)
            else:
                assert has(r.text, task), (lay, task)
            if a.due is not None:
                assert R.format_due(a.due, lay.dates, meeting) in r.text, (lay, a)
        for options in w["decisions"]:
            assert options[lay.wording].rstrip(".") in r.text
        for options in w["open_questions"]:
            assert has(r.text, options[lay.wording].rstrip("?.")), lay
        assert "{" not in r.text and "None" not in r.text  # no unfilled template, no empty section


def test_each_layout_dimension_shows_in_the_text():
    tid = "office-move"
    base = R.Layout("markdown", "bullets", "before", "iso", "none", 0)
    assert "## " in render(tid, base).text
    assert re.search(r"^\*\*[A-Z][^*]+:?\*\*$", render(tid, replace(base, sections="bold")).text, re.M)
    assert re.search(r"^[A-Z][a-z -]+:$", render(tid, replace(base, sections="label")).text, re.M)
    numbered = render(tid, replace(base, sections="numbered")).text
    assert re.search(r"^1\. [A-Z]", numbered, re.M) and re.search(r"^3\. [A-Z]", numbered, re.M)
    assert re.search(r"^\d\. ", render(tid, replace(base, items="numbers")).text, re.M)
    after = render(tid, replace(base, owner="after")).text
    assert not re.search(r"^[-*] Samuel", after, re.M) and re.search(r"Samuel", after)
    assert re.search(r"\(Samuel[,)]", render(tid, replace(base, owner="parens")).text)
    assert re.search(r"Owner: Samuel", render(tid, replace(base, owner="field")).text)
    assert render(tid, replace(base, wording=1)).text != render(tid, base).text


@pytest.mark.parametrize("tid", TIDS)
def test_table_renderings_have_a_header_and_one_row_per_action_item(tid):
    refs, meeting = REFS[tid]
    for lay in [x for x in LAYOUTS if x.items == "table"][:12]:
        r = render(tid, lay)
        rows = [line for line in r.text.splitlines() if line.startswith("|")]
        cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
        assert tuple(cells[0]) == lay.columns
        assert all(set(c) <= set("-: ") for c in cells[1])
        assert len(rows) == 2 + len(refs.action_items)
        roles = {name: role for role, names in R.COLUMN_NAMES.items() for name in names}
        col = {roles[c]: i for i, c in enumerate(lay.columns)}
        for row, a in zip(cells[2:], refs.action_items, strict=True):
            assert row[col["owner"]] == a.owner
            if a.due is not None:
                assert row[col["due"]] == R.format_due(a.due, lay.dates, meeting)
            else:
                assert not find_dates(row[col["due"]], meeting)
        # the other sections are bullets, not table rows
        assert re.search(r"^\s*[-*] ", r.text, re.M)


def _name_lines(text: str, name: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines())
            if re.sub(r"^#+\s*|[*_:]", "", line).strip() == name]


@pytest.mark.parametrize("tid", TIDS)
def test_owner_heading_puts_a_name_only_line_over_each_persons_items(tid):
    refs, _ = REFS[tid]
    w = WORDINGS[tid]
    heading_layouts = [x for x in LAYOUTS if x.owner == "heading" and x.items != "table"]
    assert {x.items for x in heading_layouts} == {"bullets", "numbers", "prose"}
    marks = set()
    for lay in heading_layouts[:16]:
        r = render(tid, lay)
        lines = r.text.splitlines()
        heads = {}
        for owner in {a.owner for a in refs.action_items}:
            at = _name_lines(r.text, owner)
            assert len(at) == 1, (owner, lay, r.text)
            heads[at[0]] = owner
            marks.add(re.sub(r"[A-Za-z]+", "NAME", lines[at[0]]))
        for a, options in zip(refs.action_items, w["action_items"], strict=True):
            task = options[lay.wording]
            where = next(i for i, line in enumerate(lines) if has(line, task))
            above = max(i for i in heads if i < where)
            assert heads[above] == a.owner, (a, lay)
            assert a.owner not in lines[where].replace(task, "")  # the name is only in the heading
    assert marks == {"**NAME**", "*NAME*", "### NAME", "NAME:"}


def test_sections_none_has_no_heading_lines_and_prose_is_one_paragraph_per_section():
    titles = {t for ts in R._TITLES.values() for t in ts}
    for tid, lay in itertools.product(TIDS, [x for x in LAYOUTS if x.sections == "none"][:20]):
        r = render(tid, lay)
        for line in r.text.splitlines():
            assert re.sub(r"^#+\s*|^\d+\.\s*|[*:]", "", line).strip() not in titles, (line, lay)
            assert not line.startswith("#") or lay.owner == "heading"
        if lay.items == "prose" and lay.owner != "heading":
            paragraphs = [p for p in r.text.strip().split("\n\n")]
            extra = {"none": 0, "summary_first": 1, "greeting": 2}[lay.wrapper]
            assert len(paragraphs) == 3 + extra
            assert all("\n" not in p for p in paragraphs)


def test_wrappers():
    tid = "fundraising-dinner"
    base = R.Layout("label", "bullets", "before", "mon_day", "none", 0)
    plain = render(tid, base).text
    assert plain.startswith("Decisions:") or plain.split("\n")[0].endswith(":")
    openers, closers = set(), set()
    for seed in range(30):
        text = render(tid, replace(base, wrapper="greeting"), seed=seed).text.strip().splitlines()
        openers.add(text[0])
        closers.add(text[-1])
        assert text[1] == ""
    assert len(openers) >= 3 and len(closers) >= 3
    assert all(o in R._OPENERS for o in openers) and all(c in R._CLOSERS for c in closers)
    first = render(tid, replace(base, wrapper="summary_first")).text.splitlines()
    assert first[0] in WORDINGS[tid]["purpose"] and first[1] == ""


def test_a_missing_due_date_is_written_as_no_date_in_varied_ways():
    tid = "office-move"  # Ingrid's parking question has no due date
    seen = set()
    for seed in range(40):
        r = render(tid, R.Layout("markdown", "bullets", "before", "iso", "none", 0), seed=seed)
        line = next(line for line in r.text.splitlines() if "landlord" in line)
        assert not find_dates(line, REFS[tid][1])
        seen.add("no date set" if "no date set" in line else "no deadline" if "no deadline" in line else "")
    assert seen == {"no date set", "no deadline", ""}


# ---------------------------------------------------------------------------------------------- defects

def _facts(items: ReferenceItems) -> list[tuple[str, dt.date | None]]:
    return [(a.owner, a.due) for a in items.action_items]


@pytest.mark.parametrize("tid", TIDS)
@pytest.mark.parametrize("defect", R.DEFECTS)
def test_each_defect_changes_the_items_as_specified_and_the_text(tid, defect):
    refs, meeting = REFS[tid]
    w = WORDINGS[tid]
    for seed, lay in enumerate(SAMPLE[:24]):
        clean = render(tid, lay, seed=seed)
        r = render(tid, lay, defect, seed=seed)
        got = r.items
        assert r.defect == defect and r.changed and r.text != clean.text
        if defect == "owner_swapped":
            diff = [(a, b) for a, b in zip(refs.action_items, got.action_items, strict=True) if a != b]
            assert len(diff) == 1
            (a, b), = diff
            assert (a.task, a.due) == (b.task, b.due) and a.owner != b.owner
            assert b.owner in {x.owner for x in refs.action_items}
            assert (got.decisions, got.open_questions) == (refs.decisions, refs.open_questions)
        elif defect == "due_moved":
            diff = [(a, b) for a, b in zip(refs.action_items, got.action_items, strict=True) if a != b]
            assert len(diff) == 1
            (a, b), = diff
            assert (a.task, a.owner) == (b.task, b.owner) and a.due is not None
            assert 2 <= abs((b.due - a.due).days) <= 9 and b.due > meeting
            assert R.format_due(b.due, lay.dates, meeting) in r.text
            assert (got.decisions, got.open_questions) == (refs.decisions, refs.open_questions)
        elif defect == "item_dropped":
            assert got.count() == refs.count() - 1
            for field in ("decisions", "action_items", "open_questions"):
                before, after = getattr(refs, field), getattr(got, field)
                assert not collections.Counter(after) - collections.Counter(before)
                assert list(after) == [x for x in before if x in after]  # order kept
        elif defect == "decision_invented":
            assert len(got.decisions) == len(refs.decisions) + 1
            new = [d for d in got.decisions if d not in refs.decisions]
            assert len(new) == 1 and new[0] in w["invented_decisions"] and new[0] in r.text
            assert [d for d in got.decisions if d in refs.decisions] == list(refs.decisions)
            assert got.action_items == refs.action_items and got.open_questions == refs.open_questions
        elif defect == "decision_negated":
            diff = [i for i, (a, b) in enumerate(zip(refs.decisions, got.decisions, strict=True)) if a != b]
            assert len(diff) == 1
            i = diff[0]
            assert got.decisions[i] == w["negated_decisions"][i] and got.decisions[i] in r.text
            assert w["decisions"][i][lay.wording].rstrip(".") not in r.text  # the true one is gone
            assert got.action_items == refs.action_items and got.open_questions == refs.open_questions
        elif defect == "facts_rotated":
            before, after = _facts(refs), _facts(got)
            assert after == before[-1:] + before[:-1]
            assert [a.task for a in got.action_items] == [a.task for a in refs.action_items]
            assert all(after[i] != before[i] for i in range(len(before)) if before[i] != before[i - 1])
            assert (got.decisions, got.open_questions) == (refs.decisions, refs.open_questions)
        # the text states the changed items: every owner next to its own task, every due in the form
        if defect in ("owner_swapped", "due_moved", "facts_rotated") and lay.items == "table":
            rows = [line for line in r.text.splitlines() if line.startswith("|")][2:]
            for a, row in zip(got.action_items, rows, strict=True):
                assert f"| {a.owner} |" in row or row.startswith(f"| {a.owner} ") or row.endswith(f" {a.owner} |")
                if a.due:
                    assert R.format_due(a.due, lay.dates, meeting) in row


def test_the_defects_are_spread_over_items_and_vary_with_the_seed():
    tid = "fundraising-dinner"
    lay = SAMPLE[0]
    dropped = {render(tid, lay, "item_dropped", seed=s).changed for s in range(40)}
    assert len(dropped) >= 8  # decisions, action items and questions all get dropped
    assert {c[0].split()[0] for c in dropped} == {"decision", "action", "question"}
    moved = {render(tid, lay, "due_moved", seed=s).changed for s in range(40)}
    assert len(moved) >= 6


def test_a_defect_that_cannot_apply_raises():
    lay = SAMPLE[0]
    refs, meeting = REFS["office-move"]
    undated = replace(refs, action_items=tuple(replace(a, due=None) for a in refs.action_items))
    with pytest.raises(ValueError):
        R.render("office-move", undated, meeting, WORDINGS, lay, "due_moved")
    one_owner = replace(refs, action_items=tuple(replace(a, owner="Ingrid") for a in refs.action_items))
    with pytest.raises(ValueError):
        R.render("office-move", one_owner, meeting, WORDINGS, lay, "owner_swapped")
    same = replace(refs, action_items=tuple(ActionItem("Ingrid", a.task, None) for a in refs.action_items))
    with pytest.raises(ValueError):
        R.render("office-move", same, meeting, WORDINGS, lay, "facts_rotated")
    with pytest.raises(ValueError):
        R.render("office-move", refs, meeting, WORDINGS, lay, "no_such_defect")
    with pytest.raises(ValueError):
        R.render("office-move", refs, meeting, WORDINGS, replace(lay, dates="julian"))


# ---------------------------------------------------------------------------------------------- determinism

def test_renderings_are_deterministic_and_the_seed_varies_them():
    for tid, lay, defect in itertools.product(TIDS, SAMPLE[:10], (None, *R.DEFECTS)):
        assert render(tid, lay, defect, seed=5) == render(tid, lay, defect, seed=5)
    texts = {render("office-move", SAMPLE[0], seed=s).text for s in range(10)}
    assert len(texts) >= 3


def test_a_defect_is_the_only_difference_from_the_clean_rendering():
    """Same layout and seed: the defective text differs from the clean one only where the defect is."""
    tid = "security-audit-followup"
    for lay in SAMPLE[:20]:
        clean = render(tid, lay, seed=2).text.splitlines()
        negated = render(tid, lay, "decision_negated", seed=2).text.splitlines()
        if lay.items != "prose":
            assert len([1 for a, b in zip(clean, negated, strict=True) if a != b]) == 1


def test_sample_skips_only_defects_that_cannot_apply():
    out = R.sample(n_layouts=20)
    assert len(out) == 5 * 20 * (1 + len(R.DEFECTS))
    one = R.sample({"x": (ReferenceItems(("A decision",), (ActionItem("Ann", "do it", None),), ()),
                          dt.date(2025, 1, 1))},
                   {"x": {"decisions": [["Decided: A.", "A was decided."]], "negated_decisions": ["Not A."],
                          "action_items": [["get it done", "finish it"]], "open_questions": [],
                          "invented_decisions": ["B.", "C."]}}, n_layouts=20)
    assert {r.defect for r in one} == {None, "item_dropped", "decision_invented", "decision_negated"}


def test_the_generator_does_not_import_the_grader():
    tree = ast.parse(Path(R.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and ("notes" in m or "matching" in m or "scorers" in m) for m in imported), imported
