"""What this process's jobs came to, and the exit code of `slmbench run`.

Jobs append here (runner/app.py) and so does the sweep's callback (runner/sweep.py), which
counts jobs that ran in other processes from their files."""

from __future__ import annotations

# Job outcomes of this process ("ok", "partial", "failed", "config-error"): the exit code.
OUTCOMES: list[str] = []
# run.strict as composed (command line or config file), set by the job or the sweep callback.
STRICT: list[bool] = []
# Why this process's output directory cannot be written (disk full, ...): later jobs are not started.
BROKEN_OUTPUT: list[str] = []


def exit_code(outcomes: list[str], strict: bool) -> int:
    if "config-error" in outcomes:
        return 2
    if "output-error" in outcomes:
        return 1  # the run's files are incomplete: never a success
    if not any(o in ("ok", "partial") for o in outcomes):
        return 1
    if strict and any(o != "ok" for o in outcomes):
        return 1
    return 0
