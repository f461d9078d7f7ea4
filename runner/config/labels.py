"""What a job is called: its model's label, and within a sweep a name no other job shares.

The label names the model that really ran. In process (backend=foundry) that is the registry
alias. On an endpoint (backend=openai, any backend that is not in process) the model group only
supplies defaults: `model.id=phi-4-mini`
under the default group's alias measures phi-4-mini, so the label is `model.id`, unless
`model.alias` names it (an alias the registry does not hold, or the registry's own entry for
that id).
"""

from __future__ import annotations

import re

# Overrides told apart by the label (when their value is the label), or shown in their own column.
LABEL_KEYS = {"model", "model.id", "model.alias"}
SHOWN_KEYS = {"decoding", "hardware", "prompts"}


def model_label(alias: str, model_id: str, in_process: bool) -> str:
    if in_process:
        return alias
    from runner.models import registry

    spec = registry.find(alias) if re.fullmatch(r"[A-Za-z0-9._-]+", alias) else None
    return model_id if spec is not None and spec.id != model_id else alias


MODEL_FACTS = ("license", "precision", "params_m")


def model_facts(model, in_process: bool, override_keys: list[str]) -> dict:
    """The licence, precision and size of the model that ran. An endpoint's model group only
    supplies defaults: they describe the model when the group is that model's registry entry
    (same id), or when typed as `model.license=...`; otherwise they are unknown (None), never
    another model's."""
    from runner.models import registry

    if in_process:
        return {k: getattr(model, k) for k in MODEL_FACTS}
    spec = registry.find(str(model.alias))
    own_entry = spec is not None and spec.id == model.id
    typed = {k.lstrip("+~") for k in override_keys}
    return {k: getattr(model, k) if own_entry or f"model.{k}" in typed else None for k in MODEL_FACTS}


def path_safe(text: str) -> str:
    """A label as a directory-name part (endpoint ids may hold '/', ':' or spaces)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(text)).strip("_") or "model"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(task_overrides: list[str]) -> list[str]:
    """The keys a multirun's command line sweeps (`a=1,2`, `a=range(..)`, `a=choice(..)`, globs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return [o.key_or_group for o in parsed if o.is_sweep_override()]


def distinguishing(job_overrides: list[str], swept: list[str], label: str | None = None) -> list[str]:
    """This job's value of each swept override that the label and the shown columns do not
    already tell apart, as `key=value` with Hydra's escapes undone (`http\\://` -> `http://`).
    Jobs of one sweep differ in at least one swept value. A swept model key is left out only
    when its value is the label itself: `model.alias=x model.id=alpha,beta` names both jobs x, so
    the id must show."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    kept = [o for o in job_overrides if _key(o) in swept and _key(o) not in SHOWN_KEYS]
    parsed = OverridesParser.create().parse_overrides(kept)
    return [f"{o.key_or_group}={_plain(o.value())}" for o in parsed
            if o.key_or_group not in LABEL_KEYS or _plain(o.value()) != label]


def _plain(value) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_plain(v) for v in value) + "]"
    return str(value)


def job_name(label: str, overrides: list[str], leave_out: tuple[str, ...] = ()) -> str:
    """`alpha [backend.base_url=http://b/v1]`; `leave_out` drops keys a view shows otherwise (the
    load curve plots run.concurrency on its axis)."""
    extra = [o for o in overrides if _key(o) not in leave_out]
    return f"{label} [{', '.join(extra)}]" if extra else label
