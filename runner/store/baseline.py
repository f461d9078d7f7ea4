"""Versioned baselines: `slmbench run ... +baseline=NAME` keeps a compact, diff-friendly copy
of each job under `outputs/baselines/NAME/` (committed), which `compare` accepts by name."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from runner.config.errors import UserError
from runner.store import jobdir
from runner.store.jobdir import REQUESTS, SUMMARY

KEEP = ["model", "model_id", "prompt_id", "round", "status", "error", "ttft_s", "e2e_s", "tpot_s", "decode_tps",
        "prompt_tokens", "completion_tokens", "tokens_estimated", "finish_reason", "output", "scores", "judge"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _round(v):
    return round(v, 6) if isinstance(v, float) else v


def save(job_dir: Path, name: str, subdir: str | None) -> Path:
    if not NAME.match(name):
        raise UserError(f"baseline name '{name}' must be letters, digits, '.', '_' or '-'")
    target = Path("outputs") / "baselines" / name / (subdir or "")
    target.mkdir(parents=True, exist_ok=True)
    summary = jobdir.read_summary(job_dir)
    (target / SUMMARY).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
    recs = sorted(jobdir.graded_records(job_dir), key=lambda r: (r["round"], r["prompt_id"]))
    with (target / REQUESTS).open("w") as fh:  # a self-contained copy: grades inline
        for r in recs:
            fh.write(json.dumps({k: _round(r.get(k)) for k in KEEP if k in r}, sort_keys=True) + "\n")
    hydra_cfg = job_dir / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        shutil.copy(hydra_cfg, target / "config.yaml")
    return target
