"""Any OpenAI-compatible endpoint: a Foundry Local service, vLLM, llama.cpp server, Ollama."""

from __future__ import annotations

import json
import os
import re
import time

from runner.backends.base import Backend, BackendError, Completion, GenParams, Message, OnDelta


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model_id: str, base_url: str, api_key_env: str | None = None, timeout_s: float = 120.0):
        import openai

        self.timeout_s = timeout_s
        self.model_id = model_id
        self.base_url = base_url
        # The key is read from the environment at run time and held only here:
        # it never enters the config, a record or a log.
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._client = openai.OpenAI(base_url=base_url, api_key=key or "not-needed",
                                     timeout=timeout_s, max_retries=0)
        self._errors = openai
        # The timed path: one pooled client (keep-alive where the server allows it), thread-safe
        # for concurrent requests. httpx2 is the HTTP client the openai SDK itself runs on.
        import httpx2

        self._httpx = httpx2
        self._http = httpx2.Client(timeout=timeout_s, limits=httpx2.Limits(max_connections=None,
                                                                            max_keepalive_connections=256))
        self._chat_url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def load(self) -> float | None:
        """Nothing is loaded here: check the server answers and serves the model. Its load time is
        not ours to measure, so None (reported as "not measured for endpoints", never 0.0)."""
        try:
            served = list(self._client.models.list())
        except self._errors.APIError as exc:
            raise BackendError(f"endpoint {self.base_url} unreachable: {_reason(exc)}") from None
        ids = [m.id for m in served]
        self._entry = next((m.model_dump() for m in served if m.id == self.model_id), {})
        if ids and self.model_id not in ids:
            raise BackendError(f"endpoint {self.base_url} does not serve '{self.model_id}' "
                               f"(it serves: {', '.join(ids[:10])})")
        return None

    def chat(self, messages: list[Message], params: GenParams, on_delta: OnDelta | None = None) -> Completion:
        """One streamed request on the lean path: the body is serialized and the request built
        before `t_sent`; `t_sent` is taken right before the bytes go out, and each chunk is
        stamped the moment its read returns, before it is parsed. The stream is parsed here
        (SSE lines, json), not by the SDK's typed models. The time spent parsing inside the
        timed window is the client's own overhead, recorded per request."""
        body = {"model": self.model_id, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, "max_tokens": params.max_tokens,
                "temperature": params.temperature}
        for key, value in (("top_p", params.top_p), ("seed", params.seed), ("top_k", params.top_k)):
            if value is not None:
                body[key] = value
        request = self._http.build_request("POST", self._chat_url, content=json.dumps(body).encode(),
                                           headers=self._headers)
        stream = _Stream(on_delta)
        t_sent = time.perf_counter()
        response = None
        try:
            response = self._http.send(request, stream=True)
            if response.status_code != 200:
                raise BackendError(_http_error(response))
            kind = response.headers.get("content-type", "")
            if "text/event-stream" not in kind:
                raise BackendError(_not_a_stream(response, kind))
            for raw in response.iter_bytes():
                now = time.perf_counter()
                stream.feed(raw, now)
                if now - t_sent > self.timeout_s:  # the client's timeout bounds each read, not the request
                    raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}")
                stream.overhead_s += time.perf_counter() - now
            t_end = time.perf_counter()
        except BackendError:
            raise
        except self._httpx.TimeoutException:
            raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}") from None
        except self._httpx.ConnectError as exc:
            raise BackendError(f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})") from None
        except self._httpx.HTTPError as exc:  # a connection dropped mid-stream
            raise BackendError(f"stream broken after {len(stream.deltas)} chunks ({type(exc).__name__}: {exc})") \
                from None
        finally:
            if response is not None:
                response.close()
        if not stream.done and stream.finish is None:
            raise BackendError(f"stream ended early after {len(stream.deltas)} chunks (no finish reason, no [DONE])")
        c = Completion(t_sent, t_end, stream.deltas, finish_reason=stream.finish, client_overhead_s=stream.overhead_s)
        if stream.usage is None:
            # No usage from the server: one chunk ~ one token is an estimate, flagged as such.
            c.completion_tokens, c.tokens_estimated = len(stream.deltas), True
        else:
            c.prompt_tokens = stream.usage.get("prompt_tokens")
            c.completion_tokens = stream.usage.get("completion_tokens")
        return c

    def complete(self, messages: list[Message], params: GenParams, json_schema: dict | None = None) -> str:
        kwargs = dict(model=self.model_id, messages=messages, max_tokens=params.max_tokens,
                      temperature=params.temperature, seed=params.seed)
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "grade", "schema": json_schema, "strict": True}}
        try:
            try:
                reply = self._client.chat.completions.create(**kwargs)
            except self._errors.BadRequestError:
                if json_schema is None:
                    raise
                kwargs.pop("response_format")  # the server cannot constrain output: ask plainly
                reply = self._client.chat.completions.create(**kwargs)
        except self._errors.APIError as exc:
            raise BackendError(_reason(exc)) from None
        return reply.choices[0].message.content or ""

    def execution_provider(self) -> tuple[str | None, str]:
        from runner.hardware import reported_provider

        ran_on = reported_provider(getattr(self, "_entry", {}))
        return (ran_on, f"{self.base_url}/models entry for {self.model_id}") if ran_on else (
            None, "the endpoint does not report its device")

    def describe(self) -> dict:
        return {"backend": self.name, "base_url": self.base_url}


class _Stream:
    """Server-sent events as they arrive: content deltas stamped with their read's arrival time,
    the finish reason, the usage chunk, and whether `[DONE]` came."""

    def __init__(self, on_delta: OnDelta | None):
        self.on_delta = on_delta
        self.deltas: list[tuple[float, str]] = []
        self.finish: str | None = None
        self.usage: dict | None = None
        self.done = False
        self.overhead_s = 0.0
        self._buf = b""

    def feed(self, raw: bytes, now: float) -> None:
        self._buf += raw
        while True:
            cut = self._buf.find(b"\n")
            if cut < 0:
                return
            line, self._buf = self._buf[:cut].strip(), self._buf[cut + 1:]
            if line.startswith(b"data:"):
                self._event(line[5:].strip(), now)

    def _event(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            raise BackendError(f"unparseable stream event after {len(self.deltas)} chunks: "
                               f"{_snippet(payload)!r}") from None
        if not isinstance(event, dict):
            return
        if event.get("error"):
            err = event["error"]
            raise BackendError(f"stream error after {len(self.deltas)} chunks: "
                               f"{err.get('message') if isinstance(err, dict) else err}")
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            # Role-only and empty chunks are not tokens: they must not start TTFT.
            if text:
                self.deltas.append((now, text))
                if self.on_delta is not None:
                    self.on_delta(text)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]


def _snippet(data: bytes, limit: int = 120) -> str:
    """The first bytes of a body, bounded and with control characters blanked (safe in a log line)."""
    text = data[:limit].decode("utf-8", errors="replace")
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip() + ("..." if len(data) > limit else "")


def _http_error(response) -> str:
    body = b"".join(_bounded(response, 65536))
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message") if isinstance(err, dict) else str(err)
    except ValueError:
        message = _snippet(body)
    return f"HTTP {response.status_code}: {message or _snippet(body)}"


def _not_a_stream(response, kind: str) -> str:
    return (f"not an event stream: HTTP 200 with content-type '{kind or 'none'}' (a proxy or login page?); "
            f"first bytes: {_snippet(b''.join(_bounded(response, 120)))!r}")


def _bounded(response, limit: int):
    got = 0
    for chunk in response.iter_bytes():
        yield chunk[:limit - got]
        got += len(chunk)
        if got >= limit:
            return


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = message or str(exc)
    return f"HTTP {status}: {text}" if status else text
