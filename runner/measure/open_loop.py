"""The open loop (`run.rate`): requests sent at their scheduled arrival times (runner/measure/
arrivals.py), whether or not earlier ones have finished; a window is measured whole or not at all."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runner.backends import BackendError
from runner.config.prompts import Prompt
from runner.measure import arrivals, closed_loop
from runner.measure.sender import Sender
from runner.store import jobdir
from runner.store.facts import Facts
from runner.store.jobdir import OPEN_LOOP

LOAD_KEYS = ("rate", "requests", "duration_s", "warmup_s", "cooldown_s", "burstiness", "seed", "max_in_flight")


def load_settings(run) -> dict:
    """What an open-loop window's figures depend on beyond the config hash (which leaves out `run`)."""
    return {k: getattr(run, k) for k in LOAD_KEYS} | {"rounds": run.rounds}


def pending(job_dir: Path, facts: Facts, run) -> list:
    """An open-loop window is measured whole or not at all: a partial one would not hold the
    offered rate. A completed window with the same load settings is reused; otherwise the old
    records are set aside (appended to requests.interrupted.jsonl) and the window is rerun."""
    done = job_dir / OPEN_LOOP
    if done.exists():
        kept = json.loads(done.read_text())
        if kept.get("settings") == load_settings(run):
            facts.update(kept)
            facts.skipped_done = kept["expected"]
            return []
        done.unlink()
    old = job_dir / jobdir.REQUESTS
    if old.exists():
        with (job_dir / jobdir.INTERRUPTED).open("a") as fh:
            fh.write(old.read_text())
        old.unlink()
    facts.skipped_done = 0
    return ["window"]


def schedule(run, rate: float, n_prompts: int) -> list[arrivals.Arrival]:
    """The arrivals of a window at `rate` under `run`'s open-loop settings: run.requests (default
    run.rounds x the prompts) or run.duration_s of measured arrivals, with warm-up and cool-down."""
    count = None if run.duration_s else (run.requests or run.rounds * n_prompts)
    return arrivals.schedule(rate, count, run.duration_s, run.warmup_s, run.cooldown_s, run.burstiness, run.seed)


def measure(sender: Sender, prompts: tuple[Prompt, ...], run, halt: threading.Event | None = None,
            observe: Callable[[float, float], None] | None = None) -> dict:
    """Requests at `run.rate`, at their scheduled times (runner/measure/arrivals.py); measured ones
    recorded as they end. For a capacity search's point: once `halt` is set nothing more is sent,
    and `observe(t_start_s, ttft_s)` sees each warm-up and cool-down request that ends (never
    recorded)."""
    planned = schedule(run, run.rate, len(prompts))
    measured = [a for a in planned if a.phase == arrivals.MEASURED]
    sender.progress.total = len(measured)
    done: list[dict] = []
    lock = threading.Lock()

    def prompt_of(a: arrivals.Arrival) -> tuple[int, Prompt]:
        """Measured arrivals walk the prompt set round by round; the others cycle through it."""
        if a.phase != arrivals.MEASURED:
            return -1, prompts[a.seq % len(prompts)]
        return a.index // len(prompts), prompts[a.index % len(prompts)]

    def fire(a: arrivals.Arrival, due: float) -> None:
        rnd, prompt = prompt_of(a)
        t_call = time.perf_counter()
        try:
            c, metrics = sender.chat(prompt)
        except Exception as exc:  # a thread's exception would vanish in its future: record it
            if a.phase != arrivals.MEASURED:
                return
            error = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
            record = {**sender.base(prompt, rnd), "status": "error", "error": error, "output": None,
                      "t_start_s": t_call - t0}
        else:
            if a.phase != arrivals.MEASURED:
                if observe is not None and metrics["ttft_s"] is not None:
                    observe(c.t_sent - t0, metrics["ttft_s"])
                return
            record = {**sender.base(prompt, rnd), "status": "ok", "error": None, **metrics, "output": c.text,
                      "t_start_s": c.t_sent - t0, "t_start_unix": wall + c.t_sent}
        record.update(scheduled_s=a.offset_s, lag_s=t_call - due)
        _keep(record)

    def drop(a: arrivals.Arrival, in_flight: int) -> None:
        if a.phase == arrivals.MEASURED:
            rnd, prompt = prompt_of(a)
            _keep({**sender.base(prompt, rnd), "status": "dropped", "output": None,
                   "t_start_s": None, "scheduled_s": a.offset_s, "lag_s": None,
                   "error": f"dropped: {in_flight} requests in flight at its arrival (run.max_in_flight)"})

    def _keep(record: dict) -> None:
        sender.keep(record)
        with lock:
            done.append(record)

    t0 = time.perf_counter()  # the origin of scheduled_s and t_start_s
    wall = time.time() - time.perf_counter()  # the monotonic clock's offset to wall time: traces need dates
    gen = arrivals.run(planned, fire, drop, run.max_in_flight, t0, halt)
    sent = [r["t_start_s"] for r in done if r["t_start_s"] is not None]
    ends = [r["t_start_s"] + r["e2e_s"] for r in done if r["status"] == "ok"]
    gen_facts = {"scheduled": len(planned), "dropped": gen["dropped"], "in_flight_peak": gen["in_flight_peak"],
                 "dispatch_s": gen["dispatch_s"], "wall_s": gen["wall_s"]}
    return {"window": closed_loop.window_counts(done), "window_s": (max(ends) - min(sent)) if ends else None,
            "expected": len(measured), "generator": gen_facts,
            "load": arrivals.summarize(done, gen_facts, run)}
