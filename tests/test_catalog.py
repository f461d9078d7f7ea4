"""One metric catalog: every number has one dotted name, the same in summary.csv, in MLflow and as a
selection key, and units are written down in one module only."""

from __future__ import annotations

import ast
import csv
import json
import os
from functools import partial
from pathlib import Path

import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

from runner.decide import keys
from runner.metrics import catalog
from runner.store import summary

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("tokens/s", "s/token", "tok/s", "req/s")


@pytest.fixture(scope="module")
def judged_sweep(tmp_path_factory) -> Path:
    """A real sweep of two endpoint models graded by the deterministic notes scorer."""
    out = tmp_path_factory.mktemp("catalog") / "sweep"
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=10, model_ids=("alpha", "beta"))) as srv:
        done = run_cli("run", "-m", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=alpha,beta",
                       "prompts=meeting-notes", "prompts.limit=2", "judge=none", "run.rounds=2", "run.warmup=0",
                       "run.slo.ttft_s=1", f"hydra.sweep.dir={out}")
    assert done.returncode == 0, done.stderr
    return out


def _summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))}


def test_the_same_number_has_the_same_name_in_csv_mlflow_and_selection(judged_sweep: Path):
    jobs = _summaries(judged_sweep)
    with (judged_sweep / "summary.csv").open() as fh:
        rows = {r["job"]: r for r in csv.DictReader(fh)}
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("slmbench").experiment_id
    for job, s in jobs.items():
        flat = catalog.flatten(s)
        # the figures a reader looks for, under their one name
        for key in ("ttft_s.p95", "decode_tps.p50", "throughput.output_tps", "truncation.share", "goodput.fraction",
                    "quality.overall", "quality.scorers.notes.score", "quality.scorers.rouge_l.f1"):
            assert key in flat, key
        # summary.csv: every number column carries the flattened value under the same name
        for col in summary.NUMBER_COLUMNS:
            want = flat.get(col)
            assert (rows[job][col] == "") == (want is None), col
            if want is not None:
                assert float(rows[job][col]) == pytest.approx(want), col
        # a selection key of that name resolves to the same value
        for key, want in flat.items():
            if key.startswith("quality.qualifications."):
                continue  # a grader's figures, not candidate metrics
            metric = keys.resolve_key(key, [s], "test")
            assert metric.value(s) == pytest.approx(want), key
        # MLflow: the job's run holds the same names and values
        [run] = client.search_runs([exp], filter_string=f"tags.job_dir = '{(judged_sweep / job).resolve()}'")
        for key, want in flat.items():
            assert run.data.metrics[key] == pytest.approx(want), key


def test_every_reported_number_is_declared_with_unit_formula_and_direction(judged_sweep: Path):
    for s in _summaries(judged_sweep).values():
        for key in catalog.flatten(s):
            spec = catalog.spec(key)
            assert spec is not None and spec.formula, key
        for key in ("ttft_s.p95", "e2e_s.p50", "rss_mb", "n_errors", "truncation.share"):
            assert catalog.better(key) == catalog.LOWER, key
        for key in ("decode_tps.p50", "throughput.output_tps", "quality.overall", "quality.aspects.clarity"):
            assert catalog.better(key) == catalog.HIGHER, key
        assert catalog.unit("tpot_s.p95") == "s/token" and catalog.unit("decode_tps.p50") == "tokens/s"
        assert catalog.unit("ttft_s.n") == ""
        # the summary carries the definitions it was written with
        assert s["definitions"]["decode_tps"]["unit"] == "tokens/s"
        assert s["definitions"]["throughput.output_tps"]["formula"] == catalog.SPECS["throughput.output_tps"].formula


def test_units_are_written_in_one_module():
    """No other module spells a rate unit in a string: they read it from runner/metrics/catalog.py."""
    found = []
    for path in [*(ROOT / "runner").rglob("*.py"), *(ROOT / "judges").rglob("*.py")]:
        if path.name == "catalog.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {u}" for u in UNITS if u in node.value]
    assert not found, found


def test_every_metric_names_the_code_that_computes_it():
    """`computed_in` is where a reader goes to check a formula: it must name a module or function
    that exists (a moved function left a dead pointer before: runner.store.summary.goodput)."""
    import importlib

    from runner.metrics import catalog

    dead = []
    for spec in catalog.SPECS.values():
        module, _, name = spec.computed_in.rpartition(".")
        try:
            importlib.import_module(spec.computed_in)
            continue
        except ImportError:
            pass
        try:
            target = importlib.import_module(module)
        except ImportError:
            target = None
        found = getattr(target, name.split(".")[0], None) if target is not None else None
        # defined there, not only imported there
        if found is None or getattr(found, "__module__", module) != module:
            dead.append(f"{spec.key}: {spec.computed_in}")
    assert not dead, dead
