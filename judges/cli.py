"""`slmbench judge qualify NAME`: how far a grader can be trusted, measured on answers of known order.

NAME is a judge (a `conf/judge/NAME.yaml` or a model alias; its mode from `--mode`, or written
`NAME/checklist`) or a scorer (`notes`, `rouge_l`, `keyword_coverage`). Exit 0 when it qualifies,
1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from judges import modes, qualify
from runner.config import paths, plan, schema
from runner.config.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("judge", help="qualify a grader on answers of known order")
    js = p.add_subparsers(dest="judge_cmd", required=True)
    q = js.add_parser("qualify", help="grade the calibration set and print how well the grader orders it")
    q.add_argument("name", help="a judge (conf/judge/NAME or a model alias, optionally NAME/checklist) or a scorer "
                                f"({', '.join(qualify.SCORER_FIGURES)})")
    q.add_argument("--mode", choices=sorted(modes.MODES), default=None, help="judge mode (default: the config's)")
    q.add_argument("--backend", default=None, help="the conf/backend option the judge runs on (default: the "
                                                   "config's; genai: in process, reusing each prompt's shared prefix)")
    q.add_argument("--base-url", default=None, help="judge=openai: the endpoint")
    q.add_argument("--model-id", default=None, help="the model id the judge's backend is asked for")
    q.add_argument("--api-key-env", default=None, help="name of the env var holding the endpoint's key")
    q.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=None,
                   help="checklist mode: a short reason before each verdict, or verdicts only (default: the config's)")
    q.add_argument("--calibration", default=None, help="another calibration set (default: the shipped one)")
    q.add_argument("--match", choices=["semantic", "lexical"], default="semantic",
                   help="notes scorer: pair items by meaning, words and facts (semantic) or words and facts")
    q.add_argument("--min-spearman", type=float, default=None)
    q.add_argument("--max-injection-lift", type=float, default=None)
    q.add_argument("--refresh", action="store_true", help="grade again instead of reading the cache")
    q.add_argument("--json", action="store_true", help="print the figures as JSON")


def judge_config(name: str, mode: str | None, overrides: dict, qualification: dict | None = None):
    """The judge's plan (runner/config/plan.JudgePlan): conf/judge/NAME.yaml (or a pack model alias
    as an in-process judge) on the schema, with the command line's settings; `qualification`: its
    thresholds and calibration set, where given."""
    if "/" in name:
        name, mode = name.split("/", 1)[0], mode or name.split("/", 1)[1]
    path = paths.CONF_DIR / "judge" / f"{name}.yaml"
    if path.is_file():
        raw = yaml.safe_load(path.read_text()) or {}
    else:
        from runner.models import registry

        if name not in registry.all_models():
            judges = sorted(p.stem for p in (paths.CONF_DIR / "judge").glob("*.yaml") if p.stem != "none")
            raise UserError(f"'{name}' is neither a judge ({', '.join(judges)}), a model alias nor a scorer "
                            f"({', '.join(qualify.SCORER_FIGURES)})")
        raw = {"name": name, "model": name, "backend": "foundry"}
    if not raw.get("model"):
        raise UserError(f"judge {name} has no model: nothing to qualify")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if mode:
        raw["mode"] = mode
    given = {k: v for k, v in (qualification or {}).items() if v is not None}
    if given:
        raw["qualification"] = {**(raw.get("qualification") or {}), **given}
    judge = plan.freeze(schema.typed(schema.JudgeConfig, raw, f"judge {name}"))
    modes.get(judge.mode)  # an unknown mode names the known ones
    if judge.capabilities.needs_base_url and not judge.base_url:
        raise UserError(f"judge {name} runs on an endpoint: give --base-url")
    return judge


def cmd_qualify(args) -> int:
    thresholds = {"min_spearman": args.min_spearman, "max_injection_lift": args.max_injection_lift}
    progress = (lambda s: print(f"\r  grading {s}\033[K", end="", file=sys.stderr, flush=True)) \
        if sys.stderr.isatty() else None
    from judges import scorers

    if args.name in scorers.SCORERS:
        defaults = schema.QualificationConfig()
        th = {k: v if v is not None else getattr(defaults, k) for k, v in thresholds.items()}
        options = {"match": args.match} if args.name == "notes" else None
        result = qualify.qualify(qualify.scorer_grader(args.name, options), qualify.load_calibration(args.calibration),
                                 th["min_spearman"], th["max_injection_lift"], args.refresh,
                                 max_error_rate=defaults.max_error_rate, gates=qualify.gates_of(defaults))
    else:
        from judges.grading import judge_backend, qualify_judge
        from runner.backends import BackendError

        judge = judge_config(args.name, args.mode, {"backend": args.backend, "base_url": args.base_url,
                                                    "model_id": args.model_id,
                                                    "api_key_env": args.api_key_env, "reasoning": args.reasoning},
                             {**thresholds, "calibration": args.calibration})
        try:
            backend = judge_backend(judge)
            backend.load()
        except BackendError as exc:
            raise UserError(f"judge {args.name} unavailable: {exc}") from None
        try:
            result = qualify_judge(judge, backend, args.refresh, progress)
        except BackendError as exc:
            raise UserError(f"judge {args.name} failed while qualifying: {exc}") from None
        finally:
            backend.unload()
            if progress:
                print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(qualify.text_report(result))
    return 0 if result["passed"] else 1


def main(args) -> int:
    return {"qualify": cmd_qualify}[args.judge_cmd](args)
