"""What every measured request of a job shares, and how one is sent.

The closed loop, the open loop, adaptive rounds and a capacity search's points all send the job's
prompts the same way: through its backend with its decoding params, each answer watched for a
loop (decoding.loop_stop), each record carrying the model's label and id, appended as it ends and
counted on the progress line. A load point swaps in its own writer (`replace(sender, writer=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.backends import Completion, GenParams
from runner.config.prompts import Prompt
from runner.metrics import degenerate
from runner.metrics.request import request_metrics


@dataclass(frozen=True)
class Sender:
    backend: Any  # runner.backends.base.Backend, loaded
    params: GenParams
    label: str  # the model's label (the plan's), in every record
    model_id: str
    loop_stop: bool  # decoding.loop_stop: end an answer once it repeats itself
    writer: Any  # .append(record): runner/store/records.RecordWriter, or a load point's
    progress: Any  # .step(note): runner/measure/job.Progress

    def base(self, prompt: Prompt, rnd: int) -> dict:
        return {"model": self.label, "model_id": self.model_id, "prompt_id": prompt.id, "round": rnd}

    def chat(self, prompt: Prompt) -> tuple[Completion, dict]:
        """One streamed request (BackendError when it fails); the answer's figures
        (runner/metrics/request.py) and its loop fields (runner/metrics/degenerate.py), both
        computed after the timed call."""
        stop = degenerate.LoopStop() if self.loop_stop else None
        c = self.backend.chat(prompt.chat_messages(), self.params, stop.feed if stop else None)
        return c, {**request_metrics(c, self.params.max_tokens),
                   **degenerate.answer_fields(c.text, prompt_texts(prompt), stop)}

    def keep(self, record: dict) -> None:
        self.writer.append(record)
        self.progress.step(record["status"] if record["status"] != "ok" else "")


def prompt_texts(prompt: Prompt) -> list[str]:
    """What an echo would repeat: the system and user messages."""
    return [content for role, content in prompt.messages if role in ("system", "user")]
