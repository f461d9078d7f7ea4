"""What MLflow tracking adds to a job's wall time on the default SQLite store (issue 14: at most 1 s).

A real finished job directory is made first: `slmbench run` against the scripted OpenAI-compatible
server (tests/scripted_server.py) over the meeting-notes set (10 prompts x 2 rounds = 20 measured
requests), graded by the notes scorer and the default scorers, with tracking off. Then, in this
process, as `runner/app.py` does after each job of a sweep, the job is logged N times into a fresh
SQLite store: `Tracker(uri, experiment)` + `Tracker.log_job` (the run with its params, metrics and
per-request series, the files as artifacts, every request as a trace with its grades as
assessments, the prompt set as an evaluation dataset). The first job of a process pays for
creating the store and importing MLflow's tracing modules; the later jobs of a sweep do not.

Run: .venv/bin/python benchmarks/tracking.py [--jobs 4]
Prints the wall seconds of each job's tracking, split into its steps, and the mean of the warm jobs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

LIMIT_S = 1.0


def make_job(root: Path) -> Path:
    from scripted_server import Script, ScriptedServer

    job = root / "job"
    with ScriptedServer(Script(ttft_s=0.005, tpot_s=0.001, tokens=40, model_ids=("bench-model",))) as srv:
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "slmbench"), "run", "backend=openai",
                               f"backend.base_url={srv.base_url}", "model.id=bench-model", "prompts=meeting-notes",
                               "run.rounds=2", "run.warmup=0", "judge=none", "tracking.enabled=false",
                               f"hydra.run.dir={job}"], capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        sys.exit(f"making the job failed:\n{done.stderr}")
    return job


def timed_steps(tracker, job: Path, config: dict) -> dict[str, float]:
    """Tracker.log_job with each step timed (the same calls, in the same order)."""
    steps: dict[str, float] = {}
    for name in ("_log_numbers", "_log_files", "_log_requests"):
        original = getattr(tracker, name)

        def wrapped(*args, _original=original, _name=name, **kwargs):
            t = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                steps[_name.strip("_")] = time.perf_counter() - t

        setattr(tracker, name, wrapped)
    t = time.perf_counter()
    tracker.log_job(job, config)
    steps["log_job"] = time.perf_counter() - t
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4, help="jobs logged in one process (first is cold)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="slmbench-bench-tracking-") as tmp:
        root = Path(tmp)
        job = make_job(root)
        n_requests = sum(1 for _ in (job / "requests.jsonl").open())
        uri = f"sqlite:///{root / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        t = time.perf_counter()
        import mlflow  # noqa: F401  (what the first Tracker would import)

        from runner.config.plan import written_config
        from runner.track import tracking

        import_s = time.perf_counter() - t
        config = written_config(job)
        print(f"job: {n_requests} measured requests (meeting-notes x 2 rounds, notes + default scorers); "
              f"store {uri}")
        print(f"import mlflow and runner.track.tracking: {import_s:.2f} s, once per process")
        rows = []
        for i in range(args.jobs):
            t = time.perf_counter()
            tracker = tracking.Tracker(uri, "bench")
            open_s = time.perf_counter() - t
            steps = timed_steps(tracker, job, config)
            total = open_s + steps["log_job"]
            rows.append(total)
            print(f"job {i + 1}{' (cold: creates the store)' if i == 0 else ''}: {total:.3f} s = open store "
                  f"{open_s:.3f} + run, params, metrics {steps['log_numbers']:.3f} + files {steps['log_files']:.3f}"
                  f" + traces, assessments, dataset {steps['log_requests']:.3f} + rest "
                  f"{steps['log_job'] - steps['log_numbers'] - steps['log_files'] - steps['log_requests']:.3f}")
        warm = rows[1:] or rows
        mean = sum(warm) / len(warm)
        print(f"tracking per job (warm, mean of {len(warm)}): {mean:.3f} s; limit {LIMIT_S:.1f} s: "
              f"{'met' if mean <= LIMIT_S else 'NOT met'} (x{mean / LIMIT_S:.2f} of the limit); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
