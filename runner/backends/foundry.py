"""Foundry Local, in process: the model runs inside this Python process through the SDK."""

from __future__ import annotations

import json
import threading
import time

from runner.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    Completion,
    GenParams,
    Message,
    OnDelta,
    folder_token_counts,
)
from runner.models import catalog, memory

_FINISH = {0: None, 1: "error", 2: "stop", 3: "length", 4: "tool_calls"}


class FoundryBackend(Backend):
    name = "foundry"
    # In process: load, RSS and disk are ours; jobs on one machine would share its cores.
    # No penalty: the runtime refuses a nonzero frequency/presence penalty ("ORT repetition_penalty has
    # different semantics"), and ignores `repetition_penalty` passed as an additional option (SDK 2.2.1:
    # identical greedy text at 1.3, and -1 accepted), so any of them is refused at config time.
    capabilities = Capabilities(in_process=True, structured_output=True, parallel_safe=False)

    def __init__(self, model_id: str, timeout_s: float = 120.0, spec=None):
        self.model_id = model_id
        self.timeout_s = timeout_s
        self.spec = spec  # the model's registry entry: a built pack model lost from the registry is re-registered
        self._model = None

    @classmethod
    def from_config(cls, backend_cfg, model) -> FoundryBackend:
        return cls(model.id, backend_cfg.timeout_s, model)

    def load(self) -> float:
        if self.spec is not None and self.spec.source.kind != "remote":
            ensure_registered(self.spec)
            if short := memory.shortfall(self.spec.alias, "loading it", self.spec.run_memory_mb):
                raise BackendError(short)
        try:
            model = catalog.find(self.model_id)
        except Exception as exc:  # native errors carry no stable type
            raise BackendError(f"Foundry Local catalog: {exc}") from None
        if model is None:
            raise BackendError(f"model '{self.model_id}' is not registered with Foundry Local "
                               f"(run `slmbench models pack` or `slmbench models import`)")
        t0 = time.perf_counter()
        try:
            model.load()
        except Exception as exc:
            raise BackendError(f"loading {self.model_id} failed: {exc}") from None
        self._model = model
        return time.perf_counter() - t0

    def unload(self) -> None:
        if self._model is not None:
            try:
                self._model.unload()
            finally:
                self._model = None

    def in_process(self) -> bool:
        return True

    def model_path(self) -> str | None:
        return self._model.get_path() if self._model is not None else None

    def chat(self, messages: list[Message], params: GenParams, on_delta: OnDelta | None = None) -> Completion:
        from foundry_local_sdk import (
            ChatSession,
            MessageItem,
            Request,
            RequestOptions,
            SearchOptions,
            TextItem,
        )

        if self._model is None:
            raise BackendError("model is not loaded")
        build = {"system": MessageItem.system, "user": MessageItem.user, "assistant": MessageItem.assistant}
        options = RequestOptions(search=SearchOptions(
            temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            seed=params.seed, max_output_tokens=params.max_tokens,
            do_sample=True if params.temperature > 0 else None))
        # A fresh session per request: ChatSession keeps turn history, and a
        # benchmark request must not see the previous one.
        with ChatSession(self._model) as session, Request() as request:
            session.set_options(options)
            session.set_streaming(True)
            for m in messages:
                request.add_item(build[m["role"]](m["content"]))
            timer = threading.Timer(self.timeout_s, request.cancel)
            timer.start()  # before t_sent: starting a thread costs ~0.5 ms, which is not the model's
            deltas: list[tuple[float, str]] = []
            stopped = False
            usage = finish = None
            t_sent = time.perf_counter()
            try:
                with session.process_streaming_request(request) as stream:
                    for item in stream:
                        if isinstance(item, TextItem) and item.text:
                            deltas.append((time.perf_counter(), item.text))
                            if on_delta is not None and on_delta(item.text):
                                stopped = True  # leaving the loop cancels the request (the SDK joins its worker)
                                break
                    if stopped:  # the answer ended at its last chunk; the cancellation is not the model's time
                        t_end = deltas[-1][0]
                    else:
                        t_end = time.perf_counter()
                        with stream.final_response as final:
                            usage = final.get_usage()
                            finish = _FINISH.get(int(final.finish_reason), str(final.finish_reason))
            except Exception as exc:
                if time.perf_counter() - t_sent >= self.timeout_s:
                    raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}") from None
                raise BackendError(f"generation failed: {exc}") from None
            finally:
                timer.cancel()
        if usage is None:  # a stopped stream has no final response: one chunk is one token, flagged
            return Completion(t_sent=t_sent, t_end=t_end, deltas=deltas, completion_tokens=len(deltas),
                              tokens_estimated=True, stopped=True)
        return Completion(t_sent=t_sent, t_end=t_end, deltas=deltas,
                          prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                          finish_reason=finish)

    def complete(self, messages: list[Message], params: GenParams, json_schema: dict | None = None) -> str:
        """Non-streamed, through the runtime's OpenAI-JSON request path, which accepts a
        `response_format` JSON schema and constrains decoding to it (a guided grammar)."""
        from foundry_local_sdk import ChatSession, Request, TextItem, TextItemType

        if self._model is None:
            raise BackendError("model is not loaded")
        body = {"model": self.model_id, "messages": messages, "max_tokens": params.max_tokens,
                "temperature": params.temperature}
        if params.seed is not None:
            body["metadata"] = {"random_seed": str(params.seed)}
        if json_schema is not None:
            # The native layer wants the schema object itself (not the OpenAI {name, schema} wrapper).
            body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
        try:
            with ChatSession(self._model) as session, Request() as request:
                request.add_item(TextItem(json.dumps(body), TextItemType.OPENAI_JSON))
                with session.process_request(request) as response:
                    reply = json.loads(response.get_item(0).text)
        except Exception as exc:
            raise BackendError(f"generation failed: {exc}") from None
        return reply["choices"][0]["message"].get("content") or ""

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        try:
            path = self._folder()
        except Exception:  # an unregistered model: estimate instead
            return None
        return folder_token_counts(path, texts)

    def _folder(self) -> str | None:
        if self.spec is not None and self.spec.source.kind != "remote":
            from runner.models import pack

            return str(pack.model_folder(self.spec))
        model = self._model or catalog.find(self.model_id)
        return model.get_path() if model is not None else None

    def execution_provider(self) -> tuple[str | None, str]:
        """Foundry Local's model info when it names a provider; otherwise (a registered model, whose
        runtime metadata the SDK leaves unset) the folder's genai_config.json, which ORT GenAI
        follows. Readable before load, so a mismatch fails before anything is measured."""
        from runner.backends.hardware import folder_provider, short_name

        try:
            model = self._model or catalog.find(self.model_id)
        except Exception as exc:
            return None, f"Foundry Local catalog: {exc}"
        if model is None:
            return None, "model not registered"
        runtime = getattr(model.info, "runtime", None)
        if runtime is not None and runtime.execution_provider:
            return short_name(runtime.execution_provider), "Foundry Local model info (runtime.execution_provider)"
        path = model.get_path()
        try:
            return folder_provider(path), f"{path}/genai_config.json decoder provider_options (ORT GenAI)"
        except (OSError, ValueError) as exc:
            return None, f"cannot read {path}/genai_config.json: {exc}"

    def describe(self) -> dict:
        import foundry_local_sdk
        import onnxruntime_genai

        return {"backend": self.name, "runtime": f"foundry-local-sdk {foundry_local_sdk.__version__}, "
                                                 f"onnxruntime-genai {onnxruntime_genai.__version__}"}


def ensure_registered(model) -> None:
    """A built pack model whose registration was lost (fresh Foundry cache) is re-registered."""
    from runner.models import pack

    if not pack.is_built(model):
        raise BackendError(f"model '{model.alias}' is not built; run `slmbench models pack {model.alias}`")
    catalog.register(model.id, pack.model_folder(model), model.alias)
