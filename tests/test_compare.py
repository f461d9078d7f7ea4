"""`slmbench compare`: real runs against the scripted server (same script twice, a real
slowdown, a sweep against a job), plus hand-written job dirs for drift, quality, scalars
and the error paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from scripted_server import Script, ScriptedServer

from runner.config.errors import UserError
from runner.decide import compare as cmp
from runner.decide import compare_report, paired_stats

FAST = Script(ttft_s=0.1, tpot_s=0.01, tokens=12)
SLOW = Script(ttft_s=0.1, tpot_s=0.015, tokens=12)  # decoding 1.5x slower, same first token
LONGER = Script(ttft_s=0.1, tpot_s=0.01, tokens=13)  # same speed, one more token: other text


def _run(srv: ScriptedServer, out: Path, *extra: str, sweep: bool = False) -> Path:
    target = f"hydra.sweep.dir={out}" if sweep else f"hydra.run.dir={out}"
    done = run_cli("run", *(["-m"] if sweep else []), "backend=openai", f"backend.base_url={srv.base_url}",
                   "model.id=scripted-model", "run.warmup=0", "tracking.enabled=false", *extra, target)
    assert done.returncode == 0, done.stderr
    return out


# The real runs' client-side times are compared with each other: `serial` (make test's second pass),
# as another test's load on the two cores would show as a change (seen: TTFT 7% lower in the second
# of two runs of one script, with three workers beside it).
serial = pytest.mark.serial


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Real runs, one after another (concurrent runs would disturb each other's timings)."""
    root = tmp_path_factory.mktemp("compare")
    out = {}
    with ScriptedServer(FAST) as srv:
        out["a"] = _run(srv, root / "a", "prompts=rag-basics", "run.rounds=5")
        out["a2"] = _run(srv, root / "a2", "prompts=rag-basics", "run.rounds=5")
        srv.script = SLOW
        out["slow"] = _run(srv, root / "slow", "prompts=rag-basics", "run.rounds=5")
        srv.script = LONGER
        out["sweep"] = _run(srv, root / "sweep", "prompts=smoke,rag-basics", "run.rounds=2", sweep=True)
    return out


@serial
def test_same_script_twice_is_within_noise(runs, tmp_path, capsys):
    code = compare_report.main(str(runs["a"]), str(runs["a2"]), tmp_path, [])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["ok"] is True and result["regressions"] == []
    metrics = {r["metric"]: r for r in result["rows"]}
    assert {"ttft_s", "tpot_s", "e2e_s", "decode_tps"} <= set(metrics)
    # not measured on either side: no row (an endpoint's load time is not ours to measure)
    assert "quality" not in metrics and "rss_mb" not in metrics and "load_s" not in metrics
    assert all(r["verdict"] == "within noise" for r in result["rows"]), out
    label = "scripted-model / rag-basics / deterministic / cpu"  # an endpoint job is labelled by its model.id
    tpot = metrics["tpot_s"]
    assert abs(tpot["baseline_p50"] - 0.01) < 0.002 and tpot["baseline_n"] == tpot["candidate_n"] == 20
    lo, hi = tpot["diff_ci95"]  # may exclude 0 by microseconds: the tolerance keeps that within noise
    assert lo < hi and abs(lo) < 0.0005 and abs(hi) < 0.0005 and abs(tpot["ratio"] - 1) < 0.05
    # 4 prompts x 5 rounds, paired; no prompt slower in every round
    assert tpot["test"] == "paired" and tpot["n_pairs"] == 20 and abs(tpot["change"]) < 0.05
    assert result["per_prompt"][label] == [] and result["flake"][label]["candidate"]["pass_k"] == 1.0
    assert result["drift"][label] == {"checked": True, "n_compared": 4, "prompts_differing": [], "examples": {}}
    assert "no regressions" in out and "REGRESSION" not in out


@serial
def test_real_slowdown_is_a_regression(runs, capsys):
    code = compare_report.main(str(runs["a"]), str(runs["slow"]), None, [])
    out = capsys.readouterr().out
    assert code == 1, out
    result = json.loads((runs["slow"] / "compare.json").read_text())  # default: into the candidate dir
    assert result["ok"] is False
    worse = {r["metric"]: r for r in result["regressions"]}
    assert {"tpot_s", "decode_tps"} <= set(worse) and "ttft_s" not in worse
    assert 1.35 < worse["tpot_s"]["ratio"] < 1.65 and 0.6 < worse["decode_tps"]["ratio"] < 0.75
    assert worse["tpot_s"]["diff_ci95"][0] > 0 and worse["decode_tps"]["diff_ci95"][1] < 0
    lines = [x for x in out.splitlines() if x.startswith("REGRESSION")]
    assert any("tpot_s" in x for x in lines) and any("decode_tps" in x for x in lines)
    md = (runs["slow"] / "compare.md").read_text()
    assert "excludes 0" in md and "s/token" in md and "tokens/s" in md and "| tpot_s" in md
    # The same numbers pass once the tolerance allows a 60% change: the tolerance is part of the rule.
    assert compare_report.main(str(runs["a"]), str(runs["slow"]), runs["slow"] / "loose",
                    ["tpot_s=0.6", "decode_tps=60%", "e2e_s=0.6"]) == 0


@serial
def test_sweep_dir_against_job_dir(runs, tmp_path):
    base, cand = cmp.load_side(str(runs["a"])), cmp.load_side(str(runs["sweep"]))
    assert base.kind == "job" and cand.kind == "sweep" and len(cand) == 2
    result = cmp.compare(base, cand, cmp.load_tolerances())
    assert {(r["model"], r["prompts"]) for r in result["rows"]} == {("scripted-model", "rag-basics")}
    assert [k["prompts"] for k in result["only_candidate"]] == ["smoke"] and result["only_baseline"] == []
    tpot = next(r for r in result["rows"] if r["metric"] == "tpot_s")
    assert tpot["baseline_n"] == 20 and tpot["candidate_n"] == 8 and tpot["verdict"] == "within noise"
    # 13 tokens instead of 12 at temperature 0: every answer's text changed.
    drift = result["drift"]["scripted-model / rag-basics / deterministic / cpu"]
    assert drift["checked"] and drift["n_compared"] == 4 and len(drift["prompts_differing"]) == 4
    ex = next(iter(drift["examples"].values()))
    assert ex["candidate"] == ex["baseline"] + "t12 "
    reverse = cmp.compare(cand, base, {})  # and the other way round
    assert [k["prompts"] for k in reverse["only_baseline"]] == ["smoke"]


# ---- hand-written job dirs ---------------------------------------------------------------

def write_job(d: Path, model="m1", prompts="set", temperature=0.0, decoding="deterministic", outputs=None,
              tpot=0.01, n_rounds=10, seed=0, spread=0.02, status="ok", judge=None, **scalars) -> Path:
    """A job dir as `slmbench run` writes it (the fields compare reads)."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    outputs = outputs or {"p1": "alpha", "p2": "beta"}
    recs = []
    for rnd in range(n_rounds):
        for i, (pid, text) in enumerate(outputs.items()):
            t = float(tpot * rng.normal(1, spread))
            rec = {"model": model, "prompt_id": pid, "round": rnd, "status": status, "error": None,
                   "ttft_s": 0.1, "tpot_s": t, "decode_tps": 1 / t, "e2e_s": 0.1 + 19 * t, "output": text}
            if judge is not None:
                rec["judge"] = judge(rnd, i)
            recs.append(rec)
    (d / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    summary = {"model": model, "prompts": prompts, "status": status, "error": None,
               "config": {"decoding": {"name": decoding, "temperature": temperature}, "hardware": {"name": "cpu"}},
               "load_s": 1.0, "rss_mb": 300.0, "rss_peak_mb": 400.0, "disk_mb": 90.0, **scalars}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_output_drift_at_temperature_zero(tmp_path, capsys):
    a = write_job(tmp_path / "a", outputs={"p1": "alpha", "p2": "beta", "p3": "gamma"})
    b = write_job(tmp_path / "b", outputs={"p1": "alpha", "p2": "BETA", "p3": "gamma"})
    result = cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})
    drift = result["drift"]["m1 / set / deterministic / cpu"]
    assert drift["checked"] and drift["prompts_differing"] == ["p2"] and drift["n_compared"] == 3
    assert drift["examples"] == {"p2": {"baseline": "beta", "candidate": "BETA"}}
    assert result["ok"]  # drift is reported, not a speed regression
    assert compare_report.main(str(a), str(b), tmp_path / "out", []) == 0
    assert "output drift at temperature 0 in m1 / set / deterministic / cpu: 1 of 3 prompts differ (p2)" \
        in capsys.readouterr().out
    assert "p2" in (tmp_path / "out" / "compare.md").read_text()
    # Sampled decoding: different text is expected, so it is not checked.
    c = write_job(tmp_path / "c", temperature=0.8, outputs={"p1": "x", "p2": "y"})
    d = write_job(tmp_path / "d", temperature=0.8, outputs={"p1": "z", "p2": "w"})
    sampled = cmp.compare(cmp.load_side(str(c)), cmp.load_side(str(d)), {})
    assert sampled["drift"]["m1 / set / deterministic / cpu"]["checked"] is False


def test_nothing_in_common_names_both_sides(tmp_path):
    a = write_job(tmp_path / "a", model="alpha-1b")
    b = write_job(tmp_path / "b", model="beta-2b", prompts="other")
    with pytest.raises(UserError) as exc:
        cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})
    msg = str(exc.value)
    assert "alpha-1b / set / deterministic / cpu" in msg and "beta-2b / other / deterministic / cpu" in msg
    assert "nothing to compare" in msg


def test_unknown_refs_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    for ref in ("no-such-baseline", str(tmp_path / "missing"), str(tmp_path / "empty")):
        with pytest.raises(UserError, match="not a job dir, sweep dir or baseline name"):
            cmp.load_side(ref)
    with pytest.raises(UserError, match="not a job dir"):
        compare_report.main("no-such-baseline", str(tmp_path / "empty"), None, [])
    half = tmp_path / "half"  # killed before its summary was written
    half.mkdir()
    (half / "requests.jsonl").write_text("")
    with pytest.raises(UserError, match="no summary.json"):
        cmp.load_side(str(half))


def test_baseline_name_and_resolver(tmp_path, monkeypatch):
    job = write_job(tmp_path / "job")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(job, tmp_path / "outputs" / "baselines" / "v1" / "0_m1")  # a sweep-shaped baseline
    side = cmp.load_side("v1")
    assert side.kind == "sweep" and list(side) == [cmp.Key("m1", "set", "deterministic", "cpu")]
    assert side.path == tmp_path / "outputs" / "baselines" / "v1"
    with pytest.raises(UserError, match="baselines in outputs/baselines: v1"):
        cmp.load_side("v2")
    seen = []

    def mlflow_like(ref):
        seen.append(ref)
        return job if ref.startswith("runs:/") else None

    assert cmp.load_side("runs:/abc123", resolvers=[mlflow_like]).path == job
    assert cmp.load_side("v1", resolvers=[mlflow_like]).kind == "sweep"  # None: falls through
    assert seen == ["runs:/abc123", "v1"]


def test_bad_tolerance_overrides(tmp_path):
    for bad in ("nope=0.1", "tpot_s=abc", "tpot_s=-0.1", "tpot_s", "tpot_s=nan"):
        with pytest.raises(UserError, match="tolerance"):
            cmp.load_tolerances(overrides=[bad])
    tol = cmp.load_tolerances(overrides=["tpot_s=0.2", "disk_mb=3%"])
    assert tol["tpot_s"] == 0.2 and tol["disk_mb"] == pytest.approx(0.03) and tol["ttft_s"] == 0.05
    assert set(tol) == set(cmp.METRICS)
    a = write_job(tmp_path / "a")
    with pytest.raises(UserError, match="nope"):  # checked before anything is loaded or written
        compare_report.main(str(a), str(a), tmp_path / "out", ["nope=1"])
    assert not (tmp_path / "out").exists()


def test_quality_and_scalars(tmp_path):
    def good(rnd, i):
        return {"model": "j", "scores": {"accuracy": 4 + (rnd + i) % 2, "clarity": 4}, "error": None}

    def poor(rnd, i):
        if i == 0 and rnd == 0:  # a failed grading never counts as a score
            return {"model": "j", "scores": None, "error": "unparseable reply"}
        return {"model": "j", "scores": {"accuracy": 2 + (rnd + i) % 2, "clarity": 3}, "error": None}

    a = write_job(tmp_path / "a", judge=good, rss_mb=300.0, disk_mb=90.0)
    b = write_job(tmp_path / "b", judge=poor, rss_mb=360.0, disk_mb=90.5, seed=1)
    rows = {r["metric"]: r for r in cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})["rows"]}
    q = rows["quality"]
    assert q["verdict"] == "worse" and q["candidate_n"] == 19 and q["baseline_n"] == 20
    assert q["direction"] == "higher is better" and q["diff_ci95"][1] < 0
    assert rows["rss_mb"]["verdict"] == "worse" and rows["rss_mb"]["ratio"] == pytest.approx(1.2)
    assert rows["rss_mb"]["note"] == "no distribution: tolerance only" and rows["rss_mb"]["diff_ci95"] is None
    assert rows["disk_mb"]["verdict"] == "within noise"  # +0.56% < 1%
    assert rows["tpot_s"]["verdict"] == "within noise"  # same distribution, other seed


def test_a_large_move_inside_the_noise_is_not_a_regression(tmp_path):
    a = write_job(tmp_path / "a", n_rounds=5, spread=0.3, seed=0)
    b = write_job(tmp_path / "b", n_rounds=5, spread=0.3, seed=3)
    rows = {r["metric"]: r for r in cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})["rows"]}
    tpot = rows["tpot_s"]  # median 13% lower, but 10 noisy samples a side cannot tell
    assert tpot["ratio"] < 0.9 and tpot["diff_ci95"][0] < 0 < tpot["diff_ci95"][1]
    assert tpot["verdict"] == "within noise" and "CI includes 0" in tpot["note"] and "n < 10" not in tpot["note"]


def test_failed_candidate_job_is_a_regression(tmp_path):
    a = write_job(tmp_path / "a")
    b = write_job(tmp_path / "b", status="error")
    result = cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})
    assert not result["ok"]
    assert {r["metric"] for r in result["regressions"]} == {"ttft_s", "tpot_s", "e2e_s", "decode_tps"}


def test_sweep_with_two_jobs_of_one_key_is_refused(tmp_path):
    write_job(tmp_path / "sweep" / "0_x")
    write_job(tmp_path / "sweep" / "1_x")
    with pytest.raises(UserError, match="0_x and 1_x"):
        cmp.load_side(str(tmp_path / "sweep"))


# ---- paired compare: (prompt_id, round) pairs, per-prompt regressions, Holm, flake rate ---------------

FOUR = {"p1": "alpha", "p2": "beta", "p3": "gamma", "p4": "delta"}
LABEL = "m1 / set / deterministic / cpu"


def scale(d: Path, factor) -> Path:
    """Make the job's decoding `factor(prompt_id, round)` times slower (tpot_s, decode_tps, e2e_s)."""
    recs = [json.loads(line) for line in (d / "requests.jsonl").read_text().splitlines()]
    for r in recs:
        f = factor(r["prompt_id"], r["round"])
        r["tpot_s"] *= f
        r["decode_tps"] = 1 / r["tpot_s"]
        r["e2e_s"] = r["ttft_s"] + 19 * r["tpot_s"]
    (d / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_one_prompt_slower_is_named_and_fails(tmp_path, capsys):
    a = write_job(tmp_path / "a", outputs=FOUR, n_rounds=3, seed=0)
    b = scale(write_job(tmp_path / "b", outputs=FOUR, n_rounds=3, seed=1), lambda p, r: 1.3 if p == "p3" else 1)
    assert compare_report.main(str(a), str(b), tmp_path / "out", []) == 1
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    rows = {r["metric"]: r for r in result["rows"]}
    # The job's median barely moved (1 prompt of 4): the job-level rows cannot see it ...
    assert rows["tpot_s"]["test"] == "paired" and rows["tpot_s"]["n_pairs"] == 12
    assert rows["tpot_s"]["verdict"] == "within noise" and abs(rows["tpot_s"]["change"]) < 0.05
    # ... the per-prompt check names the prompt, for the speed metrics only, and it sets the exit code.
    named = {(r["prompt_id"], r["metric"]) for r in result["regressions"]}
    assert named == {("p3", "tpot_s"), ("p3", "decode_tps"), ("p3", "e2e_s")}
    p3 = next(r for r in result["regressions"] if r["metric"] == "tpot_s")
    assert p3["scope"] == "prompt" and p3["counts"] and p3["n_pairs"] == 3 and 1.2 < p3["ratio"] < 1.4
    assert p3["least_change"] > 0.2 and "every one of its 3 paired rounds" in p3["note"]
    assert [e["prompt_id"] for e in result["per_prompt"][LABEL]] == ["p3"] * 3
    assert f"REGRESSION {LABEL}: prompt p3: tpot_s" in out
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "## Per-prompt regressions" in md and "| p3 " in md
    # Sampled decoding: the same slowdown is listed but does not count (rounds differ in work).
    c = write_job(tmp_path / "c", outputs=FOUR, n_rounds=3, seed=0, temperature=0.7)
    d = scale(write_job(tmp_path / "d", outputs=FOUR, n_rounds=3, seed=1, temperature=0.7),
              lambda p, r: 1.3 if p == "p3" else 1)
    sampled = cmp.compare(cmp.load_side(str(c)), cmp.load_side(str(d)), {})
    assert sampled["ok"] and len(sampled["per_prompt"][LABEL]) == 3
    assert all(not e["counts"] and "sampled decoding" in e["note"] for e in sampled["per_prompt"][LABEL])


def test_one_round_slower_is_not_a_prompt_regression(tmp_path):
    a = write_job(tmp_path / "a", outputs=FOUR, n_rounds=3, seed=0)
    b = scale(write_job(tmp_path / "b", outputs=FOUR, n_rounds=3, seed=1),
              lambda p, r: 1.3 if (p, r) in {("p3", 0), ("p3", 1)} else 1)  # 2 of its 3 rounds: noise
    result = cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})
    assert result["ok"] and result["per_prompt"][LABEL] == []


def test_equal_rerun_passes_and_a_job_wide_slowdown_counts_once(tmp_path, capsys):
    a = write_job(tmp_path / "a", outputs=FOUR, n_rounds=3, seed=0)
    b = write_job(tmp_path / "b", outputs=FOUR, n_rounds=3, seed=1)  # same values, other 2% noise
    assert compare_report.main(str(a), str(b), tmp_path / "out", []) == 0
    assert "no regressions" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["ok"] and result["per_prompt"][LABEL] == []
    assert result["pairing"][LABEL] == {"pairs": 12, "prompts": 4, "min_pairs": cmp.MIN_PAIRS}
    tested = [r for r in result["rows"] if r["test"]]
    assert {r["metric"] for r in tested} == {"ttft_s", "tpot_s", "e2e_s", "decode_tps"}
    assert all(r["test"] == "paired" and r["n_pairs"] == 12 and r["verdict"] == "within noise" for r in tested)
    # Every prompt 30% slower: the job-level paired test catches it, and the prompts (all listed)
    # are not counted a second time.
    c = scale(write_job(tmp_path / "c", outputs=FOUR, n_rounds=3, seed=1), lambda p, r: 1.3)
    slow = cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(c)), {})
    worse = {r["metric"]: r for r in slow["regressions"]}
    assert set(worse) == {"tpot_s", "e2e_s", "decode_tps"} and all(r["scope"] == "job" for r in worse.values())
    tpot = worse["tpot_s"]
    assert 0.25 < tpot["change"] < 0.35 and tpot["change_ci95"][0] > 0.2 and tpot["diff_ci95"][0] > 0
    assert tpot["p"] == pytest.approx(2 / 2 ** 12) and tpot["p_holm"] < 0.05
    assert len(slow["per_prompt"][LABEL]) == 12 and not any(e["counts"] for e in slow["per_prompt"][LABEL])


def test_no_pairs_in_common_falls_back_to_unpaired(tmp_path, capsys):
    a = write_job(tmp_path / "a", outputs={"p1": "alpha", "p2": "beta"}, n_rounds=10)
    b = scale(write_job(tmp_path / "b", outputs={"q1": "alpha", "q2": "beta"}, n_rounds=10, seed=1),
              lambda p, r: 1.5)  # renamed prompt ids, and slower
    assert compare_report.main(str(a), str(b), tmp_path / "out", []) == 1
    out = capsys.readouterr().out
    assert f"{LABEL}: no (prompt_id, round) in common (other prompt ids?)" in out
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["pairing"][LABEL]["pairs"] == 0 and result["per_prompt"][LABEL] == []
    tested = {r["metric"]: r for r in result["rows"] if r["test"]}
    assert all(r["test"] == "unpaired" and r["n_pairs"] == 0 for r in tested.values())
    assert "unpaired: 0 pairs in common (< 8)" in tested["tpot_s"]["note"]
    assert tested["tpot_s"]["verdict"] == "worse" and tested["tpot_s"]["change_ci95"] is None
    assert tested["tpot_s"]["p"] == pytest.approx(2 / (paired_stats.BOOTSTRAP_RESAMPLES + 1))  # no draw crosses 0
    assert "no (prompt_id, round) in common" in (tmp_path / "out" / "compare.md").read_text()
    # Pairs in common but too few (2 prompts x 3 rounds): unpaired as well, and said so.
    c = write_job(tmp_path / "c", n_rounds=3)
    d = write_job(tmp_path / "d", n_rounds=3, seed=1)
    few = cmp.compare(cmp.load_side(str(c)), cmp.load_side(str(d)), {})
    assert few["pairing"][LABEL]["note"] == "only 6 (prompt_id, round) pairs in common (< 8): compared unpaired"
    tpot = next(r for r in few["rows"] if r["metric"] == "tpot_s")
    assert tpot["test"] == "unpaired" and "unpaired: 6 pairs in common (< 8)" in tpot["note"]


def test_holm_and_signed_rank_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert paired_stats.holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])
    assert paired_stats.holm([0.5, 0.6]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1
    # 8 differences, all positive: W+ = 36 is the largest of 2^8 equally likely sign patterns.
    assert paired_stats.signed_rank_p(np.arange(1, 9)) == pytest.approx(2 / 256)
    # rank 2 negative: W+ = 34; P(W+ >= 34) = sign patterns whose negatives sum to <= 2: {}, {1}, {2}.
    assert paired_stats.signed_rank_p(np.array([1, -2, 3, 4, 5, 6, 7, 8])) == pytest.approx(6 / 256)
    assert paired_stats.signed_rank_p(np.zeros(9)) == 1.0  # no differences at all
    x = np.random.default_rng(0).normal(0.15, 1, 60)
    exact = paired_stats.signed_rank_p(x)
    cmp_max, paired_stats.EXACT_MAX = paired_stats.EXACT_MAX, 10  # the normal approximation agrees at n = 60
    try:
        assert paired_stats.signed_rank_p(x) == pytest.approx(exact, abs=0.005) and 0.05 < exact < 0.1
        ties = np.random.default_rng(1).integers(-2, 4, 80)  # |x| in {1, 2, 3}: without the tie correction 0.032
        paired_stats.EXACT_MAX = cmp_max
        exact = paired_stats.signed_rank_p(ties)
        paired_stats.EXACT_MAX = 10
        assert paired_stats.signed_rank_p(ties) == pytest.approx(exact, abs=0.001) and 0.02 < exact < 0.04
    finally:
        paired_stats.EXACT_MAX = cmp_max


def test_paired_ci_keeps_each_prompt_in_every_resample():
    # prompt a unchanged, prompt b 20% slower, no noise: every stratified resample holds 3 pairs of each,
    # so the median change is always (0 + 0.2) / 2; resampling pairs freely would give [0, 0.2].
    pr = paired_stats.Pairs(["a"] * 3 + ["b"] * 3, np.ones(6), np.array([1, 1, 1, 1.2, 1.2, 1.2]))
    change, diff = paired_stats.paired_ci(pr)
    assert change == pytest.approx([0.1, 0.1]) and diff == pytest.approx([0.1, 0.1])
    # one pair per prompt: those prompts are resampled together (else the CI would be a point)
    single = paired_stats.Pairs(["a", "b", "c", "d", "e", "f"], np.ones(6), np.array([1, 1.1, 1.2, 1.3, 1.4, 1.5]))
    lo, hi = paired_stats.paired_ci(single)[0]
    assert lo < 0.2 and hi > 0.3


def test_holm_keeps_a_borderline_change_within_noise(tmp_path):
    a = write_job(tmp_path / "a", n_rounds=4, spread=0)  # tpot exactly 0.01 everywhere: 8 pairs
    factors = {("p1", 0): 1.10, ("p1", 1): 1.12, ("p1", 2): 1.14, ("p1", 3): 0.99,  # each prompt has a round
               ("p2", 0): 1.03, ("p2", 1): 1.16, ("p2", 2): 1.18, ("p2", 3): 1.20}  # within 5%: no prompt listed
    b = scale(write_job(tmp_path / "b", n_rounds=4, spread=0), lambda p, r: factors[(p, r)])
    result = cmp.compare(cmp.load_side(str(a)), cmp.load_side(str(b)), {})
    rows = {r["metric"]: r for r in result["rows"]}
    # 7 of 8 log ratios up, the one down is the smallest (rank 1): P(W+ >= 35) = 2/256, p = 4/256.
    # Tests: ttft_s (no change, p = 1), tpot_s, e2e_s, decode_tps (same signs and ranks): m = 4,
    # Holm: 4 * 4/256 = 0.0625 for the three. Unadjusted, 0.0156 < 0.05 would have called them worse.
    assert rows["ttft_s"]["p"] == 1.0
    for m in ("tpot_s", "e2e_s", "decode_tps"):
        assert rows[m]["test"] == "paired" and rows[m]["p"] == pytest.approx(4 / 256)
        assert rows[m]["p_holm"] == pytest.approx(0.0625) and rows[m]["verdict"] == "within noise"
        assert "Holm-adjusted p = 0.062 >= 0.05" in rows[m]["note"]
    assert rows["tpot_s"]["change"] == pytest.approx(0.13)  # median of the 8 ratios: (1.12 + 1.14) / 2 - 1
    assert rows["e2e_s"]["change"] > 0.05 and rows["decode_tps"]["change"] < -0.05  # beyond the tolerance
    assert result["ok"] and result["per_prompt"][LABEL] == []


def test_flake_rate_across_rounds(tmp_path, capsys):
    a = write_job(tmp_path / "a", n_rounds=3)
    b = write_job(tmp_path / "b", n_rounds=3, seed=1)
    recs = [json.loads(line) for line in (b / "requests.jsonl").read_text().splitlines()]
    for r in recs:
        if r["prompt_id"] == "p2" and r["round"] == 1:
            r["output"] = "beta, once"
    (b / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert compare_report.main(str(a), str(b), tmp_path / "out", []) == 0  # reported, not a regression
    out = capsys.readouterr().out
    f = json.loads((tmp_path / "out" / "compare.json").read_text())["flake"][LABEL]
    assert f["baseline"] == {"checked": True, "prompts": 2, "k": 3, "pass_k": 1.0, "flake_rate_mean": 0.0,
                             "flaky": {}}
    assert f["candidate"]["pass_k"] == 0.5 and f["candidate"]["flaky"] == {"p2": pytest.approx(1 / 3)}
    assert f["candidate"]["flake_rate_mean"] == pytest.approx(1 / 6)
    assert f"outputs vary across rounds at temperature 0 in {LABEL} (candidate): pass^k 50% of 2 prompts" in out
    c = write_job(tmp_path / "c", temperature=0.8, n_rounds=3)
    assert cmp.flake(cmp.load_side(str(c))[cmp.Key("m1", "set", "deterministic", "cpu")])["checked"] is False
