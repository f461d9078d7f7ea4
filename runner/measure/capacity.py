"""Capacity under SLO (`run.search=capacity`): the highest load at which the share of requests
meeting every `run.slo` objective stays >= `run.search.goodput`, found point by point.

The search, over `run.search.over`:

- concurrency (closed loop, requests in flight): 1, then doubling (2, 4, 8, ...) while the
  loads pass (bracketing), then integer bisection between the highest passing and the lowest
  failing load until the two are adjacent, so the capacity found is exact.
- rate (open loop, offered requests/s): first one request at a time (closed loop, concurrency 1),
  whose throughput is the service rate mu; then rates from mu, doubling while they pass or
  halving while they fail (bracketing), then bisection at the geometric mean until
  failing / passing - 1 <= `run.search.tolerance`. Rates are rounded to 3 significant digits.

Bounds: at most `max_points` points (the first included) and `budget_s` seconds of measuring
(the sum of the points' wall times): no point starts once it is spent, and a point running when
it runs out is stopped (runner/measure/load_point.py); a point stopped so before its verdict
(`passed` null) counts for neither side. The search assumes a load that passes means every lower
one passes; near the threshold, noise may break that, and the bracket then holds the verdicts seen.

The answer (`Found.to_dict`, summary.json `capacity`): `over`, `passing` (the highest load that
met the objectives; null when none did), `failing` (the lowest that did not; null when none
failed within the bounds), `first_failed` (the objective the first failing request missed at
`failing`), `goodput` (the target share) and `points` (every load tried, in order). Over rate,
the first point is one request at a time: when even it misses, `failing` is its rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

CLOSED, OPEN = "closed", "open"
CONCURRENCY, RATE = "concurrency", "rate"
RATE_FLOOR = 1 / 1024  # over rate, halving stops below this fraction of the service rate mu
RATE_CEILING = 64  # over rate without run.search.max_load: at most this many times mu


@dataclass
class Point:
    """One load tried, as summary.json `capacity.points` lists it."""

    load: float  # requests in flight (closed loop) or offered requests/s (open loop)
    loop: str  # closed | open
    passed: bool | None  # None: stopped by the budget before its verdict
    goodput: float | None = None  # requests meeting every objective / requests attempted
    p95: dict = field(default_factory=dict)  # per objective metric (run.slo key): p95 over ok requests, s
    stopped_early: bool = False
    stop_reason: str | None = None  # runner/measure/saturation.py, or the budget
    first_failed: str | None = None  # the objective the first request to miss one missed (error, dropped)
    attempted: int = 0  # requests recorded (ok, failed, dropped)
    expected: int = 0  # requests the whole window holds
    requests_per_s: float | None = None  # ok requests / window wall time
    wall_s: float = 0.0  # time the point took (an open loop's warm-up and cool-down included), s


# (load, loop, seconds of budget left) -> the point measured
Measure = Callable[[float, str, float], Point]


@dataclass
class Found:
    over: str
    goodput: float
    points: list[Point]
    passing: float | None = None
    failing: float | None = None
    first_failed: str | None = None

    def to_dict(self) -> dict:
        """summary.json `capacity`: exactly these keys."""
        return {"over": self.over, "passing": self.passing, "failing": self.failing,
                "first_failed": self.first_failed, "goodput": self.goodput,
                "points": [asdict(p) for p in self.points]}


def search(measure: Measure, over: str, goodput: float, max_points: int, budget_s: float,
           tolerance: float = 0.05, max_load: float | None = None) -> Found:
    """Bracket, then bisect (see the module docstring); `measure` is called at most `max_points`
    times, never once `budget_s` seconds of points are spent."""
    found = Found(over, goodput, [])

    def can_measure() -> bool:
        return len(found.points) < max_points and sum(p.wall_s for p in found.points) < budget_s

    def run(load: float, loop: str) -> bool | None:
        p = measure(load, loop, budget_s - sum(q.wall_s for q in found.points))
        found.points.append(p)
        return p.passed

    first = run(1, CLOSED)
    if first is not True:  # even one request at a time misses (or was cut): nothing higher is tried
        if first is False:
            found.failing = 1 if over == CONCURRENCY else found.points[0].requests_per_s
            found.first_failed = found.points[0].first_failed
        return found
    if over == CONCURRENCY:
        lo, hi = _concurrency(run, can_measure, math.floor(max_load) if max_load else math.inf)
        loop = CLOSED
    else:
        mu = found.points[0].requests_per_s
        lo, hi = _rate(run, can_measure, mu, tolerance, max_load or RATE_CEILING * mu) if mu else (None, None)
        loop = OPEN
    found.passing, found.failing = lo, hi
    at = next((p for p in found.points if p.loop == loop and p.load == hi and p.passed is False), None)
    found.first_failed = at.first_failed if at else None
    return found


def _concurrency(run, can_measure, cap: float) -> tuple[int, int | None]:  # cap: an integer or inf
    lo, hi = 1, None  # one in flight passed
    while can_measure():
        if hi is None:
            if lo >= cap:
                break
            c = min(lo * 2, cap)
        else:
            if hi - lo <= 1:
                break
            c = (lo + hi) // 2
        verdict = run(c, CLOSED)
        if verdict is None:
            break
        lo, hi = (c, hi) if verdict else (lo, c)
    return lo, hi


def _rate(run, can_measure, mu: float, tolerance: float, cap: float) -> tuple[float | None, float | None]:
    lo = hi = None
    while can_measure():
        if lo is None and hi is None:
            r = mu
        elif hi is None:
            if lo >= cap:
                break
            r = min(lo * 2, cap)
        elif lo is None:
            if hi < mu * RATE_FLOOR:
                break
            r = hi / 2
        else:
            if hi / lo - 1 <= tolerance:
                break
            r = math.sqrt(lo * hi)
        r = _round(r)
        if r in (lo, hi):  # the rounding's resolution is reached
            break
        verdict = run(r, OPEN)
        if verdict is None:
            break
        lo, hi = (r, hi) if verdict else (lo, r)
    return lo, hi


def _round(rate: float) -> float:
    """3 significant digits: loads a person reads and types again."""
    return float(f"{rate:.3g}")


def verdict(goodput: float | None, target: float, stopped: str | None, cut: bool) -> bool | None:
    """A point passes when it ran whole and goodput >= target. Stopped by a rule of
    runner/measure/saturation.py: it fails (over capacity). Cut by the budget: no verdict."""
    if stopped:
        return False
    if cut:
        return None
    return goodput is not None and goodput >= target - 1e-9
