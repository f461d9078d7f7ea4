"""The job plan (runner/config/plan.py): the composed config read once into frozen, typed groups
with the derived facts computed there; the same plan read back from a finished job's folder."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
from conftest import run_cli
from hydra import compose, initialize_config_dir
from scripted_server import Script, ScriptedServer

from runner import app
from runner.config import paths, plan, schema
from runner.config.errors import UserError
from runner.config.schema import JudgeConfig, ModelConfig, RunConfig


def _compose(overrides: list[str]):
    schema.register()
    app.register_resolvers()
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        return compose("config", overrides)


def test_a_plan_is_frozen_typed_and_crosses_into_a_job_process():
    job = plan.make(model=ModelConfig(alias="m", id="m-1"), run=RunConfig(rounds=2),
                    judge=JudgeConfig(model="j", mode="checklist"))
    assert isinstance(job.run, plan.RunPlan) and isinstance(job.model.source, plan.SourcePlan)
    assert job.run.rounds == 2 and job.run.warmup == RunConfig().warmup  # the schema's defaults elsewhere
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.run.rounds = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.label = "other"
    assert pickle.loads(pickle.dumps(job)) == job  # an isolated job's child gets the plan itself
    # derived once: the in-process default backend names the model by its alias; the grader by mode
    assert job.label == "m" and job.capabilities.in_process and job.judge.grader == "j/checklist"
    assert dataclasses.replace(job.judge, mode=plan.DEFAULT_JUDGE_MODE).grader == "j"


def test_the_derived_facts_follow_the_config():
    endpoint = plan.build(_compose(["backend=openai", "model.id=phi-4-mini", "backend.base_url=http://127.0.0.1:9/v1"]))
    assert endpoint.label == "phi-4-mini" and not endpoint.capabilities.in_process
    assert endpoint.prompt_set.name == "meeting-notes" and len(endpoint.prompt_set.prompts) == 10
    # the config hash changes with what makes records comparable (decoding), not with run settings
    same = plan.build(_compose(["backend=openai", "model.id=phi-4-mini", "backend.base_url=http://127.0.0.1:9/v1",
                                "run.rounds=7"]))
    other = plan.build(_compose(["backend=openai", "model.id=phi-4-mini", "backend.base_url=http://127.0.0.1:9/v1",
                                 "decoding.temperature=0.5"]))
    assert same.config_hash == endpoint.config_hash != other.config_hash
    limited = plan.build(_compose(["prompts.limit=2"]))
    assert len(limited.prompt_set.prompts) == 2 and limited.config_hash != plan.build(_compose([])).config_hash


def test_a_value_left_missing_is_a_config_error_naming_it():
    cfg = _compose([])
    cfg.model.id = "???"
    with pytest.raises(UserError, match="model.id|id"):
        plan.build(cfg)


def test_a_finished_jobs_plan_reads_back_as_it_ran(tmp_path):
    job_dir = tmp_path / "job"
    with ScriptedServer(Script(ttft_s=0.0, tpot_s=0.0, tokens=3)) as srv:
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "prompts=smoke", "run.rounds=1", "run.warmup=0", "+baseline=plan-test", "model.license=mit",
                       f"hydra.run.dir={job_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((job_dir / "summary.json").read_text())
    again = plan.from_job_dir(job_dir)
    # the replayed plan's derived facts are the ones the live job wrote
    assert again.config_hash == summary["config_hash"] and again.label == summary["model"] == "scripted-model"
    assert again.decoding.as_dict() == summary["config"]["decoding"] and again.run.as_dict() == summary["config"]["run"]
    assert again.baseline == "plan-test" and again.backend.base_url == srv.base_url
    # an endpoint's licence counts when typed (the default group's entry is another model's): the
    # replayed plan reads the job's overrides too
    assert summary["license"] == again.model_facts["license"] == "mit" and summary["params_m"] is None
    assert again.model_facts == {k: summary[k] for k in ("license", "precision", "params_m")}
    # the job folder holds the label the job ran under, not its formula: a reader resolves nothing
    written = job_dir / ".hydra" / "config.yaml"
    assert "label: scripted-model\n" in written.read_text() and "model_label" not in written.read_text()
    assert plan.written_config(job_dir)["label"] == "scripted-model"
    # a folder written before the config held `label` reads back with the same label
    kept = [line for line in written.read_text().splitlines() if not line.startswith("label:")]
    assert len(kept) < len(written.read_text().splitlines())
    written.write_text("\n".join(kept) + "\n")
    assert plan.from_job_dir(job_dir).label == "scripted-model"
    assert json.loads((job_dir / "job.json").read_text())["config_hash"] == again.config_hash


def test_a_baseline_is_kept_only_when_named_and_groups_read_as_the_dictconfig_did():
    assert plan.build(_compose(["+baseline=nightly"])).baseline == "nightly"
    assert plan.build(_compose(["+baseline=false"])).baseline is None and plan.build(_compose([])).baseline is None
    backend = plan.build(_compose([])).backend  # what a backend of your own gets in from_config
    assert backend["timeout_s"] == backend.get("timeout_s") == backend.timeout_s and backend.get("nope", 1) == 1
    with pytest.raises(KeyError):
        backend["nope"]


def test_the_label_is_derived_not_set():
    with pytest.raises(UserError, match="model.alias"):
        plan.build(_compose(["label=mine"]), ["label=mine"])
