"""Capacity under SLO (`run.search=capacity`) and results as DataFrames (`runner.results.load`).

The search is checked on a fake measurement with a known threshold (found exactly over
concurrency, within the tolerance over rate, in a bounded number of points, within its budget),
the stop rules on synthetic windows, the settings through the validator (and once through the
real CLI), and the whole path once end to end: a real Hydra multirun against tests/scripted_server.py
serving one request at a time with a fixed service time S, whose closed-loop capacity under a
TTFT objective is known in closed form (each request waits (c - 1) x S), and whose sweep folder
`results.load` then reads."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from hydra import compose, initialize_config_dir
from scripted_server import Script, ScriptedServer

from runner import app, results
from runner.config import paths, plan, schema, selection
from runner.config.errors import UserError
from runner.decide import decision
from runner.decide.keys import resolve_key
from runner.measure import capacity, saturation
from runner.measure.capacity import CLOSED, OPEN, Point
from runner.measure.job import run_job
from runner.metrics import catalog
from runner.validate import validate

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

# The end-to-end tests find capacities and stop times against a server's known service time: they
# are `serial` (make test's second pass, nothing beside them). The search on a fake, the stop rules
# and the settings check no measured time and run in the first pass.
serial = pytest.mark.serial

# The serial endpoint: service time S per request, first token ttft_s into it.
TTFT, TPOT, TOKENS = 0.02, 0.008, 11
S = TTFT + (TOKENS - 1) * TPOT  # 0.1 s: 50 ms between the objective and the next load's wait
KNOWN_C = 3  # the objective below sits half a service time past (KNOWN_C - 1) x S of waiting
TTFT_BOUND = TTFT + (KNOWN_C - 1 + 0.5) * S
OPENAI = ["backend=openai", "model.id=scripted-model", "prompts=smoke", "run.warmup=0", "tracking.enabled=false"]
# 90%: one slow request of a point (a busy CI machine) is not yet a failure; a load past the
# capacity misses on every request after its first wave
SEARCH = [f"run.slo.ttft_s={TTFT_BOUND}", "run.slo.tpot_s=null", "run.search.goodput=0.9"]


# ---------------------------------------------------------------------------- the search on a fake


def fake(threshold: float, mu: float = 10.0, wall_s: float = 1.0, calls: list | None = None):
    """A measurement whose loads pass up to `threshold` (rates: offered rates; the first,
    one-at-a-time point serves mu requests/s)."""
    def measure(load: float, loop: str, seconds_left: float) -> Point:
        if calls is not None:
            calls.append((load, loop, seconds_left))
        # one at a time passes whenever any load does (over rate: a threshold below 1 req/s)
        passed = load <= (max(threshold, 1) if threshold > 0 else 0) if loop == CLOSED else load <= threshold
        return Point(load, loop, passed, goodput=1.0 if passed else 0.5, first_failed=None if passed else "ttft_s",
                     requests_per_s=mu if loop == CLOSED else load, wall_s=wall_s)
    return measure


@pytest.mark.parametrize("known", [1, 2, 3, 5, 8, 13, 100])
def test_the_search_finds_a_known_concurrency_exactly_in_bounded_points(known):
    calls = []
    found = capacity.search(fake(known, calls=calls), "concurrency", 0.95, max_points=20, budget_s=1e9)
    assert (found.passing, found.failing, found.first_failed) == (known, known + 1, "ttft_s")
    loads = [c[0] for c in calls]
    assert len(set(loads)) == len(loads)  # no load measured twice
    # doubling to the first failure, then bisection: at most 2 x ceil(log2(known + 1)) + 1 points
    assert len(loads) <= 2 * math.ceil(math.log2(known + 1)) + 1, loads
    assert found.to_dict().keys() == {"over", "passing", "failing", "first_failed", "goodput", "points"}


@pytest.mark.parametrize("true_rate", [0.7, 9.0, 10.0, 23.5, 200.0])
def test_the_search_over_rate_brackets_the_known_rate_within_the_tolerance(true_rate):
    calls = []
    found = capacity.search(fake(true_rate, mu=10.0, calls=calls), "rate", 0.95, max_points=20, budget_s=1e9,
                            tolerance=0.05)
    assert calls[0][:2] == (1, CLOSED)  # one request at a time first: the service rate mu
    assert all(loop == OPEN for _, loop, _ in calls[1:]) and calls[1][0] == 10.0  # then rates, from mu
    assert found.passing <= true_rate < found.failing
    assert found.failing / found.passing - 1 <= 0.05 + 0.01  # the tolerance, plus 3-digit rounding
    assert len(calls) <= 16


def test_the_search_stops_at_max_points_and_within_its_budget():
    calls = []
    found = capacity.search(fake(100, calls=calls), "concurrency", 0.95, max_points=3, budget_s=1e9)
    assert [c[0] for c in calls] == [1, 2, 4] and (found.passing, found.failing) == (4, None)
    calls = []
    capacity.search(fake(100, wall_s=10.0, calls=calls), "concurrency", 0.95, max_points=20, budget_s=25)
    # points of 10 s against 25 s: the third starts with 5 s left (and is stopped there), no fourth
    assert [c[2] for c in calls] == [25, 15, 5]


def test_a_point_cut_by_the_budget_ends_the_search_without_a_verdict():
    def measure(load, loop, seconds_left):
        return Point(load, loop, passed=None if load == 4 else True, wall_s=1.0)
    found = capacity.search(measure, "concurrency", 0.95, max_points=10, budget_s=100)
    assert (found.passing, found.failing) == (2, None) and len(found.points) == 3


def test_no_capacity_when_one_request_at_a_time_misses():
    found = capacity.search(fake(0), "concurrency", 0.95, max_points=8, budget_s=60)
    assert (found.passing, found.failing, found.first_failed, len(found.points)) == (None, 1, "ttft_s", 1)
    summary = {"capacity": found.to_dict()}
    assert catalog.flatten(summary)["capacity.concurrency"] == 0.0  # the decision reads 0, not "not measured"


def test_a_point_passes_on_its_goodput_and_fails_once_stopped():
    assert capacity.verdict(0.95, 0.95, None, False) is True
    assert capacity.verdict(0.94, 0.95, None, False) is False
    assert capacity.verdict(1.0, 0.95, "over-saturated: ...", False) is False
    assert capacity.verdict(None, 0.95, None, True) is None


# ---------------------------------------------------------------------------- the stop rules


def window(ttfts: list[float]) -> list[tuple[float, float]]:
    return [(i * 0.1, t) for i, t in enumerate(ttfts)]


def test_a_steadily_growing_ttft_is_over_saturated():
    growing = [0.05 + 0.05 * i for i in range(15)]  # a queue gaining one service time per request
    why = saturation.over_saturated(window(growing), ttft_bound=0.3)
    assert why and why.startswith("over-saturated: median TTFT rose from")
    assert saturation.over_saturated(window(growing), ttft_bound=None)  # without an objective, the growth alone


def test_a_steady_or_contained_ttft_is_not():
    assert saturation.over_saturated(window([0.8] * 30), ttft_bound=0.3) is None  # steady, even above the bound
    assert saturation.over_saturated(window([0.01 + 0.01 * i for i in range(20)]), ttft_bound=0.5) is None  # under it
    few = saturation.MIN_DONE - 1
    assert saturation.over_saturated(window([0.05 * 2 ** i for i in range(few)]), ttft_bound=0.1) is None  # too few


def test_the_growth_is_read_in_send_order_not_end_order():
    sends = [(20 - i, 0.05 + 0.05 * i) for i in range(20)]  # the later sent, the faster served
    assert saturation.over_saturated(sends, ttft_bound=0.1) is None


def test_the_monitor_stops_a_window_that_can_no_longer_pass():
    monitor = saturation.Monitor({"ttft_s": 0.5}, goodput=0.95, expected=40)  # 2 of 40 may miss
    good = {"status": "ok", "ttft_s": 0.1, "t_start_s": 0.0}
    assert monitor.add(good) is None
    assert monitor.add({**good, "ttft_s": 0.9}) is None
    assert monitor.add({"status": "error", "t_start_s": None}) is None
    assert monitor.first_failed == "ttft_s" and monitor.bad == 2
    assert monitor.add({**good, "ttft_s": 0.7}).startswith("cannot pass: 3 of its requests missed an objective, more than the 2 of 40")


# ---------------------------------------------------------------------------- the settings


def _compose(overrides: list[str]):
    schema.register()
    app.register_resolvers()
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        return compose("config", selection.hydra_overrides(overrides))


def test_the_shorthand_and_the_struct_compose_together():
    cfg = _compose(["run.search=capacity", "run.search.over=rate", "run.search.goodput=0.9"])
    assert (cfg.run.search.mode, cfg.run.search.over, cfg.run.search.goodput) == ("capacity", "rate", 0.9)
    validate(plan.build(cfg))
    assert _compose([]).run.search.mode is None  # off by default


@pytest.mark.parametrize(("overrides", "says"), [
    (["run.search.mode=fastest"], "run.search.mode='fastest' must be capacity"),
    (["run.search.over=tokens"], "run.search.over='tokens' must be concurrency"),
    (["run.search.goodput=1.5"], "run.search.goodput=1.5 must be in (0, 1]"),
    (["run.search.max_points=1"], "run.search.max_points=1 must be >= 2"),
    (["run.search.budget_s=0"], "run.search.budget_s=0.0 must be > 0 seconds"),
    (["run.search.tolerance=0"], "run.search.tolerance=0.0 must be in (0, 1)"),
    (["run.search.max_load=1"], "run.search.max_load=1.0 must be > 1"),
    (["run.slo.ttft_s=null", "run.slo.tpot_s=null"], "bounds nothing: run.search=capacity looks for"),
    (["run.concurrency=4"], "run.search.mode='capacity' sets each point's load itself"),
    (["run.rate=2"], "run.search.mode='capacity' sets each point's load itself"),
    (["run.target_ci=0.05"], "run.target_ci=0.05 adds rounds at one load"),
    (["run.requests=20"], "(or run.search.over=rate) is needed by run.requests"),
])
def test_bad_search_settings_are_refused_naming_the_key(overrides, says):
    with pytest.raises(UserError) as refused:
        validate(plan.build(_compose(["run.search=capacity", *overrides])))
    assert says in str(refused.value)


def test_open_loop_options_are_taken_by_a_rate_search():
    validate(plan.build(_compose(["run.search=capacity", "run.search.over=rate", "run.requests=20", "run.warmup_s=1"])))


def test_the_cli_refuses_bad_search_settings_with_exit_2(tmp_path):
    done = run_cli("run", *OPENAI, "run.search=capacity", "run.search.over=tokens", f"hydra.run.dir={tmp_path / 'j'}")
    assert done.returncode == 2, done.stderr
    assert "slmbench: run.search.over='tokens' must be concurrency (closed loop" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "j" / "requests.jsonl").exists()


def test_the_decision_takes_capacity_as_a_limit():
    metric = resolve_key("capacity.rate", [], "selection.min")
    assert metric.value({"capacity": {"over": "rate", "passing": 2.5, "points": [{}]}}) == 2.5
    assert metric.value({"capacity": {"over": "concurrency", "passing": 3, "points": [{}]}}) is None
    assert metric.value({"capacity": None}) is None  # a job that searched nothing: not measured


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def capacity_sweep(tmp_path_factory) -> Path:
    """Two jobs against the serial endpoint: a capacity search (the shorthand, swept) and one
    request at a time."""
    sweep = tmp_path_factory.mktemp("capacity") / "sweep"
    with ScriptedServer(Script(ttft_s=TTFT, tpot_s=TPOT, tokens=TOKENS, serial=True)) as srv:
        done = run_cli("run", "-m", *OPENAI, *SEARCH, f"backend.base_url={srv.base_url}", "run.search=capacity,null",
                       f"hydra.sweep.dir={sweep}", timeout=300, plots=True)
    assert done.returncode == 0, done.stderr
    return sweep


def _job(sweep: Path, searched: bool) -> Path:
    for p in sorted(sweep.glob("*/summary.json")):
        if bool(json.loads(p.read_text()).get("capacity")) == searched:
            return p.parent
    raise AssertionError(f"no job with searched={searched} in {sweep}")


@serial
def test_the_search_finds_the_serial_endpoints_known_capacity(capacity_sweep):
    job = _job(capacity_sweep, searched=True)
    s = json.loads((job / "summary.json").read_text())
    cap = s["capacity"]
    assert (cap["over"], cap["passing"], cap["failing"], cap["first_failed"], cap["goodput"]) == (
        "concurrency", KNOWN_C, KNOWN_C + 1, "ttft_s", 0.9), _points(cap)
    for p in cap["points"]:  # each point's p95 TTFT sits where (c - 1) x S puts it
        assert p["passed"] == (p["load"] <= KNOWN_C)
        if p["passed"]:
            assert TTFT + (p["load"] - 1) * S - 0.01 < p["p95"]["ttft_s"] < TTFT_BOUND, p
    stopped = [p for p in cap["points"] if p["stopped_early"]]
    assert stopped and all(p["attempted"] < p["expected"] and not p["passed"] for p in stopped)
    recs = [json.loads(line) for line in (job / "requests.jsonl").read_text().splitlines()]
    assert sorted({r["load_point"] for r in recs}) == list(range(len(cap["points"])))
    assert all(r["load"] == cap["points"][r["load_point"]]["load"] for r in recs)
    assert len({(r["round"], r["prompt_id"]) for r in recs}) == len(recs)  # every point's rounds numbered on
    # the job's own figures are those of its capacity point
    at_capacity = [r for r in recs if r["load"] == KNOWN_C]
    assert s["n"] == len(at_capacity) and s["throughput"]["concurrency"] == KNOWN_C
    row = next(r for r in _csv(job / "summary.csv"))
    assert float(row["capacity.concurrency"]) == KNOWN_C and row["capacity.rate"] == ""
    report = (job / "report.md").read_text()
    assert f"Capacity under SLO (closed loop): **{KNOWN_C} requests in flight**" in report
    assert "![capacity](capacity.png)" in report and (job / "capacity.png").stat().st_size > 10_000


@serial
def test_the_sweep_report_shows_the_capacity_and_the_decision_uses_it(capacity_sweep):
    report = (capacity_sweep / "report.md").read_text()
    assert "## Capacity under SLO" in report and (capacity_sweep / "capacity.png").is_file()
    jobs = [(p.parent.name, json.loads(p.read_text())) for p in sorted(capacity_sweep.glob("*/summary.json"))]
    made = decision.decide(jobs, {"min": {"capacity": {"concurrency": KNOWN_C}}})
    by_job = {c["job"]: c for c in made["candidates"]}
    assert by_job[_job(capacity_sweep, True).name]["eligible"]
    assert by_job[_job(capacity_sweep, False).name]["reasons"] == [
        f"capacity.concurrency not measured (limit >= {KNOWN_C} requests)"]
    made = decision.decide(jobs, {"min": {"capacity.concurrency": KNOWN_C + 1}})
    assert not [c for c in made["candidates"] if c["eligible"]]


@serial
def test_mlflow_gets_the_capacity_and_each_point(capacity_sweep, tmp_path):
    from runner.track import tracking

    job = _job(capacity_sweep, searched=True)
    tracker = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "capacity")
    run_id = tracker.log_job(job, plan.written_config(job))
    assert tracker.client.get_run(run_id).data.metrics["capacity.concurrency"] == KNOWN_C
    points = json.loads((job / "summary.json").read_text())["capacity"]["points"]
    steps = sorted(tracker.client.get_metric_history(run_id, "capacity.point.load"), key=lambda m: m.step)
    assert [m.value for m in steps] == [p["load"] for p in points]
    passed = tracker.client.get_metric_history(run_id, "capacity.point.passed")
    assert sorted((m.step, m.value) for m in passed) == [(i, float(p["passed"])) for i, p in enumerate(points)]


@serial
def test_results_load_a_real_sweep_folder(capacity_sweep, tmp_path):
    r = results.load(capacity_sweep)
    jobs = sorted(p.parent for p in capacity_sweep.glob("*/summary.json"))
    lines = {j.name: (j / "requests.jsonl").read_text().splitlines() for j in jobs}
    assert len(r.records) == sum(map(len, lines.values()))  # one row per request
    assert r.records.groupby("job").size().to_dict() == {k: len(v) for k, v in lines.items()}
    assert len(r.summaries) == 2 and set(r.summaries["sweep"]) == {capacity_sweep.name}
    csv_columns = pd.read_csv(capacity_sweep / "summary.csv").columns
    assert set(csv_columns) <= set(r.summaries.columns)  # named as in summary.csv
    assert sorted(r.summaries["run.search.mode"].fillna("off")) == ["capacity", "off"]  # config keys as columns
    assert r.records["run.slo.ttft_s"].eq(TTFT_BOUND).all() and r.records["backend.name"].eq("openai").all()
    searched = r.summaries.set_index("job").loc[_job(capacity_sweep, True).name]
    assert searched["capacity.concurrency"] == KNOWN_C and searched["ttft_s.p95"] == pytest.approx(
        json.loads((_job(capacity_sweep, True) / "summary.json").read_text())["metrics"]["ttft_s"]["p95"])
    # grades joined: each record carries its scorers' results from scores.jsonl
    job = jobs[0]
    score = json.loads((job / "scores.jsonl").read_text().splitlines()[0])
    (field, value), = [(k, v) for k, v in _flatten(score["scores"]).items() if isinstance(v, float)][:1]
    row = r.records[(r.records["job"] == job.name) & (r.records["round"] == score["round"])
                    & (r.records["prompt_id"] == score["prompt_id"])]
    assert row[f"scores.{field}"].item() == pytest.approx(value)
    # a job folder, or a list, reads the same rows; a folder of neither is refused
    one = results.load(job)
    assert len(one.records) == len(lines[job.name]) and list(one.summaries["job"]) == [job.name]
    assert len(results.load([jobs[0], jobs[1]]).records) == len(r.records)
    with pytest.raises(UserError, match="neither a job folder"):
        results.load(tmp_path)


@serial
def test_a_rerun_keeps_the_finished_points_and_measures_the_rest(tmp_path):
    job = tmp_path / "job"
    with ScriptedServer(Script(ttft_s=TTFT, tpot_s=TPOT, tokens=TOKENS, serial=True)) as srv:
        the_plan = plan.build(_compose([*OPENAI, *SEARCH, "run.search=capacity", f"backend.base_url={srv.base_url}"]))
        first = run_job(the_plan, job)
        assert first.error is None and first.capacity["passing"] == KNOWN_C, _points(first.capacity)
        sent = len(srv.requests)
        again = run_job(the_plan, job)  # a finished search: nothing is sent again
        assert len(srv.requests) == sent and again.capacity == first.capacity
        saved = json.loads((job / "capacity.json").read_text())  # as if stopped after two points
        (job / "capacity.json").write_text(json.dumps({**saved, "points": saved["points"][:2]}))
        redone = sum(p["attempted"] for p in saved["points"][2:])
        resumed = run_job(the_plan, job)
        assert resumed.capacity["passing"] == KNOWN_C, _points(resumed.capacity)
        assert resumed.skipped_done == sum(p["attempted"] for p in saved["points"][:2])
        # only the later points were measured again (a stopped point's in-flight requests vary a little)
        assert abs(len(srv.requests) - sent - redone) <= KNOWN_C + 1, (len(srv.requests), sent, redone)
    recs = [json.loads(line) for line in (job / "requests.jsonl").read_text().splitlines()]
    assert len({(r["round"], r["prompt_id"]) for r in recs}) == len(recs)
    assert len((job / "requests.interrupted.jsonl").read_text().splitlines()) == redone


def _points(cap: dict) -> list[tuple]:
    """A search's points, for a failure message."""
    return [(p["load"], p["passed"], p["p95"], p["attempted"], p["stop_reason"]) for p in cap["points"]]


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open() as fh:
        return list(csv.DictReader(fh))


def _flatten(node: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
