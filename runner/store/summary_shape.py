"""The typed shape of `summary.json`: one field per top-level key, written and read through
`Summary` (runner/store/jobdir.py `write_summary` / `read_summary`).

A Summary is also a read-only mapping of its keys (`s["metrics"]`, `s.get("quality")`), so a
reader may treat it as the JSON it is; nested sections stay plain dicts, their numbers named by
runner/metrics/catalog.py. Keys this version does not know (a folder of another version) are kept
in `extra` and still read; keys an older version did not write read as None.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# The job folder's layout version (runner/store/jobdir.py says what each version changed).
SCHEMA_VERSION = 2


@dataclass(eq=False)
class Summary(Mapping):
    # the job: what ran, under which name
    model: str | None = None  # the label of the model that ran (runner/config/labels.py)
    name: str | None = None  # unique within its sweep: the label and the overrides that set it apart
    distinguishing: list = field(default_factory=list)
    model_alias: str | None = None
    model_id: str | None = None
    prompts: str | None = None
    # how it went
    status: str | None = None  # ok | failed
    error: str | None = None
    partial: bool = False
    n: int = 0  # ok measured requests
    n_errors: int = 0
    n_expected: int | None = None
    errors: dict = field(default_factory=dict)  # the five most common errors -> count
    # the figures (runner/metrics/catalog.py names each number)
    metrics: dict = field(default_factory=dict)  # per request: key -> stats.summarize
    load_s: float | None = None
    rss_mb: float | None = None
    rss_before_load_mb: float | None = None
    rss_peak_mb: float | None = None
    disk_mb: float | None = None
    license: str | None = None
    precision: str | None = None
    params_m: float | None = None
    throughput: dict | None = None
    load: dict | None = None
    goodput: dict | None = None
    capacity: dict | None = None  # run.search=capacity: over, passing, failing, first_failed, goodput, points
    energy: dict | None = None
    determinism: dict | None = None
    tokens_estimated: bool = False
    finish_reasons: dict = field(default_factory=dict)
    empty_answers: int = 0
    no_finish_reason: int = 0
    truncation: dict | None = None
    degenerate: dict | None = None  # runner/metrics/degenerate.py: each class's share of the answers
    cap: dict | None = None  # the token cap the job ran under, and how it was set (runner/measure/cap.py)
    acceptance: dict | None = None  # the prompt set's bars of "fit for the task" (prompts.acceptance)
    token_count_check: dict | None = None
    client: dict | None = None
    warmup: dict | None = None
    rounds: int | None = None
    adaptive: dict | None = None
    # where and how it ran
    job_wall: dict | None = None
    launcher: str | None = None
    resumed: bool = False
    skipped_done: int = 0
    config_hash: str | None = None
    config: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    device: dict | None = None
    environment: dict | None = None
    definitions: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)  # judges/quality.py
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)  # keys of another version, kept as read

    def __getitem__(self, key: str) -> Any:
        if key in KEYS:
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        yield from KEYS
        yield from self.extra

    def __len__(self) -> int:
        return len(KEYS) + len(self.extra)

    def to_dict(self) -> dict:
        """The JSON object of summary.json."""
        return {**{k: getattr(self, k) for k in KEYS}, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping) -> Summary:
        known = {k: v for k, v in data.items() if k in KEYS}
        if "schema_version" not in data:
            known["schema_version"] = 1  # version 1 wrote no version
        return cls(**known, extra={k: v for k, v in data.items() if k not in KEYS})


KEYS = tuple(f.name for f in fields(Summary) if f.name != "extra")


def in_process(summary: Mapping) -> bool:
    """Whether the job's backend held the model in this process (its capabilities, as recorded)."""
    backend = (summary.get("config") or {}).get("backend") or {}
    return (backend.get("capabilities") or {}).get("in_process", True)
