"""Sweeps fanned out by Hydra launchers, logging to one real MLflow tracking server on
127.0.0.1: joblib (parallel processes here), Ray (a local `ray start --head` on 127.0.0.1,
stopped after), and the refusals and bad input around them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest
from conftest import free_port, run_cli
from conftest import mlflow_server as serve_mlflow
from scripted_server import Script, ScriptedServer

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

BIN = Path(sys.executable).parent
OPENAI = ["backend=openai", "model.id=scripted-model", "prompts=rag-basics", "run.warmup=0"]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with its own SQLite store and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with serve_mlflow(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "server.log",
                      proxy_artifacts=True) as url:
        yield url


def _runs(url: str, sweep: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("slmbench")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parent = [r for r in runs if r.data.tags.get("slmbench.kind") == "sweep"
              and r.data.tags.get("sweep_dir") == str(sweep)]
    assert len(parent) == 1, [r.data.tags for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    return parent[0], children


def _check_sweep(sweep: Path, url: str, launcher: str) -> list[dict]:
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert len(summaries) == 2 and all(s["status"] == "ok" and s["n"] == 12 for s in summaries)
    assert {s["launcher"] for s in summaries} == {launcher}
    parent, children = _runs(url, sweep)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert all(c.info.status == "FINISHED" and c.data.metrics["n"] == 12 for c in children)
    assert "report.md" in {a.path for a in _artifacts(url, parent.info.run_id)}
    return summaries


def _artifacts(url: str, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url).list_artifacts(run_id)


def test_joblib_runs_two_jobs_at_once_into_one_tracking_server(tmp_path, mlflow_server):
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.3, tpot_s=0.005, tokens=10)) as srv:
        done = run_cli("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *OPENAI,
                       f"backend.base_url={srv.base_url}", "run.rounds=3", "decoding=deterministic,creative",
                       f"tracking.uri={mlflow_server}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr
    summaries = _check_sweep(sweep, mlflow_server, "joblib (n_jobs=2)")
    starts = sorted(s["job_wall"]["start"] for s in summaries)
    ends = sorted(s["job_wall"]["end"] for s in summaries)
    assert starts[1] < ends[0]  # they overlapped: two processes, not one after the other
    assert "Jobs at once on one host: up to 2" in (sweep / "report.md").read_text()


def test_parallel_launcher_refuses_in_process_models(tmp_path):
    done = run_cli("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "prompts=smoke",
                   "model=smollm2-135m-int8,smollm2-135m-int4", "tracking.enabled=false",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("would share this machine's cores") == 2
    assert not list((tmp_path / "sweep").glob("*/requests.jsonl"))  # refused before any load


def test_missing_launcher_plugin_names_the_extra(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoRayPlugin:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('hydra_plugins.hydra_ray_launcher'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _NoRayPlugin())\n")
    done = run_cli("run", "-m", "hydra/launcher=ray", *OPENAI, "backend.base_url=http://127.0.0.1:9/v1",
                   env={"PYTHONPATH": str(site)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pip install 'slmbench[ray]'" in done.stderr


def test_unreachable_ray_address_fails_fast(tmp_path):
    t0 = time.monotonic()
    done = run_cli("run", "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address=127.0.0.1:{free_port()}",
                   *OPENAI, "backend.base_url=http://127.0.0.1:9/v1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no Ray cluster answers there" in done.stderr and time.monotonic() - t0 < 30


# Ray on Linux advertises and binds the host's network address even when told 127.0.0.1; its
# single-machine mode keeps every port on loopback. `ray start` turns token authentication on
# (here with a token of the test's own, in a temporary file), and the driver must use it too.
RAY_TOKEN = Path(tempfile.mkdtemp(prefix="raytoken")) / "auth_token"
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_TOKEN_PATH": str(RAY_TOKEN)}


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray cluster on 127.0.0.1, stopped after the test. Its temp dir is short: Ray's
    socket paths must fit in 107 bytes."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    RAY_TOKEN.write_text(secrets.token_hex(32))
    env = {**os.environ, **RAY_ENV}
    start = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                            f"--temp-dir={temp}"], capture_output=True, text=True, env=env,
                           timeout=180, cwd=temp)  # workers start in the raylet's directory, not ours
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(RAY_TOKEN.parent, ignore_errors=True)


def test_ray_multirun_on_a_local_cluster_logs_to_one_store(tmp_path, mlflow_server, ray_head):
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.05, tpot_s=0.005, tokens=10)) as srv:
        # a relative prompt file: it names a file here, where the sweep is started
        done = run_cli("run", "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head}", *OPENAI,
                       "prompts.path=conf/prompts/data/rag-basics.yaml",
                       f"backend.base_url={srv.base_url}", "run.rounds=3", "decoding=deterministic,creative",
                       f"tracking.uri={mlflow_server}", f"hydra.sweep.dir={sweep}", timeout=600, env=RAY_ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_sweep(sweep, mlflow_server, "ray")


def test_ray_cluster_with_token_auth_says_how_to_connect(tmp_path, ray_head):
    env = {k: v for k, v in RAY_ENV.items() if k != "RAY_AUTH_MODE"}
    done = run_cli("run", "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head}", *OPENAI,
                   "backend.base_url=http://127.0.0.1:9/v1", "tracking.enabled=false",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", env={**env, "RAY_AUTH_MODE": "disabled"}, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "set RAY_AUTH_MODE=token" in done.stderr


def test_slurm_preset_composes_with_its_setup_line(tmp_path):
    done = run_cli("run", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                   "hydra.launcher.gpus_per_node=1", *OPENAI, "backend.base_url=http://127.0.0.1:9/v1",
                   "--cfg", "hydra", "--package", "hydra.launcher", "--resolve",
                   env={"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"})
    assert done.returncode == 0, done.stderr
    assert "SlurmLauncher" in done.stdout and "partition: gpu" in done.stdout and "gpus_per_node: 1" in done.stdout
    assert "export MLFLOW_TRACKING_URI=http://mlflow.internal:5000" in done.stdout


def test_submitit_runs_self_contained_jobs(tmp_path, mlflow_server):
    """submitit's local executor pickles each job and runs it in a process of its own, as
    it would on a SLURM node: the job must find everything from its config and the sweep."""
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.05, tpot_s=0.005, tokens=10)) as srv:
        done = run_cli("run", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", *OPENAI,
                       f"backend.base_url={srv.base_url}", "run.rounds=3", "decoding=deterministic,creative",
                       f"tracking.uri={mlflow_server}", f"hydra.sweep.dir={sweep}", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_sweep(sweep, mlflow_server, "local")


def test_default_sweep_dir_is_absolute_under_the_callers_cwd(tmp_path):
    """Launched jobs resolve relative paths in their own working directory; the default sweep
    directory must already be absolute, under the directory slmbench was started from."""
    with ScriptedServer(Script(ttft_s=0.02, tpot_s=0.002, tokens=5)) as srv:
        done = run_cli("run", "-m", "hydra/launcher=joblib", *OPENAI, f"backend.base_url={srv.base_url}",
                       "run.rounds=1", "decoding=deterministic,creative", "tracking.enabled=false",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "is validated against ConfigStore schema" not in done.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    assert len(list(sweep.glob("*/summary.json"))) == 2 and (sweep / "report.md").is_file()
    context = json.loads((sweep / "slmbench-sweep.json").read_text())
    assert context["parent_run_id"] is None and context["tracking_uri"] is None


def test_hydra_flags_are_kept_apart_from_overrides():
    from runner.app import split_hydra_args

    assert split_hydra_args(["-m", "model=a,b", "--cfg", "job", "--resolve"]) == (
        ["-m", "--cfg", "job", "--resolve"], ["model=a,b"])
    assert split_hydra_args(["model=a", "--cfg=job", "-cn", "x", "+k=v", "~y", "a=b=c"]) == (
        ["--cfg=job", "-cn", "x"], ["model=a", "+k=v", "~y", "a=b=c"])
    assert split_hydra_args(["--info"]) == (["--info", "all"], [])  # no override taken as its value
    assert split_hydra_args(["--info", "plugins", "a=1"]) == (["--info", "plugins"], ["a=1"])
    from runner.config import paths

    done = run_cli("run", "--info", "searchpath")
    assert done.returncode == 0, done.stderr
    # the project's conf/, and the user's conf dir that slmbench adds as an override beside the flag
    assert str(paths.CONF_DIR) in done.stdout and str(paths.user_conf_dir()) in done.stdout, done.stdout
