"""Results as pandas DataFrames, for a notebook: `runner.results.load(path)`.

    from runner import results
    r = results.load("outputs/sweeps/2026-12-02_10-00-00")   # a sweep, a job, or a list of them
    r.summaries[["name", "run.concurrency", "ttft_s.p95", "throughput.requests_per_s"]]
    r.records.groupby("run.concurrency")["ttft_s"].quantile(0.95)

Two frames (`Results`):

- `records`: one row per measured request, as the job folder reads them (runner/store/jobdir.py
  `graded_records`: a retried request replaces its failure; the scorers' and the judge's grades
  joined), nested fields flattened with dots (`itl.p50_s`, `scores.notes.score`,
  `judge.scores.clarity`);
- `summaries`: one row per finished job (one with a summary.json): the columns of summary.csv
  under the same names (runner/store/summary.py `flat_row`), then every other number of
  summary.json under its one name (runner/metrics/catalog.py `flatten`).

Both begin with `job` (the folder's name), `path` (absolute) and `sweep` (the sweep folder's name,
None for a job of its own), and end with the job's config keys as dotted columns (`model.alias`,
`run.concurrency`, `decoding.temperature`, ...): the composed config Hydra wrote into
`.hydra/config.yaml`, resolved (without one, summary.json's `config`). Each number is in its
catalog unit (`runner.metrics.catalog.unit(name)`; every summary.json also states them under
`definitions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from runner.config.errors import UserError
from runner.config.plan import written_config
from runner.metrics import catalog
from runner.store import jobdir
from runner.store.summary import flat_row

SWEEP_MARKERS = ("multirun.yaml", "slmbench-sweep.json")  # what makes a job's parent folder a sweep


class Results(NamedTuple):
    records: pd.DataFrame  # one row per measured request
    summaries: pd.DataFrame  # one row per finished job


def load(path: str | Path | Iterable[str | Path]) -> Results:
    """The records and summaries of a sweep folder, a job folder, or a list of them."""
    records, summaries = [], []
    for job in job_folders(path):
        head = {"job": job.name, "path": str(job.resolve()), "sweep": _sweep_of(job)}
        config = _config(job)
        for r in jobdir.graded_records(job):
            records.append({**head, **_flat(r), **config})
        if (job / jobdir.SUMMARY).is_file():
            s = jobdir.read_summary(job)
            row = flat_row(s, job.name)
            numbers = {k: v for k, v in catalog.flatten(s).items() if k not in row}
            summaries.append({**head, **row, **numbers, **config})
    return Results(pd.DataFrame(records), pd.DataFrame(summaries))


def job_folders(path: str | Path | Iterable[str | Path]) -> list[Path]:
    """The job folders a path (or list of paths) names: itself when it is a job (it holds a
    summary.json or a requests.jsonl), else its jobs in sweep order."""
    out: list[Path] = []
    for p in map(Path, [path] if isinstance(path, str | Path) else path):
        if not p.is_dir():
            raise UserError(f"{p}: no such folder")
        if _is_job(p):
            out.append(p)
            continue
        jobs = sorted((c for c in p.iterdir() if c.is_dir() and _is_job(c)), key=_sweep_order)
        if not jobs:
            raise UserError(f"{p}: neither a job folder ({jobdir.SUMMARY} or {jobdir.REQUESTS}) nor a sweep folder "
                            f"of them")
        out += jobs
    return out


def _is_job(p: Path) -> bool:
    return (p / jobdir.SUMMARY).is_file() or (p / jobdir.REQUESTS).is_file()


def _sweep_order(p: Path) -> tuple[int, str]:
    head = p.name.split("_", 1)[0]  # Hydra numbers a sweep's jobs: 0_..., 1_..., 10_...
    return (int(head) if head.isdigit() else 0, p.name)


def _sweep_of(job: Path) -> str | None:
    return job.parent.name if any((job.parent / m).is_file() for m in SWEEP_MARKERS) else None


def _config(job: Path) -> dict[str, Any]:
    """The job's config keys as dotted columns."""
    config = written_config(job)
    if not config and (job / jobdir.SUMMARY).is_file():
        config = jobdir.read_summary(job).get("config") or {}
    return _flat(config)


def _flat(node: dict, prefix: str = "") -> dict[str, Any]:
    """{"itl": {"p50_s": 0.01}} -> {"itl.p50_s": 0.01}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out
