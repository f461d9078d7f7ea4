"""Any OpenAI-compatible endpoint: a Foundry Local service, vLLM, llama.cpp server, Ollama."""

from __future__ import annotations

import os
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

    def load(self) -> float:
        """No load on a remote server: check it answers and serves the model; return 0.0 s."""
        try:
            served = list(self._client.models.list())
        except self._errors.APIError as exc:
            raise BackendError(f"endpoint {self.base_url} unreachable: {_reason(exc)}") from None
        ids = [m.id for m in served]
        self._entry = next((m.model_dump() for m in served if m.id == self.model_id), {})
        if ids and self.model_id not in ids:
            raise BackendError(f"endpoint {self.base_url} does not serve '{self.model_id}' "
                               f"(it serves: {', '.join(ids[:10])})")
        return 0.0

    def chat(self, messages: list[Message], params: GenParams, on_delta: OnDelta | None = None) -> Completion:
        extra = {"top_k": params.top_k} if params.top_k is not None else None
        deltas: list[tuple[float, str]] = []
        usage = None
        finish = None
        t_sent = time.perf_counter()
        try:
            stream = self._client.chat.completions.create(
                model=self.model_id, messages=messages, stream=True,
                stream_options={"include_usage": True}, max_tokens=params.max_tokens,
                temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                extra_body=extra)
            for chunk in stream:
                now = time.perf_counter()
                if now - t_sent > self.timeout_s:  # the client's timeout bounds each read, not the request
                    stream.close()
                    raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}")
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    # Role-only and empty chunks are not tokens: they must not start TTFT.
                    if choice.delta and choice.delta.content:
                        deltas.append((now, choice.delta.content))
                        if on_delta is not None:
                            on_delta(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
            t_end = time.perf_counter()
        except self._errors.APITimeoutError:
            raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}") from None
        except self._errors.APIConnectionError as exc:
            cause = f"{type(exc.__cause__).__name__}: {exc.__cause__}" if exc.__cause__ else str(exc)
            where = f"stream broken after {len(deltas)} chunks" if deltas else f"cannot reach {self.base_url}"
            raise BackendError(f"{where} ({cause})") from None
        except self._errors.APIError as exc:
            raise BackendError(_reason(exc)) from None
        except BackendError:
            raise
        except Exception as exc:  # a connection dropped mid-stream surfaces as httpx errors
            raise BackendError(f"stream broken: {type(exc).__name__}: {exc}") from None
        if usage is None:
            # No usage from the server: one chunk ~ one token is an estimate, flagged as such.
            return Completion(t_sent, t_end, deltas, None, len(deltas), True, finish)
        return Completion(t_sent, t_end, deltas, usage.prompt_tokens, usage.completion_tokens, False, finish)

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


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = message or str(exc)
    return f"HTTP {status}: {text}" if status else text
