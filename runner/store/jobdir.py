"""The job folder: the one module that knows its file names, how each file is read and written,
and which schema version a folder was written with.

A job folder holds (docs/outputs.md):
- `requests.jsonl`: the measurement log, appended as requests complete and never rewritten;
- `scores.jsonl`: the deterministic scorers' results per answer (rewritten whole at each grading:
  derived, cheap, recomputed every time);
- `judgements.jsonl`: every judge grading, appended as it happens;
- `qualification.json`, `summary.json`, `summary.csv`, `report.md`, `job.json` (the manifest).

Grades live in their own files and are joined to the records when read (`graded_records`), so
the measurement log stays as it was measured.

Schema versions: 1 (no `schema_version` in summary.json) folded `scores` and `judge` into
requests.jsonl after grading and named `definitions` by their old names; 2 keeps grades apart and
names every number as runner/metrics/catalog.py does. A version-1 folder still reads: its records carry
their grades inline and the join leaves them be. A folder from a newer version is refused with
its version named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.config.errors import UserError
from runner.store import records
from runner.store.summary_shape import SCHEMA_VERSION, Summary

REQUESTS = records.REQUESTS
MANIFEST = records.MANIFEST
SCORES = "scores.jsonl"
JUDGEMENTS = "judgements.jsonl"
QUALIFICATION = "qualification.json"
SUMMARY = "summary.json"
SUMMARY_CSV = "summary.csv"
REPORT = "report.md"
OPEN_LOOP = "load.json"  # written when an open-loop window completes: a rerun skips it
CAPACITY = "capacity.json"  # the capacity search's finished load points: a rerun replays them
INTERRUPTED = "requests.interrupted.jsonl"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The finished jobs of a sweep directory (those with a summary), by name."""
    return sorted(p.parent for p in sweep_dir.glob(f"*/{SUMMARY}"))


# ---- records ---------------------------------------------------------------------------------

def measured(job_dir: Path) -> list[dict]:
    """The job's records as measured, one per (round, prompt_id): a retry replaces its failure."""
    return records.latest_per_key(records.read(job_dir / REQUESTS))


def ok_records(job_dir: Path, judge: str | None = None, graded: bool = True) -> list[dict]:
    """The job's successful requests, with their grades joined (see `graded_records`) unless
    `graded` is false (the measuring code needs the timings only)."""
    recs = graded_records(job_dir, judge) if graded else measured(job_dir)
    return [r for r in recs if r["status"] == "ok"]


def graded_records(job_dir: Path, judge: str | None = None) -> list[dict]:
    """The measured records with `scores` (scores.jsonl) and `judge` (the first grading of the
    named judge, else of the judge the summary names, from judgements.jsonl) joined on
    (round, prompt_id). A record that already carries them (a version-1 folder, a baseline
    copy) keeps its own."""
    recs = measured(job_dir)
    scores = {(s["round"], s["prompt_id"]): s["scores"] for s in records.read(job_dir / SCORES)}
    judge = judge or _summary_judge(job_dir)
    grades = {(j["round"], j["prompt_id"]): j for j in latest_judgements(job_dir, judge)
              if j["repeat"] == 0 and j["probe"] is None} if judge else {}
    for r in recs:
        key = (r["round"], r["prompt_id"])
        if key in scores:
            r["scores"] = scores[key]
        g = grades.get(key)
        if g is not None:
            r["judge"] = {"model": judge, "scores": g["scores"], "rationales": g["rationales"], "error": g["error"]}
    return recs


def _summary_judge(job_dir: Path) -> str | None:
    try:
        return (json.loads((job_dir / SUMMARY).read_text()).get("quality") or {}).get("judge")
    except (OSError, ValueError):
        return None


def write_scores(job_dir: Path, rows: list[dict]) -> None:
    """The scorers' results, one line per answer: {round, prompt_id, scores} (atomic replace)."""
    write_whole(job_dir / SCORES, "".join(json.dumps({"round": r["round"], "prompt_id": r["prompt_id"],
                                                    "scores": r["scores"]}, ensure_ascii=False) + "\n"
                                       for r in rows))


# ---- judgements ------------------------------------------------------------------------------

def judgements(job_dir: Path) -> list[dict]:
    return records.read(job_dir / JUDGEMENTS)


def latest_judgements(job_dir: Path, judge: str | None = None) -> list[dict]:
    """One judgement per (judge, round, prompt, repeat, probe): a successful retry wins."""
    seen: dict[tuple, dict] = {}
    for j in judgements(job_dir):
        if judge and j.get("judge_model") != judge:
            continue
        key = (j["judge_model"], j["round"], j["prompt_id"], j["repeat"], j["probe"])
        if key not in seen or not j.get("error") or seen[key].get("error"):
            seen[key] = j
    return list(seen.values())


def judges(job_dir: Path) -> list[str]:
    """Every judge that graded this job, in name order."""
    return sorted({j["judge_model"] for j in judgements(job_dir) if j.get("judge_model")})


def judgement_writer(job_dir: Path) -> records.RecordWriter:
    return records.RecordWriter(job_dir / JUDGEMENTS)


# ---- qualifications --------------------------------------------------------------------------

def read_qualifications(job_dir: Path) -> dict[str, dict]:
    path = job_dir / QUALIFICATION
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def write_qualifications(job_dir: Path, fresh: dict[str, dict]) -> None:
    """Merge into qualification.json: a rerun with nothing left to judge keeps the judge's figures."""
    known = read_qualifications(job_dir)
    known.update(fresh)
    write_whole(job_dir / QUALIFICATION, json.dumps(known, indent=2))


# ---- summary ---------------------------------------------------------------------------------

def write_summary(job_dir: Path, summary: Summary) -> None:
    write_whole(job_dir / SUMMARY, json.dumps(summary.to_dict(), indent=2))


def read_summary(job_dir: Path) -> Summary:
    """A job's summary.json, checked for a version this code reads."""
    path = job_dir / SUMMARY
    try:
        s = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{job_dir}: no {SUMMARY} (an unfinished run?); rerun it into the same dir to finish") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(s, dict):
        raise UserError(f"{path}: not a job summary (a JSON object)")
    return Summary.from_dict(check_version(s, path))


def check_version(s: dict, where: Path | str) -> dict:
    version = s.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(f"{where}: written with job-folder schema version {version}; this slmbench reads up to "
                        f"{SCHEMA_VERSION} (upgrade slmbench)")
    return s


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temp file, synced, renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
