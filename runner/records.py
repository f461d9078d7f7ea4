"""`requests.jsonl`: one JSON object per measured request, appended and flushed as it
completes, so a crash or Ctrl-C loses nothing and a rerun resumes where it stopped."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from runner.errors import UserError

REQUESTS = "requests.jsonl"
MANIFEST = "job.json"


def read(path: Path) -> list[dict]:
    """Every complete record; a torn last line (killed mid-write) is ignored."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def latest_per_key(records: list[dict]) -> list[dict]:
    """One record per (round, prompt_id): a retried request replaces its failed attempt."""
    seen: dict[tuple, dict] = {}
    for r in records:
        seen[(r["round"], r["prompt_id"])] = r
    return list(seen.values())


class RecordWriter:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        # Repair a torn last line so the next record starts on a line of its own.
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("a") as fh:
                fh.write("\n")
        self._fh = path.open("a", encoding="utf-8")

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def check_manifest(job_dir: Path, manifest: dict) -> bool:
    """Write the job's identity on first run; on a rerun, refuse to mix in a changed config.

    Returns True when this is a resume of the same job."""
    path = job_dir / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("config_hash") != manifest["config_hash"]:
            raise UserError(f"{job_dir} holds records of another configuration (hash {old.get('config_hash')} "
                            f"!= {manifest['config_hash']}); use a new run directory")
        return True
    path.write_text(json.dumps(manifest, indent=2))
    return False
