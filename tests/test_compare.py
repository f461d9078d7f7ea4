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

from runner import compare as cmp
from runner.errors import UserError

FAST = Script(ttft_s=0.1, tpot_s=0.01, tokens=24)
SLOW = Script(ttft_s=0.1, tpot_s=0.015, tokens=24)  # decoding 1.5x slower, same first token
LONGER = Script(ttft_s=0.1, tpot_s=0.01, tokens=25)  # same speed, one more token: other text


def _run(srv: ScriptedServer, out: Path, *extra: str, sweep: bool = False) -> Path:
    target = f"hydra.sweep.dir={out}" if sweep else f"hydra.run.dir={out}"
    done = run_cli("run", *(["-m"] if sweep else []), "backend=openai", f"backend.base_url={srv.base_url}",
                   "model.id=scripted-model", "run.warmup=0", "tracking.enabled=false", *extra, target)
    assert done.returncode == 0, done.stderr
    return out


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


def test_same_script_twice_is_within_noise(runs, tmp_path, capsys):
    code = cmp.main(str(runs["a"]), str(runs["a2"]), tmp_path, [])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["ok"] is True and result["regressions"] == []
    metrics = {r["metric"]: r for r in result["rows"]}
    assert {"ttft_s", "tpot_s", "e2e_s", "decode_tps", "load_s"} <= set(metrics)
    assert "quality" not in metrics and "rss_mb" not in metrics  # not measured on either side: no row
    assert all(r["verdict"] == "within noise" for r in result["rows"]), out
    tpot = metrics["tpot_s"]
    assert abs(tpot["baseline_p50"] - 0.01) < 0.002 and tpot["baseline_n"] == tpot["candidate_n"] == 20
    lo, hi = tpot["diff_ci95"]  # may exclude 0 by microseconds: the tolerance keeps that within noise
    assert lo < hi and abs(lo) < 0.0005 and abs(hi) < 0.0005 and abs(tpot["ratio"] - 1) < 0.05
    assert metrics["load_s"]["note"] == "no distribution: tolerance only" and metrics["load_s"]["diff_ci95"] is None
    label = "smollm2-135m-int8 / rag-basics / deterministic / cpu"
    assert result["drift"][label] == {"checked": True, "n_compared": 4, "prompts_differing": [], "examples": {}}
    assert "no regressions" in out and "REGRESSION" not in out


def test_real_slowdown_is_a_regression(runs, capsys):
    code = cmp.main(str(runs["a"]), str(runs["slow"]), None, [])
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
    assert cmp.main(str(runs["a"]), str(runs["slow"]), runs["slow"] / "loose",
                    ["tpot_s=0.6", "decode_tps=60%", "e2e_s=0.6"]) == 0


def test_sweep_dir_against_job_dir(runs, tmp_path):
    base, cand = cmp.load_side(str(runs["a"])), cmp.load_side(str(runs["sweep"]))
    assert base.kind == "job" and cand.kind == "sweep" and len(cand) == 2
    result = cmp.compare(base, cand, cmp.load_tolerances())
    assert {(r["model"], r["prompts"]) for r in result["rows"]} == {("smollm2-135m-int8", "rag-basics")}
    assert [k["prompts"] for k in result["only_candidate"]] == ["smoke"] and result["only_baseline"] == []
    tpot = next(r for r in result["rows"] if r["metric"] == "tpot_s")
    assert tpot["baseline_n"] == 20 and tpot["candidate_n"] == 8 and tpot["verdict"] == "within noise"
    # 25 tokens instead of 24 at temperature 0: every answer's text changed.
    drift = result["drift"]["smollm2-135m-int8 / rag-basics / deterministic / cpu"]
    assert drift["checked"] and drift["n_compared"] == 4 and len(drift["prompts_differing"]) == 4
    ex = next(iter(drift["examples"].values()))
    assert ex["candidate"] == ex["baseline"] + "t24 "
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
    assert cmp.main(str(a), str(b), tmp_path / "out", []) == 0
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
        cmp.main("no-such-baseline", str(tmp_path / "empty"), None, [])
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
        cmp.main(str(a), str(a), tmp_path / "out", ["nope=1"])
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
