"""Metric keys of the decision: a selection key names a number of summary.json by its one dotted
name (runner/metrics/catalog.py). Keys are resolved first under `metrics.`, then at the top
level, then under `quality.`: `e2e_s.p95` is `metrics.e2e_s.p95`, `rss_mb` is the top-level
`rss_mb`, `quality.overall` is `quality.overall.mean`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runner.config.errors import UserError
from runner.metrics import catalog

DISTRIBUTIONS = tuple(k for k, m in catalog.SPECS.items() if m.level == catalog.REQUEST and m.where[0] == "metrics")
STATS = catalog.STATS
OPEN_PREFIXES = tuple(f"{f}." for f in catalog.FAMILIES)  # names come from the prompt set / scorers / graders
KNOWN = tuple(catalog.known_keys())
KNOWN_TEXT = ("{" + ",".join(DISTRIBUTIONS) + "}.{" + ",".join(STATS) + "}, "
              + ", ".join(k for k, m in catalog.SPECS.items() if m.level == catalog.JOB)
              + ", quality.overall[.{" + ",".join(STATS) + "}], " + ", ".join(f"{f}.<name>" for f in catalog.FAMILIES))

# The Pareto dimensions: (metric key, what it stands for, goal).
_MISSING = object()

# ---------------------------------------------------------------------------- metric keys


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _walk(node: Any, parts: tuple[str, ...]) -> Any:
    """Follow `parts` into nested mappings; a key may itself hold dots (scorer field `rouge_l.f1`)."""
    if not parts:
        return node
    if not isinstance(node, dict):
        return _MISSING
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in node:
            found = _walk(node[key], parts[i:])
            if found is not _MISSING:
                return found
    return _MISSING


@dataclass(frozen=True)
class Metric:
    key: str  # as shown: "e2e_s.p95", "rss_mb", "quality.overall"
    path: tuple[str, ...]  # into summary.json

    def _node(self, summary: dict) -> Any:
        if self.key in catalog.DERIVED:  # named after a field's value, not found at a path
            return catalog.derived(summary).get(self.key)
        node = _walk(summary, self.path)
        return None if node is _MISSING else node

    def value(self, summary: dict) -> float | None:
        node = self._node(summary)
        if isinstance(node, dict):
            node = node.get("mean")
        if isinstance(node, bool):  # a flag (quality.trusted) is 1 or 0, as in runner/catalog.flatten
            return float(node)
        return float(node) if _is_num(node) and math.isfinite(node) else None

    def ci(self, summary: dict) -> list[float] | None:
        """The 95% CI that stands for this metric's noise: the `ci95` (of the median) of the
        distribution the value comes from (`metrics.<name>.ci95`, `quality.overall.ci95`)."""
        node = self._node(summary)
        holder = node if isinstance(node, dict) else _walk(summary, self.path[:-1])
        ci = holder.get("ci95") if isinstance(holder, dict) else None
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_num(x) for x in ci):
            return [float(min(ci)), float(max(ci))]
        return None

    @property
    def unit(self) -> str:
        return catalog.unit(self.key)

    @property
    def noise_source(self) -> str:
        if self.path[0] == "metrics" and len(self.path) == 3:
            return f"95% CI of the median of {self.path[1]}"
        if self.path[:2] == ("quality", "overall"):
            return "95% CI of the median of quality.overall"
        return "none (a per-job value without a distribution)"


def inferred_goal(key: str) -> str | None:
    """max or min for a metric whose better direction is known (runner/metrics/catalog.py), else None."""
    return {catalog.LOWER: "min", catalog.HIGHER: "max"}.get(catalog.better(key))


def resolve_key(key: str, summaries: list[dict], where: str) -> Metric:
    """The metric a selection key names: tried under `metrics.`, then the top level, then
    `quality.`, against every summary, then against the known metric list."""
    text = str(key).strip()
    if text.startswith("metrics."):
        text = text[len("metrics."):]
    parts = tuple(text.split("."))
    if not text or "" in parts:
        raise UserError(f"{where}: '{key}' is not a metric key (known: {KNOWN_TEXT})")
    if parts[0] in DISTRIBUTIONS and len(parts) == 1:
        raise UserError(f"{where}: '{key}' is a distribution: name a statistic, e.g. {text}.p50 or {text}.p95 "
                        f"(one of {', '.join(STATS)})")
    for path, shown in ((("metrics", *parts), text), (parts, text), (("quality", *parts), f"quality.{text}")):
        nodes = [n for n in (_walk(s, path) for s in summaries) if n is not _MISSING]
        if not nodes:
            continue
        for node in nodes:
            if path[0] == "metrics" and len(path) == 2:
                raise UserError(f"{where}: '{key}' is a distribution: name a statistic, e.g. {text}.p50")
            if node is None or _is_num(node) or isinstance(node, bool) or (
                    isinstance(node, dict) and _is_num(node.get("mean"))):
                continue
            kind = "a group of values" if isinstance(node, dict) else f"not a number ({node!r})"
            raise UserError(f"{where}: '{key}' names {kind} in summary.json, not a metric (known: {KNOWN_TEXT})")
        return Metric(shown, path)
    if text in KNOWN or text.startswith(OPEN_PREFIXES):
        return Metric(text, ("metrics", *parts) if parts[0] in DISTRIBUTIONS else parts)
    raise UserError(f"{where}: '{key}' names no metric in the sweep's summaries or the known metrics "
                    f"(known: {KNOWN_TEXT})")
