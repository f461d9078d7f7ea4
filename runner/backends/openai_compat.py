"""Any OpenAI-compatible endpoint: a Foundry Local service, vLLM, llama.cpp server, Ollama."""

from __future__ import annotations

import json
import os
import re
import time

from runner.backends.base import Backend, BackendError, Capabilities, Completion, GenParams, Message, OnDelta


class OpenAIBackend(Backend):
    name = "openai"
    # The model runs on the server: several jobs may run at once (the load is there).
    # frequency/presence penalties are OpenAI's; repetition_penalty is the field vLLM and llama.cpp's
    # server read beside them (a server that does not know it ignores it).
    capabilities = Capabilities(needs_base_url=True, structured_output=True,
                                penalties=("frequency_penalty", "presence_penalty", "repetition_penalty"))

    @classmethod
    def from_config(cls, backend_cfg, model) -> OpenAIBackend:
        return cls(model.id, backend_cfg.base_url, backend_cfg.api_key_env, backend_cfg.timeout_s)

    def __init__(self, model_id: str, base_url: str, api_key_env: str | None = None, timeout_s: float = 120.0):
        import httpx2  # the HTTP client the openai SDK itself runs on

        self.timeout_s = timeout_s
        self.model_id = model_id
        self.base_url = base_url
        self._entry: dict = {}
        # One pooled client (keep-alive where the server allows it), thread-safe for concurrent
        # requests. The key is read from the environment at run time and held only in its header:
        # it never enters the config, a record or a log.
        self._httpx = httpx2
        self._http = httpx2.Client(timeout=timeout_s, limits=httpx2.Limits(max_connections=None,
                                                                            max_keepalive_connections=256))
        self._chat_url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def load(self) -> float | None:
        """Nothing is loaded here: check the server answers and serves the model. Its load time is
        not ours to measure, so None (reported as "not measured for endpoints", never 0.0)."""
        where = f"endpoint {self.base_url}"
        try:
            r = self._http.get(self.base_url.rstrip("/") + "/models",
                               headers={k: v for k, v in self._headers.items() if k == "Authorization"})
        except self._httpx.HTTPError as exc:
            raise BackendError(f"{where} unreachable: {type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            raise BackendError(f"{where} unreachable: {_http_error(r.status_code, r.content)}")
        try:
            served = [m for m in r.json()["data"] if isinstance(m, dict)]
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"{where}/models is not a model list (content-type "
                               f"'{r.headers.get('content-type', 'none')}'); first bytes: {_snippet(r.content)!r}") \
                from None
        ids = [str(m.get("id")) for m in served]
        self._entry = next((m for m in served if m.get("id") == self.model_id), {})
        if ids and self.model_id not in ids:
            raise BackendError(f"{where} does not serve '{self.model_id}' (it serves: {', '.join(ids[:10])})")
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
        for key, value in (("top_p", params.top_p), ("seed", params.seed), ("top_k", params.top_k),
                           *penalties(params)):
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
                raise BackendError(_http_error(response.status_code, b"".join(_bounded(response, 65536))))
            kind = response.headers.get("content-type", "")
            if "text/event-stream" not in kind:
                raise BackendError(_not_a_stream(response, kind))
            for raw in response.iter_bytes():
                now = time.perf_counter()
                stream.feed(raw, now)
                if now - t_sent > self.timeout_s:  # the client's timeout bounds each read, not the request
                    raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}")
                stream.overhead_s += time.perf_counter() - now
                if stream.stopped:  # closing the response (below) ends the server's generation
                    break
            # a stopped answer ended at its last chunk's arrival
            t_end = stream.deltas[-1][0] if stream.stopped else time.perf_counter()
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
        if not stream.done and stream.finish is None and not stream.stopped:
            raise BackendError(f"stream ended early after {len(stream.deltas)} chunks (no finish reason, no [DONE])")
        c = Completion(t_sent, t_end, stream.deltas, finish_reason=stream.finish, client_overhead_s=stream.overhead_s,
                       stopped=stream.stopped)
        if stream.usage is None:
            # No usage from the server: one chunk ~ one token is an estimate, flagged as such.
            c.completion_tokens, c.tokens_estimated = len(stream.deltas), True
        else:
            c.prompt_tokens = stream.usage.get("prompt_tokens")
            c.completion_tokens = stream.usage.get("completion_tokens")
        return c

    def complete(self, messages: list[Message], params: GenParams, json_schema: dict | None = None) -> str:
        """One whole reply, untimed (the judge's path), under the same rules as a stream: an error
        status, a reply that is not JSON (a proxy's HTML page) or one without a message is a
        BackendError naming it. A server that cannot constrain output to `json_schema` (400)
        is asked again plainly."""
        body = {"model": self.model_id, "messages": messages, "max_tokens": params.max_tokens,
                "temperature": params.temperature}
        if params.seed is not None:
            body["seed"] = params.seed
        body.update((k, v) for k, v in penalties(params) if v is not None)
        if json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "grade", "schema": json_schema, "strict": True}}
        response = self._post(body)
        if response.status_code == 400 and json_schema is not None:
            body.pop("response_format")
            response = self._post(body)
        if response.status_code != 200:
            raise BackendError(_http_error(response.status_code, response.content))
        kind = response.headers.get("content-type", "")
        if "json" not in kind:
            raise BackendError(f"not a JSON reply: HTTP 200 with content-type '{kind or 'none'}' (a proxy or login "
                               f"page?); first bytes: {_snippet(response.content)!r}")
        try:
            return response.json()["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"reply without choices[0].message: {_snippet(response.content)!r}") from None

    def _post(self, body: dict):
        try:
            return self._http.post(self._chat_url, content=json.dumps(body).encode(),
                                   headers={**self._headers, "Accept": "application/json"})
        except self._httpx.TimeoutException:
            raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}") from None
        except self._httpx.ConnectError as exc:
            raise BackendError(f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})") from None
        except self._httpx.HTTPError as exc:
            raise BackendError(f"reply broken ({type(exc).__name__}: {exc})") from None

    def unload(self) -> None:
        self._http.close()

    def execution_provider(self) -> tuple[str | None, str]:
        from runner.backends.hardware import reported_provider

        ran_on = reported_provider(self._entry)
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
        self.stopped = False  # on_delta asked to stop: the rest of the stream is not read
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
            if self.stopped:
                return

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
                if self.on_delta is not None and self.on_delta(text):
                    self.stopped = True
                    return
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]


def penalties(params: GenParams) -> tuple[tuple[str, float | None], ...]:
    return (("frequency_penalty", params.frequency_penalty), ("presence_penalty", params.presence_penalty),
            ("repetition_penalty", params.repetition_penalty))


def _snippet(data: bytes, limit: int = 120) -> str:
    """The first bytes of a body, bounded and with control characters blanked (safe in a log line)."""
    text = data[:limit].decode("utf-8", errors="replace")
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip() + ("..." if len(data) > limit else "")


def _http_error(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message") if isinstance(err, dict) else str(err)
    except ValueError:
        message = _snippet(body)
    return f"HTTP {status}: {message or _snippet(body)}"


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
