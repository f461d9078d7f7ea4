"""Degenerate answers, named: an answer that cannot be a summary of anything, whatever a grader
says of it. One class per answer, the first that applies, in this order:

- `empty`: no word in the answer.
- `loop`: the loop stop ended it (`stopped_loop`), or its last words are one run of words
  repeated back to back (`tail_loop`), or repetition >= LOOP_REPETITION over at least
  LOOP_MIN_WORDS words (repetition = 1 - unique / total word 3-grams, as the `refusal` scorer
  reports it).
- `echo`: at least ECHO_SHARE of its words sit in a run of ECHO_NGRAM words that also occurs in
  the system or user prompt, over at least ECHO_MIN_WORDS words: it repeats the prompt (the
  instructions or the transcript) rather than answering it.
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

RULES = {
    "loop": f"stopped by the loop stop, or its last words are a run of <= {LOOP_MAX_PERIOD} words repeated "
            f">= {LOOP_REPEATS} times back to back (>= {LOOP_MIN_SPAN} words), or 1 - unique/total word "
            f"3-grams >= {LOOP_REPETITION} over >= {LOOP_MIN_WORDS} words",
    "echo": f">= {ECHO_SHARE:.0%} of its words (of >= {ECHO_MIN_WORDS}) in a {ECHO_NGRAM}-word run that also "
            f"occurs in the system or user prompt",
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


def echo_share(ws: list[str], prompt_texts: Iterable[str]) -> float:
    """Share of the answer's words covered by a run of ECHO_NGRAM words found in the prompt."""
    if len(ws) < ECHO_NGRAM:
        return 0.0
    seen = set()
    for text in prompt_texts:
        pw = words(text)
        seen.update(zip(*(pw[i:] for i in range(ECHO_NGRAM)), strict=False))
    covered = [False] * len(ws)
    for i in range(len(ws) - ECHO_NGRAM + 1):
        if tuple(ws[i:i + ECHO_NGRAM]) in seen:
            covered[i:i + ECHO_NGRAM] = [True] * ECHO_NGRAM
    return sum(covered) / len(ws)


def classify(text: str | None, prompt_texts: Iterable[str] = (), stopped_loop: bool = False) -> str | None:
    """empty, loop or echo (the rules above), else None. off_task needs the answer's grade: see
    `with_grade`."""
    ws = words(text)
    if not ws:
        return "empty"
    if stopped_loop or is_loop(ws):
        return "loop"
    if len(ws) >= ECHO_MIN_WORDS and echo_share(ws, prompt_texts) >= ECHO_SHARE:
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
