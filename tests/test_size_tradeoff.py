"""The sweep report's 'small against big': the largest model against the smallest on the same
prompts, decoding and hardware, as one sentence and one plot."""

from __future__ import annotations

from pathlib import Path

from runner.report import size_tradeoff


def _row(job: str, model: str, params: float, quality: float | None, ttft: float, tps: float, rss: float,
         disk: float, status: str = "ok", prompts: str = "meeting-notes") -> dict:
    return {"job": job, "model": model, "params_m": params, "status": status, "prompts": prompts,
            "decoding": "deterministic", "hardware": "cpu", "quality.overall": quality, "quality.source": "notes",
            "ttft_s.p50": ttft, "decode_tps.p50": tps, "rss_mb": rss, "disk_mb": disk}


ROWS = [_row("0_small", "small", 135, 1.0, 0.5, 200.0, 300.0, 90.0),
        _row("1_mid", "mid", 270, 1.2, 0.8, 150.0, 800.0, 270.0),
        _row("2_big", "big", 1544, 3.5, 10.0, 20.0, 1700.0, 1900.0),
        _row("3_huge_failed", "huge", 7000, None, 1, 1, 1, 1, status="failed"),
        _row("4_other_set", "other", 9000, 5.0, 1, 1, 1, 1, prompts="smoke")]


def test_the_largest_ok_model_is_set_against_the_smallest_of_the_same_group():
    small, big = size_tradeoff.comparable_pair(ROWS)
    assert (small["model"], big["model"]) == ("small", "big")  # not the failed one, not another prompt set


def test_the_sentence_states_the_gain_and_each_cost_as_a_ratio():
    text = size_tradeoff.sentence(*size_tradeoff.comparable_pair(ROWS))
    assert "big (1544M parameters) against small (135M)" in text
    assert "quality.overall 3.50 against 1.00 (+2.50 on the 1-5 scale, graded by notes)" in text
    assert "20x the first-token time (ttft_s.p50 10.0 against 0.50 s)" in text
    assert "0.1x the decode speed" in text and "5.7x the memory" in text and "21x the disk" in text


def test_one_size_gives_no_section(tmp_path: Path):
    assert size_tradeoff.section(ROWS[:1] + ROWS[3:], tmp_path) == []


def test_the_section_holds_the_sentence_and_its_plot(tmp_path: Path):
    lines = size_tradeoff.section(ROWS, tmp_path)
    assert lines[0] == "## Small against big" and "![what the extra size buys](size_tradeoff.png)" in lines
    assert (tmp_path / "size_tradeoff.png").stat().st_size > 10_000
