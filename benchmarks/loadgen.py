"""The load generator's own ceiling: how many requests/s it can offer on this machine, so a
load test can tell the endpoint's limit from the generator's.

Three measurements, one run, printed as figures and ratios:

a) Dispatch alone: `runner.measure.arrivals.run` with a `fire` that returns at once, at 20,000 req/s
   Poisson (20,000 arrivals). Achieved = arrivals / dispatch wall time, req/s; lag = t(fire
   called) - t(scheduled), ms (p50, p99); late = share of sends > 10 ms behind schedule.
b) The whole client path, open loop, through `OpenAIBackend.chat` (its lean httpx2 streaming
   path, `request_metrics`) against tests/scripted_server.py on 127.0.0.1 answering
   1 token at once, at rising offered rates: achieved send rate, lag p99, late, dropped,
   completed req/s. Both client and server share the 2 cores here, so this is a floor on the
   client's ceiling, not the ceiling.
c) Client CPU per request: process CPU time of the client (user + sys, the server runs in
   another process) / completed requests, ms; cores / that = the client's CPU-bound ceiling.

Targets for comparison: a local SLM on CPU serves ~1-10 req/s; a mid-size LLM on one GPU
server tens of req/s.

Run: .venv/bin/python benchmarks/loadgen.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends import BackendError, GenParams  # noqa: E402
from runner.backends.openai_compat import OpenAIBackend  # noqa: E402
from runner.measure import arrivals as load  # noqa: E402
from runner.metrics.request import request_metrics  # noqa: E402


def pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


def dispatch_alone(rate: float, n: int) -> None:
    lags: list[float] = []
    lock = threading.Lock()

    def fire(a, due):
        lag = time.perf_counter() - due
        with lock:
            lags.append(lag)

    arrivals = load.schedule(rate, n, None, seed=1)
    gen = load.run(arrivals, fire, lambda a, k: None, max_in_flight=64)
    late = sum(x > load.LATE_S for x in lags) / len(lags)
    print(f"a) dispatch alone: offered {rate:,.0f} req/s x {n:,}: achieved {n / gen['dispatch_s']:,.0f} req/s, "
          f"lag p50 {pct(lags, 50) * 1e3:.2f} ms, p99 {pct(lags, 99) * 1e3:.2f} ms, late {late:.1%}, "
          f"dropped {gen['dropped']}")


def start_server() -> tuple[subprocess.Popen, str]:
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "scripted_server.py"), "--port", str(port),
                             "--ttft", "0", "--tpot", "0", "--tokens", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            OpenAIBackend("scripted-model", url, timeout_s=5).load()
            return proc, url
        except BackendError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("scripted server did not start")


def client_path(url: str, rate: float, seconds: float) -> None:
    backend = OpenAIBackend("scripted-model", url, timeout_s=10)
    params = GenParams(max_tokens=1, temperature=0.0)
    messages = [{"role": "user", "content": "hi"}]
    lags, ok, errors = [], [0], [0]
    lock = threading.Lock()

    def fire(a, due):
        lag = time.perf_counter() - due
        try:
            request_metrics(backend.chat(messages, params))
            done = ok
        except BackendError:
            done = errors
        with lock:
            lags.append(lag)
            done[0] += 1

    arrivals = load.schedule(rate, int(rate * seconds), None, seed=1)
    cpu0, t0 = os.times(), time.perf_counter()
    gen = load.run(arrivals, fire, lambda a, k: None, max_in_flight=64)
    wall, cpu1 = time.perf_counter() - t0, os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    late = sum(x > load.LATE_S for x in lags) / max(1, len(lags))
    # os.times() counts in clock ticks (10 ms): a short step may show no CPU time at all
    per_req = cpu / ok[0] * 1e3 if ok[0] and cpu > 0 else None
    cost = (f"c) client CPU {per_req:.2f} ms/request -> {os.cpu_count() * 1e3 / per_req:,.0f} req/s CPU-bound "
            f"ceiling on {os.cpu_count()} cores") if per_req else \
        "c) client CPU below the 10 ms clock tick in this step: run longer (--seconds) to measure it"
    print(f"b) client path at {rate:>5.0f} req/s offered: sent {len(lags) / gen['dispatch_s']:6.1f} req/s, "
          f"completed {ok[0] / wall:6.1f} req/s, errors {errors[0]}, dropped {gen['dropped']}, lag p99 "
          f"{pct(lags, 99) * 1e3:6.2f} ms, late {late:5.1%} | {cost}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each client-path step")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    dispatch_alone(20_000, 20_000)
    proc, url = start_server()
    try:
        for rate in (25, 50, 100, 200, 400):
            client_path(url, rate, args.seconds)
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
