"""Distribution summaries: n, mean, std, p50/p90/p95/p99 and a bootstrap 95% CI of the median."""

from __future__ import annotations

import numpy as np

MIN_N_FOR_P95 = 20  # below this a p95 is mostly the maximum; reports flag it
BOOTSTRAP_RESAMPLES = 2000


def summarize(values: list[float], seed: int = 0) -> dict | None:
    """Percentiles use linear interpolation (numpy's default). `ci95` is the 2.5th/97.5th
    percentile of medians over `BOOTSTRAP_RESAMPLES` resamples with replacement (seeded, so
    a report is reproducible). `std` is the sample standard deviation (ddof=1)."""
    xs = np.asarray([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return None
    p50, p90, p95, p99 = np.percentile(xs, [50, 90, 95, 99])
    return {
        "n": int(xs.size),
        "mean": float(xs.mean()),
        "std": float(xs.std(ddof=1)) if xs.size > 1 else 0.0,
        "min": float(xs.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(xs.max()),
        "ci95": median_ci(xs, seed),
        "p95_low_n": bool(xs.size < MIN_N_FOR_P95),
    }


def median_ci(xs: np.ndarray, seed: int = 0, level: float = 0.95) -> list[float]:
    if xs.size == 1:
        return [float(xs[0]), float(xs[0])]
    return percentile_ci(resampled_medians(xs, np.random.default_rng(seed)), level)


# The one bootstrap of the codebase: the summaries' median CIs here, and compare's unpaired change
# (runner/decide/paired_stats.py) are both drawn by these two functions.

def resampled_medians(xs: np.ndarray, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """The medians of `resamples` resamples of xs with replacement (drawn in chunks of at most
    2 M values, so a large run's bootstrap stays within memory)."""
    rows = max(1, min(resamples, 2_000_000 // max(1, xs.size)))
    out = []
    for start in range(0, resamples, rows):
        n = min(rows, resamples - start)
        out.append(np.median(rng.choice(xs, size=(n, xs.size), replace=True), axis=1))
    return np.concatenate(out)


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile bootstrap CI: the (1 - level)/2 and (1 + level)/2 quantiles of the draws."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return [float(lo), float(hi)]
