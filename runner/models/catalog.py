"""Foundry Local's LOCAL catalog: where bring-your-own models are registered.

The public catalog needs the internet (offline it retries for ~4 s and returns
nothing), so nothing here ever touches it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from runner.config import paths
from runner.config.errors import UserError

_lock = threading.Lock()
REGISTRY_FILE = "foundry.local.modelinfo.json"


def manager():
    """The process-wide FoundryLocalManager (the SDK allows one), created on first use."""
    from foundry_local_sdk import Configuration, FoundryLocalManager, LogLevel

    with _lock:
        if FoundryLocalManager.instance is None:
            root = paths.foundry_dir()
            root.mkdir(parents=True, exist_ok=True)
            _check_registry_file(root / "cache" / REGISTRY_FILE)
            FoundryLocalManager.initialize(Configuration(
                app_name="slmbench",
                app_data_dir=str(root / "data"),
                model_cache_dir=str(root / "cache"),
                logs_dir=str(root / "logs"),
                log_level=LogLevel.ERROR,
                disable_nonessential_telemetry=True,
            ))
        return FoundryLocalManager.instance


def _check_registry_file(path: Path) -> None:
    # A hand-edited or truncated registry would otherwise fail deep in native code.
    if path.exists():
        try:
            json.loads(path.read_text() or "{}")
        except (ValueError, OSError) as exc:
            raise UserError(f"Foundry Local registry {path} is corrupt ({exc}); "
                            f"move it aside and run `slmbench models pack` to re-register") from None


def local_catalog():
    from foundry_local_sdk import CatalogType

    return manager().get_catalog(CatalogType.LOCAL)


def find(model_id: str):
    """The registered model variant, or None."""
    return local_catalog().get_model_variant(model_id)


def register(model_id: str, folder: Path, display_name: str):
    """Register `folder` under `model_id`, replacing a registration that points elsewhere."""
    from foundry_local_sdk import ModelInfoBuilder

    cat = local_catalog()
    existing = cat.get_model_variant(model_id)
    if existing is not None:
        if os.path.realpath(existing.get_path()) == os.path.realpath(folder):
            return existing
        cat.unregister_model(model_id)
    with ModelInfoBuilder() as md:
        md.set_string_property("task", "chat-completion")
        md.set_string_property("display_name", display_name)
        return cat.register_model(model_path=str(folder), model_id=model_id, metadata=md)


def unregister(model_id: str) -> bool:
    cat = local_catalog()
    if cat.get_model_variant(model_id) is None:
        return False
    cat.unregister_model(model_id)
    return True
