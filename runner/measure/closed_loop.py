"""The closed loop: the pending requests, `run.concurrency` in flight, each recorded as it ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from runner.backends import BackendError, GenParams
from runner.config.prompts import Prompt
from runner.metrics import degenerate
from runner.metrics.request import request_metrics


def measure(backend, todo: Iterable[tuple[int, Prompt]], params: GenParams, job, writer, progress, t0,
            halt: threading.Event | None = None) -> dict:
    """Run the pending requests; return this window's counts for throughput. Once `halt` is set
    (a capacity search's point: runner/measure/saturation.py), no further request starts."""
    base = {"model": job.label, "model_id": job.model.id}
    wall = time.time() - time.perf_counter()  # the monotonic clock's offset to wall time: traces need dates

    def one(item: tuple[int, Prompt]) -> dict | None:
        if halt is not None and halt.is_set():
            return None
        rnd, prompt = item
        record = {**base, "prompt_id": prompt.id, "round": rnd}
        stop = degenerate.LoopStop() if job.decoding.loop_stop else None
        try:
            c = backend.chat(prompt.chat_messages(), params, stop.feed if stop else None)
        except BackendError as exc:
            record.update(status="error", error=str(exc), t_start_s=None, output=None)
        else:
            record.update(status="ok", error=None, **request_metrics(c, params.max_tokens), output=c.text,
                          t_start_s=c.t_sent - t0, t_start_unix=wall + c.t_sent)
            record.update(degenerate.answer_fields(c.text, prompt_texts(prompt), stop))  # after the timed call
        writer.append(record)
        progress.step(record["status"] if record["status"] != "ok" else "")
        return record

    if job.run.concurrency == 1:
        done = [one(item) for item in todo]  # the lean path: no pool, no thread hop per request
    else:
        with ThreadPoolExecutor(max_workers=job.run.concurrency) as pool:
            done = list(pool.map(one, todo))
    return window_counts([r for r in done if r is not None])


def window_counts(done: list[dict]) -> dict:
    """A measured window's counts, for throughput: ok and failed requests and their tokens."""
    ok = [r for r in done if r["status"] == "ok"]
    return {"ok": len(ok), "errors": sum(r["status"] == "error" for r in done),
            "output_tokens": sum(r["completion_tokens"] or 0 for r in ok),
            "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in ok)}


def prompt_texts(prompt: Prompt) -> list[str]:
    """What an echo would repeat: the system and user messages."""
    return [content for role, content in prompt.messages if role in ("system", "user")]
