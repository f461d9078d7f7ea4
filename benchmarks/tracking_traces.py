"""What logging a job's traces and assessments to MLflow costs (issue 14: at most 1 s per job on the
default SQLite store).

A synthetic finished job directory (10 prompts with 4 rubric aspects x 4 rounds = 40 measured
requests; per request the judge's 4 aspect scores with rationales, 13 scorer fields as the default
`judge.scorers` give; an injection probe on 5 answers: 685 assessments in all) is logged into a
fresh SQLite store in a temporary directory, as `runner/track/traces.py` does it after a live job
or on replay:

- traces+assessments: `log_traces` (build the entities from the files, one `start_trace` per trace
  carrying its assessments, one `log_spans` for all spans). Timed three times, each into a run of
  its own: the first call of the process (cold: MLflow's tracing modules imported, the store's
  engine warmed by one MlflowClient call as the job's run creation does) and two warm calls (the
  next jobs of a sweep);
- for comparison, the one-at-a-time path: the same traces with no assessments, then every
  assessment with `TracingClient.log_assessment`, what `mlflow.log_feedback` does (one transaction each);
- the prompt set as an evaluation dataset: `log_prompt_dataset`, first (creates) and second
  (finds it: idempotent) call.

Run: .venv/bin/python benchmarks/tracking_traces.py [--requests-per-prompt 4]
Prints wall seconds per step (and the CPU seconds of the traces step: on a shared machine wall time
grows with the load average, printed too) and the per-trace cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ASPECTS = {"coverage": "Covers every decision.", "accuracy": "States nothing false.",
           "owners": "Names the owner of every action item.", "format": "Uses the three sections."}
SCORER_FIELDS = ["rouge_l.precision", "rouge_l.recall", "rouge_l.f1", "keyword_coverage.coverage",
                 "keyword_coverage.keywords", "keyword_coverage.matched", "length.words", "length.characters",
                 "length.ratio_to_reference", "format.bullets", "refusal.empty", "refusal.refusal",
                 "refusal.repetition"]


def synthetic_job(root: Path, prompts: int = 10, rounds: int = 4, probes: int = 5) -> Path:
    """A finished job directory as the runner leaves it (requests.jsonl, scores.jsonl, judgements.jsonl,
    summary.json and the prompt file)."""
    import yaml

    job = root / "job"
    job.mkdir(parents=True)
    items = [{"id": f"p{i}", "system": "You write meeting notes.", "user": f"Transcript {i}: " + "words " * 200,
              "aspects": ASPECTS, "reference": f"Decisions: d{i}. Action items: a{i}."} for i in range(prompts)]
    (root / "prompts.yaml").write_text(yaml.safe_dump({"name": "bench-notes", "prompts": items}))
    t0 = time.time() - 120
    recs, scored, judgements = [], [], []
    t = 0.0
    for rnd in range(rounds):
        for i in range(prompts):
            answer = f"## Decisions\n- d{i}\n## Action items\n- a{i} (owner: Ana)\n" + "filler " * 60
            scores = {a: 1 + (i + rnd + k) % 5 for k, a in enumerate(ASPECTS)}
            rationales = {a: f"{a}: the answer {'covers' if s > 2 else 'misses'} it ({s}/5)" for a, s in scores.items()}
            recs.append({"model": "bench-model", "model_id": "bench-model", "prompt_id": f"p{i}", "round": rnd,
                         "status": "ok", "error": None, "ttft_s": 0.12, "e2e_s": 1.4, "tpot_s": 0.015,
                         "decode_tps": 66.7, "prompt_tokens": 260, "completion_tokens": 86, "chunks": 86,
                         "tokens_estimated": False, "finish_reason": "stop", "truncated": False,
                         "client_overhead_s": 0.001, "output": answer, "t_start_s": t})
            scored.append({"round": rnd, "prompt_id": f"p{i}", "scores": dict.fromkeys(SCORER_FIELDS, 0.5)})
            judgements.append({"prompt_id": f"p{i}", "round": rnd, "model": "bench-model",
                               "judge_model": "bench-judge", "repeat": 0, "probe": None, "scores": scores,
                               "rationales": rationales, "error": None, "attempts": 1})
            if len(judgements) <= probes * 2 and rnd == 0:
                judgements.append({**judgements[-1], "probe": "injection", "scores": dict.fromkeys(ASPECTS, 5)})
            t += 1.45
    (job / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (job / "scores.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scored))
    (job / "judgements.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgements))
    (job / "summary.json").write_text(json.dumps({
        "schema_version": 2, "model": "bench-model", "name": "bench-model", "status": "ok", "load_s": 2.0,
        "quality": {"judge": "bench-judge"},
        "job_wall": {"host": "bench", "start": t0, "end": t0 + 2.5 + t + 5},
        "warmup": {"rounds": 0, "requests": 0, "errors": 0}, "throughput": {"concurrency": 1},
        "config": {"prompts": {"name": "bench-notes", "path": str(root / "prompts.yaml")}}}))
    return job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests-per-prompt", type=int, default=4, help="rounds (10 prompts each)")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="slmbench-traces-") as tmp:
        root = Path(tmp)
        job = synthetic_job(root, rounds=args.requests_per_prompt)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        client = MlflowClient(uri)
        exp = client.create_experiment("bench", artifact_location=(root / "mlartifacts").as_uri())

        t = time.perf_counter()
        from runner.track import traces as tr
        import_s = time.perf_counter() - t

        def timed(fn, *a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(*a, **k)
            cpu.append(time.process_time() - c0)
            return out, time.perf_counter() - t0

        cpu: list[float] = []

        runs = [client.create_run(exp).info.run_id for _ in range(4)]
        built = tr.build_traces(job, exp, runs[0])
        n_traces, n_assess = len(built), sum(len(x.info.assessments) for x in built)
        figures = []
        for run_id in runs[:3]:
            ids, secs = timed(tr.log_traces, client, exp, run_id, job)
            assert len(ids) == n_traces
            figures.append(secs)
        trace_cpu = list(cpu)
        _, build_s = timed(tr.build_traces, job, exp, runs[3])

        # One assessment at a time, for comparison (same traces, assessments logged separately).
        slow = tr.build_traces(job, exp, runs[3])
        feedbacks = [a for x in slow for a in x.info.assessments]
        for x in slow:
            x.info.assessments = []
        t0 = time.perf_counter()
        tr.write_traces(client, exp, slow)
        tracing = tr._tracing_client(client)  # what mlflow.log_feedback calls, per assessment
        for a in feedbacks:
            tracing.log_assessment(a.trace_id, a)
        one_by_one = time.perf_counter() - t0

        check = client.search_traces(locations=[exp], run_id=runs[0], include_spans=False, max_results=500)
        assert len(check) == n_traces and sum(len(x.info.assessments) for x in check) == n_assess

        ds, ds_first = timed(tr.log_prompt_dataset, client, exp, str(root / "prompts.yaml"))
        ds2, ds_again = timed(tr.log_prompt_dataset, client, exp, str(root / "prompts.yaml"))
        assert ds == ds2

    cold, *warm = figures
    print(f"job: {n_traces} requests, {n_assess} assessments ({n_assess / n_traces:.0f} per trace), SQLite store; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"import runner.track.traces (mlflow already imported): {import_s:.3f} s")
    print(f"traces+assessments, first call of the process: {cold:.3f} s wall ({trace_cpu[0]:.3f} s CPU)")
    print(f"traces+assessments, next calls: {', '.join(f'{w:.3f}' for w in warm)} s wall "
          f"({', '.join(f'{c:.3f}' for c in trace_cpu[1:])} s CPU; {min(warm) / n_traces * 1000:.1f} ms per trace)")
    print(f"  of which building the entities from the files: {build_s:.3f} s")
    print(f"one assessment per call (log_assessment), for comparison: {one_by_one:.3f} s")
    print(f"prompt set as an evaluation dataset: {ds_first:.3f} s (created), {ds_again:.3f} s (found again)")


if __name__ == "__main__":
    main()
