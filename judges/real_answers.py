"""Real models' answers labelled by hand (conf/calibration/real-answers.yaml): how far a grader
agrees with a person who read each answer against its transcript.

Figures (`figures`):
- `spearman`: Spearman's rho between the grader's overall (1-5) and the person's grade over all
  labelled answers (average ranks for ties);
- `item_agreement` (graders that read items: `notes`): over every (answer, reference item), the
  share of the person's labels the grader agrees with: whether the item is stated, and for an
  action item both stated, whether its owner and its due are right. n counts those labels;
- `echo_in_summaries`: answers the person judged real summaries that runner/metrics/degenerate.py
  classes `echo` (must be none), and `summaries_degenerate` any class at all;
- `by_model`: the person's mean grade and the grader's, per model;
- `disagreements`: counts by label and direction ("owner.person_yes_grader_no": the person read
  the owner right, the grader did not).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import yaml

from runner.config import paths
from runner.config.errors import UserError
from runner.config.prompts import Prompt
from runner.metrics import degenerate

REAL_ANSWERS = paths.CONF_DIR / "calibration" / "real-answers.yaml"
KINDS = ("decisions", "action_items", "open_questions")


@dataclass(frozen=True)
class Labelled:
    id: str
    transcript: str
    model: str
    text: str
    grade: int
    summary: bool
    items: dict  # kind -> list of labels (bool for decisions/questions; {stated, owner, due} for action items)


def load(path: str | Path | None = None) -> tuple[list[Labelled], str]:
    """The labelled answers and the file's text (its digest keys the qualification cache)."""
    p = Path(path or REAL_ANSWERS)
    try:
        text = p.read_text()
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"labelled answers {p}: {exc}") from None
    out = []
    for i, a in enumerate((raw or {}).get("answers") or []):
        try:
            out.append(Labelled(str(a["id"]), str(a["transcript"]), str(a.get("model")), a["text"] or "",
                                int(a["grade"]), bool(a["summary"]), {k: list(a[k]) for k in KINDS}))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"labelled answers {p}, answer #{i + 1}: missing or malformed {exc}") from None
    return out, text


def figures(answers: list[Labelled], prompts: dict[str, Prompt], grade: Callable[[Prompt, str], float | None],
            read: Callable[[Prompt, str], list[dict]] | None = None) -> dict:
    """The figures above; `read` gives a grader's item reading (notes.explain), None for graders
    that give only an overall grade."""
    person, grader = [], []
    agree = total = 0
    disagreements: dict[str, int] = defaultdict(int)
    echo, flagged = [], []
    per_model: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for a in answers:
        prompt = prompts.get(a.transcript)
        if prompt is None:
            raise UserError(f"labelled answer {a.id}: no calibration transcript {a.transcript!r}")
        g = grade(prompt, a.text)
        if g is not None:
            person.append(a.grade)
            grader.append(g)
            per_model[a.model].append((a.grade, g))
        cls = degenerate.classify(a.text, [c for role, c in prompt.messages if role in ("system", "user")])
        if a.summary and cls:
            flagged.append({"id": a.id, "class": cls})
            if cls == "echo":
                echo.append(a.id)
        if read is None:
            continue
        got = _stated(read(prompt, a.text))
        for kind in KINDS:
            for k, label in enumerate(a.items[kind]):
                mine = got.get((kind, k))
                stated = label["stated"] if isinstance(label, dict) else bool(label)
                checks = [("stated", stated, mine is not None)]
                if kind == "action_items" and stated and mine is not None:
                    checks += [("owner", label.get("owner"), mine["owner_right"]),
                               ("due", label.get("due"), mine["due_right"])]
                for what, want, have in checks:
                    if want is None:
                        continue
                    total += 1
                    if bool(want) == bool(have):
                        agree += 1
                    else:
                        # a name MLflow takes as a metric's: letters, digits, "_", "." only
                        disagreements[f"{what}.person_{'yes' if want else 'no'}_grader_{'yes' if have else 'no'}"] += 1
    return {"n": len(answers), "graded": len(grader), "spearman": _spearman(grader, person),
            "item_agreement": agree / total if total else None, "item_labels": total,
            "disagreements": dict(sorted(disagreements.items(), key=lambda kv: -kv[1])),
            "echo_in_summaries": echo, "summaries_degenerate": flagged,
            "by_model": {m: {"n": len(v), "person": mean(p for p, _ in v), "grader": mean(g for _, g in v)}
                         for m, v in sorted(per_model.items())}}


def _spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho with average ranks for ties (scipy); None for fewer than 3 pairs or a constant side."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _stated(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {tuple(r["ref"]): r for r in rows if r.get("ref") is not None and r.get("status") == "matched"}
