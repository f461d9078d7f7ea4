"""The `notes` scorer: a meeting-notes answer checked item by item against `reference_items`.

Deterministic: with `semantic` matching a sentence-embedding model (all-MiniLM-L6-v2, run in
NumPy) compares meanings; with `lexical` matching no model at all. Steps:

Layout is evidence, not a precondition (docs/quality.md, "Reading any layout"):

1. **Blocks.** Heading lines for Decisions, Action items and Open questions in the forms models
   write (markdown `#`, **bold**, `Label:`, numbered "2. Next steps", a lead-in ending in a colon,
   any case and many synonyms) give the items under them that kind. A line holding only a
   person's name (`**Samuel**`, `*Samuel*`, `### Samuel`, `Samuel:`, "For Samuel:") makes that
   person the owner of the items under it, until the next heading or prose paragraph. Lines
   before the first heading and blocks under headings that hold no items ("Summary",
   "Attendees", "Discussion") are `context`: matched like any line, with their evidence weighed
   CONTEXT_WEIGHT, and an unmatched context line costs nothing. Under any other heading, or with
   none, an item's content gives its kind (a question; a named person with a task cue or a date:
   an action item; else a decision).
2. **Statements.** Each bullet or numbered line, table row (Owner/Task/Due columns in any order
   and names; the due column read as "due <cell>") or sentence is a statement; a wrapped line or
   a deeper sub-bullet continues it, as do "Owner: X"/"Due: Y" field lines and a sentence opening
   with "That/This/It depends..."; a sentence is cut into joined clauses with a person's name as
   subject ("Noor merges the fix by Thursday, and Hugo verifies it by Friday"). "None" lines are
   no statements. **Chatter** (judges/support.py: no name, date, number or content word of the
   transcript beyond words of talk about a summary) is neither matched nor invented.
3. **Matching** (judges/matching.py): evidence(ref, ans) = max(stem overlap, (embedding cosine -
   0.25) / 0.75) + 0.15 x agreeing facts (owner, date); a pair may match at >= 0.4; the pairing
   is the one of highest total rank (evidence from meaning and words + 0.01 x facts + 0.15 when
   the kinds agree), one to one. The embedding compares what an item says without who and when
   (`_what`). Content stems: word tokens (judges.text.tokens) minus stopwords, people's names and
   date words, with a trailing "s" dropped and cut to 6 characters; overlap = |stems(ref) &
   stems(ans)| / |stems(ref)|. `lexical` matching leaves the cosine out. A decision that negates
   the reference's, or a decision or question naming another date or the date the reference left
   behind, is `contradicted`, not matched.
4. **Fields** of a matched action item: the owner is a name from the transcript's speakers and
   the reference's owners (an "Owner:" label first, a cue such as "falls to X" or "X's job", a
   name opening the item, one closing it after a dash, one in parentheses, "<name> will/to/:",
   then the first name mentioned), compared by first name, case-insensitive. The due date
   (judges.dates; relative forms against the meeting's date, the first date in the transcript)
   is a date after an explicit cue ("due", "by", "deadline", "no later than"), else after a weak
   one ("on", "before", "until"), else the item's last date; a reference due of null is met by
   an item with no date.

Figures per answer (each None where undefined):
- `<section>_recall` = matched reference items of that kind / reference items of that kind;
- `<section>_precision` = items in that answer section matched to a reference item of the same
  kind / items in that answer section;
- `recall` = matched reference items / all reference items; `precision` = matched answer items /
  answer items;
- `owner_accuracy`, `due_accuracy` = share of matched action items with the right owner / due;
- `contradicted` = answer items that state a reference decision's opposite or another date;
- `duplicates` = unmatched answer items that restate a matched item (Dice coefficient of their
  stems, 2|A & B| / (|A| + |B|), >= 0.7); `extra` = other unmatched items the transcript supports
  (judges/support.py: a discussion point listed as a decision); `invented` = unmatched items it
  does not support; `chatter` = statements that state nothing (not counted elsewhere);
- `sections` = how many of the three sections have a heading (0-3; reported, not scored);
- `score` (1-5) = 1 + 4 x completeness x accuracy x faithfulness, where
  completeness = `recall`;
  accuracy = mean over matched action items of (owner right + due right) / 2 (1 when none);
  faithfulness = 0.7^invented x 0.5^contradicted x 0.9^duplicates x 0.9^extra.
  Each factor is a share, so a defect costs in proportion: one wrong owner among five action
  items costs 10%, one invented item 30% (a made-up decision misleads more than a gap), one
  extra or repeated item 10%, one contradicted item 50% plus its reference item unmatched (the
  opposite of what was decided misleads more than a made-up item); defects multiply, so many of
  them never make a real summary score like a loop.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field

from judges import dates, matching, support
from judges.text import STOPWORDS, stem, tokens
from runner.config.prompts import ActionItem, Prompt, ReferenceItems

INVENTED_PENALTY = 0.3
EXTRA_PENALTY = 0.1
CONTEXT_WEIGHT = 0.5  # a preamble's "the team met to decide whether the release can ship" decides nothing
CONTRADICTED_PENALTY = 0.5
DUPLICATE_PENALTY = 0.1
DUPLICATE_DICE = 0.7
KINDS = ("decisions", "action_items", "open_questions")

# A label that is exactly a section's name (after "Key", "Open", ... and before "made", "(owner, due)").
_HEADINGS = {
    "decisions": re.compile(r"^(?:(?:key|main|final|summary of|list of)\s+)?(?:decisions?|outcomes?|resolutions?|conclusions?"
                            r"|agreements?|agreed(?: on)?|decided)(?:\s+(?:made|taken|reached|points?|items?|changes|actions))?$"
                            r"|^what (?:we|was|the team) (?:decided|agreed)(?: on)?$|^we (?:decided|agreed)$"),
    "action_items": re.compile(r"^(?:(?:key|summary of|list of|assigned|open)\s+)?(?:action items?|actions|action points?"
                               r"|next steps|tasks|to-?dos?|to do|follow-?ups?(?: items)?|assignments|action plan"
                               r"|responsibilities|owners (?:and|&) (?:deadlines|due dates|tasks)|(?:action|task|to-?do) (?:list|log|register))$"
                               r"|^who(?:'?s| is)? (?:does|doing|will do|owns) what$|^(?:tasks|actions) (?:and|&) owners$"),
    "open_questions": re.compile(r"^(?:(?:open|unresolved|outstanding|remaining|pending|still open)\s+)?"
                                 r"(?:questions?|issues|items|points|topics)(?:\s+(?:to resolve|outstanding|still open|open"
                                 r"|pending|unresolved|remaining))?$"
                                 r"|^parking lot$|^unresolved$|^pending$|^open$|^undecided$|^unclear$|^unknowns?$|^tbd$"
                                 r"|^still (?:open|undecided|unclear|unknown|unresolved|to (?:be )?decided?)$"
                                 r"|^risks?(?:\s*(?:/|and|&)\s*(?:open )?questions?)?$|^(?:open )?questions?\s*(?:/|and|&)\s*risks?$"
                                 r"|^(?:to be decided|not yet decided|unknowns|concerns)$"),
}
# The same names anywhere in a short label ("Action items and owners", "Open questions / risks").
_LOOSE = {
    "decisions": re.compile(r"\b(?:decisions?|decided|agreed)\b"),
    "action_items": re.compile(r"\b(?:action items?|actions|action points?|next steps|tasks|to-?dos?|follow-?ups?)\b"),
    "open_questions": re.compile(r"\b(?:questions?|open issues|unresolved|parking lot|pending|still open|open items)\b"),
}
# Headings of blocks that hold no item to grade ("## Attendees", "# Summary").
_NOT_ITEMS = re.compile(r"^(?:attendees|participants|present|summary|meeting summary|overview|context|background|agenda"
                        r"|title|date|notes|meeting notes|discussion(?: points)?|highlights|key points|topics discussed"
                        r"|minutes|details|recap|tl;?dr)\b")
_MARKUP = re.compile(r"^(?:[\s>#*_`~]|[-+\u2022\u2013\u2014](?=\s)|\d{1,3}[.)](?=\s)|[^\w\s(\[\"'])+")
_BOLD_LINE = re.compile(r"^[-+\s]*(?:\*\*|__).*(?:\*\*|__)\s*:?\s*$")
_SUFFIX = re.compile(r"\s*(?:\(.*\)|\[.*\])\s*$")
_LEAD = re.compile(r"^[ \t>]*(?:#{1,6}[ \t]*)?(?:(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+)?")
_BULLET = re.compile(r"^[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+\S")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}")
_NONE = re.compile(r"^\(?(?:none|n/?a|nothing|-)\b[^.]{0,30}\)?[.!]?$"
                   r"|^(?:there (?:were|are|was|is) )?no (?:other |further |new |open |outstanding |specific |formal )?"
                   r"(?:decisions?|action items?|actions?|questions?|items?|tasks?|issues?)\b[^.]{0,40}[.!]?$", re.I)
# The names of an item's owner and due fields ("Owner: Samuel; Due: Friday").
_FIELD_NAMES = r"owner|assignee|assigned to|responsible|who|due(?: date)?|deadline|when"
_OWNER_COLUMNS = {"owner", "who", "assignee", "responsible", "person", "name", "assigned to", "owner(s)"}
_DUE_COLUMNS = {"due", "due date", "deadline", "when", "by", "by when", "date", "target date", "due by"}
# Prose joins items in one sentence: "Noor merges the fix by Thursday, and Hugo's team verifies it
# by Friday", "..., and will write the summary by August 15" (the subject left out).
_MODAL = r"(?:will|is to|are to|should|must|needs? to|has to)\b"
_CLAUSE = re.compile(r"(?:;|,? and(?: then)?|, while|, but)\s+(?=(?:[A-Z][\w']*|she|he|they|any|every|all|the|each)"
                     r"(?:\s+[\w']+){0,10}?\s+" + _MODAL + r"|(?:also\s+)?" + _MODAL + ")")
_PRONOUN = re.compile(r"^(?:she|he|they)\b", re.I)
_ANAPHOR = re.compile(r"^(?:(?:that|this|which|her|his|their|its|these|those)\b(?!\s+(?:is|are|was) (?:what|how))"
                     r"|it (?:depends|affects|changes|decides|means|determines|hinges|matters))", re.I)


def _clauses(sentence: str, names: set[str] | frozenset) -> list[str]:
    """A prose sentence cut at joined clauses. A clause without its own subject, or with a
    pronoun for one, is another item only when the sentence opens with a person's name, whose it
    then is ("Colin will email the board by Friday, and will post the catalog by Tuesday")."""
    parts = _CLAUSE.split(sentence)
    subject = sentence.split(" ", 1)[0]
    out = parts[:1]
    for part in parts[1:]:
        first = part.split(" ", 1)[0]
        if first[:1].isupper() and first.lower().removesuffix("'s") not in names and matching.polarity(part)[0]:
            out[-1] += " and " + part  # "a manual process; HR will not open tickets": one decision, told twice
            continue
        elided = bool(re.match(r"(?:also\s+)?" + _MODAL, part))
        if elided or _PRONOUN.match(part):
            if subject.lower().removesuffix("'s") not in names:
                out[-1] += " and " + part
                continue
            part = f"{subject} {part}" if elided else _PRONOUN.sub(subject, part, count=1)
        out.append(part)
    return out


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*])")
_DATE_WORDS = frozenset([*dates.MONTHS, *dates.WEEKDAYS, "due", "today", "tomorrow", "tonight", "date", "owner",
                         "task", "deadline", "eod", "end", "week", "month", "given", "no", "none", "vs", "versus", "pm",
                         "am", "goes"])
_NAME = r"[^\W\d_][\w'-]*"
_OWNER_LABEL = re.compile(r"\b(?:owner|assignee|assigned to|responsible|who)\s*[:=\-]?\s*\**\s*(" + _NAME + ")", re.I)
# An explicit due cue wins over any other date in the item; a weak one over an uncued date.
# "... falls to Ingrid", "is Renee's job", "assigned to Mateo", "Brandon is responsible for ..."
_OWNER_CUE = re.compile(r"\b(?:falls to|assigned to|handled by|owned by|goes to|rests with|responsibility of|is with)\s+\**("
                        + _NAME + r")|\b(" + _NAME + r")'s\s+(?:job|task|responsibility|action|to-?do)\b", re.I)
_DUE_CUE = re.compile(r"\b(?:due(?: date)?|by|deadline|no later than|when(?=\s*:))\b[*_:\s]*", re.I)
_WEAK_CUE = re.compile(r"\b(?:before|until|on)\b[:\s]*", re.I)
_NO_DATE = re.compile(r"\b(?:no (?:\w+ )?(?:due )?date(?: given| set)?|no deadline|date (?:not|un)specified|tbd"
                      r"|not stated)\b", re.I)
_SPEAKER = re.compile(r"^\s*([^\W\d_][\w'-]+)(?: [^\W\d_][\w'-]+)?:", re.M)


@dataclass
class Item:
    text: str
    section: str | None  # None: no section's heading over it
    context: bool = False  # before the first heading or under one that holds no items: unmatched costs nothing


@dataclass
class Parsed:
    items: list[Item] = field(default_factory=list)
    sections: set[str] = field(default_factory=set)


GUESS = "guess"
CONTEXT = "context"


def _label(line: str) -> tuple[str, str, bool]:
    """(label before a colon, lowercased and stripped of markup; text after it; whether the
    line looks like a heading of any kind: `#`, wholly bold, or a short `Label:` line)."""
    raw = line.strip()
    body = raw
    while True:
        stripped = _MARKUP.sub("", body, count=1)
        if stripped == body:
            break
        body = stripped
    label, colon, rest = body.partition(":")
    label = _SUFFIX.sub("", label.strip().strip("*_` ")).strip().lower()
    rest = rest.strip().strip("*_` ").strip() if colon else ""
    headingish = bool(label) and not rest and bool(
        raw.startswith("#") or _BOLD_LINE.match(raw) or (colon and len(label.split()) <= 5 and not _BULLET.match(line)))
    return label, rest, headingish


def heading_kind(line: str) -> tuple[str | None, str]:
    """(section kind, text after the heading's colon) when `line` is a section heading."""
    label, rest, headingish = _label(line)
    if not label or len(label.split()) > 8:
        return None, ""
    for kind, pattern in _HEADINGS.items():
        if pattern.match(label):
            return kind, rest
    # a field of one item, not a section: "Action: ...", "Task: ..."; a lead-in ending in a colon
    # ("And here is what is still unresolved:") or a short numbered label ("3. Questions outstanding")
    # is one
    lead_in = line.rstrip().rstrip("*_").endswith(":") and not rest and len(label.split()) <= 10
    numbered = (bool(re.match(r"^\s*\d{1,3}[.)]\s", line)) and not rest and len(label.split()) <= 3
                and not re.search(r"\d", label))
    if headingish or lead_in or numbered or (not rest and len(label.split()) <= 6 and not _BULLET.match(line)):
        for kind, pattern in _LOOSE.items():
            if pattern.search(label):
                return kind, ""
    return None, ""


def parse_sections(answer: str, names: set[str] | frozenset = frozenset()) -> Parsed:
    """Statements by the block they sit in. A heading that names a section gives its items that
    kind (a signal the matching weighs, not a precondition). A line holding only a person's name
    (`**Samuel**`, `*Samuel*`, `### Samuel`, `Samuel:`, "For Samuel:") makes that person the
    owner of the items under it. Lines before the first heading, and blocks under headings that
    hold no items ("Attendees", "Summary", "Discussion"), are `context`: read like any other
    (a reference item stated there is stated), but a statement there that matches nothing costs
    nothing. Under any other heading each item's content decides its kind."""
    out = Parsed()
    current: str | None = None
    owner: str | None = None
    headed = False  # a heading of any kind seen
    blank = False  # the line before was blank
    blocks: dict[tuple[str | None, str | None], list[str]] = {}  # insertion order: the answer's order
    for raw in answer.splitlines():
        if raw.strip().startswith("```"):
            continue
        kind, rest = heading_kind(raw)
        if kind:
            current, owner, headed = kind, None, True
            out.sections.add(kind)
            blocks.setdefault((kind, None), [])
            if rest:
                blocks[(kind, None)].append(rest)
            continue
        label, rest, headingish = _label(raw)
        if owner and blank and raw.strip() and not (_BULLET.match(raw) or raw.lstrip().startswith("|")):
            owner = None  # a new paragraph of prose: the name heading above no longer owns it
        blank = not raw.strip()
        who = _owner_heading(raw, label, rest, names)
        if who:
            owner = who
            if current in (None, CONTEXT):
                current = GUESS
            blocks.setdefault((current, owner), [])
            continue
        if headingish and (headed or _is_heading_line(raw)):
            current, owner, headed = (CONTEXT if _NOT_ITEMS.match(label) else GUESS), None, True
            continue
        blocks.setdefault((current, owner), []).append(raw)
    for (kind, who), lines in blocks.items():
        if kind is None and headed:
            kind = CONTEXT  # a preamble before the first heading
        for t in _items(lines, names):
            text = f"{who}: {t}" if who else t
            if kind == GUESS:
                out.items.append(Item(text, kind_of(text, names) if not who else "action_items"))
            else:
                out.items.append(Item(text, None if kind == CONTEXT else kind, context=kind == CONTEXT))
    return out


_FOR_NAME = re.compile(r"^(?:for|from|owner|assignee|assigned to)\s+|(?:'s)?\s+(?:tasks?|action items?|actions|to-?dos?"
                       r"|follow-?ups?|items?|part)$")


def _owner_heading(raw: str, label: str, rest: str, names: set[str] | frozenset) -> str | None:
    """The person a name-only line names: `**Samuel**`, `*Samuel*`, `_Samuel_`, `### Samuel`,
    `Samuel:`, `Samuel (IT):`, "For Samuel:", "Samuel's tasks:"; None for any other line."""
    if rest or not label:
        return None
    body = raw.strip()
    marked = (body.startswith("#") or _BOLD_LINE.match(body) or re.match(r"^[-+\s]*([*_]).+\1\s*:?\s*$", body)
              or body.rstrip("*_ ").endswith(":"))
    words = _FOR_NAME.sub("", label).split()
    if not marked or not 1 <= len(words) <= 2 or words[0].removesuffix("'s") not in names:
        return None
    return words[0].removesuffix("'s").capitalize()


def _is_heading_line(line: str) -> bool:
    """A markdown heading or a wholly bold line: a heading even before any known section."""
    raw = line.strip()
    return raw.startswith("#") or bool(_BOLD_LINE.match(raw))


_QUESTION = re.compile(r"\?|^(?:whether|open|unclear|unknown|tbd|undecided|not yet)\b|\b(?:still open|to be decided|"
                       r"not (?:yet )?decided|unresolved|depends on)\b", re.I)
_TASK = re.compile(r"\b(?:will|to|should|must|needs? to|is to|owner|due|by)\b", re.I)


def kind_of(text: str, names: set[str] | frozenset) -> str:
    """The kind of an item under a heading of no known kind: a question; an action item (a person
    named with a task cue or a date); else a decision."""
    if _QUESTION.search(text):
        return "open_questions"
    named = any(t in names for t in tokens(text))
    if named and (_TASK.search(text) or dates.find_dates(text, None)):
        return "action_items"
    return "decisions"


_FIELD = re.compile(r"^[\s>*_+-]*(?:" + _FIELD_NAMES + r"|by|status)\s*[*_]*\s*:", re.I)


def _items(lines: list[str], names: set[str] | frozenset = frozenset()) -> list[str]:
    joined: list[str] = []
    for ln in lines:  # "Owner: Samuel" / "Due: Friday" on their own lines belong to the item above
        if joined and joined[-1].strip() and _FIELD.match(ln):
            joined[-1] = joined[-1].rstrip() + "; " + ln.strip().lstrip("-*+ ")
        else:
            joined.append(ln)
    lines = joined
    if any(_BULLET.match(ln) or ln.lstrip().startswith("|") for ln in lines):
        texts = _bullet_items(lines)
    else:  # one item per sentence or joined clause, never spanning a line break
        texts = []
        for ln in lines:
            for sentence in _SENTENCE.split(ln.strip()) if ln.strip() else ():
                if texts and _ANAPHOR.match(sentence) and not any(t in names for t in tokens(sentence)):
                    texts[-1] += " " + sentence  # "That depends on cost.": the sentence before goes on
                else:
                    texts.extend(_clauses(sentence, names))
    merged: list[str] = []
    for t in (t.strip().strip("*_` ") for t in texts):
        if not t or _NONE.match(t.strip("*_` .")):
            continue
        if merged and not content_stems(t, set()):  # "Mar." "6." split off a sentence: rejoin
            merged[-1] += " " + t
        elif content_stems(t, set()):
            merged.append(t)
    return merged


def _bullet_items(lines: list[str]) -> list[str]:
    items: list[str] = []
    joinable = False  # the next plain line, or a bullet indented deeper, continues the last item
    indent = 0  # the last item's bullet's indent
    header: list[str] | None = None
    for ln in lines:
        if not ln.strip():
            joinable = False
        elif ln.lstrip().startswith("|"):
            cells = [c.strip().strip("*_ ") for c in ln.strip().strip("|").split("|")]
            if _TABLE_SEP.match(ln):
                pass
            elif _is_table_header(ln):
                header = [c.lower() for c in cells]
            else:
                owner_col = next((i for i, h in enumerate(header or []) if h in _OWNER_COLUMNS), None)
                due_col = next((i for i, h in enumerate(header or []) if h in _DUE_COLUMNS), None)
                first = [cells[owner_col]] if owner_col is not None and owner_col < len(cells) else []
                last = [f"due {cells[due_col]}"] if due_col is not None and due_col < len(cells) and cells[due_col] else []
                middle = [c for i, c in enumerate(cells) if c and (i != owner_col or not first) and (i != due_col or not last)]
                items.append(" - ".join(first + middle + last))  # "Owner - task - due <date>", whatever the column order
            joinable = False
        elif items and joinable and (not _BULLET.match(ln) or _indent(ln) > indent):
            items[-1] += " " + _LEAD.sub("", ln).strip()  # a wrapped line or a sub-bullet continues the item
        else:
            items.append(_LEAD.sub("", ln).strip())
            joinable, indent = True, _indent(ln)
    return items


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _is_table_header(line: str) -> bool:
    cells = {c.strip().strip("*_ ").lower() for c in line.strip().strip("|").split("|")}
    return bool(cells & (_OWNER_COLUMNS | _DUE_COLUMNS | {"task", "action", "what", "item", "action item", "description"}))


_DUE_PHRASE = re.compile(r"\b(?:due(?: date)?|by|deadline|no later than|on|before|until)\s*[:\-]?\s*$", re.I)
_CUE_WORDS = {"due", "by", "deadline", "no"}
_OWNER_MARK = re.compile(r"\b(?:" + _FIELD_NAMES + r")\s*[*_]*:\s*", re.I)


def _what(text: str, names: set[str] | frozenset, meeting: dt.date | None) -> str:
    """What an item says without who or when: the text the embedding compares ("Samuel: book the
    fiber install - due Friday, Feb 14" -> "book the fiber install"). The owner and the date are
    facts compared on their own; leaving them out of the meaning also lets the same task, written
    for another owner or date, reuse its embedding."""
    for start, end in reversed(dates.spans(text, meeting)):  # right to left: earlier offsets stay valid
        cue = _DUE_PHRASE.search(text[:start])
        # a due date (after a cue, or closing the item after a dash, bar, comma or bracket); a date
        # inside a decision ("ships on Tuesday, May 27 instead of Thursday") is part of what it says
        closing = re.match(r"^[\s).,;\]]*$", text[end:]) and re.search(r"[-\u2013\u2014|,(\[]\s*[*_]*$", text[:start])
        if cue and cue.group(0).split()[0].lower().strip(":-") in _CUE_WORDS or closing:
            text = text[:cue.start() if cue else start] + " " + text[end:]
    text = _OWNER_MARK.sub(" ", _NO_DATE.sub(" ", text))
    # an owner's name where owners are written (first, after a dash, bar or bracket), not "send Tomasz the list"
    text = re.sub(r"(^|[-\u2013\u2014|(\[,;:]\s*)[*_]*(" + _NAME + r")[*_]*(?='s\b|\b)",
                  lambda m: m.group(1) if m.group(2).lower().removesuffix("'s") in names else m.group(0), text.strip())
    text = re.sub(r"(?:\s*[-\u2013\u2014|:;,()]\s*){2,}", " - ", text)
    text = re.sub(r"\s*[,;:]\s*(?=[.,;:]|$)", "", re.sub(r"\s+", " ", text))
    return text.strip(" *_:;,-\u2013\u2014|()") or text.strip()


def content_stems(text: str, names: set[str]) -> set[str]:
    return {stem(t) for t in tokens(text) if len(t) > 1 and t not in STOPWORDS and t not in names
            and t not in _DATE_WORDS and not (t.isdigit() and len(t) <= 2)}


def dice(a: set[str], b: set[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 0.0


def overlap(ref: set[str], ans: set[str]) -> float:
    return len(ref & ans) / len(ref) if ref else 0.0


def candidate_names(prompt: Prompt, refs: ReferenceItems | None) -> set[str]:
    """Lowercased first names: the transcript's speakers (labels used more than once), the
    attendees and the reference owners (when there are reference items)."""
    text = prompt.user_text()
    speakers = [m.group(1).lower() for m in _SPEAKER.finditer(text)]
    names = {n for n in speakers if speakers.count(n) > 1}  # a header label ("Attendees:") is said once
    for line in text.splitlines():
        if line.lower().startswith("attendees:"):
            for part in line.split(":", 1)[1].split(","):
                word = part.strip().split(" ")[0].strip("()")
                if word[:1].isupper():
                    names.add(word.lower())
    if refs is not None:
        names |= {a.owner.split()[0].lower() for a in refs.action_items}
    return {n for n in names if n not in STOPWORDS and n not in _DATE_WORDS}


def owner_of(text: str, names: set[str]) -> str | None:
    """The item's owner: an "Owner:" label; a cue ("falls to Ingrid", "Renee's job"); a name opening the item ("Aisha - ...", "Tom's
    task: ..."); a name closing it after a dash, bar or bracket ("... - Tom"); a name in
    parentheses; "<name> will/to/:"; else the first name mentioned."""
    for cue in (_OWNER_LABEL, _OWNER_CUE):
        m = cue.search(text)
        who = next((g for g in m.groups() if g), "").lower().removesuffix("'s") if m else ""
        if who in names:
            return who
    found = [(m.start(), m.end(), m.group(0).lower().removesuffix("'s")) for m in re.finditer(_NAME, text)]
    found = [f for f in found if f[2] in names]
    if not found:
        return None
    if found[0][0] <= 3:
        return found[0][2]
    for start, end, name in reversed(found):  # "... - Tom", "... - Beatriz, due 26 May", "... (Samuel, Feb 14)"
        if (re.search(r"(?:[-\u2013\u2014|\[(\u2192>]|\bowner:?)\s*\**$", text[:start])
                and re.match(r"^\W*(?:$|[,(;)\]]|due\b|by\b|no\b|on\b)", text[end:], re.I)):
            return name
    for start, _, name in found:
        if text[max(0, start - 2):start].endswith("("):
            return name
    for _, end, name in found:
        if re.match(r"\s*(?::|will\b|to\b|is to\b|-|\u2013|\u2014|\))", text[end:end + 8].lower()):
            return name
    return found[0][2]


def _due_right(text: str, ref: ActionItem, meeting: dt.date | None) -> bool:
    if ref.due is None:  # a date inside the task ("book the room for the Nov 18 dry run") is no due date
        return due_of(text, meeting, cued_only=True) is None or bool(_NO_DATE.search(text))
    return due_of(text, meeting) == ref.due


def due_of(text: str, meeting: dt.date | None, cued_only: bool = False) -> dt.date | None:
    """The item's due date: a date right after "due"/"by"/"deadline"/..., else (unless
    `cued_only`) the item's last date."""
    found = dates.find_dates(text, meeting)
    if not found:
        return None
    for cue in (_DUE_CUE, _WEAK_CUE):
        cues = [m.end() for m in cue.finditer(text)]
        for pos, date in found:
            if any(-4 <= pos - c <= 12 for c in cues):  # a weekday match may start at its own "by "
                return date
    return None if cued_only else found[-1][1]


def score(prompt: Prompt, answer: str, match: str = "semantic") -> dict[str, float] | None:
    """The figures above; `match` is how answer items are paired with reference items
    (judges/matching.py): `semantic` (meaning, words and facts) or `lexical` (words and facts)."""
    return _grade(prompt, answer, match, None)


def explain(prompt: Prompt, answer: str, match: str = "semantic") -> list[dict]:
    """How each statement of the answer was read: its text, section (None: none), whether it sat
    in a context block, its status (matched, contradicted, duplicate, extra, invented, chatter,
    context) and the reference item it states, with the owner and due read from it."""
    rows: list[dict] = []
    _grade(prompt, answer, match, rows)
    return rows


def _grade(prompt: Prompt, answer: str, match: str, rows: list[dict] | None) -> dict[str, float] | None:
    refs = prompt.reference_items
    if refs is None or refs.count() == 0:
        return None
    if match not in matching.MATCHINGS:
        raise ValueError(f"notes matching must be one of {matching.MATCHINGS}, not {match!r}")
    names = candidate_names(prompt, refs)
    meeting = dates.meeting_date(prompt.user_text())
    transcript = support.Transcript.of(prompt.user_text(), meeting, content_stems)
    parsed = parse_sections(answer, names)
    stems_all = [content_stems(it.text, names) for it in parsed.items]
    chatter = [support.is_chatter(it.text, st, names, transcript, meeting) for it, st in zip(parsed.items, stems_all, strict=True)]
    items = [it for it, c in zip(parsed.items, chatter, strict=True) if not c]
    ans_stems = [st for st, c in zip(stems_all, chatter, strict=True) if not c]
    ref_items: list[tuple[str, str | ActionItem]] = [("decisions", d) for d in refs.decisions]
    ref_items += [("action_items", a) for a in refs.action_items]
    ref_items += [("open_questions", q) for q in refs.open_questions]
    ref_texts = [r.task if isinstance(r, ActionItem) else r for _, r in ref_items]
    ref_stems = [content_stems(t, names) for t in ref_texts]
    cos = None
    if match == "semantic" and items:
        from judges import embedding

        sims = embedding.cosine([_what(t, names, meeting) for t in ref_texts],
                                [_what(it.text, names, meeting) for it in items])
        cos = lambda i, j: float(sims[i, j])  # noqa: E731
    ref_dates = [matching.date_polarity(t, meeting) for t in ref_texts]  # (asserted, denied)
    ans_dates = [matching.date_polarity(it.text, meeting) for it in items]

    owners_of = [owner_of(it.text, names) for it in items]
    # the kind a heading gives, or without one the kind its content reads as (a question; a person
    # with a task or a date; else a decision); a context line (a preamble) claims no kind
    kinds = [it.section or (None if it.context else kind_of(it.text, names)) for it in items]
    crowd = [len({t.removesuffix("s") for t in tokens(it.text)} & names) for it in items]

    @functools.cache
    def due_right(i: int, j: int) -> bool:
        return _due_right(items[j].text, ref_items[i][1], meeting)

    def facts(i: int, j: int) -> tuple[int, bool]:
        kind, ref = ref_items[i]
        text = items[j].text
        if isinstance(ref, ActionItem):  # a line naming three people or more ("attendees: ...") owns nothing
            owner = owners_of[j] == ref.owner.split()[0].lower() and crowd[j] <= 2
            return int(owner) + int(due_right(i, j)), False
        (said_r, denied_r), (said_a, denied_a) = ref_dates[i], ans_dates[j]
        agree = int(bool(said_r & said_a))
        # another date, or the date the reference left behind, or the reference's date denied
        contra = bool(said_r and said_a and not agree) or bool(said_a & denied_r) or bool(said_r & denied_a)
        if kind == "decisions" and matching.contradicts(ref_texts[i], text):
            contra = True
        return agree, contra

    found = matching.assign(len(ref_items), len(items), lambda i, j: overlap(ref_stems[i], ans_stems[j]), cos,
                            facts, lambda i, j: kinds[j] == ref_items[i][0],
                            lambda j: CONTEXT_WEIGHT if items[j].context else 1.0)
    ref_to_ans, ans_to_ref = found.ref_to_ans, found.ans_to_ref
    unmatched = [j for j in range(len(items)) if j not in ans_to_ref and j not in found.contradicted]
    duplicates = [j for j in unmatched if any(dice(ans_stems[j], ans_stems[k]) >= DUPLICATE_DICE for k in ans_to_ref)]
    invented = extra = 0
    status = {j: "matched" for j in ans_to_ref} | {j: "contradicted" for j in found.contradicted}
    for j in unmatched:
        if j in duplicates:
            status[j] = "duplicate" if not items[j].context else "context"
        elif not support.is_supported(ans_stems[j], items[j].text, transcript, meeting, items[j].context):
            invented += 1
            status[j] = "invented"
        elif not items[j].context:
            extra += 1
            status[j] = "extra"
        else:
            status[j] = "context"
    duplicates = [j for j in duplicates if not items[j].context]
    if rows is not None:
        first = {k: next(n for n, (kind, _) in enumerate(ref_items) if kind == k) for k, _ in ref_items}
        rows.extend({"text": it.text, "status": "chatter"} for it, c in zip(parsed.items, chatter, strict=True) if c)
        for j, it in enumerate(items):
            i = ans_to_ref.get(j)
            ref = None if i is None else ref_items[i][1]
            action = isinstance(ref, ActionItem)
            rows.append({"text": it.text, "section": it.section, "context": it.context, "status": status[j],
                         "states": None if i is None else ref_texts[i], "ref": None if i is None else (ref_items[i][0], i - first[ref_items[i][0]]),
                         "owner": owners_of[j], "due": due_of(it.text, meeting),
                         "owner_right": owners_of[j] == ref.owner.split()[0].lower() if action else None,
                         "due_right": due_right(i, j) if action else None})

    owners, dues = [], []
    for i, (_, ref) in enumerate(ref_items):
        if i in ref_to_ans and isinstance(ref, ActionItem):
            owners.append(owners_of[ref_to_ans[i]] == ref.owner.split()[0].lower())
            dues.append(due_right(i, ref_to_ans[i]))

    out: dict[str, float | None] = {}
    for kind in KINDS:
        idx = [i for i, (k, _) in enumerate(ref_items) if k == kind]
        out[f"{kind}_recall"] = sum(i in ref_to_ans for i in idx) / len(idx) if idx else None
        mine = [j for j, it in enumerate(items) if it.section == kind]
        out[f"{kind}_precision"] = (sum(j in ans_to_ref and ref_items[ans_to_ref[j]][0] == kind for j in mine)
                                    / len(mine) if mine else None)
    n_ref = len(ref_items)
    completeness = len(ref_to_ans) / n_ref
    accuracy = (sum(owners) + sum(dues)) / (2 * len(owners)) if owners else 1.0
    contradicted = len(found.contradicted)
    faithfulness = ((1 - INVENTED_PENALTY) ** invented * (1 - CONTRADICTED_PENALTY) ** contradicted
                    * (1 - DUPLICATE_PENALTY) ** len(duplicates) * (1 - EXTRA_PENALTY) ** extra)
    graded = [j for j, it in enumerate(items) if not it.context or j in ans_to_ref]
    out.update({
        "recall": completeness,
        "precision": sum(j in ans_to_ref for j in graded) / len(graded) if graded else None,
        "owner_accuracy": sum(owners) / len(owners) if owners else None,
        "due_accuracy": sum(dues) / len(dues) if dues else None,
        "invented": float(invented),
        "extra": float(extra),
        "duplicates": float(len(duplicates)),
        "contradicted": float(contradicted),
        "chatter": float(sum(chatter)),
        "sections": float(len(parsed.sections)),
        "score": 1 + 4 * completeness * accuracy * faithfulness,
    })
    return out
