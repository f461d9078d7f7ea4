"""Quality that holds on answers as models write them (issue 23): the `notes` scorer matches items
by meaning, words and facts; reads headings, tables, owners and dates in the forms models use;
refuses contradicted items; its embedding model is a verified part of the pack; and its
qualification checks correct answers in other words and wrong answers in the reference's words."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from test_notes import GOOD, STANDUP

from judges import dates, embedding, matching, notes, qualify, renderings
from judges.qualify import Graded
from runner.models import embedder

HOLDOUT = ROOT / "tests" / "data" / "holdout-notes.yaml"
MEETING = dt.date(2025, 3, 4)  # the stand-up's date (a Tuesday)


def score(answer: str, match: str = "semantic") -> dict:
    return notes.score(STANDUP, answer, match)


# ---------------------------------------------------------------- the embedding model


def test_the_numpy_encoder_gives_the_embeddings_transformers_gives():
    torch = pytest.importorskip("torch")  # the conversion extra: `make` installs it
    from transformers import AutoModel, AutoTokenizer

    texts = ["Move to the Riverside building on March 22", "Book the fiber installation by Friday", "ok"]
    ours = embedding.encoder().encode(texts)
    folder = str(embedder.require())
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    assert np.allclose((ours * ref).sum(1), 1.0, atol=1e-4)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_meaning_not_words_orders_similarity():
    sims = embedding.cosine(["The team moves to the Riverside building on the weekend of March 22"],
                            ["We relocate to Riverside over the March 22 weekend", "Book the fibre install by Friday"])
    assert sims[0, 0] > 0.6 > sims[0, 1]


def _home_with(tmp_path: Path, change: bool) -> Path:
    home = tmp_path / "home"
    target = home / "scorers" / embedder.MINILM.alias
    shutil.copytree(embedder.require(), target)
    if change:
        with (target / "model.safetensors").open("r+b") as fh:
            fh.seek(-1, 2)
            last = fh.read(1)
            fh.seek(-1, 2)
            fh.write(bytes([last[0] ^ 1]))
    return home


def test_a_changed_model_file_is_refused_with_the_fix(tmp_path: Path):
    home = _home_with(tmp_path, change=True)
    done = run_cli("judge", "qualify", "notes", env={"SLMBENCH_HOME": str(home)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "failed verification" in done.stderr and "slmbench models pack" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_missing_model_is_one_line_naming_the_fix_and_lexical_needs_none(tmp_path: Path):
    done = run_cli("run", "prompts=meeting-notes", "judge=none", f"hydra.run.dir={tmp_path / 'run'}",
                   env={"SLMBENCH_HOME": str(tmp_path / "empty")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "embedding model all-minilm-l6-v2 is not in" in done.stderr and "slmbench models pack" in done.stderr
    assert not (tmp_path / "run" / "requests.jsonl").exists()  # refused before anything ran
    lexical = run_cli("judge", "qualify", "notes", "--match", "lexical", env={"SLMBENCH_HOME": str(tmp_path / "x")})
    assert "grader notes (lexical matching)" in lexical.stdout, lexical.stderr


def test_models_list_shows_the_scorer():
    import json

    rows = {r["alias"]: r for r in json.loads(run_cli("models", "list", "--json").stdout)}
    row = rows[embedder.MINILM.alias]
    assert row["role"] == "scorer" and row["license"] == "Apache-2.0" and row["cached"] and row["size_mb"] > 80


def test_embeddings_are_computed_once_per_text():
    enc = embedding.encoder()
    text = "a sentence no other test embeds: the quarterly llama census"
    enc.encode([text])
    calls = []
    inner = enc._forward
    enc._forward = lambda texts: calls.append(list(texts)) or inner(texts)
    try:
        enc.encode([text, text, "and a second new one about llamas"])
    finally:
        del enc._forward
    assert calls == [["and a second new one about llamas"]]


# ---------------------------------------------------------------- structure as models write it


@pytest.mark.parametrize("heading, kind", [
    ("## Key decisions", "decisions"), ("**What we decided**", "decisions"), ("Outcomes:", "decisions"),
    ("1. Decisions", "decisions"), ("### Agreed", "decisions"),
    ("Next steps:", "action_items"), ("## Follow-ups", "action_items"), ("**Who does what**", "action_items"),
    ("2) Action items", "action_items"), ("## Owners & deadlines", "action_items"), ("#### Action list", "action_items"),
    ("Unresolved:", "open_questions"), ("**Pending**", "open_questions"), ("Risks/questions:", "open_questions"),
    ("## Still open", "open_questions"), ("3. Open questions", "open_questions"), ("**Unknowns**", "open_questions"),
])
def test_heading_forms(heading, kind):
    assert notes.heading_kind(heading)[0] == kind


def test_an_unknown_heading_lets_each_items_content_decide():
    answer = GOOD.replace("## Decisions", "## Where we landed").replace("## Open questions", "## Loose ends")
    parsed = notes.parse_sections(answer, notes.candidate_names(STANDUP, STANDUP.reference_items))
    kind = {it.text[:12]: it.section for it in parsed.items}
    assert kind["Code freeze "] == kind["No exception"] == "decisions"
    assert kind["Who writes t"] == "open_questions"
    assert sum(k == "action_items" for k in kind.values()) == 5
    assert score(answer)["recall"] == 1.0
    # a heading that holds no items is still skipped
    assert score(GOOD.replace("## Open questions", "## Attendees\n- Priya, Tom\n\n## Open questions"))["invented"] == 0


ROWS = [("Aisha", "investigate the slow staging database and report back", "Thu 6 Mar"),
        ("Aisha", "export-to-CSV feature ready for review", "3/5/2025"),
        ("Tom", "write the integration tests for the sync service retry logic", "today"),
        ("Tom", "hand Marco a Pixel 6 test phone", "Mar 4th"),
        ("Priya", "decide who writes the release notes and post it in the team channel", "no date")]


@pytest.mark.parametrize("order", [("Owner", "Task", "Due"), ("Task", "Due", "Owner"), ("Due", "Owner", "Task"),
                                   ("Task", "Owner", "Due")])
def test_action_items_as_a_table_in_any_column_order(order):
    cells = {"Owner": 0, "Task": 1, "Due": 2}
    table = "| " + " | ".join(order) + " |\n|" + "---|" * 3 + "\n" + "".join(
        "| " + " | ".join(row[cells[c]] for c in order) + " |\n" for row in ROWS)
    answer = GOOD.split("## Action items")[0] + "## Action items\n" + table + "\n## Open questions" + \
        GOOD.split("## Open questions")[1]
    s = score(answer)
    assert s["owner_accuracy"] == 1.0 and s["due_accuracy"] == 1.0 and s["score"] == pytest.approx(5.0), s


@pytest.mark.parametrize("line, owner", [
    ("Tom - hand Marco a Pixel 6 test phone - March 4", "tom"),
    ("Hand Marco a Pixel 6 test phone - Tom, due March 4", "tom"),
    ("Hand Marco a Pixel 6 test phone (Tom, Mar 4)", "tom"),
    ("Hand Marco a Pixel 6 test phone \u2192 Tom, by the 4th", "tom"),
    ("Marco gets a Pixel 6 test phone from Tom - Owner: Tom", "tom"),
])
def test_the_owner_before_after_or_in_parentheses(line, owner):
    names = notes.candidate_names(STANDUP, STANDUP.reference_items)
    assert notes.owner_of(line, names) == owner


@pytest.mark.parametrize("text, expected", [
    ("Feb 21st", dt.date(2025, 2, 21)), ("21/02/2025", dt.date(2025, 2, 21)), ("2/21", dt.date(2025, 2, 21)),
    ("Fri 21 Feb", dt.date(2025, 2, 21)), ("21/02", dt.date(2025, 2, 21)),
    ("next Friday", dt.date(2025, 2, 14)), ("end of month", dt.date(2025, 2, 28)),
    ("Dec 12 (Fri)", dt.date(2025, 12, 12)), ("Friday the 14th", dt.date(2025, 2, 14)),
])
def test_date_forms(text, expected):
    assert [d for _, d in dates.find_dates(text, dt.date(2025, 2, 11))] == [expected]


def test_prose_with_joined_clauses_is_one_item_per_clause():
    names = {"noor", "hugo"}
    items = notes._items(["Noor will merge the fix by Thursday, and Hugo's team will verify it by Friday. "
                          "Noor will also ask about the SDK, and will report back."], names)
    assert items == ["Noor will merge the fix by Thursday", "Hugo's team will verify it by Friday.",
                     "Noor will also ask about the SDK", "Noor will report back."]


# ---------------------------------------------------------------- matching by meaning, refusing contradictions


RESTATED = GOOD.replace("- Code freeze for 2.4 is Friday, March 7; anything unmerged moves to 2.5.",
                        "- Nothing new lands in the 2.4 release after March 7: late work slips to 2.5.")


def test_a_decision_restated_in_other_words_is_matched_by_meaning_only():
    semantic, lexical = score(RESTATED), score(RESTATED, "lexical")
    assert semantic["decisions_recall"] == 1.0 and semantic["score"] == pytest.approx(5.0)
    assert lexical["decisions_recall"] < 1.0 and lexical["score"] < semantic["score"]


@pytest.mark.parametrize("wrong", [
    "- Code freeze for 2.4 is not Friday, March 7: unmerged work still goes into 2.4.",  # negated
    "- Code freeze for 2.4 is Friday, March 14; anything unmerged moves to 2.5.",  # another date
])
def test_a_contradicted_decision_is_not_counted_right(wrong):
    s = score(GOOD.replace("- Code freeze for 2.4 is Friday, March 7; anything unmerged moves to 2.5.", wrong))
    assert s["contradicted"] == 1 and s["decisions_recall"] == 0.5
    assert s["score"] < score(GOOD.replace("- Code freeze", "- The team also agreed on a new logo.\n- Code freeze"))[
        "score"]  # worse than an invented decision beside a right one


@pytest.mark.parametrize("ref, ans, contra", [
    ("The new office uses hot-desking", "The new office will not use hot-desking", True),
    ("The five medium findings are fixed in Q1, not now", "The five medium findings are fixed now, not in Q1", True),
    ("No discounted tickets", "Discounted tickets will be offered", True),
    ("Switch the supplier from Millbrook to Greenfield", "Keep buying from Millbrook instead of Greenfield", True),
    ("The five medium findings are fixed in Q1, not now", "The five medium findings are deferred to Q1", False),
    ("No discounted tickets", "Ticket prices will not be discounted", False),
    ('The name stays "Help Center" (no rename to "Resource Hub")', 'Keep "Help Center"; the rename is not happening',
     False),
    ("Switch the supplier from Millbrook to Greenfield", "Greenfield replaces Millbrook as our supplier", False),
    ("The sourdough goes from 4.50 to 4.90; all other prices stay the same",
     "Sourdough rises to 4.90 (was 4.50); nothing else changes price", False),
])
def test_contradiction_rule(ref, ans, contra):
    assert matching.contradicts(ref, ans) is contra


def test_both_matchings_are_selectable_and_a_third_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="semantic"):
        score(GOOD, "fuzzy")
    done = run_cli("run", "judge.notes.match=fuzzy", "prompts=smoke", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2 and "judge.notes.match='fuzzy' must be one of semantic, lexical" in done.stderr


# ---------------------------------------------------------------- qualification on what real answers do


def _g(**by_kind: float) -> dict[str, Graded]:
    return {k: Graded(v) for k, v in by_kind.items()}


BASE = dict(reference=5.0, owner_swapped=4.6, dropped_and_wrong_date=4.2, invented_and_owner_swapped=3.5,
            paragraph_half_missing=2.0, injected=2.4)


def test_reworded_gap_and_words_not_facts_figures_and_gates():
    good = _g(**BASE, reworded_table=5.0, reworded_bold=4.8, reworded_prose=4.9, rotated_facts=1.0,
              decision_inverted=2.8)
    bad = _g(**BASE, reworded_table=2.6, reworded_bold=3.2, reworded_prose=4.7, rotated_facts=3.6,
             decision_inverted=3.0)
    ranks = {k: i + 1 for i, k in enumerate(qualify.KINDS)} | {"injected": 4}
    f = qualify.figures({"a": good, "b": bad}, {"a": ranks, "b": ranks}, seconds=1.0)
    assert f["reworded_gap"]["per_transcript"] == {"a": pytest.approx(0.1), "b": pytest.approx(5 - 10.5 / 3)}
    assert f["reworded_gap"]["pooled"] == pytest.approx((0.1 + 5 - 3.5) / 2)
    assert f["reworded_above_one_defect"]["per_transcript"] == {"a": True, "b": False}
    assert f["words_not_facts"]["per_transcript"] == {"a": True, "b": False}
    v = qualify.verdict(f, 0.6, 0.25)
    assert not v["passed"] and "reworded gap +0.80 > +0.5" in v["why"] and "(b)" in v["why"]
    only_good = qualify.figures({"a": good}, {"a": ranks}, seconds=1.0)
    assert qualify.verdict(only_good, 0.6, 0.25)["passed"]
    off = qualify.Gates(max_reworded_gap=2.0, reworded_above_one_defect=False, words_not_facts=False)
    assert qualify.verdict(f, 0.6, 0.25, gates=off)["passed"]
    # a set without reworded answers has no such figures and no such gates
    plain = qualify.figures({"a": _g(**BASE)}, {"a": ranks}, seconds=1.0)
    assert plain["reworded_gap"] is None and qualify.verdict(plain, 0.6, 0.25)["passed"]


@pytest.mark.parametrize("path", [None, HOLDOUT], ids=["shipped", "held-back"])
def test_notes_qualifies_with_meaning_on_shipped_and_held_back_answers(path, unqualified_home: Path, monkeypatch):
    """The acceptance bar: pooled Spearman >= 0.9, adjacent-pair accuracy >= 0.9, injection lift
    <= 0, reworded gap <= 0.5, reworded above one-defect, rotated/inverted below invented. The
    held-back set (tests/data) was written apart, in other headings, tables and date forms."""
    monkeypatch.setenv("SLMBENCH_HOME", str(unqualified_home))
    q = qualify.qualify(qualify.scorer_grader("notes", {"match": "semantic"}), qualify.load_calibration(path))
    assert q["passed"], q["why"]
    assert q["spearman"]["pooled"] >= 0.9 and q["adjacent_accuracy"] >= 0.9 and q["injection_lift"] <= 0
    assert q["reworded_gap"]["pooled"] <= 0.5
    assert q["reworded_above_one_defect"]["all"] and q["words_not_facts"]["all"]
    assert q["grader"] == "notes (semantic matching)" and q["identity"]["match"] == "semantic"
    # every calibration transcript's reference answer scores exactly 5.0
    assert all(g["overall"] == 5.0 for g in q["grades"] if g["kind"] == "reference")
    if path is None:  # the behavioural tests and the hand-labelled real answers cover the shipped transcripts
        beh, real = q["behaviour"], q["real_answers"]
        assert beh["renderings"] >= 500 and beh["invariance"]["rate"] >= 0.98, beh["invariance"]["fails"][:1]
        assert beh["defective"] >= 2500 and beh["directional"]["rate"] >= 0.99, beh["directional"]["fails"][:1]
        assert set(beh["directional"]["by_defect"]) == set(renderings.DEFECTS)
        assert set(beh["invariance"]["by"]["items"]) == set(renderings.ITEM_STYLES)
        assert real["n"] >= 60 and real["spearman"] >= 0.8 and real["item_agreement"] >= 0.9
        assert real["echo_in_summaries"] == []
    else:  # no wordings or labels for the held-back transcripts: no such figures, no such gates
        assert "behaviour" not in q and "real_answers" not in q


def test_a_grader_failing_the_behavioural_or_real_answer_gates_is_not_qualified():
    ranks = {k: i + 1 for i, k in enumerate(qualify.KINDS)} | {"injected": 4}
    fig = qualify.figures({"a": _g(**BASE)}, {"a": ranks}, seconds=1.0)
    assert qualify.verdict(fig, 0.6, 0.25)["passed"]
    weak = {**fig, "behaviour": {"min_correct": 4.75, "invariance": {"rate": 0.9}, "directional": {"rate": 1.0}},
            "real_answers": {"spearman": 0.5, "item_agreement": 0.95}}
    v = qualify.verdict(weak, 0.6, 0.25)
    assert not v["passed"] and "invariance 0.900 < 0.98" in v["why"] and "person's grades +0.50 < 0.8" in v["why"]
    assert "directional" not in v["why"] and "item agreement" not in v["why"]
