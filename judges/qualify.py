"""Grader qualification: before a grader's numbers may steer a decision, it grades answers of
known order (the calibration set, conf/calibration/) and must show that it orders them.

The calibration set holds transcripts that are not in the benchmark, each with six answers:
rank 1 reference-quality; 2 one owner swapped; 3 an item dropped and a date wrong; 4 a decision
invented and an owner swapped; 5 items shuffled into one paragraph with half missing; and answer
4 again with an instruction to the grader appended (kind `injected`). A transcript may also
carry (the shipped set does) three correct answers in other words and layouts (`reworded_table`,
`reworded_bold`, `reworded_prose`) and two wrong answers in the reference's words
(`rotated_facts`: every owner and due date moved to another item; `decision_inverted`: a
decision turned into its opposite).

Figures (the known order is rank 1 best; a grader agrees when it grades lower ranks higher):
- `spearman.per_transcript`: Spearman's rho between grade and -rank over one transcript's five
  ranked answers (average ranks for ties; None when the grades are all equal);
- `spearman.pooled`: the same over every transcript's ranked answers together, with `ci95`, the
  2.5th/97.5th percentiles of pooled rho over 2000 resamples of whole transcripts (seeded; a
  resample with constant grades counts as rho 0, no ordering);
- `adjacent_accuracy`: share of neighbouring pairs (rank k, k+1) in a transcript where rank k is
  graded strictly higher (a tie orders nothing and counts as wrong);
- `agreeableness`: share of the two worst answers (ranks 4 and 5) graded >= 4 of 5;
- `injection_lift`: mean over transcripts of grade(injected) - grade(the same answer without the
  instruction); > 0 means an answer can talk its way up;
- `parse_failure_rate`: grades that failed as unparseable / grades attempted;
- `reworded_gap`: grade(reference) - mean grade of the reworded answers, per transcript and
  pooled (the mean over transcripts); > 0 means the grader prefers the reference's words;
- `reworded_above_one_defect`: whether every reworded answer is graded strictly above every
  one-defect answer (owner swapped) of its transcript (per transcript and all);
- `words_not_facts`: whether every rotated/inverted answer is graded strictly below the
  invented-decision answer of its transcript (per transcript and all);
- `seconds_per_grade`: wall time of the whole qualification / grades attempted; `seconds`: that
  wall time (grading only: a judge's model load is not in it).

A grader passes when pooled rho >= `min_spearman`, lift <= `max_injection_lift` and at most
`max_error_rate` of its grades failed (config `judge.qualification`, defaults 0.6, 0.25 and
0.2: a grader that orders the answers it could parse, but fails on the rest, is not qualified),
and, on a set with reworded answers, pooled `reworded_gap` <= `max_reworded_gap` (0.5), every
reworded answer above every one-defect answer and every rotated/inverted answer below the
invented-decision answer (`reworded_above_one_defect`, `words_not_facts`: true). Results are cached under
SLMBENCH_HOME/qualification by grader identity and calibration-set digest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from runner.config import paths
from runner.config.errors import UserError
from runner.config.prompts import DatesAsText, Prompt, parse_prompt
from runner.metrics.stats import BOOTSTRAP_RESAMPLES, percentile_ci

CALIBRATION = paths.CONF_DIR / "calibration" / "meeting-notes.yaml"
KINDS = ("reference", "owner_swapped", "dropped_and_wrong_date", "invented_and_owner_swapped",
         "paragraph_half_missing")
INJECTED = "injected"
# Correct answers in other words and layouts, and wrong answers in the reference's words: what
# real models write, and what a grader that counts words instead of facts gets backwards.
REWORDED = ("reworded_table", "reworded_bold", "reworded_prose")
WORDS_NOT_FACTS = ("rotated_facts", "decision_inverted")
ONE_DEFECT = ("owner_swapped",)
INVENTED = "invented_and_owner_swapped"
VERSION = 2  # bump when a grader's prompt or these figures change: old cache entries no longer apply


@dataclass(frozen=True)
class Answer:
    rank: int
    kind: str
    text: str


@dataclass(frozen=True)
class Transcript:
    prompt: Prompt
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class CalibrationSet:
    name: str
    path: str
    digest: str
    transcripts: tuple[Transcript, ...]


def load_calibration(path: str | Path | None = None) -> CalibrationSet:
    p = Path(path or CALIBRATION).expanduser()
    try:
        text = p.read_text()
        raw = yaml.load(text, Loader=DatesAsText)
    except OSError as exc:
        raise UserError(f"calibration set {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"calibration set {p} is malformed: {str(exc).splitlines()[0]}") from None
    items = raw.get("transcripts") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"calibration set {p}: expected `transcripts:` with at least one transcript")
    transcripts = []
    for i, item in enumerate(items):
        prompt = parse_prompt(item, i, p)
        where = f"calibration set {p}, transcript {prompt.id}"
        if prompt.reference_items is None:
            raise UserError(f"{where}: no reference_items")
        answers = []
        for a in item.get("answers") or []:
            if not isinstance(a, dict) or not isinstance(a.get("text"), str) or not isinstance(a.get("rank"), int):
                raise UserError(f"{where}: each answer needs rank (int), kind and text")
            answers.append(Answer(a["rank"], str(a.get("kind")), a["text"].strip()))
        kinds = [a.kind for a in answers]
        extra = sorted(k for k in kinds if k in REWORDED + WORDS_NOT_FACTS)
        core = [k for k in kinds if k not in REWORDED + WORDS_NOT_FACTS]
        if sorted(k for k in core if k != INJECTED) != sorted(KINDS) or core.count(INJECTED) != 1:
            raise UserError(f"{where}: answers must be one each of {', '.join(KINDS)} and {INJECTED} (got "
                            f"{', '.join(kinds)})")
        if extra and extra != sorted(REWORDED + WORDS_NOT_FACTS):
            raise UserError(f"{where}: the answers in other words come as a set: one each of "
                            f"{', '.join(REWORDED + WORDS_NOT_FACTS)} (got {', '.join(extra)})")
        ranks = {a.kind: a.rank for a in answers}
        if [ranks[k] for k in KINDS] != [1, 2, 3, 4, 5]:
            raise UserError(f"{where}: ranks must be 1-5 in the order {', '.join(KINDS)}")
        if any(t.prompt.id == prompt.id for t in transcripts):
            raise UserError(f"calibration set {p}: transcript id {prompt.id} appears twice")
        transcripts.append(Transcript(prompt, tuple(answers)))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return CalibrationSet(str(raw.get("name") or p.stem), str(p.resolve()), digest, tuple(transcripts))


# ---------------------------------------------------------------------------- graders


@dataclass
class Graded:
    overall: float | None  # 1-5
    error: str | None = None


@dataclass
class Grader:
    """Something that grades one answer 1-5 overall. `identity` fixes what makes two
    qualifications interchangeable (the cache key)."""

    name: str
    identity: dict
    grade: Callable[[Prompt, str], Graded]


WITHHOLDS_ITEMS = {"reference_coverage"}  # graded on the calibration set with its reference_items withheld
# A scorer qualifies through one figure on its own scale, mapped onto 1-5.
SCORER_FIGURES = {"notes": ("score", lambda v: v), "reference_coverage": ("score", lambda v: v),
                  "rouge_l": ("f1", lambda v: 1 + 4 * v),
                  "keyword_coverage": ("coverage", lambda v: 1 + 4 * v)}


def scorer_grader(name: str, options: dict | None = None) -> Grader:
    from judges import scorers

    if name not in SCORER_FIGURES:
        raise UserError(f"scorer {name!r} has no quality figure to qualify (qualifiable scorers: "
                        f"{', '.join(SCORER_FIGURES)})")
    fn = scorers.SCORERS[name]
    field, to_scale = SCORER_FIGURES[name]

    options = dict(options or {})

    withhold = name in WITHHOLDS_ITEMS

    def grade(prompt: Prompt, answer: str) -> Graded:
        if withhold:  # qualified as a user's own set would be graded: from the reference text alone
            prompt = replace(prompt, reference_items=None)
        result = fn(prompt, answer, **options) or {}
        value = result.get(field)
        return Graded(None, f"{name} does not apply") if value is None else Graded(float(to_scale(value)))

    from judges import behaviour, coverage, dates, matching, notes, real_answers, renderings, support

    identity = {"scorer": name, "figure": field, "source": code_digest(scorers, notes, dates, matching, coverage, support),
                **options}
    if name == "notes":  # its behavioural and real-answer figures: the generator, its wordings, the labels
        identity["checks"] = code_digest(behaviour, renderings, real_answers) + hashlib.sha256(
            renderings.WORDINGS.read_bytes() + real_answers.REAL_ANSWERS.read_bytes()).hexdigest()[:16]
    if options.get("match") == "semantic":
        from runner.models import embedder

        identity["embedder"] = embedder.MINILM.weights_sha256[:16]
    label = f"{name} ({options['match']} matching)" if "match" in options else name
    return Grader(label, identity, grade)


def judge_grader(judge, name: str, identity: dict) -> Grader:
    """A rubric or checklist judge: overall = the mean of its aspect scores."""

    def grade(prompt: Prompt, answer: str) -> Graded:
        g = judge.grade(prompt, answer)
        if g.error or not g.scores:
            return Graded(None, g.error or "no scores")
        return Graded(sum(g.scores.values()) / len(g.scores))

    return Grader(name, identity, grade)


def code_digest(*modules) -> str:
    """A short hash of the modules' source: a grader whose code changed is another grader."""
    import inspect

    return hashlib.sha256("".join(inspect.getsource(m) for m in modules).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------- the figures


def _ranks(xs: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = np.argsort(xs, kind="mergesort")
    ranks = np.empty(len(xs), dtype=float)
    sorted_xs = xs[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and sorted_xs[j + 1] == sorted_xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation of the average ranks; None when either side is constant or n < 2."""
    if len(x) < 2:
        return None
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def figures(grades: dict[str, dict[str, Graded]], ranks: dict[str, dict[str, int]], seconds: float,
            seed: int = 0) -> dict:
    """The qualification figures from grades[transcript][kind] and known ranks[transcript][kind]."""
    per: dict[str, float | None] = {}
    pairs_by_t: dict[str, list[tuple[float, float]]] = {}
    adjacent = []
    worst = []
    lifts = []
    attempted = sum(len(g) for g in grades.values())
    unparseable = sum(1 for g in grades.values() for x in g.values() if (x.error or "").startswith("unparseable"))
    errors = sum(1 for g in grades.values() for x in g.values() if x.error)
    for t, by_kind in grades.items():
        ok = {k: g.overall for k, g in by_kind.items() if g.overall is not None}
        pairs = [(-ranks[t][k], ok[k]) for k in KINDS if k in ok]
        pairs_by_t[t] = pairs
        per[t] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
        for a, b in zip(KINDS, KINDS[1:], strict=False):
            if a in ok and b in ok:
                adjacent.append(ok[a] > ok[b])
        worst += [ok[k] >= 4 for k in KINDS[-2:] if k in ok]
        base = next((k for k in KINDS if ranks[t][k] == ranks[t].get(INJECTED)), None)
        if base in ok and INJECTED in ok:
            lifts.append(ok[INJECTED] - ok[base])
    pooled_pairs = [p for ps in pairs_by_t.values() for p in ps]
    pooled = spearman([p[0] for p in pooled_pairs], [p[1] for p in pooled_pairs])
    return {**_words_figures(grades),
        "spearman": {"pooled": pooled, "ci95": _cluster_ci(list(pairs_by_t.values()), seed),
                     "per_transcript": per},
        "adjacent_accuracy": sum(adjacent) / len(adjacent) if adjacent else None,
        "agreeableness": sum(worst) / len(worst) if worst else None,
        "injection_lift": sum(lifts) / len(lifts) if lifts else None,
        "parse_failure_rate": unparseable / attempted if attempted else None,
        "n_grades": attempted,
        "n_errors": errors,
        "seconds_per_grade": seconds / attempted if attempted else None,
        "seconds": seconds,
    }


def _words_figures(grades: dict[str, dict[str, Graded]]) -> dict:
    """reworded_gap, reworded_above_one_defect and words_not_facts (see the module docstring);
    transcripts without reworded answers are left out, and a set with none gives None."""
    gap: dict[str, float | None] = {}
    above: dict[str, bool | None] = {}
    below: dict[str, bool | None] = {}
    for t, by_kind in grades.items():
        ok = {k: g.overall for k, g in by_kind.items() if g.overall is not None}
        if not any(k in by_kind for k in REWORDED + WORDS_NOT_FACTS):
            continue
        reworded = [ok.get(k) for k in REWORDED]
        complete = all(v is not None for v in reworded)  # an ungraded answer proves nothing either way
        gap[t] = ok["reference"] - sum(reworded) / len(reworded) if complete and "reference" in ok else None
        defects = [ok.get(k) for k in ONE_DEFECT]
        above[t] = (min(reworded) > max(defects)) if complete and None not in defects else False
        wrong = [ok.get(k) for k in WORDS_NOT_FACTS]
        below[t] = (max(wrong) < ok[INVENTED]) if None not in wrong and INVENTED in ok else False
    if not gap:
        return {"reworded_gap": None, "reworded_above_one_defect": None, "words_not_facts": None}
    gaps = [g for g in gap.values() if g is not None]
    return {"reworded_gap": {"pooled": sum(gaps) / len(gaps) if gaps else None, "per_transcript": gap},
            "reworded_above_one_defect": {"all": all(above.values()), "per_transcript": above},
            "words_not_facts": {"all": all(below.values()), "per_transcript": below}}


def _cluster_ci(clusters: list[list[tuple[float, float]]], seed: int) -> list[float] | None:
    clusters = [c for c in clusters if c]
    if len(clusters) < 2:
        return None
    rng = np.random.default_rng(seed)
    rhos = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = [clusters[i] for i in rng.integers(0, len(clusters), len(clusters))]
        pts = [p for c in pick for p in c]
        rho = spearman([p[0] for p in pts], [p[1] for p in pts])
        rhos.append(0.0 if rho is None else rho)
    return percentile_ci(np.asarray(rhos), 0.95)


@dataclass(frozen=True)
class Gates:
    """What a set with reworded answers also asks (config judge.qualification)."""

    max_reworded_gap: float = 0.5
    reworded_above_one_defect: bool = True
    words_not_facts: bool = True
    # the notes scorer's behavioural tests and hand-labelled real answers (judges/behaviour.py,
    # judges/real_answers.py), where measured
    min_invariance: float = 0.98
    min_directional: float = 0.99
    min_item_agreement: float = 0.9
    min_real_spearman: float = 0.8
    layouts: int = 100


def gates_of(qcfg) -> Gates:
    return Gates(float(qcfg.max_reworded_gap), bool(qcfg.reworded_above_one_defect), bool(qcfg.words_not_facts),
                 float(qcfg.min_invariance), float(qcfg.min_directional), float(qcfg.min_item_agreement),
                 float(qcfg.min_real_spearman), int(qcfg.layouts))


def verdict(fig: dict, min_spearman: float, max_injection_lift: float, max_error_rate: float = 0.2,
            gates: Gates = Gates()) -> dict:
    """passed, and why not: pooled rho >= min_spearman, injection lift <= max_injection_lift,
    failed grades / grades <= max_error_rate, and the gates on reworded answers."""
    pooled = fig["spearman"]["pooled"]
    lift = fig["injection_lift"]
    why = []
    if pooled is None:
        why.append("no ordering: grades were constant or missing")
    elif pooled < min_spearman:
        why.append(f"pooled Spearman {pooled:.2f} < {min_spearman:g}")
    if lift is not None and lift > max_injection_lift:
        why.append(f"injection lift {lift:+.2f} > {max_injection_lift:+g}")
    if lift is None:
        why.append("injection lift not measured (the injected or its base answer was not graded)")
    errors = (fig.get("n_errors") or 0) / fig["n_grades"] if fig.get("n_grades") else 0.0
    if errors > max_error_rate:
        why.append(f"{fig['n_errors']} of {fig['n_grades']} grades failed ({errors:.0%} > {max_error_rate:.0%})")
    gap = (fig.get("reworded_gap") or {}).get("pooled") if fig.get("reworded_gap") else None
    if fig.get("reworded_gap") is not None:
        if gap is None or gap > gates.max_reworded_gap:
            why.append(f"reworded gap {fmt_figure(gap, '+.2f')} > {gates.max_reworded_gap:+g} (correct answers in "
                       f"other words graded below the reference)")
        if gates.reworded_above_one_defect and not fig["reworded_above_one_defect"]["all"]:
            bad = [t for t, v in fig["reworded_above_one_defect"]["per_transcript"].items() if not v]
            why.append(f"a reworded correct answer is not above the one-defect answer ({', '.join(bad)})")
        if gates.words_not_facts and not fig["words_not_facts"]["all"]:
            bad = [t for t, v in fig["words_not_facts"]["per_transcript"].items() if not v]
            why.append(f"a rotated/inverted answer in the reference's words is not below the invented-decision "
                       f"answer ({', '.join(bad)})")
    beh = fig.get("behaviour")
    if beh:
        inv, dirn = beh["invariance"]["rate"], beh["directional"]["rate"]
        if inv is None or inv < gates.min_invariance:
            why.append(f"invariance {fmt_figure(inv, '.3f')} < {gates.min_invariance:g} (correct answers in other "
                       f"layouts graded below {beh['min_correct']:g})")
        if dirn is None or dirn < gates.min_directional:
            why.append(f"directional {fmt_figure(dirn, '.3f')} < {gates.min_directional:g} (a defect not graded below "
                       f"the correct answer by its weight)")
    real = fig.get("real_answers")
    if real:
        if real["spearman"] is None or real["spearman"] < gates.min_real_spearman:
            why.append(f"Spearman against the person's grades {fmt_figure(real['spearman'], '+.2f')} < "
                       f"{gates.min_real_spearman:g}")
        agreement = real.get("item_agreement")
        if agreement is not None and agreement < gates.min_item_agreement:
            why.append(f"item agreement with the person's labels {agreement:.2f} < {gates.min_item_agreement:g}")
    return {"passed": not why, "why": "; ".join(why) or None,
            "thresholds": {"min_spearman": min_spearman, "max_injection_lift": max_injection_lift,
                           "min_invariance": gates.min_invariance, "min_directional": gates.min_directional,
                           "min_item_agreement": gates.min_item_agreement, "min_real_spearman": gates.min_real_spearman,
                           "max_error_rate": max_error_rate, "max_reworded_gap": gates.max_reworded_gap,
                           "reworded_above_one_defect": gates.reworded_above_one_defect,
                           "words_not_facts": gates.words_not_facts}}


# ---------------------------------------------------------------------------- running, caching


def cache_path(grader: Grader, calibration: CalibrationSet, layouts: int = 100) -> Path:
    key = json.dumps({"v": VERSION, "grader": grader.identity, "calibration": calibration.digest,
                      "layouts": layouts}, sort_keys=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", grader.name)
    return paths.home() / "qualification" / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


@contextmanager
def _one_measures(path: Path, name: str) -> Iterator[None]:
    """Jobs side by side (a parallel launcher's, the test suite's workers) that need the same
    grader's figures: the first measures them, the others wait for its cache entry and read it,
    instead of each grading the whole calibration set. Where no lock can be had (no fcntl on
    Windows, a cache this process cannot write to, a file system without locks) each measures,
    and an entry is still replaced whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")
    except OSError:
        yield
        return
    with lock:  # the lock goes with the file: released when it closes, or the process dies
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                sys.stderr.write(f"qualification: waiting for another process measuring {name} ({path.name})\n")
                fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield


def _write_whole(path: Path, entry: dict) -> None:
    """A cache entry written whole or not at all (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, indent=2))
    tmp.replace(path)


def _read_cached(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _checks(grader: Grader, calibration: CalibrationSet, layouts: int) -> dict:
    """The notes scorer's behavioural figures and its agreement with the hand-labelled real
    answers, on the calibration transcripts that have wordings and labels (none: {})."""
    if grader.identity.get("scorer") != "notes":
        return {}
    from judges import behaviour, notes, real_answers, renderings

    prompts = {t.prompt.id: t.prompt for t in calibration.transcripts}
    match = grader.identity.get("match", "semantic")
    # keyed by what they read (the transcripts, not the calibration answers): an edited answer of
    # the calibration set grades its 55 answers again, not 3,600 renderings and real answers
    key = json.dumps({"v": VERSION, "grader": grader.identity, "layouts": layouts,
                      "transcripts": sorted((p.id, p.user_text(), repr(p.reference_items)) for p in prompts.values())},
                     sort_keys=True)
    path = paths.home() / "qualification" / f"checks-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    cached = _read_cached(path)
    if cached is not None:
        return cached
    out: dict = {}

    def overall(prompt: Prompt, answer: str) -> float | None:
        return grader.grade(prompt, answer).overall

    if set(renderings.load_wordings()) & set(prompts):
        out["behaviour"] = behaviour.run(overall, prompts, layouts, behaviour.notes_expected)
    labelled, _ = real_answers.load()
    labelled = [a for a in labelled if a.transcript in prompts]
    if labelled:
        out["real_answers"] = real_answers.figures(labelled, prompts, overall,
                                                   lambda p, a: notes.explain(p, a, match))
    _write_whole(path, out)
    return out


def _measure(grader: Grader, calibration: CalibrationSet, progress: Callable[[str], None] | None,
             layouts: int = Gates.layouts) -> dict:
    """Grade every answer of the calibration set once: the cache entry (figures and grades)."""
    grades: dict[str, dict[str, Graded]] = {}
    started = time.perf_counter()
    for t in calibration.transcripts:
        grades[t.prompt.id] = {}
        for a in t.answers:
            grades[t.prompt.id][a.kind] = grader.grade(t.prompt, a.text)
            if progress:
                progress(f"{t.prompt.id}/{a.kind}")
    seconds = time.perf_counter() - started
    ranks = {t.prompt.id: {a.kind: a.rank for a in t.answers} for t in calibration.transcripts}
    return {"grader": grader.name, "identity": grader.identity,
            "calibration": {"name": calibration.name, "path": calibration.path, "digest": calibration.digest,
                            "transcripts": len(calibration.transcripts),
                            "answers": sum(len(t.answers) for t in calibration.transcripts)},
            **figures(grades, ranks, seconds),
            "grades": [{"transcript": t, "kind": k, "rank": ranks[t][k], "overall": g.overall, "error": g.error}
                       for t, by_kind in grades.items() for k, g in by_kind.items()],
            **_checks(grader, calibration, layouts),
            "measured_at": time.time()}


def qualify(grader: Grader, calibration: CalibrationSet, min_spearman: float = 0.6, max_injection_lift: float = 0.25,
            refresh: bool = False, progress: Callable[[str], None] | None = None, max_error_rate: float = 0.2,
            gates: Gates = Gates()) -> dict:
    """Grade the calibration set (or reuse the cached grades) and return the figures with the
    verdict against the given thresholds."""
    path = cache_path(grader, calibration, gates.layouts)
    with _one_measures(path, grader.name):
        cached = None if refresh else _read_cached(path)
        if cached is not None:
            cached["cached"] = True
        else:
            cached = _measure(grader, calibration, progress, gates.layouts)
            _write_whole(path, cached)
            cached["cached"] = False
    return {**cached, **verdict(cached, min_spearman, max_injection_lift, max_error_rate, gates)}


def fmt_figure(v, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _words_lines(q: dict) -> list[str]:
    if not q.get("reworded_gap"):
        return ["  reworded answers         none in this set (no reworded_gap / words_not_facts)"]
    gap, above, below = q["reworded_gap"], q["reworded_above_one_defect"], q["words_not_facts"]
    per = ", ".join(f"{t} {fmt_figure(v, '+.2f')}" for t, v in gap["per_transcript"].items())
    return [f"  reworded gap, pooled     {fmt_figure(gap['pooled'], '+.2f')}  (reference minus mean of 3 correct "
            f"answers in other words; per transcript {per})",
            f"  reworded > one-defect    {'yes' if above['all'] else 'NO'}  (every reworded answer above the "
            f"owner-swapped one; fails: {', '.join(t for t, v in above['per_transcript'].items() if not v) or 'none'})",
            f"  words not facts          {'yes' if below['all'] else 'NO'}  (rotated owners/dates and an inverted "
            f"decision below the invented-decision answer; fails: "
            f"{', '.join(t for t, v in below['per_transcript'].items() if not v) or 'none'})"]


def _checks_lines(q: dict) -> list[str]:
    lines = []
    beh = q.get("behaviour")
    if beh:
        def worst(f: dict) -> str:
            cells = sorted(((r, f"{dim}={v}") for dim, vals in f["by"].items() for v, r in vals.items()))[:3]
            return ", ".join(f"{name} {r:.3f}" for r, name in cells if r < 1) or "none below 1"

        inv, dirn = beh["invariance"], beh["directional"]
        lines += [f"  invariance               {fmt_figure(inv['rate'], '.3f')}  ({inv['n']} renderings of the correct "
                  f"content in other layouts graded >= {beh['min_correct']:g}; weakest: {worst(inv)})",
                  f"  directional              {fmt_figure(dirn['rate'], '.3f')}  ({dirn['n']} renderings with one defect "
                  f"graded below the correct one by the formula's weight; by defect "
                  + ", ".join(f"{d} {r:.3f}" for d, r in dirn["by_defect"].items()) + ")"]
    real = q.get("real_answers")
    if real:
        lines += [f"  real answers             Spearman {fmt_figure(real['spearman'], '+.2f')} against a person's grades, "
                  f"item agreement {fmt_figure(real['item_agreement'], '.3f')} over {real['item_labels']} labels "
                  f"({real['n']} answers real models wrote, labelled by hand; echo among real summaries: "
                  f"{len(real['echo_in_summaries'])})"]
    return lines


def text_report(q: dict) -> str:
    """The figures as `slmbench judge qualify` prints them."""
    s = q["spearman"]
    ci = s["ci95"]
    per = ", ".join(f"{t} {fmt_figure(r, '+.2f')}" for t, r in s["per_transcript"].items())
    th = q["thresholds"]
    lines = [
        f"grader {q['grader']} on {q['calibration']['name']} ({q['calibration']['transcripts']} transcripts, "
        f"{q['calibration']['answers']} answers of known order){' [cached]' if q.get('cached') else ''}",
        f"  Spearman, pooled         {fmt_figure(s['pooled'], '+.2f')}  (95% CI {fmt_figure(ci[0], '+.2f')} to "
        f"{fmt_figure(ci[1], '+.2f')}, transcripts resampled)" if ci else
        f"  Spearman, pooled         {fmt_figure(s['pooled'], '+.2f')}",
        f"  Spearman, per transcript {per}",
        f"  adjacent-pair accuracy   {fmt_figure(q['adjacent_accuracy'], '.2f')}  (rank k graded above rank k+1)",
        f"  agreeableness            {fmt_figure(q['agreeableness'], '.2f')}  (two worst answers graded >= 4)",
        f"  injection lift           {fmt_figure(q['injection_lift'], '+.2f')}  (instructed minus plain answer, 1-5 scale)",
        f"  parse-failure rate       {fmt_figure(q['parse_failure_rate'], '.2f')}  ({q['n_errors']} of {q['n_grades']} "
        f"grades failed)",
        *_words_lines(q),
        *_checks_lines(q),
        f"  seconds per grade        {fmt_figure(q['seconds_per_grade'], '.3f')}",
        f"  verdict: {'QUALIFIED' if q['passed'] else 'NOT QUALIFIED'} (needs pooled Spearman >= "
        f"{th['min_spearman']:g}, injection lift <= {th['max_injection_lift']:+g}, at most "
        f"{th.get('max_error_rate', 0.2):.0%} failed grades"
        + (f", reworded gap <= {th['max_reworded_gap']:+g}, reworded answers above one-defect ones and "
           f"rotated/inverted ones below the invented-decision one" if q.get("reworded_gap") else "")
        + (f", invariance >= {th['min_invariance']:g}, directional >= {th['min_directional']:g}"
           if q.get("behaviour") else "")
        + (f", Spearman against the person >= {th['min_real_spearman']:g}, item agreement >= "
           f"{th['min_item_agreement']:g}" if q.get("real_answers") else "") + ")"
        + (f": {q['why']}" if q["why"] else ""),
    ]
    if q.get("seconds") is not None:  # absent from caches written before it was recorded
        lines.append(f"  qualified in {q['seconds']:.0f} s (grading only, model load excluded"
                     f"{'; the cached run' if q.get('cached') else ''})")
    return "\n".join(lines)
