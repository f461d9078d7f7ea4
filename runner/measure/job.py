"""One job: a model x prompt set x hardware x decoding, measured end to end.

Order: check hardware -> cold load (timed) -> warm-up rounds (not counted) ->
measured rounds (each request streamed, recorded as it completes) -> unload ->
aggregate. A failure anywhere is recorded with its cause; it never raises.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from runner import backends, interrupts
from runner.backends import BackendError, GenParams, hardware
from runner.config.errors import UserError, is_file_error, output_error
from runner.measure import adaptive, cap, closed_loop, load_point, open_loop
from runner.measure.energy import rapl_joules
from runner.measure.memory import PeakSampler, rss_mb
from runner.measure.sender import Sender
from runner.models import pack
from runner.store import jobdir, records
from runner.store.facts import Facts
from runner.store.jobdir import OPEN_LOOP


class Progress:
    """One status line on a TTY; silent otherwise (logs and CI stay clean)."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.done = label, total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self._lock = threading.Lock()

    def step(self, note: str = "") -> None:
        with self._lock:
            self.done += 1
            if self.enabled:
                sys.stderr.write(f"\r{self.label}: {self.done}/{self.total} requests {note}\033[K")
                sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_isolated(work: Callable[..., Facts], job, job_dir: Path) -> Facts:
    """Run `work(job, job_dir)` (an in-process job, `job` its plan) in a fresh child process.

    Why: a second model loaded into a process that already held one inherits its heap,
    warm runtime and page cache, so its "cold" load time and RSS would be biased."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(work, job, str(job_dir), child_end), daemon=True)
    proc.start()
    interrupts.CHILDREN.add(proc.pid)
    child_end.close()
    try:
        try:
            result = parent_end.recv()
        except EOFError:
            result = None
        except BaseException:  # a Ctrl-C here: the job stops too (its records are whole lines), then ours
            proc.terminate()
            proc.join(10)
            raise
        proc.join()
    finally:
        interrupts.CHILDREN.discard(proc.pid)
    if result is None:
        return Facts(error=f"job process died (exit code {proc.exitcode})", disk_mb=_disk_mb(job))
    if isinstance(result, UserError):
        raise result
    return result


def _child(work, job, job_dir: str, conn) -> None:
    try:
        conn.send(work(job, Path(job_dir)))
    except UserError as exc:
        conn.send(exc)
    except OSError as exc:  # the job's own files, outside the record writer: one line, not a traceback
        if not is_file_error(exc):
            raise
        conn.send(output_error(exc.filename or job_dir, exc))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


def run_job(job, job_dir: Path) -> Facts:
    """Run and record one job (`job`: its plan, runner/config/plan.py); return the facts
    `summary.build` needs."""
    job_dir.mkdir(parents=True, exist_ok=True)
    prompt_set = job.prompt_set
    chash = job.config_hash
    resumed = records.check_manifest(job_dir, {
        "config_hash": chash, "model": job.label, "model_id": job.model.id,
        "prompts": prompt_set.name, "prompts_path": prompt_set.path})
    req_path = job_dir / jobdir.REQUESTS
    done_keys = {(r["round"], r["prompt_id"]) for r in records.read(req_path) if r.get("status") == "ok"}
    facts = Facts(config_hash=chash, resumed=resumed, prompts=prompt_set.name, backend={"backend": job.backend.name},
                  disk_mb=_disk_mb(job))
    d = job.decoding
    params = GenParams(max_tokens=d.max_tokens or cap.CAP_FALLBACK, temperature=d.temperature, top_p=d.top_p,
                       top_k=d.top_k, seed=d.seed, repetition_penalty=d.repetition_penalty,
                       frequency_penalty=d.frequency_penalty, presence_penalty=d.presence_penalty)
    todo = [(r, p) for r in range(job.run.rounds) for p in prompt_set.prompts if (r, p.id) not in done_keys]
    facts.skipped_done = job.run.rounds * len(prompt_set.prompts) - len(todo)
    if job.run.rate is not None:
        todo = open_loop.pending(job_dir, facts, job.run)
    search_from = None  # run.search: the load points a rerun keeps
    if job.run.search.mode is not None:
        search_from = load_point.pending(job_dir, facts, job.run)
        todo = [] if search_from is None else ["search"]
    backend = None
    try:
        facts.hardware = hardware.check(job.hardware, job.capabilities.in_process)
        backend = backends.create(job.backend, job.model)
        facts.backend = backend.describe()
        ran_on, source = backend.execution_provider()
        if ran_on is not None:  # known before load (in process): a mismatch fails before any load
            facts.device = hardware.verify(job.hardware, ran_on, source)
        # The cap is counted in the model's tokens before the model loads (the tokenizer's memory
        # is then in rss_before_load_mb, not in the model's RSS).
        facts.cap = cap.for_job(d.max_tokens, [p.reference for p in prompt_set.prompts if p.reference],
                                backend.count_tokens)
        params = replace(params, max_tokens=facts.cap["max_tokens"])
        facts.rss_before_load_mb = rss_mb()
        facts.load_s = backend.load()
        facts.device = hardware.verify(job.hardware, *backend.execution_provider())
        facts.rss_mb = rss_mb() if backend.capabilities.in_process else None
        if todo:
            _warm_up_and_measure(backend, todo, prompt_set, params, job, req_path, facts, search_from)
    except BackendError as exc:
        facts.error = str(exc)
    finally:
        if backend is not None:
            try:
                backend.unload()
            except Exception as exc:  # an unload failure must not hide the job's results
                facts.unload_error = str(exc)
    return facts


def _disk_mb(job) -> float | None:
    """The footprint on disk of a model the job loads from the pack (None for an endpoint's)."""
    if not job.capabilities.in_process or job.model.source.kind == "remote":
        return None
    folder = pack.model_folder(job.model)
    return pack.folder_bytes(folder) / 1e6 if folder.is_dir() else None


def _warm_up_and_measure(backend, todo, prompt_set, params, job, req_path: Path, facts: Facts,
                         search_from: list[dict] | None = None) -> None:
    """Warm-up passes (not recorded), then the measured window with RSS sampling (under
    run.search, the search's load points from those a rerun keeps)."""
    warm_up = [p for _ in range(job.run.warmup) for p in prompt_set.prompts][:job.run.warmup_requests]
    for prompt in warm_up:
        facts.warmup_requests += 1
        try:
            backend.chat(prompt.chat_messages(), params)
        except BackendError:
            facts.warmup_errors += 1
    writer = records.RecordWriter(req_path)
    progress = Progress(job.label, len(todo), job.run.progress)
    sender = Sender(backend, params, job.label, job.model.id, job.decoding.loop_stop, writer, progress)
    run, prompts = job.run, prompt_set.prompts
    try:
        with PeakSampler() as sampler:
            joules = rapl_joules()
            t0 = time.perf_counter()
            if search_from is not None:
                facts.update(load_point.run_search(sender, prompts, run, req_path.parent, search_from))
                joules = None  # the package counter would span every point; the figures are one point's
            elif run.rate is not None:
                window = open_loop.measure(sender, prompts, run)
                facts.update(window)
                (req_path.parent / OPEN_LOOP).write_text(json.dumps({**window, "settings": open_loop.load_settings(run)},
                                                                    indent=2))
                if run.warmup_s or run.cooldown_s:
                    joules = None  # RAPL would count the unrecorded load around the window too
            else:
                facts.window = closed_loop.measure(sender, todo, run.concurrency, t0)
                facts.rounds = run.rounds
                if run.target_ci:
                    facts.adaptive = adaptive.until_precise(sender, prompts, run, t0, req_path, facts)
                facts.window_s = time.perf_counter() - t0
            after = rapl_joules() if joules is not None else None
            if after is not None:
                facts.rapl_joules = after - joules
        facts.rss_peak_mb = sampler.peak_mb if backend.capabilities.in_process else None
    finally:
        progress.close()
        writer.close()
