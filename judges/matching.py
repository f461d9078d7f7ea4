"""Which answer item states which reference item: evidence from meaning, words and facts.

For a reference item r and an answer item a (judges/notes.py parses both):

- `lex`  = |stems(r) & stems(a)| / |stems(r)|: the share of the reference's content stems the
  answer item uses (notes.content_stems: stopwords, names and date words left out);
- `cos`  = cosine of their all-MiniLM-L6-v2 sentence embeddings (judges/embedding.py), the
  meaning whatever the words;
- `facts` = the item's facts that agree with the reference: the same owner (action items) and
  the same date (an action item's due; any date a decision or question names), each +1.

  evidence(r, a) = max(lex, (cos - COS_FLOOR) / (1 - COS_FLOOR)) + FACT_WEIGHT x facts

with COS_FLOOR 0.25 (unrelated meeting items reach cosine 0.1-0.3) and FACT_WEIGHT 0.15, and a
pair may match when evidence >= MATCH_THRESHOLD (0.4). A decision restated in other words
(cosine ~0.5) matches on meaning; one with only its date in common (cosine ~0.3) matches when
the date agrees; a rewording of the same words matches on stems as before. `lexical` matching
is the same with cos left out (evidence = lex + FACT_WEIGHT x facts).

Contradictions are not matches: a decision that negates what the reference decided
(`contradicts`: "not"/"no"/"never"/"instead of"/"won't"... before a word the other side asserts)
or a decision or question that names another date than the reference's is `contradicted`: its
reference item stays unmatched and the item counts against the answer. An action item with another owner or another due date
still matches its task (the owner and due are then graded wrong).

Pairs are assigned one to one so that the sum of their ranks is highest (the assignment problem,
scipy's linear_sum_assignment), each pair ranked by max(lex, cos term) + FACT_TIEBREAK (0.01) x
facts + SAME_SECTION_BONUS (0.15) when the answer item sits in the reference item's own section:
agreeing facts make a pair possible (the threshold), what the items say decides which pair it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from judges import dates
from judges.text import STOPWORDS, stem

MATCHINGS = ("semantic", "lexical")
MATCH_THRESHOLD = 0.4
SAME_SECTION_BONUS = 0.15
COS_FLOOR = 0.25
FACT_WEIGHT = 0.15
MAX_FACTS = 2  # owner and date
# Pairs are ranked by what they say, facts only breaking near-ties: with every owner and date rotated
# one item down, "Noor - verify the iPad fix - May 22" states the verify task with Noor's facts, and
# must not be paired with Noor's own item for them.
FACT_TIEBREAK = 0.01

# A cue and the words it negates, up to the clause's end ("will not use hot-desking; ...").
_SCOPE = r"((?:[^,;:()!?\n.]|\.(?=\d))*)"  # to the clause's end; "4.50" is one word
_NEGATED = re.compile(r"\b(?:no|not|never|nobody|none|nothing|neither|nor|zero|without|no longer|rejected|decided against"
                      r"|ruled out|turned down|cancel(?:l?ed)?|won'?t|cannot|can'?t|isn'?t|aren'?t|don'?t|doesn'?t|didn'?t"
                      r"|shouldn'?t|wouldn'?t|is off|was dropped|is dropped|was scrapped)\b(?!-)" + _SCOPE, re.I)  # "no-go" is a noun
# What a change leaves behind counts as negated too: "Greenfield instead of Millbrook", "switch
# from Millbrook to Greenfield" (a short phrase between "from" and a named or numbered "to ...") (so the two agree, and "Millbrook instead of Greenfield" does not).
_LEFT_BEHIND = re.compile(r"(?:\b(?:instead of|rather than|in place of|replac(?:e|es|ed|ing)|formerly|previously|up from"
                          r"|down from)|\(was)\s+((?:(?!\b(?:with|by|as)\b)"
                          r"[^,;:()!?\n.]|\.(?=\d))*)"
                          r"|\bfrom\s+((?:[\w'./-]+\s+){1,4}?)to\s+(?=(?-i:[A-Z0-9]))", re.I)
_KEEP = frozenset({"now", "later", "first", "before", "after", "all", "only", "every"})  # these carry the claim


_WORD = re.compile(r"\d+(?:[.,:]\d+)*|[^\W\d_]+")


def _stems(text: str) -> set[str]:
    words = _WORD.findall(text.lower().replace("'", ""))
    return {w if w[0].isdigit() else stem(w) for w in words if w not in STOPWORDS or w in _KEEP} - {"no", "not", "never"}


_ELSE = re.compile(r"\s*(?:else|other|others|further|more|additional|new)\b", re.I)
_DATE_WORDS = frozenset([*dates.MONTHS, *dates.WEEKDAYS, "today", "tomorrow"])
_SCOPE_END = frozenset("by until before after then if when because so unless since while but and or in on at for of "
                       "from to with over during within across starting beginning effective as".split())


def _scope_stems(scope: str, most: int = 3, dates_too: bool = True) -> set[str]:
    """What a negation is about: up to three content words from its first one, before a word
    that starts another phrase ("not merged by then moves ..." is about "merged", "no views in the
    last 12 months" about "views", "not in Q1" about "Q1")."""
    kept: list[str] = []
    for w in _WORD.findall(scope.lower().replace("'", "")):
        if kept and (w in _SCOPE_END or len(kept) == most):
            break
        if (w not in STOPWORDS or w in _KEEP) and (dates_too or not (w in _DATE_WORDS or (w.isdigit() and len(w) <= 2))):
            kept.append(w)
    return _stems(" ".join(kept))


# "shared rather than assigned, except for people with special equipment": the exception keeps what
# the change leaves behind, so it is not denied.
_EXCEPT = re.compile(r"\b(?:except|apart from|aside from|other than|save for|but for|only for|unless)\b", re.I)


_WAITING = re.compile(r"^\s*(?:waiting|wait|holding off|going)\s+(?:for|until|till|with)\s+", re.I)


@functools.lru_cache(maxsize=4096)
def polarity(text: str) -> tuple[bool, set[str], set[str]]:
    """(negated at all, stems in a negation's scope or left behind by a change, the other stems)."""
    text = text.strip()
    # "nothing else changes", "no other decisions": a negation about everything else claims nothing here
    scopes = [m.group(1) for m in _NEGATED.finditer(text) if not _ELSE.match(m.group(1))]
    left = [] if _EXCEPT.search(text) else [_WAITING.sub("", m.group(1) if m.group(1) is not None else m.group(2))
                                            for m in _LEFT_BEHIND.finditer(text)]
    # what a change leaves behind is a name or a value, not the date it happens: "instead of
    # Millbrook starting July 1"
    negated = set().union(*(_scope_stems(s) for s in scopes), *(_scope_stems(s, 2, dates_too=False) for s in left))
    rest = _LEFT_BEHIND.sub(" ", _NEGATED.sub(" ", text))
    return bool(scopes or left), negated, _stems(rest) - negated


def contradicts(ref: str, ans: str) -> bool:
    """A statement contradicts the reference's when one negates what the other asserts:
    its polarity differs and a negated word is asserted on the other side ("will not use
    hot-desking" against "uses hot-desking"), or both are negated and the answer negates a word
    the reference asserts (the negation moved: "fixed now, not in Q1" against "fixed in Q1, not
    now"). Using "instead of"/"not" in agreement is no contradiction: "Sourdough rises to 4.90
    (was 4.50)" against "goes from 4.50 to 4.90", "shared rather than assigned, except for
    special equipment" against "hot-desking, with assigned desks only for special equipment"."""
    neg_r, in_r, out_r = polarity(ref)
    neg_a, in_a, out_a = polarity(ans)
    if neg_r != neg_a:
        return bool(in_a & out_r or in_r & out_a)
    return neg_r and bool((in_a - in_r) & out_r)


_WHEN_STARTS = re.compile(r"\b(?:starting|beginning|effective|as of|from|until|by|after|before)\b", re.I)
_NOT_DATE = re.compile(r"\b(?:not|never|rather than|instead of)\s+(?:on\s+|in\s+|by\s+|the\s+)?$", re.I)


def date_polarity(text: str, meeting) -> tuple[set, set]:
    """(dates the text asserts, dates it denies): a date left behind by a change ("moved to March
    29 instead of March 22", "from Thursday May 22 to Tuesday May 27") or right after "not" ("not
    on March 22") is denied. A date in a negated clause's condition ("if it isn't merged by
    Friday") is neither denied nor a fact to contradict: it stays asserted."""
    spans = []
    for m in _LEFT_BEHIND.finditer(text):
        group = 1 if m.group(1) is not None else 2
        start, end = m.span(group)
        stop = _WHEN_STARTS.search(text, start, end)  # "instead of Millbrook starting July 1": July 1 is when
        spans.append((start, stop.start() if stop else end))
    asserted, denied = set(), set()
    for pos, date in dates.find_dates(text, meeting):
        left = any(a <= pos < b for a, b in spans) or _NOT_DATE.search(text[max(0, pos - 20):pos])
        (denied if left else asserted).add(date)
    return asserted, denied


def meaning_or_words(lex: float, cos: float | None) -> float:
    """The evidence before facts: max(lex, (cos - COS_FLOOR) / (1 - COS_FLOOR)); lex alone when
    matching is lexical (cos None)."""
    return lex if cos is None else max(lex, (cos - COS_FLOOR) / (1 - COS_FLOOR))


@dataclass(frozen=True)
class Pair:
    ref: int
    ans: int
    evidence: float
    contradicted: bool


@dataclass
class Assignment:
    ref_to_ans: dict[int, int]
    ans_to_ref: dict[int, int]
    contradicted: set[int]  # answer items that contradict the reference item they state


def assign(n_ref: int, n_ans: int, lex: Callable[[int, int], float], cos: Callable[[int, int], float] | None,
           facts: Callable[[int, int], tuple[int, bool]], same_section: Callable[[int, int], bool],
           weight: Callable[[int], float] | None = None) -> Assignment:
    """One-to-one assignment. `facts(i, j)` gives (agreeing facts, contradicted); `cos` None is
    lexical matching; `weight(j)` scales answer item j's evidence from meaning and words (a
    preamble line states an item only when it says it plainly)."""
    pairs: list[tuple[float, int, int, bool]] = []
    for i in range(n_ref):
        for j in range(n_ans):
            base = meaning_or_words(lex(i, j), None if cos is None else cos(i, j)) * (weight(j) if weight else 1.0)
            if base + FACT_WEIGHT * MAX_FACTS < MATCH_THRESHOLD:
                continue  # no agreeing fact could make this pair a match
            agree, contra = facts(i, j)
            ev = base + FACT_WEIGHT * agree
            if ev >= MATCH_THRESHOLD:  # agreeing facts make a pair possible; what it says ranks it
                rank = base + FACT_TIEBREAK * agree + (SAME_SECTION_BONUS if same_section(i, j) else 0.0)
                pairs.append((rank, i, j, contra))
    out = Assignment({}, {}, set())
    if not pairs:
        return out
    # The pairing that says the most in total (linear_sum_assignment), not the best pair first: a
    # decision "screenshot updates are limited to the top 50 articles" may resemble the screenshot
    # task more than its own decision, and greedy pairing would leave the task's own line unpaired.
    from scipy.optimize import linear_sum_assignment

    rank = np.full((n_ref, n_ans), -1.0)
    contra_of = {}
    for r, i, j, contra in pairs:
        rank[i, j] = r
        contra_of[(i, j)] = contra
    rows, cols = linear_sum_assignment(np.where(rank >= 0, -rank, 1e6))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        if rank[i, j] < 0:
            continue
        if contra_of[(i, j)]:  # the reading of this item the pairing chose contradicts a reference item: no match
            out.contradicted.add(j)
            continue
        out.ref_to_ans[i], out.ans_to_ref[j] = j, i
    return out
