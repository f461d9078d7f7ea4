"""Writes to a SQLite store, retried: it allows one writer, so parallel jobs can meet 'database is
locked' for a moment."""

from __future__ import annotations

import time


def retry(fn, *args, attempts: int = 8, **kwargs):
    """Call fn; on 'database is locked', back off (0.1 s, doubling) and call again."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if "locked" not in str(exc).lower() or i == attempts - 1:
                raise
            time.sleep(0.1 * 2**i)
