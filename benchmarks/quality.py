"""The graders' own cost, measured in one run: the `notes` scorer per answer (lexical and
semantic matching, the embedding model's load), and one judge's qualification on the shipped
calibration set (graded afresh, not from the cache).

    python benchmarks/quality.py                                   # notes + smollm2-135m-fp32/checklist
    python benchmarks/quality.py --judge smollm2-135m-int8 --mode rubric
    python benchmarks/quality.py --no-judge                        # notes only (no model needed)
    python benchmarks/quality.py --no-judge --repeats 1 --answers 3   # the smallest run (not a figure)

Goals: notes with lexical matching < 5 ms per answer; with semantic matching <= 30 ms per answer
after load, embedding model load <= 3 s (issue 23); a 135M judge's qualification <= 3 min on 2
cores (then cached). Prints each figure against its goal. Semantic figures are per answer seen
for the first time (the reference items' embeddings cached, as a run computes them once per
prompt; the answer's own items not): a repeated answer, as a deterministic model gives every
round, costs about what lexical matching costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml

from judges import notes, qualify
from runner.config import prompts

ROOT = Path(__file__).resolve().parent.parent
NOTES_GOAL_MS = 5.0
SEMANTIC_GOAL_MS = 30.0
LOAD_GOAL_S = 3.0
QUALIFY_GOAL_S = 180.0


def notes_cost(repeats: int = 20, answers: int | None = None) -> None:
    """Median and max milliseconds per answer over every answer of known order we ship: the
    calibration set and the held-out answers for the ten benchmark transcripts (or the first
    `answers` of them)."""
    cases = []
    for t in qualify.load_calibration().transcripts:
        cases += [(t.prompt, a.text) for a in t.answers]
    bench = {p.id: p for p in prompts.load(ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml").prompts}
    held_out = yaml.safe_load((ROOT / "tests" / "data" / "known_order.yaml").read_text())["answers"]
    cases += [(bench[pid], a["text"]) for pid, answers in held_out.items() for a in answers]
    cases = cases[:answers]
    per_answer = []
    for prompt, text in cases:
        t = time.perf_counter()
        for _ in range(repeats):
            notes.score(prompt, text, "lexical")
        per_answer.append((time.perf_counter() - t) / repeats * 1000)
    med, worst = statistics.median(per_answer), max(per_answer)
    print(f"notes scorer, lexical matching: {len(cases)} answers x {repeats} repeats: median {med:.2f} ms, max "
          f"{worst:.2f} ms per answer (goal < {NOTES_GOAL_MS:g} ms: {'met' if worst < NOTES_GOAL_MS else 'NOT met'})")

    from judges import embedding

    embedding.encoder.cache_clear()
    t = time.perf_counter()
    enc = embedding.encoder()  # reads and verifies (sha256) the weights, builds the tokenizer
    load_s = time.perf_counter() - t
    print(f"embedding model load (all-MiniLM-L6-v2, sha256 check included): {load_s:.2f} s (goal <= "
          f"{LOAD_GOAL_S:g} s: {'met' if load_s <= LOAD_GOAL_S else 'NOT met'})")
    notes.score(cases[0][0], cases[0][1], "semantic")  # first call: NumPy/BLAS warm-up, not a figure
    # A run embeds each prompt's reference items once; what each new answer costs is its own items.
    for prompt, _ in cases:
        r = prompt.reference_items
        enc.encode([*r.decisions, *(a.task for a in r.action_items), *r.open_questions])
    references = dict(enc._cache)
    cold, warm = [], []
    for prompt, text in cases:
        enc._cache = dict(references)
        t = time.perf_counter()
        notes.score(prompt, text, "semantic")
        cold.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        notes.score(prompt, text, "semantic")  # the same answer again, as the next round gives it
        warm.append((time.perf_counter() - t) * 1000)
    med, worst, p90 = statistics.median(cold), max(cold), sorted(cold)[int(0.9 * (len(cold) - 1))]
    print(f"notes scorer, semantic matching: {len(cases)} answers, each seen for the first time: median {med:.1f} ms, "
          f"p90 {p90:.1f} ms, max {worst:.1f} ms per answer (goal <= {SEMANTIC_GOAL_MS:g} ms: "
          f"{'met' if med <= SEMANTIC_GOAL_MS else 'NOT met'} at the median); seen again (its embeddings cached): "
          f"median {statistics.median(warm):.2f} ms")


def judge_cost(alias: str, mode: str, reasoning: bool) -> None:
    from judges.grading import judge_backend, qualify_judge
    from runner.config.plan import freeze
    from runner.config.schema import JudgeConfig

    cfg = freeze(JudgeConfig(name=alias, model=alias, mode=mode, reasoning=reasoning))
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
    ap.add_argument("--repeats", type=int, default=20, metavar="N",
                    help="times each answer is scored for the notes figure (default: %(default)s)")
    ap.add_argument("--answers", type=int, default=None, metavar="N",
                    help="score only the first N answers of known order (default: all)")
    args = ap.parse_args()
    if args.repeats < 1 or (args.answers is not None and args.answers < 1):
        ap.error("--repeats and --answers must be >= 1")
    notes_cost(args.repeats, args.answers)
    if not args.no_judge:
        judge_cost(args.judge, args.mode, args.reasoning)


if __name__ == "__main__":
    main()
