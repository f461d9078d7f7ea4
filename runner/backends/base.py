"""The backend interface: what the runner needs from anything that serves a model.

A backend loads a model (timed), streams one chat request at a time per call
(thread-safe for concurrent calls), and reports the token usage the server gave.
Timestamps are `time.perf_counter()` seconds, taken as close to the wire as the
backend allows; the metrics are derived from them in `runner/metrics/request.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
# Called with each content chunk as it arrives; a true return asks the backend to stop generating
# (the loop stop, runner/metrics/degenerate.py): the Completion then says `stopped`.
OnDelta = Callable[[str], bool | None]


@dataclass
class GenParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    # Penalties on repeated tokens (decoding.*; None: the runtime's default, nothing is sent).
    repetition_penalty: float | None = None  # multiplicative, 1.0 = off (vLLM, llama.cpp, ORT GenAI)
    frequency_penalty: float | None = None  # additive, OpenAI semantics (endpoints)
    presence_penalty: float | None = None  # additive, OpenAI semantics (endpoints)


@dataclass
class Completion:
    """One streamed request as observed by the client."""

    t_sent: float  # request handed to the runtime / socket
    t_end: float  # last byte (stream closed)
    deltas: list[tuple[float, str]] = field(default_factory=list)  # (arrival, non-empty text)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False  # True when the server gave no usage and we counted chunks
    finish_reason: str | None = None
    client_overhead_s: float | None = None  # the client's own processing time inside the timed window
    stopped: bool = False  # on_delta asked to stop: the answer ended there, not on its own or at the cap

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.deltas)


class BackendError(Exception):
    """A model or endpoint failure, recorded with its cause; the sweep goes on."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend is and can do. The runner asks these, never a backend's name."""

    in_process: bool = False  # the model runs in this process: its load time, RSS and disk are ours to measure
    streaming: bool = True  # chat() streams, so TTFT and per-token timing are measured
    structured_output: bool = False  # complete() can constrain a reply to a JSON schema
    logprobs: bool = False  # token log-probabilities are available
    parallel_safe: bool = True  # several jobs may run at once (False: they would share this machine's cores)
    needs_base_url: bool = False  # the backend's `base_url` must be set
    # The decoding penalties it sends to the runtime (decoding.repetition_penalty, frequency_penalty,
    # presence_penalty); one it does not name is refused at config time rather than silently dropped.
    penalties: tuple[str, ...] = ()


class Backend(ABC):
    """Subclass it, declare `capabilities`, and name the class in a `conf/backend/*.yaml`
    (`target: package.module:Class`, or `/path/to/file.py:Class`): see docs/backends.md's
    "Writing a backend"."""

    name: str = "abstract"
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def from_config(cls, backend_cfg: Any, model: Any) -> Backend:
        """Build it for one model from the `backend` config group; `model` has `alias`, `id` and
        `source`. Backend-specific settings come from `backend.options`."""
        return cls(model.id, **dict(backend_cfg.get("options") or {}))

    @abstractmethod
    def load(self) -> float | None:
        """Make the model ready; return the wall time it took, seconds, or None when this
        backend cannot measure it (a remote server's model was loaded before we came)."""

    @abstractmethod
    def chat(self, messages: list[Message], params: GenParams, on_delta: OnDelta | None = None) -> Completion:
        """Send one streamed chat request and collect it."""

    def complete(self, messages: list[Message], params: GenParams, json_schema: dict | None = None) -> str:
        """One whole reply, untimed (used by judges). Backends that can constrain output to
        `json_schema` override this; the default ignores the schema."""
        return self.chat(messages, params).text

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        """Each text's length in the model's tokens, or None when this backend cannot tell (the cap
        derived from reference answers is then estimated, runner/measure/cap.py)."""
        return None

    def unload(self) -> None:  # noqa: B027 - optional for remote backends
        pass

    def execution_provider(self) -> tuple[str | None, str]:
        """(the provider the model runs on, as a short name like cpu or cuda; where that was read).
        None when the backend cannot tell: the job records the device as unverified."""
        return None, "not reported by the backend"

    def describe(self) -> dict:
        return {"backend": self.name}


def folder_token_counts(folder: str | None, texts: list[str]) -> list[int] | None:
    """Each text's length in tokens by a model folder's own tokenizer.json (the `tokenizers` package,
    installed with the `import` extra); None when either is missing or unreadable."""
    if not folder:
        return None
    try:
        from pathlib import Path

        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    except Exception:  # no package, no file, an unreadable file: the caller estimates instead
        return None
    return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
