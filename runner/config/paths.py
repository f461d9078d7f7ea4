"""Where things live: the project's config tree and the per-user cache (SLMBENCH_HOME)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # runner/config/paths.py -> the project
CONF_DIR = PROJECT_ROOT / "conf"


def home() -> Path:
    """Cache root: weights, converted models, the Foundry Local cache and user configs."""
    return Path(os.environ.get("SLMBENCH_HOME") or Path.home() / ".cache" / "slmbench").expanduser().resolve()


def weights_dir() -> Path:
    return home() / "weights"


def hf_dir() -> Path:
    return home() / "hf"


def models_dir() -> Path:
    return home() / "models"


def foundry_dir() -> Path:
    return home() / "foundry"


def user_conf_dir() -> Path:
    """Extra Hydra search path: `models import` writes `model/NAME.yaml` here."""
    return home() / "conf"
