"""`annotations.csv`: the judge's scores laid out for a person to score too.

One row per graded answer and rubric aspect, with an excerpt of the answer, the judge's score
and blank `human_score` / `notes` columns to fill in with any spreadsheet. Writing again (after
more rounds, or a re-grade) refreshes the judge's columns and adds new rows, and never loses a
human score already entered. `judges/agreement.py` reads the file back, strictly.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from runner.config.errors import UserError
from runner.store import jobdir

ANNOTATIONS = "annotations.csv"
COLUMNS = ["prompt_id", "model", "round", "aspect", "output", "judge_score", "human_score", "notes"]
KEY = ("prompt_id", "model", "round", "aspect")
_SCORE = re.compile(r"^\s*([1-5])(?:\.0*)?\s*$")  # "3", " 3 ", and "3.0" as some spreadsheets save it


def _graded(record: dict) -> dict | None:
    """The record's judge scores, or None when it was not (successfully) graded."""
    j = record.get("judge")
    if record.get("status") != "ok" or not isinstance(j, dict) or j.get("error") or not j.get("scores"):
        return None
    return j["scores"]


def row_key(row: dict) -> tuple[str, str, str, str]:
    rnd = str(row.get("round", "")).strip()
    try:
        rnd = str(int(float(rnd)))  # "1" and "1.0" are the same round
    except ValueError:
        pass
    return (str(row.get("prompt_id", "")), str(row.get("model", "")), rnd, str(row.get("aspect", "")))


def _fresh_rows(job_dir: Path, excerpt_chars: int) -> list[dict]:
    if not (job_dir / jobdir.REQUESTS).exists():
        raise UserError(f"no {jobdir.REQUESTS} in {job_dir}: not a job directory")
    rows = []
    for r in jobdir.graded_records(job_dir):  # a retried request replaces its failed attempt
        scores = _graded(r)
        if not scores:
            continue
        excerpt = (r.get("output") or "")[:excerpt_chars]
        for aspect, score in scores.items():
            rows.append({"prompt_id": r["prompt_id"], "model": r["model"], "round": r["round"],
                         "aspect": aspect, "output": excerpt, "judge_score": score,
                         "human_score": "", "notes": ""})
    return rows


def _existing_rows(path: Path) -> list[dict]:
    """The rows of an existing file, leniently: human entries are kept verbatim."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in KEY if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path} lacks the columns {', '.join(missing)}: cannot merge new rows into it "
                            "without losing human scores; move it aside and run again")
        return [{c: (row.get(c) or "") for c in COLUMNS} for row in reader]


def write_annotations(job_dir: Path, excerpt_chars: int = 300) -> Path:
    """Write (or refresh) `job_dir/annotations.csv` and return its path.

    Rows: every ok record that the judge graded, one per aspect of its scores. An existing
    file keeps its row order and its human_score / notes (matched on prompt_id, model, round,
    aspect); the output excerpt and judge_score are refreshed; new rows go at the end. Rows
    no longer in requests.jsonl are kept as they are, so no human score is ever lost."""
    job_dir = Path(job_dir)
    path = job_dir / ANNOTATIONS
    fresh = {row_key(r): r for r in _fresh_rows(job_dir, excerpt_chars)}
    out: list[dict] = []
    seen: set[tuple] = set()
    if path.exists():
        for old in _existing_rows(path):
            k = row_key(old)
            if k in fresh and k not in seen:
                out.append({**fresh[k], "human_score": old["human_score"], "notes": old["notes"]})
            else:
                out.append(old)
            seen.add(k)
    out += [r for k, r in fresh.items() if k not in seen]

    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(out)
    os.replace(tmp, path)  # a crash mid-write never leaves a half file over human work
    return path


def _score(value: str, name: str, where: str) -> int | None:
    if value is None or not value.strip():
        return None
    m = _SCORE.match(value)
    if not m:
        raise UserError(f"{where}, column {name}: {value!r} is not an integer 1-5")
    return int(m.group(1))


def read_annotations(path: Path) -> list[dict]:
    """The annotated rows of an annotations file (blank human_score = not annotated: skipped).

    Each row: prompt_id, model, round (int), aspect, output, judge_score (int or None),
    human_score (int), notes. Raises UserError, naming the row as a spreadsheet numbers it
    (header = row 1) and the column, on a missing file, missing columns, a score that is not
    an integer 1-5, a round that is not an integer, or an annotated row repeated."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found")
    out: list[dict] = []
    first_row: dict[tuple, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path.name} lacks the columns {', '.join(missing)} "
                            f"(expected: {', '.join(COLUMNS)})")
        for i, row in enumerate(reader, start=2):
            where = f"{path.name} row {i}"
            if None in row:  # more cells than header columns
                raise UserError(f"{where}: {len(row[None])} cell(s) beyond the last column")
            judge = _score(row["judge_score"], "judge_score", where)
            human = _score(row["human_score"], "human_score", where)
            if human is None:
                continue
            try:
                rnd = int(row["round"].strip())
            except (AttributeError, ValueError):
                raise UserError(f"{where}, column round: {row['round']!r} is not an integer") from None
            key = row_key(row)
            if key in first_row:
                raise UserError(f"{where} repeats the prompt_id, model, round and aspect of row {first_row[key]}")
            first_row[key] = i
            out.append({"prompt_id": row["prompt_id"], "model": row["model"], "round": rnd,
                        "aspect": row["aspect"], "output": row["output"], "judge_score": judge,
                        "human_score": human, "notes": row["notes"] or ""})
    return out
