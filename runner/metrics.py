"""Per-request metrics, each derived from one streamed request's timestamps.

All times are seconds. Definitions (printed beside every figure in reports):

- ttft_s     = t(first chunk with non-empty content) - t(request sent).
               Role-only/empty chunks do not count: counting them under-reports TTFT.
- e2e_s      = t(last byte) - t(request sent).
- tpot_s     = (e2e_s - ttft_s) / (completion_tokens - 1): time per output token after the first.
- decode_tps = (completion_tokens - 1) / (e2e_s - ttft_s) = 1 / tpot_s, output tokens/s while decoding.
- itl_s      = gaps between successive content chunks (inter-chunk latency); a server may pack
               several tokens into one chunk, so this is NOT tpot. Summarized as mean/p50/p95/max.
completion_tokens comes from the server's usage; where absent it is the chunk count and the
record says `tokens_estimated: true`.
- truncated  = finish_reason == "length", or completion_tokens >= max_tokens (a server that cuts
               at the cap and still says "stop"): the answer was cut, not finished.
"""

from __future__ import annotations

import numpy as np

from runner.backends.base import Completion

DEFINITIONS = {
    "ttft_s": ("s", "t(first non-empty content chunk) - t(sent)"),
    "e2e_s": ("s", "t(last byte) - t(sent)"),
    "tpot_s": ("s/token", "(e2e_s - ttft_s) / (completion_tokens - 1)"),
    "decode_tps": ("tokens/s", "(completion_tokens - 1) / (e2e_s - ttft_s)"),
    "itl_p50_s": ("s", "median gap between successive content chunks"),
    "load_s": ("s", "wall time of the backend's model load (cold: first load in the job)"),
    "rss_mb": ("MB", "process resident set size after load, 10^6 bytes (in-process backends)"),
    "rss_peak_mb": ("MB", "highest sampled RSS while generating (sampled every 50 ms)"),
    "disk_mb": ("MB", "bytes of the model folder / 10^6"),
    "output_tps": ("tokens/s", "sum(completion_tokens) / measured window wall time"),
    "requests_per_s": ("req/s", "completed requests / measured window wall time"),
    "total_tps": ("tokens/s", "sum(prompt_tokens + completion_tokens) / measured window wall time"),
    "window_s": ("s", "closed loop: the measured rounds' wall time; open loop (run.rate): first measured "
                      "send to last measured completion"),
    "goodput_rps": ("req/s", "requests meeting every SLO in run.slo / measured window wall time"),
    "goodput_fraction": ("1", "requests meeting every SLO / measured requests (failed and dropped count "
                              "against it)"),
    "arrival_rate": ("req/s", "open loop: (sends - 1) / (last send - first send), the rate actually offered"),
    "lag_s": ("s", "open loop: t(sent) - t(scheduled); a send more than 10 ms behind schedule is late"),
    "client_overhead_s": ("s", "per request: the client's own time inside the timed window (parsing each read "
                               "of the stream), endpoints only"),
    "truncated_share": ("1", "answers cut at the token cap / ok answers; cut = finish_reason 'length' or "
                             "completion_tokens >= decoding.max_tokens"),
    "token_mismatch_share": ("1", "requests with |chunks - usage.completion_tokens| > "
                                  "max(1, tolerance x usage.completion_tokens) / requests with server usage"),
    "energy_wh_per_1k_tokens": ("Wh", "hardware.power_w x window seconds / 3600 / (output tokens / 1000); estimate"),
}


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
    if gaps:  # percentiles interpolated as everywhere else (runner/stats.py): p50 of 2 gaps is their mean
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
    return (f"ttft {f(m['ttft_s'], '.3f')} s | {m['completion_tokens']} tokens"
            f"{' (estimated)' if m['tokens_estimated'] else ''} | decode {f(m['decode_tps'], '.1f')} tok/s"
            f" [(tokens-1)/(e2e-ttft)] | e2e {f(m['e2e_s'], '.3f')} s")
