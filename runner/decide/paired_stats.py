"""The statistics of `compare`: bootstrap CIs of a change (paired on (prompt_id, round), or
unpaired), the exact Wilcoxon signed-rank test and Holm's correction across metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from runner.metrics.stats import BOOTSTRAP_RESAMPLES, percentile_ci, resampled_medians

BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
EXACT_MAX = 300  # exact signed-rank null distribution up to this many non-zero pairs; normal approximation above


class Pairs(NamedTuple):
    """The (prompt_id, round) keys measured on both sides, in key order, with both values."""
    prompts: list[str]
    base: np.ndarray
    cand: np.ndarray


def _bootstrap_p(draws: np.ndarray, null: float) -> float:
    """Two-sided bootstrap p of `null`: 2 min(#(draw <= null) + 1, #(draw >= null) + 1) / (B + 1), at most 1."""
    low, high = int((draws <= null).sum()), int((draws >= null).sum())
    return min(1.0, 2 * (min(low, high) + 1) / (draws.size + 1))


def _unpaired_draws(base: np.ndarray, cand: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    """Bootstrap draws of median(cand) - median(base), each side resampled independently."""
    rng = np.random.default_rng(seed)
    return resampled_medians(cand, rng, resamples) - resampled_medians(base, rng, resamples)


def diff_ci(base: np.ndarray, cand: np.ndarray, seed: int = BOOTSTRAP_SEED,
            resamples: int = BOOTSTRAP_RESAMPLES, level: float = CI_LEVEL) -> list[float]:
    """Percentile bootstrap CI of median(cand) - median(base), each side resampled independently."""
    return percentile_ci(_unpaired_draws(base, cand, seed, resamples), level)


def unpaired_test(base: np.ndarray, cand: np.ndarray, seed: int = BOOTSTRAP_SEED,
                  resamples: int = BOOTSTRAP_RESAMPLES, level: float = CI_LEVEL) -> tuple[list[float], float]:
    """(CI of median(cand) - median(base), two-sided bootstrap p of 0), from the same draws."""
    draws = _unpaired_draws(base, cand, seed, resamples)
    return percentile_ci(draws, level), _bootstrap_p(draws, 0.0)


def paired_ci(p: Pairs, seed: int = BOOTSTRAP_SEED, resamples: int = BOOTSTRAP_RESAMPLES,
              level: float = CI_LEVEL) -> tuple[list[float], list[float]]:
    """Stratified percentile bootstrap of the paired effect: (CI of median(c_i / b_i) - 1, CI of median(c_i - b_i)).

    The prompts are the fixed design and the rounds the repeated measurements, so each resample redraws,
    within every prompt, as many of its pairs as it has, with replacement (prompts with one pair are pooled
    into one stratum). Resampling prompts as clusters would ask about other prompts, and with the 2-10
    prompts of a set it has too few distinct resamples."""
    q, d = p.cand / p.base - 1, p.cand - p.base
    strata: dict[str, list[int]] = {}
    for i, pid in enumerate(p.prompts):
        strata.setdefault(pid, []).append(i)
    singles = [ix[0] for ix in strata.values() if len(ix) == 1]
    groups = [np.array(ix) for ix in strata.values() if len(ix) > 1] + ([np.array(singles)] if singles else [])
    rng = np.random.default_rng(seed)
    rows = max(1, min(resamples, 2_000_000 // q.size))  # bound memory for big runs
    mq, md = [], []
    for start in range(0, resamples, rows):
        n = min(rows, resamples - start)
        ix = np.concatenate([g[rng.integers(0, g.size, size=(n, g.size))] for g in groups], axis=1)
        mq.append(np.median(q[ix], axis=1))
        md.append(np.median(d[ix], axis=1))
    return percentile_ci(np.concatenate(mq), level), percentile_ci(np.concatenate(md), level)


def _midranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a, tied values sharing the mean of their ranks."""
    order = np.argsort(a, kind="stable")
    _, first, counts = np.unique(a[order], return_index=True, return_counts=True)
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def signed_rank_p(x: np.ndarray) -> float:
    """Two-sided p of the Wilcoxon signed-rank test that x (per-pair differences) is symmetric about 0.

    Zeros are dropped; ranks of |x_i| with ties averaged; W+ = sum of the ranks of the x_i > 0. Under the
    null each rank carries its sign with probability 1/2 independently: the exact distribution of W+ by
    convolution for n <= EXACT_MAX, else normal with mean n(n+1)/4 and variance n(n+1)(2n+1)/24 -
    sum(t^3 - t)/48 over groups of t tied |x_i|, with a continuity correction of 1/2.
    p = min(1, 2 min(P(W+ <= w), P(W+ >= w)))."""
    x = np.asarray(x, dtype=float)
    x = x[x != 0]
    n = x.size
    if n == 0:
        return 1.0
    ranks = _midranks(np.abs(x))
    w = float(ranks[x > 0].sum())
    if n <= EXACT_MAX:
        twice = np.rint(2 * ranks).astype(int)  # mean ranks are multiples of 1/2
        dist = np.zeros(int(twice.sum()) + 1)
        dist[0] = 1.0
        for r in twice:
            shifted = np.zeros_like(dist)
            shifted[r:] = dist[:-r]
            dist = 0.5 * (dist + shifted)
        k = int(round(2 * w))
        low, high = float(dist[:k + 1].sum()), float(dist[k:].sum())
    else:
        _, t = np.unique(np.abs(x), return_counts=True)
        mean = n * (n + 1) / 4
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - float((t ** 3 - t).sum()) / 48)
        low, high = _phi((w - mean + 0.5) / sd), 1 - _phi((w - mean - 0.5) / sd)
    return min(1.0, 2 * min(low, high))


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values, in the input order: with the m p-values sorted p_(1) <= ... <= p_(m),
    adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)). None (no test) stays None and is not counted."""
    tested = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for j, i in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - j) * ps[i]))
        out[i] = running
    return out
