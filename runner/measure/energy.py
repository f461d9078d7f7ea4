"""Energy over the measured window, where the CPU package exposes a counter."""

from __future__ import annotations

from pathlib import Path

RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def rapl_joules() -> float | None:
    """CPU package energy counter (Linux RAPL), joules; None where not exposed or readable."""
    try:
        return int(RAPL.read_text()) / 1e6
    except (OSError, ValueError):
        return None
