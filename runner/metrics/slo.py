"""Service-level objectives (`run.slo`): which requests met them, and goodput.

An objective is an upper bound on one per-request metric (ttft_s, tpot_s, e2e_s; seconds). A
request meets the SLO when it is ok and meets every objective set; a metric the request does not
define (the TPOT of a one-token answer) is not held against it. The job's summary reports goodput;
a capacity search's load points and their early stop (runner/measure/) judge each request the same
way.
"""

from __future__ import annotations


def goodput(ok: list[dict], attempted: int, window_s: float | None, window_ok: int | None, slo) -> dict | None:
    """Requests that met every SLO: good = ok requests with metric <= bound for each bound set.

    fraction = good / attempted (failed and dropped requests count against it);
    requests_per_s = fraction of ok that were good x throughput.requests_per_s, i.e. good /
    window_s when the window produced every ok record (a resumed job's window did not). A
    metric a request does not define (TPOT of a one-token answer) is not held against it."""
    bounds = slo_bounds(slo)
    if not bounds or not attempted:
        return None
    good = sum(not missed_objectives(r, bounds) for r in ok)
    rate = good / len(ok) * window_ok / window_s if ok and window_ok and window_s else None
    return {"slo": bounds, "good": good, "attempted": attempted, "fraction": good / attempted,
            "requests_per_s": rate}


def slo_bounds(slo) -> dict[str, float]:
    """run.slo's objectives that are set: metric -> upper bound, seconds."""
    return {k: float(v) for k, v in (slo or {}).items() if v is not None}


def missed_objectives(r: dict, bounds: dict[str, float]) -> list[str]:
    """The objectives an ok request missed, in run.slo's order: metric > bound (a metric the request
    does not define, the TPOT of a one-token answer, is not held against it)."""
    return [k for k, b in bounds.items() if r.get(k) is not None and r[k] > b]
