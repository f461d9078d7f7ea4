"""The job plan: a job's composed config, read once.

Right after Hydra composes a job's config, `build` turns the DictConfig into a frozen, typed plan:
each config group as a frozen dataclass with the schema's fields (runner/config/schema.py), and
the facts derived from them, computed here once: the model's facts (licence, precision, size),
the backend's capabilities, the prompt set and the config hash. The job's label is Hydra's: the
config's `label`, computed as the job was composed (it names the job's directory too); the
grader's name has its one home in `JudgePlan.grader`. runner/validate.py then runs every check
that can fail before the first request. The layers below take the plan, or the part of it they
use; none of them reads the DictConfig (tests/test_layers.py keeps it so).

A finished job's plan is read back from the file Hydra wrote (`.hydra/config.yaml`) through the
same builder (`from_job_dir`): live and replay cannot drift. `make` builds a plan from schema
objects, without Hydra (tests, scripts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config import schema, secrets
from runner.config.errors import UserError
from runner.config.labels import model_facts, model_label
from runner.config.prompts import PromptSet

# Graders of this judge mode are named by their model alone; any other mode's as `<model>/<mode>`
# (judges/modes.py registers the modes; a grader's name is in every grade and qualification).
DEFAULT_JUDGE_MODE = "rubric"


class _Group:
    """What every plan group offers besides its fields: `get` and `group["key"]`, as backends
    written for the DictConfig (`backend_cfg.get("options")`) read it, and a plain dict."""

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# schema class -> its frozen plan twin (`freeze` maps one to the other)
TWINS: dict[type, type] = {}


def _frozen_twin(cls: type, name: str) -> type:
    """A frozen dataclass with `cls`'s fields, in this module (so a plan pickles into a job's
    child process), registered in TWINS. Generated from the schema, not written out again, so the
    two cannot drift."""
    twin = dataclasses.make_dataclass(name, [(f.name, f.type) for f in fields(cls)], bases=(_Group,),
                                      frozen=True)
    twin.__module__ = __name__
    twin.__doc__ = f"{cls.__name__} (runner/config/schema.py), frozen."
    TWINS[cls] = twin
    return twin


SourcePlan = _frozen_twin(schema.SourceConfig, "SourcePlan")
ModelPlan = _frozen_twin(schema.ModelConfig, "ModelPlan")
PromptsPlan = _frozen_twin(schema.PromptsConfig, "PromptsPlan")
HardwarePlan = _frozen_twin(schema.HardwareConfig, "HardwarePlan")
DecodingPlan = _frozen_twin(schema.DecodingConfig, "DecodingPlan")
BackendPlan = _frozen_twin(schema.BackendConfig, "BackendPlan")
QualificationPlan = _frozen_twin(schema.QualificationConfig, "QualificationPlan")
NotesPlan = _frozen_twin(schema.NotesConfig, "NotesPlan")
SearchPlan = _frozen_twin(schema.SearchConfig, "SearchPlan")
RunPlan = _frozen_twin(schema.RunConfig, "RunPlan")
TrackingPlan = _frozen_twin(schema.TrackingConfig, "TrackingPlan")
ReportPlan = _frozen_twin(schema.ReportConfig, "ReportPlan")
_JudgeFields = _frozen_twin(schema.JudgeConfig, "_JudgeFields")


class JudgePlan(_JudgeFields):
    """JudgeConfig (runner/config/schema.py), frozen, with the grader's name and its backend's
    capabilities."""

    @property
    def grader(self) -> str | None:
        """How this judge is named wherever its grades or qualification appear: the model it asks
        for (`judge.model_id` when set, as an endpoint's judges are told apart; else the alias
        `judge.model`) in the default mode, `<name>/<mode>` otherwise; None without a judge model."""
        if not self.model:
            return None
        name = self.model_id or self.model
        return name if self.mode == DEFAULT_JUDGE_MODE else f"{name}/{self.mode}"

    @property
    def capabilities(self) -> Any:
        """The Capabilities of the class the `conf/backend` option `judge.backend` names."""
        from runner import backends

        return backends.option_class(self.backend).capabilities


TWINS[schema.JudgeConfig] = JudgePlan  # the generated fields, with the grader's name and capabilities


def freeze(obj: Any) -> Any:
    """A schema object (and the schema objects inside it) as its frozen plan twin."""
    if is_dataclass(obj) and type(obj) in TWINS:
        return TWINS[type(obj)](**{f.name: freeze(getattr(obj, f.name)) for f in fields(obj)})
    return obj


@dataclass(frozen=True)
class JobPlan:
    """One job, as the layers below the app use it."""

    model: Any  # ModelPlan
    prompts: Any  # PromptsPlan
    hardware: Any  # HardwarePlan
    decoding: Any  # DecodingPlan
    backend: Any  # BackendPlan
    judge: Any  # JudgePlan
    run: Any  # RunPlan
    tracking: Any  # TrackingPlan
    report: Any  # ReportPlan
    selection: dict  # the decision's mapping (runner/decide/selection.py reads it)
    baseline: str | None  # `+baseline=NAME`: keep this job as a named baseline
    # derived once, here
    label: str  # the model that ran (runner/config/labels.py)
    model_facts: dict  # licence, precision, size of the model that ran, None where unknown (labels.model_facts)
    capabilities: Any  # the backend class's declared Capabilities (runner/backends/base.py)
    prompt_set: PromptSet
    config_hash: str  # what makes two jobs' records comparable (`config_hash`)


def config_hash(model: Any, decoding: Any, hardware: Any, backend: Any, prompt_set: PromptSet) -> str:
    """What makes two jobs' records comparable: model, decoding, hardware, backend, prompts."""
    ident = {"model": _model_identity(model.as_dict()), "decoding": decoding.as_dict(), "hardware": hardware.as_dict(),
             "backend": {"name": backend.name, "base_url": backend.base_url}, "prompts": prompt_set.digest()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


# Model settings added after records were hashed, and their defaults: a model that leaves one at its
# default hashes as before, so its recorded jobs stay comparable (and resumable). The licence's
# source and the stated memory needs change no answer, so they never count.
_ADDED_SOURCE_DEFAULTS = {"parts": [], "dequantize_dtype": "float32", "session_options": {}}
_NOT_IDENTITY = ("license_source", "build_memory_mb", "run_memory_mb")


def _model_identity(model: dict) -> dict:
    source = {k: v for k, v in (model.get("source") or {}).items() if _ADDED_SOURCE_DEFAULTS.get(k, ()) != v}
    return {**{k: v for k, v in model.items() if k not in _NOT_IDENTITY}, "source": source}


def load_prompt_set(prompts_group: Any) -> PromptSet:
    """The job's prompt set. A user's file (prompts.path=FILE) names itself; the group's name is
    for the shipped sets."""
    from runner.config import paths, prompts

    shipped = Path(prompts_group.path).resolve().is_relative_to(paths.CONF_DIR)
    return prompts.load(prompts_group.path, prompts_group.name if shipped else None, prompts_group.limit)


def build(cfg: DictConfig, overrides: Sequence[str] = ()) -> JobPlan:
    """The plan of a composed job config (types checked by the schema; ranges by runner/validate.py);
    `overrides`: the job's command-line overrides (an endpoint's model facts count when typed).
    UserError when it holds a secret (runner/config/secrets.py) or its prompt set cannot be read."""
    # a swept config group is composed per job, after the sweep's own check (runner/sweep.py)
    secrets.check_config(OmegaConf.to_container(cfg, resolve=False))
    # each group as the schema's dataclasses, interpolations resolved (the root may hold keys the
    # schema has not, such as `+baseline`)
    try:
        groups = {f.name: OmegaConf.to_object(cfg[f.name]) for f in fields(schema.Config) if f.name != "label"}
        label = str(cfg.label)  # computed as the job was composed (runner/config/resolvers.py)
    except OmegaConfBaseException as exc:  # a value left missing (???), or a resolver's error
        cause = exc.__cause__ or exc.__context__
        raise (cause if isinstance(cause, UserError) else UserError(str(exc).splitlines()[0])) from None
    override_keys = [o.split("=", 1)[0] for o in overrides]
    if "label" in {k.lstrip("+~") for k in override_keys}:
        raise UserError("label is not a setting: it names the model that ran (runner/config/labels.py); name an "
                        "endpoint's model with model.alias=NAME")
    baseline = cfg.get("baseline")  # `+baseline=NAME`; unset or false: no baseline is kept
    return _assemble(groups, str(baseline) if baseline else None, None, override_keys, label)


def make(prompt_set: PromptSet | None = None, baseline: str | None = None, **groups: Any) -> JobPlan:
    """A plan from schema objects, the schema's defaults for the groups not given: for tests and
    scripts that build a job without Hydra, e.g. `make(model=ModelConfig(alias="m", id="m"),
    run=RunConfig(rounds=2))`. Without `prompt_set`, an empty one (the prompts group is not read)."""
    config = schema.Config(**groups)
    return _assemble({f.name: getattr(config, f.name) for f in fields(schema.Config) if f.name != "label"},
                     baseline, prompt_set or PromptSet("none", "", ()), [], None)


def _assemble(groups: dict[str, Any], baseline: str | None, prompt_set: PromptSet | None,
              override_keys: list[str], label: str | None) -> JobPlan:
    """The one place a job's derived facts are computed: model facts, capabilities, prompt set,
    config hash; the label is Hydra's (`label`, computed as the job was composed), or, for a plan
    built without Hydra (`make`), the same rule's."""
    from runner import backends

    frozen = {name: freeze(group) for name, group in groups.items()}
    selection = frozen.pop("selection")
    capabilities = backends.capabilities(frozen["backend"])
    prompt_set = prompt_set or load_prompt_set(frozen["prompts"])
    model = frozen["model"]
    return JobPlan(**frozen, selection=dataclasses.asdict(selection),
                   baseline=baseline, label=label or model_label(model.alias, model.id, capabilities.in_process),
                   model_facts=model_facts(model, capabilities.in_process, override_keys),
                   capabilities=capabilities, prompt_set=prompt_set,
                   config_hash=config_hash(model, frozen["decoding"], frozen["hardware"], frozen["backend"],
                                           prompt_set))


def settle_label(job_dir: Path, label: str) -> None:
    """Write the job's resolved label into `.hydra/config.yaml`, where Hydra left its formula: a
    reader of the job folder (results, `slmbench ui --log`, tracking) then resolves no backend class
    and reads the label the job ran under, not one recomputed with the reader's model registry."""
    import yaml

    path = Path(job_dir) / ".hydra" / "config.yaml"
    if not path.is_file():  # hydra.output_subdir=null
        return
    lines = path.read_text().splitlines(keepends=True)
    settled = yaml.safe_dump({"label": label}, width=10_000)
    out = [settled if line.startswith("label:") else line for line in lines]
    if out != lines:
        path.write_text("".join(out))


def written_config(job_dir: Path) -> dict:
    """The job's resolved config, from the file Hydra wrote into `.hydra/` (live and replay read
    the same); {} when there is none."""
    from runner.config.resolvers import register_resolvers

    path = Path(job_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    register_resolvers()
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except OmegaConfBaseException as exc:  # a formula that no longer resolves here: one line, not a traceback
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None


def composed_config(job_dir: Path) -> DictConfig:
    """The config Hydra wrote into a job's `.hydra/`, back on the schema (as it was composed)."""
    from runner.config.resolvers import register_resolvers

    path = Path(job_dir) / ".hydra" / "config.yaml"
    register_resolvers()
    base = OmegaConf.structured(schema.Config)
    OmegaConf.set_struct(base, False)  # keys the command line added (`+baseline=NAME`) come back too
    try:
        return OmegaConf.merge(base, OmegaConf.load(path))
    except (OSError, OmegaConfBaseException) as exc:
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None


def from_job_dir(job_dir: Path) -> JobPlan:
    """A finished job's plan, from its `.hydra/config.yaml` and `overrides.yaml`, through the builder
    a live job uses."""
    path = Path(job_dir) / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []
    return build(composed_config(job_dir), overrides)
