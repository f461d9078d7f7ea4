"""When a load point of the capacity search (runner/measure/capacity.py) is stopped early, and
counted as over capacity. Two rules, checked each time one of the point's requests ends:

1. Cannot pass: more of the window's requests have missed an objective (or failed, or were
   dropped) than the goodput target allows in the whole window:
       bad > (1 - run.search.goodput) x expected requests.
   Whatever the rest of the window does, its goodput stays below the target.
2. Over-saturated: the server is not keeping up, so each request waits longer than the one
   before. With at least MIN_DONE requests ended, sorted by send time, the median TTFT of the
   last third is more than GROWTH times the median TTFT of the first third, and above the TTFT
   objective (run.slo.ttft_s; without one, the growth alone). A server that keeps up holds TTFT
   level through the window, even a high level (a closed loop at any concurrency does, once its
   first wave is in); a queue that grows makes it climb.

The growth rule also sees an open loop's warm-up requests (never recorded), so a rate that floods
the server is stopped during its warm-up. Either rule stops new sends at once; requests already in
flight end and are recorded.
"""

from __future__ import annotations

import threading
from statistics import median

from runner.metrics.slo import missed_objectives

MIN_DONE = 12  # ended requests before the growth rule may fire: four per third, so one slow request is noise
GROWTH = 2.0  # last third's median TTFT / first third's


def cannot_pass(bad: int, expected: int, goodput: float) -> bool:
    """Rule 1: the window can no longer reach `goodput` (good / expected) whatever comes next."""
    return bad > (1 - goodput) * expected + 1e-9


def over_saturated(sent_and_ttft: list[tuple[float, float]], ttft_bound: float | None) -> str | None:
    """Rule 2 on the (send time, TTFT) of the requests ended so far: why the point is
    over-saturated, or None."""
    if len(sent_and_ttft) < MIN_DONE:
        return None
    ttfts = [t for _, t in sorted(sent_and_ttft)]
    third = len(ttfts) // 3
    first, last = median(ttfts[:third]), median(ttfts[-third:])
    if last > GROWTH * first and (ttft_bound is None or last > ttft_bound):
        return (f"over-saturated: median TTFT rose from {first:.3f} s (first third of the requests, by send time) "
                f"to {last:.3f} s (last third) after {len(ttfts)} requests")
    return None


class Monitor:
    """Watches one point's window as its requests end (`add`, from any thread)."""

    def __init__(self, bounds: dict[str, float], goodput: float, expected: int):
        self.bounds, self.goodput, self.expected = bounds, goodput, expected
        self.records: list[dict] = []
        self.bad = 0
        self.first_failed: str | None = None  # the objective the first request to miss one missed
        self.reason: str | None = None  # why the window was stopped, once a rule fired
        self._timed: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def watch(self, t_start_s: float, ttft_s: float) -> str | None:
        """Take the timing of a request of the load around the window (an open loop's warm-up or
        cool-down): it counts for the growth rule, not for goodput."""
        with self._lock:
            self._timed.append((t_start_s, ttft_s))
            if self.reason is None:
                self.reason = self._growth()
            return self.reason

    def _growth(self) -> str | None:
        """Rule 2; the TTFT objective is the one it found missed (when there is one)."""
        reason = over_saturated(self._timed, self.bounds.get("ttft_s"))
        if reason and "ttft_s" in self.bounds:
            self.first_failed = self.first_failed or "ttft_s"
        return reason

    def add(self, record: dict) -> str | None:
        """Take an ended request; return the reason to stop the window, if a rule holds."""
        with self._lock:
            self.records.append(record)
            missed = [record["status"]] if record["status"] != "ok" else missed_objectives(record, self.bounds)
            if missed:
                self.bad += 1
                self.first_failed = self.first_failed or missed[0]
            if record["status"] == "ok" and record.get("ttft_s") is not None and record.get("t_start_s") is not None:
                self._timed.append((record["t_start_s"], record["ttft_s"]))
            if self.reason is None:
                if cannot_pass(self.bad, self.expected, self.goodput):
                    allowed = int((1 - self.goodput) * self.expected + 1e-9)
                    self.reason = (f"cannot pass: {self.bad} of its requests missed an objective, more than the "
                                   f"{allowed} of {self.expected} that goodput >= {self.goodput:.0%} allows")
                else:
                    self.reason = self._growth()
            return self.reason
