"""The OmegaConf resolvers slmbench's configs use (conf/config.yaml)."""

from __future__ import annotations

from omegaconf import OmegaConf

from runner import backends
from runner.config import labels, paths


def register_resolvers() -> None:
    # ${conf:prompts/data/x.yaml} -> absolute path inside the project's conf/ tree
    OmegaConf.register_new_resolver("conf", lambda rel: str(paths.CONF_DIR / rel), replace=True)
    # ${label:alias,id,backend target} -> the job's model label as a directory-name part
    OmegaConf.register_new_resolver(
        "label", lambda alias, model_id, target: labels.path_safe(
            labels.model_label(alias, str(model_id), backends.load_class(target).capabilities.in_process)),
        replace=True)
