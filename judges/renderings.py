"""One meeting's known content rendered as many answers a language model might write: material
for behavioural tests of a meeting-notes grader, from outside it (CheckList-style).

- Invariance: the same facts (decisions, action items with owner/task/due, open questions) in other
  layouts and other words must grade the same.
- Directional: the same layout with one known defect must grade lower, and `Rendering.items`
  says exactly what the defective answer states.

This module neither imports nor imitates the grader (judges/notes.py, judges/matching.py): its
wordings are hand-written (conf/calibration/wordings.yaml) and its layouts are what models write.

Layout dimensions (`Layout`):
  sections  SECTION_STYLES  "## Decisions" / "**Decisions**" / "Decisions:" / "1. Decisions" / none
                            (no heading: each section one block, introduced by a sentence, e.g.
                            "These decisions were made:" before a list, inline before prose)
  items     ITEM_STYLES     bullets / numbers / table (the action items as a markdown table, the other
                            sections bullets) / prose (sentences)
  owner     OWNER_PLACEMENTS before "Samuel: book ..." / after "Book ... - Samuel" / parens
                            "Book ... (Samuel)" / heading: a line holding only the name over that
                            person's items / field "Owner: Samuel"; ignored for tables (a column)
  dates     DATE_FORMS      2025-02-14 / Friday, February 14 / Feb 14 / 14 February / 2/14 / 14/2 /
                            next Friday / Friday; a form that would be ambiguous or wrong for a date
                            falls back for that date only (`format_due`)
  wrapper   WRAPPERS        none / greeting (a friendly first and last line) / summary_first (one
                            line on the meeting's purpose in general words, then a blank line)
  wording   0 or 1          which hand-written wording of every item
  columns   table headers in order (their names and order vary)

Smaller choices (heading titles, bullet character, how a due date is attached, the owner heading's
markup, how a missing due date reads) vary with the seed and stay the same with and without a defect,
so that a defect is the only difference between a clean rendering and a defective one.

Defects (DEFECTS, one per rendering, on the correct content):
  owner_swapped      one action item's owner replaced by another action item's different owner
  due_moved          one dated action item's due moved by 2-9 days
  item_dropped       one item (decision, action item or open question) left out
  decision_invented  one of the transcript's invented_decisions added to the decisions
  decision_negated   one decision replaced by its negated_decisions entry
  facts_rotated      every action item's (owner, due) moved to the next item, cyclically
A defect that cannot apply to a transcript raises ValueError.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from runner.config.prompts import ActionItem, DatesAsText, ReferenceItems, reference_items

ROOT = Path(__file__).resolve().parent.parent
WORDINGS = ROOT / "conf" / "calibration" / "wordings.yaml"
CALIBRATION = ROOT / "conf" / "calibration" / "meeting-notes.yaml"

SECTION_STYLES = ("markdown", "bold", "label", "numbered", "none")
ITEM_STYLES = ("bullets", "numbers", "table", "prose")
OWNER_PLACEMENTS = ("before", "after", "parens", "heading", "field")
DATE_FORMS = ("iso", "weekday_month_day", "mon_day", "day_month", "numeric_us", "numeric_eu", "next_weekday",
              "weekday")
WRAPPERS = ("none", "greeting", "summary_first")
DEFECTS = ("owner_swapped", "due_moved", "item_dropped", "decision_invented", "decision_negated", "facts_rotated")
WORDING_CHOICES = (0, 1)

# Table headers by role: a layout's `columns` are names from these, one per role, in any order.
COLUMN_NAMES = {
    "owner": ("Owner", "Who", "Responsible", "Assignee"),
    "task": ("Task", "What", "Action item", "Action"),
    "due": ("Due", "When", "Due date", "Deadline"),
}
_COLUMN_ROLE = {name: role for role, names in COLUMN_NAMES.items() for name in names}


@dataclass(frozen=True)
class Layout:
    sections: str
    items: str
    owner: str
    dates: str
    wrapper: str
    wording: int  # which hand-written wording (0 or 1)
    columns: tuple[str, ...] = ()  # table only: column headers in order

    def check(self) -> None:
        for value, allowed, name in ((self.sections, SECTION_STYLES, "sections"), (self.items, ITEM_STYLES, "items"),
                                     (self.owner, OWNER_PLACEMENTS, "owner"), (self.dates, DATE_FORMS, "dates"),
                                     (self.wrapper, WRAPPERS, "wrapper"), (self.wording, WORDING_CHOICES, "wording")):
            if value not in allowed:
                raise ValueError(f"layout {name}={value!r}: expected one of {allowed}")
        roles = sorted(_COLUMN_ROLE.get(c, "?") for c in self.columns)
        if self.columns and roles != ["due", "owner", "task"]:
            raise ValueError(f"layout columns {self.columns}: need one owner, one task and one due column "
                             f"(names from {COLUMN_NAMES})")


@dataclass(frozen=True)
class Rendering:
    transcript: str  # transcript id
    layout: Layout
    defect: str | None
    text: str  # the answer
    items: ReferenceItems  # what the text states after the defect
    changed: tuple[str, ...]  # what the defect changed (empty when none)


# ---------------------------------------------------------------------------------------------- inputs

def load_wordings(path=None) -> dict[str, dict]:
    """The hand-written wordings, by transcript id (conf/calibration/wordings.yaml by default)."""
    p = Path(path or WORDINGS)
    raw = yaml.safe_load(p.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a mapping of transcript id -> wordings")
    for tid, w in raw.items():
        for key in ("decisions", "negated_decisions", "action_items", "open_questions", "invented_decisions"):
            if not isinstance(w.get(key), list):
                raise ValueError(f"{p}: {tid}.{key} must be a list")
    return raw


def load_references(path=None) -> dict[str, tuple[ReferenceItems, dt.date]]:
    """Each calibration transcript's reference items and meeting date, by transcript id
    (conf/calibration/meeting-notes.yaml by default)."""
    from judges.dates import meeting_date

    p = Path(path or CALIBRATION)
    raw = yaml.load(p.read_text(), Loader=DatesAsText)
    out = {}
    for t in raw["transcripts"]:
        date = meeting_date(t["user"])
        if date is None:
            raise ValueError(f"{p}: transcript {t['id']} has no meeting date in its header")
        out[t["id"]] = (reference_items(t["reference_items"], f"{p}: {t['id']}"), date)
    return out


# ---------------------------------------------------------------------------------------------- layouts

def layouts(n: int, seed: int = 0) -> list[Layout]:
    """`n` distinct layouts, the same for the same (n, seed). With n >= 20 they cover every value of
    every dimension, every (sections, items) pair and every (items, owner) pair; table layouts get
    varied column names and orders."""
    rng = random.Random(f"layouts|{seed}")
    out: list[Layout] = []
    seen: set[Layout] = set()

    def add(layout: Layout) -> None:
        if layout not in seen and len(out) < n:
            seen.add(layout)
            out.append(layout)

    def columns(items: str) -> tuple[str, ...]:
        if items != "table":
            return ()
        names = [rng.choice(COLUMN_NAMES[role]) for role in ("owner", "task", "due")]
        rng.shuffle(names)
        return tuple(names)

    s_off, o_off, d_off, w_off = (rng.randrange(k) for k in (5, 5, 8, 3))
    for i in range(len(SECTION_STYLES) * len(ITEM_STYLES)):  # the covering 20: both pair sets, every value
        items = ITEM_STYLES[i // 5]
        add(Layout(sections=SECTION_STYLES[(i + s_off) % 5], items=items,
                   owner=OWNER_PLACEMENTS[(i % 5 + i // 5 + o_off) % 5], dates=DATE_FORMS[(i + d_off) % 8],
                   wrapper=WRAPPERS[(i + w_off) % 3], wording=i % 2, columns=columns(items)))
    space = (len(SECTION_STYLES) * len(OWNER_PLACEMENTS) * len(DATE_FORMS) * len(WRAPPERS) * len(WORDING_CHOICES)
             * (len(ITEM_STYLES) - 1 + 6 * 4 ** 3))
    if n > space:
        raise ValueError(f"only {space} distinct layouts exist, asked for {n}")
    while len(out) < n:
        items = rng.choice(ITEM_STYLES)
        add(Layout(sections=rng.choice(SECTION_STYLES), items=items, owner=rng.choice(OWNER_PLACEMENTS),
                   dates=rng.choice(DATE_FORMS), wrapper=rng.choice(WRAPPERS), wording=rng.choice(WORDING_CHOICES),
                   columns=columns(items)))
    return out


# ---------------------------------------------------------------------------------------------- dates

def format_due(due: dt.date, form: str, meeting: dt.date) -> str:
    """`due` written in date form `form`, or in a fallback form where `form` would be ambiguous or
    wrong: numeric forms only when the day cannot be read as a month (day > 12, or day == month),
    else "Feb 3" (numeric_us) / "3 February" (numeric_eu); weekday forms only 1-7 days after the
    meeting, else "Friday, February 21"."""
    if form not in DATE_FORMS:
        raise ValueError(f"date form {form!r}: expected one of {DATE_FORMS}")
    weekday, month, mon = f"{due:%A}", f"{due:%B}", f"{due:%b}"
    if form in ("numeric_us", "numeric_eu") and not (due.day > 12 or due.day == due.month):
        form = "mon_day" if form == "numeric_us" else "day_month"
    if form in ("next_weekday", "weekday") and not 1 <= (due - meeting).days <= 7:
        form = "weekday_month_day"
    return {
        "iso": due.isoformat(),
        "weekday_month_day": f"{weekday}, {month} {due.day}",
        "mon_day": f"{mon} {due.day}",
        "day_month": f"{due.day} {month}",
        "numeric_us": f"{due.month}/{due.day}",
        "numeric_eu": f"{due.day}/{due.month}",
        "next_weekday": f"next {weekday}",
        "weekday": weekday,
    }[form]


# ---------------------------------------------------------------------------------------------- content

@dataclass(frozen=True)
class _Decision:
    stated: str  # what `items` records: the reference text, or the invented/negated sentence
    text: str  # as written in the answer


@dataclass(frozen=True)
class _Action:
    item: ActionItem  # as stated (after the defect); task is the reference task
    task: str  # the task as written (a hand-written wording, lower-case imperative)


@dataclass(frozen=True)
class _Question:
    stated: str
    text: str


@dataclass(frozen=True)
class _Content:
    decisions: tuple[_Decision, ...]
    actions: tuple[_Action, ...]
    questions: tuple[_Question, ...]

    def items(self) -> ReferenceItems:
        return ReferenceItems(tuple(d.stated for d in self.decisions), tuple(a.item for a in self.actions),
                              tuple(q.stated for q in self.questions))


def _content(refs: ReferenceItems, w: dict, k: int, tid: str) -> _Content:
    for key, ref in (("decisions", refs.decisions), ("action_items", refs.action_items),
                     ("open_questions", refs.open_questions), ("negated_decisions", refs.decisions)):
        if len(w[key]) != len(ref):
            raise ValueError(f"wordings for {tid}: {len(w[key])} {key}, the reference has {len(ref)}")

    def pick(options: list[str]) -> str:
        return options[k % len(options)]

    return _Content(tuple(_Decision(r, pick(o)) for r, o in zip(refs.decisions, w["decisions"], strict=True)),
                    tuple(_Action(a, pick(o)) for a, o in zip(refs.action_items, w["action_items"], strict=True)),
                    tuple(_Question(r, pick(o)) for r, o in zip(refs.open_questions, w["open_questions"], strict=True)))


def _apply_defect(c: _Content, defect: str | None, w: dict, meeting: dt.date, rng: random.Random,
                  fmt) -> tuple[_Content, tuple[str, ...]]:
    if defect is None:
        return c, ()
    acts = list(c.actions)
    if defect == "owner_swapped":
        owners = {a.item.owner for a in acts}
        candidates = [i for i, a in enumerate(acts) if owners - {a.item.owner}]
        if not candidates:
            raise ValueError("owner_swapped needs action items with two different owners")
        i = rng.choice(candidates)
        old = acts[i].item.owner
        new = rng.choice(sorted(owners - {old}))
        acts[i] = replace(acts[i], item=replace(acts[i].item, owner=new))
        return replace(c, actions=tuple(acts)), (f"action item {i + 1} ({acts[i].item.task!r}): owner {old} -> {new}",)
    if defect == "due_moved":
        candidates = [i for i, a in enumerate(acts) if a.item.due is not None]
        if not candidates:
            raise ValueError("due_moved needs an action item with a due date")
        i = rng.choice(candidates)
        old = acts[i].item.due
        days = rng.randint(2, 9) * rng.choice((-1, 1))
        if old + dt.timedelta(days=days) <= meeting:  # never before the meeting
            days = abs(days)
        new = old + dt.timedelta(days=days)
        acts[i] = replace(acts[i], item=replace(acts[i].item, due=new))
        return replace(c, actions=tuple(acts)), (
            f"action item {i + 1} ({acts[i].item.task!r}): due {old} -> {new} ({days:+d} days, written "
            f"{fmt(new)!r})",)
    if defect == "item_dropped":
        every = ([("decisions", i) for i in range(len(c.decisions))] + [("actions", i) for i in range(len(acts))]
                 + [("questions", i) for i in range(len(c.questions))])
        if not every:
            raise ValueError("item_dropped needs at least one item")
        kind, i = rng.choice(every)
        kept = list(getattr(c, kind))
        gone = kept.pop(i)
        what = gone.item.task if kind == "actions" else gone.stated
        return replace(c, **{kind: tuple(kept)}), (f"{kind[:-1]} {i + 1} dropped: {what!r}",)
    if defect == "decision_invented":
        if not w.get("invented_decisions"):
            raise ValueError("decision_invented needs invented_decisions in the wordings")
        sentence = rng.choice(w["invented_decisions"])
        at = rng.randint(0, len(c.decisions))
        decisions = list(c.decisions)
        decisions.insert(at, _Decision(sentence, sentence))
        return replace(c, decisions=tuple(decisions)), (f"decision invented at position {at + 1}: {sentence!r}",)
    if defect == "decision_negated":
        if not c.decisions:
            raise ValueError("decision_negated needs a decision")
        i = rng.randrange(len(c.decisions))
        sentence = w["negated_decisions"][i]
        decisions = list(c.decisions)
        old = decisions[i].stated
        decisions[i] = _Decision(sentence, sentence)
        return replace(c, decisions=tuple(decisions)), (f"decision {i + 1} negated: {old!r} -> {sentence!r}",)
    if defect == "facts_rotated":
        facts = [(a.item.owner, a.item.due) for a in acts]
        if len(set(facts)) < 2:
            raise ValueError("facts_rotated needs action items whose (owner, due) differ")
        rotated = [replace(a, item=replace(a.item, owner=facts[i - 1][0], due=facts[i - 1][1]))
                   for i, a in enumerate(acts)]
        changed = tuple(f"action item {i + 1} ({a.item.task!r}): {facts[i][0]}, {facts[i][1]} -> "
                        f"{a.item.owner}, {a.item.due}" for i, a in enumerate(rotated) if facts[i] != facts[i - 1])
        return replace(c, actions=tuple(rotated)), changed
    raise ValueError(f"defect {defect!r}: expected one of {DEFECTS}")


# ---------------------------------------------------------------------------------------------- style

_TITLES = {
    "decisions": ("Decisions", "Key decisions", "What we decided", "Agreed"),
    "actions": ("Action items", "Next steps", "Follow-ups", "Actions"),
    "questions": ("Open questions", "Still open", "Unresolved", "Questions outstanding"),
}
# sections "none": a sentence introducing a list or table, and one opening a prose paragraph
_LIST_LEADS = {
    "decisions": ("These decisions were made:", "Here is what the meeting decided:"),
    "actions": ("These follow-ups were assigned:", "Here is who does what next:"),
    "questions": ("These questions remain open:", "And here is what is still unresolved:"),
}
_PROSE_LEADS = {
    "decisions": ("The meeting settled a few things.", "Here is what was decided.", ""),
    "actions": ("Several follow-ups were assigned.", "Next steps were agreed.", ""),
    "questions": ("A few points are still open.", "Some questions were left unresolved.", ""),
}
_NONE_SENTENCES = {"decisions": "No decisions were made.", "actions": "No action items were assigned.",
                   "questions": "No open questions remain."}
_OPENERS = ("Sure! Here's a summary of the meeting.", "Of course - here is a summary of the meeting.",
            "Here's a concise summary of the meeting:", "Happy to help! Below is a summary of the meeting.")
_CLOSERS = ("Let me know if you need anything else.", "Let me know if you'd like any changes.",
            "Hope this helps!", "Feel free to ask if anything needs clarifying.")
_NULL_DUE = ("no date set", "no deadline", None)  # None: nothing written
_OWNER_HEADINGS = ("**{o}**", "*{o}*", "### {o}", "{o}:")
# (with a date, without one) appended to a list item's task
_DUE_TAILS = ((" - by {d}", " - {n}"), (" (due {d})", " ({n})"), (", by {d}", ", {n}"), (" — due {d}", " — {n}"))
_DOUBLED = {"get", "set", "put", "shut", "let", "cut"}


@dataclass(frozen=True)
class _Style:
    titles: dict
    bullet: str
    null_due: str | None
    due_tail: tuple[str, str]
    owner_heading: str
    variant: int  # which of each placement's few phrasings
    bold_colon: bool  # "**Decisions:**" rather than "**Decisions**"
    list_leads: dict
    prose_leads: dict
    opener: str
    closer: str
    purpose: str

    @classmethod
    def draw(cls, rng: random.Random, w: dict) -> _Style:
        return cls(titles={k: rng.choice(v) for k, v in _TITLES.items()}, bullet=rng.choice("-*"),
                   null_due=rng.choice(_NULL_DUE), due_tail=rng.choice(_DUE_TAILS),
                   owner_heading=rng.choice(_OWNER_HEADINGS), variant=rng.randrange(3), bold_colon=rng.random() < 0.5,
                   list_leads={k: rng.choice(v) for k, v in _LIST_LEADS.items()},
                   prose_leads={k: rng.choice(v) for k, v in _PROSE_LEADS.items()},
                   opener=rng.choice(_OPENERS), closer=rng.choice(_CLOSERS),
                   purpose=rng.choice(w.get("purpose") or ["Here is a summary of the meeting."]))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _gerund(task: str) -> str:
    verb, _, rest = task.partition(" ")
    if verb in _DOUBLED:
        ing = verb + verb[-1] + "ing"
    elif verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        ing = verb[:-1] + "ing"
    else:
        ing = verb + "ing"
    return f"{ing} {rest}".strip()


def _sentence(s: str) -> str:
    s = s.strip()
    return s if s[-1:] in ".?!" else s + "."


# ---------------------------------------------------------------------------------------------- render

def render(transcript_id: str, refs: ReferenceItems, meeting: dt.date, wordings: dict, layout: Layout,
           defect: str | None = None, seed: int = 0) -> Rendering:
    """The answer for one transcript in one layout, with one defect or none; the same for the same
    (transcript, layout, defect, seed). ValueError when the defect cannot apply to this content."""
    layout.check()
    if transcript_id not in wordings:
        raise ValueError(f"no wordings for transcript {transcript_id!r}")
    w = wordings[transcript_id]
    style = _Style.draw(random.Random(f"style|{transcript_id}|{layout!r}|{seed}"), w)

    def fmt(due: dt.date) -> str:
        return format_due(due, layout.dates, meeting)

    content, changed = _apply_defect(_content(refs, w, layout.wording, transcript_id), defect, w, meeting,
                                     random.Random(f"defect|{transcript_id}|{layout!r}|{defect}|{seed}"), fmt)
    blocks = []
    if layout.wrapper == "greeting":
        blocks.append(style.opener)
    elif layout.wrapper == "summary_first":
        blocks.append(style.purpose)
    for number, kind in enumerate(("decisions", "actions", "questions"), start=1):
        blocks.append(_section(kind, number, content, layout, style, fmt))
    if layout.wrapper == "greeting":
        blocks.append(style.closer)
    return Rendering(transcript_id, layout, defect, "\n\n".join(blocks) + "\n", content.items(), changed)


def _section(kind: str, number: int, c: _Content, layout: Layout, style: _Style, fmt) -> str:
    title = style.titles[kind]
    heading = {"markdown": f"## {title}", "bold": f"**{title}:**" if style.bold_colon else f"**{title}**",
               "label": f"{title}:", "numbered": f"{number}. {title}", "none": None}[layout.sections]
    indent = "   " if layout.sections == "numbered" else ""
    prose = layout.items == "prose"
    entries = {"decisions": c.decisions, "actions": c.actions, "questions": c.questions}[kind]
    if not entries and heading is None:
        return _NONE_SENTENCES[kind]
    if not entries:
        body = "None."
    elif prose:
        body = _prose(kind, entries, layout, style, fmt)
    elif kind == "actions" and layout.items == "table":
        body = _table(entries, layout, style, fmt)
    else:
        body = _list(kind, entries, layout, style, fmt, indent)
    if heading is not None:
        return f"{heading}\n{body}"
    if prose:
        lead = style.prose_leads[kind]
        if not lead:
            return body
        return f"{lead}\n{body}" if "\n" in body else f"{lead} {body}"
    return f"{style.list_leads[kind]}\n{body}"


def _marker(layout: Layout, style: _Style, i: int) -> str:
    return f"{i}." if layout.items == "numbers" else style.bullet


def _list(kind: str, entries, layout: Layout, style: _Style, fmt, indent: str) -> str:
    if kind != "actions":
        return "\n".join(f"{indent}{_marker(layout, style, i)} {_cap(_sentence(e.text) if e.text[:1].isupper() else e.text)}"
                         for i, e in enumerate(entries, start=1))
    if layout.owner == "heading":
        lines = []
        for owner, group in _by_owner(entries):
            lines.append(style.owner_heading.format(o=owner))
            lines += [_list_action(a, "heading", layout, style, fmt, indent, i) for i, a in enumerate(group, start=1)]
        return "\n".join(lines)
    return "\n".join(_list_action(a, layout.owner, layout, style, fmt, indent, i)
                     for i, a in enumerate(entries, start=1))


def _list_action(a: _Action, placement: str, layout: Layout, style: _Style, fmt, indent: str, i: int) -> str:
    prefix = f"{indent}{_marker(layout, style, i)} "
    return prefix + _action_line(a, placement, style, fmt, " " * len(prefix))


def _by_owner(actions) -> list[tuple[str, list[_Action]]]:
    groups: dict[str, list[_Action]] = {}
    for a in actions:
        groups.setdefault(a.item.owner, []).append(a)
    return list(groups.items())


def _tail(a: _Action, style: _Style, fmt) -> str:
    with_date, without = style.due_tail
    if a.item.due is not None:
        return with_date.format(d=fmt(a.item.due))
    return without.format(n=style.null_due) if style.null_due else ""


def _action_line(a: _Action, placement: str, style: _Style, fmt, pad: str) -> str:
    o, t, v = a.item.owner, a.task, style.variant
    due = fmt(a.item.due) if a.item.due is not None else None
    if placement == "before":
        head = (f"{o}: {t}", f"**{o}**: {t}", f"{o} to {t}")[v]
        return head + _tail(a, style, fmt)
    if placement == "after":
        return f"{_cap(t)} {('-', '—', '→')[v]} {o}" + _tail(a, style, fmt)
    if placement == "parens":
        if v == 0:
            when = f" - due {due}" if due else (f" - {style.null_due}" if style.null_due else "")
            return f"{_cap(t)} ({o}){when}"
        when = f"by {due}" if due else style.null_due
        return f"{_cap(t)} ({o}, {when})" if when else f"{_cap(t)} ({o})"
    if placement == "field":
        when = due or style.null_due or "none"
        if v == 0:
            return f"{_cap(t)} | Owner: {o} | Due: {when}"
        if v == 1:
            return f"{_cap(t)} — Owner: {o}; Due: {when}"
        return f"Task: {t}\n{pad}Owner: {o}\n{pad}Due: {when}"
    return _cap(t) + _tail(a, style, fmt)  # heading: the owner is the line above


def _table(actions, layout: Layout, style: _Style, fmt) -> str:
    columns = layout.columns or ("Owner", "Task", "Due")
    rows = [columns, tuple("-" * max(3, len(c)) for c in columns)]
    for a in actions:
        cell = {"owner": a.item.owner, "task": _cap(a.task),
                "due": fmt(a.item.due) if a.item.due is not None else (style.null_due or "")}
        rows.append(tuple(cell[_COLUMN_ROLE[c]] for c in columns))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _prose(kind: str, entries, layout: Layout, style: _Style, fmt) -> str:
    if kind == "decisions":
        return " ".join(_sentence(e.text) for e in entries)
    if kind == "questions":
        out = []
        for i, e in enumerate(entries):
            if e.text.startswith("whether"):
                lead = ("It is still open", "Nobody knows yet", "It remains unclear")[(style.variant + i) % 3]
                out.append(_sentence(f"{lead} {e.text}"))
            else:
                out.append(_sentence(e.text))
        return " ".join(out)
    if layout.owner == "heading":
        paras = []
        for owner, group in _by_owner(entries):
            paras.append(style.owner_heading.format(o=owner) + "\n"
                         + " ".join(_prose_action(a, "heading", style, fmt) for a in group))
        return "\n\n".join(paras)
    return " ".join(_prose_action(a, layout.owner, style, fmt) for a in entries)


def _prose_action(a: _Action, placement: str, style: _Style, fmt) -> str:
    o, t = a.item.owner, a.task
    due = fmt(a.item.due) if a.item.due is not None else None
    by = f" by {due}" if due else {"no date set": " (no date set)", "no deadline": ", with no deadline", None: ""}[
        style.null_due]
    if placement == "before":
        return f"{o} will {t}{by}."
    if placement == "after":
        when = f", due {due}" if due else {"no date set": ", no date set", "no deadline": ", no deadline", None: ""}[
            style.null_due]
        return (f"{_cap(_gerund(t))} falls to {o}{when}." if style.variant != 1
                else f"{_cap(_gerund(t))} is {o}'s job{when}.")
    if placement == "parens":
        return f"{_cap(t)} ({o}){by}."
    if placement == "field":
        when = due or style.null_due or "none"
        return f"{_cap(t)} (owner: {o}; due: {when})."
    return f"{_cap(t)}{by}."  # heading


def sample(transcripts: dict[str, tuple[ReferenceItems, dt.date]] | None = None, wordings: dict | None = None,
           n_layouts: int = 20, defects: tuple[str | None, ...] = (None, *DEFECTS), seed: int = 0) -> list[Rendering]:
    """Every (transcript, layout, defect) rendering over `layouts(n_layouts, seed)`, leaving out the
    defects that cannot apply to a transcript."""
    transcripts = transcripts or load_references()
    wordings = wordings or load_wordings()
    out = []
    for (tid, (refs, meeting)), layout, defect in itertools.product(transcripts.items(), layouts(n_layouts, seed),
                                                                     defects):
        try:
            out.append(render(tid, refs, meeting, wordings, layout, defect, seed))
        except ValueError:
            if defect is None:
                raise
    return out
