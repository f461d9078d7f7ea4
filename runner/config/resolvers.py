"""The OmegaConf resolvers slmbench's configs use (conf/config.yaml)."""

from __future__ import annotations

from omegaconf import OmegaConf

from runner import backends
from runner.config import labels, paths


def register_resolvers() -> None:
    # ${conf:prompts/data/x.yaml} -> absolute path inside the project's conf/ tree
    OmegaConf.register_new_resolver("conf", lambda rel: str(paths.CONF_DIR / rel), replace=True)
    # ${model_label:alias,id,backend target} -> the job's label (runner/config/labels.py), computed
    # here once, as Hydra composes the job: the root key `label` (runner/config/schema.Config) holds
    # it, the job's directory and the plan read it there
    OmegaConf.register_new_resolver(
        "model_label", lambda alias, model_id, target: labels.model_label(
            alias, str(model_id), backends.load_class(target).capabilities.in_process), replace=True)
    # ${path_safe:text} -> text as a directory-name part (endpoint ids may hold '/', ':' or spaces)
    OmegaConf.register_new_resolver("path_safe", labels.path_safe, replace=True)
