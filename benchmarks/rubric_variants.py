"""Why do small rubric judges answer 1 everywhere? The reply's field order (score before or after
the rationale) and the prompt's `<1-5>` example, tried on the calibration set of known order.

    python benchmarks/rubric_variants.py [JUDGE_ALIAS ...]   (default: smollm2-135m-int8 smollm2-135m-fp32)
    python benchmarks/rubric_variants.py MODEL_ID --base-url URL   (a judge served by an OpenAI-compatible endpoint)
    python benchmarks/rubric_variants.py smollm2-135m-int4 --variants 1 --transcripts 1   (the smallest run)
    python benchmarks/rubric_variants.py qwen2.5-coder-1.5b-int4 --backend genai --pick 2,4   (rationale first, on genai)

Prints, per judge and variant, the qualification figures (judges/qualify.py) and the share of
aspect scores that were 1. One run, one machine; docs/quality.md keeps three int8 rows of one run and says so.
`--transcripts N` grades the first N calibration transcripts only (6 answers each): its figures are not
comparable with a whole set's, it exists so that the script can be run cheaply.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter

DEFAULT_JUDGES = ["smollm2-135m-int8", "smollm2-135m-fp32"]
VARIANTS = {"score first, <1-5> example (before)": (False, True),
            "rationale first, <1-5> example": (True, True),
            "score first, no example": (False, False),
            "rationale first, no example": (True, False)}


def calibration(transcripts: int | None):
    """The shipped calibration set, or its first `transcripts` transcripts (under their own digest,
    so a cut set never stands in for the whole one in the qualification cache)."""
    from judges import qualify

    cal = qualify.load_calibration()
    if transcripts is None or transcripts >= len(cal.transcripts):
        return cal
    return dataclasses.replace(cal, transcripts=cal.transcripts[:transcripts],
                               digest=f"{cal.digest}[:{transcripts}]")


def run(aliases: list[str], variants: list[int], transcripts: int | None, base_url: str | None = None,
        api_key_env: str | None = None, backend_option: str | None = None) -> None:
    from judges import qualify
    from judges.grading import judge_backend
    from judges.rubric import RubricJudge
    from runner.config.schema import JudgeConfig

    cal = calibration(transcripts)
    for alias in aliases:
        endpoint = {"backend": "openai", "base_url": base_url, "api_key_env": api_key_env} if base_url else {}
        if backend_option:
            endpoint["backend"] = backend_option
        backend = judge_backend(JudgeConfig(name=alias, model=alias, **endpoint))
        backend.load()
        try:
            for label, (rationale_first, example) in [list(VARIANTS.items())[i - 1] for i in variants]:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("aliases", nargs="*", metavar="JUDGE_ALIAS",
                        help=f"pack models to try as rubric judges, in process (default: {' '.join(DEFAULT_JUDGES)}); "
                        "with --base-url, the ids of models that endpoint serves")
    parser.add_argument("--variants", type=int, choices=range(1, len(VARIANTS) + 1), default=len(VARIANTS),
                        metavar="N", help=f"the first N of the {len(VARIANTS)} variants (default: all)")
    parser.add_argument("--pick", metavar="K,K", help="these variants only, by their number (1-based, in the "
                        "order above; e.g. 2,4: the rationale-first pair)")
    parser.add_argument("--transcripts", type=int, default=None, metavar="N",
                        help="grade only the first N calibration transcripts (default: all)")
    parser.add_argument("--base-url", metavar="URL", help="grade on this OpenAI-compatible endpoint (e.g. "
                        "http://127.0.0.1:8000/v1) instead of in process")
    parser.add_argument("--api-key-env", metavar="VAR", help="with --base-url: the environment variable holding "
                        "the endpoint's API key")
    parser.add_argument("--backend", metavar="NAME", help="the conf/backend option an in-process judge runs on "
                        "(default: foundry; genai reuses each transcript's shared prefix)")
    args = parser.parse_args(argv)
    if args.transcripts is not None and args.transcripts < 1:
        parser.error("--transcripts must be >= 1")
    if args.base_url and args.backend:
        parser.error("--backend is for a judge in process; --base-url already names the endpoint's")
    if args.pick and args.variants != len(VARIANTS):
        parser.error("give --variants or --pick, not both")
    if args.base_url and not args.aliases:
        parser.error("--base-url needs the ids of the models to try (JUDGE_ALIAS ...)")
    picked = list(range(1, args.variants + 1))
    if args.pick:
        try:
            picked = [int(k) for k in args.pick.split(",")]
        except ValueError:
            parser.error(f"--pick takes variant numbers like 2,4, not {args.pick!r}")
        if not all(1 <= k <= len(VARIANTS) for k in picked):
            parser.error(f"--pick: variants are numbered 1-{len(VARIANTS)}")
    run(args.aliases or DEFAULT_JUDGES, picked, args.transcripts, args.base_url, args.api_key_env, args.backend)


if __name__ == "__main__":
    main()
