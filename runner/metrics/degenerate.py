"""Degenerate answers, named: an answer that cannot be a summary of anything, whatever a grader
says of it. One class per answer, the first that applies, in this order:

- `empty`: no word in the answer.
- `loop`: the loop stop ended it (`stopped_loop`), or its last words are one run of words
  repeated back to back (`tail_loop`), or repetition >= LOOP_REPETITION over at least
  LOOP_MIN_WORDS words (repetition = 1 - unique / total word 3-grams, as the `refusal` scorer
  reports it).
- `echo`: it repeats the prompt instead of answering it, over at least ECHO_MIN_WORDS words:
  either the instructions (at least ECHO_SHARE of its words sit in a run of ECHO_NGRAM words that
  also occurs in the system message or the user message's first paragraph), or the material it
  was given, retold line by line, at length (`retold`: at least RETELL_LINES lines of the user
  message, each of >= ECHO_NGRAM words and at least RETELL_COVER of them in the answer's runs,
  holding at least RETELL_SHARE of the answer's words and at least RETELL_LENGTH of the message's,
  mostly in the message's order). A summary that quotes the
  transcript's phrases for its facts ("Raj: technical plan for the sync rewrite by June 13")
  copies phrases, not lines, and is not an echo.
- `off_task`: the prompt carries reference_items and the `notes` scorer matched none of them
  (`notes.recall` == 0): read from the answer's grade (runner/store/summary.py), never matched here.

The loop stop applies the same tail rule to the streamed text (`LoopStop`), so an answer the stop
ended is a loop by the rule that ended it. Words are the lowercased runs of letters and digits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

CLASSES = ("empty", "loop", "echo", "off_task")

LOOP_REPETITION = 0.5  # references of the shipped sets: <= 0.1; the pack's looping answers: 0.45-0.96
LOOP_MIN_WORDS = 30
# The tail rule (and the loop stop): the last words are one run of at most LOOP_MAX_PERIOD words
# repeated at least LOOP_REPEATS times back to back, spanning at least LOOP_MIN_SPAN words.
LOOP_MAX_PERIOD = 40
LOOP_REPEATS = 4
LOOP_MIN_SPAN = 24
ECHO_NGRAM = 6
ECHO_SHARE = 0.8
ECHO_MIN_WORDS = 6
RETELL_LINES = 3
RETELL_COVER = 0.8
RETELL_SHARE = 0.5
RETELL_LENGTH = 0.25  # "at length": a summary that copies a few of the transcript's sentences is no retelling
RETELL_ORDER = 0.8  # share of the copied lines that keep the message's order (longest increasing run)

RULES = {
    "loop": f"stopped by the loop stop, or its last words are a run of <= {LOOP_MAX_PERIOD} words repeated "
            f">= {LOOP_REPEATS} times back to back (>= {LOOP_MIN_SPAN} words), or 1 - unique/total word "
            f"3-grams >= {LOOP_REPETITION} over >= {LOOP_MIN_WORDS} words",
    "echo": f">= {ECHO_SHARE:.0%} of its words (of >= {ECHO_MIN_WORDS}) in {ECHO_NGRAM}-word runs of the "
            f"instructions (system message, the user message's first paragraph), or >= {RETELL_LINES} lines of the "
            f"user message copied (>= {RETELL_COVER:.0%} of each), in order, holding >= {RETELL_SHARE:.0%} of its words "
            f"and >= {RETELL_LENGTH:.0%} of the message's",
    "empty": "no word",
    "off_task": "the prompt has reference_items and the notes scorer matched none (notes.recall = 0)",
}

_WORD = re.compile(r"[^\W_]+")


def words(text: str | None) -> list[str]:
    return _WORD.findall((text or "").lower())


def repetition(ws: list[str]) -> float:
    """1 - unique / total word 3-grams (0.0 with fewer than 3 words)."""
    grams = list(zip(ws, ws[1:], ws[2:], strict=False))
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def tail_loop(ws: list[str]) -> int | None:
    """The period (in words) of the run the answer ends in, when the tail rule holds; else None."""
    n = len(ws)
    for p in range(1, min(LOOP_MAX_PERIOD, n // LOOP_REPEATS) + 1):
        span = max(LOOP_REPEATS * p, LOOP_MIN_SPAN)
        if span > n:
            continue
        tail = ws[n - span:]
        if all(tail[i] == tail[i - p] for i in range(p, span)):
            return p
    return None


def is_loop(ws: list[str]) -> bool:
    return tail_loop(ws) is not None or (len(ws) >= LOOP_MIN_WORDS and repetition(ws) >= LOOP_REPETITION)


def _grams(ws: list[str]) -> set[tuple[str, ...]]:
    return set(zip(*(ws[i:] for i in range(ECHO_NGRAM)), strict=False))


def _covered(ws: list[str], seen: set[tuple[str, ...]]) -> list[bool]:
    covered = [False] * len(ws)
    for i in range(len(ws) - ECHO_NGRAM + 1):
        if tuple(ws[i:i + ECHO_NGRAM]) in seen:
            covered[i:i + ECHO_NGRAM] = [True] * ECHO_NGRAM
    return covered


def echo_share(ws: list[str], prompt_texts: Iterable[str]) -> float:
    """Share of the answer's words covered by a run of ECHO_NGRAM words found in the prompt."""
    if len(ws) < ECHO_NGRAM:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    for text in prompt_texts:
        seen |= _grams(words(text))
    return sum(_covered(ws, seen)) / len(ws)


def instructions_and_material(prompt_texts: Iterable[str]) -> tuple[list[str], str]:
    """(the instructions, the material): the last text is the user message; its first paragraph
    and every text before it (the system message) are instructions, the whole of it the material."""
    texts = [t for t in prompt_texts if t]
    if not texts:
        return [], ""
    user = texts[-1]
    return [*texts[:-1], user.strip().split("\n\n", 1)[0]], user


def retold(ws: list[str], material: str) -> bool:
    """The answer copies RETELL_LINES or more of the material's lines, in its order, and they hold
    RETELL_SHARE of the answer's words (the rule above)."""
    if len(ws) < ECHO_NGRAM or not material:
        return False
    answer = _grams(ws)
    copied: list[tuple[int, set]] = []  # (first position in the answer, the line's runs)
    material_words = copied_words = 0
    starts = {g: i for i, g in reversed(list(enumerate(zip(*(ws[i:] for i in range(ECHO_NGRAM)), strict=False))))}
    for line in material.splitlines():
        lw = words(line)
        material_words += len(lw)
        if len(lw) < ECHO_NGRAM:
            continue
        grams = _grams(lw)
        if sum(_covered(lw, answer & grams)) >= RETELL_COVER * len(lw):
            copied.append((min(starts[g] for g in grams & answer), grams))
            copied_words += len(lw)
    if len(copied) < RETELL_LINES or copied_words < RETELL_LENGTH * material_words:
        return False
    share = sum(_covered(ws, set().union(*(g for _, g in copied)))) / len(ws)
    return share >= RETELL_SHARE and _increasing([p for p, _ in copied]) >= RETELL_ORDER * len(copied)


def _increasing(xs: list[int]) -> int:
    """Length of the longest increasing subsequence."""
    import bisect

    tails: list[int] = []
    for x in xs:
        i = bisect.bisect_left(tails, x)
        tails[i:i + 1] = [x]
    return len(tails)


def classify(text: str | None, prompt_texts: Iterable[str] = (), stopped_loop: bool = False) -> str | None:
    """empty, loop or echo (the rules above), else None. off_task needs the answer's grade: see
    `with_grade`."""
    ws = words(text)
    if not ws:
        return "empty"
    if stopped_loop or is_loop(ws):
        return "loop"
    if len(ws) >= ECHO_MIN_WORDS:
        instructions, material = instructions_and_material(prompt_texts)
        if echo_share(ws, instructions) >= ECHO_SHARE or retold(ws, material):
            return "echo"
    return None


def with_grade(cls: str | None, scores: dict | None) -> str | None:
    """The record's class, or off_task when the notes scorer applied and matched nothing."""
    if cls is None and (scores or {}).get("notes.recall") == 0:
        return "off_task"
    return cls


class LoopStop:
    """The tail rule on a streamed answer: `feed(delta)` is True once the text so far ends in a
    loop, and the backend then stops generating. Only the tail is kept and checked (the last
    TAIL_CHARS characters), so each check costs the same however long the answer grows;
    `spent_s` is the time the checks took (they run between a chunk's arrival stamp and the
    next read)."""

    TAIL_CHARS = 2400  # > LOOP_MAX_PERIOD x LOOP_REPEATS words of ~10 characters

    def __init__(self) -> None:
        self.tail = ""
        self.stopped = False
        self.spent_s = 0.0

    def feed(self, delta: str) -> bool:
        t0 = time.perf_counter()
        self.tail = (self.tail + delta)[-self.TAIL_CHARS:]
        ws = words(self.tail)
        if self.tail and self.tail[0].isalnum() and len(self.tail) == self.TAIL_CHARS:
            ws = ws[1:]  # the cut may have split the first word
        self.stopped = tail_loop(ws) is not None
        self.spent_s += time.perf_counter() - t0
        return self.stopped


def answer_fields(text: str, prompt_texts: Iterable[str], stop: LoopStop | None) -> dict:
    """A record's degenerate fields: `degenerate` (empty, loop, echo or None), `stopped_loop` (the
    loop stop ended the answer; its finish_reason then reads `stopped_loop`) and `loop_check_s`
    (the checks' time, seconds, spent between chunk reads; None without the stop)."""
    stopped = bool(stop and stop.stopped)
    out = {"degenerate": classify(text, prompt_texts, stopped), "stopped_loop": stopped,
           "loop_check_s": stop.spent_s if stop else None}
    if stopped:
        out["finish_reason"] = "stopped_loop"
    return out
