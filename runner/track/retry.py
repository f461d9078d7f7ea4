"""Writes to a SQLite store, retried: it allows one writer, so parallel jobs can meet 'database is
locked' for a moment. A Ctrl-C never cuts a call in two: a KeyboardInterrupt raised inside the
store's transaction could leave its connection holding the database's lock, and the sweep's
parent run could then not be marked KILLED on the way out (benchmarks/ctrl_c.py saw it once)."""

from __future__ import annotations

import time

from runner import interrupts


def retry(fn, *args, attempts: int = 8, **kwargs):
    """Call fn; on 'database is locked', back off (0.1 s, doubling) and call again."""
    for i in range(attempts):
        try:
            with interrupts.deferred():
                return fn(*args, **kwargs)
        except Exception as exc:
            if "locked" not in str(exc).lower() or i == attempts - 1:
                raise
            time.sleep(0.1 * 2**i)
