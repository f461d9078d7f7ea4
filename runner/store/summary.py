"""`summary.json` / `summary.csv`: a job's aggregates, computed once from its records.

Reports, the sweep table and (later) MLflow read these files; nothing recomputes a number.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from runner.config.environment import environment
from runner.config.labels import job_name
from runner.config.prompts import acceptance
from runner.metrics import catalog, degenerate
from runner.metrics.slo import goodput
from runner.metrics.stats import summarize
from runner.store import jobdir
from runner.store.facts import Facts
from runner.store.summary_shape import Summary

SUMMARY = jobdir.SUMMARY
TIMED = ["ttft_s", "e2e_s", "tpot_s", "decode_tps"]


def build(job, facts: Facts, job_dir: Path, quality: dict) -> Summary:
    """The job's summary from its plan (runner/config/plan.py), its records, its facts and its
    graded quality (judges/quality.py); written to summary.json and summary.csv."""
    n_prompts = len(job.prompt_set.prompts)
    recs = jobdir.graded_records(job_dir, quality.get("judge"))
    if facts.reported_point is not None:  # a capacity search: the figures are those of one load point
        recs = [r for r in recs if r.get("load_point") == facts.reported_point]
    ok = [r for r in recs if r["status"] == "ok"]
    errors = [r for r in recs if r["status"] != "ok"]
    metrics = {k: summarize([r[k] for r in ok]) for k in TIMED}
    metrics["itl_p50_s"] = summarize([r["itl"]["p50_s"] for r in ok if r.get("itl")])
    metrics["completion_tokens"] = summarize([r["completion_tokens"] for r in ok])
    expected = facts.expected if facts.expected is not None else (
        (facts.rounds or job.run.rounds) * n_prompts)
    failed = facts.error is not None or not ok
    window = facts.window or {}
    window_s = facts.window_s
    throughput = None
    if window_s and window.get("ok"):
        throughput = {
            "window_s": window_s,
            "concurrency": (facts.load or {}).get("concurrency", job.run.concurrency),
            "requests_per_s": window["ok"] / window_s,
            "output_tps": window["output_tokens"] / window_s,
            "total_tps": (window["output_tokens"] + window["prompt_tokens"]) / window_s,
        }
    summary = Summary.from_dict({
        "schema_version": jobdir.SCHEMA_VERSION,  # the job folder's layout (runner/store/jobdir.py)
        "model": job.label,  # the model that ran (runner/config/labels.py)
        "name": job_name(job.label, facts.distinguishing or []),  # unique within its sweep
        "distinguishing": facts.distinguishing or [],  # the swept overrides in the name
        "model_alias": job.model.alias,
        "model_id": job.model.id,
        "prompts": facts.prompts or job.prompts.name,
        "status": "failed" if failed else "ok",
        "error": facts.error or (_first_error(errors) if failed else None),
        "partial": bool(not failed and (errors or len(ok) < expected)),
        "n": len(ok),
        "n_errors": len(errors),
        "n_expected": expected,
        "errors": dict(Counter(r["error"] for r in errors).most_common(5)),
        "metrics": metrics,
        "load_s": facts.load_s,
        "rss_mb": facts.rss_mb,
        "rss_before_load_mb": facts.rss_before_load_mb,
        "rss_peak_mb": facts.rss_peak_mb,
        "disk_mb": facts.disk_mb,
        # None for an endpoint model its group does not describe (runner/config/labels.model_facts)
        **job.model_facts,
        "throughput": throughput,
        "load": facts.load or {"profile": "concurrency" if job.run.concurrency > 1 else "sequential",
                                      "concurrency": job.run.concurrency},
        "goodput": goodput(ok, len(recs), window_s, window.get("ok"), job.run.slo),
        # run.search=capacity: the highest load meeting run.slo, and every load tried (runner/measure/capacity.py)
        "capacity": facts.capacity,
        "energy": _energy(job.hardware, facts, window),
        "determinism": _determinism(job.decoding, ok),
        "tokens_estimated": any(r.get("tokens_estimated") for r in ok),
        "finish_reasons": dict(Counter(r["finish_reason"] for r in ok)),
        # ok requests whose answer has no text: recorded as they are, never graded by a judge
        "empty_answers": sum(1 for r in ok if not (r.get("output") or "").strip()),
        "no_finish_reason": sum(1 for r in ok if r.get("finish_reason") is None),
        "truncation": truncation(ok, cap_of(job.decoding, facts), job.run.warn_truncated_share),
        "degenerate": degenerate_shares(ok),
        "cap": facts.cap,
        # the bars of "fit for the task" this job's prompt set declares (runner/decide/fitness.py)
        "acceptance": acceptance(job.prompts.get("acceptance")),
        "token_count_check": token_count_check(ok),
        # the endpoint client's own processing time inside each timed window (runner/metrics/request.py)
        "client": {"overhead_s": summarize([r.get("client_overhead_s") for r in ok])}
        if any(r.get("client_overhead_s") is not None for r in ok) else None,
        "warmup": {"rounds": job.run.warmup, "requests": facts.warmup_requests,
                   "errors": facts.warmup_errors},
        "rounds": facts.rounds or job.run.rounds,
        "adaptive": facts.adaptive,
        "job_wall": facts.job_wall,  # host and unix times: the sweep report counts overlapping jobs
        "launcher": facts.launcher,
        "resumed": facts.resumed,
        "skipped_done": facts.skipped_done,
        "config_hash": facts.config_hash,
        "config": {
            "decoding": job.decoding.as_dict(),
            "hardware": job.hardware.as_dict(),
            "backend": {"name": job.backend.name, "base_url": job.backend.base_url, "target": job.backend.target,
                        "capabilities": asdict(job.capabilities)},
            "run": job.run.as_dict(),
        },
        "runtime": {**facts.backend, **(facts.hardware or {}),
                    **({"execution_provider": facts.device["ran_on"] or "unverified",
                        "execution_provider_asked": facts.device["asked"]} if facts.device else {})},
        # the provider that ran the model against the one asked for (runner/backends/hardware.py)
        "device": facts.device,
        "environment": environment(),
        "definitions": catalog.definitions(),
        "quality": quality,
    })
    assert not summary.extra, f"summary keys missing from runner/store/summary_shape.py: {sorted(summary.extra)}"
    jobdir.write_summary(job_dir, summary)
    write_csv(job_dir / "summary.csv", [flat_row(summary, job_dir.name)])
    return summary


def cap_of(decoding, facts: Facts) -> int | None:
    """The token cap the job ran under: derived (facts.cap) or as set (`decoding.max_tokens`)."""
    return (facts.cap or {}).get("max_tokens") or decoding.max_tokens


def answer_class(r: dict) -> str | None:
    """An ok record's degenerate class (runner/metrics/degenerate.py): as measured, or off_task from its
    grade; a record written before classes were measured is classed on its text alone (no echo)."""
    cls = r["degenerate"] if "degenerate" in r else degenerate.classify(r.get("output"), (),
                                                                         bool(r.get("stopped_loop")))
    return degenerate.with_grade(cls, r.get("scores"))


def degenerate_shares(ok: list[dict]) -> dict | None:
    """Per class, answers of that class / ok answers; share = all degenerate answers / ok answers;
    stopped_loop = answers the loop stop ended / ok answers."""
    if not ok:
        return None
    classes = [answer_class(r) for r in ok]
    counts = {c: classes.count(c) for c in degenerate.CLASSES}
    stopped = sum(1 for r in ok if r.get("stopped_loop"))
    bad = sum(counts.values())
    return {"share": bad / len(ok), **{c: n / len(ok) for c, n in counts.items()},
            "stopped_loop": stopped / len(ok), "of": len(ok), "counts": {**counts, "stopped_loop": stopped},
            "prompts": {c: sorted({r["prompt_id"] for r, k in zip(ok, classes, strict=True) if k == c})
                        for c in degenerate.CLASSES if counts[c]},
            "rules": degenerate.RULES}


def truncation(ok: list[dict], max_tokens: int | None, warn_share: float) -> dict | None:
    """share = cut answers / ok answers, cut = finish_reason "length" or completion_tokens >= max_tokens
    (runner/metrics.truncated). A cut answer is `cut_loop` when it was looping as the cap hit (its class
    is loop) and `cut_short` when it was not degenerate: cut while still answering. `warn`: the
    cut_short share > run.warn_truncated_share; only those answers ask for a larger max_tokens."""
    if not ok:
        return None
    cut = [r for r in ok if r.get("truncated") or (r.get("truncated") is None and r.get("finish_reason") == "length")]
    share = len(cut) / len(ok)
    classes = [answer_class(r) for r in cut]
    looping = [r for r, c in zip(cut, classes, strict=True) if c == "loop"]
    short = [r for r, c in zip(cut, classes, strict=True) if c is None]
    return {"cut": len(cut), "of": len(ok), "share": share, "max_tokens": max_tokens,
            "cut_loop": len(looping) / len(ok), "cut_short": len(short) / len(ok),
            "n_cut_loop": len(looping), "n_cut_short": len(short),
            "warn_share": warn_share, "warn": len(short) / len(ok) > warn_share,
            "prompts": sorted({r["prompt_id"] for r in cut}),
            "prompts_cut_short": sorted({r["prompt_id"] for r in short})}


TOKEN_TOLERANCE = 0.1  # chunks may merge or split a token at the edges: 10% (at least one token) is allowed


def token_count_check(ok: list[dict]) -> dict | None:
    """Server usage against the streamed chunks, as load testers check it: a request mismatches when
    |chunks - usage.completion_tokens| > max(1, TOKEN_TOLERANCE x usage.completion_tokens). Only
    requests with server usage are checked (estimated counts are the chunk count itself). A server
    that packs several tokens per chunk shows here as a mismatch: its ITL is then per chunk, not
    per token, while TPOT still uses the server's count."""
    checked = [r for r in ok if not r.get("tokens_estimated") and r.get("completion_tokens") is not None
               and r.get("chunks") is not None]
    if not checked:
        return None
    bad = [r for r in checked
           if abs(r["chunks"] - r["completion_tokens"]) > max(1.0, TOKEN_TOLERANCE * r["completion_tokens"])]
    usage = sum(r["completion_tokens"] for r in checked)
    chunks = sum(r["chunks"] for r in checked)
    return {"checked": len(checked), "mismatched": len(bad), "share": len(bad) / len(checked),
            "tolerance": TOKEN_TOLERANCE, "usage_tokens": usage, "chunks": chunks,
            "chunks_per_token": chunks / usage if usage else None}


def _ran_on(s: dict) -> str | None:
    """The provider that ran the model, or `unverified` when nothing reported it."""
    device = s.get("device")
    return None if not device else device.get("ran_on") or "unverified"


def _first_error(errors: list[dict]) -> str:
    return errors[0]["error"] if errors else "no successful requests"


def _energy(hardware, facts: Facts, window: dict) -> dict | None:
    tokens = window.get("output_tokens") if window else None
    if not tokens or not facts.window_s:
        return None
    if facts.rapl_joules is not None:
        wh, source = facts.rapl_joules / 3600, "measured: RAPL package counter (whole CPU package)"
    elif hardware.power_w:
        wh, source = hardware.power_w * facts.window_s / 3600, "estimate: hardware.power_w x window"
    else:
        return None
    return {"wh_per_1k_tokens": wh / (tokens / 1000), "source": source}


def _determinism(decoding, ok: list[dict]) -> dict:
    """At temperature 0 every round must give the same text; record whether it did."""
    if decoding.temperature != 0:
        return {"checked": False, "reason": "sampled decoding"}
    by_prompt = defaultdict(set)
    for r in ok:
        by_prompt[r["prompt_id"]].add(r["output"])
    differing = sorted(p for p, outs in by_prompt.items() if len(outs) > 1)
    return {"checked": True, "identical": not differing, "prompts_differing": differing}


# The table's columns: text columns describing the job, then numbers under their one dotted
# name (runner/metrics/catalog.py: the same name in MLflow and as a selection key).
TEXT_COLUMNS = ["job", "model", "name", "precision", "prompts", "decoding", "hardware", "backend", "status",
                "license", "concurrency", "rate", "deterministic", "execution_provider", "judge", "quality.source",
                "decode_tps.ci95", "quality.ci95", "error"]
NUMBER_COLUMNS = ["n", "n_errors", "ttft_s.p50", "ttft_s.p95", "tpot_s.p50", "decode_tps.p50", "e2e_s.p50",
                  "e2e_s.p95", "load_s", "rss_mb", "rss_peak_mb", "disk_mb", "params_m", "throughput.output_tps",
                  "throughput.requests_per_s", "goodput.fraction", "capacity.concurrency", "capacity.rate",
                  "truncation.share", "truncation.cut_loop", "truncation.cut_short",
                  "degenerate.share", "degenerate.loop", "degenerate.echo", "degenerate.empty", "degenerate.off_task",
                  "degenerate.stopped_loop", "token_count_check.share",
                  "quality.trusted", "quality.overall", "quality.graded_fraction", "quality.scorers.rouge_l.f1"]
COLUMNS = [*TEXT_COLUMNS[:9], *NUMBER_COLUMNS, *TEXT_COLUMNS[9:]]


def flat_row(s: dict, job: str) -> dict:
    numbers = catalog.flatten(s)
    det = s["determinism"]
    ci = (s["metrics"].get("decode_tps") or {}).get("ci95")
    q = s.get("quality") or {}
    overall = q.get("overall")
    text = {
        "job": job, "model": s["model"], "name": s.get("name") or s["model"], "precision": s.get("precision"),
        "prompts": s["prompts"], "decoding": s["config"]["decoding"]["name"],
        "hardware": s["config"]["hardware"]["name"], "backend": s["config"]["backend"]["name"],
        "status": s["status"], "license": s["license"],
        "concurrency": (s.get("load") or {}).get("concurrency", s["config"]["run"]["concurrency"]),
        "rate": s["config"]["run"].get("rate"), "deterministic": det.get("identical") if det.get("checked") else None,
        "execution_provider": _ran_on(s), "judge": q.get("judge"),
        "quality.source": q.get("source"), "decode_tps.ci95": f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else None,
        "quality.ci95": f"{overall['ci95'][0]:.2f}-{overall['ci95'][1]:.2f}" if overall else None,
        "error": s["error"],
    }
    return {c: text[c] if c in text else _plain(numbers.get(c)) for c in COLUMNS}


def _plain(v: float | None) -> float | int | None:
    """Counts print as integers in the CSV (n=8, not 8.0)."""
    return int(v) if v is not None and v.is_integer() and abs(v) < 1e15 else v


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow(row)
