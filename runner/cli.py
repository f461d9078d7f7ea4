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
    an = sub.add_parser("annotate", help="write annotations.csv for hand-scoring a graded run")
    an.add_argument("run_dir", type=Path)
    ag = sub.add_parser("agreement", help="judge-human (and inter-judge) agreement from annotations.csv")
    ag.add_argument("run_dir", type=Path)
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
    uri = tracking.tracking_uri(args.uri)
    if not uri.startswith(("sqlite:", "file:", "postgresql", "mysql")) and "://" in uri:
        print(f"{uri} is a tracking server: open it in a browser")
        return 0
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(args.port)]
    root = tracking.artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store {uri}); Ctrl-C to stop", flush=True)
    # Become the UI process: a signal to `slmbench ui` then reaches MLflow itself (a child would
    # outlive a terminated parent and keep the port).
    os.execv(sys.executable, cmd)


def _job_dir(path: Path) -> Path:
    if not (path / "requests.jsonl").is_file():
        raise UserError(f"{path}: not a job directory (no requests.jsonl)")
    return path


def cmd_annotate(args) -> int:
    import csv

    from judges.annotations import write_annotations

    out = write_annotations(_job_dir(args.run_dir))
    with out.open(newline="") as fh:
        rows = sum(1 for _ in csv.DictReader(fh))
    print(f"{out}: {rows} rows (one per answer and aspect); fill in human_score (1-5), "
          f"then run `slmbench agreement {args.run_dir}`")
    return 0


def cmd_agreement(args) -> int:
    from judges.agreement import agreement

    text, _ = agreement(_job_dir(args.run_dir))
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "run":
            from runner.app import run_cli

            return run_cli(argv[1:])
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
