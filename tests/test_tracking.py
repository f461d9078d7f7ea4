"""MLflow tracking on a real SQLite store: one parent per sweep, one child per job, the
right statuses, params, metrics and artifacts; no secret logged; failures of tracking
never fail a run; the UI serves the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import psutil
from conftest import SLMBENCH, free_port, run_cli
from mlflow import MlflowClient
from scripted_server import Script, ScriptedServer

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

SECRET = "sk-never-log-me-31337"


def runs_by_name(uri: str, experiment: str = "slmbench"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=500)}


def test_sweep_is_one_parent_with_a_child_per_job(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.002, tokens=10)) as a, \
            ScriptedServer(Script(ttft_s=0.02, tpot_s=0.004, tokens=10)) as b:
        done = run_cli("run", "-m", "backend=openai", "model.id=scripted-model", "prompts=smoke", "run.rounds=2",
                       "run.warmup=0", "backend.api_key_env=SLMB_KEY",
                       f"backend.base_url={a.base_url},{b.base_url},http://127.0.0.1:9/v1",
                       f"hydra.sweep.dir={sweep}", env={"MLFLOW_TRACKING_URI": uri, "SLMB_KEY": SECRET})
    assert done.returncode == 0, done.stderr
    client, runs = runs_by_name(uri)
    parent = runs[sweep.name]
    assert parent.info.status == "FINISHED" and parent.data.tags["slmbench.kind"] == "sweep"
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3
    by_num = {r.info.run_name.split("_")[0]: r for r in children}
    assert [by_num[k].info.status for k in ("0", "1", "2")] == ["FINISHED", "FINISHED", "FAILED"]
    assert "unreachable" in by_num["2"].data.tags["error"]
    ok = by_num["0"]
    assert ok.data.params["decoding.temperature"] == "0.0" and ok.data.params["model.id"] == "scripted-model"
    assert ok.data.params["backend.api_key_env"] == "SLMB_KEY"  # the name of the variable, not the key
    for name in ("ttft_s.p50", "tpot_s.p95", "decode_tps.mean", "e2e_s.p99", "n"):
        assert name in ok.data.metrics
    assert ok.info.run_name.startswith("0_scripted-model_deterministic_cpu [backend.base_url=http://127.0.0.1:")
    summary = json.loads((Path(ok.data.tags["job_dir"]) / "summary.json").read_text())
    assert ok.data.metrics["ttft_s.p50"] == summary["metrics"]["ttft_s"]["p50"]
    # the run spans the job (the UI's Duration is the job's wall time, not the logging's)
    assert (ok.info.start_time, ok.info.end_time) == (int(summary["job_wall"]["start"] * 1000),
                                                      int(summary["job_wall"]["end"] * 1000))
    # the slower server is slower in the store too
    assert by_num["1"].data.metrics["tpot_s.p50"] > ok.data.metrics["tpot_s.p50"]
    history = client.get_metric_history(ok.info.run_id, "request.e2e_s")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    arts = {a.path for a in client.list_artifacts(ok.info.run_id)}
    assert {"requests.jsonl", "scores.jsonl", "summary.json", "report.md", "hydra"} <= arts
    # each measured request is a trace of its job's run (runner/track/traces.py)
    assert len(client.search_traces(locations=[ok.info.experiment_id], run_id=ok.info.run_id)) == summary["n"]
    assert {"report.md", "summary.csv"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert ok.inputs.dataset_inputs and ok.inputs.dataset_inputs[0].dataset.name == "smoke"
    for r in [parent, *children]:
        blob = json.dumps([r.data.params, r.data.tags])
        assert SECRET not in blob
    local = client.download_artifacts(ok.info.run_id, "", str(tmp_path / "dl"))
    for root, _, files in os.walk(local):
        for f in files:
            assert SECRET not in open(os.path.join(root, f), errors="ignore").read()


def test_parallel_jobs_share_one_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # fresh: both processes race to create it
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=6)) as srv:
        procs = [subprocess.Popen([SLMBENCH, "run", "backend=openai", f"backend.base_url={srv.base_url}",
                                   "model.id=scripted-model", "prompts=rag-basics", "run.rounds=2", "run.warmup=0",
                                   f"hydra.run.dir={tmp_path / f'job{i}'}"], env=env, stderr=subprocess.PIPE,
                                  text=True) for i in range(3)]
        errs = [p.communicate(timeout=180)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert not any("tracking failed" in e or "locked" in e for e in errs), errs
    _, runs = runs_by_name(uri)
    assert {"job0", "job1", "job2"} <= set(runs) and all(r.info.status == "FINISHED" for r in runs.values())


def test_unreachable_tracking_server_does_not_fail_the_run(tmp_path):
    job = tmp_path / "job"
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=6)) as srv:
        t0 = time.monotonic()
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "prompts=smoke", "run.rounds=1", "run.warmup=0", "tracking.uri=http://127.0.0.1:9",
                       f"hydra.run.dir={job}")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 90
    assert "tracking failed" in done.stderr and f"slmbench ui --log {job}" in done.stderr
    assert (job / "summary.json").is_file()
    uri = f"sqlite:///{tmp_path / 'replay.db'}"
    replayed = run_cli("ui", "--log", str(job), "--uri", uri)
    assert replayed.returncode == 0, replayed.stderr
    _, runs = runs_by_name(uri)
    assert runs["job"].info.status == "FINISHED" and "ttft_s.p50" in runs["job"].data.metrics


def test_ui_serves_the_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'ui.db'}"
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=6)) as srv:
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "prompts=smoke", "run.rounds=1", "run.warmup=0", f"hydra.run.dir={tmp_path / 'job'}",
                       env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stderr
    port = free_port()
    ui = subprocess.Popen([SLMBENCH, "ui", "--port", str(port), "--uri", uri], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and body is None:
            try:
                url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
                body = urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert body is not None and '"slmbench"' in body
        # `slmbench ui` became (same pid, so a signal reaches MLflow) this venv's Python running its mlflow
        cmdline = psutil.Process(ui.pid).cmdline()
        assert cmdline[:4] == [sys.executable, "-m", "mlflow", "ui"]
        assert cmdline[cmdline.index("--workers") + 1] == "1"  # one server process for one user on loopback
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def test_ui_refuses_no_server_process_in_one_line():
    done = run_cli("ui", "--workers", "0")
    assert done.returncode == 2 and "--workers 0" in done.stderr and "Traceback" not in done.stderr


def test_compare_by_mlflow_run_id_and_by_baseline_name(tmp_path):
    uri = f"sqlite:///{tmp_path / 'cmp.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    common = ["backend=openai", "model.id=scripted-model", "prompts=rag-basics", "run.rounds=4", "run.warmup=0"]
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.01, tokens=24)) as srv:
        url = f"backend.base_url={srv.base_url}"
        first = run_cli("run", *common, url, "+baseline=nightly", f"hydra.run.dir={tmp_path / 'a'}", env=env,
                        cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert (tmp_path / "outputs" / "baselines" / "nightly" / "requests.jsonl").is_file()
        second = run_cli("run", *common, url, f"hydra.run.dir={tmp_path / 'b'}", env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        srv.script = Script(ttft_s=0.01, tpot_s=0.015, tokens=24)  # decode 1.5x slower
        slow = run_cli("run", *common, url, f"hydra.run.dir={tmp_path / 'c'}", env=env, cwd=tmp_path)
        assert slow.returncode == 0, slow.stderr
    _, runs = runs_by_name(uri)
    a, b, c = (runs[n].info.run_id for n in ("a", "b", "c"))
    # client-side timing with the suite's other workers beside it wobbles (7% seen between two runs
    # of one script): gate at 25% here, which the 1.5x slower decode still exceeds (tpot +50%,
    # decode_tps -33%); what this test checks is which runs compare resolves, by id and by name
    loose = ["--tolerance", "tpot_s=0.25", "--tolerance", "decode_tps=0.25", "--tolerance", "ttft_s=0.5",
             "--tolerance", "e2e_s=0.25"]
    same = run_cli("compare", a, b, "--uri", uri, "--out", str(tmp_path / "cmp1"), *loose, cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    worse = run_cli("compare", "nightly", str(tmp_path / "c"), *loose, cwd=tmp_path)
    assert worse.returncode == 1 and "decode_tps" in worse.stdout and "REGRESSION" in worse.stdout
    by_id = run_cli("compare", a, c, "--uri", uri, "--out", str(tmp_path / "cmp2"), *loose, cwd=tmp_path)
    assert by_id.returncode == 1 and "tpot_s" in by_id.stdout
    bad = run_cli("compare", "f" * 32, b, "--uri", uri, cwd=tmp_path)
    assert bad.returncode == 2 and "no such MLflow run" in bad.stderr
