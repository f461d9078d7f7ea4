"""The model registry: one YAML file per model under `conf/model/` (and the user's
`$SLMBENCH_HOME/conf/model/`), each validated against `ModelConfig`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml

from runner.config import paths
from runner.config.errors import UserError
from runner.config.schema import ModelConfig, typed


def model_dirs() -> list[Path]:
    return [paths.CONF_DIR / "model", paths.user_conf_dir() / "model"]


def load_file(path: Path) -> ModelConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"model config {path}: {str(exc).splitlines()[0]}") from None
    spec = typed(ModelConfig, raw, f"model config {path}")
    if spec.alias != path.stem:
        raise UserError(f"model config {path}: alias '{spec.alias}' must match the file name")
    return spec


def all_models() -> dict[str, ModelConfig]:
    """Every registered model by alias; the user's directory may add aliases, not shadow them."""
    found: dict[str, ModelConfig] = {}
    for directory in model_dirs():
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, load_file(path))
    return found


def find(alias: str) -> ModelConfig | None:
    """One alias's entry, reading only its file; None when no directory holds it."""
    for directory in model_dirs():
        path = directory / f"{alias}.yaml"
        if path.is_file():
            return load_file(path)
    return None


def get(alias: str) -> ModelConfig:
    models = all_models()
    if alias not in models:
        known = ", ".join(sorted(models)) or "none"
        raise UserError(f"unknown model alias '{alias}' (known: {known})")
    return models[alias]


def write_user_model(spec: ModelConfig) -> Path:
    target = paths.user_conf_dir() / "model" / f"{spec.alias}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(spec)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
