"""The `selection` config read at the edge: `slmbench run`'s overrides that reach a mapping, and
`slmbench decide`'s overrides on conf/selection/default.yaml, as a plain mapping
(runner/decide/selection.py checks and normalizes it)."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config.errors import UserError
from runner.config.paths import CONF_DIR
from runner.config.schema import search_shorthand

DEFAULT_SELECTION = CONF_DIR / "selection" / "default.yaml"


_HYDRA_MAPPING_OVERRIDE = re.compile(r"^(selection\.(max|min|weights)\.[^=]+"
                                     r"|(selection|prompts)\.acceptance(\.[^=]+)?)=")


def hydra_overrides(args: list[str]) -> list[str]:
    """`selection.max.tpot_s.p95=0.03` adds a key to a mapping, which Hydra's struct mode refuses
    without a `+`; `++` (add or override) makes such overrides work as written on `slmbench run`
    (so do `prompts.acceptance={min: {...}}` and `selection.acceptance.min.quality.overall=4`), and
    `run.search=capacity` is `run.search.mode=capacity` (runner/config/schema.py `search_shorthand`)."""
    return ["++" + a if _HYDRA_MAPPING_OVERRIDE.match(a) else a for a in search_shorthand(args)]


def load_selection(overrides: list[str], path: Path = DEFAULT_SELECTION) -> dict:
    """The default selection with `slmbench decide` overrides applied (OmegaConf dotlist).
    `selection.` prefixes, Hydra's `+`/`++` and `~key` (remove) are accepted."""
    try:
        base = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException) as exc:
        raise UserError(f"selection config {path}: {str(exc).splitlines()[0]}") from None
    dotlist = []
    for raw in overrides:
        item = raw.strip().lstrip("+")
        removal = item.startswith("~")
        item = item.lstrip("~")
        if item.startswith("selection."):
            item = item[len("selection."):]
        if removal:
            item = item.split("=", 1)[0] + "=null"
        if "=" not in item or not item.split("=", 1)[0]:
            raise UserError(f"selection override '{raw}' must be KEY=VALUE (e.g. max.e2e_s.p95=2.0)")
        key, value = item.split("=", 1)
        if key == "objective":  # objective=e2e_s.p50 means objective.metric=e2e_s.p50
            key = "objective.metric"
        dotlist.append(f"{key}={value}")
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as exc:
        raise UserError(f"selection overrides {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
    return OmegaConf.to_container(merged, resolve=True)
