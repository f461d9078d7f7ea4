"""Resident memory of this process: a point reading and a peak sampled while generating."""

from __future__ import annotations

import threading

import psutil

MB = 1e6


def rss_mb() -> float:
    """Resident set size of this process, MB (10^6 bytes)."""
    return psutil.Process().memory_info().rss / MB


class PeakSampler:
    """Samples RSS every `interval_s` on a background thread; `peak_mb` is the highest seen.

    50 ms keeps the sampler's own cost negligible (one syscall per tick) while
    catching allocations that live for a whole request."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak_mb = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-sampler")

    def _loop(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, proc.memory_info().rss / MB)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())
