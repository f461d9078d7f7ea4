"""Every shipped script runs as written: each `benchmarks/*.py` answers `--help`, and runs to its
end at its smallest setting (one subprocess each, as a user runs it; the pack's smallest model
where a model is needed, a scripted endpoint for the judge), so a script that rots fails here, not in a reader's hands. Every
`benchmarks/X.py` command quoted in README.md, docs/*.md or benchmarks/README.md names a script
that exists, with flags its `--help` lists. The figures a small run prints are not checked: they
are not the documented ones (those need the documented settings)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from contextlib import nullcontext
from functools import cache

import pytest
from conftest import ROOT
from scripted_server import Script, ScriptedServer, rubric_judge

BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))
SMALLEST_MODEL = "smollm2-135m-int4"  # the pack's smallest model
# The smallest setting of each script, and what its output holds when it ran to the end (a string,
# or a tuple of strings).
# A new script without an entry fails test_every_script_has_a_smallest_setting.
SMALLEST = {
    "capacity.py": (["--service-ms", "30", "--concurrency", "2", "--requests", "12", "--warmup-s", "0.3"], "true capacity"),
    "client_timing.py": (["-n", "2"], "openai SDK"),
    # one run signalled as the Ctrl-C test signals (5 records in): it exits 130, its parent run KILLED
    "ctrl_c.py": (["--runs", "1", "--at", "test"], "| measuring | 1 | 1 | - | KILLED 1 | 1 |"),
    # SmolLM2's fp32 comparison build is the pack's own smollm2-135m-fp32 (same weights and options)
    "conversion.py": ([SMALLEST_MODEL, "--prompts", "1", "--new-tokens", "4"],
                      ("smollm2-135m-fp32)", "wall: float32 reference check")),
    "judge_prefix.py": ([SMALLEST_MODEL, "--transcripts", "1", "--answers", "2"], "less prefill"),
    # a 135M checklist judge, verdicts only, on the direct runtime: ~3 s a grade
    "judge_real_answers.py": ([f"{SMALLEST_MODEL}/checklist", "--backend", "genai", "--limit", "3"],
                              ("Spearman vs the person", "s a grade")),
    "loadgen.py": (["--seconds", "0.2"], "b) client path at   400 req/s"),
    "models.py": ([SMALLEST_MODEL], "one fresh process per model"),
    # both paths must generate the same tokens, or the comparison is void
    "overhead.py": (["--model", SMALLEST_MODEL, "-n", "2", "--scripted", "2", "--iterations", "10"],
                    ("identical outputs and token counts on both paths: yes", "c) bookkeeping per request")),
    "penalties.py": (["--prompts", "1", "--models", SMALLEST_MODEL, "--penalties", "1.0"], "meeting-notes, first 1"),
    "quality.py": (["--no-judge", "--repeats", "1", "--answers", "3"], "notes scorer, semantic matching:"),
    # a 135M judge takes 10-50 s per grade on 2 cores (its prompt is a whole transcript and answer):
    # the smallest run grades on a scripted judge endpoint instead, the in-process judge path being
    # the one `slmbench judge qualify` and its tests run
    "rubric_variants.py": (["judge-model", "--base-url", "{judge_url}", "--variants", "1", "--transcripts", "1"],
                           "share of 1s"),
    "tracking.py": (["--jobs", "1"], "limit"),
    "tracking_traces.py": (["--requests-per-prompt", "1"], "assessments"),
}
NEEDS_PACK = {"conversion.py", "judge_prefix.py", "judge_real_answers.py", "models.py", "overhead.py", "penalties.py"}
# Where scripts are quoted as commands to run.
PAGES = [ROOT / "README.md", BENCHMARKS / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUOTED = re.compile(r"(?:\.venv/bin/)?python\s+benchmarks/([\w-]+\.py)([^`\n#]*)")


def run_script(name: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


@cache
def help_text(name: str) -> str:
    done = run_script(name, "--help", timeout=120)
    assert done.returncode == 0, f"{name} --help: exit {done.returncode}\n{done.stderr[-2000:]}"
    assert done.stdout.startswith("usage:"), f"{name} --help printed no usage:\n{done.stdout[:500]}"
    return done.stdout


def test_every_script_has_a_smallest_setting():
    assert len(SCRIPTS) >= 9 and set(SCRIPTS) == set(SMALLEST), set(SCRIPTS) ^ set(SMALLEST)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name: str):
    """`--help` prints the usage and exits 0, without running anything (a script that took
    `--help` for a model alias would try to load a model called `--help`)."""
    assert "-h, --help" in help_text(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_smallest_run(name: str, request):
    args, prints = SMALLEST[name]
    env = {"SLMBENCH_HOME": str(request.getfixturevalue("pack_home"))} if name in NEEDS_PACK else None
    needs_judge = any("{judge_url}" in a for a in args)
    judge = ScriptedServer(Script(ttft_s=0.0, tpot_s=0.0, model_ids=("judge-model",), reply=rubric_judge)) \
        if needs_judge else nullcontext()
    with judge:
        args = [a.format(judge_url=judge.base_url) for a in args] if needs_judge else args
        done = run_script(name, *args, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} {shlex.join(args)}: exit {done.returncode}\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert "skipped" not in done.stderr, f"{name} skipped part of its smallest run:\n{done.stderr[-2000:]}"
    for expected in (prints,) if isinstance(prints, str) else prints:
        assert expected in done.stdout, f"{name} {shlex.join(args)} did not print {expected!r}:\n{done.stdout[-2000:]}"


def _lines(text: str) -> list[str]:
    """A page's code-block lines, and its prose paragraphs each as one line (a code span may
    cross a line break)."""
    out, paragraph, in_code = [], [], False
    for line in [*text.splitlines(), ""]:
        if line.startswith("```") or in_code or not line.strip():
            out.append(" ".join(paragraph))
            paragraph = []
            if line.startswith("```"):
                in_code = not in_code
            elif in_code:
                out.append(line)
        else:
            paragraph.append(line.strip())
    return [line for line in out if line]


def quoted_commands() -> list[tuple[str, str, list[str]]]:
    """(page, script, arguments) of every `python benchmarks/X.py ...` a page quotes, once each."""
    out = []
    for page in PAGES:
        for line in _lines(page.read_text()):
            for name, rest in QUOTED.findall(line):
                out.append((page.relative_to(ROOT).as_posix(), name, shlex.split(rest)))
    return list({(p, n, tuple(a)): (p, n, a) for p, n, a in out}.values())


def test_the_pages_quote_scripts():
    pages = {page for page, _, _ in quoted_commands()}
    assert {"benchmarks/README.md", "docs/measurement.md", "docs/quality.md"} <= pages, pages


@pytest.mark.parametrize(("page", "name", "args"), quoted_commands(),
                         ids=[f"{p}: {n} {' '.join(a)}" for p, n, a in quoted_commands()])
def test_a_quoted_command_names_a_script_and_its_flags(page: str, name: str, args: list[str]):
    assert name in SCRIPTS, f"{page} quotes benchmarks/{name}, which does not exist"
    usage = help_text(name)
    for flag in (a.split("=", 1)[0] for a in args if a.startswith("-")):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", usage), \
            f"{page}: `{name} {' '.join(args)}`: {name} has no flag {flag}"
