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


def score(prompt: Prompt, answer: str, match: str = "semantic") -> dict[str, float] | None:
    if not prompt.reference:
        return None
    names = notes.candidate_names(prompt, None)
    meeting = dates.meeting_date(prompt.user_text())
    refs = statements(prompt.reference, names)
    ans = statements(answer, names)
    if not refs:
        return None
    source = [s.strip() for s in _LINE.split(prompt.user_text()) if len(notes.content_stems(s, set())) >= 2]
    ref_stems = [notes.content_stems(t, names) for t in refs]
    ans_stems = [notes.content_stems(t, names) for t in ans]
    src_stems = [notes.content_stems(t, names) for t in source]
    ref_cos = src_cos = None
    if match == "semantic" and ans:
        from judges import embedding

        sims = embedding.cosine(refs + source, ans)
        ref_cos, src_cos = sims[:len(refs)], sims[len(refs):]

    who = [notes.owner_of(t, names) for t in refs]
    when = [{d for _, d in dates.find_dates(t, meeting)} for t in refs]
    ans_who = [notes.owner_of(a, names) for a in ans]
    ans_when = [{d for _, d in dates.find_dates(a, meeting)} for a in ans]

    def changed(i: int, j: int) -> tuple[int, bool]:
        """(no fact counts as evidence here, whether the statement changes a reference fact)."""
        kept = ((not who[i] or not ans_who[j] or ans_who[j] == who[i])
                and (not ans_when[j] or not when[i] or bool(when[i] & ans_when[j])))
        return 0, not kept or matching.contradicts(refs[i], ans[j])

    found = matching.assign(len(refs), len(ans), lambda i, j: notes.overlap(ref_stems[i], ans_stems[j]),
                            None if ref_cos is None else (lambda i, j: float(ref_cos[i, j])), changed,
                            lambda i, j: False)
    stated, used, wrong = found.ref_to_ans, set(found.ans_to_ref), found.contradicted
    unsupported = 0
    for j in range(len(ans)):
        if j in used or j in wrong:
            continue
        support = max((matching.meaning_or_words(notes.overlap(src_stems[k], ans_stems[j]),
                                                 None if src_cos is None else float(src_cos[k, j]))
                       for k in range(len(source))), default=0.0)
        if support < matching.MATCH_THRESHOLD:
            unsupported += 1
    coverage = (len(stated) + WRONG_CREDIT * len(wrong)) / len(refs)
    unsupported_share = unsupported / len(ans) if ans else 0.0
    return {"coverage": coverage, "unsupported": unsupported_share, "statements": float(len(ans)),
            "score": 1 + 4 * coverage * max(0.0, 1 - notes.INVENTED_PENALTY * unsupported)}
