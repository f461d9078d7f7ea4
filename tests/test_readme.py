"""Every `slmbench` command line the README shows parses: Hydra overrides compose onto the schema
(and pass its checks), subcommands and flags exist. A README that drifts from the code fails here."""

from __future__ import annotations

import fnmatch
import re
import shlex

import pytest

from runner import app
from runner.cli import build_parser
from runner.config import paths, schema
from runner.validate import validate

README = paths.PROJECT_ROOT / "README.md"
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?slmbench\s+(.*)$")


def readme_commands() -> list[str]:
    """The command lines inside code blocks, continuation lines joined, comments dropped; a
    synopsis (`[--json]`, `a|b`, `info ALIAS | remove ALIAS`) becomes the commands it stands for."""
    out, in_code, buf = [], False, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            continue
        line, buf = buf + line.strip(), ""
        if line.endswith("\\"):
            buf = line[:-1] + " "
            continue
        m = COMMAND.match(line)
        if not m:
            continue
        cmd = re.sub(r"\s+#.*$", "", m.group(1)).strip()
        alternatives = cmd.split(" | ")
        group = alternatives[0].split()[0]
        for i, alt in enumerate(alternatives):
            alt = alt if i == 0 else f"{group} {alt}"
            alt = re.sub(r" \[([^\]]*)\]", r" \1", alt).replace(" ...", "")
            alt = re.sub(r"\b([\w-]+)(\|[\w-]+)+", r"\1", alt)
            out.append(alt)
    return out


def _first_of_sweep(override: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_overrides([override])[0]
    if not o.is_sweep_override():
        return override
    key = override.split("=", 1)[0]
    if o.value_type.name == "GLOB_CHOICE_SWEEP":
        names = sorted(p.stem for p in (paths.CONF_DIR / key).glob("*.yaml"))
        return f"{key}={fnmatch.filter(names, o.value().include[0])[0]}"
    return f"{key}={next(iter(o.sweep_string_iterator()))}"


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 25 and sum(c.startswith("run") for c in COMMANDS) >= 10


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] == "run"])
def test_run_lines_compose_and_validate(command: str):
    from hydra import compose, initialize_config_dir

    args = [a for a in shlex.split(command)[1:] if a not in ("-m", "--multirun")]
    overrides = [_first_of_sweep(a) for a in args]
    schema.register()
    app.register_resolvers()
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides, return_hydra_config=True)
    validate(cfg)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] != "run"])
def test_subcommand_lines_parse(command: str):
    build_parser().parse_args(shlex.split(command))
