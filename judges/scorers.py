"""Cheap, deterministic answer scorers that run beside (or without) the LLM judge.

Each scorer is a small function `(prompt, answer) -> dict[str, float] | None`, registered
by name with `@scorer("name")` (in the manner of inspect_ai's scorers). It returns named
numbers (fractions in [0, 1] or counts), or None when it does not apply to the prompt,
e.g. a reference-based metric on a prompt without a `reference`. Every scorer's docstring
states its formula. Standard library only; all five together take about 2 ms on a
400-word answer.

    resolve(["rouge_l", "length"])           # config time: unknown names -> UserError
    score_all(["rouge_l", "length"], p, a)   # {"rouge_l.f1": 0.42, "length.words": 87, ...}

Text is compared as *tokens*: the text lowercased, apostrophes dropped ("don't" -> "dont"),
then every run of letters/digits/underscore is a token (all other punctuation separates).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from judges.text import APOSTROPHES, STOPWORDS, tokens
from runner.config.errors import UserError

if TYPE_CHECKING:
    from runner.config.prompts import Prompt

__all__ = ["SCORERS", "Scorer", "resolve", "score_all", "scorer", "tokens"]


class Scorer(Protocol):
    """`(prompt, answer) -> {field: number}`, or None when the scorer does not apply."""

    __name__: str
    __doc__: str | None

    def __call__(self, prompt: Prompt, answer: str) -> dict[str, float] | None: ...


SCORERS: dict[str, Scorer] = {}


def scorer(name: str) -> Callable[[Scorer], Scorer]:
    """Register a scorer under `name`; its docstring (the formula) is required."""

    def register(fn: Scorer) -> Scorer:
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is registered twice")
        if not (fn.__doc__ or "").strip():
            raise TypeError(f"scorer {name!r} needs a docstring giving its formula")
        if "." in name:
            raise ValueError(f"scorer name {name!r} may not contain '.' (used to flatten fields)")
        SCORERS[name] = fn
        return fn

    return register


def resolve(names: Iterable[str]) -> dict[str, Scorer]:
    """Validate scorer names up front (config time): name -> scorer, in the order given,
    duplicates dropped. Raises UserError naming every unknown scorer and the known ones."""
    if isinstance(names, str):  # a bare `judge.scorers=rouge_l` rather than a list
        names = [names]
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise UserError(f"unknown scorer{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                        f"in judge.scorers (known: {', '.join(sorted(SCORERS))})")
    return {n: SCORERS[n] for n in names}


def score_all(names: Iterable[str], prompt: Prompt, answer: str,
              options: dict[str, dict] | None = None) -> dict[str, float]:
    """Run the named scorers (each with its `options[name]` settings, e.g. {"notes": {"match":
    "lexical"}}); fields flattened as "<scorer>.<field>". Scorers that return None (not
    applicable) contribute no fields. Unknown names raise UserError."""
    out: dict[str, float] = {}
    for name, fn in resolve(names).items():
        result = fn(prompt, answer or "", **(options or {}).get(name, {}))
        if result is None:
            continue
        for key, value in result.items():
            out[f"{name}.{key}"] = value
    return out


# --- text helpers -------------------------------------------------------------------------

MAX_TOKENS = 2000  # ROUGE-L compares at most this many tokens of each side

def _reference_tokens(prompt: Prompt) -> list[str] | None:
    ref = getattr(prompt, "reference", None)
    toks = tokens(ref)
    return toks or None


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel form of the O(n*m) DP (Allison-Dix / Hyyro): one bit per token of `b`,
    one big-int step per token of `a`, so 2000 x 2000 tokens takes a few milliseconds
    instead of the DP's seconds. Bit j of `v` is 0 where the DP row gains one over column j-1;
    the zero count after all of `a` is the LCS. Checked against the plain DP in the tests.
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for j, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << j)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        m = masks.get(tok)
        if m is None:
            continue
        u = v & m
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


# --- scorers ------------------------------------------------------------------------------


@scorer("rouge_l")
def rouge_l(prompt: Prompt, answer: str) -> dict[str, float] | None:
    """ROUGE-L between the answer and `prompt.reference` on word tokens (lowercased,
    punctuation stripped, each side capped at 2000 tokens):
    L = LCS(answer, reference); precision = L / |answer|; recall = L / |reference|;
    f1 = 2PR / (P + R) (0 when L = 0). None when the prompt has no reference."""
    ref = _reference_tokens(prompt)
    if ref is None:
        return None
    ans = tokens(answer)[:MAX_TOKENS]
    ref = ref[:MAX_TOKENS]
    lcs = lcs_length(ans, ref)
    if lcs == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    p, r = lcs / len(ans), lcs / len(ref)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r)}


def salient_words(text: str | None) -> list[str]:
    """Unique tokens of length >= 4 that are not stopwords, in first-seen order."""
    seen: dict[str, None] = {}
    for tok in tokens(text):
        if len(tok) >= 4 and tok not in STOPWORDS:
            seen.setdefault(tok, None)
    return list(seen)


@scorer("keyword_coverage")
def keyword_coverage(prompt: Prompt, answer: str) -> dict[str, float] | None:
    """Salient reference words K = unique reference tokens of length >= 4 not in STOPWORDS;
    coverage = |{k in K : k is an answer token}| / |K| (exact token match, no stemming).
    Also reports `keywords` = |K| and `matched`. None without a reference, or when the
    reference has no salient word."""
    keys = salient_words(getattr(prompt, "reference", None))
    if not keys:
        return None
    have = set(tokens(answer))
    matched = sum(1 for k in keys if k in have)
    return {"coverage": matched / len(keys), "keywords": len(keys), "matched": matched}


@scorer("length")
def length(prompt: Prompt, answer: str) -> dict[str, float] | None:
    """words = number of answer tokens; characters = len(answer) (raw, unstripped);
    ratio_to_reference = answer tokens / reference tokens, present only when the prompt
    has a reference with at least one token."""
    words = len(tokens(answer))
    out: dict[str, float] = {"words": words, "characters": len(answer)}
    ref = _reference_tokens(prompt)
    if ref:
        out["ratio_to_reference"] = words / len(ref)
    return out


_BULLET = re.compile(r"^[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+\S", re.MULTILINE)
_MEETING_ASPECT = re.compile(r"(?<![a-z])(?:action[\s_-]*items?|decision)", re.IGNORECASE)  # "key_decisions"
_LEAD = re.compile(r"^[ \t]*(?:(?:[-*+>#\u2022]|\d{1,3}[.)])[ \t]*)*")  # bullets, numbers, #, >
_MARKUP = "*_` \t"
_DECISION = re.compile(r"\bdecision", re.IGNORECASE)
_ACTION = re.compile(r"\baction", re.IGNORECASE)


def _is_meeting(prompt: Prompt) -> bool:
    if "meeting" in (t.lower() for t in getattr(prompt, "tags", ()) or ()):
        return True
    aspects = getattr(prompt, "aspects", None) or {}
    return any(_MEETING_ASPECT.search(f"{k} {v}") for k, v in aspects.items())


def _headings(answer: str) -> list[str]:
    """Text of the lines that look like section headings, once leading bullet/number/#
    markers and bold/italic markup are stripped: `# ...` lines, wholly **bold** lines,
    `Label:` lines (label of <= 5 words, text may follow the colon; the label is kept),
    and bare lines of <= 4 words."""
    heads = []
    for raw in answer.splitlines():
        line = raw.strip()
        body = _LEAD.sub("", line).strip(_MARKUP)
        if not body:
            continue
        label, colon, _ = body.partition(":")
        label = label.strip(_MARKUP)
        if colon and 0 < len(label.split()) <= 5:
            heads.append(label)
        elif line.startswith("#") or len(body.split()) <= 4 or (
                line.startswith(("**", "__")) and line.endswith(("**", "__"))):
            heads.append(body)
    return heads


@scorer("format")
def format_(prompt: Prompt, answer: str) -> dict[str, float] | None:
    """bullets = number of lines starting (after indentation) with -, *, +, a bullet sign,
    or a number followed by "." or ")" (e.g. "1."), then a space and text.
    For meeting-style prompts (a tag "meeting", or an aspect name/description mentioning
    action items or decisions) also has_sections = 1.0 when some heading line mentions
    "decision" and some heading line mentions "action" (case-insensitive), else 0.0.
    Heading lines (after stripping bullet/number/# markers and **markup**): `# ...` lines,
    wholly **bold** lines, `Label:` lines (label <= 5 words; the label is tested), bare
    lines of <= 4 words. "decision"/"action" match at a word start ("Decisions", "Action
    items"; not "transaction")."""
    out: dict[str, float] = {"bullets": len(_BULLET.findall(answer))}
    if _is_meeting(prompt):
        heads = _headings(answer)
        has = any(_DECISION.search(h) for h in heads) and any(_ACTION.search(h) for h in heads)
        out["has_sections"] = 1.0 if has else 0.0
    return out


REFUSAL_WINDOW = 300  # refusals lead the answer; a quoted "I can't" deep in a summary is not one
_REFUSAL = re.compile(
    r"\b(?:"
    r"i\s+(?:can't|cannot|can\s+not|won't|will\s+not)\b"
    r"|i(?:'m|\s+am)\s+(?:unable|not\s+able)\s+to\b"
    r"|as\s+an\s+ai\b"
    r"|as\s+a\s+language\s+model\b"
    r"|i(?:'m|\s+am)\s+sorry,?\s+but\b"
    r"|i\s+apologi[sz]e,?\s+but\b"
    r"|sorry,?\s+(?:but\s+)?i\s+(?:can't|cannot|won't)\b"
    r"|i\s+(?:must|have\s+to)\s+(?:decline|refuse)\b"
    r")",
    re.IGNORECASE,
)


@scorer("refusal")
def refusal(prompt: Prompt, answer: str) -> dict[str, float] | None:
    """empty = 1.0 when the stripped answer is empty, else 0.0.
    refusal = 1.0 when the first 300 characters match a refusal phrase ("I can't",
    "I cannot", "I won't", "I am/I'm unable to", "I'm not able to", "As an AI",
    "as a language model", "I'm sorry, but", "I apologize, but", "I must decline"), else 0.0.
    repetition = 1 - unique / total over the answer's word 3-grams (0.0 with fewer than
    3 tokens); a degenerate loop scores close to 1."""
    text = answer.strip()
    head = APOSTROPHES.sub("'", text[:REFUSAL_WINDOW])
    toks = tokens(text)
    grams = list(zip(toks, toks[1:], toks[2:], strict=False))
    repetition = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    return {
        "empty": 0.0 if text else 1.0,
        "refusal": 1.0 if _REFUSAL.search(head) else 0.0,
        "repetition": repetition,
    }


# Registered here so that `judges.scorers` alone knows every scorer; the logic is its own module.
from judges import notes as _notes  # noqa: E402


@scorer("notes")
def notes(prompt: Prompt, answer: str, match: str = "semantic") -> dict[str, float] | None:
    """Meeting notes checked item by item against `prompt.reference_items` (judges/notes.py
    gives every step): per-section recall and precision, owner and due-date accuracy over
    matched action items, invented, extra, duplicated, contradicted and chatter statements, sections
    present, and score = 1 + 4 x completeness x accuracy x faithfulness (completeness = recall;
    accuracy = mean (owner right + due right) / 2 over matched action items; faithfulness =
    0.7^invented x 0.5^contradicted x 0.9^duplicates x 0.9^extra). Any layout: headings are
    evidence, not a precondition. Items are paired by `match` (judges/matching.py): semantic
    (meaning, words, facts) or lexical (words, facts). None without reference_items."""
    return _notes.score(prompt, answer, match)


from judges import coverage as _coverage  # noqa: E402


@scorer("reference_coverage")
def reference_coverage(prompt: Prompt, answer: str, match: str = "semantic") -> dict[str, float] | None:
    """A prompt with a `reference` text but no reference_items, graded by meaning
    (judges/coverage.py): coverage = (reference statements stated + 0.5 x stated with a fact
    changed) / reference statements; unsupported = answer statements neither stating one nor
    supported by the prompt's text / answer statements; score = 1 + 4 x coverage x max(0, 1 - 0.3
    x unsupported statements). None without a reference, and where reference_items exist (the
    `notes` scorer grades those)."""
    if prompt.reference_items is not None and prompt.reference_items.count():
        return None
    return _coverage.score(prompt, answer, match)
