"""The `selection` config (`conf/selection/default.yaml`): hard limits, a licence policy and an
objective. Hydra turns `selection.max.tpot_s.p95=0.03` into nested mappings; they are flattened
back into dotted keys here."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config import prompts
from runner.config.errors import UserError
from runner.config.paths import CONF_DIR
from runner.config.schema import search_shorthand
from runner.decide.keys import _is_num

DEFAULT_SELECTION = CONF_DIR / "selection" / "default.yaml"
SELECTION_KEYS = ("max", "min", "licenses", "commercial", "objective", "weights", "trust_unqualified", "acceptance",
                  "acceptance_default")
# "Fit for the task" when a prompt set declares no bars: as conf/selection/default.yaml states it
# (a selection mapping without `acceptance_default` gets these; a test holds the two equal).
DEFAULT_ACCEPTANCE = {"min": {"quality.overall": 3.0}, "max": {"degenerate.share": 0.2}}
AUTO = "auto"
AUTO_QUALITY, AUTO_SPEED = "quality.overall", "decode_tps.p50"


# ---------------------------------------------------------------------------- the selection config


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def flatten(mapping: Any, where: str, prefix: str = "") -> dict[str, float]:
    """{"tpot_s": {"p95": 0.03}, "rss_mb": 1500} -> {"tpot_s.p95": 0.03, "rss_mb": 1500}.
    Hydra nests `selection.max.tpot_s.p95=0.03`; YAML may write `tpot_s.p95: 0.03`. A null value
    is no limit; a later duplicate wins (an override merged after the file)."""
    mapping = _plain(mapping)
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise UserError(f"selection.{where} must map metric keys to numbers, got {mapping!r}")
    out: dict[str, float] = {}
    for k, v in mapping.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            for kk, vv in flatten(v, where, key).items():
                out.pop(kk, None)
                out[kk] = vv
        elif v is None:
            out.pop(key, None)
        elif _is_num(v) and math.isfinite(v):
            out.pop(key, None)
            out[key] = v
        else:
            raise UserError(f"selection.{where}.{key}={v!r}: must be a number")
    return out


def normalize_selection(selection: Any) -> dict:
    """The selection as a plain dict with flat limit and weight keys; UserError when malformed."""
    sel = _plain(selection)
    if sel is None:
        sel = {}
    if not isinstance(sel, dict):
        raise UserError(f"selection must be a mapping, got {sel!r}")
    unknown = sorted(str(k) for k in sel if k not in SELECTION_KEYS)
    if unknown:
        raise UserError(f"unknown selection key(s) {', '.join(unknown)} (known: {', '.join(SELECTION_KEYS)})")
    licenses = sel.get("licenses")
    if isinstance(licenses, str):
        licenses = [licenses]
    if licenses is not None and (not isinstance(licenses, list) or not all(isinstance(x, str) for x in licenses)):
        raise UserError(f"selection.licenses must be a list of licence names, got {licenses!r}")
    commercial = sel.get("commercial")
    if commercial is not None and not isinstance(commercial, bool):
        raise UserError(f"selection.commercial must be true or false, got {commercial!r}")
    objective = sel.get("objective")
    if objective is None:
        objective = {}
    if isinstance(objective, str):
        objective = {"metric": objective}
    if not isinstance(objective, dict) or set(objective) - {"metric", "goal"}:
        raise UserError(f"selection.objective must be {{metric: KEY, goal: max|min}}, got {objective!r}")
    goal = objective.get("goal")
    if goal is not None:
        goal = {"maximize": "max", "minimize": "min"}.get(str(goal).lower(), str(goal).lower())
        if goal not in ("max", "min"):
            raise UserError(f"selection.objective.goal={objective['goal']!r}: must be max or min (or null)")
    metric = objective.get("metric")
    trust = sel.get("trust_unqualified")
    if trust is not None and not isinstance(trust, bool):
        raise UserError(f"selection.trust_unqualified must be true or false, got {trust!r}")
    # acceptance: absent from a hand-made mapping = not asked (None); true / false / explicit bars
    raw_acc = sel.get("acceptance")
    if raw_acc is None or isinstance(raw_acc, bool):
        acc = raw_acc
    elif isinstance(raw_acc, dict):
        acc = prompts.acceptance(raw_acc, "selection.acceptance")
    else:
        raise UserError(f"selection.acceptance must be true, false or {{min: {{...}}, max: {{...}}}}, got {raw_acc!r}")
    default = sel.get("acceptance_default")
    default = DEFAULT_ACCEPTANCE if default is None else prompts.acceptance(default, "selection.acceptance_default")
    return {"acceptance": acc, "acceptance_default": default,
            "max": flatten(sel.get("max"), "max"), "min": flatten(sel.get("min"), "min"),
            "trust_unqualified": bool(trust),
            "licenses": list(licenses) if licenses else None, "commercial": bool(commercial),
            "objective": {"metric": str(metric) if metric not in (None, "") else AUTO, "goal": goal},
            "weights": {k: v for k, v in flatten(sel.get("weights"), "weights").items()}}



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
    return _plain(merged)
