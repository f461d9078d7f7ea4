"""Energy per 1k tokens and peak RSS by value: `summary._energy` on known facts, the job's choice
between the RAPL counter and the hardware.power_w estimate (runner/measure/job.py), and
`memory.PeakSampler` seeing an allocation that is gone by the time the block ends. No model."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from runner.backends.base import Backend, Completion, GenParams
from runner.config import plan
from runner.config.prompts import Prompt, PromptSet
from runner.config.schema import HardwareConfig, ModelConfig, RunConfig
from runner.measure import job, open_loop
from runner.measure.memory import PeakSampler, rss_mb
from runner.store import records
from runner.store.facts import Facts
from runner.store.summary import _energy

TOKENS = 5  # per fake request


def config(**run):
    """A job's plan with a fake model, a 15 W power figure and the given run settings."""
    return plan.make(model=ModelConfig(alias="fake-model", id="fake-model"), hardware=HardwareConfig(power_w=15.0),
                     run=RunConfig(**{"warmup": 0, "progress": False, **run}))


def test_energy_estimate_and_measured_by_value():
    cfg = config()
    # estimate: 15 W x 12 s / 3600 = 0.05 Wh for 600 tokens -> 0.05 / 0.6 = 1/12 Wh per 1k tokens
    e = _energy(cfg.hardware, Facts(window_s=12.0), {"output_tokens": 600})
    assert e["wh_per_1k_tokens"] == pytest.approx(1 / 12) and e["source"].startswith("estimate")
    # measured wins over the estimate: 540 J / 3600 = 0.15 Wh for 600 tokens -> 0.15 / 0.6 = 0.25
    e = _energy(cfg.hardware, Facts(window_s=12.0, rapl_joules=540.0), {"output_tokens": 600})
    assert e["wh_per_1k_tokens"] == pytest.approx(0.25) and e["source"].startswith("measured")
    # nothing to divide by, or nothing to measure with: no figure, never a made-up one
    assert _energy(cfg.hardware, Facts(window_s=12.0), {"output_tokens": 0}) is None
    assert _energy(cfg.hardware, Facts(window_s=None), {"output_tokens": 600}) is None
    assert _energy(replace(cfg.hardware, power_w=None), Facts(window_s=12.0), {"output_tokens": 600}) is None


class Instant(Backend):
    """Answers every request with TOKENS tokens in ~2 ms."""

    def load(self):
        return 0.0

    def chat(self, messages, params, on_delta=None):
        t = time.perf_counter()
        time.sleep(0.002)
        return Completion(t, time.perf_counter(), [(t + 0.001, "a "), (t + 0.0015, "b")], prompt_tokens=3,
                          completion_tokens=TOKENS, finish_reason="stop")


class Counter:
    """A readable RAPL package counter: 1000 J at the first read, 1250 J at every later one."""

    def __init__(self):
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return 1000.0 if self.reads == 1 else 1250.0


@pytest.mark.parametrize("run, rapl", [
    ({}, True),  # closed loop: the counter spans exactly the measured rounds
    ({"rate": 200.0, "requests": 4}, True),  # open loop, nothing around the window
    ({"rate": 200.0, "requests": 4, "warmup_s": 0.03}, False),  # the counter would count the warm-up load
    ({"rate": 200.0, "requests": 4, "cooldown_s": 0.03}, False),  # ... or the cool-down load
], ids=["closed", "open", "open-warmup", "open-cooldown"])
def test_job_uses_rapl_only_when_it_spans_just_the_window(tmp_path, monkeypatch, run, rapl):
    monkeypatch.setattr(job, "rapl_joules", Counter())
    cfg = config(rounds=2, **run)
    prompts = PromptSet("p", "p.json", (Prompt("a", (("user", "hi"),)), Prompt("b", (("user", "ho"),))))
    todo = open_loop.pending(tmp_path, Facts(), cfg.run) if cfg.run.rate else [
        (r, p) for r in range(2) for p in prompts.prompts]
    facts = Facts()
    job._warm_up_and_measure(Instant(), todo, prompts, GenParams(max_tokens=16), cfg,
                             tmp_path / records.REQUESTS, facts)
    window = facts.window
    assert window["ok"] == 4 and window["output_tokens"] == 4 * TOKENS  # measured requests only
    e = _energy(cfg.hardware, facts, window)
    if rapl:
        # 1250 - 1000 = 250 J = 250/3600 Wh over 20 tokens -> (250 / 3600) / 0.02 Wh per 1k tokens
        assert facts.rapl_joules == 250.0
        assert e["wh_per_1k_tokens"] == pytest.approx(250 / 3600 / 0.02) and e["source"].startswith("measured")
    else:
        assert facts.rapl_joules is None
        # 15 W x window_s / 3600 Wh over 20 tokens
        assert e["wh_per_1k_tokens"] == pytest.approx(15.0 * facts.window_s / 3600 / 0.02)
        assert e["source"].startswith("estimate")


MB = 1_000_000


def _peak_over_a_transient_allocation(sampler: PeakSampler, size: int = 200 * MB) -> tuple[float, float]:
    """(RSS before, sampler peak) around `size` bytes held for 0.4 s and freed inside the block."""
    before = rss_mb()
    with sampler:
        buf = bytearray(size)
        buf[::4096] = b"\x01" * len(range(0, size, 4096))  # touch every page: resident, not just reserved
        time.sleep(0.4)  # 8 sampling intervals of 50 ms
        del buf
    return before, sampler.peak_mb


class NeverSamples(PeakSampler):
    def _loop(self) -> None:
        return


def test_peak_sampler_sees_a_freed_allocation():
    before, peak = _peak_over_a_transient_allocation(PeakSampler())
    assert peak >= before + 180, (before, peak)
    assert rss_mb() < before + 100  # freed: only a sample taken while it lived can show it
    # the same check on a sampler that only reads at start and end: it must fail
    before, blind = _peak_over_a_transient_allocation(NeverSamples())
    assert blind < before + 180, (before, blind)
