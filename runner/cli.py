"""The `slmbench` console script: one entry point, one subcommand per job to be done."""

from __future__ import annotations

import argparse
import sys

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
    return p


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
        raise UserError(f"'{args.cmd}' is not available yet")
    except UserError as exc:
        print(f"slmbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("slmbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
