"""backend=genai: ONNX Runtime GenAI in process, called directly, on a built pack model. What it adds
over Foundry Local is prefix reuse in `complete` (the judges' path): held here to the reply a fresh
read gives, to the JSON schema after every rewind, and to reading only what a prompt does not share
with the one before; then a sweep job and a judge's qualification on it, through the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL, run_cli

from judges import qualify, rubric
from runner.backends import BackendError, GenParams
from runner.backends.genai import GenAIBackend, shared_prefix
from runner.models import registry


@pytest.fixture(scope="module")
def backend(pack_home):
    spec = registry.get(SMALL)
    b = GenAIBackend(spec.id, 120.0, spec)
    b.load()
    yield b
    b.unload()


def _rubric_requests(n: int):
    t = qualify.load_calibration().transcripts[0]
    return t.prompt.aspects, [rubric.messages(t.prompt, a.text) for a in t.answers[:n]]


# A reply the 135M model cannot loop in (its rubric rationales loop until cut off): one score.
SCORE = {"type": "object", "additionalProperties": False, "required": ["score"],
         "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}}}


def test_prefix_reuse_gives_the_fresh_reply_and_reads_only_the_rest(backend):
    _, requests = _rubric_requests(3)
    params = GenParams(max_tokens=32, temperature=0.0, seed=42)
    ids = [backend._ids(m) for m in requests]
    for msgs in requests:
        reused = backend.complete(msgs, params, SCORE, reuse=True)
        fresh = backend.complete(msgs, params, SCORE, reuse=False)
        assert reused == fresh
        assert set(json.loads(reused)) == {"score"}  # the schema holds after a rewind
    # unconstrained, a wrong cache would show in free text sooner than in a 1-5 score
    free = GenParams(max_tokens=40, temperature=0.0)
    for msgs in requests:
        assert backend.complete(msgs, free, None, reuse=True) == backend.complete(msgs, free, None, reuse=False)
    # what reuse reads: the first request all of it, each later one only what follows the shared part
    hello = [{"role": "user", "content": "Hello"}]
    backend.complete(hello, params, SCORE)  # another prompt kept before: only the chat template's start shared
    before = backend.reused_tokens
    for msgs in requests:
        backend.complete(msgs, params, SCORE, reuse=True)
    shared = shared_prefix(ids[0], ids[1]) + shared_prefix(ids[1], ids[2])
    start = shared_prefix(backend._ids(hello), ids[0])
    assert backend.reused_tokens - before == start + shared
    assert shared > 0.5 * (len(ids[1]) + len(ids[2]))  # the transcript is most of a rubric prompt


def test_a_sampled_request_starts_fresh_so_its_seed_holds(backend):
    _, requests = _rubric_requests(1)
    params = GenParams(max_tokens=24, temperature=0.9, seed=7)
    backend.complete(requests[0], GenParams(max_tokens=8), None)  # a kept greedy generator beside it
    reused = backend.reused_tokens
    first = backend.complete(requests[0], params)
    assert backend.complete(requests[0], params) == first
    assert backend.reused_tokens == reused


def test_chat_streams_and_counts_its_tokens(backend):
    msgs = [{"role": "user", "content": "Count from one to twenty in words."}]
    cut = backend.chat(msgs, GenParams(max_tokens=6, temperature=0.0))
    assert cut.prompt_tokens == len(backend._ids(msgs))
    assert cut.completion_tokens == 6 and not cut.tokens_estimated and cut.finish_reason == "length"
    times = [t for t, _ in cut.deltas]
    assert cut.t_sent < times[0] and times == sorted(times) and times[-1] <= cut.t_end
    ended = backend.chat([{"role": "user", "content": "Reply with the single word: yes"}],
                         GenParams(max_tokens=64, temperature=0.0))
    assert ended.finish_reason == "stop" and 1 <= ended.completion_tokens < 64  # the end token is not counted


def test_the_repetition_penalty_reaches_the_runtime(backend):
    """Declared in its capabilities, so config accepts it: it must change what the model writes."""
    msgs = [{"role": "user", "content": "Write the word 'go' twenty times."}]
    plain = backend.chat(msgs, GenParams(max_tokens=24, repetition_penalty=1.0)).text
    assert backend.chat(msgs, GenParams(max_tokens=24, repetition_penalty=1.8)).text != plain


def test_a_model_not_built_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMBENCH_HOME", str(tmp_path))
    spec = registry.get("qwen2.5-coder-1.5b-int4")
    with pytest.raises(BackendError, match="'qwen2.5-coder-1.5b-int4' is not built"):
        GenAIBackend(spec.id, 10.0, spec).load()


def test_a_sweep_job_and_a_judge_qualification_run_on_it(tmp_path, pack_home, short_calibration):
    job = tmp_path / "job"
    done = run_cli("run", f"model={SMALL}", "backend=genai", "prompts=rag-basics", "prompts.limit=2",
                   "run.rounds=1", "run.warmup=0", "judge=none", f"hydra.run.dir={job}")
    assert done.returncode == 0, done.stderr
    summary = json.loads((job / "summary.json").read_text())
    assert summary["n"] == 2 and summary["status"] == "ok" and summary["runtime"]["backend"] == "genai"
    assert summary["cap"]["counted"] is True  # counted by the model folder's tokenizer, not estimated
    q = run_cli("judge", "qualify", f"{SMALL}/checklist", "--no-reasoning", "--backend", "genai",
                "--calibration", short_calibration.split("=", 1)[1], "--json", "--refresh")
    assert q.returncode in (0, 1), q.stderr
    figures = json.loads(q.stdout)
    assert figures["identity"]["backend"] == "genai" and figures["n_grades"] == 6
