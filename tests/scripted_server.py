"""Scripted OpenAI-compatible chat-completions server with known delays.

A test tool for slmbench: it answers ``/v1/chat/completions`` on 127.0.0.1
with a deterministic token stream whose timing is fixed by a :class:`Script`,
so tests can check measured TTFT / TPOT / e2e figures against ground truth.

Timing model (all offsets measured from the request's arrival, i.e. the
``time.perf_counter()`` value appended to ``server.arrivals``):

* role-only chunk ``{"role": "assistant", "content": ""}``: offset 0
  (only when ``Script.role_chunk``);
* content chunk ``j`` (0-based, ``tokens_per_chunk`` tokens each, the last
  one possibly shorter): offset ``ttft_s + j * tokens_per_chunk * tpot_s``;
* non-streaming reply: offset ``ttft_s + (n - 1) * tpot_s`` for ``n`` tokens.

Every deadline is computed from the arrival time, so sleeps do not drift.
``Script.token_offsets()`` returns the per-token ground truth.

Token ``i`` is the text ``f"t{i} "``, so three tokens read ``"t0 t1 t2 "``.

Streams use HTTP/1.1 chunked transfer encoding with ``Connection: close``,
one HTTP chunk per SSE event, written immediately (TCP_NODELAY is on).
``fail_after_tokens`` closes the socket without the terminating zero-length
chunk, so HTTP clients (httpx / openai) see an incomplete body error rather
than a clean end of stream.

Usage in tests::

    with ScriptedServer(Script(ttft_s=0.2, tpot_s=0.02, tokens=11)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x")
        ...
        srv.script = Script(status=429)   # change behaviour on the fly
        srv.requests, srv.arrivals        # what was received, and when

Manual use::

    python tests/scripted_server.py --port 8765 --ttft 0.1 --tpot 0.01 --tokens 20
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["Script", "ScriptedHTTPServer", "ScriptedServer", "token_text"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


def token_text(i: int) -> str:
    """Text of token ``i`` (0-based)."""
    return f"t{i} "


@dataclass(frozen=True)
class Script:
    """Behaviour of the server for requests that arrive while it is active.

    All durations are in seconds.
    """

    ttft_s: float = 0.05
    """Delay from request arrival to the first non-empty content chunk."""
    tpot_s: float = 0.01
    """Delay between successive tokens."""
    tokens: int = 20
    """Completion tokens to emit (capped by the request's max_tokens)."""
    tokens_per_chunk: int = 1
    """Tokens packed into one SSE chunk; chunks are tpot_s*tokens_per_chunk apart."""
    role_chunk: bool = True
    """Send a role-only chunk with empty content immediately on arrival."""
    include_usage: bool = True
    """Honour stream_options.include_usage with a final usage-only chunk."""
    status: int = 200
    """If not 200, reply at once with this status and an OpenAI-style error."""
    fail_after_tokens: int | None = None
    """Drop the connection abruptly after emitting this many tokens."""
    model_ids: tuple[str, ...] = ("scripted-model",)
    """Models listed by /v1/models and accepted by chat completions."""
    jitter_s: float = 0.0
    """Each request's whole schedule starts up to this much later (uniform, seeded): a noisy endpoint."""
    ttft_cycle: tuple[float, ...] = ()
    """If set, request k (in arrival order) gets ttft_s = ttft_cycle[k % len]: known fast and slow ones."""
    reply: Callable[[str, Any], str] | None = None
    """If set, the answer is reply(model, messages), one whitespace-delimited word per token (`tokens`
    is then that word count): an endpoint serving answers of known content."""
    html_page: bool = False
    """Answer chat completions with 200 and an HTML page (a proxy or login page), not a stream."""
    end_after_tokens: int | None = None
    """End the stream cleanly after this many tokens, with no finish reason and no [DONE]."""
    garbage_after_tokens: int | None = None
    """After this many tokens send an event whose data is not JSON (a broken proxy or server)."""
    done_without_finish: bool = False
    """Finish the stream with [DONE] but never send a finish reason."""
    model_info: dict[str, Any] | None = None
    """Extra fields of each /v1/models entry, e.g. {"runtime": {"executionProvider": "CPUExecutionProvider"}}:
    an endpoint that reports the device its models run on."""
    per_model: dict[str, dict[str, Any]] | None = None
    """Field overrides by requested model id, e.g. {"beta": {"tpot_s": 0.03}}: one endpoint serving
    models of known, different speeds."""
    serial: bool = False
    """Serve one request at a time, first come first served: a request waits for every earlier one to
    end, then runs its whole schedule from the moment its turn comes, so the server's service time is
    S = ttft_s + (tokens - 1) * tpot_s and its capacity is known (closed loop at concurrency c: each
    request waits (c - 1) * S in steady state)."""

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ValueError("tokens must be >= 0")
        if self.tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be >= 1")
        if self.ttft_s < 0 or self.tpot_s < 0:
            raise ValueError("delays must be >= 0")
        if self.fail_after_tokens is not None and self.fail_after_tokens < 0:
            raise ValueError("fail_after_tokens must be >= 0 or None")
        if isinstance(self.model_ids, str):  # guard against ("m") typo
            object.__setattr__(self, "model_ids", (self.model_ids,))

    def emitted_tokens(self, max_tokens: int | None = None) -> int:
        """Number of tokens a completed request emits."""
        if max_tokens is None:
            return self.tokens
        return max(0, min(self.tokens, max_tokens))

    def chunk_offset(self, chunk_index: int) -> float:
        """Offset from arrival at which content chunk ``chunk_index`` is streamed."""
        return self.ttft_s + chunk_index * self.tokens_per_chunk * self.tpot_s

    def token_offsets(self, max_tokens: int | None = None) -> list[float]:
        """Per-token offset from arrival at which each token is streamed."""
        n = self.emitted_tokens(max_tokens)
        return [self.chunk_offset(i // self.tokens_per_chunk) for i in range(n)]

    def nonstream_offset(self, max_tokens: int | None = None) -> float:
        """Offset from arrival at which a non-streaming reply is sent."""
        n = self.emitted_tokens(max_tokens)
        return self.ttft_s + max(0, n - 1) * self.tpot_s


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _count_prompt_words(messages: Any) -> int:
    words = 0
    if not isinstance(messages, list):
        return 0
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
                elif isinstance(part, str):
                    words += len(part.split())
    return words


def _error_body(
    status: int, message: str, err_type: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": err_type or _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": None,
        }
    }


class ScriptedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the active script and the request log."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # default of 5 drops SYNs under concurrency bursts

    def __init__(self, script: Script, port: int = 0) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        self.rng = random.Random(0)  # jitter: reproducible across runs
        self._ids = itertools.count()
        self._turns = threading.Condition()  # Script.serial: a ticket lock, first come first served
        self._next_ticket = 0
        self._serving = 0
        super().__init__(("127.0.0.1", port), _Handler)

    @contextlib.contextmanager
    def turn(self):
        """Hold the server alone, in arrival order (threading.Lock is not fair: a request could be
        passed over and wait longer than the requests ahead of it)."""
        with self._turns:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._turns.wait()
        try:
            yield
        finally:
            with self._turns:
                self._serving += 1
                self._turns.notify_all()

    def record(self, body: dict[str, Any], arrival: float) -> int:
        with self.lock:
            self.requests.append(body)
            self.arrivals.append(arrival)
            return next(self._ids)


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ScriptedServer/1.0"

    def log_message(self, *args: Any) -> None:  # silence per-request logging
        pass

    # ---- helpers -----------------------------------------------------

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(
        self, status: int, message: str, err_type: str | None = None
    ) -> None:
        self._send_json(status, _error_body(status, message, err_type))

    def _write_chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def _write_event(self, obj: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _abort(self) -> None:
        """Kill the connection without finishing the HTTP response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    # ---- GET ---------------------------------------------------------

    def do_GET(self) -> None:
        script = self.server.script
        path = self._path()
        if path == "/v1/models":
            created = int(time.time())
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": m,
                            "object": "model",
                            "created": created,
                            "owned_by": "scripted",
                            **(script.model_info or {}),
                        }
                        for m in script.model_ids
                    ],
                },
            )
        elif path.startswith("/v1/models/"):
            model = path[len("/v1/models/") :]
            if model in script.model_ids:
                self._send_json(
                    200,
                    {
                        "id": model,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "scripted",
                    },
                )
            else:
                self._send_error(404, f"model '{model}' not found")
        elif path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        else:
            self._send_error(404, f"unknown path {self.path}")

    # ---- POST --------------------------------------------------------

    def do_POST(self) -> None:
        arrival = time.perf_counter()
        script = self.server.script  # snapshot: later changes don't affect this request
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""

        if self._path() != "/v1/chat/completions":
            self._send_error(404, f"unknown path {self.path}")
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_error(400, "request body must be a JSON object")
            return
        req_no = self.server.record(body, arrival)
        received = arrival
        if script.ttft_cycle:
            script = dataclasses.replace(script, ttft_s=script.ttft_cycle[req_no % len(script.ttft_cycle)])
        if script.jitter_s:
            with self.server.lock:
                arrival += self.server.rng.uniform(0, script.jitter_s)

        if script.status != 200:
            self._send_error(script.status, f"scripted error status {script.status}")
            return
        if script.html_page:
            page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Proxy login</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            self.wfile.flush()
            return
        model = body.get("model")
        if model not in script.model_ids:
            self._send_error(404, f"model '{model}' not found")
            return

        if script.per_model and model in script.per_model:
            script = dataclasses.replace(script, **script.per_model[model])

        words: list[str] | None = None
        if script.reply is not None:
            words = re.findall(r"\s*\S+", script.reply(model, body.get("messages")))
            script = dataclasses.replace(script, tokens=len(words))

        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        if max_tokens is not None and not isinstance(max_tokens, int):
            self._send_error(400, "max_tokens must be an integer")
            return
        n = script.emitted_tokens(max_tokens)
        finish_reason = "length" if n < script.tokens else "stop"
        prompt_tokens = _count_prompt_words(body.get("messages"))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
        }
        ctx = {
            "id": f"chatcmpl-scripted-{req_no}",
            "created": int(time.time()),
            "model": model,
        }
        with self.server.turn() if script.serial else contextlib.nullcontext():
            if script.serial:  # the schedule starts when its turn comes (keeping any jitter)
                arrival = time.perf_counter() + (arrival - received)
            try:
                if body.get("stream"):
                    stream_opts = body.get("stream_options") or {}
                    want_usage = bool(
                        script.include_usage
                        and isinstance(stream_opts, dict)
                        and stream_opts.get("include_usage")
                    )
                    self._stream(script, arrival, n, finish_reason, usage, want_usage, ctx, words)
                else:
                    self._nonstream(script, arrival, n, finish_reason, usage, ctx, words)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _nonstream(
        self,
        script: Script,
        arrival: float,
        n: int,
        finish_reason: str,
        usage: dict[str, int],
        ctx: dict[str, Any],
        words: list[str] | None = None,
    ) -> None:
        text = words.__getitem__ if words is not None else token_text
        fail = script.fail_after_tokens
        if fail is not None and fail < n:
            _sleep_until(arrival + script.ttft_s + max(0, fail - 1) * script.tpot_s)
            self._abort()
            return
        _sleep_until(arrival + script.nonstream_offset(n))
        self._send_json(
            200,
            {
                **ctx,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "".join(text(i) for i in range(n)),
                        },
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            },
        )

    def _stream(
        self,
        script: Script,
        arrival: float,
        n: int,
        finish_reason: str,
        usage: dict[str, int],
        want_usage: bool,
        ctx: dict[str, Any],
        words: list[str] | None = None,
    ) -> None:
        text = words.__getitem__ if words is not None else token_text
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            obj: dict[str, Any] = {
                **ctx,
                "object": "chat.completion.chunk",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
            }
            if want_usage:
                obj["usage"] = None
            return obj

        if script.role_chunk:
            self._write_event(chunk({"role": "assistant", "content": ""}, None))

        fail = script.fail_after_tokens
        limit = n if fail is None else min(n, fail)
        for cap in (script.end_after_tokens, script.garbage_after_tokens):
            if cap is not None:
                limit = min(limit, cap)
        k = script.tokens_per_chunk
        sent = 0
        j = 0
        while sent < limit:
            _sleep_until(arrival + script.chunk_offset(j))
            hi = min(sent + k, limit)
            delta: dict[str, Any] = {
                "content": "".join(text(i) for i in range(sent, hi))
            }
            if j == 0 and not script.role_chunk:
                delta = {"role": "assistant", **delta}
            is_last = hi == n and not script.done_without_finish
            self._write_event(chunk(delta, finish_reason if is_last else None))
            sent = hi
            j += 1

        if fail is not None and fail < n:
            if fail == 0:
                _sleep_until(arrival + script.ttft_s)
            self._abort()
            return

        if script.garbage_after_tokens is not None:
            self._write_chunk(b"data: <<not json \x00\x01>>\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if script.end_after_tokens is not None and script.end_after_tokens < n:
            self.wfile.write(b"0\r\n\r\n")  # a clean end of the body, mid-answer
            self.wfile.flush()
            return

        if n == 0:  # nothing emitted: finish_reason goes in its own chunk
            _sleep_until(arrival + script.ttft_s)
            self._write_event(chunk({}, finish_reason))
        if want_usage:
            final = {
                **ctx,
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": usage,
            }
            self._write_event(final)
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def rubric_judge(model, messages) -> str:
    """A rubric judge of known behaviour: a score per aspect from the answer's length, 5 on every
    aspect when the answer carries the injected note."""
    text = messages[-1]["content"]
    aspects = re.findall(r"^- ([^:\n]+):", text.split("Grade the answer on these aspects", 1)[1], re.M)
    answer = text.split("<answer>", 1)[1].split("</answer>", 1)[0]
    injected = "NOTE TO THE GRADER" in answer
    return json.dumps({a: {"score": 5 if injected else 1 + (len(answer) + i) % 4,
                           "rationale": f"{a}: {len(answer)} characters"} for i, a in enumerate(aspects)})


class ScriptedServer:
    """Runs a :class:`ScriptedHTTPServer` in a daemon thread.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, script: Script | None = None, port: int = 0) -> None:
        self.httpd = ScriptedHTTPServer(script or Script(), port)
        self._thread: threading.Thread | None = None

    # script / log proxies
    @property
    def script(self) -> Script:
        return self.httpd.script

    @script.setter
    def script(self, value: Script) -> None:
        self.httpd.script = value

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.httpd.requests

    @property
    def arrivals(self) -> list[float]:
        return self.httpd.arrivals

    def clear(self) -> None:
        """Forget recorded requests and arrivals."""
        with self.httpd.lock:
            self.httpd.requests.clear()
            self.httpd.arrivals.clear()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"scripted-server-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Scripted OpenAI-compatible chat server (127.0.0.1)."
    )
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft", type=float, default=Script.ttft_s)
    p.add_argument("--tpot", type=float, default=Script.tpot_s)
    p.add_argument("--tokens", type=int, default=Script.tokens)
    p.add_argument("--tokens-per-chunk", type=int, default=Script.tokens_per_chunk)
    p.add_argument("--no-role-chunk", action="store_true")
    p.add_argument("--no-usage", action="store_true")
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--fail-after-tokens", type=int, default=None)
    p.add_argument("--serial", action="store_true", help="one request at a time, first come first served")
    p.add_argument(
        "--model", action="append", dest="models", help="model id (repeatable)"
    )
    a = p.parse_args(argv)
    script = Script(
        ttft_s=a.ttft,
        tpot_s=a.tpot,
        tokens=a.tokens,
        tokens_per_chunk=a.tokens_per_chunk,
        role_chunk=not a.no_role_chunk,
        include_usage=not a.no_usage,
        status=a.status,
        fail_after_tokens=a.fail_after_tokens,
        serial=a.serial,
        model_ids=tuple(a.models) if a.models else Script.model_ids,
    )
    srv = ScriptedServer(script, a.port)
    print(f"scripted server on {srv.base_url}  {script}", flush=True)
    try:
        srv.httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()


if __name__ == "__main__":
    main()
