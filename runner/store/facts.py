"""What a measured job hands to its summary: the facts its records do not hold.

The records (requests.jsonl) hold every request; these are the job-level observations around
them (load time, memory, the measured window, the device), filled in as the job goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class Facts:
    config_hash: str | None = None
    prompts: str | None = None  # the prompt set's name
    resumed: bool = False  # a rerun into a directory with records of the same config
    skipped_done: int = 0  # requests already recorded by an earlier run, not measured again
    error: str | None = None  # why the job failed, when it did
    unload_error: str | None = None
    # the model and the process (in-process backends; None for endpoints)
    load_s: float | None = None
    rss_before_load_mb: float | None = None
    rss_mb: float | None = None
    rss_peak_mb: float | None = None
    disk_mb: float | None = None  # the model folder's bytes / 10^6 (in-process models from the pack)
    backend: dict = field(default_factory=dict)  # Backend.describe()
    hardware: dict | None = None  # hardware.check: the runtime facts of the hardware asked for
    device: dict | None = None  # hardware.verify: asked, ran_on, source, verified
    # the measured window
    warmup_requests: int = 0
    warmup_errors: int = 0
    window: dict | None = None  # counts: ok, errors, output_tokens, prompt_tokens
    window_s: float | None = None
    rounds: int | None = None
    adaptive: dict | None = None  # run.target_ci: rounds added until the CI was tight enough
    rapl_joules: float | None = None
    cap: dict | None = None  # the token cap the job ran under and how it was set (runner/measure/cap.py)
    # open loop (run.rate)
    expected: int | None = None
    generator: dict | None = None
    load: dict | None = None
    # capacity search (run.search=capacity): the answer, and the load point the job's figures describe
    capacity: dict | None = None
    reported_point: int | None = None
    # set by the app around the job
    grading: dict | None = None
    job_wall: dict | None = None  # host, start, end (unix s)
    distinguishing: list[str] = field(default_factory=list)
    launcher: str | None = None

    def update(self, values: dict) -> None:
        """Take the known fields of a mapping (e.g. a kept open-loop window's load.json)."""
        names = {f.name for f in fields(self)}
        for k, v in values.items():
            if k in names:
                setattr(self, k, v)
