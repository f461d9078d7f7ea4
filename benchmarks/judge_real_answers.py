"""How far a judge agrees with a person on answers real models wrote: the 120 hand-labelled answers
of conf/calibration/real-answers.yaml (three pack models, five calibration transcripts, four prompt
styles, two decodings), graded by the judge, against the person's 1-5 grades.

    python benchmarks/judge_real_answers.py JUDGE [--mode checklist|rubric] [--backend genai] [--limit N]
    python benchmarks/judge_real_answers.py qwen2.5-coder-1.5b-int4 --mode checklist --backend genai

The calibration set's answers were written for the calibration (one defect each); these were not,
so they test a judge on text it was not built from. Printed (judges/real_answers.py's figures):
Spearman between the judge's overall grade and the person's, the person's and the judge's mean per
model, how many answers the judge failed to grade, and seconds per grade; the `notes` scorer's
Spearman on the same answers beside it. One run, one machine.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("judge", help="a conf/judge name or a pack model alias (optionally NAME/checklist)")
    ap.add_argument("--mode", choices=["rubric", "checklist"], default=None)
    ap.add_argument("--backend", default=None, help="the conf/backend option the judge runs on (default: the config's)")
    ap.add_argument("--limit", type=int, default=None, help="the first N labelled answers only (a cheap run)")
    args = ap.parse_args(argv)

    from judges import qualify, real_answers, scorers
    from judges.cli import judge_config
    from judges.grading import judge_backend, make_judge

    cal = qualify.load_calibration()
    prompts = {t.prompt.id: t.prompt for t in cal.transcripts}
    labelled = sorted((a for a in real_answers.load()[0] if a.transcript in prompts), key=lambda a: a.transcript)
    labelled = labelled[:args.limit]  # one transcript's answers in a row: backend=genai reads it once
    judge_plan = judge_config(args.judge, args.mode, {"backend": args.backend})
    backend = judge_backend(judge_plan)
    backend.load()
    judge = make_judge(judge_plan, backend)
    errors = []

    def overall(prompt, answer):
        g = judge.grade(prompt, answer)
        if g.error or not g.scores:
            errors.append(g.error)
            return None
        return sum(g.scores.values()) / len(g.scores)

    t0 = time.perf_counter()
    try:
        fig = real_answers.figures(labelled, prompts, overall)
    finally:
        backend.unload()
    seconds = time.perf_counter() - t0
    notes = real_answers.figures(labelled, prompts, lambda p, a: scorers.score_all(["notes"], p, a).get("notes.score"))
    print(f"judge {judge_plan.grader} on backend {judge_plan.backend}: {len(labelled)} hand-labelled real answers")
    print(f"  Spearman vs the person   {qualify.fmt_figure(fig['spearman'], '+.2f')}  "
          f"(notes on the same answers: {qualify.fmt_figure(notes['spearman'], '+.2f')})")
    print(f"  graded                   {fig['graded']} of {fig['n']} ({len(errors)} judge errors)")
    for model, m in fig["by_model"].items():
        print(f"  {model:28s} person {m['person']:.2f}  judge {m['grader']:.2f}  (n={m['n']})")
    print(f"  {seconds / max(len(labelled), 1):.1f} s a grade ({seconds:.0f} s in all)")


if __name__ == "__main__":
    main()
