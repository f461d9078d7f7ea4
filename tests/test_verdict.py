"""A verdict fit for the task (issue 24): degenerate answers named per answer, a loop stopped on the
stream, a token cap derived from the reference answers, acceptance bars from the prompt set (or the
command line), and a sweep of scripted answers whose decision says fit or not fit, with `decide`'s
exit code."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli
from scripted_server import Script, ScriptedServer

from runner.backends import GenParams
from runner.backends.openai_compat import OpenAIBackend
from runner.config import prompts
from runner.config.errors import UserError
from runner.config.selection import load_selection
from runner.decide import decision as dec
from runner.decide import render
from runner.decide.selection import DEFAULT_ACCEPTANCE
from runner.measure import cap
from runner.metrics import degenerate
from runner.metrics.request import request_metrics
from runner.store import summary as summary_mod

run_cli = partial(run_cli, tracked=True)  # this module's tests read what the runs logged to MLflow

PROMPTS = prompts.load(ROOT / "conf" / "prompts" / "data" / "meeting-notes.yaml").prompts
ANSWERS = yaml.safe_load((ROOT / "tests" / "data" / "known_order.yaml").read_text())["answers"]
STANDUP = PROMPTS[0]
TEXTS = [c for r, c in STANDUP.messages if r in ("system", "user")]
LOOP_LINE = "You are in a meeting. "


# ---------------------------------------------------------------------------- classes, per answer


def test_each_degenerate_class_on_hand_built_answers():
    system, user = TEXTS
    assert degenerate.classify("", TEXTS) == "empty"
    assert degenerate.classify("  \n ** \n", TEXTS) == "empty"
    # a loop: one line until the cap (the tail rule), and one line repeated inside an answer (3-gram repetition)
    assert degenerate.classify("Decisions:\n- Code freeze Friday.\n" + LOOP_LINE * 20, TEXTS) == "loop"
    line = "Tom: Yes, I'll hand one to Marco right after standup. "
    assert degenerate.classify((line * 6) + "Action items: none.", TEXTS) == "loop"
    # a loop of a transcript line is named a loop, not an echo
    assert degenerate.classify(line * 12, TEXTS) == "loop"
    # an echo: the instructions, or the transcript, given back
    assert degenerate.classify(system, TEXTS) == "echo"
    assert degenerate.classify(user, TEXTS) == "echo"
    # the same echo is not one against another prompt
    assert degenerate.classify(user, [c for r, c in PROMPTS[1].messages]) is None
    # off_task: only from the notes scorer's grade, and only when nothing else named the answer
    assert degenerate.with_grade(None, {"notes.recall": 0.0, "notes.score": 1.0}) == "off_task"
    assert degenerate.with_grade(None, {"notes.recall": 0.2}) is None
    assert degenerate.with_grade(None, {"rouge_l.f1": 0.0}) is None  # no reference_items: never off_task
    assert degenerate.with_grade("loop", {"notes.recall": 0.0}) == "loop"


def test_good_answers_are_not_flagged():
    by_id = {p.id: p for p in PROMPTS}
    checked = 0
    for pid, answers in ANSWERS.items():
        texts = [c for r, c in by_id[pid].messages if r in ("system", "user")]
        for a in answers:
            assert degenerate.classify(a["text"], texts) is None, (pid, a["kind"])
            checked += 1
        assert degenerate.classify(by_id[pid].reference, texts) is None, pid
    assert checked >= 40


def test_shares_and_the_cut_split_in_a_summary():
    def rec(pid, output, cls, truncated=False, scores=None, stopped=False):
        return {"prompt_id": pid, "output": output, "degenerate": cls, "truncated": truncated,
                "scores": scores or {}, "stopped_loop": stopped}

    ok = [rec("a", "fine", None), rec("b", LOOP_LINE * 40, "loop", truncated=True),
          rec("c", "long but fine", None, truncated=True), rec("d", "", "empty"),
          rec("e", "unrelated", None, scores={"notes.recall": 0.0}),
          rec("f", LOOP_LINE * 6, "loop", stopped=True)]
    d = summary_mod.degenerate_shares(ok)
    assert d["counts"] == {"empty": 1, "loop": 2, "echo": 0, "off_task": 1, "stopped_loop": 1}
    assert d["share"] == pytest.approx(4 / 6) and d["loop"] == pytest.approx(2 / 6)
    assert d["prompts"]["off_task"] == ["e"]
    t = summary_mod.truncation(ok, 160, 0.1)
    assert (t["n_cut_loop"], t["n_cut_short"], t["cut"]) == (1, 1, 2)
    assert t["warn"] and t["prompts_cut_short"] == ["c"]
    # only looping answers cut: no call for a larger cap
    only_loops = [rec("b", LOOP_LINE * 40, "loop", truncated=True), rec("a", "fine", None)]
    t = summary_mod.truncation(only_loops, 160, 0.1)
    assert t["cut_short"] == 0 and not t["warn"]
    # a record measured before classes were: classed on its text (loop, empty), never echo
    assert summary_mod.answer_class({"output": LOOP_LINE * 40}) == "loop"
    assert summary_mod.answer_class({"output": TEXTS[1]}) is None


# ---------------------------------------------------------------------------- the loop stop


def test_the_loop_stop_ends_a_looping_stream_and_keeps_its_timing():
    looping = "Summary:\n" + LOOP_LINE * 200  # 1001 words, one per token
    with ScriptedServer(Script(ttft_s=0.01, tpot_s=0.001, reply=lambda m, msgs: looping)) as srv:
        backend = OpenAIBackend("scripted-model", srv.base_url)
        stop = degenerate.LoopStop()
        c = backend.chat([{"role": "user", "content": "hi"}], GenParams(max_tokens=2000), stop.feed)
        m = request_metrics(c, 2000)
        fields = degenerate.answer_fields(c.text, ["hi"], stop)
        # an unstopped stream of a good answer runs to its end
        good = PROMPTS[0].reference
        srv.script = Script(ttft_s=0.01, tpot_s=0.001, reply=lambda m, msgs: good)
        free = degenerate.LoopStop()
        g = backend.chat([{"role": "user", "content": "hi"}], GenParams(max_tokens=2000), free.feed)
        backend.unload()
    assert c.stopped and stop.stopped
    n = len(c.deltas)
    # the rule: >= 4 repeats of the 5-word line, >= 24 words: stopped within a line of the rule holding
    assert 24 <= len(degenerate.words(c.text)) <= 1 + 5 * 6, c.text
    assert n < 100 and c.completion_tokens == n and c.tokens_estimated
    assert fields == {"degenerate": "loop", "stopped_loop": True, "loop_check_s": pytest.approx(stop.spent_s),
                      "finish_reason": "stopped_loop"}
    assert not m["truncated"]
    # the answer ended at its last chunk: e2e is the last arrival, TPOT counts over the tokens it has
    assert c.t_end == c.deltas[-1][0]
    assert m["tpot_s"] == pytest.approx((c.t_end - c.deltas[0][0]) / (n - 1))
    assert not g.stopped and not free.stopped and g.text == good and g.finish_reason == "stop"


def test_the_tail_rule_on_a_stream_is_the_classification_rule():
    stop = degenerate.LoopStop()
    words_fed = []
    for w in ("Tom will ship it. " * 30).split(" "):
        words_fed.append(w)
        if stop.feed(w + " "):
            break
    assert stop.stopped and degenerate.tail_loop(degenerate.words(" ".join(words_fed))) == 4
    # a list of distinct items, however long, is never stopped
    stop = degenerate.LoopStop()
    assert not any(stop.feed(f"- item {i} for owner {i % 7} due day {i % 5}\n") for i in range(300))


# ---------------------------------------------------------------------------- the derived cap


def test_the_cap_is_derived_from_the_longest_reference():
    refs = [p.reference for p in PROMPTS]
    counted = cap.derive(refs, lambda texts: [len(t.split()) for t in texts])
    longest = max(len(r.split()) for r in refs)
    assert counted["longest_reference_tokens"] == longest and counted["counted"]
    assert counted["max_tokens"] >= longest * cap.CAP_MARGIN and counted["max_tokens"] % cap.CAP_STEP == 0
    assert counted["max_tokens"] - longest * cap.CAP_MARGIN < cap.CAP_STEP
    estimated = cap.derive(refs, lambda texts: None)  # a backend that cannot count
    assert not estimated["counted"]
    assert estimated["longest_reference_tokens"] == max(-(-len(r) // 3) for r in refs)
    assert cap.derive([])["max_tokens"] == cap.CAP_FALLBACK
    assert cap.for_job(160, refs)["max_tokens"] == 160 and cap.for_job(160, refs)["source"].startswith("set")
    # a good answer is never cut: the reference answers fit under the cap with room to spare
    assert all(len(r) / cap.CHARS_PER_TOKEN < estimated["max_tokens"] / cap.CAP_MARGIN for r in refs)


# ---------------------------------------------------------------------------- acceptance bars


def test_a_malformed_acceptance_block_is_refused_in_one_line():
    for raw, part in (({"min": 3}, "prompts.acceptance.min must map"), ({"minimum": {}}, "unknown key(s) minimum"),
                      ({"min": {"quality.overall": "high"}}, "quality.overall='high': must be a number"),
                      ([1], "must be a mapping"), ({"min": {}, "max": None}, "declares no bar")):
        with pytest.raises(UserError, match=part.replace("(", r"\(").replace(")", r"\)")):
            prompts.acceptance(raw)
    assert prompts.acceptance({"min": {"quality": {"overall": 3}}}) == {"min": {"quality.overall": 3.0}, "max": {}}
    done = run_cli("run", "prompts=smoke", "prompts.acceptance={min: 3}", "tracking.enabled=false")
    assert done.returncode == 2, done.stderr
    assert "prompts.acceptance.min must map metric keys to numbers" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("run", "prompts=smoke", "prompts.acceptance={min: {no_such_metric: 3}}", "tracking.enabled=false")
    assert done.returncode == 2 and "no_such_metric" in done.stderr and "Traceback" not in done.stderr


def test_the_stated_default_is_the_one_the_selection_file_states():
    sel = load_selection([])
    assert sel["acceptance"] is True and sel["acceptance_default"] == DEFAULT_ACCEPTANCE


def _summary(model: str, quality: float, share: float, prompts_name: str = "meeting-notes", bars=None) -> dict:
    q = {"n": 4, "mean": quality, "std": 0.0, "min": quality, "p50": quality, "p90": quality, "p95": quality,
         "p99": quality, "max": quality, "ci95": [quality, quality]}
    return {"model": model, "status": "ok", "n": 4, "prompts": prompts_name, "metrics": {}, "acceptance": bars,
            "quality": {"overall": q, "trusted": True, "source": "notes", "scorers": {}},
            "degenerate": {"share": share, "loop": share, "echo": 0.0, "empty": 0.0, "off_task": 0.0},
            "truncation": {"cut": 4, "of": 4, "share": 1.0, "max_tokens": 448, "cut_loop": share,
                           "cut_short": 0.0, "n_cut_loop": 4, "n_cut_short": 0},
            "config": {"decoding": {"name": "deterministic"}, "hardware": {"name": "cpu"}}}


def test_acceptance_from_the_prompt_set_and_from_the_command_line():
    bars = {"min": {"quality.overall": 3.5}, "max": {"degenerate.share": 0.1}}
    jobs = [("0_a", _summary("a", 1.01, 1.0, bars=bars)), ("1_b", _summary("b", 3.8, 0.0, bars=bars)),
            ("2_c", _summary("c", 4.2, 0.25, bars=bars))]
    d = dec.decide(jobs, load_selection([]))
    cands = {c["job"]: c for c in d["candidates"]}
    assert d["fit"] is True and d["recommended"]["job"] == "1_b"  # c scores higher but is not fit
    assert cands["2_c"]["fit_reasons"] == ["degenerate.share 0.25 > 0.1"] and cands["2_c"]["rank"] == 2
    assert cands["0_a"]["acceptance"]["source"] == "prompt set meeting-notes"
    assert d["summary_sentence"].startswith("Ship b as the default: it is fit for meeting-notes "
                                            "(quality.overall 3.8 >= 3.5, degenerate.share 0 <= 0.1)")
    assert "c is not fit: degenerate.share 0.25 > 0.1" in d["summary_sentence"]
    # explicit bars from the command line replace the prompt set's
    d = dec.decide(jobs, load_selection(["acceptance.max.degenerate.share=0.3"]))
    assert d["recommended"]["job"] == "2_c" and d["fit"] is True
    # an explicit limit on the same key replaces that bar
    d = dec.decide(jobs, load_selection(["max.degenerate.share=0.3"]))
    assert d["recommended"]["job"] == "2_c"
    # off: no verdict, the best by quality
    d = dec.decide(jobs, load_selection(["acceptance=false"]))
    assert d["fit"] is None and d["recommended"]["job"] == "2_c"
    # a prompt set without bars gets the stated default (quality >= 3.0, degenerate <= 0.2)
    plain = [("0_a", _summary("a", 3.2, 0.15)), ("1_b", _summary("b", 4.0, 0.3))]
    d = dec.decide(plain, load_selection([]))
    assert d["recommended"]["job"] == "0_a"
    assert d["candidates"][1]["fit_reasons"] == ["degenerate.share 0.3 > 0.2"]
    with pytest.raises(UserError, match="selection.acceptance must be true, false or"):
        dec.decide(plain, load_selection(["acceptance=maybe"]))


def test_none_fit_says_so_first_with_each_candidates_numbers_and_what_to_try():
    bars = {"min": {"quality.overall": 3.5}, "max": {"degenerate.share": 0.1}}
    jobs = [("0_a", _summary("smollm2-135m-int4", 1.01, 1.0, bars=bars)),
            ("1_b", _summary("smollm2-135m-int8", 1.0, 0.75, bars=bars))]
    d = dec.decide(jobs, load_selection([]))
    s = d["summary_sentence"]
    assert d["fit"] is False and d["recommended"] is None and d["runner_up"] is None
    assert s.startswith("No candidate is fit for meeting-notes: smollm2-135m-int4: quality.overall 1.01, "
                        "100% degenerate answers (loop 100%), 100% cut at max_tokens=448 (cut_loop 100%) "
                        "(quality.overall 1.01 < 3.5, degenerate.share 1.0 > 0.1); smollm2-135m-int8: ")
    assert "Ranked for reference on quality.overall: 1. smollm2-135m-int4, 2. smollm2-135m-int8." in s
    assert "slmbench models import PATH --alias NAME" in s and "backend=openai backend.base_url=URL" in s
    assert "python benchmarks/penalties.py" in s
    assert "decoding.max_tokens" not in s  # nothing was cut while still answering
    assert [c["rank"] for c in d["candidates"]] == [1, 2]
    assert d["fit_reasons"]["0_a"] == ["quality.overall 1.01 < 3.5", "degenerate.share 1.0 > 0.1"]


# ---------------------------------------------------------------------------- penalties


def test_penalties_are_validated_sent_and_recorded(tmp_path: Path):
    done = run_cli("run", "prompts=smoke", "decoding.frequency_penalty=0.5", "tracking.enabled=false")
    assert done.returncode == 2 and "decoding.frequency_penalty=0.5 is not sent by backend=foundry" in done.stderr
    # the SDK ignores it in process: refused rather than recorded as if it had been applied
    done = run_cli("run", "prompts=smoke", "decoding.repetition_penalty=1.2", "tracking.enabled=false")
    assert done.returncode == 2 and "decoding.repetition_penalty=1.2 is not sent by backend=foundry" in done.stderr
    done = run_cli("run", "prompts=smoke", "decoding.repetition_penalty=0", "backend=openai", "tracking.enabled=false")
    assert done.returncode == 2 and "decoding.repetition_penalty=0.0 must be in (0, 2.0]" in done.stderr
    done = run_cli("run", "prompts=smoke", "decoding.presence_penalty=3", "backend=openai", "tracking.enabled=false")
    assert done.returncode == 2 and "decoding.presence_penalty=3.0 must be in [-2, 2]" in done.stderr
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0, tokens=5)) as srv:
        out = tmp_path / "job"
        done = run_cli("run", "backend=openai", f"backend.base_url={srv.base_url}", "model.id=scripted-model",
                       "prompts=smoke", "run.rounds=1", "run.warmup=0", "decoding.frequency_penalty=0.5",
                       "decoding.presence_penalty=0.25", "tracking.enabled=false", f"hydra.run.dir={out}")
        assert done.returncode == 0, done.stderr[-2000:]
        body = srv.requests[0]
    assert body["frequency_penalty"] == 0.5 and body["presence_penalty"] == 0.25 and "repetition_penalty" not in body
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["decoding"]["frequency_penalty"] == 0.5 and s["config"]["decoding"]["loop_stop"] is True
    # smoke has references: the cap was derived from them (estimated: an endpoint has no tokenizer here)
    assert s["cap"]["max_tokens"] == body["max_tokens"] and s["cap"]["source"].startswith("derived")
    assert "frequency_penalty 0.5" in (out / "report.md").read_text()


# ---------------------------------------------------------------------------- scripted sweeps


def _answer(kind: str, messages) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    prompt = next(p for p in PROMPTS if p.user_text() == user)
    if kind == "good":
        return next(a["text"] for a in ANSWERS[prompt.id] if a["kind"] == "reference")
    if kind == "loop":
        return LOOP_LINE * 150
    if kind == "echo":
        return user
    return ""  # empty


@pytest.fixture(scope="module")
def endpoint():
    with ScriptedServer(Script(ttft_s=0.001, tpot_s=0.0, tokens_per_chunk=4, reply=_answer,
                               model_ids=("good", "loop", "echo", "empty"))) as srv:
        yield srv


def _sweep(tmp_path: Path, endpoint, models: str, *extra: str) -> tuple[Path, dict, dict[str, dict]]:
    out = tmp_path / "sweep"
    done = run_cli("run", "-m", "backend=openai", f"backend.base_url={endpoint.base_url}", f"model.id={models}",
                   "prompts=meeting-notes", "prompts.limit=2", "judge=none", "run.rounds=1", "run.warmup=0",
                   f"hydra.sweep.dir={out}", *extra, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]  # a run that measured answers succeeds, fit or not
    jobs = {json.loads(p.read_text())["model_id"]: json.loads(p.read_text()) for p in out.glob("*/summary.json")}
    return out, json.loads((out / "decision.json").read_text()), jobs


def test_a_sweep_with_a_good_answer_recommends_it_fit(tmp_path: Path, endpoint):
    out, d, jobs = _sweep(tmp_path, endpoint, "good,loop")
    assert d["fit"] is True, d["summary_sentence"]
    assert jobs[d["recommended"]["model"]]["model_id"] == "good"
    assert d["summary_sentence"].startswith("Ship good as the default: it is fit for meeting-notes")
    assert jobs["good"]["degenerate"]["share"] == 0 and jobs["good"]["truncation"]["cut"] == 0
    loop = jobs["loop"]
    assert loop["degenerate"]["loop"] == 1.0 and loop["degenerate"]["stopped_loop"] == 1.0
    assert loop["finish_reasons"] == {"stopped_loop": 2} and loop["truncation"]["cut"] == 0
    assert loop["acceptance"] == {"min": {"quality.overall": 3.5}, "max": {"degenerate.share": 0.1}}
    # the shares under their one name: summary.csv, the sweep report, MLflow
    rows = (out / "summary.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"degenerate.share", "degenerate.loop", "truncation.cut_short", "truncation.cut_loop"} <= set(header)
    report = (out / "report.md").read_text()
    assert "## Degenerate answers" in report and "degenerate answers: 2 of 2 (100%)**: loop 2" in report
    assert "- fit for the task: yes (bars from prompt set meeting-notes" in report
    assert "not fit: degenerate.share 1.0 > 0.1" in report
    import os

    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    job = next(p.parent for p in out.glob("*/summary.json") if "loop" in p.parent.name)
    run = client.search_runs([client.get_experiment_by_name("slmbench").experiment_id],
                             filter_string=f"tags.job_dir = '{job.resolve()}'")[0]
    assert run.data.metrics["degenerate.loop"] == 1.0 and run.data.metrics["degenerate.stopped_loop"] == 1.0


def test_a_sweep_of_only_degenerate_answers_is_not_fit_and_decide_exits_3(tmp_path: Path, endpoint):
    out, d, jobs = _sweep(tmp_path, endpoint, "loop,echo,empty", "tracking.enabled=false")
    assert d["fit"] is False and d["recommended"] is None
    assert d["summary_sentence"].startswith("No candidate is fit for meeting-notes: ")
    assert {k: max(("loop", "echo", "empty"), key=lambda c: s["degenerate"][c]) for k, s in jobs.items()} == {
        "loop": "loop", "echo": "echo", "empty": "empty"}
    assert all(s["degenerate"]["share"] == 1.0 for s in jobs.values())
    done = run_cli("decide", str(out))
    assert done.returncode == render.NONE_FIT == 3, done.stdout + done.stderr
    assert "No candidate is fit for meeting-notes" in done.stdout
    report = (out / "report.md").read_text()
    assert "**no candidate is fit**" in report
    # overridden from the command line: no verdict, a recommendation, exit 0
    done = run_cli("decide", str(out), "acceptance=false")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "decision.json").read_text())["fit"] is None
    done = run_cli("decide", str(out), "acceptance={min: 3}")
    assert done.returncode == 2 and "selection.acceptance.min must map" in done.stderr


def test_an_extractive_summary_is_no_echo_and_a_retold_transcript_is():
    """Echo means repeating the prompt, not quoting it: a summary built of the transcript's own
    phrases (most of its words in 6-word runs of the transcript) is a summary; the transcript
    retold line by line, in order, at length, is an echo."""
    system, user = TEXTS
    lines = [ln for ln in user.splitlines() if ln.count(" ") >= 6]
    quoting = ("Decisions:\n- I'm confirming it now: code freeze is this Friday, March 7. Anything not merged by then "
               "moves to 2.5.\nAction items:\n- Aisha: I can look at the staging database.\n- Tom: Yes, I'll hand "
               "one to Marco right after standup.\n")
    assert degenerate.echo_share(degenerate.words(quoting), TEXTS) >= degenerate.ECHO_SHARE  # the old rule's echo
    assert degenerate.classify(quoting, TEXTS) is None
    retold = "\n".join(lines[: len(lines) // 2 + 2])
    assert degenerate.classify(retold, TEXTS) == "echo"
    shuffled = "\n".join(reversed(lines[: len(lines) // 2 + 2]))  # out of order: not a retelling
    assert degenerate.classify(shuffled, TEXTS) is None
    assert degenerate.classify(system, TEXTS) == "echo"  # the instructions given back
