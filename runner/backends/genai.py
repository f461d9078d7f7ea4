"""ONNX Runtime GenAI in process, called directly: the runtime Foundry Local embeds, on the same
model folders (a built pack or imported model), without Foundry Local's request layer.

What that buys is a generator that outlives a request. `complete` (the judges' untimed path) keeps
the last request's generator and its KV cache, and reads only the tokens a new prompt does not
share with the last one: a rubric judge's grades of one transcript's answers share the system
prompt, the transcript and the reference, so only the answer and what follows it are read anew
(`Generator.rewind_to`; the JSON-schema guidance is reset by the rewind). A greedy reply is the
same as a fresh read's (tests/test_genai_backend.py compares whole replies; `complete(...,
reuse=False)` is the fresh read). A sampled request (temperature > 0: a judge's retries and
repeats) always starts a fresh generator, so its seed means what it says.

`chat` (the timed path) reads every request anew in a fresh generator, as Foundry Local does: a
benchmark request must not see the one before it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, NamedTuple

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
from runner.models import memory

# The smallest KV capacity (prompt + reply tokens) a kept generator is built with: the grades of a
# calibration transcript fit, so one generator serves them all; a longer request builds a larger one.
MIN_CAPACITY = 4096


class _Kept(NamedTuple):
    """The last greedy complete()'s generator, and what it was built for and has read."""

    settings: str  # the schema and search options it was built with (JSON)
    generator: Any
    ids: list[int]  # the prompt it read
    capacity: int  # its max_length: prompt + reply tokens it can hold


def shared_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class GenAIBackend(Backend):
    name = "genai"
    # repetition_penalty is ORT GenAI's own search option (multiplicative, 1.0 = off), passed as is.
    capabilities = Capabilities(in_process=True, structured_output=True, parallel_safe=False,
                                penalties=("repetition_penalty",))

    def __init__(self, model_id: str, timeout_s: float = 120.0, spec=None, reuse_prefix: bool = True):
        self.model_id, self.timeout_s, self.spec = model_id, timeout_s, spec
        self.reuse_prefix = reuse_prefix
        self._model = self._tokenizer = None
        self._kept: _Kept | None = None
        self._lock = threading.Lock()
        self.reused_tokens = 0  # prompt tokens complete() did not read again: what reuse saved

    @classmethod
    def from_config(cls, backend_cfg, model) -> GenAIBackend:
        options = dict(getattr(backend_cfg, "options", None) or {})
        return cls(model.id, backend_cfg.timeout_s, model, **options)

    def _folder(self) -> str:
        from runner.models import pack

        if self.spec is None or self.spec.source.kind == "remote" or not pack.is_built(self.spec):
            alias = self.spec.alias if self.spec is not None else self.model_id
            raise BackendError(f"backend genai runs built pack or imported models; '{alias}' is not built "
                               f"(run `slmbench models pack {alias}` or `slmbench models import`)")
        return str(pack.model_folder(self.spec))

    def load(self) -> float:
        import onnxruntime_genai as og

        folder = self._folder()
        if short := memory.shortfall(self.spec.alias, "loading it", self.spec.run_memory_mb):
            raise BackendError(short)
        t0 = time.perf_counter()
        try:
            self._model = og.Model(folder)
            self._tokenizer = og.Tokenizer(self._model)
            self._eos = {int(t) for t in self._tokenizer.eos_token_ids}
            self._context = _context_length(folder)
        except Exception as exc:  # native errors carry no stable type; a config without context_length
            raise BackendError(f"loading {folder} failed: {exc}") from None
        return time.perf_counter() - t0

    def unload(self) -> None:
        self._kept = None
        self._model = self._tokenizer = None

    def _ids(self, messages: list[Message]) -> list[int]:
        if self._model is None:
            raise BackendError("model is not loaded")
        text = self._tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        return [int(t) for t in self._tokenizer.encode(text)]

    def _prompt(self, messages: list[Message], max_tokens: int) -> list[int]:
        """The prompt's token ids; BackendError when it and the reply would not fit the context."""
        ids = self._ids(messages)
        if len(ids) + max_tokens > self._context:
            raise BackendError(f"prompt and reply need {len(ids) + max_tokens} tokens; "
                               f"the model's context is {self._context}")
        return ids

    def _generator(self, params: GenParams, capacity: int, json_schema: dict | None):
        import onnxruntime_genai as og

        search = {"max_length": capacity, "do_sample": params.temperature > 0}
        if params.temperature > 0:
            search["temperature"] = params.temperature
        for key, value in (("top_p", params.top_p), ("top_k", params.top_k), ("random_seed", params.seed),
                           ("repetition_penalty", params.repetition_penalty)):
            if value is not None:
                search[key] = value
        gp = og.GeneratorParams(self._model)
        gp.set_search_options(**search)
        if json_schema is not None:
            gp.set_guidance("json_schema", json.dumps(json_schema))
        return og.Generator(self._model, gp)

    def _reply(self, gen, max_tokens: int, started: float):
        """The reply's tokens as they are generated, until an end token (not yielded: it writes
        nothing), the runtime is done or `max_tokens`; BackendError once backend.timeout_s has passed
        since `started`."""
        for _ in range(max_tokens):
            gen.generate_next_token()
            token = int(gen.get_next_tokens()[0])
            if token in self._eos:
                return
            yield token
            if gen.is_done():
                return
            if time.perf_counter() - started >= self.timeout_s:
                raise BackendError(f"request exceeded backend.timeout_s={self.timeout_s}")

    def chat(self, messages: list[Message], params: GenParams, on_delta: OnDelta | None = None) -> Completion:
        deltas: list[tuple[float, str]] = []
        stopped, produced = False, 0
        try:
            ids = self._prompt(messages, params.max_tokens)
            gen = self._generator(params, len(ids) + params.max_tokens, None)
            stream = self._tokenizer.create_stream()
            t_sent = time.perf_counter()
            gen.append_tokens(ids)
            for token in self._reply(gen, params.max_tokens, t_sent):
                produced += 1
                text = stream.decode(token)
                if text:
                    deltas.append((time.perf_counter(), text))
                    if on_delta is not None and on_delta(text):
                        stopped = True
                        break
        except BackendError:
            raise
        except Exception as exc:  # native errors carry no stable type
            raise BackendError(f"generation failed: {exc}") from None
        t_end = deltas[-1][0] if stopped else time.perf_counter()
        # "stop": it ended before the cap (on an end token); "length": cut at the cap
        finish = None if stopped else "length" if produced == params.max_tokens else "stop"
        return Completion(t_sent=t_sent, t_end=t_end, deltas=deltas, prompt_tokens=len(ids),
                          completion_tokens=produced, finish_reason=finish, stopped=stopped)

    def complete(self, messages: list[Message], params: GenParams, json_schema: dict | None = None,
                 reuse: bool | None = None) -> str:
        """One whole reply, constrained to `json_schema`; a greedy request reuses the prefix it shares
        with the last one (unless `reuse` or the backend's `reuse_prefix` says not to). One request at
        a time: the kept generator is this backend's state."""
        with self._lock:
            try:
                return self._complete(messages, params, json_schema, reuse)
            except BackendError:
                raise
            except Exception as exc:  # native errors carry no stable type
                raise BackendError(f"generation failed: {exc}") from None

    def _complete(self, messages, params: GenParams, json_schema, reuse) -> str:
        ids = self._prompt(messages, params.max_tokens)
        keep = (self.reuse_prefix if reuse is None else reuse) and params.temperature == 0
        settings = json.dumps([json_schema, params.top_p, params.top_k, params.repetition_penalty], sort_keys=True)
        need = len(ids) + params.max_tokens
        kept, start, gen = (self._kept if keep else None), 0, None
        t0 = time.perf_counter()
        if kept is not None:
            self._kept = None  # taken: a failure below leaves no half-read generator kept
            if kept.settings == settings and need <= kept.capacity:
                gen, start, capacity = kept.generator, min(shared_prefix(kept.ids, ids), len(ids) - 1), kept.capacity
                try:
                    gen.rewind_to(start)
                    gen.append_tokens(ids[start:])
                except Exception:  # a runtime or model that cannot rewind: read it anew, and stop trying
                    self.reuse_prefix, keep, gen, start = False, False, None, 0
            kept = None  # not kept on: its KV cache is freed before another is allocated
        if gen is None:
            capacity = min(max(MIN_CAPACITY, need), self._context) if keep else need
            gen = self._generator(params, capacity, json_schema)
            gen.append_tokens(ids)
        out = list(self._reply(gen, params.max_tokens, t0))
        if keep:
            self._kept = _Kept(settings, gen, ids, capacity)
        self.reused_tokens += start
        return self._tokenizer.decode(out)

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        try:
            return folder_token_counts(self._folder(), texts)
        except BackendError:
            return None

    def execution_provider(self) -> tuple[str | None, str]:
        from runner.backends.hardware import folder_provider

        try:
            folder = self._folder()
            return folder_provider(folder), f"{folder}/genai_config.json decoder provider_options (ORT GenAI)"
        except (BackendError, OSError, ValueError) as exc:
            return None, str(exc)

    def describe(self) -> dict:
        import onnxruntime_genai

        return {"backend": self.name, "runtime": f"onnxruntime-genai {onnxruntime_genai.__version__}",
                "reuse_prefix": self.reuse_prefix}


def _context_length(folder: str) -> int:
    """The model's context window (genai_config.json model.context_length)."""
    from pathlib import Path

    config = json.loads((Path(folder) / "genai_config.json").read_text())
    return int(config["model"]["context_length"])
