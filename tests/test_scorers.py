"""Cheap scorers (judges/scorers.py) on hand-computed examples.

Pure functions on strings: no model, no server, no pack. Each test fails if the behaviour
its name states breaks (LCS off by one, precision/recall swapped, case or punctuation not
normalised, stopwords counted as keywords, a normal answer flagged as a refusal, unknown
scorer names accepted, fields not flattened as "<scorer>.<field>"...).
"""

from __future__ import annotations

import random
import time

import pytest

from judges import scorers
from judges.scorers import SCORERS, lcs_length, resolve, score_all, tokens
from runner.config.errors import UserError
from runner.config.prompts import Prompt


def make(reference: str | None = None, aspects: dict[str, str] | None = None,
         tags: tuple[str, ...] = ()) -> Prompt:
    return Prompt(id="x", messages=(("user", "q"),), aspects=aspects or {}, reference=reference, tags=tags)


def _lcs_dp(a: list[str], b: list[str]) -> int:
    """The textbook O(n*m) DP, as the oracle for the bit-parallel lcs_length."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


# --- registry -----------------------------------------------------------------------------


def test_registry_holds_the_five_scorers_each_documented():
    assert set(SCORERS) >= {"rouge_l", "keyword_coverage", "length", "format", "refusal"}
    for name, fn in SCORERS.items():
        assert fn.__doc__ and "=" in fn.__doc__, f"{name} must state its formula"


def test_decorator_refuses_duplicates_and_undocumented_scorers():
    with pytest.raises(ValueError, match="rouge_l"):
        scorers.scorer("rouge_l")(lambda p, a: None)

    def bare(prompt, answer):
        return None

    with pytest.raises(TypeError, match="docstring"):
        scorers.scorer("bare_test_only")(bare)
    assert "bare_test_only" not in SCORERS


def test_unknown_scorer_raises_user_error_naming_it_and_the_known_ones():
    with pytest.raises(UserError) as err:
        score_all(["rouge_l", "bleurt"], make("ref"), "ans")
    msg = str(err.value)
    assert "bleurt" in msg
    for known in ("rouge_l", "keyword_coverage", "length", "format", "refusal"):
        assert known in msg
    with pytest.raises(UserError, match="bleurt"):
        resolve(["bleurt"])


def test_resolve_keeps_order_drops_duplicates_and_accepts_a_bare_name():
    assert list(resolve(["length", "rouge_l", "length"])) == ["length", "rouge_l"]
    assert list(resolve("refusal")) == ["refusal"]
    assert resolve([]) == {}


def test_score_all_flattens_as_scorer_dot_field_and_skips_inapplicable():
    p = make("the cat sat on the mat")
    out = score_all(["rouge_l", "length"], p, "the cat sat on the mat")
    assert out == {
        "rouge_l.precision": 1.0, "rouge_l.recall": 1.0, "rouge_l.f1": 1.0,
        "length.words": 6, "length.characters": 22, "length.ratio_to_reference": 1.0,
    }
    # No reference: rouge_l does not apply (no fields), length loses only the ratio.
    out = score_all(["rouge_l", "keyword_coverage", "length"], make(None), "two words")
    assert out == {"length.words": 2, "length.characters": 9}


# --- rouge_l ------------------------------------------------------------------------------


def test_tokens_lowercase_and_strip_punctuation():
    assert tokens("The CAT, sat... on the mat! Don't") == ["the", "cat", "sat", "on", "the", "mat", "dont"]
    assert tokens("") == [] and tokens(None) == []


def test_rouge_l_identical_text_is_one():
    r = SCORERS["rouge_l"](make("The quick brown fox."), "the quick brown fox")
    assert r == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_rouge_l_hand_computed_lcs():
    # reference: the cat sat on the mat            -> 6 tokens
    # answer:    the cat lay on a mat today        -> 7 tokens (case/punctuation stripped)
    # LCS = "the cat on mat" = 4
    # P = 4/7, R = 4/6 = 2/3, F1 = 2PR/(P+R) = (16/21) / (26/21) = 8/13
    r = SCORERS["rouge_l"](make("the cat sat on the mat"), "The cat lay on a MAT, today!")
    assert r["precision"] == pytest.approx(4 / 7)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(8 / 13)


def test_rouge_l_is_order_sensitive_not_a_bag_of_words():
    # Same words reversed: LCS = 1 of 3 -> P = R = F1 = 1/3 (a unigram overlap would say 1.0).
    r = SCORERS["rouge_l"](make("alpha beta gamma"), "gamma beta alpha")
    assert r["f1"] == pytest.approx(1 / 3)


def test_rouge_l_no_overlap_and_empty_answer_are_zero():
    assert SCORERS["rouge_l"](make("alpha beta"), "gamma delta")["f1"] == 0.0
    assert SCORERS["rouge_l"](make("alpha beta"), "") == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_rouge_l_without_reference_is_none():
    assert SCORERS["rouge_l"](make(None), "anything") is None
    assert SCORERS["rouge_l"](make("  ...  "), "anything") is None  # no tokens in the reference


def test_lcs_matches_the_textbook_dp_on_random_sequences():
    rng = random.Random(7)
    vocab = ["a", "b", "c", "d", "e"]
    for _ in range(300):
        a = [rng.choice(vocab) for _ in range(rng.randint(0, 40))]
        b = [rng.choice(vocab) for _ in range(rng.randint(0, 40))]
        assert lcs_length(a, b) == _lcs_dp(a, b), (a, b)
    # Long enough that a bit mask wider than 64 bits is exercised.
    a = [rng.choice(vocab) for _ in range(300)]
    b = [rng.choice(vocab) for _ in range(250)]
    assert lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_l_caps_tokens_and_stays_fast():
    # 5000 tokens each; they agree on the first 1999, differ at token 2000 and after it.
    # Capped at 2000: LCS = 1999 of 2000 on each side -> P = R = F1 = 1999/2000.
    # Uncapped: LCS = 1999 of 5000 -> F1 ~ 0.4; capped at fewer tokens (say 1000): F1 = 1.0.
    words = [f"w{i % 500}" for i in range(5000)]
    answer = words[:1999] + [f"x{i}" for i in range(3001)]
    t0 = time.perf_counter()
    r = SCORERS["rouge_l"](make(" ".join(words)), " ".join(answer))
    assert time.perf_counter() - t0 < 0.5
    assert r["precision"] == r["recall"] == r["f1"] == pytest.approx(1999 / 2000)


# --- keyword_coverage ---------------------------------------------------------------------


def test_keyword_coverage_known_fraction():
    # Salient reference words (len >= 4, not stopwords, unique):
    #   alice, ship, release, friday, testing  -> 5   ("will", "after", "the", "on" dropped;
    #   "release" twice counts once)
    # Answer has alice, release, friday ("ships" is not "ship": exact match) -> 3/5.
    p = make("Alice will ship the release on Friday after testing the release.")
    r = SCORERS["keyword_coverage"](p, "ALICE ships the release, Friday.")
    assert r == {"coverage": pytest.approx(3 / 5), "keywords": 5, "matched": 3}


def test_keyword_coverage_none_without_reference_or_salient_words():
    assert SCORERS["keyword_coverage"](make(None), "anything") is None
    assert SCORERS["keyword_coverage"](make("it is what it is"), "anything") is None


# --- length -------------------------------------------------------------------------------


def test_length_counts_and_ratio():
    r = SCORERS["length"](make("one two three four"), "Hello, world!")
    assert r == {"words": 2, "characters": 13, "ratio_to_reference": 0.5}
    assert SCORERS["length"](make(None), "") == {"words": 0, "characters": 0}


# --- format -------------------------------------------------------------------------------

MEETING_ANSWER = """## Decisions
- Ship v2 on Friday.
- Drop the legacy API.

**Action items:**
1. Alice: write the release notes
2. Bob: email the customers
* Carol: book the retro
Not a bullet: -no space, *emphasis*, 3.5 million, ---
"""


def test_format_counts_bullets_and_finds_sections_in_meeting_prompts():
    r = SCORERS["format"](make(tags=("meeting",)), MEETING_ANSWER)
    assert r == {"bullets": 5, "has_sections": 1.0}


def test_format_meeting_detected_from_aspects():
    for aspects in ({"action_items": "lists owners"}, {"coverage": "captures all key decisions"}):
        assert "has_sections" in SCORERS["format"](make(aspects=aspects), MEETING_ANSWER)


def test_format_sections_need_both_headings():
    only_decisions = "Decisions:\n- ship on Friday\n- the team will take action later maybe, says Bob\n"
    r = SCORERS["format"](make(tags=("meeting",)), only_decisions)
    assert r == {"bullets": 2, "has_sections": 0.0}  # "action" only inside a long bullet sentence
    assert SCORERS["format"](make(tags=("meeting",)), "Decisions: none.\nAction Items: none.")["has_sections"] == 1.0
    # "transaction" is not "action".
    assert SCORERS["format"](make(tags=("meeting",)), "Decisions\nTransactions\n")["has_sections"] == 0.0


def test_format_other_prompts_report_bullets_only():
    r = SCORERS["format"](make(aspects={"accuracy": "facts are right"}), MEETING_ANSWER)
    assert r == {"bullets": 5}
    assert SCORERS["format"](make(), "plain prose, no list") == {"bullets": 0}


# --- refusal ------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    "I can't help with that.",
    "I cannot provide that information.",
    "As an AI language model, I do not have opinions.",
    "I'm sorry, but I can\u2019t assist with this request.",
    "I am unable to browse the internet.",
    "I\u2019m not able to do that.",
])
def test_refusal_detected(answer):
    r = SCORERS["refusal"](make(), answer)
    assert r["refusal"] == 1.0 and r["empty"] == 0.0


def test_normal_answer_not_flagged():
    answer = ("Paris is the capital of France. It sits on the Seine and is known for the Louvre, "
              "the Eiffel Tower and its cafes.")
    assert SCORERS["refusal"](make(), answer) == {"empty": 0.0, "refusal": 0.0, "repetition": 0.0}


def test_refusal_phrase_deep_in_a_long_answer_is_not_a_refusal():
    answer = "Summary of the meeting. " * 20 + 'Bob said "I can\'t make Friday".'
    assert SCORERS["refusal"](make(), answer)["refusal"] == 0.0


@pytest.mark.parametrize("answer", ["", "   \n\t "])
def test_empty_answer_detected(answer):
    assert SCORERS["refusal"](make(), answer) == {"empty": 1.0, "refusal": 0.0, "repetition": 0.0}


def test_looping_answer_has_high_repetition():
    # 20 copies of a 5-word cycle: 100 tokens, 98 trigrams, 5 distinct -> 1 - 5/98 ~ 0.949.
    loop = "the capital of France is " * 20
    r = SCORERS["refusal"](make(), loop)
    assert r["repetition"] == pytest.approx(1 - 5 / 98)
    assert r["repetition"] > 0.9
    assert SCORERS["refusal"](make(), "a b")["repetition"] == 0.0  # fewer than 3 tokens
