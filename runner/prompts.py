"""Prompt sets as data: YAML (`name`, `prompts: [...]`), JSONL (one prompt per line), or
the original workshop's JSON list of strings.

A prompt: `id`, `user` (or `messages`), optional `system`, rubric `aspects`
({name: one-line description}), optional `reference`, `tags`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.errors import UserError


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple[tuple[str, str], ...]  # (role, content), system first when given
    aspects: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    tags: tuple[str, ...] = ()

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
    prompts = tuple(_prompt(item, i, p) for i, item in enumerate(items))
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
    return yaml.safe_load(text)


def _prompt(item, index: int, path: Path) -> Prompt:
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
    return Prompt(id=pid, messages=tuple(messages), aspects={str(k): str(v) for k, v in aspects.items()},
                  reference=str(ref).strip() if ref else None, tags=tuple(str(t) for t in item.get("tags") or ()))
