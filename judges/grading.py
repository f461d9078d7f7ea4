"""The grading phase of a job: after the measured requests (so it never perturbs their
timing), run the cheap scorers and the judge (rubric or checklist) over every answer, append
each grading to `judgements.jsonl` as it happens, and the scorers' results to `scores.jsonl`. The
measured records are never rewritten: grades are joined to them when read (runner/store/folder.py).

Every grader whose numbers may stand for quality is qualified first (judges/qualify.py;
cached, so a sweep pays once): the judge on its loaded backend, and the `notes` scorer when the
prompts carry `reference_items`. The figures go to `qualification.json` in the job directory.
"""

from __future__ import annotations

from pathlib import Path

from judges import modes, qualify, scorers
from judges.rubric import INJECTION
from runner import backends, interrupts
from runner.backends import BackendError
from runner.config.prompts import PromptSet
from runner.store import jobdir


def family_warning(job) -> str | None:
    """A judge from the candidate's own family tends to favour its style: say so."""
    judge = job.judge
    if (not judge.model or not judge.capabilities.in_process
            or job.label != job.model.alias):
        return None  # an endpoint's model under the default group's alias: its family is unknown
    from runner.models import registry

    spec = registry.get(judge.model)
    if spec.family and spec.family == job.model.family:
        return f"judge {spec.alias} is from the candidate's model family ({spec.family}): scores may favour it"
    return None


# Repeat k's seeds start k x this apart: a grade's own retries take seed + attempt (rubric.ask).
REPEAT_SEED_STRIDE = 1000


def repeat_params(judge, repeat: int) -> tuple[float, int | None]:
    """(temperature, seed) of grade number `repeat` of an answer. Repeat 0, the grade that counts, is
    the judge as qualified (judge.temperature, judge.seed); repeat k >= 1 samples at
    judge.repeat_temperature with seed judge.seed + k x REPEAT_SEED_STRIDE. Identical greedy calls
    would agree by construction: repeat consistency measures how far a grade moves when sampled."""
    if repeat == 0:
        return judge.temperature, judge.seed
    seed = None if judge.seed is None else judge.seed + repeat * REPEAT_SEED_STRIDE
    return judge.repeat_temperature, seed


def make_judge(judge, backend, repeat: int = 0):
    temperature, seed = repeat_params(judge, repeat)
    return modes.get(judge.mode).build(judge, backend, temperature, seed)


def judge_identity(judge, model_id: str) -> dict:
    """What makes two qualifications of a judge interchangeable (the cache key): its settings
    and the code that builds its requests (a changed prompt is a different grader)."""
    mode = modes.get(judge.mode)
    return {"code": qualify.code_digest(*mode.modules), "judge": judge.model, "mode": judge.mode, "backend": judge.backend,
            "base_url": judge.base_url, "model_id": model_id, "temperature": judge.temperature,
            "seed": judge.seed, "max_tokens": judge.max_tokens, "retries": judge.retries,
            "structured": judge.structured,
            **{k: getattr(judge, k) for k in mode.settings}}


def qualify_judge(judge, backend, refresh: bool = False, progress=None) -> dict:
    """Qualify a loaded judge on the calibration set (cached by identity and set digest)."""
    q = judge.qualification
    cal = qualify.load_calibration(q.calibration)
    grader = qualify.judge_grader(make_judge(judge, backend), judge.grader,
                                  judge_identity(judge, getattr(backend, "model_id", None) or judge.model))
    return qualify.qualify(grader, cal, q.min_spearman, q.max_injection_lift, refresh, progress, q.max_error_rate,
                           qualify.gates_of(q))


def scorer_options(judge) -> dict[str, dict]:
    """Each scorer's settings from the judge config (today: how `notes` matches items)."""
    match = {"match": str(judge.notes.match)}
    return {"notes": match, "reference_coverage": match}


def qualify_scorer(name: str, judge) -> dict:
    qcfg = judge.qualification
    return qualify.qualify(qualify.scorer_grader(name, scorer_options(judge).get(name)),
                           qualify.load_calibration(qcfg.calibration), qcfg.min_spearman, qcfg.max_injection_lift,
                           max_error_rate=qcfg.max_error_rate, gates=qualify.gates_of(qcfg))


def judge_backend(judge):
    """A backend serving the judge model, from the `conf/backend` option `judge.backend` names: an
    in-process one runs the pack model `judge.model`; any other serves `judge.model_id` (or
    `judge.model`) at `judge.base_url`."""
    from dataclasses import replace

    from runner.config.plan import BackendPlan
    from runner.config.schema import ModelConfig, SourceConfig
    from runner.models import registry

    option = backends.option(judge.backend)
    klass = backends.option_class(judge.backend)
    if klass.capabilities.in_process:
        spec = registry.get(judge.model)
        model = replace(spec, id=judge.model_id or spec.id)
    else:
        model_id = judge.model_id or judge.model
        model = ModelConfig(alias=model_id, id=model_id, source=SourceConfig(kind="remote"))
    backend = BackendPlan(name=judge.backend, target=option["target"], base_url=judge.base_url,
                          api_key_env=judge.api_key_env, timeout_s=judge.timeout_s, options=option.get("options") or {})
    return klass.from_config(backend, model)


def grade_job(judge, prompt_set: PromptSet, job_dir: Path) -> dict:
    """Score and grade the job's ok records (`judge`: the plan's JudgePlan, runner/config/plan.py);
    returns facts for the summary."""
    by_id = {p.id: p for p in prompt_set.prompts}
    ok = [r for r in jobdir.measured(job_dir) if r["status"] == "ok" and r["prompt_id"] in by_id]
    for r in ok:  # cheap, deterministic: recomputed every time
        r["scores"] = scorers.score_all(list(judge.scorers), by_id[r["prompt_id"]], r["output"] or "",
                                        scorer_options(judge))
    jobdir.write_scores(job_dir, ok)
    facts: dict = {"judge": judge.grader, "judge_error": None}
    qualifications: dict[str, dict] = {}
    # A grader is qualified for the answers it grades: a job with none (it failed before its first
    # answer) has no grader to qualify or run, and spends no time on them.
    if ok:
        named = scorers.resolve(list(judge.scorers))
        interrupts.enter("qualification")
        if "notes" in named and any(p.reference_items for p in prompt_set.prompts):
            qualifications["notes"] = _brief(qualify_scorer("notes", judge))
        if "reference_coverage" in named and any(p.reference and not p.reference_items for p in prompt_set.prompts):
            qualifications["reference_coverage"] = _brief(qualify_scorer("reference_coverage", judge))
        interrupts.enter("grading")
        if judge.model:
            facts.update(_run_judge(judge, job_dir, ok, by_id, qualifications))
    jobdir.write_qualifications(job_dir, qualifications)
    return facts


def _brief(q: dict) -> dict:
    """A qualification without its per-answer grades (those stay in the cache file)."""
    return {k: v for k, v in q.items() if k != "grades"}


EMPTY_ANSWER = "empty answer"  # the judge's record for an answer with no text: not graded


def _run_judge(judge, job_dir: Path, ok: list[dict], by_id: dict, qualifications: dict) -> dict:
    judge_name = judge.grader
    known = jobdir.read_qualifications(job_dir)
    done = {(j["round"], j["prompt_id"], j["repeat"], j["probe"]) for j in jobdir.judgements(job_dir)
            if j.get("judge_model") == judge_name and not j.get("error")}
    todo = []
    for r in ok:
        for k in range(judge.repeats):
            todo.append((r, k, None))
    for r in ok[: judge.injection_probe]:
        todo.append((r, 0, "injection"))
    todo = [t for t in todo if (t[0]["round"], t[0]["prompt_id"], t[1], t[2]) not in done]
    # One prompt's grades in a row: a backend that keeps its last request's state (backend=genai)
    # then reads each prompt's shared part (system prompt, transcript, reference) once.
    todo.sort(key=lambda t: t[0]["prompt_id"])
    if not todo and judge_name in known:
        return {}
    try:
        backend = judge_backend(judge)
        backend.load()
    except BackendError as exc:
        return _record_failures(job_dir, todo, judge_name, f"judge unavailable: {exc}")
    # A judge failing mid-way fails its grades (recorded as errors), so it is not qualified.
    interrupts.enter("qualification")
    qualifications[judge_name] = _brief(qualify_judge(judge, backend))
    interrupts.enter("grading")
    judges = {k: make_judge(judge, backend, k) for k in range(judge.repeats)}
    writer = jobdir.judgement_writer(job_dir)
    # Deterministic candidates repeat their answers across rounds: grade each distinct answer
    # once per (repeat, probe) and reuse the grade for its twins.
    memo: dict[tuple, object] = {}
    try:
        for r, repeat, probe in todo:
            if not (r["output"] or "").strip():  # nothing to grade: never a score for an empty answer
                writer.append({"prompt_id": r["prompt_id"], "round": r["round"], "model": r["model"],
                               "judge_model": judge_name, "repeat": repeat, "probe": probe, "scores": {},
                               "rationales": {}, "error": EMPTY_ANSWER, "attempts": 0})
                continue
            answer = r["output"] + (INJECTION if probe == "injection" else "")
            key = (r["prompt_id"], answer, repeat, probe)
            if key not in memo:
                memo[key] = judges[repeat].grade(by_id[r["prompt_id"]], answer)
            g = memo[key]
            writer.append({"prompt_id": r["prompt_id"], "round": r["round"], "model": r["model"],
                           "judge_model": judge_name, "repeat": repeat, "probe": probe, "scores": g.scores,
                           "rationales": g.rationales, "error": g.error, "attempts": g.attempts})
    finally:
        writer.close()
        backend.unload()
    return {}


def _record_failures(job_dir: Path, todo, judge_name: str, error: str) -> dict:
    writer = jobdir.judgement_writer(job_dir)
    try:
        for r, repeat, probe in todo:
            writer.append({"prompt_id": r["prompt_id"], "round": r["round"], "model": r["model"],
                           "judge_model": judge_name, "repeat": repeat, "probe": probe, "scores": {},
                           "rationales": {}, "error": error, "attempts": 0})
    finally:
        writer.close()
    return {"judge_error": error}
