"""The `reference_coverage` scorer: a prompt with only a `reference` text, graded by meaning.

No hand-written reference_items: the reference and the answer are both cut into statements (the
`notes` parser: bullets, table rows, sentences and joined clauses; headings decide nothing here).

- `coverage` = (reference statements stated by some answer statement + 0.5 x those stated with a
  fact changed) / reference statements. An
  answer statement states a reference one when their evidence (judges/matching.py: max(stem
  overlap, (cosine - 0.25) / 0.75)) is >= 0.4 and it keeps the reference statement's facts: its
  person (notes.owner_of) and its dates agree where the answer statement gives them, and it
  does not negate it (`matching.contradicts`); else it is stated with a fact changed. Pairs are
  assigned one to one, best first.
- `unsupported` = answer statements that neither state a reference statement nor are supported
  by the prompt's own text (evidence >= 0.4 against some line of the user message) / answer
  statements: what the answer adds that nobody said.
- `score` (1-5) = 1 + 4 x coverage x max(0, 1 - 0.3 x unsupported statements): as in `notes`, a
  statement nobody made costs 30% (a made-up claim misleads more than a gap).

Semantic matching needs the embedding model (judges/embedding.py); `match="lexical"` uses stems only.
"""

from __future__ import annotations

import re

from judges import dates, matching, notes
from runner.config.prompts import Prompt

WRONG_CREDIT = 0.5  # a statement made with a fact changed (another owner, date or polarity) counts half
_LINE = re.compile(r"(?<=[.!?])\s+|\n+")


def statements(text: str, names: set[str]) -> list[str]:
    parsed = notes.parse_sections(text, names)
    return [it.text for it in parsed.items]


def _speakers(prompt: Prompt) -> set[str]:
    text = prompt.user_text()
    found = [m.group(1).lower() for m in notes._SPEAKER.finditer(text)]
    return {n for n in found if found.count(n) > 1}


def score(prompt: Prompt, answer: str, match: str = "semantic") -> dict[str, float] | None:
    if not prompt.reference:
        return None
    names = _speakers(prompt)
    meeting = dates.meeting_date(prompt.user_text())
    refs = statements(prompt.reference, names)
    ans = statements(answer, names)
    if not refs:
        return None
    source = [s.strip() for s in _LINE.split(prompt.user_text()) if len(notes.content_stems(s, set())) >= 2]
    ref_stems = [notes.content_stems(t, names) for t in refs]
    ans_stems = [notes.content_stems(t, names) for t in ans]
    src_stems = [notes.content_stems(t, names) for t in source]
    if match == "semantic" and ans:
        from judges import embedding

        sims = embedding.cosine(refs + source, ans)
        ref_cos, src_cos = sims[:len(refs)], sims[len(refs):]
    else:
        ref_cos = src_cos = None

    def evidence(stems_a: set[str], stems_b: set[str], cos: float | None) -> float:
        lex = notes.overlap(stems_a, stems_b)
        return lex if cos is None else max(lex, (cos - matching.COS_FLOOR) / (1 - matching.COS_FLOOR))

    who = [notes.owner_of(t, names) for t in refs]
    when = [{d for _, d in dates.find_dates(t, meeting)} for t in refs]
    pairs = []
    for i, r in enumerate(refs):
        for j, a in enumerate(ans):
            ev = evidence(ref_stems[i], ans_stems[j], None if ref_cos is None else float(ref_cos[i, j]))
            if ev < matching.MATCH_THRESHOLD:
                continue
            owner = notes.owner_of(a, names)
            a_dates = {d for _, d in dates.find_dates(a, meeting)}
            kept = (not who[i] or not owner or owner == who[i]) and (not a_dates or not when[i] or bool(when[i] & a_dates))
            pairs.append((ev, i, j, kept and not matching.contradicts(r, a)))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    stated: dict[int, int] = {}
    used: set[int] = set()
    wrong: set[int] = set()
    for _, i, j, right in pairs:
        if i in stated or j in used or j in wrong:
            continue
        if not right:
            wrong.add(j)  # its best reading changes a reference statement's facts
            continue
        stated[i] = j
        used.add(j)
    unsupported = 0
    for j in range(len(ans)):
        if j in used or j in wrong:
            continue
        support = max((evidence(src_stems[k], ans_stems[j], None if src_cos is None else float(src_cos[k, j]))
                       for k in range(len(source))), default=0.0)
        if support < matching.MATCH_THRESHOLD:
            unsupported += 1
    coverage = (len(stated) + WRONG_CREDIT * len(wrong)) / len(refs)
    unsupported_share = unsupported / len(ans) if ans else 0.0
    return {"coverage": coverage, "unsupported": unsupported_share, "statements": float(len(ans)),
            "score": 1 + 4 * coverage * max(0.0, 1 - notes.INVENTED_PENALTY * unsupported)}
