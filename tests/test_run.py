"""`slmbench run`: real Hydra runs and multiruns in a subprocess, on the real Foundry Local
pack, plus the failure, resume and bad-input paths."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SLMBENCH, SMALL, run_cli
from scripted_server import Script, ScriptedServer

REQUEST_FIELDS = {"model", "model_id", "prompt_id", "round", "status", "error", "ttft_s", "e2e_s", "tpot_s",
                  "decode_tps", "prompt_tokens", "completion_tokens", "finish_reason", "output"}
SUMMARY_FIELDS = {"model", "model_id", "status", "error", "n", "metrics", "load_s", "rss_mb", "disk_mb",
                  "license", "throughput", "environment"}
STATS = {"mean", "std", "p50", "p90", "p95", "p99", "ci95"}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_single_run_writes_the_contract(tmp_path, pack_home):
    job = tmp_path / "job"
    done = run_cli("run", f"model={SMALL}", "prompts=smoke", "run.rounds=3", "run.warmup=1",
                   f"hydra.run.dir={job}", plots=True)
    assert done.returncode == 0, done.stderr
    recs = lines(job / "requests.jsonl")
    assert len(recs) == 3 * 2  # rounds x prompts; warm-up not recorded
    for r in recs:
        assert REQUEST_FIELDS <= set(r)
        assert r["status"] == "ok" and r["model"] == SMALL
        assert 0 < r["ttft_s"] < r["e2e_s"]
        assert r["completion_tokens"] > 1 and r["tokens_estimated"] is False
        assert abs(r["tpot_s"] - (r["e2e_s"] - r["ttft_s"]) / (r["completion_tokens"] - 1)) < 1e-9
        assert abs(r["decode_tps"] * r["tpot_s"] - 1) < 1e-9
    s = json.loads((job / "summary.json").read_text())
    assert SUMMARY_FIELDS <= set(s) and s["status"] == "ok" and s["n"] == 6
    for name in ("ttft_s", "e2e_s", "tpot_s", "decode_tps"):
        assert STATS <= set(s["metrics"][name])
        lo, hi = s["metrics"][name]["ci95"]
        assert lo <= s["metrics"][name]["p50"] <= hi
    # that the peak sampler samples is tested on a known allocation (tests/test_energy_memory.py); here,
    # that the job reports it: generating allocates the KV cache, so the peak exceeds the RSS after load
    # (a job reporting rss_mb again, or a reading taken before generation, fails this)
    assert s["load_s"] > 0 and s["rss_mb"] > 100 and s["rss_peak_mb"] > s["rss_mb"] + 1
    assert 200 < s["disk_mb"] < 300 and s["license"] == "Apache-2.0"
    assert s["determinism"] == {"checked": True, "identical": True, "prompts_differing": []}
    assert s["throughput"]["output_tps"] > 0 and s["environment"]["cores"] >= 1
    # energy by value: RAPL where readable, else hardware=cpu's 15 W x window_s / 3600 Wh per 1k output tokens
    energy, tokens = s["energy"], sum(r["completion_tokens"] for r in recs)
    if energy["source"].startswith("measured"):
        assert energy["wh_per_1k_tokens"] > 0
    else:
        assert energy["source"].startswith("estimate") and s["config"]["hardware"]["power_w"] == 15.0
        assert energy["wh_per_1k_tokens"] == pytest.approx(15.0 * s["throughput"]["window_s"] / 3600 / (tokens / 1000))
    report = (job / "report.md").read_text()
    assert "(completion_tokens - 1)" in report and "decode_tps" in report and (job / "latency.png").is_file()
    with (job / "summary.csv").open() as fh:
        assert next(csv.DictReader(fh))["model"] == SMALL
    decision = json.loads((job / "decision.json").read_text())  # a single run is a sweep of one
    assert decision["recommended"]["model"] == SMALL and decision["runner_up"] is None
    assert report.lstrip().startswith("<!-- decision:start -->")


def test_multirun_sweeps_two_pack_models(tmp_path, pack_home):
    sweep = tmp_path / "sweep"
    # the disk limit decides here; whether a 135M model is fit for the task is tests/test_verdict.py's
    done = run_cli("run", "-m", "model=glob(smollm2-135m-int*)", "prompts=smoke", "run.rounds=2",
                   "selection.max.disk_mb=200", "selection.acceptance=false", f"hydra.sweep.dir={sweep}", plots=True)
    assert done.returncode == 0, done.stderr
    with (sweep / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["model"] for r in rows) == ["smollm2-135m-int4", "smollm2-135m-int8"]
    assert all(r["status"] == "ok" and int(r["n"]) == 4 for r in rows)
    sizes = {r["model"]: float(r["disk_mb"]) for r in rows}
    assert sizes["smollm2-135m-int4"] < sizes["smollm2-135m-int8"]
    report = (sweep / "report.md").read_text()
    assert "smollm2-135m-int4" in report and "smollm2-135m-int8" in report
    assert (sweep / "latency.png").is_file() and (sweep / "speed_vs_size.png").is_file()
    # the decision follows from the sweep's own numbers: only int4 fits a 200 MB disk limit
    decision = json.loads((sweep / "decision.json").read_text())
    assert decision["recommended"]["model"] == "smollm2-135m-int4"
    int8 = next(c for c in decision["candidates"] if c["model"] == "smollm2-135m-int8")
    assert not int8["eligible"] and any(r.startswith("disk_mb") for r in int8["reasons"])
    assert report.lstrip().startswith("<!-- decision:start -->")
    redo = run_cli("decide", str(sweep), "max.disk_mb=1000", "objective.metric=decode_tps.p50", "acceptance=false")
    assert redo.returncode == 0, redo.stderr
    again = json.loads((sweep / "decision.json").read_text())
    assert all(c["eligible"] for c in again["candidates"]) and (sweep / "decision.previous.json").is_file()
    best = max(again["candidates"], key=lambda c: c["objective_value"])
    assert again["recommended"]["job"] == best["job"]


def test_failing_job_is_recorded_and_sweep_goes_on(tmp_path, pack_home):
    sweep = tmp_path / "sweep"
    done = run_cli("run", "-m", f"model={SMALL}", "prompts=smoke", "run.rounds=1", "hardware=cpu,gpu",
                   f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr  # one job produced results
    with (sweep / "summary.csv").open() as fh:
        rows = {r["hardware"]: r for r in csv.DictReader(fh)}
    assert rows["cpu"]["status"] == "ok"
    # the cause names the provider asked for and the ones this machine has (true on a GPU host whose
    # onnxruntime is the CPU build as well)
    assert rows["gpu"]["status"] == "failed" and "CUDAExecutionProvider" in rows["gpu"]["error"]
    assert "available: " in rows["gpu"]["error"] and "CPUExecutionProvider" in rows["gpu"]["error"]
    assert rows["cpu"]["execution_provider"] == "cpu"
    assert "Failed jobs" in (sweep / "report.md").read_text()
    # report.plots=false (run_cli's default): no PNG anywhere, and each report says so
    assert not list(sweep.rglob("*.png"))
    assert all("Plots off (`report.plots=false`)" in p.read_text() for p in sweep.rglob("report.md"))
    strict = run_cli("run", "-m", f"model={SMALL}", "prompts=smoke", "run.rounds=1", "hardware=cpu,gpu",
                     "run.strict=true", f"hydra.sweep.dir={tmp_path / 'strict'}")
    assert strict.returncode == 1


def _short_error(done, *needles, code=None):
    assert done.returncode != 0 if code is None else done.returncode == code
    assert "Traceback" not in done.stderr, done.stderr
    for n in needles:
        assert n in done.stderr, done.stderr


@pytest.mark.parametrize("override, needle", [
    ("decoding.max_tokens=abc", "decoding.max_tokens"),
    ("decoding.temperature=-1", "decoding.temperature"),
    ("run.rounds=0", "run.rounds"),
    ("run.warmup_requests=-1", "run.warmup_requests"),
    ("no_such_key=1", "no_such_key"),
    ("model=no-such-model", "no-such-model"),
    ("prompts.path=/nonexistent/prompts.yaml", "/nonexistent/prompts.yaml"),
])
def test_bad_config_fails_fast_and_clearly(tmp_path, override, needle):
    t0 = time.monotonic()
    done = run_cli("run", override, f"hydra.run.dir={tmp_path / 'job'}")
    _short_error(done, needle)
    assert time.monotonic() - t0 < 30


def test_bad_prompt_files(tmp_path):
    malformed = tmp_path / "bad.json"
    malformed.write_text("[1, 2")
    empty = tmp_path / "empty.yaml"
    empty.write_text("prompts: []\n")
    for path, needle in ((malformed, "malformed"), (empty, "no prompts")):
        _short_error(run_cli("run", f"prompts.path={path}", f"hydra.run.dir={tmp_path / 'j'}"), needle, str(path))


def test_unreachable_endpoint_fails_within_seconds(tmp_path):
    t0 = time.monotonic()
    done = run_cli("run", "backend=openai", "backend.base_url=http://127.0.0.1:9/v1", "backend.timeout_s=5",
                   "prompts=smoke", f"hydra.run.dir={tmp_path / 'job'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    s = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert s["status"] == "failed" and "unreachable" in s["error"]
    assert time.monotonic() - t0 < 30


def test_openai_backend_workshop_prompts_and_no_secret_leak(tmp_path):
    prompts = tmp_path / "workshop.json"
    prompts.write_text(json.dumps(["Explain RAG in two sentences.", "Why run models locally?"]))
    secret = "sk-test-DO-NOT-LOG-4242"
    with ScriptedServer(Script(ttft_s=0.02, tpot_s=0.002, tokens=12)) as srv:
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "backend.api_key_env=SLMB_KEY",
                       "model.id=scripted-model", f"prompts.path={prompts}", "run.rounds=2", "run.warmup=1",
                       f"hydra.run.dir={tmp_path / 'job'}", env={"SLMB_KEY": secret})
    assert done.returncode == 0, done.stderr
    recs = lines(tmp_path / "job" / "requests.jsonl")
    assert sorted({r["prompt_id"] for r in recs}) == ["p01", "p02"] and len(recs) == 4
    assert all(r["model_id"] == "scripted-model" and r["completion_tokens"] == 12 for r in recs)
    s = json.loads((tmp_path / "job" / "summary.json").read_text())
    # nothing was loaded by us: no load time is reported (never a constant 0.0)
    assert s["prompts"] == "workshop" and s["load_s"] is None and s["rss_mb"] is None
    assert re.search(r"\| load_s +\| not measured for endpoints", (tmp_path / "job" / "report.md").read_text())
    assert len(srv.requests) == 2 * 2 + 2  # measured + warm-up, each exactly once
    for f in (tmp_path / "job").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="ignore"), f


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    job = tmp_path / "job"
    args = [SLMBENCH, "run", "backend=openai", "model.id=scripted-model", "prompts=rag-basics",
            "run.rounds=5", "run.warmup=0", f"hydra.run.dir={job}"]
    with ScriptedServer(Script(ttft_s=0.05, tpot_s=0.01, tokens=20)) as srv:
        args.insert(3, f"backend.base_url={srv.base_url}")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (job / "requests.jsonl").exists() and len(lines(job / "requests.jsonl")) >= 6:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = len(lines(job / "requests.jsonl"))
        assert 6 <= before < 20
        srv.requests.clear()
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    recs = lines(job / "requests.jsonl")
    keys = [(r["round"], r["prompt_id"]) for r in recs]
    assert len(keys) == len(set(keys)) == 5 * 4
    assert len(srv.requests) == 20 - before  # completed requests were not repeated
    s = json.loads((job / "summary.json").read_text())
    assert s["n"] == 20 and s["resumed"] is True and s["skipped_done"] == before
    changed = run_cli("run", "backend=openai", "model.id=scripted-model", "prompts=rag-basics",
                      "decoding.max_tokens=7", "backend.base_url=http://127.0.0.1:9/v1", f"hydra.run.dir={job}")
    _short_error(changed, "another configuration")


@pytest.mark.serial  # measured times against known delays
def test_concurrency_overlaps_requests(tmp_path):
    with ScriptedServer(Script(ttft_s=0.1, tpot_s=0.005, tokens=10)) as srv:
        out = {}
        for c in (1, 4):
            job = tmp_path / f"c{c}"
            done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                           "prompts=rag-basics", "run.rounds=2", "run.warmup=0", f"run.concurrency={c}",
                           f"hydra.run.dir={job}")
            assert done.returncode == 0, done.stderr
            out[c] = json.loads((job / "summary.json").read_text())["throughput"]["requests_per_s"]
    assert out[4] > 2.5 * out[1]


def _adaptive(tmp_path, name: str, script: Script) -> dict:
    job = tmp_path / name
    with ScriptedServer(script) as srv:
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "prompts=rag-basics", "run.rounds=2", "run.warmup=0", "run.target_ci=0.05",
                       "run.max_rounds=6", "run.target_metrics=[e2e_s]", "tracking.enabled=false",
                       f"hydra.run.dir={job}")
    assert done.returncode == 0, done.stderr
    return json.loads((job / "summary.json").read_text())


@pytest.mark.serial  # measured times against known delays
def test_adaptive_rounds_stop_early_when_steady_and_hit_the_cap_when_noisy(tmp_path):
    # steady: e2e ~0.24 s, so a few ms of client jitter is ~1%, well inside the 5% target
    steady = _adaptive(tmp_path, "steady", Script(ttft_s=0.2, tpot_s=0.002, tokens=20))
    assert steady["rounds"] == 2 and steady["adaptive"]["reached"] == {"e2e_s": True}
    assert steady["n"] == 2 * 4
    noisy = _adaptive(tmp_path, "noisy", Script(ttft_s=0.02, tpot_s=0.002, tokens=20, jitter_s=0.25))
    assert noisy["rounds"] == 6 and noisy["adaptive"]["reached"] == {"e2e_s": False}
    assert noisy["n"] == 6 * 4 and noisy["adaptive"]["precision"]["e2e_s"]["rel_half_width"] > 0.05


def test_warmup_requests_caps_the_warm_up_pass(tmp_path):
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0, tokens=4)) as srv:
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "prompts=rag-basics", "run.rounds=1", "run.warmup=2", "run.warmup_requests=3",
                       "tracking.enabled=false", f"hydra.run.dir={tmp_path}")
        assert done.returncode == 0, done.stderr
        sent = len(srv.requests)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["warmup"]["requests"] == 3 and s["n"] == 4  # 3 of the 2 x 4 warm-up requests, then the 4 measured
    assert sent == 3 + 4
