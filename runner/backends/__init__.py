"""Backends by registry: `conf/backend/NAME.yaml` names its class in `target`, and the runner asks
the class's declared `capabilities`, never its name. A new backend is a class (in this package or
in a file of your own) and a YAML in `conf/backend/` or `$SLMBENCH_HOME/conf/backend/`."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import yaml

from runner.backends.base import Backend, BackendError, Capabilities, Completion, GenParams
from runner.config import paths
from runner.config.errors import UserError

_loaded: dict[str, type[Backend]] = {}


def load_class(target: str) -> type[Backend]:
    """`package.module:Class` (or `package.module.Class`), or `/path/to/file.py:Class` for a backend
    that lives outside the package. UserError naming the target when it cannot be loaded."""
    if target in _loaded:
        return _loaded[target]
    module_name, sep, attr = target.rpartition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name).expanduser()
            spec = importlib.util.spec_from_file_location(f"slmbench_backend_{file.stem}", file)
            if spec is None or spec.loader is None or not file.is_file():
                raise ImportError(f"no such file {file}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        klass = getattr(module, attr)
    except Exception as exc:  # a user's file may fail in any way: say which target and why
        raise UserError(f"backend target {target!r} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not (isinstance(klass, type) and issubclass(klass, Backend)):
        raise UserError(f"backend target {target!r} is not a subclass of runner.backends.Backend")
    _loaded[target] = klass
    return klass


def backend_class(backend_cfg: Any) -> type[Backend]:
    return load_class(backend_cfg.target)


def capabilities(backend_cfg: Any) -> Capabilities:
    return backend_class(backend_cfg).capabilities


def create(backend_cfg: Any, model: Any) -> Backend:
    """The backend for one model (`alias`, `id`, `source`) as the `backend` group configures it."""
    return backend_class(backend_cfg).from_config(backend_cfg, model)


def option_dirs() -> list[Path]:
    return [paths.CONF_DIR / "backend", paths.user_conf_dir() / "backend"]


def option(name: str) -> dict:
    """The `conf/backend/NAME.yaml` option (the judge's `judge.backend` names one)."""
    for directory in option_dirs():
        path = directory / f"{name}.yaml"
        if path.is_file():
            return yaml.safe_load(path.read_text()) or {}
    known = sorted({p.stem for d in option_dirs() for p in d.glob("*.yaml")})
    raise UserError(f"no backend option '{name}' (known: {', '.join(known)})")


def option_class(name: str) -> type[Backend]:
    """The class of the `conf/backend/NAME.yaml` option (what `judge.backend=NAME` runs on)."""
    return load_class(option(name).get("target") or "")


__all__ = ["Backend", "BackendError", "Capabilities", "Completion", "GenParams", "backend_class", "capabilities",
           "create", "load_class", "option", "option_class"]
