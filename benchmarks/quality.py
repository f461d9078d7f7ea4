"""The graders' own cost, measured in one run: the `notes` scorer per answer, and one judge's
qualification on the shipped calibration set (graded afresh, not from the cache).

    python benchmarks/quality.py                                   # notes + smollm2-135m-fp32/checklist
    python benchmarks/quality.py --judge smollm2-135m-int8 --mode rubric
    python benchmarks/quality.py --no-judge                        # notes only (no model needed)

Goals (issue: quality you can trust): notes < 5 ms per answer; a 135M judge's qualification
<= 3 min on 2 cores (then cached). Prints each figure against its goal.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from judges import notes, qualify
from runner.config import prompts

ROOT = Path(__file__).resolve().parent.parent
NOTES_GOAL_MS = 5.0
QUALIFY_GOAL_S = 180.0


def notes_cost(repeats: int = 20) -> None:
    """Median and max milliseconds per answer over every answer of known order we ship: the
    calibration set and the held-out answers for the ten benchmark transcripts."""
    cases = []
    for t in qualify.load_calibration().transcripts:
        cases += [(t.prompt, a.text) for a in t.answers]
    bench = {p.id: p for p in prompts.load(ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml").prompts}
    held_out = yaml.safe_load((ROOT / "tests" / "data" / "known_order.yaml").read_text())["answers"]
    cases += [(bench[pid], a["text"]) for pid, answers in held_out.items() for a in answers]
    per_answer = []
    for prompt, text in cases:
        t = time.perf_counter()
        for _ in range(repeats):
            notes.score(prompt, text)
        per_answer.append((time.perf_counter() - t) / repeats * 1000)
    med, worst = statistics.median(per_answer), max(per_answer)
    print(f"notes scorer: {len(cases)} answers x {repeats} repeats: median {med:.2f} ms, max {worst:.2f} ms per "
          f"answer (goal < {NOTES_GOAL_MS:g} ms: {'met' if worst < NOTES_GOAL_MS else 'NOT met'})")


def judge_cost(alias: str, mode: str, reasoning: bool) -> None:
    from judges.grading import judge_backend, qualify_judge
    from runner.config.schema import JudgeConfig

    cfg = OmegaConf.structured(JudgeConfig(name=alias, model=alias, mode=mode, reasoning=reasoning))
    backend = judge_backend(cfg)
    t = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - t
    try:
        t = time.perf_counter()
        q = qualify_judge(cfg, backend, refresh=True)
        wall = time.perf_counter() - t
    finally:
        backend.unload()
    print(qualify.text_report(q))
    print(f"qualification of {q['grader']}: {wall:.0f} s for {q['n_grades']} grades (model load {load_s:.1f} s "
          f"before it) (goal <= {QUALIFY_GOAL_S:.0f} s: {'met' if wall <= QUALIFY_GOAL_S else 'NOT met'}); "
          "a second run reads the cache")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge", default="smollm2-135m-fp32")
    ap.add_argument("--mode", default="checklist", choices=["rubric", "checklist"])
    ap.add_argument("--reasoning", action="store_true", help="checklist: a reason before each verdict (the pack "
                                                              "judges' default is verdicts only)")
    ap.add_argument("--no-judge", action="store_true")
    args = ap.parse_args()
    notes_cost()
    if not args.no_judge:
        judge_cost(args.judge, args.mode, args.reasoning)


if __name__ == "__main__":
    main()
