"""Per-request metrics, each derived from one streamed request's timestamps.

The definitions, units and better directions are declared once, in runner/metrics/catalog.py; this module
computes the per-request fields. Times are from the client's monotonic clock. Notes on the
computation that the formulas do not say:

- ttft_s counts from the first chunk with non-empty content: role-only/empty chunks do not count
  (counting them under-reports TTFT).
- tpot_s and decode_tps exclude the first token (it is in TTFT), so they need >= 2 tokens.
- itl is the gaps between successive content chunks; a server may pack several tokens into one
  chunk, so this is NOT tpot. Summarized as n/mean/p50/p95/max.
- completion_tokens comes from the server's usage; where absent it is the chunk count and the
  record says `tokens_estimated: true`.
- truncated: finish_reason == "length", or completion_tokens >= max_tokens (a server that cuts
  at the cap and still says "stop"): the answer was cut, not finished.
"""

from __future__ import annotations

import numpy as np

from runner.backends.base import Completion
from runner.metrics.catalog import spec, unit


def request_metrics(c: Completion, max_tokens: int | None = None) -> dict:
    """The timing fields of one request record (None where undefined, never a guess)."""
    e2e = c.t_end - c.t_sent
    ttft = c.deltas[0][0] - c.t_sent if c.deltas else None
    n = c.completion_tokens
    tpot = decode = None
    if ttft is not None and n is not None and n > 1 and e2e > ttft:
        tpot = (e2e - ttft) / (n - 1)
        decode = 1.0 / tpot
    gaps = [b[0] - a[0] for a, b in zip(c.deltas, c.deltas[1:], strict=False)]
    itl = None
    if gaps:  # percentiles interpolated as everywhere else (runner/metrics/stats.py): p50 of 2 gaps is their mean
        p50, p95 = np.percentile(gaps, [50, 95])
        itl = {"n": len(gaps), "mean_s": sum(gaps) / len(gaps), "p50_s": float(p50), "p95_s": float(p95),
               "max_s": max(gaps)}
    return {"ttft_s": ttft, "e2e_s": e2e, "tpot_s": tpot, "decode_tps": decode, "itl": itl,
            "chunks": len(c.deltas), "prompt_tokens": c.prompt_tokens, "completion_tokens": n,
            "tokens_estimated": c.tokens_estimated, "finish_reason": c.finish_reason,
            "truncated": truncated(c.finish_reason, n, max_tokens), "client_overhead_s": c.client_overhead_s}


def truncated(finish_reason: str | None, completion_tokens: int | None, max_tokens: int | None) -> bool:
    """The answer ended at the token cap rather than on its own (see the module docstring)."""
    if finish_reason == "length":
        return True
    return max_tokens is not None and completion_tokens is not None and completion_tokens >= max_tokens


def timing_line(m: dict) -> str:
    """One human line after `models run`, each figure with its unit."""
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)
    return (f"ttft_s {f(m['ttft_s'], '.3f')} {unit('ttft_s')} | {m['completion_tokens']} tokens"
            f"{' (estimated)' if m['tokens_estimated'] else ''} | decode_tps {f(m['decode_tps'], '.1f')} "
            f"{unit('decode_tps')} [{spec('decode_tps').formula}] | e2e_s {f(m['e2e_s'], '.3f')} {unit('e2e_s')}")
