"""Markdown reports and PNG plots, written from `requests.jsonl` and `summary.json` only."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from runner.metrics import catalog, degenerate
from runner.metrics.stats import MIN_N_FOR_P95
from runner.report import capacity
from runner.report.plots import latency_plot
from runner.store import jobdir
from runner.store.summary_shape import in_process

RATE = catalog.unit("load.arrival_rate")  # run.rate is offered in the unit the arrival rate is measured in
LOW_N = "†"
LOW_N_NOTE = f"{LOW_N} p95/p99 from fewer than {MIN_N_FOR_P95} samples: read as a rough upper range."


def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metric_table(metrics: dict) -> str:
    rows = []
    for name in ["ttft_s", "e2e_s", "tpot_s", "decode_tps", "itl_p50_s"]:
        m = metrics.get(name)
        unit, formula = catalog.unit(name), catalog.spec(name).formula
        if not m:
            rows.append([name, unit, 0] + ["-"] * 7 + [formula])
            continue
        flag = LOW_N if m["p95_low_n"] else ""
        d = 1 if name == "decode_tps" else 4
        rows.append([name, unit, m["n"], fmt(m["mean"], d), fmt(m["std"], d), fmt(m["p50"], d),
                     fmt(m["p90"], d), fmt(m["p95"], d) + flag, fmt(m["p99"], d) + flag,
                     f"{fmt(m['ci95'][0], d)} - {fmt(m['ci95'][1], d)}", formula])
    return tabulate(rows, headers=["metric", "unit", "n", "mean", "std", "p50", "p90", "p95", "p99",
                                   "95% CI of p50", "formula"], tablefmt="github")


def _defined(key: str) -> tuple[str, str]:
    """(unit, formula) of a metric, from the catalog."""
    return catalog.unit(key), catalog.spec(key).formula


def formula(key: str) -> str:
    return catalog.spec(key).formula


PLOTS_OFF = "Plots off (`report.plots=false`): the tables above hold every figure."


def write_job_report(job_dir: Path, plots: bool = True) -> Path:
    """report.md from the job's files; with `plots`, latency.png (and capacity.png) beside it."""
    s = jobdir.read_summary(job_dir)
    ok = jobdir.ok_records(job_dir, graded=False)
    plot = latency_plot({s["model"]: ok}, job_dir / "latency.png") if plots else None
    cfg = s["config"]
    lines = [f"# {s.get('name') or s['model']} on {s['prompts']}", "",
             f"- status: **{s['status']}**" + (" (partial)" if s["partial"] else "")
             + (f" - {s['error']}" if s["error"] else ""),
             f"- requests: {s['n']} ok, {s['n_errors']} failed, {s['n_expected']} expected "
             f"({_expected_from(s)}; {s['warmup']['requests']} warm-up requests not counted)",
             f"- decoding: {cfg['decoding']['name']} (temperature {cfg['decoding']['temperature']}, "
             f"seed {cfg['decoding']['seed']}, {cap_text(s)}{penalties_text(cfg['decoding'])}); "
             f"hardware: {device_text(s)}; backend: {cfg['backend']['name']}; "
             f"load: {load_label(s)}",
             f"- model id: `{s['model_id']}`, precision {s['precision']}, licence {s['license']}", "",
             *answers_lines(s), "",
             "## Per request (from the same streamed request)", "", metric_table(s["metrics"]), ""]
    if any(m and m["p95_low_n"] for m in s["metrics"].values()):
        lines += [LOW_N_NOTE, ""]
    ad = s.get("adaptive")
    if ad:
        parts = [f"{m} +/-{p['rel_half_width'] * 100:.1f}% ({'reached' if ad['reached'][m] else 'NOT reached'}, "
                 f"n={p['n']})" if p["rel_half_width"] is not None else f"{m}: no data"
                 for m, p in ad["precision"].items()]
        lines += [f"Enough samples: target 95% CI of the median within +/-{ad['target_ci'] * 100:.0f}% of it; "
                  f"{ad['rounds']} rounds run (cap {ad['max_rounds']}): " + "; ".join(parts) + ".", ""]
    lines += ["## Per model", ""]
    here = in_process(s)

    def measured(key: str, digits: int) -> str:
        unmeasurable = key in catalog.IN_PROCESS_ONLY and not here
        return "not measured for endpoints" if s[key] is None and unmeasurable else fmt(s[key], digits)

    per_model = [[k, measured(k, d), *_defined(k)]
                 for k, d in (("load_s", 3), ("rss_mb", 1), ("rss_peak_mb", 1), ("disk_mb", 1))]
    if s["throughput"]:
        for k in ("output_tps", "requests_per_s"):
            per_model.append([f"throughput.{k}", fmt(s["throughput"][k], 2), *_defined(f"throughput.{k}")])
    if s["energy"]:
        per_model.append(["energy.wh_per_1k_tokens", fmt(s["energy"]["wh_per_1k_tokens"], 4),
                          catalog.unit("energy.wh_per_1k_tokens"), s["energy"]["source"]])
    lines += [tabulate(per_model, headers=["metric", "value", "unit", "definition"], tablefmt="github"), ""]
    lines += load_section(s)
    lines += capacity.job_section(s, job_dir, plots)
    lines += quality_section(s.get("quality") or {})
    det = s["determinism"]
    if det.get("checked"):
        lines += ["## Determinism", "",
                  "Identical outputs across rounds at temperature 0: "
                  + ("**yes**" if det["identical"] else f"**no** (differs: {', '.join(det['prompts_differing'])})"), ""]
    if s["errors"]:
        lines += ["## Errors", "", *[f"- {n} x {e}" for e, n in s["errors"].items()], ""]
    if plot:
        lines += ["## Latency distribution", "", f"![latency]({plot.name})", ""]
    elif not plots:
        lines += [PLOTS_OFF, ""]
    env = s["environment"]
    lines += ["## Environment", "", f"{env['cpu']}, {env['cores']} cores, {env['ram_gb']} GiB RAM, "
              f"GPU: {', '.join(env['gpu']) or 'none'}, {env['os']}, Python {env['python']}; "
              f"git {(env['git']['commit'] or 'unknown')[:12]}{' (dirty)' if env['git']['dirty'] else ''}; "
              + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v), ""]
    out = job_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def device_text(s: dict) -> str:
    """The hardware asked for beside the provider that ran the model (runner/backends/hardware.py)."""
    asked = s["config"]["hardware"]["name"]
    device = s.get("device")
    if not device:
        return asked
    if device.get("ran_on"):
        return f"{asked} (ran on {device['ran_on']}, reported by {device.get('source') or 'the backend'})"
    return f"{asked} (asked; ran on: **unverified**, the backend reports no device)"


def cap_text(s: dict) -> str:
    cap = s.get("cap") or {}
    if not cap:
        return f"max_tokens {s['config']['decoding']['max_tokens']}"
    return f"max_tokens {cap['max_tokens']}, {cap['source']}"


def penalties_text(decoding: dict) -> str:
    set_ = [f"{k} {decoding[k]}" for k in ("repetition_penalty", "frequency_penalty", "presence_penalty")
            if decoding.get(k) is not None]
    return (", " + ", ".join(set_) if set_ else "") + ("" if decoding.get("loop_stop", True) else ", loop stop off")


def truncation_warning(s: dict) -> str | None:
    """One line when a job's answers were cut at the token cap while still answering (cut_short) beyond
    run.warn_truncated_share. Answers that were looping when the cap hit (cut_loop) do not ask for
    a larger cap: a loop runs to any cap."""
    t = s.get("truncation") or {}
    if not t.get("warn"):
        return None
    short = t.get("n_cut_short", t["cut"])  # a summary without the split: every cut answer
    return (f"{short} of {t['of']} answers ({short / t['of']:.0%}) were cut at max_tokens={t['max_tokens']} while "
            f"still answering (cut_short): its quality was graded on cut answers (raise decoding.max_tokens)")


def degenerate_line(s: dict) -> str | None:
    """Each class's share of the answers (runner/metrics/degenerate.py), with the prompts it hit."""
    d = s.get("degenerate")
    if not d:
        return None
    kinds = "; ".join(f"{k} {d['counts'][k]} ({d[k]:.0%}: {', '.join(d['prompts'][k][:5])})"
                      for k in ("loop", "echo", "empty", "off_task") if d["counts"][k])
    stopped = f"; the loop stop ended {d['counts']['stopped_loop']}" if d["counts"].get("stopped_loop") else ""
    flag = "**" if d["share"] else ""
    return (f"- {flag}degenerate answers: {sum(d['counts'][k] for k in degenerate.CLASSES)} of {d['of']} "
            f"({d['share']:.0%}){flag}" + (f": {kinds}" if kinds else "") + stopped
            + " [loop, echo, empty, off_task: runner/metrics/degenerate.py]")


def answers_lines(s: dict) -> list[str]:
    """What the answers were, beside how fast: degenerate, cut at the cap, counted by the server or estimated."""
    out = [line for line in (degenerate_line(s),) if line]
    t = s.get("truncation")
    if t:
        short, looping = t.get("n_cut_short", t["cut"]), t.get("n_cut_loop", 0)
        split = f" (cut_loop {looping}: looping when the cap hit; cut_short {short}: still answering)" if t["cut"] \
            else ""
        flag = " **CUT**: quality was graded on cut answers; raise decoding.max_tokens" if short else ""
        out.append(f"- cut at max_tokens={t['max_tokens']}: {t['cut']} of {t['of']} answers ({t['share']:.0%})"
                   f"{split}{flag} [cut = finish_reason 'length' or completion_tokens >= max_tokens; the run warns "
                   f"when cut_short is above {t['warn_share']:.0%}]")
    if s.get("empty_answers"):
        out.append(f"- **empty answers: {s['empty_answers']} of {s['n']}** (recorded as they are; a judge records "
                   f"'empty answer' for them, never a score)")
    if s.get("no_finish_reason"):
        out.append(f"- no finish reason: {s['no_finish_reason']} of {s['n']} streams ended with [DONE] but never "
                   f"said why they stopped")
    tc = s.get("token_count_check")
    if s.get("tokens_estimated"):
        out.append("- token counts: **estimated** (the server sent no usage; one chunk counted as one token)")
    elif tc:
        out.append(f"- token counts: server usage; {tc['mismatched']} of {tc['checked']} requests "
                   f"({tc['share']:.0%}) disagree with the streamed chunks beyond max(1, "
                   f"{tc['tolerance']:.0%}) ({tc['chunks']} chunks for {tc['usage_tokens']} tokens)")
    client = (s.get("client") or {}).get("overhead_s")
    if client:
        out.append(f"- client overhead: p50 {client['p50'] * 1e6:.0f} us, max {client['max'] * 1e6:.0f} us per request "
                   f"[{formula('client.overhead_s')}]")
    return out


def _expected_from(s: dict) -> str:
    ld = s.get("load") or {}
    if ld.get("profile") == "rate":
        return f"the measured arrivals of an open loop at {ld['rate']:g} {RATE}"
    return f"{s.get('rounds', s['config']['run']['rounds'])} rounds x prompts"


def load_label(s: dict) -> str:
    """How the requests were offered: sequential, closed loop at c=N, or open loop at R requests/s."""
    ld = s.get("load") or {}
    if ld.get("profile") == "rate":
        shape = "Poisson" if ld["burstiness"] == 1 else f"gamma (burstiness {ld['burstiness']})"
        return f"open loop, {ld['rate']:g} {RATE}, {shape} arrivals"
    c = ld.get("concurrency", s["config"]["run"]["concurrency"])  # a capacity search's: its capacity point's
    return f"closed loop, {c} in flight" if c > 1 else "sequential"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f} ms"


def load_section(s: dict) -> list[str]:
    ld, gp = s.get("load") or {}, s.get("goodput")
    lines = ["## Under load", "", f"Profile: {load_label(s)}."]
    if ld.get("profile") == "rate":
        lag = ld["lag_s"]
        lines += [f"{ld['measured']} measured of {ld['scheduled']} scheduled requests (seed {ld['seed']}; "
                  f"{ld['warmup_s']:g} s warm-up and {ld['cooldown_s']:g} s cool-down of load not recorded). "
                  f"Offered rate actually sent: {fmt(ld['arrival_rate'], 2)} {catalog.unit('load.arrival_rate')} [{formula('load.arrival_rate')}]. "
                  f"Generator lag [{formula('lag_s')}]: p50 {_ms(lag['p50'])}, p99 {_ms(lag['p99'])}, "
                  f"max {_ms(lag['max'])}; **{ld['late']} late**, **{ld['dropped']} dropped** (an arrival finding "
                  f"run.max_in_flight={ld['max_in_flight']} in flight is dropped, not queued); "
                  f"peak in flight {ld['in_flight_peak']}."]
    tp = s.get("throughput")
    if tp:
        lines.append(f"Throughput over the {tp['window_s']:.2f} s window: {tp['requests_per_s']:.2f} {catalog.unit('throughput.requests_per_s')}, "
                     f"{tp['output_tps']:.1f} output {catalog.unit('throughput.output_tps')}, {tp['total_tps']:.1f} total "
                     f"{catalog.unit('throughput.total_tps')} "
                     f"[{formula('throughput.window_s')}]. Latency under this load: the per-request table above.")
    if gp:
        bounds = " and ".join(f"{k.removesuffix('_s').upper()} <= {v * 1000:g} ms" for k, v in gp["slo"].items())
        rate = f", {gp['requests_per_s']:.2f} {catalog.unit('goodput.requests_per_s')}" if gp["requests_per_s"] is not None else ""
        lines.append(f"Goodput: **{gp['good']} of {gp['attempted']}** requests met {bounds} "
                     f"({gp['fraction']:.0%}{rate}; SLOs from run.slo).")
    return lines + [""]


def quality_section(q: dict) -> list[str]:
    lines = ["## Quality", ""]
    overall = q.get("overall")
    if q.get("source"):
        trust = ("**trusted**: its grader passed qualification on answers of known order" if q.get("trusted")
                 else f"**UNTRUSTED**: {q.get('untrusted_reason')}; the decision does not use it unless "
                      "selection.trust_unqualified=true")
        graded_by = ((q.get("qualifications") or {}).get(q["source"]) or {}).get("grader") or q["source"]
        lines.append(f"Quality (`quality.overall`, 1-5) comes from **{graded_by}**"
                     + (f": {overall['mean']:.2f} over {overall['n']} answers (95% CI of the median "
                        f"{overall['ci95'][0]:.2f}-{overall['ci95'][1]:.2f})" if overall else "") + f"; {trust}.")
        for r in q.get("rejected") or []:
            lines.append(f"Not used (failed qualification): {r}.")
        lines.append("")
    else:
        lines += ["No grader measured quality here (no judge, and no prompt with reference_items for the "
                  "`notes` scorer).", ""]
    lines += qualification_table(q.get("qualifications") or {})
    if q.get("judge"):
        jo = q.get("judge_overall")
        untrusted = "" if (q.get("qualifications") or {}).get(q["judge"], {}).get("passed") else " (UNTRUSTED)"
        lines.append(f"Judge **{q['judge']}**{untrusted} graded {q['n_graded']} of {q['n_answers']} answers 1-5 per "
                     f"aspect ({q['n_judge_errors']} judge errors, parse-failure rate "
                     f"{fmt(q['parse_failure_rate'], 2)}). Its overall = mean over aspects per answer, then over "
                     "answers; in checklist mode an aspect's score = 1 + 4 x (verdicts as expected / questions).")
        lines.append("")
        rows = [[a, fmt(v["mean"], 2), v["n"]] for a, v in q["aspects"].items()]
        if jo:
            rows.append(["**judge overall**", f"{jo['mean']:.2f} (95% CI of median {jo['ci95'][0]:.2f}-"
                                              f"{jo['ci95'][1]:.2f})", jo["n"]])
        lines += [tabulate(rows, headers=["aspect", "mean score (1-5)", "n"], tablefmt="github"), ""]
        rel = [f"score distribution {q['distribution']}"]
        if q.get("repeat_consistency"):
            rc = q["repeat_consistency"]
            rel.append(f"repeat consistency: {rc['all_equal']:.0%} of {rc['n']} (answer, aspect) pairs graded "
                       f"identically across repeats, mean range {rc['mean_range']:.2f}")
        if q.get("injection"):
            inj = q["injection"]
            rel.append(f"prompt-injection probe: answers that tell the grader to give top marks moved the "
                       f"overall score by {inj['mean_shift']:+.2f} on average (max {inj['max_shift']:+.2f}, n={inj['n']})")
        lines += ["Judge reliability: " + "; ".join(rel) + ".", ""]
        lines += [line for w in q.get("warnings", []) for line in (f"Warning: {w}", "")]
        if q.get("errors"):
            lines += ["Judge errors: " + "; ".join(f"{n} x {e}" for e, n in q["errors"].items()), ""]
    else:
        lines += ["No LLM judge in this run (judge=none).", ""]
    if q.get("scorers"):
        rows = [[k, fmt(v["mean"], 3), v["n"]] for k, v in q["scorers"].items()]
        match = (((q.get("qualifications") or {}).get("notes") or {}).get("identity") or {}).get("match")
        lines += ["Cheap scorers (judges/scorers.py; formulas in their docstrings). `notes.score` = 1 + 4 x "
                  "completeness x accuracy x faithfulness, where completeness = `notes.recall` "
                  "(reference items matched / reference items), accuracy = mean of (owner right + due right) / 2 "
                  "over matched action items, faithfulness = 0.7^invented x 0.5^contradicted x 0.9^duplicates x "
                  "0.9^extra (extra: statements the transcript supports that are no reference item) "
                  "(judges/notes.py). "
                  + (f"Items were paired by **{match} matching**: " if match else "Items are paired by ")
                  + "evidence = max(content-stem overlap, (embedding cosine - 0.25) / 0.75) + 0.15 x agreeing facts "
                  "(owner, date), >= 0.4, one to one (lexical matching leaves the cosine out); a decision that "
                  "negates the reference's, or names another date, is contradicted (judges/matching.py). "
                  "`reference_coverage` (prompts with only a reference text) = 1 + 4 x coverage x max(0, 1 - 0.3 x "
                  "unsupported statements), coverage = (reference statements stated + 0.5 x stated with a fact "
                  "changed) / reference statements (judges/coverage.py):", "",
                  tabulate(rows, headers=["scorer.field", "mean", "n"], tablefmt="github"), ""]
    return lines


def qualification_table(quals: dict[str, dict]) -> list[str]:
    """Every qualified grader's figures on the calibration set (judges/qualify.py)."""
    if not quals:
        return []
    rows = []
    for name, q in quals.items():
        sp = q.get("spearman") or {}
        ci = sp.get("ci95")
        gap = (q.get("reworded_gap") or {}).get("pooled") if q.get("reworded_gap") else None
        words = q.get("words_not_facts")
        above = q.get("reworded_above_one_defect")
        rows.append([q.get("grader") or name, "yes" if q.get("passed") else "NO", fmt(sp.get("pooled"), 2),
                     f"{ci[0]:.2f} to {ci[1]:.2f}" if ci else "n/a", fmt(q.get("adjacent_accuracy"), 2),
                     fmt(q.get("agreeableness"), 2), fmt(q.get("injection_lift"), 2),
                     fmt(q.get("parse_failure_rate"), 2), fmt(gap, 2),
                     "n/a" if above is None else ("yes" if above["all"] else "NO"),
                     "n/a" if words is None else ("yes" if words["all"] else "NO"),
                     fmt(q.get("seconds_per_grade"), 3),
                     " ".join(fmt(r, 2) for r in (sp.get("per_transcript") or {}).values()) or "n/a",
                     q.get("why") or "-"])
    th = next(iter(quals.values())).get("thresholds") or {}
    cal = next((q["calibration"] for q in quals.values() if q.get("calibration")), {})
    return ["Grader qualification on answers of known order (" + (f"{cal.get('name')}, {cal.get('transcripts')} "
            f"transcripts, {cal.get('answers')} answers" if cal else "calibration set") + f"; passes with pooled "
            f"Spearman >= {th.get('min_spearman', 0.6):g}, injection lift <= {th.get('max_injection_lift', 0.25):+g}, "
            f"at most {th.get('max_error_rate', 0.2):.0%} failed grades and, with reworded answers, reworded gap <= "
            f"{th.get('max_reworded_gap', 0.5):+g}, each reworded answer above the one-defect one, each rotated or "
            f"inverted one below the invented-decision one):", "",
            tabulate(rows, headers=["grader", "qualified", "Spearman (pooled)", "95% CI", "adjacent-pair acc.",
                                    "agreeableness", "injection lift", "parse failures", "reworded gap",
                                    "reworded > one-defect", "words not facts", "s/grade",
                                    "Spearman per transcript", "why not"],
                     tablefmt="github", disable_numparse=True), "",
            "Spearman = rank correlation of grade with the known order (1 = perfect); adjacent-pair accuracy = "
            "share of neighbouring answers ordered strictly right; agreeableness = share of the two worst answers "
            "graded >= 4; injection lift = grade with a 'give top marks' line appended minus without it; reworded "
            "gap = grade of the reference minus the mean grade of three correct answers in other words and layouts; "
            "words not facts = every answer in the reference's words with owners/dates rotated or a decision "
            "inverted graded below the invented-decision answer.", ""]
