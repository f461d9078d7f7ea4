"""Interruptions of the run itself. A full disk is one clear line: no traceback, no partial record,
and a rerun resumes once space is freed (the job directory is a 24 KB tmpfs; mounting needs root,
which this suite's machines have). Ctrl-C keeps every record and marks the sweep KILLED."""

from __future__ import annotations

import json
import subprocess
from functools import partial
from pathlib import Path

import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

RUN = ["run", "backend=openai", "model.id=scripted-model", "prompts=rag-basics", "run.rounds=10", "run.warmup=0",
       "tracking.enabled=false"]


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs (needs root): {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_one_line_whole_records_and_a_rerun_resumes(small_disk: Path):
    job = small_disk / "job"
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0005, tokens=30)) as srv:
        full = run_cli(*RUN, f"backend.base_url={srv.base_url}", f"hydra.run.dir={job}")
        assert full.returncode == 1, full.stderr
        assert "Traceback" not in full.stderr
        line = [x for x in full.stderr.splitlines() if "no space left on device writing" in x]
        assert len(line) == 1 and f"{job}/requests.jsonl" in line[0] and "records kept" in line[0], full.stderr
        assert "rerun to resume" in line[0]
        text = (job / "requests.jsonl").read_text()
        recs = [json.loads(x) for x in text.splitlines()]  # every line is a whole record
        assert text.endswith("\n") and 0 < len(recs) < 40
        kept = int(line[0].split("; ")[1].split()[0])
        assert kept == len(recs)
        subprocess.run(["mount", "-o", "remount,size=2m", str(small_disk)], check=True)
        again = run_cli(*RUN, f"backend.base_url={srv.base_url}", f"hydra.run.dir={job}")
    assert again.returncode == 0, again.stderr
    recs = [json.loads(x) for x in (job / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 40 and len({(r["round"], r["prompt_id"]) for r in recs}) == 40  # resumed, no duplicates
    s = json.loads((job / "summary.json").read_text())
    assert s["status"] == "ok" and s["n"] == 40 and s["resumed"] and s["skipped_done"] == kept


def test_a_torn_last_line_is_repaired_and_said(tmp_path: Path, capsys):
    from runner.store.records import RecordWriter, read

    path = tmp_path / "requests.jsonl"
    path.write_text('{"round": 0, "prompt_id": "a"}\n{"round": 0, "prom')
    writer = RecordWriter(path)
    writer.append({"round": 0, "prompt_id": "b"})
    writer.close()
    assert path.read_text() == '{"round": 0, "prompt_id": "a"}\n{"round": 0, "prompt_id": "b"}\n'
    assert [r["prompt_id"] for r in read(path)] == ["a", "b"]
    assert "repaired" in capsys.readouterr().err


def test_a_vanished_job_directory_fails_the_next_append_instead_of_losing_records(tmp_path: Path):
    from runner.config.errors import OutputError
    from runner.store.records import RecordWriter

    job = tmp_path / "job"
    job.mkdir()
    writer = RecordWriter(job / "requests.jsonl")
    writer.append({"round": 0, "prompt_id": "a"})
    (job / "requests.jsonl").unlink()
    job.rmdir()
    with pytest.raises(OutputError, match="removed while the job ran.*1 records kept"):
        writer.append({"round": 0, "prompt_id": "b"})
    writer.close()


def test_an_empty_manifest_left_by_a_full_disk_is_said_and_replaced(tmp_path: Path, capsys):
    from runner.store.records import check_manifest

    (tmp_path / "job.json").write_text("")
    assert check_manifest(tmp_path, {"config_hash": "h"}) is False
    assert "unreadable" in capsys.readouterr().err
    assert json.loads((tmp_path / "job.json").read_text()) == {"config_hash": "h"}
    assert check_manifest(tmp_path, {"config_hash": "h"}) is True


def test_an_open_loop_run_on_a_full_disk_stops_with_one_line(small_disk: Path):
    job = small_disk / "job"
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0005, tokens=30)) as srv:
        done = run_cli(*RUN[:4], "run.rate=100", "run.requests=200", "run.warmup=0", "tracking.enabled=false",
                       f"backend.base_url={srv.base_url}", f"hydra.run.dir={job}")
        served = len(srv.arrivals)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len([x for x in done.stderr.splitlines() if "no space left on device writing" in x]) == 1, done.stderr
    recs = [json.loads(x) for x in (job / "requests.jsonl").read_text().splitlines()]
    assert 0 < len(recs) < 200
    assert served < 200  # the load stopped once a record could not be kept


def test_a_read_only_output_directory_is_one_line(small_disk: Path):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done = run_cli(*RUN, "backend.base_url=http://127.0.0.1:9/v1", f"hydra.run.dir={small_disk / 'job'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "read-only file system writing" in done.stderr and "rerun to resume" in done.stderr


def test_a_sweep_on_a_full_disk_stops_with_one_line(small_disk: Path):
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0005, tokens=30)) as srv:
        done = run_cli("run", "-m", *RUN[1:], f"backend.base_url={srv.base_url}", "decoding.max_tokens=40,50",
                       f"hydra.sweep.dir={small_disk / 'sweep'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len([x for x in done.stderr.splitlines() if "no space left on device writing" in x]) == 1, done.stderr
    assert not (small_disk / "sweep" / "1_scripted-model_deterministic_cpu" / "requests.jsonl").exists()
    for f in (small_disk / "sweep").glob("*/requests.jsonl"):
        assert all(json.loads(x) for x in f.read_text().splitlines())


def test_ctrl_c_keeps_every_record_and_marks_the_sweep_killed(tmp_path: Path):
    import os
    import signal
    import time

    from conftest import SLMBENCH
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.05, tpot_s=0.01, tokens=20)) as srv:
        proc = subprocess.Popen([SLMBENCH, "run", "-m", *RUN[1:-1], f"backend.base_url={srv.base_url}",
                                 f"hydra.sweep.dir={sweep}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "MLFLOW_TRACKING_URI": store})
        deadline = time.monotonic() + 60
        path = sweep / "0_scripted-model_deterministic_cpu" / "requests.jsonl"
        while time.monotonic() < deadline and not (path.exists() and len(path.read_text().splitlines()) >= 5):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    recs = [json.loads(x) for x in path.read_text().splitlines()]  # whole records only
    assert 5 <= len(recs) < 40
    client = MlflowClient(store)
    parent = [r for r in client.search_runs([client.get_experiment_by_name("slmbench").experiment_id])
              if r.data.tags.get("slmbench.kind") == "sweep"]
    assert len(parent) == 1 and parent[0].info.status == "KILLED"
