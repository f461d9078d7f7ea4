"""A secret typed on the command line never reaches disk or MLflow: refused before Hydra writes
anything, and nothing under the output or MLflow directories holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

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
], ids=["api_key", "judge-token", "password", "hydra-secret", "backend-url", "judge-url", "tracking-url"])
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
                       f"hydra.sweep.dir={tmp_path / 'sweep'}",
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


def test_a_password_in_a_url_from_a_config_file_never_reaches_mlflow(tmp_path: Path):
    conf = tmp_path / "conf" / "backend"
    conf.mkdir(parents=True)
    (conf / "private.yaml").write_text(f"name: openai\nbase_url: http://me:{SECRET}@127.0.0.1:9/v1\n"
                                       "api_key_env: null\ntimeout_s: 5\n")
    store = tmp_path / "mlflow.db"
    done = run_cli("run", "--config-dir", str(tmp_path / "conf"), "backend=private", "model.id=m", "prompts=smoke",
                   f"hydra.run.dir={tmp_path / 'run'}", env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
    assert done.returncode == 2 and "carries a password" in done.stderr and SECRET not in done.stderr
    assert not store.exists() or SECRET.encode() not in store.read_bytes()
    assert not _grep(tmp_path / "mlartifacts", SECRET)
    assert not (tmp_path / "run" / "summary.json").exists()
