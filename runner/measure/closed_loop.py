"""The closed loop: the pending requests, `run.concurrency` in flight, each recorded as it ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from runner.backends import BackendError
from runner.config.prompts import Prompt
from runner.measure.sender import Sender


def measure(sender: Sender, todo: Iterable[tuple[int, Prompt]], concurrency: int, t0: float,
            halt: threading.Event | None = None) -> dict:
    """Run the pending (round, prompt) requests, `concurrency` in flight; return this window's
    counts for throughput. Once `halt` is set (a capacity search's point: runner/measure/
    saturation.py), no further request starts."""
    wall = time.time() - time.perf_counter()  # the monotonic clock's offset to wall time: traces need dates

    def one(item: tuple[int, Prompt]) -> dict | None:
        if halt is not None and halt.is_set():
            return None
        rnd, prompt = item
        record = sender.base(prompt, rnd)
        try:
            c, figures = sender.chat(prompt)
        except BackendError as exc:
            record.update(status="error", error=str(exc), t_start_s=None, output=None)
        else:
            record.update(status="ok", error=None, **figures, output=c.text, t_start_s=c.t_sent - t0,
                          t_start_unix=wall + c.t_sent)
        sender.keep(record)
        return record

    if concurrency == 1:
        done = [one(item) for item in todo]  # the lean path: no pool, no thread hop per request
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            done = list(pool.map(one, todo))
    return window_counts([r for r in done if r is not None])


def window_counts(done: list[dict]) -> dict:
    """A measured window's counts, for throughput: ok and failed requests and their tokens."""
    ok = [r for r in done if r["status"] == "ok"]
    return {"ok": len(ok), "errors": sum(r["status"] == "error" for r in done),
            "output_tokens": sum(r["completion_tokens"] or 0 for r in ok),
            "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in ok)}
