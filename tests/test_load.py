"""Load profiles against a scripted OpenAI-compatible server on 127.0.0.1 that serves requests
in parallel with known delays: closed loop (run.concurrency), open loop (run.rate, Poisson
arrivals), goodput against SLOs, and the faults (an unsustainable rate, an endpoint dying)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

from runner.measure import arrivals as load

# Offered rates, lateness and goodput against known delays: `serial` (make test's second pass,
# nothing beside them). The schedule's arithmetic and the rerun's counts check no measured time
# and run in the first pass.
serial = pytest.mark.serial

OPENAI = ["backend=openai", "model.id=scripted-model", "prompts=rag-basics", "run.warmup=0",
          "tracking.enabled=false"]


def _summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def _records(job: Path) -> list[dict]:
    return [json.loads(x) for x in (job / "requests.jsonl").read_text().splitlines() if x.strip()]


@serial
def test_concurrency_sweep_gives_a_throughput_latency_curve(tmp_path):
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.1, tpot_s=0.005, tokens=10)) as srv:
        done = run_cli("run", "-m", *OPENAI, f"backend.base_url={srv.base_url}", "run.rounds=3",
                       "run.concurrency=1,2,4", f"hydra.sweep.dir={sweep}", plots=True)
    assert done.returncode == 0, done.stderr
    by_c = {}
    for job in sweep.glob("*/summary.json"):
        s = json.loads(job.read_text())
        by_c[s["throughput"]["concurrency"]] = s
    assert sorted(by_c) == [1, 2, 4]
    tps = {c: s["throughput"]["output_tps"] for c, s in by_c.items()}
    assert tps[4] >= 3 * tps[1], tps  # the server serves in parallel: the client must keep up
    assert by_c[4]["load"] == {"profile": "concurrency", "concurrency": 4}
    report = (sweep / "report.md").read_text()
    assert "## Throughput against latency" in report and "throughput_latency.png" in report
    assert (sweep / "throughput_latency.png").stat().st_size > 10_000
    curve = [line for line in report.splitlines() if "| c=" in line]
    assert [line.split("|")[2].strip() for line in curve] == ["c=1", "c=2", "c=4"]
    assert "Jobs at once on one host: up to 1" in report  # the basic launcher runs one at a time


def test_schedule_is_poisson_at_the_asked_rate():
    arrivals = load.schedule(rate=40, requests=400, duration_s=None, warmup_s=1, cooldown_s=1, seed=3)
    measured = [a.offset_s for a in arrivals if a.phase == load.MEASURED]
    gaps = np.diff(measured)
    assert len(measured) == 400 and abs(399 / (measured[-1] - measured[0]) - 40) < 1e-6
    assert 0.85 < gaps.std() / gaps.mean() < 1.15  # exponential gaps: coefficient of variation 1
    assert [a.phase for a in arrivals][0] == load.WARMUP and arrivals[-1].phase == load.COOLDOWN
    assert all(a.offset_s < 1 for a in arrivals if a.phase == load.WARMUP)
    smooth = load.schedule(rate=40, requests=400, duration_s=None, burstiness=25, seed=3)
    assert np.diff([a.offset_s for a in smooth]).std() < 0.3 * gaps.std()  # burstiness shapes the gaps
    timed = load.schedule(rate=40, requests=None, duration_s=5, seed=3)
    assert 160 <= len(timed) <= 240 and timed[-1].offset_s < 5


@serial
def test_open_loop_holds_its_mean_rate_at_the_server(tmp_path):
    job = tmp_path / "job"
    with ScriptedServer(Script(ttft_s=0.03, tpot_s=0.002, tokens=10)) as srv:
        done = run_cli("run", *OPENAI, f"backend.base_url={srv.base_url}", "run.rate=40", "run.requests=200",
                       f"hydra.run.dir={job}")
        arrivals = np.sort(np.asarray(srv.arrivals))
    assert done.returncode == 0, done.stderr
    assert len(arrivals) == 200
    served_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(served_rate - 40) / 40 < 0.10, served_rate
    gaps = np.diff(arrivals)
    assert 0.8 < gaps.std() / gaps.mean() < 1.2  # Poisson, not evenly spaced
    s = _summary(job)
    ld = s["load"]
    assert ld["profile"] == "rate" and ld["measured"] == 200 and ld["dropped"] == 0
    assert abs(ld["arrival_rate"] - 40) / 40 < 0.10 and ld["late"] <= 10  # 10 ms late: at most 5%
    assert s["n"] == 200 and s["throughput"]["requests_per_s"] > 30
    recs = _records(job)
    assert len({(r["round"], r["prompt_id"]) for r in recs}) == 200 and all("lag_s" in r for r in recs)
    assert "open loop, 40 req/s, Poisson arrivals" in (job / "report.md").read_text()


@serial
def test_goodput_counts_the_requests_that_met_the_slos(tmp_path):
    # arrival order alternates fast (20 ms) and slow (300 ms) first tokens: 4 of 8 meet TTFT <= 150 ms
    with ScriptedServer(Script(ttft_s=0.02, tpot_s=0.005, tokens=10, ttft_cycle=(0.02, 0.3))) as srv:
        runs = {}
        for name, slo in (("ttft", []), ("tight", ["run.slo.tpot_s=0.001"]), ("e2e", ["++run.slo.e2e_s=0.2"])):
            job = tmp_path / name
            done = run_cli("run", *OPENAI, f"backend.base_url={srv.base_url}", "run.rounds=2",
                           "run.slo.ttft_s=0.15", *slo, f"hydra.run.dir={job}")
            assert done.returncode == 0, done.stderr
            runs[name] = _summary(job)["goodput"]
    fast = sum(1 for r in _records(tmp_path / "ttft") if r["ttft_s"] < 0.15)
    assert fast == 4
    assert runs["ttft"]["good"] == 4 and runs["ttft"]["attempted"] == 8 and runs["ttft"]["fraction"] == 0.5
    assert runs["ttft"]["slo"] == {"ttft_s": 0.15, "tpot_s": 0.05}
    assert runs["tight"]["good"] == 0  # every TPOT is ~5 ms > 1 ms
    assert runs["e2e"]["good"] == 4  # fast ones end at ~65 ms, slow at ~345 ms
    assert "Goodput: **4 of 8**" in (tmp_path / "ttft" / "report.md").read_text()


@serial
def test_unsustainable_rate_drops_requests_and_ends(tmp_path):
    job = tmp_path / "job"
    t0 = time.monotonic()
    with ScriptedServer(Script(ttft_s=1.0, tpot_s=0.01, tokens=5)) as srv:
        done = run_cli("run", *OPENAI, f"backend.base_url={srv.base_url}", "run.rate=200", "run.requests=200",
                       "run.max_in_flight=8", f"hydra.run.dir={job}")
    assert time.monotonic() - t0 < 60
    assert done.returncode == 0, done.stderr  # some were served: a partial result, not a failure
    s = _summary(job)
    ld = s["load"]
    assert ld["dropped"] >= 150 and ld["in_flight_peak"] == 8 and s["partial"] is True
    assert s["n"] + ld["dropped"] == 200 and s["goodput"]["attempted"] == 200
    assert any(e.startswith("dropped:") for e in s["errors"])
    assert f"**{ld['dropped']} dropped**" in (job / "report.md").read_text()


def _stop_after(srv: ScriptedServer, n: int) -> None:
    """The endpoint dies once it has received n requests: mid-window, however slow start-up is."""
    deadline = time.monotonic() + 120
    while len(srv.requests) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.stop()


@serial
def test_endpoint_dying_mid_load_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    with ScriptedServer(Script(ttft_s=0.02, tpot_s=0.002, tokens=5)) as dying, \
            ScriptedServer(Script(ttft_s=0.02, tpot_s=0.002, tokens=5)) as live:
        threading.Thread(target=_stop_after, args=(dying, 30), daemon=True).start()
        t0 = time.monotonic()
        done = run_cli("run", "-m", *OPENAI, f"backend.base_url={dying.base_url},{live.base_url}",
                       "run.rate=40", "run.requests=100", "backend.timeout_s=5", f"hydra.sweep.dir={sweep}")
    assert time.monotonic() - t0 < 90
    assert done.returncode == 0, done.stderr
    first, second = (_summary(p.parent) for p in sorted(sweep.glob("*/summary.json")))
    assert 30 <= first["n"] < 40 and first["n"] + first["n_errors"] == 100, first["errors"]
    assert any("unreachable" in e or "connect" in e.lower() for e in first["errors"]), first["errors"]
    assert second["status"] == "ok" and second["n"] == 100


@serial
def test_foundry_in_process_serves_concurrent_requests(tmp_path, pack_home):
    """The real runtime under a closed loop: two requests in flight overlap and finish faster
    together than one after the other (2 cores: one generation per core)."""
    sweep = tmp_path / "sweep"
    done = run_cli("run", "-m", "model=smollm2-135m-int4", "prompts=rag-basics", "run.rounds=2",
                   "decoding.max_tokens=32", "run.concurrency=1,2", "tracking.enabled=false",
                   f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr
    jobs = {json.loads(p.read_text())["throughput"]["concurrency"]: p.parent for p in sweep.glob("*/summary.json")}
    recs = _records(jobs[2])
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    spans = sorted((r["t_start_s"], r["t_start_s"] + r["e2e_s"]) for r in recs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))  # requests overlapped
    rps = {c: _summary(j)["throughput"]["requests_per_s"] for c, j in jobs.items()}
    assert rps[2] > 1.1 * rps[1], rps


def test_open_loop_rerun_reuses_a_finished_window_and_remeasures_a_changed_one(tmp_path):
    job = tmp_path / "job"
    args = [*OPENAI, "run.requests=12", f"hydra.run.dir={job}"]
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.002, tokens=5)) as srv:
        first = run_cli("run", *args, f"backend.base_url={srv.base_url}", "run.rate=40")
        assert first.returncode == 0, first.stderr
        served = len(srv.requests)
        again = run_cli("run", *args, f"backend.base_url={srv.base_url}", "run.rate=40")
        assert again.returncode == 0, again.stderr
        assert len(srv.requests) == served  # the finished window was kept, nothing re-sent
        assert _summary(job)["skipped_done"] == 12 and _summary(job)["load"]["rate"] == 40
        changed = run_cli("run", *args, f"backend.base_url={srv.base_url}", "run.rate=80")
        assert changed.returncode == 0, changed.stderr
        assert len(srv.requests) == served + 12  # another load: measured again, whole
    s = _summary(job)
    assert s["load"]["rate"] == 80 and s["n"] == 12 and s["skipped_done"] == 0
    assert len(_records(job)) == 12
    kept = (job / "requests.interrupted.jsonl").read_text().splitlines()
    assert len(kept) == 12  # the first window's records, set aside rather than mixed in
