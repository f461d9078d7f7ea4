"""What the transcript says, for answer statements that match no reference item: chatter,
extra or invented.

- **chatter**: a statement that states no fact: no person's name, no date, no number and no
  content word of the transcript beyond the words of talk about a summary ("Sure! Here's a
  summary of the meeting", "Let me know if you need anything else"). Neither matched nor
  invented.
- **supported** (an *extra* item when it matches no reference item): the transcript says it.
  Some window of WINDOW consecutive transcript sentences holds at least SUPPORT_SHARE of the
  statement's content stems (judges.notes.content_stems), and every number and every date the
  statement names occurs in the transcript (words of telling, META, left out: "Hugo mentioned
  that ..."). A discussion point listed as a decision is supported. Words, not meaning: a sentence embedding puts "the backup job moves outside
  working hours" next to "the backup job overlaps working hours" (cosine > 0.7), so a made-up
  decision in the meeting's words would pass as said; its new words ("moves", "outside") do not.
  A statement in a context block (before the first heading, under "Summary") sums the meeting
  up: CONTEXT_SHARE of its stems anywhere in the transcript support it.
- **invented**: the rest: what nobody in the meeting said.

The transcript's sentences, stems and dates are computed once per prompt (`Transcript.of`), with
the scorer's own stems (passed in: this module sits below judges/notes.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from judges import dates
from judges.text import stem, tokens

WINDOW = 3
SUPPORT_SHARE = 0.85
CONTEXT_SHARE = 0.5
# Words of talk about the summary itself, not of the meeting: a line made of these states nothing.
META = frozenset(stem(w) for w in """
summary summarize summarized summarizing recap recapped meeting meetings notes note minutes discussed discussion discuss
team everyone everybody all key points point items item decisions decision decided action actions questions question
open follow follows up ups below above here hope helps helpful let know need needs anything else happy help sure
certainly great thanks thank clarification further details detail email hi hello dear best regards cheers attendees
agenda today outcome outcomes overview quick brief following main list listed highlights next steps step please reach
additional information glad absolutely okay ok of course assist provide provided want would like pleasure
mentioned mention said says noted note explained reported asked suggested pointed talked confirmed raised shared
feel free ask asking changes change adjust adjustments edit edits modify clarify clarifying expand elaborate assistance
concise short version format formatted below following response reply assigned several few
""".split())

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SPEAKER = re.compile(r"^\s*[^\W\d_][\w'-]*(?: [^\W\d_][\w'-]*)?:\s*")


@dataclass(frozen=True)
class Transcript:
    sentences: tuple[str, ...]
    stems: tuple[frozenset[str], ...]
    words: frozenset[str]  # every content stem of the transcript
    numbers: frozenset[str]
    dates: frozenset[dt.date]

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def of(text: str, meeting: dt.date | None, content_stems: Callable[[str, set[str]], set[str]]) -> Transcript:
        """The transcript read once; `content_stems` is the scorer's own (judges.notes.content_stems),
        so a statement and the transcript are cut into the same stems."""
        sentences = tuple(s.strip() for line in text.splitlines() for s in _SENTENCE.split(_SPEAKER.sub("", line))
                          if s.strip())
        stems = tuple(frozenset(content_stems(s, set())) for s in sentences)
        return Transcript(sentences, stems, frozenset().union(*stems), frozenset(_numbers(text)),
                          frozenset(d for _, d in dates.find_dates(text, meeting)))


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def is_chatter(text: str, stems: set[str], names: set[str] | frozenset, transcript: Transcript,
               meeting: dt.date | None) -> bool:
    """No name, no number, no date and no content stem of the transcript outside META."""
    if any(t in names for t in tokens(text)) or _NUMBER.search(text) or dates.find_dates(text, meeting):
        return False
    return not (stems & transcript.words) - META


def is_supported(stems: set[str], text: str, transcript: Transcript, meeting: dt.date | None,
                 context: bool = False) -> bool:
    """Some window of the transcript states it (see the module's docstring). A `context`
    statement (a preamble such as "The team met to plan the office move") needs only
    CONTEXT_SHARE of its stems anywhere in the transcript: it sums up, it does not report."""
    if not _numbers(text) <= transcript.numbers:
        return False
    if not {d for _, d in dates.find_dates(text, meeting)} <= transcript.dates:
        return False
    stems = stems - META  # "Hugo mentioned that ...": the telling is no fact to support
    if not stems:
        return True
    if context and len(stems & transcript.words) >= CONTEXT_SHARE * len(stems):
        return True
    n = len(transcript.stems)
    for start in range(max(1, n - WINDOW + 1)):
        window = frozenset().union(*transcript.stems[start:start + WINDOW])
        if len(stems & window) >= SUPPORT_SHARE * len(stems):
            return True
    return False
