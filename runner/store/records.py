"""`requests.jsonl`: one JSON object per measured request, appended and flushed as it
completes, so a crash or Ctrl-C loses nothing and a rerun resumes where it stopped."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import threading
from pathlib import Path

from runner.config.errors import UserError, output_error

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
    """Appends whole lines or nothing: each record is one write() on an O_APPEND descriptor, and a
    write that fails (disk full, read-only, vanished directory) is cut back to the last whole
    line before the error is raised, so the file never holds a partial record."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        repair_torn_line(path)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(path, exc, len(read(path))) from None
        self.kept = len(read(path))

    def append(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with self._lock:
            end = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                if os.fstat(self._fd).st_nlink == 0:  # the file (or its directory) was removed under us:
                    raise OSError(errno.ENOENT, "file removed while the job ran")  # writes would vanish
                if os.write(self._fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write: the disk filled
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, end)
                raise output_error(self.path, exc, self.kept) from None
            self.kept += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def repair_torn_line(path: Path) -> bool:
    """A last line without its newline was cut mid-write by a crash: drop it, and say so."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if not size:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    try:
        with path.open("r+b") as fh:
            fh.truncate(keep)
    except OSError as exc:
        raise output_error(path, exc) from None
    print(f"slmbench: repaired {path}: dropped a partial last line of {size - keep} bytes (an interrupted "
          f"write); its request will be run again", file=sys.stderr)
    return True


def check_manifest(job_dir: Path, manifest: dict) -> bool:
    """Write the job's identity on first run; on a rerun, refuse to mix in a changed config.

    Returns True when this is a resume of the same job."""
    path = job_dir / MANIFEST
    old = _read_manifest(path)
    if old is not None:
        if old.get("config_hash") != manifest["config_hash"]:
            raise UserError(f"{job_dir} holds records of another configuration (hash {old.get('config_hash')} "
                            f"!= {manifest['config_hash']}); use a new run directory")
        return True
    tmp = path.with_name(path.name + ".tmp")  # written whole or not at all: a full disk leaves no empty manifest
    try:
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise output_error(path, exc) from None
    return False


def _read_manifest(path: Path) -> dict | None:
    """The manifest, or None when there is none; one left empty or torn by an interrupted write
    (before manifests were written atomically) is said and replaced."""
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        print(f"slmbench: {path} was unreadable (an interrupted write); written again for this run",
              file=sys.stderr)
        return None
    return old if isinstance(old, dict) else None
