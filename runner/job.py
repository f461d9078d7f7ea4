"""One job: a model x prompt set x hardware x decoding, measured end to end.

Order: check hardware -> cold load (timed) -> warm-up rounds (not counted) ->
measured rounds (each request streamed, recorded as it completes) -> unload ->
aggregate. A failure anywhere is recorded with its cause; it never raises.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf

from runner import backends, hardware, load, records
from runner.backends import BackendError, GenParams
from runner.errors import UserError
from runner.labels import label_of
from runner.memory import PeakSampler, rss_mb
from runner.metrics import request_metrics
from runner.prompts import Prompt, PromptSet
from runner.store import jobdir
from runner.store.facts import Facts
from runner.store.jobdir import OPEN_LOOP


def config_hash(cfg, prompt_set: PromptSet) -> str:
    """What makes two jobs' records comparable: model, decoding, hardware, backend, prompts."""
    ident = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "decoding", "hardware")}
    ident["backend"] = {"name": cfg.backend.name, "base_url": cfg.backend.base_url}
    ident["prompts"] = prompt_set.digest()
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


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


def run_isolated(work: Callable[..., Facts], cfg, job_dir: Path, prompt_set: PromptSet) -> Facts:
    """Run `work(cfg, job_dir, prompt_set)` (an in-process job) in a fresh child process.

    Why: a second model loaded into a process that already held one inherits its heap,
    warm runtime and page cache, so its "cold" load time and RSS would be biased."""
    ctx = multiprocessing.get_context("spawn")
    plain = OmegaConf.to_container(cfg, resolve=True)
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(work, plain, str(job_dir), prompt_set, child_end), daemon=True)
    proc.start()
    child_end.close()
    try:
        result = parent_end.recv()
    except EOFError:
        result = None
    proc.join()
    if result is None:
        return Facts(error=f"job process died (exit code {proc.exitcode})")
    if isinstance(result, UserError):
        raise result
    return result


def _child(work, plain: dict, job_dir: str, prompt_set: PromptSet, conn) -> None:
    try:
        conn.send(work(OmegaConf.create(plain), Path(job_dir), prompt_set))
    except UserError as exc:
        conn.send(exc)
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


def run_job(cfg, job_dir: Path, prompt_set: PromptSet) -> Facts:
    """Run and record one job; return the facts `summary.build` needs."""
    job_dir.mkdir(parents=True, exist_ok=True)
    chash = config_hash(cfg, prompt_set)
    resumed = records.check_manifest(job_dir, {
        "config_hash": chash, "model": label_of(cfg), "model_id": cfg.model.id,
        "prompts": prompt_set.name, "prompts_path": prompt_set.path})
    req_path = job_dir / jobdir.REQUESTS
    done_keys = {(r["round"], r["prompt_id"]) for r in records.read(req_path) if r.get("status") == "ok"}
    facts = Facts(config_hash=chash, resumed=resumed, prompts=prompt_set.name, backend={"backend": cfg.backend.name})
    params = GenParams(max_tokens=cfg.decoding.max_tokens, temperature=cfg.decoding.temperature,
                       top_p=cfg.decoding.top_p, top_k=cfg.decoding.top_k, seed=cfg.decoding.seed)
    todo = [(r, p) for r in range(cfg.run.rounds) for p in prompt_set.prompts if (r, p.id) not in done_keys]
    facts.skipped_done = cfg.run.rounds * len(prompt_set.prompts) - len(todo)
    if cfg.run.rate is not None:
        todo = _open_loop_pending(job_dir, facts, cfg)
    backend = None
    try:
        facts.hardware = hardware.check(cfg.hardware, backends.capabilities(cfg.backend).in_process)
        backend = backends.create(cfg.backend, cfg.model)
        facts.backend = backend.describe()
        ran_on, source = backend.execution_provider()
        if ran_on is not None:  # known before load (in process): a mismatch fails before any load
            facts.device = hardware.verify(cfg.hardware, ran_on, source)
        facts.rss_before_load_mb = rss_mb()
        facts.load_s = backend.load()
        facts.device = hardware.verify(cfg.hardware, *backend.execution_provider())
        facts.rss_mb = rss_mb() if backend.capabilities.in_process else None
        if todo:
            _warm_up_and_measure(backend, todo, prompt_set, params, cfg, req_path, facts)
    except BackendError as exc:
        facts.error = str(exc)
    finally:
        if backend is not None:
            try:
                backend.unload()
            except Exception as exc:  # an unload failure must not hide the job's results
                facts.unload_error = str(exc)
    return facts


def _warm_up_and_measure(backend, todo, prompt_set, params, cfg, req_path: Path, facts: Facts) -> None:
    """Warm-up passes (not recorded), then the measured window with RSS sampling."""
    for _ in range(cfg.run.warmup):
        for prompt in prompt_set.prompts:
            facts.warmup_requests += 1
            try:
                backend.chat(prompt.chat_messages(), params)
            except BackendError:
                facts.warmup_errors += 1
    writer = records.RecordWriter(req_path)
    progress = Progress(label_of(cfg), len(todo), cfg.run.progress)
    try:
        with PeakSampler() as sampler:
            joules = rapl_joules()
            t0 = time.perf_counter()
            if cfg.run.rate is not None:
                window = _measure_open_loop(backend, prompt_set, params, cfg, writer, progress)
                facts.update(window)
                (req_path.parent / OPEN_LOOP).write_text(json.dumps({**window, "settings": load_settings(cfg)},
                                                                    indent=2))
                if cfg.run.warmup_s or cfg.run.cooldown_s:
                    joules = None  # RAPL would count the unrecorded load around the window too
            else:
                facts.window = _measure(backend, todo, params, cfg, writer, progress, t0)
                facts.rounds = cfg.run.rounds
                if cfg.run.target_ci:
                    facts.adaptive = _until_precise(backend, prompt_set, params, cfg, writer, progress, t0,
                                                       req_path, facts)
                facts.window_s = time.perf_counter() - t0
            if joules is not None and rapl_joules() is not None:
                facts.rapl_joules = rapl_joules() - joules
        facts.rss_peak_mb = sampler.peak_mb if backend.capabilities.in_process else None
    finally:
        progress.close()
        writer.close()


def ci_precision(req_path: Path, metrics: list[str]) -> dict[str, dict]:
    """Per metric: n and the relative half-width of the bootstrap 95% CI of the median,
    (hi - lo) / 2 / p50, from the job's ok records."""
    from runner.stats import summarize

    ok = jobdir.ok_records(req_path.parent, graded=False)
    out = {}
    for m in metrics:
        s = summarize([r[m] for r in ok])
        rel = (s["ci95"][1] - s["ci95"][0]) / 2 / s["p50"] if s and s["p50"] else None
        out[m] = {"n": s["n"] if s else 0, "rel_half_width": rel}
    return out


def _until_precise(backend, prompt_set, params, cfg, writer, progress, t0, req_path, facts) -> dict:
    """Add whole rounds until every target metric's median is known to +/- target_ci."""
    target = cfg.run.target_ci
    metrics = list(cfg.run.target_metrics)
    rounds = cfg.run.rounds
    while True:
        precision = ci_precision(req_path, metrics)
        reached = {m: p["rel_half_width"] is not None and p["rel_half_width"] <= target
                   for m, p in precision.items()}
        if all(reached.values()) or rounds >= cfg.run.max_rounds:
            break
        done = {(r["round"], r["prompt_id"]) for r in records.read(req_path) if r.get("status") == "ok"}
        extra = [(rounds, p) for p in prompt_set.prompts if (rounds, p.id) not in done]  # a resume keeps them
        progress.total += len(extra)
        counts = _measure(backend, extra, params, cfg, writer, progress, t0)
        facts.window = {k: facts.window[k] + counts[k] for k in counts}
        rounds += 1
    facts.rounds = rounds
    return {"target_ci": target, "max_rounds": cfg.run.max_rounds, "rounds": rounds, "reached": reached,
            "precision": precision}


RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def rapl_joules() -> float | None:
    """CPU package energy counter (Linux RAPL), joules; None where not exposed or readable."""
    try:
        return int(RAPL.read_text()) / 1e6
    except (OSError, ValueError):
        return None


def _measure(backend, todo: Iterable[tuple[int, Prompt]], params: GenParams, cfg, writer, progress, t0) -> dict:
    """Run the pending requests; return this window's counts for throughput."""
    base = {"model": label_of(cfg), "model_id": cfg.model.id}

    def one(item: tuple[int, Prompt]) -> dict:
        rnd, prompt = item
        record = {**base, "prompt_id": prompt.id, "round": rnd}
        try:
            c = backend.chat(prompt.chat_messages(), params)
        except BackendError as exc:
            record.update(status="error", error=str(exc), t_start_s=None, output=None)
        else:
            record.update(status="ok", error=None, **request_metrics(c, params.max_tokens), output=c.text,
                          t_start_s=c.t_sent - t0)
        writer.append(record)
        progress.step(record["status"] if record["status"] != "ok" else "")
        return record

    if cfg.run.concurrency == 1:
        done = [one(item) for item in todo]  # the lean path: no pool, no thread hop per request
    else:
        with ThreadPoolExecutor(max_workers=cfg.run.concurrency) as pool:
            done = list(pool.map(one, todo))
    return window_counts(done)


def window_counts(done: list[dict]) -> dict:
    """A measured window's counts, for throughput: ok and failed requests and their tokens."""
    ok = [r for r in done if r["status"] == "ok"]
    return {"ok": len(ok), "errors": sum(r["status"] == "error" for r in done),
            "output_tokens": sum(r["completion_tokens"] or 0 for r in ok),
            "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in ok)}




LOAD_KEYS = ("rate", "requests", "duration_s", "warmup_s", "cooldown_s", "burstiness", "seed", "max_in_flight")


def load_settings(cfg) -> dict:
    """What an open-loop window's figures depend on beyond the config hash (which leaves out `run`)."""
    return {k: cfg.run[k] for k in LOAD_KEYS} | {"rounds": cfg.run.rounds}


def _open_loop_pending(job_dir: Path, facts: Facts, cfg) -> list:
    """An open-loop window is measured whole or not at all: a partial one would not hold the
    offered rate. A completed window with the same load settings is reused; otherwise the old
    records are set aside (appended to requests.interrupted.jsonl) and the window is rerun."""
    done = job_dir / OPEN_LOOP
    if done.exists():
        kept = json.loads(done.read_text())
        if kept.get("settings") == load_settings(cfg):
            facts.update(kept)
            facts.skipped_done = kept["expected"]
            return []
        done.unlink()
    old = job_dir / jobdir.REQUESTS
    if old.exists():
        with (job_dir / jobdir.INTERRUPTED).open("a") as fh:
            fh.write(old.read_text())
        old.unlink()
    facts.skipped_done = 0
    return ["window"]


def _measure_open_loop(backend, prompt_set: PromptSet, params: GenParams, cfg, writer, progress) -> dict:
    """Requests at their scheduled times (runner/load.py); measured ones recorded as they end."""
    run = cfg.run
    prompts = prompt_set.prompts
    count = None if run.duration_s else (run.requests or run.rounds * len(prompts))
    arrivals = load.schedule(run.rate, count, run.duration_s, run.warmup_s, run.cooldown_s, run.burstiness,
                             run.seed)
    measured = [a for a in arrivals if a.phase == load.MEASURED]
    progress.total = len(measured)
    base = {"model": label_of(cfg), "model_id": cfg.model.id}
    done: list[dict] = []
    lock = threading.Lock()

    def prompt_of(a: load.Arrival) -> tuple[int, Prompt]:
        """Measured arrivals walk the prompt set round by round; the others cycle through it."""
        if a.phase != load.MEASURED:
            return -1, prompts[a.seq % len(prompts)]
        return a.index // len(prompts), prompts[a.index % len(prompts)]

    def fire(a: load.Arrival, due: float) -> None:
        rnd, prompt = prompt_of(a)
        t_call = time.perf_counter()
        try:
            c = backend.chat(prompt.chat_messages(), params)
            metrics = request_metrics(c, params.max_tokens)
        except Exception as exc:  # a thread's exception would vanish in its future: record it
            if a.phase != load.MEASURED:
                return
            error = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
            record = {**base, "prompt_id": prompt.id, "round": rnd, "status": "error", "error": error,
                      "output": None, "t_start_s": t_call - t0}
        else:
            if a.phase != load.MEASURED:
                return
            record = {**base, "prompt_id": prompt.id, "round": rnd, "status": "ok", "error": None,
                      **metrics, "output": c.text, "t_start_s": c.t_sent - t0}
        record.update(scheduled_s=a.offset_s, lag_s=t_call - due)
        _keep(record)

    def drop(a: load.Arrival, in_flight: int) -> None:
        if a.phase == load.MEASURED:
            rnd, prompt = prompt_of(a)
            _keep({**base, "prompt_id": prompt.id, "round": rnd, "status": "dropped", "output": None,
                   "t_start_s": None, "scheduled_s": a.offset_s, "lag_s": None,
                   "error": f"dropped: {in_flight} requests in flight at its arrival (run.max_in_flight)"})

    def _keep(record: dict) -> None:
        writer.append(record)
        with lock:
            done.append(record)
        progress.step(record["status"] if record["status"] != "ok" else "")

    t0 = time.perf_counter()  # the origin of scheduled_s and t_start_s
    gen = load.run(arrivals, fire, drop, run.max_in_flight, t0)
    sent = [r["t_start_s"] for r in done if r["t_start_s"] is not None]
    ends = [r["t_start_s"] + r["e2e_s"] for r in done if r["status"] == "ok"]
    gen_facts = {"scheduled": len(arrivals), "dropped": gen["dropped"], "in_flight_peak": gen["in_flight_peak"],
                 "dispatch_s": gen["dispatch_s"], "wall_s": gen["wall_s"]}
    return {"window": window_counts(done), "window_s": (max(ends) - min(sent)) if ends else None,
            "expected": len(measured), "generator": gen_facts,
            "load": load.summarize(done, gen_facts, run)}
