"""Timing math against ground truth: OpenAIBackend + request_metrics on a scripted server
whose TTFT / TPOT / token counts are known, and runner.metrics.stats.summarize on known lists.

Every assertion here is on a figure the runner reports; each test fails if the behaviour
its name states breaks (role chunk counted as a token, tpot divided by n instead of n-1,
itl confused with tpot, estimated counts not flagged, a crash instead of BackendError...).
"""

from __future__ import annotations

import socket
import statistics
import time

import numpy as np
import pytest
from scripted_server import Script, ScriptedServer, token_text

from runner.backends.base import BackendError, GenParams
from runner.backends.openai_compat import OpenAIBackend
from runner.metrics.request import request_metrics
from runner.metrics.stats import summarize

pytestmark = pytest.mark.serial  # measured times against a scripted server's known delays

MODEL = "scripted-model"
MESSAGES = [{"role": "user", "content": "count for me"}]
REL = 0.05  # relative tolerance on timing figures
SLACK = 0.015  # absolute slack for client overhead (request build, socket, SSE parse), seconds


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, tokens=3)) as srv:
        yield srv


@pytest.fixture(scope="module")
def backend(server):
    b = OpenAIBackend(MODEL, server.base_url, timeout_s=10.0)
    b.chat(MESSAGES, GenParams(max_tokens=8))  # untimed warm-up: the first call in a process is slower
    return b


def _run(server, backend, script: Script, max_tokens: int = 256):
    server.script = script
    c = backend.chat(MESSAGES, GenParams(max_tokens=max_tokens))
    return c, request_metrics(c)


def _within(measured: float, true: float, rel: float = REL, slack: float = 0.0) -> bool:
    return abs(measured - true) <= rel * true + slack


# ---- 1. TTFT, e2e, TPOT, decode_tps against the script ---------------------------------

def test_ttft_e2e_tpot_decode_match_script(server, backend):
    script = Script(ttft_s=0.2, tpot_s=0.02, tokens=21)
    true_e2e = script.ttft_s + (script.tokens - 1) * script.tpot_s  # last token's offset
    runs = [_run(server, backend, script) for _ in range(3)]  # median of 3: robust to a busy CPU
    ms = [m for _, m in runs]
    ttft = statistics.median(m["ttft_s"] for m in ms)
    e2e = statistics.median(m["e2e_s"] for m in ms)
    tpot = statistics.median(m["tpot_s"] for m in ms)
    tps = statistics.median(m["decode_tps"] for m in ms)
    overhead = statistics.median(a - c.t_sent for a, (c, _) in zip(server.arrivals[-3:], runs, strict=True))
    print(f"\n  ttft   measured {ttft:.4f} s   true {script.ttft_s:.4f} s   ({(ttft / script.ttft_s - 1):+.2%})"
          f"\n  e2e    measured {e2e:.4f} s   true {true_e2e:.4f} s   ({(e2e / true_e2e - 1):+.2%})"
          f"\n  tpot   measured {tpot:.5f} s  true {script.tpot_s:.5f} s  ({(tpot / script.tpot_s - 1):+.2%})"
          f"\n  decode measured {tps:.2f} tok/s true {1 / script.tpot_s:.2f} tok/s"
          f"\n  client send->server arrival {overhead * 1000:.2f} ms")

    for c, m in runs:
        assert m["completion_tokens"] == script.tokens and m["tokens_estimated"] is False
        assert m["chunks"] == script.tokens and m["finish_reason"] == "stop"
        assert c.text == "".join(token_text(i) for i in range(script.tokens))
        # hard physical bound: the first token cannot be seen before the server sent it
        assert m["ttft_s"] >= script.ttft_s
        assert m["decode_tps"] == pytest.approx(1.0 / m["tpot_s"])
        assert m["e2e_s"] == pytest.approx(m["ttft_s"] + (script.tokens - 1) * m["tpot_s"])
    assert _within(ttft, script.ttft_s, slack=SLACK), ttft
    assert e2e >= true_e2e and _within(e2e, true_e2e, slack=SLACK), e2e
    assert _within(e2e, ttft + (script.tokens - 1) * script.tpot_s, rel=0.0, slack=REL * 0.4)
    # Dividing by n instead of n-1 would give 0.4/21 = 0.01905 s (-4.8%, a decode window 19 ms short).
    # A first chunk read late on a busy machine also shortens the window the client sees (12 ms of 0.4 s
    # is -3%), so the lower bound is per run and physical: the window, (n-1) x tpot, falls short of the
    # scripted (n-1) x tpot_s by at most how late the first chunk arrived against the server's schedule
    # (same perf_counter clock: the server is a thread of this process). /n misses it by 19 ms more.
    for arrival, (c, m) in zip(server.arrivals[-3:], runs, strict=True):
        first_late = c.deltas[0][0] - (arrival + script.ttft_s)
        window = (script.tokens - 1) * m["tpot_s"]
        assert window >= (script.tokens - 1) * script.tpot_s - first_late - 1e-6, (m["tpot_s"], first_late)
    assert tpot <= script.tpot_s * (1 + REL), tpot
    # decode_tps = 1 / tpot_s per run (above): its bounds are tpot's, the upper one per run and physical
    assert tps <= 1.0 / (script.tpot_s * (1 - REL)) or all(
        (script.tokens - 1) / m["decode_tps"] >= (script.tokens - 1) * script.tpot_s - (c.deltas[0][0] - (a + script.ttft_s))
        - 1e-6 for a, (c, m) in zip(server.arrivals[-3:], runs, strict=True)), tps
    assert tps >= 1.0 / (script.tpot_s * (1 + REL)), tps


def test_tpot_divides_by_tokens_minus_one(server, backend):
    # 3 tokens 0.1 s apart: (e2e-ttft)/(n-1) = 0.1 s; /n would give 0.067 s, a 33% error
    _, m = _run(server, backend, Script(ttft_s=0.05, tpot_s=0.1, tokens=3))
    assert m["completion_tokens"] == 3
    assert _within(m["tpot_s"], 0.1), m["tpot_s"]
    assert _within(m["decode_tps"], 10.0), m["decode_tps"]
    # one token: no decode interval, so no tpot (None, never a guess)
    _, m1 = _run(server, backend, Script(ttft_s=0.02, tpot_s=0.1, tokens=1))
    assert m1["completion_tokens"] == 1 and m1["ttft_s"] is not None
    assert m1["tpot_s"] is None and m1["decode_tps"] is None


# ---- 2. a role-only first chunk is not the first token ---------------------------------

def test_role_only_chunk_does_not_start_ttft(server, backend):
    script = Script(ttft_s=0.3, tpot_s=0.01, tokens=5, role_chunk=True)
    c, m = _run(server, backend, script)
    # a client counting the immediate role chunk {"role": "assistant", "content": ""} reports ~5 ms
    assert m["ttft_s"] >= 0.29, m["ttft_s"]
    assert _within(m["ttft_s"], script.ttft_s, slack=SLACK), m["ttft_s"]
    assert all(text for _, text in c.deltas)  # no empty delta recorded
    assert m["chunks"] == 5 and c.text == "t0 t1 t2 t3 t4 "


# ---- 3. multi-token chunks: tpot per token, itl per chunk --------------------------------

def test_multi_token_chunks_keep_tpot_and_itl_apart(server, backend):
    script = Script(ttft_s=0.1, tpot_s=0.02, tokens=21, tokens_per_chunk=4)
    c, m = _run(server, backend, script)
    assert m["completion_tokens"] == 21 and m["tokens_estimated"] is False  # from usage, not chunks
    assert m["chunks"] == 6  # 4+4+4+4+4+1
    assert c.text == "".join(token_text(i) for i in range(21))
    assert _within(m["tpot_s"], script.tpot_s), m["tpot_s"]  # per token: 20 gaps in 0.4 s
    itl = m["itl"]
    assert itl["n"] == 5
    assert _within(itl["p50_s"], 4 * script.tpot_s, rel=0.1), itl  # per chunk: 4 tokens apart
    assert _within(itl["mean_s"], 4 * script.tpot_s, rel=0.1), itl
    assert itl["p50_s"] > 3 * m["tpot_s"]  # the two figures are not the same quantity


# ---- 4. no usage from the server: chunk count, flagged as an estimate --------------------

def test_missing_usage_counts_chunks_and_flags_estimate(server, backend):
    no_usage = Script(ttft_s=0.02, tpot_s=0.01, tokens=9, tokens_per_chunk=3, include_usage=False)
    c, m = _run(server, backend, no_usage)
    assert c.text == "".join(token_text(i) for i in range(9))
    assert m["completion_tokens"] == 3 == m["chunks"]  # 3 chunks of 3 tokens: an estimate
    assert m["tokens_estimated"] is True and m["prompt_tokens"] is None

    _, mu = _run(server, backend, Script(ttft_s=0.02, tpot_s=0.01, tokens=9, tokens_per_chunk=3))
    assert mu["completion_tokens"] == 9 and mu["tokens_estimated"] is False
    assert mu["prompt_tokens"] == len(MESSAGES[0]["content"].split())


# ---- 5. max_tokens cap ---------------------------------------------------------------------

def test_max_tokens_cap_gives_length_finish(server, backend):
    script = Script(ttft_s=0.02, tpot_s=0.005, tokens=20)
    c, m = _run(server, backend, script, max_tokens=5)
    assert server.requests[-1]["max_tokens"] == 5  # the cap was sent
    assert m["finish_reason"] == "length" and m["completion_tokens"] == 5
    assert c.text == "t0 t1 t2 t3 t4 "
    _, full = _run(server, backend, script, max_tokens=50)
    assert full["finish_reason"] == "stop" and full["completion_tokens"] == 20


# ---- 6. failures are BackendError with a clear message -------------------------------------

def test_http_500_is_backend_error(server, backend):
    server.script = Script(status=500)
    n_before = len(server.requests)
    with pytest.raises(BackendError, match=r"HTTP 500.*scripted error status 500"):
        backend.chat(MESSAGES, GenParams())
    assert len(server.requests) == n_before + 1  # no silent retry hiding the failure in the timings


def test_unknown_model_is_backend_error(server, backend):
    server.script = Script()
    other = OpenAIBackend("no-such-model", server.base_url, timeout_s=5.0)
    with pytest.raises(BackendError, match=r"HTTP 404.*no-such-model"):
        other.chat(MESSAGES, GenParams())
    with pytest.raises(BackendError, match=r"does not serve 'no-such-model'.*scripted-model"):
        other.load()
    assert backend.load() is None  # the served model passes the same check; no load time to measure


def test_stream_dying_midway_is_backend_error(server, backend):
    script = Script(ttft_s=0.05, tpot_s=0.02, tokens=20, fail_after_tokens=3)
    server.script = script
    n_before = len(server.requests)
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as info:
        backend.chat(MESSAGES, GenParams())
    elapsed = time.perf_counter() - t0
    assert str(info.value).strip()
    assert len(server.requests) == n_before + 1  # it reached the server: a mid-stream failure
    assert elapsed >= script.ttft_s + 2 * script.tpot_s  # raised after the 3 tokens, not at connect


def test_closed_port_load_is_backend_error():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dead = OpenAIBackend(MODEL, f"http://127.0.0.1:{port}/v1", timeout_s=5.0)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match=rf"127\.0\.0\.1:{port}/v1 unreachable"):
        dead.load()
    assert time.perf_counter() - t0 < 2.0  # refused at once, no retry loop
    with pytest.raises(BackendError):
        dead.chat(MESSAGES, GenParams())


@pytest.mark.parametrize("role_chunk", [False, True], ids=["silent", "role-chunk-then-silent"])
def test_slower_than_timeout_is_backend_error(server, role_chunk):
    server.script = Script(ttft_s=1.0, tpot_s=0.01, tokens=5, role_chunk=role_chunk)
    impatient = OpenAIBackend(MODEL, server.base_url, timeout_s=0.3)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match="timeout"):
        impatient.chat(MESSAGES, GenParams())
    elapsed = time.perf_counter() - t0
    assert 0.25 <= elapsed < 1.5, elapsed


# ---- 7. runner.metrics.stats.summarize ---------------------------------------------------------

def test_summarize_known_list():
    xs = list(range(1, 101))
    s = summarize(xs)
    assert s["n"] == 100 and s["min"] == 1 and s["max"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert s["std"] == pytest.approx(statistics.stdev(xs))  # ddof=1: 29.0115
    assert s["std"] == pytest.approx(29.011491975882016)
    # linear interpolation, by hand and as numpy computes it
    assert [s["p50"], s["p90"], s["p95"], s["p99"]] == pytest.approx([50.5, 90.1, 95.05, 99.01])
    assert [s["p50"], s["p90"], s["p95"], s["p99"]] == pytest.approx(list(np.percentile(xs, [50, 90, 95, 99])))
    lo, hi = s["ci95"]
    assert lo <= s["p50"] <= hi and lo < hi
    assert s["p95_low_n"] is False
    assert summarize(xs, seed=0)["ci95"] == s["ci95"]  # seeded: reproducible
    assert summarize([]) is None
    assert summarize([None, 2.0, None, 4.0])["n"] == 2  # None values are dropped, not zero


def test_summarize_ci_narrows_with_n():
    rng = np.random.default_rng(7)
    small = summarize(list(rng.normal(1.0, 0.2, 20)))
    large = summarize(list(rng.normal(1.0, 0.2, 400)))
    for s in (small, large):
        lo, hi = s["ci95"]
        assert lo <= s["p50"] <= hi
    width = lambda s: s["ci95"][1] - s["ci95"][0]  # noqa: E731
    assert width(large) < width(small) / 2  # ~1/sqrt(n): 20x the samples, ~4.5x narrower


def test_summarize_flags_low_n_p95():
    assert summarize([float(i) for i in range(19)])["p95_low_n"] is True
    assert summarize([float(i) for i in range(20)])["p95_low_n"] is False
    assert summarize([float(i) for i in range(21)])["p95_low_n"] is False
    one = summarize([3.0])
    assert one["p95_low_n"] is True and one["std"] == 0.0 and one["ci95"] == [3.0, 3.0]


# ---- 8. responses that are not an answer ---------------------------------------------------

def test_html_page_with_200_is_backend_error_naming_the_content_type(server, backend):
    server.script = Script(html_page=True)
    with pytest.raises(BackendError, match=r"not an event stream: HTTP 200 with content-type 'text/html.*"
                                           r"first bytes: '<!DOCTYPE html><html><head><title>Sign in"):
        backend.chat(MESSAGES, GenParams())


def test_stream_ending_without_finish_or_done_is_backend_error(server, backend):
    server.script = Script(ttft_s=0.01, tpot_s=0.001, tokens=20, end_after_tokens=1)
    with pytest.raises(BackendError, match="stream ended early after 1 chunks"):
        backend.chat(MESSAGES, GenParams())


def test_done_without_finish_reason_is_accepted_with_no_finish_reason(server, backend):
    server.script = Script(ttft_s=0.01, tpot_s=0.001, tokens=5, done_without_finish=True)
    c, m = _run(server, backend, server.script)
    assert c.text == "t0 t1 t2 t3 t4 " and m["finish_reason"] is None


def test_client_overhead_is_measured_per_request(server, backend):
    c, m = _run(server, backend, Script(ttft_s=0.01, tpot_s=0.001, tokens=10))
    # parsing 10 token chunks + usage takes microseconds, never nothing and never the whole request
    assert 0 < m["client_overhead_s"] < m["e2e_s"] / 2


def test_garbage_event_is_backend_error_with_the_bytes_sanitised(server, backend):
    server.script = Script(ttft_s=0.01, tpot_s=0.001, tokens=20, garbage_after_tokens=2)
    with pytest.raises(BackendError, match=r"unparseable stream event after 2 chunks: '<<not json +>>'"):
        backend.chat(MESSAGES, GenParams())
