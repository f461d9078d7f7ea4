"""Every option of every config group composes onto the schema and passes its checks, in process
with Hydra's compose API: a broken YAML in conf/ fails here in seconds, not in an end-to-end run."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from runner import app
from runner.config import paths, plan, schema
from runner.decide import decision
from runner.validate import validate

GROUPS = ["model", "prompts", "hardware", "decoding", "backend", "judge", "selection"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((paths.CONF_DIR / g).glob("*.yaml"))]
LAUNCHERS = sorted(p.stem for p in (paths.CONF_DIR / "hydra" / "launcher").glob("*.yaml"))


def _compose(overrides: list[str], hydra: bool = False):
    schema.register()
    app.register_resolvers()
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        return compose("config", overrides, return_hydra_config=hydra)


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS) and len(OPTIONS) >= 20


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_validates(group: str, option: str):
    # a judge option is composed beside a candidate of another model (no model may grade itself)
    other = ["model=gemma3-270m-int4" if option != "gemma3-270m-int4" else "model=smollm2-135m-int8"]
    cfg = _compose([f"{group}={option}", *(other if group == "judge" else [])])
    job = plan.build(cfg)  # types; for prompts, the set it points at loads
    validate(job)  # every check before a first request: ranges, names, what grading needs
    decision.check_selection(job.selection)
    if group == "prompts":  # the prompt set it points at is well formed
        assert job.prompt_set.prompts


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launcher_preset_composes(launcher: str):
    cfg = _compose([f"hydra/launcher={launcher}"], hydra=True)
    assert cfg.hydra.launcher._target_
