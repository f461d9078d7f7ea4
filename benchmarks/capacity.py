"""Does the capacity search (`run.search=capacity`, runner/measure/capacity.py) find a known
capacity, in how many points and how long, and how early does it stop over-saturated points?

The endpoint: tests/scripted_server.py with `--serial` on 127.0.0.1, in a process of its own. It
serves one request at a time, first come first served, each for a fixed service time
S = ttft + (tokens - 1) x tpot (first token `ttft` = 20 ms into it, 11 tokens). Its capacity under a
TTFT objective is known in closed form:

a) Closed loop at concurrency c: in steady state each request waits for the c - 1 ahead of it,
   so its TTFT is (c - 1) x S + ttft (the first wave waits 0, S, ..., (c - 1) x S: no more). With
   the objective TTFT <= ttft + (C - 1/2) x S, concurrency C passes and C + 1 fails: the true
   capacity is C exactly (--concurrency).
b) Open loop at rate r, with near-even arrivals (run.burstiness=100: gamma gaps of coefficient
   of variation c_a = 0.1) and the objective TTFT <= ttft + S/2 (waiting at most half a service):
   above 1/S the queue grows by S - 1/r per request and every later request misses; below it the
   wait is Kingman's G/D/1 heavy-traffic mean W = rho / (1 - rho) x (c_a^2 + 0) / 2 x S (rho = r x S),
   exponentially distributed, so its p95 is ~3 W, and p95 <= S/2 holds while
   rho / (1 - rho) <= 1 / (3 x 0.005 x 2) = 33.3, i.e. rho <= 0.971. The true capacity is
   0.971 / S (the server's ceiling 1/S is 3% above it); the search must land within 10%.

Each search runs in process through `runner.measure.job.run_job` (the job's own path: warm-up,
load points, records), the config composed by Hydra as `slmbench run` composes it, with
`run.search=capacity`, prompts=smoke, no warm-up passes. Printed per loop: the true and the found
capacity, the points (load, goodput, TTFT p95, verdict, how each stopped), the measuring time
and the wall time, and for every point stopped early the requests it ran of those it held, and
its time against the time its whole window needs on this server at the least (its requests x S,
or the schedule's length if longer): how early it was stopped.

Run: .venv/bin/python benchmarks/capacity.py [--service-ms 60] [--concurrency 4] [--requests 40]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.measure import arrivals  # noqa: E402

TTFT_S, TOKENS = 0.020, 11
KINGMAN_RHO = 0.971  # rho with rho / (1 - rho) x 0.005 x 3 = 0.5 (see the docstring)


def start_server(service_s: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tpot = (service_s - TTFT_S) / (TOKENS - 1)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "scripted_server.py"), "--serial", "--port",
                             str(port), "--ttft", str(TTFT_S), "--tpot", str(tpot), "--tokens", str(TOKENS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the scripted server did not start")


def run_search(url: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from runner.config import paths, plan, schema
    from runner.config.resolvers import register_resolvers
    from runner.config.selection import hydra_overrides
    from runner.measure.job import run_job
    from runner.validate import validate

    schema.register()
    register_resolvers()
    args = ["backend=openai", "model.id=scripted-model", f"backend.base_url={url}", "prompts=smoke", "run.warmup=0",
            "run.progress=false", "run.search=capacity", "run.slo.tpot_s=null", *overrides]
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        job = plan.build(compose("config", hydra_overrides(args)))
    validate(job)
    with tempfile.TemporaryDirectory(prefix="slmbench-capacity-") as job_dir:
        t0 = time.perf_counter()
        facts = run_job(job, Path(job_dir))
        wall = time.perf_counter() - t0
    if facts.error:
        raise SystemExit(f"the search failed: {facts.error}")
    return job, facts.capacity, wall


def floor_s(cfg, point: dict, service_s: float) -> float:
    """The least time the point's whole window takes on a one-at-a-time server."""
    if point["loop"] == "closed":
        return point["expected"] * service_s
    run = cfg.run
    planned = arrivals.schedule(point["load"], run.requests, None, run.warmup_s, run.cooldown_s, run.burstiness,
                                run.seed)
    return max(planned[-1].offset_s + service_s, len(planned) * service_s)


def report(title: str, cfg, cap: dict, wall: float, truth: str, verdict: str, service_s: float) -> None:
    pts = cap["points"]
    measuring = sum(p["wall_s"] for p in pts)
    print(title)
    print(f"  true capacity: {truth}")
    print(f"  found: passing {cap['passing']}, failing {cap['failing']} (first failed: {cap['first_failed']}) -> "
          f"{verdict}")
    print(f"  {len(pts)} points, {measuring:.1f} s of measuring, {wall:.1f} s wall (load, connect, write records)")
    for p in pts:
        load = ("1 at a time" if cfg.run.search.over == "rate" else f"c={p['load']:g}") if p["loop"] == "closed" \
            else f"r={p['load']:g}"
        p95, share = p["p95"].get("ttft_s"), p["goodput"]
        print(f"    {load:>12}: goodput {'-' if share is None else f'{share:.0%}'}, ttft_s.p95 "
              f"{'-' if p95 is None else f'{p95 * 1e3:.1f}'} ms, "
              f"{'pass' if p['passed'] else 'FAIL' if p['passed'] is False else 'cut'}, {p['attempted']}/"
              f"{p['expected']} requests, {p['wall_s']:.2f} s")
    stopped = [p for p in pts if p["stopped_early"]]
    if not stopped:
        print("  stopped early: none")
    for p in stopped:
        whole = floor_s(cfg, p, service_s)
        print(f"  stopped early at {p['load']:g}: after {p['attempted']} of {p['expected']} requests, {p['wall_s']:.2f} s "
              f"against >= {whole:.2f} s for the whole window ({p['wall_s'] / whole:.0%} of it): {p['stop_reason']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--service-ms", type=float, default=60.0, help="service time S per request, ms (> 20)")
    ap.add_argument("--concurrency", type=int, default=4, help="the closed loop's true capacity C (>= 1)")
    ap.add_argument("--requests", type=int, default=40, help="measured requests per open-loop point")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="unrecorded load before each open-loop window, s")
    ap.add_argument("--budget-s", type=float, default=120.0, help="run.search.budget_s of each search")
    args = ap.parse_args()
    service_s = args.service_ms / 1000
    if service_s <= TTFT_S or args.concurrency < 1:
        ap.error("--service-ms must be > 20 and --concurrency >= 1")
    print(f"capacity search against tests/scripted_server.py --serial on 127.0.0.1: one request at a time, "
          f"S = {service_s * 1e3:g} ms (first token {TTFT_S * 1e3:g} ms in, {TOKENS} tokens); {os.cpu_count()} cores")
    proc, url = start_server(service_s)
    try:
        bound = TTFT_S + (args.concurrency - 0.5) * service_s
        cfg, cap, wall = run_search(url, [f"run.slo.ttft_s={bound:.6f}", f"run.search.budget_s={args.budget_s}"])
        exact = cap["passing"] == args.concurrency and cap["failing"] == args.concurrency + 1
        report(f"a) closed loop, objective ttft_s <= {bound * 1e3:.1f} ms = ttft + (C - 1/2) x S", cfg, cap, wall,
               f"C = {args.concurrency} requests in flight ((c - 1) x S + ttft <= the objective)",
               f"exact: {'yes' if exact else 'NO'}", service_s)
        bound = TTFT_S + service_s / 2
        cfg, cap, wall = run_search(url, [f"run.slo.ttft_s={bound:.6f}", f"run.search.budget_s={args.budget_s}",
                                          "run.search.over=rate", f"run.requests={args.requests}",
                                          f"run.warmup_s={args.warmup_s}", "run.burstiness=100"])
        truth = KINGMAN_RHO / service_s
        off = (cap["passing"] - truth) / truth if cap["passing"] else None
        report(f"b) open loop, burstiness 100, objective ttft_s <= {bound * 1e3:.1f} ms = ttft + S/2", cfg, cap, wall,
               f"{KINGMAN_RHO} / S = {truth:.2f} req/s (Kingman; the server's ceiling 1/S = {1 / service_s:.2f})",
               "no load passed" if off is None else f"{off:+.1%} from the true capacity: "
               f"{'within' if abs(off) <= 0.10 else 'NOT within'} 10%", service_s)
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
