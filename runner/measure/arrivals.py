"""Open-loop load: each request is sent at its scheduled time, whether or not earlier ones
have finished, as independent users would send them.

Closed loop (`run.concurrency=N`, in runner/measure/job.py) keeps N requests in flight, so it slows
down with the server and measures capacity. Open loop holds the offered rate (`run.rate`) and
shows what users see when the server falls behind: past saturation, queueing makes TTFT grow.

Schedule, in order: warm-up arrivals during `run.warmup_s`; the measured arrivals
(`run.requests` of them, or those within `run.duration_s`); cool-down arrivals during
`run.cooldown_s`. Gaps between arrivals are gamma distributed with shape `run.burstiness`
and mean 1/rate: shape 1 is a Poisson process (exponential gaps), < 1 burstier, > 1 smoother.
Only measured requests are recorded; the others keep the load steady at the window's edges.

Faults are counted, never hidden:
- dropped: an arrival finding `run.max_in_flight` requests in flight is not sent. A queue in
  the client would hide the server's backlog, and an unbounded pool would hang the run.
- late: sent more than LATE_S after its scheduled time (the generator itself fell behind).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from runner.metrics import stats

LATE_S = 0.010  # a send this far behind schedule is late (the generator, not the server, lagged)
WARMUP, MEASURED, COOLDOWN = "warmup", "measured", "cooldown"


@dataclass(frozen=True)
class Arrival:
    offset_s: float  # scheduled send time, seconds after the schedule's start
    phase: str  # warmup | measured | cooldown
    index: int  # position among the measured arrivals (-1 outside the window)
    seq: int  # position in the whole schedule


def schedule(rate: float, requests: int | None, duration_s: float | None, warmup_s: float = 0.0,
             cooldown_s: float = 0.0, burstiness: float = 1.0, seed: int = 0) -> list[Arrival]:
    """The arrival times; seeded, so a rerun replays the same schedule.

    With a count, the measured gaps are scaled to average exactly 1/rate, so the window offers
    the rate asked for; for a Poisson process this is the process conditioned on its count (a
    raw draw of 100 gaps misses its mean by 10% one time in three). Over a duration the count
    itself is random, as it is for real traffic."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / (rate * burstiness)

    def gaps(n: int) -> list[float]:
        return rng.gamma(burstiness, scale, n).tolist()

    out: list[Arrival] = []

    def add(t: float, phase: str, index: int = -1) -> None:
        out.append(Arrival(t, phase, index, len(out)))

    t = 0.0
    while t < warmup_s:
        add(t, WARMUP)
        t += gaps(1)[0]
    if requests is not None:
        inner = np.asarray(gaps(requests - 1))
        if requests > 1 and inner.sum() > 0:
            inner *= (requests - 1) / rate / inner.sum()
        for i, at in enumerate(np.concatenate([[0.0], np.cumsum(inner)]) + t):
            add(float(at), MEASURED, i)
        end = out[-1].offset_s
        t = end + gaps(1)[0]
    else:
        end = warmup_s + duration_s
        n = 0
        while t < end:
            add(t, MEASURED, n)
            n += 1
            t += gaps(1)[0]
    while t < end + cooldown_s:
        add(t, COOLDOWN)
        t += gaps(1)[0]
    return out


def run(arrivals: list[Arrival], fire: Callable[[Arrival, float], None],
        drop: Callable[[Arrival, int], None], max_in_flight: int, t0: float | None = None,
        halt: threading.Event | None = None) -> dict:
    """Send each arrival at `t0 + offset_s` on a thread of its own.

    `fire(arrival, due)` sends and records one request (`due` is its scheduled perf_counter
    time); `drop(arrival, in_flight)` records one not sent. Returns the generator's own facts.
    The call returns when every sent request has ended, which the backend's timeout bounds.
    Once `halt` is set, no further arrival is sent (or counted)."""
    slots = threading.BoundedSemaphore(max_in_flight)
    lock = threading.Lock()
    in_flight = peak = 0

    failures: list[BaseException] = []  # what `fire` could not record (its records cannot be written)

    def task(a: Arrival, due: float) -> None:
        nonlocal in_flight
        try:
            fire(a, due)
        except BaseException as exc:  # a thread's exception would vanish in its future
            failures.append(exc)
        finally:
            with lock:
                in_flight -= 1
            slots.release()

    dropped = 0
    t0 = time.perf_counter() if t0 is None else t0
    with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="load") as pool:
        for a in arrivals:
            if failures or (halt is not None and halt.is_set()):
                break  # no more load once a record could not be kept, or the window was stopped
            due = t0 + a.offset_s
            wait = due - time.perf_counter()
            if wait > 0 and halt is not None:
                if halt.wait(wait):
                    break
            elif wait > 0:
                time.sleep(wait)
            if not slots.acquire(blocking=False):
                dropped += 1
                drop(a, max_in_flight)
                continue
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            pool.submit(task, a, due)
        dispatched_s = time.perf_counter() - t0
    if failures:
        raise failures[0]
    return {"dispatch_s": dispatched_s, "wall_s": time.perf_counter() - t0, "dropped": dropped,
            "in_flight_peak": peak}


def summarize(measured: list[dict], facts: dict, cfg_run) -> dict:
    """The load section of summary.json, from the measured window's records.

    arrival_rate and lag_s as defined in runner/metrics/catalog.py: the rate actually offered, and how far
    the generator trailed its schedule."""
    sent = sorted(r["t_start_s"] for r in measured if r.get("t_start_s") is not None)
    lags = [r["lag_s"] for r in measured if r.get("lag_s") is not None]
    span = sent[-1] - sent[0] if len(sent) > 1 else 0.0
    lag = stats.summarize(lags) or {}
    return {
        "profile": "rate", "rate": cfg_run.rate, "burstiness": cfg_run.burstiness, "seed": cfg_run.seed,
        "warmup_s": cfg_run.warmup_s, "cooldown_s": cfg_run.cooldown_s, "max_in_flight": cfg_run.max_in_flight,
        "scheduled": facts["scheduled"], "measured": len(measured),
        "dropped": sum(r["status"] == "dropped" for r in measured),
        "late": sum(1 for x in lags if x > LATE_S), "late_threshold_s": LATE_S,
        "lag_s": {k: lag.get(k) for k in ("p50", "p99", "max")},
        "arrival_rate": (len(sent) - 1) / span if span > 0 else None,
        "in_flight_peak": facts["in_flight_peak"],
    }
