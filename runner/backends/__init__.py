"""Backends by name. A new backend is a class here and a YAML in `conf/backend/`."""

from __future__ import annotations

from runner.backends.base import Backend, BackendError, Completion, GenParams


def create(backend_cfg, model_id: str) -> Backend:
    if backend_cfg.name == "foundry":
        from runner.backends.foundry import FoundryBackend

        return FoundryBackend(model_id, backend_cfg.timeout_s)
    if backend_cfg.name == "openai":
        from runner.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(model_id, backend_cfg.base_url, backend_cfg.api_key_env, backend_cfg.timeout_s)
    raise BackendError(f"unknown backend '{backend_cfg.name}'")


__all__ = ["Backend", "BackendError", "Completion", "GenParams", "create"]
