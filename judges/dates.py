"""Dates as people write them in meeting notes, read into `datetime.date`.

Recognised: "February 21", "Feb 21", "Feb. 21st", "21 February", "21st of February",
"Friday, February 21", "February 21, 2025", "2025-02-21", "2025/02/21", "2/21", "02/21/2025"
(month first, as in US notes, unless the first number cannot be a month: "21/02/2025" and
"21/02" are day first), and, against the meeting's date: "today", "tonight",
"tomorrow", "end of day", a weekday name ("Thursday", "Thurs", "this Friday": the next such
day after the meeting; lower-case abbreviations such as "sat" are not days), "the 12th" (the
next 12th from the meeting on) and "end of the month". "1/2 of the team" and "2.4/2.5" are
not dates. A date without a year takes the meeting's year.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
WEEKDAYS.update({name.lower(): i for i, name in enumerate(calendar.day_abbr)})
WEEKDAYS.update({"tues": 1, "weds": 2, "thur": 3, "thurs": 3})

_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?[ \t]+(?P<year>\d{4}))?"
_WEEKDAY = r"(?P<weekday>" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")\.?"

# Order matters: the first pattern that matches at a position wins.
_PATTERNS = [
    re.compile(r"\b(?P<year>\d{4})[-/](?P<month>\d{1,2})[-/](?P<day>\d{1,2})\b"),
    re.compile(r"(?<![\d.])\b(?P<month>\d{1,2})/(?P<day>\d{1,2})(?:/(?P<year>\d{4}|\d{2}))?\b(?![/.]\d)(?!\s+of\b)"),
    # a date never spans a line break: "by 5 December\n2. Esther ..." is December 5, not December 2
    re.compile(r"\b" + _MONTH + r"[ \t]+" + _DAY + r"\b" + _YEAR, re.I),
    re.compile(r"\b" + _DAY + r"(?:[ \t]+of)?[ \t]+" + _MONTH + r"\b" + _YEAR, re.I),
    re.compile(r"\b(?P<rel>today|tonight|tomorrow|end of (?:the )?day|eod|end of (?:the )?month)\b", re.I),
    re.compile(r"\b(?:this\s+|next\s+|on\s+|by\s+)?" + _WEEKDAY + r"\b", re.I),
    re.compile(r"\bthe\s+(?P<nth>\d{1,2})(?:st|nd|rd|th)\b", re.I),
]
def find_dates(text: str, meeting: dt.date | None = None) -> list[tuple[int, dt.date]]:
    """Every date in `text` as (character offset, date), in order of appearance. A weekday
    directly before a written date ("Friday, February 21") is part of that date, not a second
    one. Relative forms need `meeting`; without it they are skipped."""
    return [(start, date) for start, date, _ in _scan(text, meeting)]


def spans(text: str, meeting: dt.date | None = None) -> list[tuple[int, int]]:
    """(start, end) of every written date, a weekday beside a date included ("Friday, February
    21" is two spans), in order."""
    return [(start, end) for start, end, _, _ in _found(text, meeting)]


def meeting_date(text: str) -> dt.date | None:
    """The meeting's date: the first date in `text` written with its year (a transcript's
    header, e.g. "Postmortem of Saturday, April 12 - meeting on Tuesday, April 15, 2025"
    gives April 15); else the first date at all."""
    found = _scan(text, None)
    for _, date, has_year in found:
        if has_year:
            return date
    return found[0][1] if found else None


def _found(text: str, meeting: dt.date | None) -> list[tuple[int, int, dt.date, bool]]:
    found: list[tuple[int, int, dt.date, bool]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _PATTERNS:
        for m in pattern.finditer(text):
            start, end = m.span()
            if any(start < e and s < end for s, e in taken):
                continue
            date = _to_date(m, meeting)
            if date is None:
                continue
            taken.append((start, end))
            found.append((start, end, date, bool(m.groupdict().get("year"))))
    found.sort(key=lambda f: f[0])
    return found


def _scan(text: str, meeting: dt.date | None) -> list[tuple[int, dt.date, bool]]:
    found = _found(text, meeting)
    out = []
    for i, (start, end, date, has_year) in enumerate(found):
        nxt = found[i + 1] if i + 1 < len(found) else None
        prev = found[i - 1] if i else None
        # "Friday, February 21", "Dec 12 (Fri)": the weekday only names the day of the date beside it
        if _is_weekday(text[start:end]) and ((nxt and nxt[0] - end <= 3) or (prev and start - prev[1] <= 3)):
            continue
        out.append((start, date, has_year))
    return out


def _is_weekday(span: str) -> bool:
    return span.strip().split()[-1].rstrip(".").lower() in WEEKDAYS


def _to_date(m: re.Match, meeting: dt.date | None) -> dt.date | None:
    groups = m.groupdict()
    if groups.get("rel"):
        if meeting is None:
            return None
        rel = groups["rel"].lower()
        if rel == "tomorrow":
            return meeting + dt.timedelta(days=1)
        if "month" in rel:
            return meeting.replace(day=calendar.monthrange(meeting.year, meeting.month)[1])
        return meeting
    if groups.get("nth"):  # "by the 12th": the next such day of the month, from the meeting on
        if meeting is None:
            return None
        day = int(groups["nth"])
        year, month = meeting.year, meeting.month
        if day < meeting.day:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        try:
            return dt.date(year, month, day)
        except ValueError:
            return None
    if groups.get("weekday"):
        word = groups["weekday"].rstrip(".")
        if meeting is None or (len(word) <= 5 and word.islower()):
            return None  # "sat", "sun", "wed" in lower case are words, not days
        ahead = (WEEKDAYS[groups["weekday"].lower()] - meeting.weekday()) % 7 or 7
        return meeting + dt.timedelta(days=ahead)
    month = groups["month"]
    day = int(groups["day"])
    if month.isdigit():
        month = int(month)
        if month > 12 >= day:  # "21/02": day first, as written outside the US
            month, day = day, month
    else:
        month = MONTHS.get(month.lower().rstrip("."))
    year = groups.get("year")
    if year is None:
        year = meeting.year if meeting else dt.date.today().year
    else:
        year = int(year) + (2000 if len(year) == 2 else 0)
    try:
        return dt.date(int(year), int(month), day)
    except (TypeError, ValueError):
        return None
