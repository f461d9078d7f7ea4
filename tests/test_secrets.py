"""A secret typed on the command line never reaches disk or MLflow: refused before Hydra writes
anything, and nothing under the output or MLflow directories holds it."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

SECRET = "sk-live-DO-NOT-STORE-9731"


def _grep(root: Path, needle: str) -> list[Path]:
    return [f for f in root.rglob("*") if f.is_file() and needle.encode() in f.read_bytes()]


@pytest.mark.parametrize("override", [
    f"+backend.api_key={SECRET}",
    f"+judge.token={SECRET}",
    f"++backend.password={SECRET}",
    f"+hydra.launcher.secret={SECRET}",
    f"backend.base_url=http://user:{SECRET}@127.0.0.1:9/v1",
    f"judge.base_url=https://me:{SECRET}@judge.example/v1",
    f"tracking.uri=http://me:{SECRET}@127.0.0.1:9",
    f"backend.base_url=https://{SECRET}@127.0.0.1:9/v1",
    f"backend.base_url=http://:{SECRET}@127.0.0.1:9/v1",
    f"+backend.options={{api_key: {SECRET}}}",
    f"+backend.options={{headers: {{Authorization: 'Bearer {SECRET}'}}}}",
], ids=["api_key", "judge-token", "password", "hydra-secret", "backend-url", "judge-url", "tracking-url",
        "token-as-url-user", "url-password-only", "key-inside-a-value", "header-inside-a-value"])
def test_secret_overrides_are_refused_before_anything_is_written(tmp_path: Path, override: str):
    store = tmp_path / "mlflow.db"
    for mode in ([], ["-m"]):
        out = tmp_path / ("sweep" if mode else "run")
        where = f"hydra.sweep.dir={out}" if mode else f"hydra.run.dir={out}"
        done = run_cli("run", *mode, "backend=openai", "model.id=m", "prompts=smoke", override, where,
                       env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
        assert done.returncode == 2, done.stderr
        assert "refusing" in done.stderr and "api_key_env" in done.stderr and "Traceback" not in done.stderr
        assert SECRET not in done.stderr + done.stdout  # not even echoed back
        assert not out.exists()  # refused before Hydra wrote .hydra/ or multirun.yaml
    assert not store.exists() or not _grep(tmp_path, SECRET)


def test_tracking_uri_with_a_password_in_the_environment_is_refused(tmp_path: Path):
    done = run_cli("run", "prompts=smoke", f"hydra.run.dir={tmp_path / 'run'}",
                   env={"MLFLOW_TRACKING_URI": f"http://me:{SECRET}@127.0.0.1:9"})
    assert done.returncode == 2 and "MLFLOW_TRACKING_PASSWORD" in done.stderr and SECRET not in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_safe_way_runs_and_stores_no_secret(tmp_path: Path):
    store = tmp_path / "mlflow.db"
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=5)) as srv:
        done = run_cli("run", "-m", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "backend.api_key_env=SLMB_TEST_KEY", "prompts=smoke", "run.rounds=1", "run.warmup=0",
                       "decoding.max_tokens=256", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                       env={"SLMB_TEST_KEY": SECRET, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
    assert done.returncode == 0, done.stderr
    assert store.is_file() and (tmp_path / "sweep" / "summary.csv").is_file()
    assert _grep(tmp_path, SECRET) == []  # outputs, .hydra/, multirun.yaml, the MLflow store and artifacts
    assert SECRET not in done.stderr + done.stdout
    assert os.environ.get("SLMB_TEST_KEY") is None
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    run = [r for r in client.search_runs([client.get_experiment_by_name("slmbench").experiment_id])
           if r.data.tags.get("slmbench.kind") == "job"][0]
    # a token count and an env var's name are not secrets: logged as they are
    assert run.data.params["decoding.max_tokens"] == "256"
    assert run.data.params["backend.api_key_env"] == "SLMB_TEST_KEY"


@pytest.mark.parametrize("private", [
    f"base_url: http://me:{SECRET}@127.0.0.1:9/v1\noptions: {{}}\n",
    f"base_url: http://127.0.0.1:9/v1\noptions: {{auth: {{token: {SECRET}}}}}\n",
], ids=["url-password", "secret-key"])
def test_a_secret_in_a_config_file_never_reaches_disk_or_mlflow(tmp_path: Path, private: str):
    conf = tmp_path / "conf" / "backend"
    conf.mkdir(parents=True)
    (conf / "private.yaml").write_text(f"name: openai\ntarget: runner.backends.openai_compat:OpenAIBackend\n{private}"
                                       "api_key_env: null\ntimeout_s: 5\n")
    store = tmp_path / "mlflow.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    common = ["--config-dir", str(tmp_path / "conf"), "model.id=m", "prompts=smoke", "run.rounds=1", "run.warmup=0"]
    # the chosen group: refused on the composed config, before .hydra/ or multirun.yaml exist
    for mode, where in (([], "hydra.run.dir"), (["-m"], "hydra.sweep.dir")):
        out = tmp_path / f"out{len(mode)}"
        done = run_cli("run", *mode, *common, "backend=private", f"{where}={out}", env=env)
        assert done.returncode == 2, done.stderr
        assert "refusing" in done.stderr or "carries credentials" in done.stderr
        assert "api_key_env" in done.stderr and SECRET not in done.stderr and "Traceback" not in done.stderr
        assert not out.exists()
    # a swept group is composed per job, after Hydra wrote the job's .hydra/: that job refuses and
    # scrubs them; the sweep's other job runs
    done = run_cli("run", "-m", *common, "backend=openai,private", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    assert SECRET not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert list((tmp_path / "sweep").glob("*/.hydra/config.yaml"))  # the jobs were started
    assert _grep(tmp_path, SECRET) == [conf / "private.yaml"]  # only the user's own file holds it
