"""The token cap a job runs under when `decoding.max_tokens` is not set: derived from the prompt
set's own reference answers, so a good answer is never cut.

    max_tokens = ceil(longest reference, in the model's tokens, x CAP_MARGIN / CAP_STEP) x CAP_STEP

The model's tokens come from its backend (`Backend.count_tokens`: the tokenizer of an in-process
model's folder); a backend that cannot count (an endpoint) is estimated at one token per
CHARS_PER_TOKEN characters, which over-counts English for the tokenizer seen (SmolLM2: 3.6-4.4
characters per token on the meeting-notes references), so the cap errs long. A set without references runs at
CAP_FALLBACK. A loop still runs to the cap unless the loop stop ends it (decoding.loop_stop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

CAP_MARGIN = 1.5  # a good answer may be half as long again as the set's longest reference
CAP_STEP = 32
CAP_FALLBACK = 256  # tokens, for a prompt set without reference answers
CHARS_PER_TOKEN = 3.0

Counter = Callable[[Sequence[str]], list[int] | None]


def derive(references: Sequence[str], count: Counter | None = None) -> dict:
    """{max_tokens, source, longest_reference_tokens, counted} for the references given."""
    refs = [r for r in references if r and r.strip()]
    if not refs:
        return {"max_tokens": CAP_FALLBACK, "source": f"default: the prompt set has no reference answers "
                f"({CAP_FALLBACK})", "longest_reference_tokens": None, "counted": None}
    counts = count(refs) if count is not None else None
    counted = counts is not None
    if not counted:
        counts = [math.ceil(len(r) / CHARS_PER_TOKEN) for r in refs]
    longest = max(counts)
    cap = math.ceil(longest * CAP_MARGIN / CAP_STEP) * CAP_STEP
    how = "the model's tokenizer" if counted else f"estimated at {CHARS_PER_TOKEN:g} characters per token"
    return {"max_tokens": cap, "longest_reference_tokens": longest, "counted": counted,
            "source": f"derived: longest reference {longest} tokens ({how}) x {CAP_MARGIN:g}, "
                      f"rounded up to {CAP_STEP}"}


def for_job(max_tokens: int | None, references: Sequence[str], count: Counter | None = None) -> dict:
    """The cap of a job: `decoding.max_tokens` when set, else derived."""
    if max_tokens is not None:
        return {"max_tokens": int(max_tokens), "source": "set: decoding.max_tokens",
                "longest_reference_tokens": None, "counted": None}
    return derive(references, count)
