"""Why do small rubric judges answer 1 everywhere? The reply's field order (score before or after
the rationale) and the prompt's `<1-5>` example, tried on the calibration set of known order.

    python benchmarks/rubric_variants.py [JUDGE_ALIAS ...]   (default: smollm2-135m-int8 smollm2-135m-fp32)

Prints, per judge and variant, the qualification figures (judges/qualify.py) and the share of
aspect scores that were 1. One run, one machine; the README keeps three int8 rows of one run and says so.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from judges import qualify
from judges.grading import judge_backend
from judges.rubric import RubricJudge
from runner.config.schema import JudgeConfig

VARIANTS = {"score first, <1-5> example (before)": (False, True),
            "rationale first, <1-5> example": (True, True),
            "score first, no example": (False, False),
            "rationale first, no example": (True, False)}


def main(aliases: list[str]) -> None:
    cal = qualify.load_calibration()
    for alias in aliases:
        backend = judge_backend(JudgeConfig(name=alias, model=alias))
        backend.load()
        try:
            for label, (rationale_first, example) in VARIANTS.items():
                judge = RubricJudge(backend, alias, rationale_first=rationale_first, score_example=example)
                scores: Counter = Counter()

                def grade(prompt, answer, judge=judge, scores=scores):
                    g = judge.grade(prompt, answer)
                    scores.update(g.scores.values())
                    return qualify.Graded(sum(g.scores.values()) / len(g.scores) if g.scores else None, g.error)

                grader = qualify.Grader(f"{alias}/rubric[{label}]", {"bench": label, "alias": alias}, grade)
                t = time.perf_counter()
                q = qualify.qualify(grader, cal, refresh=True)
                ones = scores[1] / sum(scores.values()) if scores else float("nan")
                print(f"{alias:18s} {label:38s} spearman {qualify.fmt_figure(q['spearman']['pooled'], '+.2f')}  "
                      f"adjacent {qualify.fmt_figure(q['adjacent_accuracy'], '.2f')}  agreeable "
                      f"{qualify.fmt_figure(q['agreeableness'], '.2f')}  lift {qualify.fmt_figure(q['injection_lift'], '+.2f')}  "
                      f"parse-fail {qualify.fmt_figure(q['parse_failure_rate'], '.2f')}  share of 1s {ones:.2f}  "
                      f"scores {dict(sorted(scores.items()))}  {time.perf_counter() - t:.0f} s", flush=True)
        finally:
            backend.unload()


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m-int8", "smollm2-135m-fp32"])
