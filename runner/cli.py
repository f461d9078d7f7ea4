"""The `slmbench` console script: one entry point, one subcommand per job to be done."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runner.config.errors import UserError

SUBCOMMANDS = ["run", "models", "compare", "decide", "annotate", "agreement", "ui", "judge", "env"]


def build_parser() -> argparse.ArgumentParser:
    from judges import cli as judges_cli
    from runner.models import cli as models_cli

    p = argparse.ArgumentParser(prog="slmbench", description=(
        "Choose a local language model with numbers: Hydra-composed sweeps on Foundry Local."))
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    sub.add_parser("run", help="run an experiment; everything after `run` is Hydra (overrides, -m)",
                   add_help=False)
    models_cli.add_parser(sub)
    judges_cli.add_parser(sub)
    an = sub.add_parser("annotate", help="write annotations.csv for hand-scoring a graded run (or, with "
                        "--review, a review queue of its traces in the MLflow UI)")
    an.add_argument("run_dir", type=Path)
    an.add_argument("--review", action="store_true",
                    help="put the job's traces in an MLflow review queue, one question per rubric aspect")
    an.add_argument("--uri", default=None, help="tracking store (default: where the job logged)")
    ag = sub.add_parser("agreement", help="judge-human (and inter-judge) agreement from annotations.csv and "
                        "the job's human assessments in MLflow")
    ag.add_argument("run_dir", type=Path)
    ag.add_argument("--uri", default=None, help="tracking store (default: where the job logged)")
    dp = sub.add_parser("decide", help="re-decide a finished sweep under other limits (no re-run)")
    dp.add_argument("sweep_dir", type=Path)
    dp.add_argument("overrides", nargs="*", help="selection overrides, e.g. max.e2e_s.p95=2.0 licenses=[Apache-2.0]")
    cp = sub.add_parser("compare", help="set a run against a baseline; non-zero exit on a regression")
    cp.add_argument("baseline", help="job dir, sweep dir, baseline name (outputs/baselines/NAME) or MLflow run id")
    cp.add_argument("candidate", help="same kinds as baseline")
    cp.add_argument("--out", type=Path, default=None, help="where compare.md/json go (default: the candidate dir)")
    cp.add_argument("--tolerance", action="append", default=[], metavar="METRIC=REL",
                    help="relative tolerance override, e.g. tpot_s=0.1 (defaults: conf/compare/default.yaml)")
    cp.add_argument("--uri", default=None, help="tracking store for MLflow run ids")
    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 over the project's tracking store")
    ui.add_argument("--port", type=int, default=5000)
    # One user on loopback: one server process answers the UI's requests (threads for the rest);
    # MLflow's default of 4 spends ~4x the start-up CPU and memory.
    ui.add_argument("--workers", type=int, default=1, help="MLflow server processes (default: 1)")
    ui.add_argument("--uri", default=None, help="tracking store (default: $MLFLOW_TRACKING_URI or outputs/mlflow.db)")
    ui.add_argument("--experiment", default="slmbench")
    ui.add_argument("--log", type=Path, metavar="DIR",
                    help="instead of starting the UI, log a finished job or sweep directory to the store (replay)")
    ev = sub.add_parser("env", help="execution providers, devices and runtime versions on this machine")
    ev.add_argument("--json", action="store_true", help="the same as JSON (also recorded in every summary.json)")
    return p


def cmd_env(args) -> int:
    import json

    from runner.backends.hardware import hardware_presets
    from runner.config.environment import env_text, environment

    env, presets = environment(), hardware_presets()
    print(json.dumps({**env, "hardware_presets": presets}, indent=2) if args.json else env_text(env, presets))
    return 0


def cmd_ui(args) -> int:
    from runner.track import tracking

    if args.log is not None:
        if not args.log.is_dir():
            raise UserError(f"{args.log}: no such directory")
        ids = tracking.replay(args.log, args.uri, args.experiment)
        print(f"logged {args.log} to {tracking.tracking_uri(args.uri)} as run(s) {', '.join(ids)}")
        return 0
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: at least one MLflow server process is needed")
    uri = tracking.tracking_uri(args.uri)
    if not uri.startswith(("sqlite:", "file:", "postgresql", "mysql")) and "://" in uri:
        print(f"{uri} is a tracking server: open it in a browser")
        return 0
    from runner.track import views

    tracker = tracking.Tracker(uri, args.experiment)
    fragment = views.prepare_experiment(tracker.client, tracker.experiment_id)
    if fragment:
        base = f"http://127.0.0.1:{args.port}/"
        print(f"the sweep's jobs with their key columns: {base}{fragment}\n"
              f"charts (speed against quality, TTFT p95 per model): "
              f"{base}{views.view_url(tracker.experiment_id, 'CHART')}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(args.port), "--workers", str(args.workers)]
    root = tracking.artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store {uri}); Ctrl-C to stop", flush=True)
    # Become the UI process: a signal to `slmbench ui` then reaches MLflow itself (a child would
    # outlive a terminated parent and keep the port).
    os.execv(sys.executable, cmd)


def _job_dir(path: Path) -> Path:
    from runner.store import jobdir

    if not (path / jobdir.REQUESTS).is_file():
        raise UserError(f"{path}: not a job directory (no requests.jsonl)")
    return path


def cmd_annotate(args) -> int:
    import csv

    from judges.annotations import write_annotations

    if args.review:
        return _review(_job_dir(args.run_dir), args.uri)
    out = write_annotations(_job_dir(args.run_dir))
    with out.open(newline="") as fh:
        rows = sum(1 for _ in csv.DictReader(fh))
    print(f"{out}: {rows} rows (one per answer and aspect); fill in human_score (1-5), "
          f"then run `slmbench agreement {args.run_dir}`")
    return 0


def _review(job_dir: Path, uri: str | None) -> int:
    from runner.config import prompts
    from runner.track import review, traces, tracking

    found = tracking.job_run(job_dir, uri)
    if found is None:
        raise UserError(f"{job_dir}: no MLflow run logged from it (log it with `slmbench ui --log {job_dir}`)")
    tracker, run = found
    path = traces.prompts_path(job_dir)
    aspects = {a: d for p in (prompts.load(path).prompts if path else []) for a, d in p.aspects.items()}
    if not aspects:
        raise UserError(f"{job_dir}: its prompts have no rubric aspects to ask a reviewer about")
    session = review.create_review_session(tracker.client, tracker.experiment_id, run.info.run_id, aspects)
    print(f"review queue '{session.name}': {len(session.trace_ids)} answers x {len(aspects)} aspects "
          f"({', '.join(aspects)}). Start `slmbench ui`, then open http://127.0.0.1:5000/{session.url} ; "
          f"then `slmbench agreement {job_dir}`")
    return 0


def cmd_agreement(args) -> int:
    from judges.agreement import agreement
    from runner.track import traces, tracking

    job_dir = _job_dir(args.run_dir)
    found = tracking.job_run(job_dir, args.uri)
    reviewed, where = None, None
    if found is not None:
        tracker, run = found
        reviewed = traces.human_assessments(tracker.client, tracker.experiment_id, run.info.run_id)
        where = f"MLflow run {run.info.run_id} ({tracker.uri})"
    text, result = agreement(job_dir, reviewed, where)
    print(text)
    if found is not None:
        try:
            tracking.log_agreement(tracker, run.info.run_id, result, job_dir / "agreement.json")
            print(f"logged to {where} as agreement.* metrics and agreement.json")
        except Exception as exc:  # the files are written; the run can be updated later
            print(f"slmbench: could not log agreement to MLflow ({str(exc).splitlines()[0][:200]})",
                  file=sys.stderr)
    return 0


def cmd_run(args: list[str]) -> int:
    """`slmbench run`, under its own SIGINT handling (runner/interrupts.py): a Ctrl-C anywhere,
    even one whose KeyboardInterrupt a library swallowed, ends it with 130."""
    from runner import interrupts

    interrupts.install()
    interrupts.enter(interrupts.STARTUP)
    code = None
    try:
        from runner.app import run_cli

        code = run_cli(args)
        if interrupts.interrupted():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        print(f"slmbench: interrupted during {interrupts.interrupted() or interrupts.phase()}; the records so far "
              f"are kept (a rerun into the same directory resumes)", file=sys.stderr)
        code = interrupts.EXIT
    except UserError as exc:
        print(f"slmbench: {exc}", file=sys.stderr)
        code = exc.exit_code
    finally:
        interrupts.leave(code)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "run":
            return cmd_run(argv[1:])
        args = build_parser().parse_args(argv)
        if args.cmd == "models":
            from runner.models import cli as models_cli

            return models_cli.main(args)
        if args.cmd == "judge":
            from judges import cli as judges_cli

            return judges_cli.main(args)
        if args.cmd == "decide":
            from runner.decide.render import decide_main

            return decide_main(args.sweep_dir, args.overrides)
        if args.cmd == "compare":
            from runner.decide import compare_report
            from runner.track import tracking

            resolver = tracking.run_resolver(args.uri)
            return compare_report.main(args.baseline, args.candidate, args.out, args.tolerance, resolvers=[resolver])
        if args.cmd == "ui":
            return cmd_ui(args)
        if args.cmd == "annotate":
            return cmd_annotate(args)
        if args.cmd == "agreement":
            return cmd_agreement(args)
        if args.cmd == "env":
            return cmd_env(args)
        raise UserError(f"'{args.cmd}' is not available yet")
    except UserError as exc:
        print(f"slmbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("slmbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
