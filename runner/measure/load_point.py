"""The capacity search's load points, measured inside the job (runner/measure/job.py).

Each point is a measured window like a job's own: a closed loop at concurrency c over whole
rounds of the prompt set (at least MIN_PER_CLIENT requests per request in flight, so the window
holds the steady state and not only the first wave), or an open loop at rate r (run.requests or
run.duration_s of arrivals, with run.warmup_s and run.cooldown_s of unrecorded load around them,
dropped and late counted). It is stopped early by runner/measure/saturation.py. Its records are
appended to requests.jsonl as they end, with `load_point` (the point's index) and `load` (its
concurrency or rate), their rounds numbered on from the previous point's, so every
(round, prompt_id) of the job stays unique and grades join as for any job.

Resume: capacity.json holds every point measured so far. A rerun with the same settings
(run.search but its budget_s and max_points, run.slo, the open-loop settings) replays the search
over the points it keeps, measuring none of them again, and measures from the first point it
needs and does not have; the records of any other point (one left unfinished) are moved to
requests.interrupted.jsonl first.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from runner.config.prompts import Prompt
from runner.measure import arrivals, capacity, closed_loop, open_loop
from runner.measure.capacity import CLOSED, CONCURRENCY, OPEN, Point
from runner.measure.saturation import Monitor
from runner.measure.sender import Sender
from runner.metrics.slo import missed_objectives, slo_bounds
from runner.metrics.stats import summarize
from runner.store import jobdir
from runner.store.facts import Facts

MIN_PER_CLIENT = 4  # a closed-loop point sends at least this many requests per request in flight
BUDGET = "budget: run.search.budget_s ran out before the window ended"
POINT_FIELDS = tuple(f.name for f in fields(Point))


def settings(run) -> dict:
    """What a kept point's figures and the search's path depend on beyond the config hash (which
    leaves out `run`). The budget and the number of points only say how far the search goes."""
    search = run.search.as_dict()
    return {"search": {k: v for k, v in search.items() if k not in ("budget_s", "max_points")},
            "slo": dict(run.slo),
            **{k: v for k, v in open_loop.load_settings(run).items() if k != "rate"}}


def pending(job_dir: Path, facts: Facts, run) -> list[dict] | None:
    """The points a rerun keeps ([] for a new search), or None when they already make the whole
    search: then nothing is measured and `facts` get the answer from them."""
    saved = _read(job_dir)
    kept = saved["points"] if saved and saved.get("settings") == settings(run) else []
    kept = kept[:next((i for i, e in enumerate(kept) if e["passed"] is None), len(kept))]  # a cut point is redone
    used: list[dict] = []

    def replay(load: float, loop: str, seconds_left: float) -> Point:
        if len(used) < len(kept) and _same(kept[len(used)], load, loop):
            used.append(kept[len(used)])
            return _point(used[-1])
        raise _Unkept

    try:
        found = _search(replay, run)
    except _Unkept:
        found = None
    _set_aside(job_dir, {e["index"] for e in used})
    facts.skipped_done = sum(e["attempted"] for e in used)
    if found is not None:
        facts.update(answer(found, used))
        return None
    _write(job_dir, run, used)
    return used


def run_search(sender: Sender, prompts: tuple[Prompt, ...], run, job_dir: Path, kept: list[dict]) -> dict:
    """The search (runner/measure/capacity.py) over points measured here, the kept ones replayed;
    returns the facts of the answer (`answer`)."""
    used: list[dict] = []

    def measure(load: float, loop: str, seconds_left: float) -> Point:
        k = len(used)
        if k < len(kept) and _same(kept[k], load, loop):
            entry = kept[k]
        else:
            entry = measure_point(sender, prompts, run, k, load, loop, sum(e["rounds"] for e in used), seconds_left)
        used.append(entry)
        _write(job_dir, run, used)
        return _point(entry)

    return answer(_search(measure, run), used)


def answer(found: capacity.Found, used: list[dict]) -> dict:
    """The facts a capacity job hands its summary: the answer, and the window of the point its
    figures describe (the passing point; without one, the first point)."""
    loop = CLOSED if found.over == CONCURRENCY else OPEN
    at = next((i for i, e in enumerate(used) if e["loop"] == loop and e["load"] == found.passing), 0)
    e = used[at]
    return {"capacity": found.to_dict(), "reported_point": at, "window": e["window"], "window_s": e["window_s"],
            "expected": e["expected"], "rounds": e["rounds"], "load": e["load_facts"], "generator": e["generator"]}


def measure_point(sender: Sender, prompts: tuple[Prompt, ...], run, index: int, load: float, loop: str,
                  first_round: int, seconds_left: float) -> dict:
    """One point's window, stopped early by its monitor or by the budget; its Point and window facts."""
    if loop == CLOSED:
        c = int(load)
        rounds = max(run.rounds, math.ceil(MIN_PER_CLIENT * c / len(prompts)))
        expected = rounds * len(prompts)
    else:
        expected = sum(a.phase == arrivals.MEASURED for a in open_loop.schedule(run, load, len(prompts)))
        rounds = math.ceil(expected / len(prompts))
    bounds = slo_bounds(run.slo)
    monitor = Monitor(bounds, run.search.goodput, expected)
    stop, out_of_budget = threading.Event(), threading.Event()

    def budget_spent() -> None:
        out_of_budget.set()
        stop.set()

    tagged = _Tagged(sender.writer, index, load, first_round, monitor, stop)
    point = replace(sender, writer=tagged)
    progress = sender.progress
    progress.label, progress.done, progress.total = f"{sender.label} {run.search.over} point {load:g}", 0, expected
    timer = threading.Timer(max(0.0, seconds_left), budget_spent)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        if loop == CLOSED:
            todo = [(r, p) for r in range(rounds) for p in prompts]
            window = closed_loop.measure(point, todo, c, t0, stop)
            window_s = time.perf_counter() - t0
            load_facts = {"profile": "concurrency" if c > 1 else "sequential", "concurrency": c}
            generator = None
        else:
            got = open_loop.measure(point, prompts, replace(run, rate=load, concurrency=1), stop, tagged.watch)
            window, window_s, load_facts, generator = got["window"], got["window_s"], got["load"], got["generator"]
    finally:
        timer.cancel()
    wall_s = time.perf_counter() - t0
    recs = monitor.records
    ok = [r for r in recs if r["status"] == "ok"]
    good = sum(1 for r in ok if not missed_objectives(r, bounds))
    share = good / len(recs) if recs else None
    cut = out_of_budget.is_set() and len(recs) < expected and monitor.reason is None
    reason = monitor.reason or (BUDGET if cut else None)
    verdict = Point(load=load, loop=loop, passed=capacity.verdict(share, run.search.goodput, monitor.reason, cut),
                    goodput=share, p95={k: (summarize([r.get(k) for r in ok]) or {}).get("p95") for k in bounds},
                    stopped_early=reason is not None and len(recs) < expected, stop_reason=reason,
                    first_failed=monitor.first_failed, attempted=len(recs), expected=expected,
                    requests_per_s=len(ok) / window_s if ok and window_s else None, wall_s=wall_s)
    return {**asdict(verdict), "index": index, "first_round": first_round, "rounds": rounds, "window": window,
            "window_s": window_s, "load_facts": load_facts, "generator": generator}


class _Unkept(Exception):
    """The replayed search asks for a point the rerun does not keep: it must be measured."""


class _Tagged:
    """The record writer of one point: each record gets its point and its job-wide round, is
    appended, and is shown to the monitor, which may stop the window."""

    def __init__(self, writer, index: int, load: float, first_round: int, monitor: Monitor, stop: threading.Event):
        self.writer, self.index, self.load, self.first_round = writer, index, load, first_round
        self.monitor, self.stop = monitor, stop

    def append(self, record: dict) -> None:
        record.update(round=record["round"] + self.first_round, load_point=self.index, load=self.load)
        self.writer.append(record)
        if self.monitor.add(record):
            self.stop.set()

    def watch(self, t_start_s: float, ttft_s: float) -> None:
        if self.monitor.watch(t_start_s, ttft_s):
            self.stop.set()


def _search(measure: capacity.Measure, run) -> capacity.Found:
    s = run.search
    max_load = s.max_load if s.max_load is not None else (run.max_in_flight if s.over == CONCURRENCY else None)
    return capacity.search(measure, s.over, s.goodput, s.max_points, s.budget_s, s.tolerance, max_load)


def _point(entry: dict) -> Point:
    return Point(**{k: entry[k] for k in POINT_FIELDS})


def _same(entry: dict, load: float, loop: str) -> bool:
    return entry["loop"] == loop and entry["load"] == load


def _read(job_dir: Path) -> dict | None:
    try:
        return json.loads((job_dir / jobdir.CAPACITY).read_text())
    except (OSError, ValueError):
        return None


def _write(job_dir: Path, run, points: list[dict]) -> None:
    jobdir.write_whole(job_dir / jobdir.CAPACITY, json.dumps({"settings": settings(run), "points": points}, indent=2))


def _set_aside(job_dir: Path, kept: set[int]) -> None:
    """Records of points not kept go to requests.interrupted.jsonl (a torn last line is dropped)."""
    path = job_dir / jobdir.REQUESTS
    if not path.exists():
        return
    keep, other = [], []
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        try:
            point = json.loads(line).get("load_point")
        except ValueError:
            continue
        (keep if point in kept else other).append(line)
    if not other:
        return
    with (job_dir / jobdir.INTERRUPTED).open("a") as fh:
        fh.write("".join(other))
    jobdir.write_whole(path, "".join(keep))
