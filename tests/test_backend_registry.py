"""Backends by registry: a backend written in a file outside the package and named by a YAML in the
user's conf dir runs a job (docs/backends.md's recipe, as written), and no code outside runner/backends/
asks a backend its name."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import ROOT, run_cli

ECHO = '''
import time

from runner.backends.base import Backend, Capabilities, Completion


class EchoBackend(Backend):
    """Streams back the first words of the user's message, one chunk per word."""

    name = "echo"
    capabilities = Capabilities()  # not in process: an endpoint-like backend

    def __init__(self, model_id, words, timeout_s=120.0):
        self.model_id, self.words = model_id, words

    @classmethod
    def from_config(cls, backend_cfg, model):
        return cls(model.id, backend_cfg.options["words"], backend_cfg.timeout_s)

    def load(self):
        return None  # nothing of ours to load: not measured

    def chat(self, messages, params, on_delta=None):
        t_sent = time.perf_counter()
        deltas = []
        for word in messages[-1]["content"].split()[: min(self.words, params.max_tokens)]:
            time.sleep(0.002)
            deltas.append((time.perf_counter(), word + " "))
        return Completion(t_sent=t_sent, t_end=time.perf_counter(), deltas=deltas,
                          completion_tokens=len(deltas), tokens_estimated=True, finish_reason="stop")
'''


def _user_backend(home: Path, target: str) -> None:
    conf = home / "conf" / "backend"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "echo.yaml").write_text(f"name: echo\ntarget: {target}\noptions: {{words: 5}}\ntimeout_s: 10\n")


def test_a_backend_from_a_file_outside_the_package_runs_a_job(tmp_path: Path, fresh_home: Path):
    (tmp_path / "echo_backend.py").write_text(ECHO)
    _user_backend(fresh_home, f"{tmp_path / 'echo_backend.py'}:EchoBackend")
    job = tmp_path / "job"
    done = run_cli("run", "backend=echo", "model.id=echo-model", "prompts=smoke", "run.rounds=2", "run.warmup=0",
                   "tracking.enabled=false", f"hydra.run.dir={job}", env={"SLMBENCH_HOME": str(fresh_home)})
    assert done.returncode == 0, done.stderr
    s = json.loads((job / "summary.json").read_text())
    assert s["status"] == "ok" and s["n"] == 4 and s["model"] == "echo-model"  # not in process: named by its id
    assert s["load_s"] is None and s["rss_mb"] is None and s["tokens_estimated"]
    assert s["config"]["backend"]["capabilities"]["in_process"] is False
    recs = [json.loads(x) for x in (job / "requests.jsonl").read_text().splitlines()]
    assert all(len(r["output"].split()) == 5 and r["ttft_s"] > 0.001 for r in recs)


def test_a_backend_target_that_does_not_load_is_a_config_error(tmp_path: Path, fresh_home: Path):
    _user_backend(fresh_home, f"{tmp_path / 'missing.py'}:EchoBackend")
    done = run_cli("run", "backend=echo", "model.id=m", "prompts=smoke", f"hydra.run.dir={tmp_path / 'job'}",
                   env={"SLMBENCH_HOME": str(fresh_home)})
    assert done.returncode == 2 and "missing.py:EchoBackend' cannot be loaded" in done.stderr
    assert "Traceback" not in done.stderr
    # in a sweep the label resolver meets it first, inside Hydra's composition of the job's path
    done = run_cli("run", "-m", "backend=echo", "model.id=m", "prompts=smoke", f"hydra.sweep.dir={tmp_path / 's'}",
                   env={"SLMBENCH_HOME": str(fresh_home)})
    assert done.returncode == 2 and "cannot be loaded" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("run", "judge=openai", "judge.backend=nowhere", "prompts=smoke", f"hydra.run.dir={tmp_path / 'j'}")
    assert done.returncode == 2 and "no backend option 'nowhere'" in done.stderr


def test_no_code_outside_the_backends_asks_a_backend_its_name():
    comparison = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](foundry|openai)["']|["'](foundry|openai)["']\s*(==|!=)""")
    found = []
    for py in [*(ROOT / "runner").rglob("*.py"), *(ROOT / "judges").rglob("*.py")]:
        if "backends" in py.relative_to(ROOT).parts:
            continue
        for n, line in enumerate(py.read_text().splitlines(), 1):
            if comparison.search(line):
                found.append(f"{py.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
