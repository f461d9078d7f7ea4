"""Every figure carries the name of the model that ran: on an endpoint that is `model.id`, not the
default model group's alias, and jobs a sweep would name alike get names that show what differs."""

from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path

from conftest import run_cli
from scripted_server import Script, ScriptedServer

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

DEFAULT_ALIAS = "smollm2-135m-int8"  # conf/config.yaml's default model group
TWO_SPEEDS = Script(ttft_s=0.02, tpot_s=0.002, tokens=12, model_ids=("alpha", "beta"),
                    per_model={"beta": {"tpot_s": 0.02, "ttft_s": 0.1}})  # alpha is the fast endpoint model


def _sweep(out: Path, srv: ScriptedServer, *extra: str) -> dict[str, dict]:
    done = run_cli("run", "-m", "backend=openai", f"backend.base_url={srv.base_url}", "prompts=smoke",
                   "run.rounds=2", "run.warmup=0", f"hydra.sweep.dir={out}", *extra)
    assert done.returncode == 0, done.stderr
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))}


def test_endpoint_models_are_named_by_their_id_everywhere(tmp_path: Path):
    with ScriptedServer(TWO_SPEEDS) as srv:
        jobs = _sweep(tmp_path / "sweep", srv, "model.id=alpha,beta")
    assert sorted(s["model"] for s in jobs.values()) == ["alpha", "beta"]
    for job, s in jobs.items():
        label = s["model"]
        assert label in job and DEFAULT_ALIAS not in job  # the directory
        assert s["name"] == label and s["model_id"] == label
        # the default group's licence, precision and size describe SmolLM2, not this model
        assert s["license"] is None and s["precision"] is None and s["params_m"] is None
        recs = [json.loads(x) for x in (tmp_path / "sweep" / job / "requests.jsonl").read_text().splitlines()]
        assert {r["model"] for r in recs} == {label}
        assert (tmp_path / "sweep" / job / "report.md").read_text().startswith(f"# {label} on smoke")
    with (tmp_path / "sweep" / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["model"] for r in rows) == ["alpha", "beta"]
    sweep_report = (tmp_path / "sweep" / "report.md").read_text()
    assert "alpha" in sweep_report and "beta" in sweep_report and DEFAULT_ALIAS not in sweep_report
    decision = json.loads((tmp_path / "sweep" / "decision.json").read_text())
    # nothing judged: the decision ranks by decode speed, and alpha decodes 10x faster
    assert decision["recommended"]["model"] == "alpha" and decision["runner_up"]["model"] == "beta"
    assert "Ship alpha" in decision["summary_sentence"] and DEFAULT_ALIAS not in decision["summary_sentence"]
    # limits on what a client cannot measure on an endpoint are not applied (and said), never failed
    again = run_cli("decide", str(tmp_path / "sweep"), "max.load_s=5", "max.rss_mb=100")
    assert again.returncode == 0, again.stderr
    decision = json.loads((tmp_path / "sweep" / "decision.json").read_text())
    assert decision["recommended"]["model"] == "alpha" and all(c["eligible"] for c in decision["candidates"])
    assert all(any("load_s not measured for endpoints" in n for n in c["notes"]) for c in decision["candidates"])

    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("slmbench").experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.job_dir LIKE '{(tmp_path / 'sweep').resolve()}/%'")
    assert sorted(r.data.tags["model"] for r in runs) == ["alpha", "beta"]
    for r in runs:
        label = r.data.tags["model"]
        assert label in r.info.run_name and DEFAULT_ALIAS not in r.info.run_name
        assert r.data.params["model.label"] == label and r.data.params["model.id"] == label


def test_jobs_with_one_label_get_names_showing_the_override_that_differs(tmp_path: Path):
    with ScriptedServer(TWO_SPEEDS) as srv:
        jobs = _sweep(tmp_path / "sweep", srv, "model.id=alpha", "decoding.max_tokens=4,8",
                      "tracking.enabled=false")
    names = sorted(s["name"] for s in jobs.values())
    assert names == ["alpha [decoding.max_tokens=4]", "alpha [decoding.max_tokens=8]"]
    assert all(s["model"] == "alpha" for s in jobs.values())
    decision = json.loads((tmp_path / "sweep" / "decision.json").read_text())
    labels = {c["label"] for c in decision["candidates"]}
    assert labels == set(names), labels
    with (tmp_path / "sweep" / "summary.csv").open() as fh:
        assert sorted(r["name"] for r in csv.DictReader(fh)) == names


def test_an_endpoint_model_may_be_judged_by_the_default_alias_model():
    from hydra import compose, initialize_config_dir

    from runner import app
    from runner.config import paths, plan, schema
    from runner.validate import validate

    schema.register()
    app.register_resolvers()
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        endpoint = plan.build(compose("config", ["backend=openai", "model.id=phi-4-mini", f"judge={DEFAULT_ALIAS}"]))
        own = plan.build(compose("config", [f"judge={DEFAULT_ALIAS}"]))
        aliased = plan.build(compose("config", ["backend=openai", "model.id=phi-4-mini", "model.alias=phi"]))
    assert endpoint.label == "phi-4-mini" and own.label == DEFAULT_ALIAS and aliased.label == "phi"
    validate(endpoint)  # phi-4-mini is not grading itself
    import pytest

    from runner.config.errors import UserError

    with pytest.raises(UserError, match="may not grade itself"):
        validate(own)


def test_a_swept_model_key_shows_in_the_name_unless_its_value_is_the_label():
    from runner.config.labels import distinguishing

    swept = ["model.id"]
    assert distinguishing(["model.alias=x", "model.id=alpha"], swept, "x") == ["model.id=alpha"]
    assert distinguishing(["model.id=alpha"], swept, "alpha") == []
    assert distinguishing(["model=smollm2-135m-int4", "model.id=alpha"], ["model"], "alpha") == [
        "model=smollm2-135m-int4"]
    assert distinguishing(["model=smollm2-135m-int4"], ["model"], "smollm2-135m-int4") == []
    assert distinguishing(["decoding=greedy", "run.concurrency=2"], ["decoding", "run.concurrency"], "m") == [
        "run.concurrency=2"]
