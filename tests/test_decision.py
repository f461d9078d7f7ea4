"""The decision over a sweep (runner/decide/decision.py), on hand-built summaries with known answers:
eligibility and its reasons, the Pareto front, the objective (one metric or weights), the
margin against the CIs, the selection config (Hydra's nested overrides), licence policies,
failed jobs, and `decide_main` on a sweep directory written here. No model runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.config import selection as selection_config
from runner.config.errors import UserError
from runner.decide import decision as dec
from runner.decide import render, selection


def dist(p50: float, p95: float | None = None, ci: tuple[float, float] | None = None) -> dict:
    """A `runner.metrics.stats.summarize` result with the fields the decision reads."""
    p95 = p50 if p95 is None else p95
    lo, hi = ci if ci else (p50, p50)
    return {"n": 20, "mean": p50, "std": 0.0, "min": p50, "p50": p50, "p90": p95, "p95": p95, "p99": p95,
            "max": p95, "ci95": [lo, hi], "p95_low_n": False}


def summary(model: str, *, e2e: float | None = 1.0, e2e_p95: float | None = None, e2e_ci=None,
            rss: float | None = 500.0, disk: float | None = 100.0, quality: float | None = None, quality_ci=None,
            decode: float | None = 50.0, decode_ci=None, tpot_p95: float | None = 0.02, licence="Apache-2.0",
            hardware="cpu", decoding="deterministic", status="ok", error=None, trusted: bool = True) -> dict:
    metrics = {"ttft_s": dist(0.1), "e2e_s": dist(e2e, e2e_p95, e2e_ci) if e2e is not None else None,
               "tpot_s": dist(0.02, tpot_p95), "decode_tps": dist(decode, ci=decode_ci) if decode is not None else None}
    q = {"judge": None, "scorers": {"rouge_l.f1": {"mean": 0.25, "n": 4}}}
    if quality is not None:
        q = {"judge": "smollm2-135m-fp32", "scorers": {}, "overall": dist(quality, ci=quality_ci or (quality, quality)),
             "aspects": {"completeness": {"mean": quality, "n": 20}}, "source": "smollm2-135m-fp32",
             "trusted": trusted, "untrusted_reason": None if trusted else
             "grader smollm2-135m-fp32 failed qualification (pooled Spearman 0.12 < 0.6)"}
    return {"model": model, "status": status, "error": error, "partial": False, "n": 20, "n_expected": 20,
            "metrics": metrics, "load_s": 1.0, "rss_mb": rss, "rss_peak_mb": rss, "disk_mb": disk, "license": licence,
            "precision": "int8", "throughput": None, "quality": q,
            "config": {"decoding": {"name": decoding}, "hardware": {"name": hardware}}}


def failed(model: str, error: str) -> dict:
    s = summary(model, status="failed", error=error, e2e=None, decode=None, rss=None)
    s["metrics"] = {k: None for k in ("ttft_s", "e2e_s", "tpot_s", "decode_tps")}
    return s


def by_job(d: dict) -> dict[str, dict]:
    return {c["job"]: c for c in d["candidates"]}


NO_REGISTRY = {"max": {}, "min": {}}


def no_registry(alias: str):
    raise AssertionError(f"the registry must not be consulted without a licence policy ({alias})")


# ---------------------------------------------------------------------------- eligibility


def test_every_failed_limit_is_named_with_value_limit_and_unit():
    jobs = [("0_ok", summary("a", e2e_p95=2.0, rss=1500, disk=600, quality=3.0, decode=20.0)),  # exactly at limits
            ("1_slow_fat", summary("b", e2e_p95=2.7, rss=1600, disk=90, quality=4.0, decode=60.0)),
            ("2_weak", summary("c", e2e_p95=1.0, rss=400, disk=601, quality=2.5, decode=15.0)),
            ("3_unjudged", summary("d", e2e_p95=1.0, rss=400, disk=90, quality=None, decode=60.0))]
    sel = {"max": {"e2e_s.p95": 2.0, "rss_mb": 1500, "disk_mb": 600},
           "min": {"quality.overall": 3.0, "decode_tps.p50": 20}}
    d = dec.decide(jobs, sel, registry_lookup=no_registry)
    c = by_job(d)
    assert c["0_ok"]["eligible"] is True and c["0_ok"]["reasons"] == []
    assert c["1_slow_fat"]["eligible"] is False
    assert c["1_slow_fat"]["reasons"] == ["e2e_s.p95 2.7 s > 2.0 s", "rss_mb 1600 MB > 1500 MB"]
    assert c["2_weak"]["reasons"] == ["disk_mb 601 MB > 600 MB", "quality.overall 2.5 < 3.0",
                                      "decode_tps.p50 15.0 tokens/s < 20 tokens/s"]
    assert c["3_unjudged"]["reasons"] == ["quality.overall not measured (limit >= 3.0)"]
    assert d["limits"] == {"max": {"e2e_s.p95": 2.0, "rss_mb": 1500, "disk_mb": 600},
                           "min": {"quality.overall": 3.0, "decode_tps.p50": 20}, "licenses": None, "commercial": False}
    assert d["recommended"]["job"] == "0_ok" and d["runner_up"] is None
    # the metrics used travel with each candidate
    assert c["1_slow_fat"]["metrics"]["e2e_s.p95"] == 2.7 and c["1_slow_fat"]["metrics"]["quality.overall"] == 4.0


def test_values_that_round_alike_are_shown_apart():
    d = dec.decide([("0_a", summary("a", rss=1500.4))], {"max": {"rss_mb": 1500}})
    assert d["candidates"][0]["reasons"] == ["rss_mb 1500.4 MB > 1500 MB"]


def test_no_eligible_candidate_says_which_limits_ruled_out_which_models():
    jobs = [("0_a", summary("a", e2e_p95=2.7, rss=400)), ("1_b", summary("b", e2e_p95=3.0, rss=2000)),
            ("2_c", summary("c", e2e_p95=1.0, rss=1600))]
    d = dec.decide(jobs, {"max": {"e2e_s.p95": 2.0, "rss_mb": 1500}})
    assert d["recommended"] is None and d["runner_up"] is None and d["margin"] is None
    assert d["margin_vs_noise"] is None
    assert d["summary_sentence"] == ("No candidate meets every limit: e2e_s.p95 <= 2.0 s ruled out a, b; "
                                     "rss_mb <= 1500 MB ruled out b, c. Nothing to ship until a limit is relaxed.")
    assert [c["eligible"] for c in d["candidates"]] == [False, False, False]


# ---------------------------------------------------------------------------- Pareto front


def test_pareto_front_on_a_known_set_with_a_dominated_point_and_ties():
    jobs = [
        ("0_fast_big", summary("fast", e2e=0.5, rss=800, disk=300, quality=3.5)),
        ("1_slow_small", summary("small", e2e=2.0, rss=200, disk=90, quality=3.0)),
        ("2_dominated", summary("dom", e2e=0.6, rss=800, disk=310, quality=3.4)),  # worse than 0 (ties on rss)
        ("3_twin", summary("twin", e2e=0.5, rss=800, disk=300, quality=3.5)),  # identical to 0: both stay
        ("4_best_quality", summary("smart", e2e=3.0, rss=900, disk=400, quality=4.5)),
        ("5_unjudged", summary("unjudged", e2e=0.1, rss=50, disk=10, quality=None)),  # missing a dimension
    ]
    d = dec.decide(jobs, {})
    assert d["pareto"] == ["0_fast_big", "1_slow_small", "3_twin", "4_best_quality"]
    assert [dim["key"] for dim in d["dimensions"]] == ["e2e_s.p50", "rss_mb", "disk_mb", "quality.overall"]
    assert by_job(d)["2_dominated"]["on_pareto"] is False and by_job(d)["5_unjudged"]["on_pareto"] is False
    assert by_job(d)["3_twin"]["on_pareto"] is True


def test_an_endpoint_is_compared_on_what_it_measures_and_a_missing_measurable_figure_still_counts():
    def endpoint(model, e2e):
        s = summary(model, e2e=e2e, rss=None, disk=None)
        s["config"]["backend"] = {"capabilities": {"in_process": False}}
        return s

    jobs = [("0_local", summary("local", e2e=1.0, rss=500, disk=100)),
            ("1_endpoint", endpoint("remote", 0.5)),  # faster; its memory and disk are not ours to measure
            ("2_slow_endpoint", endpoint("slow", 2.0)),  # slower than both on the one shared figure
            ("3_local_no_rss", summary("norss", e2e=0.1, rss=None, disk=100))]  # in process: rss was measurable
    d = dec.decide(jobs, {})
    assert d["pareto"] == ["0_local", "1_endpoint"]
    assert by_job(d)["3_local_no_rss"]["on_pareto"] is False


def test_pareto_skips_a_dimension_missing_for_every_job():
    jobs = [("0_a", summary("a", e2e=1.0, rss=500, disk=None)), ("1_b", summary("b", e2e=2.0, rss=400, disk=None)),
            ("2_c", summary("c", e2e=2.0, rss=500, disk=None))]  # dominated by a (and by b)
    d = dec.decide(jobs, {})
    assert [dim["key"] for dim in d["dimensions"]] == ["e2e_s.p50", "rss_mb"]
    assert {m["key"] for m in d["missing_dimensions"]} == {"disk_mb", "quality.overall"}
    assert d["pareto"] == ["0_a", "1_b"]


# ---------------------------------------------------------------------------- objective and margin


def test_objective_max_min_and_auto():
    jobs = [("0_a", summary("a", e2e=1.0, quality=3.0, decode=80.0)),
            ("1_b", summary("b", e2e=0.5, quality=3.5, decode=40.0)),
            ("2_c", summary("c", e2e=2.0, quality=4.0, decode=60.0))]
    auto = dec.decide(jobs, {})
    assert auto["objective"]["metric"] == "quality.overall" and auto["objective"]["goal"] == "max"
    assert auto["objective"]["auto"] is True
    assert (auto["recommended"]["job"], auto["runner_up"]["job"]) == ("2_c", "1_b")
    assert [by_job(auto)[j]["rank"] for j in ("0_a", "1_b", "2_c")] == [3, 2, 1]
    fastest = dec.decide(jobs, {"objective": {"metric": "e2e_s.p50"}})  # goal inferred: lower is better
    assert fastest["objective"]["goal"] == "min"
    assert (fastest["recommended"]["job"], fastest["runner_up"]["job"]) == ("1_b", "0_a")
    assert fastest["margin"] == pytest.approx(0.5)
    slowest = dec.decide(jobs, {"objective": {"metric": "e2e_s.p50", "goal": "max"}})
    assert slowest["recommended"]["job"] == "2_c"
    unjudged = [(j, summary(s["model"], decode=s["metrics"]["decode_tps"]["p50"])) for j, s in jobs]
    speed = dec.decide(unjudged, {})
    assert speed["objective"]["metric"] == "decode_tps.p50" and speed["recommended"]["job"] == "0_a"


def test_weights_over_min_max_normalized_metrics():
    jobs = [("0_a", summary("a", quality=3.0, e2e=1.0)), ("1_b", summary("b", quality=4.0, e2e=2.0)),
            ("2_c", summary("c", quality=5.0, e2e=4.0))]
    # normalized quality 0, .5, 1; normalized e2e 0, 1/3, 1
    d = dec.decide(jobs, {"weights": {"quality.overall": 1.0, "e2e_s.p50": -0.5}})
    values = {c["job"]: c["objective_value"] for c in d["candidates"]}
    assert values == pytest.approx({"0_a": 0.0, "1_b": 0.5 - 0.5 / 3, "2_c": 0.5})
    assert (d["recommended"]["job"], d["runner_up"]["job"]) == ("2_c", "1_b")
    assert d["objective"]["kind"] == "weights" and d["margin"] == pytest.approx(0.5 / 3)
    speed_heavy = dec.decide(jobs, {"weights": {"quality": {"overall": 1.0}, "e2e_s": {"p50": -2.0}}})  # nested
    assert speed_heavy["recommended"]["job"] == "0_a"
    assert speed_heavy["objective"]["weights"] == {"quality.overall": 1.0, "e2e_s.p50": -2.0}


def test_margin_is_clear_only_when_the_cis_do_not_overlap():
    clear = [("0_int8", summary("smollm2-135m-int8", quality=3.4, quality_ci=(3.3, 3.5))),
             ("1_int4", summary("smollm2-135m-int4", quality=3.1, quality_ci=(3.0, 3.2)))]
    d = dec.decide(clear, {"max": {"e2e_s.p95": 2.0}})
    assert d["margin"] == pytest.approx(0.3) and d["margin_vs_noise"] == "clear"
    assert d["summary_sentence"] == ("Ship smollm2-135m-int8 as the default: it meets every limit and scores 3.4 on "
                                     "quality.overall, 0.3 above smollm2-135m-int4 (clear margin).")
    close = [("0_int8", summary("smollm2-135m-int8", quality=3.4, quality_ci=(3.1, 3.5))),
             ("1_int4", summary("smollm2-135m-int4", quality=3.1, quality_ci=(3.0, 3.2)))]
    d = dec.decide(close, {})
    assert d["margin"] == pytest.approx(0.3) and d["margin_vs_noise"] == "too close to call"
    assert "too close to call" in d["summary_sentence"] and "with no limits set" in d["summary_sentence"]
    # the CI of a per-request metric is its median's: e2e_s.p50 with disjoint CIs is clear
    fast = [("0_a", summary("a", e2e=0.5, e2e_ci=(0.45, 0.55))), ("1_b", summary("b", e2e=0.8, e2e_ci=(0.6, 0.9)))]
    d = dec.decide(fast, {"objective": {"metric": "e2e_s.p50"}})
    assert d["recommended"]["job"] == "0_a" and d["margin_vs_noise"] == "clear"
    assert d["recommended"]["objective_ci"] == [0.45, 0.55]
    # a per-job scalar has no CI: the noise is unknown, not "clear"
    d = dec.decide([("0_a", summary("a", rss=300)), ("1_b", summary("b", rss=900))], {"objective": {"metric": "rss_mb"}})
    assert d["recommended"]["job"] == "0_a" and d["margin"] == 600 and d["margin_vs_noise"] is None


# ---------------------------------------------------------------------------- the selection config


def test_hydra_nested_overrides_are_flattened_into_dotted_keys():
    jobs = [("0_a", summary("a", tpot_p95=0.035)), ("1_b", summary("b", tpot_p95=0.025))]
    # what Hydra makes of `selection.max.tpot_s.p95=0.03 selection.min.quality.overall=...`: nested mappings
    # (the job's plan hands them to the decision as plain mappings, runner/config/plan.py)
    hydra_like = {"max": {"tpot_s": {"p95": 0.03}, "rss_mb": None}, "min": {}}
    d = dec.decide(jobs, hydra_like)
    assert d["limits"]["max"] == {"tpot_s.p95": 0.03}  # a null limit is no limit
    assert by_job(d)["0_a"]["reasons"] == ["tpot_s.p95 0.035 s/token > 0.03 s/token"]
    assert by_job(d)["1_b"]["eligible"] is True
    assert selection.flatten({"tpot_s": {"p95": 0.03}, "e2e_s.p95": 2.0, "quality": {"overall": 3}}, "max") == {
        "tpot_s.p95": 0.03, "e2e_s.p95": 2.0, "quality.overall": 3}
    # the same through `slmbench decide` overrides (OmegaConf dotlist onto conf/selection/default.yaml)
    sel = selection_config.load_selection(["selection.max.tpot_s.p95=0.03", "min.quality.overall=3.0", "licenses=[Apache-2.0]",
                              "objective=e2e_s.p50"])
    norm = selection.normalize_selection(sel)
    assert norm["max"] == {"tpot_s.p95": 0.03} and norm["min"] == {"quality.overall": 3.0}
    assert norm["licenses"] == ["Apache-2.0"] and norm["objective"] == {"metric": "e2e_s.p50", "goal": None}
    # on `slmbench run`, a new key in a mapping needs Hydra's ++
    assert selection_config.hydra_overrides(["selection.max.tpot_s.p95=0.03", "selection.licenses=[MIT]", "model=a"]) == [
        "++selection.max.tpot_s.p95=0.03", "selection.licenses=[MIT]", "model=a"]


def test_shipped_default_selection_is_valid_and_sets_no_limits():
    sel = dec.check_selection(selection_config.load_selection([]))
    assert sel["max"] == {} and sel["min"] == {} and sel["licenses"] is None and sel["commercial"] is False
    assert sel["objective"] == {"metric": "auto", "goal": None}


@pytest.mark.parametrize("selection, named", [
    ({"max": {"e2e_s": {"p99x": 2.0}}}, "e2e_s.p99x"),
    ({"min": {"qualty": {"overall": 3}}}, "qualty.overall"),
    ({"objective": {"metric": "speed"}}, "speed"),
    ({"weights": {"vibes": 1.0}}, "vibes"),
    ({"max": {"license": 1}}, "license"),  # a field of summary.json, but not a number
])
def test_a_key_that_names_no_metric_is_a_configuration_error(selection, named):
    with pytest.raises(UserError) as err:
        dec.decide([("0_a", summary("a", quality=3.0))], selection)
    msg = str(err.value)
    assert f"'{named}'" in msg and "known:" in msg and "e2e_s" in msg and "rss_mb" in msg and "quality.overall" in msg


def test_malformed_selections_are_configuration_errors():
    jobs = [("0_a", summary("a"))]
    for sel, text in [({"max": {"e2e_s": 2.0}}, "is a distribution"), ({"maxx": {}}, "unknown selection key"),
                      ({"max": {"rss_mb": "big"}}, "must be a number"),
                      ({"objective": {"metric": "e2e_s.p50", "goal": "up"}}, "must be max or min"),
                      ({"objective": {"metric": "completion_tokens.p50"}}, "set selection.objective.goal")]:
        with pytest.raises(UserError, match=text):
            dec.decide(jobs, sel)
    with pytest.raises(UserError, match="KEY=VALUE"):
        selection_config.load_selection(["max.rss_mb"])


def test_known_metrics_resolve_without_any_summary_holding_them():
    """quality.overall is known even when no job was judged; it is then simply not measured."""
    jobs = [("0_a", summary("a")), ("1_b", summary("b"))]
    d = dec.decide(jobs, {"min": {"quality.overall": 3.0}, "max": {"energy.wh_per_1k_tokens": 1.0}})
    assert by_job(d)["0_a"]["reasons"] == ["energy.wh_per_1k_tokens not measured (limit <= 1.0 Wh)",
                                           "quality.overall not measured (limit >= 3.0)"]
    # and paths under quality./top level resolve: scorer fields with dots in their names
    d = dec.decide(jobs, {"min": {"quality.scorers.rouge_l.f1": 0.3}})
    assert by_job(d)["0_a"]["reasons"] == ["quality.scorers.rouge_l.f1 0.25 < 0.3"]


# ---------------------------------------------------------------------------- licences


class Entry:
    def __init__(self, license: str, commercial_use: bool | None):
        self.license, self.commercial_use = license, commercial_use


REGISTRY = {"smollm2": Entry("Apache-2.0", True), "gemma": Entry("Gemma Terms of Use", True),
            "research-only": Entry("CC-BY-NC-4.0", False), "mystery": Entry("unknown", None)}


def test_licence_allow_list_and_commercial_flag():
    jobs = [("0_smollm2", summary("smollm2")), ("1_gemma", summary("gemma", licence="Gemma Terms of Use")),
            ("2_nc", summary("research-only", licence="CC-BY-NC-4.0"))]
    d = dec.decide(jobs, {"licenses": ["apache-2.0", "CC-BY-NC-4.0"]}, registry_lookup=REGISTRY.get)
    assert [c["eligible"] for c in d["candidates"]] == [True, False, True]
    assert by_job(d)["1_gemma"]["reasons"] == ["licence Gemma Terms of Use not in [apache-2.0, CC-BY-NC-4.0]"]
    d = dec.decide(jobs, {"commercial": True}, registry_lookup=REGISTRY.get)
    assert [c["eligible"] for c in d["candidates"]] == [True, True, False]
    assert by_job(d)["2_nc"]["reasons"] == ["licence CC-BY-NC-4.0: commercial use not allowed "
                                            "(registry commercial_use=false)"]


def test_a_licence_policy_without_licence_data_names_the_model():
    jobs = [("0_smollm2", summary("smollm2")), ("1_mystery", summary("mystery", licence="unknown"))]
    with pytest.raises(UserError, match="mystery") as err:
        dec.decide(jobs, {"commercial": True}, registry_lookup=REGISTRY.get)
    assert "smollm2" not in str(err.value).split("have none")[0].split("model(s)")[1]
    with pytest.raises(UserError, match="model\\(s\\) mystery have none"):
        dec.decide(jobs, {"licenses": ["Apache-2.0"]}, registry_lookup=REGISTRY.get)
    with pytest.raises(UserError, match="unregistered"):  # not in the registry at all
        dec.decide([("0_x", summary("unregistered", licence=None))], {"licenses": ["MIT"]},
                   registry_lookup=REGISTRY.get)
    # without a policy, missing licence data is no error and the registry is not consulted
    d = dec.decide(jobs, {}, registry_lookup=no_registry)
    assert d["recommended"] is not None


# ---------------------------------------------------------------------------- failed jobs


def test_failed_jobs_are_listed_as_not_evaluated_never_dropped():
    jobs = [("0_ok", summary("a", quality=3.0, e2e=0.5)), ("1_boom", failed("b", "model failed to load: out of memory")),
            ("2_ok", summary("c", quality=3.5))]
    d = dec.decide(jobs, {})
    assert [c["job"] for c in d["candidates"]] == ["0_ok", "1_boom", "2_ok"]
    boom = by_job(d)["1_boom"]
    assert boom["eligible"] is False and boom["evaluated"] is False and boom["on_pareto"] is False
    assert boom["reasons"] == ["not evaluated: model failed to load: out of memory"]
    assert d["not_evaluated"] == [{"job": "1_boom", "model": "b", "hardware": "cpu", "decoding": "deterministic",
                                   "error": "model failed to load: out of memory"}]
    assert d["recommended"]["job"] == "2_ok" and d["pareto"] == ["0_ok", "2_ok"]
    assert d["summary_sentence"].endswith("1 failed job was not evaluated (1_boom).")


def test_all_failed_decides_nothing():
    d = dec.decide([("0_a", failed("a", "boom")), ("1_b", failed("b", "bang"))], {})
    assert d["recommended"] is None and d["pareto"] == [] and len(d["not_evaluated"]) == 2
    assert d["summary_sentence"].startswith("Nothing could be decided: all 2 jobs failed")


# ---------------------------------------------------------------------------- decide_main on a sweep dir


def write_sweep(root: Path, jobs: list[tuple[str, dict]]) -> Path:
    root.mkdir()
    for job, s in jobs:
        (root / job).mkdir()
        (root / job / "summary.json").write_text(json.dumps(s))
    (root / "report.md").write_text("# Sweep test\n\nThe sweep table.\n")
    return root


def test_decide_main_rewrites_decision_keeps_previous_and_tops_the_report(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep", [
        ("0_smollm2-135m-int4_deterministic_cpu", summary("smollm2-135m-int4", e2e=0.4, e2e_p95=2.7, quality=3.1,
                                                          quality_ci=(3.0, 3.2))),
        ("1_smollm2-135m-int8_deterministic_cpu", summary("smollm2-135m-int8", e2e=0.6, e2e_p95=1.5, quality=3.4,
                                                          quality_ci=(3.3, 3.5))),
        ("2_gemma3-270m-int4_deterministic_cpu", failed("gemma3-270m-int4", "load failed"))])
    assert render.decide_main(sweep, []) == 0
    first = json.loads((sweep / "decision.json").read_text())
    assert first["recommended"]["model"] == "smollm2-135m-int8" and first["margin_vs_noise"] == "clear"
    assert first["not_evaluated"][0]["job"] == "2_gemma3-270m-int4_deterministic_cpu"
    assert first["plot"] == "pareto.png" and (sweep / "pareto.png").stat().st_size > 0
    assert not (sweep / "decision.previous.json").exists()
    assert "Ship smollm2-135m-int8 as the default" in capsys.readouterr().out

    assert render.decide_main(sweep, ["objective.metric=e2e_s.p50"]) == 0
    second = json.loads((sweep / "decision.json").read_text())
    assert second["recommended"]["model"] == "smollm2-135m-int4"
    assert json.loads((sweep / "decision.previous.json").read_text()) == first
    assert render.decide_main(sweep, ["max.e2e_s.p95=2.0", "objective.metric=e2e_s.p50"]) == 0
    third = json.loads((sweep / "decision.json").read_text())
    assert third["recommended"]["model"] == "smollm2-135m-int8" and third["limits"]["max"] == {"e2e_s.p95": 2.0}
    assert json.loads((sweep / "decision.previous.json").read_text()) == second

    report = (sweep / "report.md").read_text()
    assert report.startswith(render.START + "\n# Decision\n")
    assert report.count(render.START) == 1 and report.count(render.END) == 1  # replaced in place, not stacked
    assert report.count("# Sweep test") == 1 and report.index(render.END) < report.index("# Sweep test")
    assert third["summary_sentence"] in report and second["summary_sentence"] not in report
    assert "e2e_s.p95 2.7 s > 2.0 s" in report and "![Pareto front](pareto.png)" in report


def test_decide_main_returns_1_when_nothing_can_be_decided(tmp_path):
    sweep = write_sweep(tmp_path / "failed", [("0_a", failed("a", "boom")), ("1_b", failed("b", "bang"))])
    assert render.decide_main(sweep, []) == 1
    d = json.loads((sweep / "decision.json").read_text())
    assert d["recommended"] is None and [n["error"] for n in d["not_evaluated"]] == ["boom", "bang"]
    assert (sweep / "report.md").read_text().startswith(render.START)
    limited = write_sweep(tmp_path / "limited", [("0_a", summary("a", rss=900))])
    assert render.decide_main(limited, ["max.rss_mb=500"]) == 1
    assert "rss_mb 900 MB > 500 MB" in (limited / "report.md").read_text()


def test_decide_main_bad_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no job summaries"):
        render.decide_main(empty, [])
    with pytest.raises(UserError, match="no such directory"):
        render.decide_main(tmp_path / "missing", [])
    sweep = write_sweep(tmp_path / "sweep", [("0_a", summary("a"))])
    with pytest.raises(UserError, match="'nonsense.p50'"):
        render.decide_main(sweep, ["max.nonsense.p50=1"])
    assert not (sweep / "decision.json").exists()  # bad input writes nothing
    assert (sweep / "report.md").read_text() == "# Sweep test\n\nThe sweep table.\n"


# ---------------------------------------------------------------------------- qualified quality only


def test_quality_from_an_unqualified_grader_is_not_used_and_the_decision_says_why():
    jobs = [("0_worse", summary("a", quality=4.8, decode=30.0, trusted=False)),
            ("1_faster", summary("b", quality=1.2, decode=60.0, trusted=False))]
    d = dec.decide(jobs, NO_REGISTRY, registry_lookup=no_registry)
    assert d["objective"]["metric"] == "decode_tps.p50"  # auto falls back to speed
    assert d["recommended"]["job"] == "1_faster"
    assert set(d["quality"]["not_used"]) == {"0_worse", "1_faster"}
    assert "Quality was not used" in d["summary_sentence"] and "Spearman 0.12 < 0.6" in d["summary_sentence"]
    assert all(c["metrics"]["quality.overall"] is None for c in d["candidates"])
    assert "quality" not in {x["label"] for x in d["dimensions"]}
    md = "\n".join(render.decision_markdown(d, None))
    assert "untrusted quality not used" in md


def test_a_quality_limit_cannot_be_met_by_untrusted_quality():
    jobs = [("0_a", summary("a", quality=4.8, trusted=False)), ("1_b", summary("b", quality=4.0))]
    d = dec.decide(jobs, {"min": {"quality.overall": 3.0}}, registry_lookup=no_registry)
    c = by_job(d)
    assert not c["0_a"]["eligible"] and "quality.overall not measured" in c["0_a"]["reasons"][0]
    assert d["recommended"]["job"] == "1_b"


def test_trust_unqualified_overrides_and_says_so():
    jobs = [("0_worse", summary("a", quality=4.8, decode=30.0, trusted=False)),
            ("1_faster", summary("b", quality=1.2, decode=60.0, trusted=False))]
    d = dec.decide(jobs, {"trust_unqualified": True}, registry_lookup=no_registry)
    assert d["objective"]["metric"] == "quality.overall" and d["recommended"]["job"] == "0_worse"
    assert set(d["quality"]["trusted_unqualified"]) == {"0_worse", "1_faster"} and not d["quality"]["not_used"]
    assert "trust_unqualified=true" in d["summary_sentence"]
    with pytest.raises(UserError, match="trust_unqualified must be true or false"):
        dec.decide(jobs, {"trust_unqualified": "yes"}, registry_lookup=no_registry)


def test_qualified_quality_is_used_beside_unqualified():
    jobs = [("0_q", summary("a", quality=3.0)), ("1_untrusted", summary("b", quality=5.0, trusted=False))]
    d = dec.decide(jobs, NO_REGISTRY, registry_lookup=no_registry)
    assert d["objective"]["metric"] == "quality.overall" and d["recommended"]["job"] == "0_q"
    assert d["runner_up"] is None and list(d["quality"]["not_used"]) == ["1_untrusted"]


def test_a_failed_judges_own_numbers_steer_nothing_when_notes_is_the_source():
    good, bad = summary("a", quality=4.0), summary("b", quality=3.0)
    for s, judge_score in ((good, 1.0), (bad, 5.0)):
        s["quality"].update(source="notes", judge="j", judge_overall=dist(judge_score),
                            qualifications={"notes": {"passed": True}, "j": {"passed": False}})
    d = dec.decide([("0_good", good), ("1_bad", bad)], {"weights": {"quality.judge_overall": 1.0}},
                   registry_lookup=no_registry)
    assert d["recommended"] is None  # the failed judge's overall is hidden: nothing to weigh
    d = dec.decide([("0_good", good), ("1_bad", bad)], NO_REGISTRY, registry_lookup=no_registry)
    assert d["recommended"]["job"] == "0_good" and d["quality"]["sources"] == ["notes"]


def test_quality_from_two_graders_is_not_compared_on_one_scale():
    a, b, c = summary("a", quality=3.0), summary("b", quality=3.5), summary("c", quality=5.0)
    c["quality"]["source"] = "notes"  # e.g. the judge graded nothing in this job
    d = dec.decide([("0_a", a), ("1_b", b), ("2_c", c)], NO_REGISTRY, registry_lookup=no_registry)
    assert d["recommended"]["job"] == "1_b"
    assert "graded by notes, not smollm2-135m-fp32" in d["quality"]["not_used"]["2_c"]
