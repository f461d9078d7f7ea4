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
from runner import backends
from runner.backends import BackendError
from runner.config.labels import label_of
from runner.config.prompts import PromptSet
from runner.store import jobdir


def grader_id(judge_cfg) -> str | None:
    """How a judge is named wherever its grades or qualification appear: the model it asks for
    (`judge.model_id` when set, as an endpoint's judges are told apart; else the alias
    `judge.model`) in rubric mode (the default), `<name>/<mode>` otherwise."""
    if not judge_cfg.model:
        return None
    name = judge_cfg.model_id or judge_cfg.model
    return name if modes.get(judge_cfg.mode).default else f"{name}/{judge_cfg.mode}"


def family_warning(cfg) -> str | None:
    """A judge from the candidate's own family tends to favour its style: say so."""
    if (not cfg.judge.model or not backends.option_class(cfg.judge.backend).capabilities.in_process
            or label_of(cfg) != cfg.model.alias):
        return None  # an endpoint's model under the default group's alias: its family is unknown
    from runner.models import registry

    judge = registry.get(cfg.judge.model)
    if judge.family and judge.family == cfg.model.family:
        return f"judge {judge.alias} is from the candidate's model family ({judge.family}): scores may favour it"
    return None


# Repeat k's seeds start k x this apart: a grade's own retries take seed + attempt (rubric.ask).
REPEAT_SEED_STRIDE = 1000


def repeat_params(judge_cfg, repeat: int) -> tuple[float, int | None]:
    """(temperature, seed) of grade number `repeat` of an answer. Repeat 0, the grade that counts, is
    the judge as qualified (judge.temperature, judge.seed); repeat k >= 1 samples at
    judge.repeat_temperature with seed judge.seed + k x REPEAT_SEED_STRIDE. Identical greedy calls
    would agree by construction: repeat consistency measures how far a grade moves when sampled."""
    if repeat == 0:
        return judge_cfg.temperature, judge_cfg.seed
    seed = None if judge_cfg.seed is None else judge_cfg.seed + repeat * REPEAT_SEED_STRIDE
    return judge_cfg.repeat_temperature, seed


def make_judge(judge_cfg, backend, repeat: int = 0):
    temperature, seed = repeat_params(judge_cfg, repeat)
    return modes.get(judge_cfg.mode).build(judge_cfg, backend, temperature, seed)


def judge_identity(judge_cfg, model_id: str) -> dict:
    """What makes two qualifications of a judge interchangeable (the cache key): its settings
    and the code that builds its requests (a changed prompt is a different grader)."""
    mode = modes.get(judge_cfg.mode)
    return {"code": qualify.code_digest(*mode.modules), "judge": judge_cfg.model, "mode": judge_cfg.mode, "backend": judge_cfg.backend,
            "base_url": judge_cfg.base_url, "model_id": model_id, "temperature": judge_cfg.temperature,
            "seed": judge_cfg.seed, "max_tokens": judge_cfg.max_tokens, "retries": judge_cfg.retries,
            "structured": judge_cfg.structured,
            **{k: getattr(judge_cfg, k) for k in mode.settings}}


def qualify_judge(judge_cfg, backend, refresh: bool = False, progress=None) -> dict:
    """Qualify a loaded judge on the calibration set (cached by identity and set digest)."""
    q = judge_cfg.qualification
    cal = qualify.load_calibration(q.calibration)
    grader = qualify.judge_grader(make_judge(judge_cfg, backend), grader_id(judge_cfg),
                                  judge_identity(judge_cfg, getattr(backend, "model_id", None) or judge_cfg.model))
    return qualify.qualify(grader, cal, q.min_spearman, q.max_injection_lift, refresh, progress, q.max_error_rate,
                           qualify.gates_of(q))


def scorer_options(judge_cfg) -> dict[str, dict]:
    """Each scorer's settings from the judge config (today: how `notes` matches items)."""
    match = {"match": str(judge_cfg.notes.match)}
    return {"notes": match, "reference_coverage": match}


def qualify_scorer(name: str, judge_cfg) -> dict:
    qcfg = judge_cfg.qualification
    return qualify.qualify(qualify.scorer_grader(name, scorer_options(judge_cfg).get(name)),
                           qualify.load_calibration(qcfg.calibration), qcfg.min_spearman, qcfg.max_injection_lift,
                           max_error_rate=qcfg.max_error_rate, gates=qualify.gates_of(qcfg))


def judge_backend(judge_cfg):
    """A backend serving the judge model, from the `conf/backend` option `judge.backend` names: an
    in-process one runs the pack model `judge.model`; any other serves `judge.model_id` (or
    `judge.model`) at `judge.base_url`."""
    from dataclasses import replace

    from omegaconf import OmegaConf

    from runner.config.schema import ModelConfig, SourceConfig
    from runner.models import registry

    option = backends.option(judge_cfg.backend)
    klass = backends.option_class(judge_cfg.backend)
    if klass.capabilities.in_process:
        spec = registry.get(judge_cfg.model)
        model = replace(spec, id=judge_cfg.model_id or spec.id)
    else:
        model_id = judge_cfg.model_id or judge_cfg.model
        model = ModelConfig(alias=model_id, id=model_id, source=SourceConfig(kind="remote"))
    backend_cfg = OmegaConf.create({"name": judge_cfg.backend, "target": option["target"],
                                    "base_url": judge_cfg.base_url, "api_key_env": judge_cfg.api_key_env,
                                    "timeout_s": judge_cfg.timeout_s, "options": option.get("options") or {}})
    return klass.from_config(backend_cfg, model)


def grade_job(cfg, job_dir: Path, prompt_set: PromptSet) -> dict:
    """Score and grade the job's ok records; returns facts for the summary."""
    by_id = {p.id: p for p in prompt_set.prompts}
    ok = [r for r in jobdir.measured(job_dir) if r["status"] == "ok" and r["prompt_id"] in by_id]
    for r in ok:  # cheap, deterministic: recomputed every time
        r["scores"] = scorers.score_all(list(cfg.judge.scorers), by_id[r["prompt_id"]], r["output"] or "",
                                        scorer_options(cfg.judge))
    jobdir.write_scores(job_dir, ok)
    facts: dict = {"judge": grader_id(cfg.judge), "judge_error": None}
    qualifications: dict[str, dict] = {}
    # A grader is qualified for the answers it grades: a job with none (it failed before its first
    # answer) has no grader to qualify or run, and spends no time on them.
    if ok:
        named = scorers.resolve(list(cfg.judge.scorers))
        if "notes" in named and any(p.reference_items for p in prompt_set.prompts):
            qualifications["notes"] = _brief(qualify_scorer("notes", cfg.judge))
        if "reference_coverage" in named and any(p.reference and not p.reference_items for p in prompt_set.prompts):
            qualifications["reference_coverage"] = _brief(qualify_scorer("reference_coverage", cfg.judge))
        if cfg.judge.model:
            facts.update(_run_judge(cfg, job_dir, ok, by_id, qualifications))
    jobdir.write_qualifications(job_dir, qualifications)
    return facts


def _brief(q: dict) -> dict:
    """A qualification without its per-answer grades (those stay in the cache file)."""
    return {k: v for k, v in q.items() if k != "grades"}


EMPTY_ANSWER = "empty answer"  # the judge's record for an answer with no text: not graded


def _run_judge(cfg, job_dir: Path, ok: list[dict], by_id: dict, qualifications: dict) -> dict:
    judge_name = grader_id(cfg.judge)
    known = jobdir.read_qualifications(job_dir)
    done = {(j["round"], j["prompt_id"], j["repeat"], j["probe"]) for j in jobdir.judgements(job_dir)
            if j.get("judge_model") == judge_name and not j.get("error")}
    todo = []
    for r in ok:
        for k in range(cfg.judge.repeats):
            todo.append((r, k, None))
    for r in ok[: cfg.judge.injection_probe]:
        todo.append((r, 0, "injection"))
    todo = [t for t in todo if (t[0]["round"], t[0]["prompt_id"], t[1], t[2]) not in done]
    if not todo and judge_name in known:
        return {}
    try:
        backend = judge_backend(cfg.judge)
        backend.load()
    except BackendError as exc:
        return _record_failures(job_dir, todo, judge_name, f"judge unavailable: {exc}")
    # A judge failing mid-way fails its grades (recorded as errors), so it is not qualified.
    qualifications[judge_name] = _brief(qualify_judge(cfg.judge, backend))
    judges = {k: make_judge(cfg.judge, backend, k) for k in range(cfg.judge.repeats)}
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
