"""Behavioural tests of a grader (CheckList's invariance and directional tests) on answers the
grader was not written with: each calibration transcript's content rendered in many layouts by
judges/renderings.py, from hand-written wordings (conf/calibration/wordings.yaml).

- **Invariance**: every rendering of the correct content must grade >= MIN_CORRECT (4.75 of 5):
  the layout, the words and a friendly first or last line must not matter.
  `invariance.rate` = renderings graded >= MIN_CORRECT / renderings.
- **Directional**: the same layout with one defect (an owner swapped, a due date moved, an item
  dropped, a decision invented, a decision negated, every owner and date rotated) must grade
  strictly below the correct rendering, and, for a grader whose formula states each defect's
  weight (`notes`: `notes_expected`), by at least that weight: (defective - 1) <= (correct - 1) x
  the formula's factor for that defect, + 1e-9. `directional.rate` = defective renderings that
  pass / defective renderings.

Both rates are also given by defect and by each layout dimension's value (`by`), so a failure
says where it lives; `fails` lists the first few with their text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict

from judges import renderings
from runner.config.prompts import ActionItem, Prompt, ReferenceItems

MIN_CORRECT = 4.75
DIMENSIONS = ("sections", "items", "owner", "dates", "wrapper", "wording")
SHOWN_FAILS = 5


def notes_expected(refs: ReferenceItems, r: renderings.Rendering) -> float:
    """The factor the `notes` formula gives a defective rendering against the correct one
    (judges/notes.py: completeness x accuracy x faithfulness): a dropped item costs 1/N of
    completeness, an invented decision INVENTED_PENALTY of faithfulness, a negated decision its
    item and CONTRADICTED_PENALTY, and each wrong owner or due 1/(2 x action items) of accuracy."""
    from judges import notes

    n = refs.count()
    if r.defect == "item_dropped":
        return (n - 1) / n
    if r.defect == "decision_invented":
        return 1 - notes.INVENTED_PENALTY
    if r.defect == "decision_negated":
        return (n - 1) / n * (1 - notes.CONTRADICTED_PENALTY)
    wrong = 0
    by_task = {a.task: a for a in r.items.action_items}
    for a in refs.action_items:
        got: ActionItem = by_task[a.task]
        wrong += (got.owner.split()[0].lower() != a.owner.split()[0].lower()) + (got.due != a.due)
    return 1 - wrong / (2 * len(refs.action_items))


def run(grade: Callable[[Prompt, str], float | None], prompts: dict[str, Prompt], layouts_per_transcript: int,
        expected: Callable[[ReferenceItems, renderings.Rendering], float] | None = None, seed: int = 0,
        progress: Callable[[str], None] | None = None) -> dict:
    """Grade every rendering of every transcript in `prompts` (ids of the calibration set) and
    return the figures above. `grade` returns the 1-5 overall or None when it failed."""
    wordings = renderings.load_wordings()
    refs = renderings.load_references()
    inv, dirn = _Tally(), _Tally()
    for layout in renderings.layouts(layouts_per_transcript, seed):
        for tid, prompt in prompts.items():
            if tid not in wordings or tid not in refs:
                continue
            items, meeting = refs[tid]
            clean = renderings.render(tid, items, meeting, wordings, layout, None, seed)
            base = grade(prompt, clean.text)
            inv.add(clean, base is not None and base >= MIN_CORRECT, base)
            for defect in renderings.DEFECTS:
                try:
                    bad = renderings.render(tid, items, meeting, wordings, layout, defect, seed)
                except ValueError:
                    continue  # this defect cannot apply to this transcript
                got = grade(prompt, bad.text)
                ok = base is not None and got is not None and got < base
                if ok and expected is not None:
                    ok = got - 1 <= (base - 1) * expected(items, bad) + 1e-9
                dirn.add(bad, ok, got, base)
            if progress:
                progress(f"{tid} {inv.n} renderings")
    return {"min_correct": MIN_CORRECT, "renderings": inv.n, "defective": dirn.n,
            "invariance": inv.figures(), "directional": dirn.figures(by_defect=True)}


class _Tally:
    def __init__(self) -> None:
        self.n = 0
        self.passed = 0
        self.by: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        self.defects: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.fails: list[dict] = []

    def add(self, r: renderings.Rendering, ok: bool, score: float | None, base: float | None = None) -> None:
        self.n += 1
        self.passed += ok
        layout = asdict(r.layout)
        for dim in DIMENSIONS:
            cell = self.by[dim][str(layout[dim])]
            cell[0] += ok
            cell[1] += 1
        if r.defect:
            self.defects[r.defect][0] += ok
            self.defects[r.defect][1] += 1
        if not ok and len(self.fails) < SHOWN_FAILS:
            self.fails.append({"transcript": r.transcript, "defect": r.defect, "score": score, "correct": base,
                               "layout": {d: layout[d] for d in DIMENSIONS}, "changed": list(r.changed),
                               "text": r.text})

    def figures(self, by_defect: bool = False) -> dict:
        out = {"rate": self.passed / self.n if self.n else None, "n": self.n,
               "by": {dim: {v: c[0] / c[1] for v, c in vals.items()} for dim, vals in self.by.items()},
               "fails": self.fails}
        if by_defect:
            out["by_defect"] = {d: c[0] / c[1] for d, c in self.defects.items()}
        return out
