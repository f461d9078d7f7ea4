"""Prompt sets as data: YAML (`name`, `prompts: [...]`), JSONL (one prompt per line), or
the original workshop's JSON list of strings.

A prompt: `id`, `user` (or `messages`), optional `system`, rubric `aspects`
({name: one-line description}), optional `reference`, `reference_items`, `tags`.

`reference_items` is the reference as structured data, for the `notes` scorer and the
checklist judge (meeting-notes prompts):

    reference_items:
      decisions: ["<a decision, as stated>", ...]
      action_items:
        - {owner: "<name>", task: "<what they will do>", due: "YYYY-MM-DD"}   # due: null when none
      open_questions: ["<a question left open>", ...]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.config.errors import UserError


@dataclass(frozen=True)
class ActionItem:
    owner: str
    task: str
    due: dt.date | None  # None: the transcript states no due date


@dataclass(frozen=True)
class ReferenceItems:
    decisions: tuple[str, ...] = ()
    action_items: tuple[ActionItem, ...] = ()
    open_questions: tuple[str, ...] = ()

    def count(self) -> int:
        return len(self.decisions) + len(self.action_items) + len(self.open_questions)


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple[tuple[str, str], ...]  # (role, content), system first when given
    aspects: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    tags: tuple[str, ...] = ()
    reference_items: ReferenceItems | None = None

    def user_text(self) -> str:
        return "\n".join(c for r, c in self.messages if r == "user")

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass(frozen=True)
class PromptSet:
    name: str
    path: str
    prompts: tuple[Prompt, ...]

    def digest(self) -> str:
        """Content hash: a resumed run must not mix records from a changed prompt set."""
        blob = json.dumps([[p.id, p.messages] for p in self.prompts]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load(path: str | Path, name: str | None = None, limit: int | None = None) -> PromptSet:
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UserError(f"prompt file {p} not found") from None
    except OSError as exc:
        raise UserError(f"prompt file {p}: {exc.strerror}") from None
    try:
        raw = _parse(p, text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UserError(f"prompt file {p} is malformed: {str(exc).splitlines()[0]}") from None
    if isinstance(raw, dict):
        items, set_name = raw.get("prompts"), raw.get("name")
    else:
        items, set_name = raw, None
    if not isinstance(items, list) or not items:
        raise UserError(f"prompt file {p} holds no prompts (expected a list, or a mapping with `prompts:`)")
    prompts = tuple(parse_prompt(item, i, p) for i, item in enumerate(items))
    ids = [pr.id for pr in prompts]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise UserError(f"prompt file {p}: duplicate prompt ids {', '.join(dupes)}")
    if limit is not None:
        prompts = prompts[:limit]
    return PromptSet(name or set_name or p.stem, str(p.resolve()), prompts)


def _parse(p: Path, text: str):
    if p.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if p.suffix == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=DatesAsText)


class DatesAsText(yaml.SafeLoader):
    """YAML without its implicit timestamps: `due: 2025-02-30` stays text, so the check of
    reference_items names the prompt and field of an impossible date (YAML's own error names neither)."""


DatesAsText.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def parse_prompt(item, index: int, path: Path) -> Prompt:
    """One prompt of a file (item number `index`, 0-based); UserError naming it when malformed."""
    where = f"prompt file {path}, prompt #{index + 1}"
    if isinstance(item, str):  # the workshop's format: a bare question
        if not item.strip():
            raise UserError(f"{where} is empty")
        return Prompt(id=f"p{index + 1:02d}", messages=(("user", item),))
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected a string or a mapping, got {type(item).__name__}")
    pid = str(item.get("id") or f"p{index + 1:02d}")
    messages: list[tuple[str, str]] = []
    if item.get("system"):
        messages.append(("system", str(item["system"])))
    if "messages" in item:
        for m in item["messages"] or []:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not m.get("content"):
                raise UserError(f"{where} ({pid}): each message needs a role (system/user/assistant) and content")
            messages.append((m["role"], str(m["content"])))
    elif item.get("user"):
        messages.append(("user", str(item["user"])))
    if not any(role == "user" for role, _ in messages):
        raise UserError(f"{where} ({pid}): no user message (give `user:` or `messages:`)")
    aspects = item.get("aspects") or {}
    if isinstance(aspects, list):
        aspects = {str(a): "" for a in aspects}
    if not isinstance(aspects, dict):
        raise UserError(f"{where} ({pid}): `aspects` must be a mapping of name -> description")
    ref = item.get("reference")
    items = reference_items(item["reference_items"], f"{where} ({pid})") if "reference_items" in item else None
    return Prompt(id=pid, messages=tuple(messages), aspects={str(k): str(v) for k, v in aspects.items()},
                  reference=str(ref).strip() if ref else None, tags=tuple(str(t) for t in item.get("tags") or ()),
                  reference_items=items)


REFERENCE_KEYS = ("decisions", "action_items", "open_questions")
ACTION_KEYS = ("owner", "task", "due")


def reference_items(raw, where: str) -> ReferenceItems:
    """Validate a `reference_items` block; UserError naming the prompt and the field."""
    where = f"{where}: reference_items"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with {', '.join(REFERENCE_KEYS)}")
    unknown = sorted(str(k) for k in raw if k not in REFERENCE_KEYS)
    missing = [k for k in REFERENCE_KEYS if k not in raw]
    if unknown or missing:
        raise UserError(f"{where}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing key(s) {', '.join(missing)}"] if missing else []))
            + f" (expected {', '.join(REFERENCE_KEYS)})")

    def texts(key: str) -> tuple[str, ...]:
        values = raw[key]
        if values is None:
            return ()
        if not isinstance(values, list):
            raise UserError(f"{where}.{key} must be a list of strings")
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise UserError(f"{where}.{key}[{i}] must be a non-empty string, got {v!r}")
        return tuple(v.strip() for v in values)

    actions = raw["action_items"]
    if actions is None:
        actions = []
    if not isinstance(actions, list):
        raise UserError(f"{where}.action_items must be a list of {{owner, task, due}}")
    parsed = []
    for i, a in enumerate(actions):
        at = f"{where}.action_items[{i}]"
        if not isinstance(a, dict) or set(a) != set(ACTION_KEYS):
            got = sorted(a) if isinstance(a, dict) else type(a).__name__
            raise UserError(f"{at} must be {{owner, task, due}} exactly, got {got}")
        for key in ("owner", "task"):
            if not isinstance(a[key], str) or not a[key].strip():
                raise UserError(f"{at}.{key} must be a non-empty string, got {a[key]!r}")
        parsed.append(ActionItem(a["owner"].strip(), a["task"].strip(), _iso_date(a["due"], f"{at}.due")))
    return ReferenceItems(texts("decisions"), tuple(parsed), texts("open_questions"))


def _iso_date(value, where: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):  # YAML reads 2025-03-06 as a date
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise UserError(f"{where}: {value!r} is not an ISO date (YYYY-MM-DD) or null") from None


ACCEPTANCE_KEYS = ("min", "max")


def acceptance(raw, where: str = "prompts.acceptance") -> dict[str, dict[str, float]] | None:
    """A prompt set's `acceptance` block, {min: {KEY: number}, max: {KEY: number}} over selection
    metric keys (nested or dotted: `quality: {overall: 3.5}` is `quality.overall: 3.5`), as flat
    mappings; None when not declared (null or {}). UserError naming the offending part when malformed."""
    if hasattr(raw, "items") and not isinstance(raw, dict):  # a DictConfig
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(raw, resolve=True)
    if raw is None or raw == {}:
        return None
    expected = "{min: {METRIC: number}, max: {METRIC: number}}, e.g. {min: {quality.overall: 3.5}}"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping {expected}, got {raw!r}")
    unknown = sorted(str(k) for k in raw if k not in ACCEPTANCE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (expected {expected})")
    out: dict[str, dict[str, float]] = {}
    for kind in ACCEPTANCE_KEYS:
        bars: dict[str, float] = {}
        _flat_bars(raw.get(kind), f"{where}.{kind}", "", bars, expected)
        out[kind] = bars
    if not out["min"] and not out["max"]:
        raise UserError(f"{where} declares no bar (expected {expected}; leave it out for the default)")
    return out


def _flat_bars(node, where: str, prefix: str, out: dict, expected: str) -> None:
    if node is None:
        return
    if not isinstance(node, dict):
        raise UserError(f"{where} must map metric keys to numbers ({expected}), got {node!r}")
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            _flat_bars(v, where, key, out, expected)
        elif isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            out[key] = float(v)
        else:
            raise UserError(f"{where}.{key}={v!r}: must be a number")
