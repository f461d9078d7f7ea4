"""The `selection` config (`conf/selection/default.yaml`): hard limits, a licence policy and an
objective. Hydra turns `selection.max.tpot_s.p95=0.03` into nested mappings; they are flattened
back into dotted keys here."""

from __future__ import annotations

import math
from typing import Any

from runner.config import prompts
from runner.config.errors import UserError
from runner.decide.keys import _is_num

SELECTION_KEYS = ("max", "min", "licenses", "commercial", "objective", "weights", "trust_unqualified", "acceptance",
                  "acceptance_default")
# "Fit for the task" when a prompt set declares no bars: as conf/selection/default.yaml states it
# (a selection mapping without `acceptance_default` gets these; a test holds the two equal).
DEFAULT_ACCEPTANCE = {"min": {"quality.overall": 3.0}, "max": {"degenerate.share": 0.2}}
AUTO = "auto"
AUTO_QUALITY, AUTO_SPEED = "quality.overall", "decode_tps.p50"


# ---------------------------------------------------------------------------- the selection config


def flatten(mapping: Any, where: str, prefix: str = "") -> dict[str, float]:
    """{"tpot_s": {"p95": 0.03}, "rss_mb": 1500} -> {"tpot_s.p95": 0.03, "rss_mb": 1500}.
    Hydra nests `selection.max.tpot_s.p95=0.03`; YAML may write `tpot_s.p95: 0.03`. A null value
    is no limit; a later duplicate wins (an override merged after the file)."""
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
    sel = {} if selection is None else selection
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
