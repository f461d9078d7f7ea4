"""The `slmbench` console script: one entry point, one subcommand per job to be done."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.errors import UserError

SUBCOMMANDS = ["run", "models", "compare", "decide", "annotate", "agreement", "ui"]


def build_parser() -> argparse.ArgumentParser:
    from runner.models import cli as models_cli

    p = argparse.ArgumentParser(prog="slmbench", description=(
        "Choose a local language model with numbers: Hydra-composed sweeps on Foundry Local."))
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    sub.add_parser("run", help="run an experiment; everything after `run` is Hydra (overrides, -m)",
                   add_help=False)
    models_cli.add_parser(sub)
    an = sub.add_parser("annotate", help="write annotations.csv for hand-scoring a graded run")
    an.add_argument("run_dir", type=Path)
    ag = sub.add_parser("agreement", help="judge-human (and inter-judge) agreement from annotations.csv")
    ag.add_argument("run_dir", type=Path)
    return p


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
        if args.cmd == "annotate":
            return cmd_annotate(args)
        if args.cmd == "agreement":
            return cmd_agreement(args)
        raise UserError(f"'{args.cmd}' is not available yet")
    except UserError as exc:
        print(f"slmbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("slmbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
