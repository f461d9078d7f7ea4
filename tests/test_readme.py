"""Every `slmbench` command line the README and the docs/*.md pages show parses: in code blocks and
inline in the prose (`slmbench ui --log DIR`). `run` lines compose onto the schema with Hydra (every value of a sweep)
and pass the checks a job runs first; other subcommands and their flags exist, `decide`'s
selection overrides and `compare`'s tolerances name known metrics, `judge qualify` a known
judge or scorer. Placeholders
(NAME, URL, ...) get a plausible value; a command that cannot be checked is in NOT_CHECKED, with
its reason. A README or docs page that drifts from the code fails here; so does a README that
stops being a front door (over 250 lines, a docs page it does not link) or a link to nowhere."""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest
from omegaconf import OmegaConf

from runner import app
from runner.cli import build_parser
from runner.config import paths, schema, secrets
from runner.validate import validate

README = paths.PROJECT_ROOT / "README.md"
DOCS = sorted((paths.PROJECT_ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 250
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?slmbench\s+(.*)$")
INLINE = re.compile(r"`([^`]+)`")
# As runner/app.py: Hydra warns that conf/hydra/launcher/X.yaml shares its plugin schema's name (wanted).
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*is validated against ConfigStore schema with the same name")

# What the README's placeholders stand for when a command is checked. `sub:WORD` is WORD in
# `slmbench sub ...` only. A placeholder not listed here fails the test: give it a value.
PLACEHOLDERS = {
    "NAME": "nightly",  # --alias NAME, +baseline=NAME, compare NAME ...
    "judge:NAME": "notes",  # judge qualify NAME: a scorer or a judge
    "ALIAS": "smollm2-135m-int8",
    "PATH": "/models/my-model.gguf",
    "L": "Apache-2.0",  # --license L
    "URL": "http://127.0.0.1:8000/v1",
    "HOST": "127.0.0.1",
    "PORT": "8000",
    "HEAD": "ray-head",  # HEAD:6379
    "MLFLOW": "mlflow-host",  # http://MLFLOW:5000
    "DIR": "outputs/runs/2026-11-30_12-00-00_smollm2-135m-int8",
    "RUN_DIR": "outputs/runs/2026-11-30_12-00-00_smollm2-135m-int8",
    "JOB_DIR": "outputs/sweeps/2026-11-30_12-00-00/0",
    "RUN_OR_SWEEP_DIR": "outputs/sweeps/2026-11-30_12-00-00",
    "SWEEP_DIR": "outputs/sweeps/2026-11-30_12-00-00",
    "BASELINE": "nightly",
    "CANDIDATE": "outputs/runs/2026-11-30_12-00-00_smollm2-135m-int8",
    "outputs/runs/...": "outputs/runs/2026-11-30_12-00-00_smollm2-135m-int8",
}
PLACEHOLDER = re.compile(r"(?<![\w-])[A-Z][A-Z_]*(?![\w-])|<[\w-]+>")

# Commands of the README or a docs page (as written after `slmbench`) that are not checked, and
# why. Each must still be on a page (test_not_checked_entries_are_on_a_page), so this list cannot rot.
NOT_CHECKED = {
    "run backend=my-adapter model=my-model":
        "the reader's own in-process adapter: conf/backend/my-adapter.yaml and its class are theirs to write",
    "review: <job>": "the name of an MLflow review queue, not a command line",
}


# ---------------------------------------------------------------------------- reading the README


def _fenced_and_prose(text: str) -> tuple[list[str], list[str]]:
    """The lines inside code blocks, and the prose's paragraphs (a code span never crosses one)."""
    code, prose, in_code = [], [""], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            prose.append("")
        elif in_code:
            code.append(line)
        elif line.strip():
            prose[-1] += line + "\n"
        else:
            prose.append("")
    return code, [p for p in prose if p]


def readme_commands(text: str) -> list[str]:
    """Each `slmbench` command as written after `slmbench`, in order, without duplicates: the
    code blocks' lines (continuations joined, comments dropped), then the prose's code spans."""
    code, prose = _fenced_and_prose(text)
    out, buf = [], ""
    for line in code:
        line, buf = buf + line.strip(), ""
        if line.endswith("\\"):
            buf = line[:-1].rstrip() + " "
            continue
        if m := COMMAND.match(line):
            out.append(re.sub(r"\s+#.*$", "", m.group(1)).strip())
    for paragraph in prose:
        for span in INLINE.findall(paragraph):
            if m := COMMAND.match(" ".join(span.split())):
                out.append(m.group(1).strip())
    return list(dict.fromkeys(out))


def expand(command: str) -> list[str]:
    """A synopsis as the commands it stands for: `[--json]` is given, `info ALIAS | remove ALIAS`
    is two commands, `--precision int4|int8|fp32` three."""
    out = []
    alternatives = command.split(" | ")
    group = alternatives[0].split()[0]
    for i, alt in enumerate(alternatives):
        alt = alt if i == 0 else f"{group} {alt}"
        alt = re.sub(r" \[([^\]]*)\]", r" \1", alt)
        choices = re.compile(r"(?<![\w-])[\w-]+(?:\|[\w-]+)+")
        parts = choices.split(alt)
        options = [c.split("|") for c in choices.findall(alt)]
        for picked in itertools.product(*options):
            out.append("".join(p + c for p, c in itertools.zip_longest(parts, picked, fillvalue="")))
    return out


def _value(placeholder: str, sub: str) -> str:
    value = PLACEHOLDERS.get(f"{sub}:{placeholder}", PLACEHOLDERS.get(placeholder))
    assert value is not None, f"README placeholder {placeholder!r} (in `slmbench {sub} ...`): give it a value " \
                              f"in PLACEHOLDERS"
    return value


def concrete(command: str) -> list[str]:
    """The command's arguments with each placeholder replaced; a `...` argument ("and so on") is dropped."""
    args = shlex.split(command)
    out = []
    for arg in args:
        if arg == "...":
            continue
        if "..." in arg:
            arg = _value(arg, args[0])
        elif " " not in arg:  # free text (a quoted prompt) holds no placeholder
            arg = PLACEHOLDER.sub(lambda m: _value(m.group(), args[0]), arg)
        out.append(arg)
    return out


# ---------------------------------------------------------------------------- checking one command


def _sweep_values(override: str, user_conf: Path) -> list[str]:
    """Every value a sweep override takes (`model=a,b`, `model=glob(smollm2*)`), or the override itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_overrides([override])[0]
    if not o.is_sweep_override():
        return [override]
    key = override.split("=", 1)[0]
    if o.value_type.name == "GLOB_CHOICE_SWEEP":
        group = key.lstrip("+~")
        names = sorted({p.stem for d in (paths.CONF_DIR, user_conf) for p in (d / group).glob("*.yaml")})
        values = o.value().filter(names)
        assert values, f"{override}: matches no config of conf/{group}"
    else:
        values = list(o.sweep_string_iterator())
    return [f"{key}={v}" for v in values]


def sweep_points(overrides: list[str], user_conf: Path) -> list[list[str]]:
    """The overrides with each sweep at its first value, then each other value of each sweep in
    turn (every value is composed once, without the sweep's full product)."""
    values = [_sweep_values(o, user_conf) for o in overrides]
    first = [v[0] for v in values]
    return [first] + [[*first[:i], v, *first[i + 1:]] for i, vs in enumerate(values) for v in vs[1:]]


def _unread_prompt_set(group):
    from runner.config.prompts import PromptSet

    return PromptSet(group.name, group.path, ())


def check_run(args: list[str], user_conf: Path) -> None:
    """What `slmbench run ARGS` checks before measuring anything (runner/app.py run_cli, then
    each job's first checks), for every value of every sweep."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser

    from runner.config import plan, selection
    from runner.decide import decision

    options, overrides = app.split_hydra_args(selection.hydra_overrides(args))
    get_args_parser().parse_args([*options, *overrides])  # Hydra's flags (-m, --cfg, ...) exist
    secrets.check_overrides(overrides)
    schema.register()
    app.register_resolvers()
    searchpath = f"hydra.searchpath=[file://{user_conf}]"  # as run_cli adds $SLMBENCH_HOME/conf
    for point in sweep_points(overrides, user_conf):
        with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
            cfg = compose("config", [*point, searchpath], return_hydra_config=True)
        shipped = Path(cfg.prompts.path).is_file()  # a reader's own file (my_prompts.json) is not here to read
        with mock.patch.object(plan, "load_prompt_set", plan.load_prompt_set if shipped else _unread_prompt_set):
            job = plan.build(cfg)
        validate(job)
        decision.check_selection(job.selection)
        secrets.check_config({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"})


def _names_subcommands(args: list[str]) -> bool:
    """True when ARGS only name (nested) subcommands that exist: `slmbench judge qualify` in a
    sentence is a mention of the command, not an invocation missing its arguments."""
    parser = build_parser()
    for arg in args:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or arg not in sub.choices:
            return False
        parser = sub.choices[arg]
    return True


def check_subcommand(args: list[str]) -> None:
    if _names_subcommands(args):
        return
    ns = build_parser().parse_args(args)  # argparse exits (2) on an unknown subcommand, flag or choice
    if args[0] == "decide":  # as runner/decide/render.py decide_main, before reading the sweep
        from runner.config import selection
        from runner.decide import decision

        decision.check_selection(selection.load_selection(ns.overrides))
    elif args[0] == "compare":
        from runner.decide import compare

        compare.load_tolerances(None, ns.tolerance)
    elif args[:2] == ["judge", "qualify"]:  # as judges/cli.py cmd_qualify, before loading a model
        from judges import scorers
        from judges.cli import judge_config

        if ns.name not in scorers.SCORERS:
            judge_config(ns.name, ns.mode, {"base_url": ns.base_url, "model_id": ns.model_id,
                                            "api_key_env": ns.api_key_env, "reasoning": ns.reasoning})


def check(command: str, user_conf: Path) -> None:
    """Check one README command (as written after `slmbench`): each command its synopsis stands for."""
    for one in expand(command):
        args = concrete(one)
        if args[0] == "run":
            check_run(args[1:], user_conf)
        else:
            check_subcommand(args)


# ---------------------------------------------------------------------------- the tests


def _rel(page: Path) -> str:
    return page.relative_to(paths.PROJECT_ROOT).as_posix()


TEXTS = {_rel(page): page.read_text() for page in PAGES}
TEXT = TEXTS["README.md"]
PAGE_COMMANDS = {page: readme_commands(text) for page, text in TEXTS.items()}
WHERE: dict[str, str] = {}  # each command once, with the first page that shows it
for _page, _commands in PAGE_COMMANDS.items():
    for _command in _commands:
        WHERE.setdefault(_command, _page)
COMMANDS = list(WHERE)


@pytest.fixture(scope="module")
def user_conf(tmp_path_factory) -> Path:
    """$SLMBENCH_HOME/conf after following docs/backends.md's recipe: its EchoBackend (the python
    block) in a file, and its echo.yaml naming that file."""
    root = tmp_path_factory.mktemp("slmbench_home")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", TEXTS["docs/backends.md"], flags=re.M | re.S)
    code = next(body for lang, body in blocks if lang == "python" and "class EchoBackend" in body)
    yaml = next(body for lang, body in blocks if lang == "yaml" and "name: echo" in body)
    (root / "echo_backend.py").write_text(code)
    assert "~/echo_backend.py" in yaml
    (root / "conf" / "backend").mkdir(parents=True)
    (root / "conf" / "backend" / "echo.yaml").write_text(yaml.replace("~/echo_backend.py", str(root / "echo_backend.py")))
    return root / "conf"


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 40 and sum(c.startswith("run") for c in COMMANDS) >= 14
    assert all(PAGE_COMMANDS[p] for p in ("README.md", "docs/quality.md", "docs/load-and-scale.md",
                                           "docs/tracking.md", "docs/decision.md", "docs/models.md"))
    inline = {"run backend=echo model.id=echo-model prompts=smoke", "run ... +baseline=NAME", "ui --log DIR",
              "annotate --review JOB_DIR", "agreement JOB_DIR", "compare NAME outputs/runs/...", "env",
              "judge qualify NAME", "decide",
              # the curve's command spans three lines of prose
              "run -m model=smollm2-135m-int4 prompts=rag-basics run.concurrency=1,2,4,8 run.rounds=3 "
              "decoding.max_tokens=64"}
    assert inline <= set(COMMANDS), inline - set(COMMANDS)
    assert expand("models import PATH --alias NAME --precision int4|int8|fp32 --license L") == [
        f"models import PATH --alias NAME --precision {p} --license L" for p in ("int4", "int8", "fp32")]


def test_the_readme_is_a_front_door():
    """Short, with the commands a newcomer needs next, and a link to every docs page."""
    lines = TEXT.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    assert "make demo" in TEXT and "make test" in TEXT
    shown = PAGE_COMMANDS["README.md"]
    for start in ("run -m ", "compare ", "decide ", "judge qualify ", "ui", "models import ", "run backend=openai "):
        assert any(c.startswith(start) for c in shown), f"the README shows no `slmbench {start.strip()} ...`"
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[\w-]*)?\)", TEXT))
    assert {_rel(p) for p in DOCS} <= linked, {_rel(p) for p in DOCS} - linked
    assert re.search(r"!\[[^\]]*\]\(docs/mlflow-[\w-]+\.png\)", TEXT), "the README shows no MLflow picture"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", TEXTS, ids=str)
def test_links_resolve(page: str):
    """Every relative link of a page (a page, a picture, a file) names something that exists."""
    base = (paths.PROJECT_ROOT / page).parent
    code = "\n".join(re.findall(r"^```.*?^```", TEXTS[page], flags=re.M | re.S))
    for target in LINK.findall(TEXTS[page]):
        if re.match(r"[a-z]+:", target) or target.startswith("#") or f"]({target})" in code:
            continue
        assert (base / target.split("#", 1)[0]).exists(), f"{page} links to {target}, which does not exist"


@pytest.mark.parametrize("command", NOT_CHECKED, ids=str)
def test_not_checked_entries_are_on_a_page(command: str):
    assert command in COMMANDS, f"NOT_CHECKED lists `slmbench {command}`, which no page shows any more"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in NOT_CHECKED],
                         ids=[f"{WHERE[c]}: {c}" for c in COMMANDS if c not in NOT_CHECKED])
def test_readme_command_parses(command: str, user_conf: Path):
    check(command, user_conf)


BROKEN = [  # (where in a README, the command, what the refusal says): each must fail the check
    ("prose", "`slmbench run bogus.key=1`", "Could not override 'bogus.key'"),
    ("prose", "`slmbench run\nno_such_group=x`", "Could not override 'no_such_group'"),  # a span over two lines
    ("code", "slmbench run -m model=smollm2-135m-int4,no-such-model", "model/no-such-model"),  # not the first value
    ("code", "slmbench run -m run.concurrency=1,0", "run.concurrency=0 must be >= 1"),  # composes; validation refuses
    ("code", "slmbench run --no-such-flag", "unrecognized arguments: --no-such-flag"),
    ("prose", "`slmbench ui --log DIR --no-such-flag`", "unrecognized arguments: --no-such-flag"),
    ("prose", "`slmbench no-such-command JOB_DIR`", "invalid choice: 'no-such-command'"),
    ("prose", "`slmbench judge no-such-command`", "invalid choice: 'no-such-command'"),
    ("code", "slmbench models import PATH --alias NAME [--precision int4|int9]", "invalid choice: 'int9'"),
    ("code", "slmbench decide SWEEP_DIR max.no_such_metric.p95=2.0", "'no_such_metric.p95' names no metric"),
    ("code", "slmbench decide SWEEP_DIR objective.metric=e2e_s", "'e2e_s' is a distribution"),
    ("prose", "`slmbench compare NAME outputs/runs/... --tolerance no_such=0.1`", "bad tolerance override"),
    ("prose", "`slmbench judge qualify no-such-judge`", "'no-such-judge' is neither a judge"),
    ("prose", "`slmbench annotate UNKNOWN_PLACEHOLDER`", "placeholder 'UNKNOWN_PLACEHOLDER'"),
    ("prose", "`slmbench run backend=openai backend.base_url=http://u:pw@host/v1 model.id=m`", "credentials in a URL"),
]


@pytest.mark.parametrize(("where", "snippet", "says"), BROKEN, ids=[b[1] for b in BROKEN])
def test_a_wrong_readme_command_fails(where: str, snippet: str, says: str, user_conf: Path, capsys):
    """Pasted into a copy of the README, each broken command is found and refused, for its reason."""
    from hydra.errors import HydraException

    from runner.config.errors import UserError

    text = TEXT + (f"\n\nSay {snippet} here.\n" if where == "prose" else f"\n```\n{snippet}\n```\n")
    added = [c for c in readme_commands(text) if c not in COMMANDS]
    assert len(added) == 1
    with pytest.raises((SystemExit, UserError, HydraException, AssertionError)) as refused:
        check(added[0], user_conf)
    assert says in f"{refused.value} {capsys.readouterr().err}"
