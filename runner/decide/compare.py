"""`slmbench compare BASELINE CANDIDATE`: is the candidate worse than the baseline, beyond noise?

A side is a job dir (`requests.jsonl` + `summary.json`), a sweep dir (subdirs that are job
dirs), or the name of a committed baseline (`outputs/baselines/NAME/`, laid out as either).
Jobs are matched on (model, prompts, decoding, hardware). Within a matched job, requests are
paired on (prompt_id, round): per-request metrics are compared on the per-pair changes (Wilcoxon
signed-rank test, Holm-adjusted across the metrics; a bootstrap CI), or, with too few pairs, by
their medians with an unpaired bootstrap. Prompts worse in every paired round are named. Per-job
scalars by tolerance only. At temperature 0 the outputs are compared too (output drift), and each
side's outputs across rounds (flake rate).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from runner.config.errors import UserError
from runner.config.paths import CONF_DIR
from runner.decide.paired_stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CI_LEVEL,
    EXACT_MAX,
    Pairs,
    holm,
    paired_ci,
    signed_rank_p,
    unpaired_test,
)
from runner.metrics import catalog
from runner.store import jobdir

SUMMARY = jobdir.SUMMARY
BASELINES_DIR = Path("outputs") / "baselines"  # relative to the cwd
TOLERANCES_FILE = CONF_DIR / "compare" / "default.yaml"
SMALL_N = 10  # below this a bootstrap CI of a median is too narrow to lean on: the row says so
ALPHA = 1 - CI_LEVEL  # a Holm-adjusted p below this is significant
# Fewer (prompt_id, round) pairs: the unpaired test. An exact paired test's smallest two-sided p is
# 2 / 2^n, and Holm over the 5 per-request metrics multiplies it by up to 5: 5 * 2 / 2^8 = 0.039 < ALPHA.
MIN_PAIRS = 8
MIN_PROMPT_PAIRS = 3  # a prompt is judged on its own only with this many paired rounds

LOWER, HIGHER = "lower is better", "higher is better"


def _declared(key: str, record_field: str | None = None) -> tuple[str, str, str]:
    """(unit, direction, definition) from the catalog. `quality` is the per-answer score whose job
    distribution is quality.overall."""
    s = catalog.spec(record_field or key)
    return s.unit, LOWER if s.better == catalog.LOWER else HIGHER, s.formula


# name -> (unit, direction, definition)
PER_REQUEST = {k: _declared(k) for k in ("ttft_s", "tpot_s", "e2e_s", "decode_tps", "quality")}
PER_JOB = {k: _declared(k) for k in ("load_s", "rss_mb", "rss_peak_mb", "disk_mb")}
METRICS = {**PER_REQUEST, **PER_JOB}
# Per-prompt regressions count toward the exit code for these, at temperature 0 on both sides: each round
# then repeats the same work, so "every round worse" is independent evidence. Quality at temperature 0
# grades the same answer every round (its rounds are one observation), and sampled rounds differ in work.
PER_PROMPT_GATES = ("ttft_s", "tpot_s", "e2e_s", "decode_tps")

WORSE, BETTER, NOISE, NA = "worse", "better", "within noise", "n/a"
SCALAR_NOTE = "no distribution: tolerance only"
VERDICT_RULE = (
    "Verdict rule. Per-request metrics are compared within each matched job on the (prompt_id, round) pairs "
    "measured ok on both sides. **Paired** (the default): change = median over pairs of (candidate_i / "
    "baseline_i) - 1; p = two-sided Wilcoxon signed-rank test of log(candidate_i / baseline_i) (zero differences "
    f"dropped, tied ranks averaged; exact null distribution up to {EXACT_MAX} pairs, else normal approximation "
    "with tie correction); the change CI and the diff CI (median of candidate_i - baseline_i) come from a "
    f"stratified bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}: prompts are fixed, each "
    "prompt's pairs are redrawn with replacement, single-pair prompts pooled). **Unpaired** (fewer than "
    f"{MIN_PAIRS} pairs in common, the row says so): change = p50_candidate / p50_baseline - 1 (medians over ok "
    f"requests), the diff CI is the bootstrap {CI_LEVEL:.0%} CI of (p50_candidate - p50_baseline) (each side "
    "resampled independently) and p = 2 min(#(diff* <= 0) + 1, #(diff* >= 0) + 1) / (resamples + 1) "
    "(p < 0.05 roughly when that CI excludes 0). **Holm**: within each job pair, the p-values of the per-request "
    "metrics (the ones that feed the exit code with a test) are Holm-adjusted: sorted p_(1) <= ... <= p_(m), "
    "adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)). **worse** when the change is in the metric's "
    f"bad direction by more than its relative tolerance AND the Holm-adjusted p < {ALPHA:.2g}; **better** "
    "symmetrically; otherwise **within noise**. **Per prompt** (at least "
    f"{MIN_PROMPT_PAIRS} paired rounds): a prompt is listed when every one of its paired rounds is worse by more "
    f"than the tolerance; for {', '.join(PER_PROMPT_GATES)} with temperature 0 on both sides it counts as a "
    "regression (exit code) unless that metric already regressed for the whole job. Per-job scalars (load_s, "
    "rss_mb, rss_peak_mb, disk_mb: one value per job, no distribution): tolerance only. ratio = p50_candidate / "
    "p50_baseline.")
KEY_FIELDS = ("model", "prompts", "decoding", "hardware")

Resolver = Callable[[str], "Path | None"]


class Key(NamedTuple):
    model: str | None
    prompts: str | None
    decoding: str | None
    hardware: str | None

    @property
    def label(self) -> str:
        return " / ".join(str(v) for v in self)

    def as_dict(self) -> dict:
        return dict(zip(KEY_FIELDS, self, strict=True))


class Job(NamedTuple):
    summary: dict
    records: list[dict]  # ok requests only, one per (round, prompt_id)


class Side(dict):
    """Key -> Job(summary, ok records), plus where it came from."""

    def __init__(self, ref: str, path: Path, kind: str, jobs: Mapping[Key, Job] | None = None,
                 dirs: Mapping[Key, Path] | None = None):
        super().__init__(jobs or {})
        self.ref, self.path, self.kind = ref, path, kind
        self.dirs: dict[Key, Path] = dict(dirs or {})

    def keys_text(self) -> str:
        return "; ".join(k.label for k in sorted(self, key=_sort_key)) or "no jobs"


# ---- loading ---------------------------------------------------------------------------------

def load_side(ref: str, resolvers: Iterable[Resolver] = ()) -> Side:
    """A job dir, a sweep dir, or a baseline name; `resolvers` (ref -> Path | None) are tried first."""
    ref = str(ref)
    for resolve in resolvers:
        path = resolve(ref)
        if path is not None:
            side = _load_dir(ref, Path(path))
            if side is None:
                raise UserError(f"{ref}: resolved to {path}, which is not a job dir or sweep dir")
            return side
    candidates = [Path(ref).expanduser()]
    if ref and "/" not in ref and ref not in (".", ".."):
        candidates.append(Path.cwd() / BASELINES_DIR / ref)
    for path in candidates:
        if path.is_dir():
            side = _load_dir(ref, path)
            if side is not None:
                return side
    raise UserError(f"{ref}: not a job dir, sweep dir or baseline name ({_baselines_hint()})")


def _baselines_hint() -> str:
    root = Path.cwd() / BASELINES_DIR
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if names:
        return f"baselines in {BASELINES_DIR}: {', '.join(names)}"
    return f"no baselines in {BASELINES_DIR} under {Path.cwd()}"


def _load_dir(ref: str, path: Path) -> Side | None:
    if (path / jobdir.REQUESTS).is_file():
        key, job = _load_job(path)
        return Side(ref, path, "job", {key: job}, {key: path})
    job_dirs = sorted(p for p in path.iterdir() if p.is_dir() and (p / SUMMARY).is_file())
    if not job_dirs:
        return None
    side = Side(ref, path, "sweep")
    for d in job_dirs:
        key, job = _load_job(d)
        if key in side:
            raise UserError(f"{ref}: jobs {side.dirs[key].name} and {d.name} are the same "
                            f"model/prompts/decoding/hardware ({key.label}); compare them one job dir at a time")
        side[key], side.dirs[key] = job, d
    return side


def _load_job(path: Path) -> tuple[Key, Job]:
    summary = jobdir.read_summary(path)
    return job_key(summary), Job(summary, jobdir.ok_records(path))


def job_key(summary: dict) -> Key:
    cfg = summary.get("config") or {}
    return Key(summary.get("model"), summary.get("prompts"),
               (cfg.get("decoding") or {}).get("name"), (cfg.get("hardware") or {}).get("name"))


def _sort_key(k: Key) -> tuple:
    return tuple(str(v) for v in k)


# ---- tolerances ------------------------------------------------------------------------------

def load_tolerances(path: Path | None = None, overrides: Sequence[str] = ()) -> dict[str, float]:
    """The defaults (`conf/compare/default.yaml`), then `path` on top, then `metric=value` overrides."""
    tol = _read_tolerances(TOLERANCES_FILE)
    if path is not None:
        tol.update(_read_tolerances(Path(path)))
    for item in overrides:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or name not in METRICS:
            raise UserError(f"bad tolerance override {item!r}: expected METRIC=VALUE, METRIC one of "
                            f"{', '.join(METRICS)}")
        tol[name] = _tolerance_value(value, f"tolerance override {item!r}")
    return tol


def _read_tolerances(path: Path) -> dict[str, float]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read tolerances ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of metric: relative tolerance")
    unknown = sorted(set(map(str, data)) - set(METRICS))
    if unknown:
        raise UserError(f"{path}: unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    return {str(k): _tolerance_value(v, f"{path}: {k}") for k, v in data.items()}


def _tolerance_value(value, where: str) -> float:
    text = str(value).strip()
    try:
        x = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or x < 0:
        raise UserError(f"{where}: tolerance must be a number >= 0 (relative, e.g. 0.05 or 5%), got {text!r}")
    return x


# ---- comparing -------------------------------------------------------------------------------

def quality_source(summary: dict) -> str | None:
    return (summary.get("quality") or {}).get("source")


def record_value(metric: str, r: dict, source: str | None = None) -> float | None:
    """One request's value of a per-request metric (None: not measured, or a failed grading)."""
    if metric == "quality" and source == "notes":
        v = (r.get("scores") or {}).get("notes.score")
        return float(v) if isinstance(v, int | float) else None
    if metric == "quality":
        j = r.get("judge")
        if not isinstance(j, dict) or j.get("error") is not None or not j.get("scores"):
            return None
        scores = [v for v in j["scores"].values() if isinstance(v, int | float)]
        return float(np.mean(scores)) if scores else None
    v = r.get(metric)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def request_values(metric: str, recs: list[dict], source: str | None = None) -> list[float]:
    return [v for r in recs if (v := record_value(metric, r, source)) is not None]


def pairs(metric: str, base: Job, cand: Job) -> Pairs:
    def by_key(job: Job) -> dict[tuple[str, int], float]:
        src = quality_source(job.summary)
        return {(str(r.get("prompt_id")), r.get("round", 0)): v for r in job.records
                if (v := record_value(metric, r, src)) is not None}

    b, c = by_key(base), by_key(cand)
    keys = sorted(set(b) & set(c))
    return Pairs([k[0] for k in keys], np.array([b[k] for k in keys]), np.array([c[k] for k in keys]))


def _change(b: float, c: float) -> float:
    """Relative change c/b - 1 (0 when both are 0, +-inf when only the baseline is 0)."""
    if b == 0:
        return 0.0 if c == 0 else math.copysign(math.inf, c)
    return c / b - 1


def _bad(direction: str, change: float) -> float:
    """The change in the metric's bad direction (positive: worse)."""
    return change if direction == LOWER else -change


def _tolerance_verdict(direction: str, change: float, tol: float) -> str:
    bad = _bad(direction, change)
    if bad > tol:
        return WORSE
    if -bad > tol:
        return BETTER
    return NOISE


def _row(key: Key, metric: str, tol: float, **fields) -> dict:
    unit, direction, _ = METRICS[metric]
    row = {**key.as_dict(), "scope": "job", "metric": metric, "unit": unit, "direction": direction,
           "baseline_p50": None, "candidate_p50": None, "baseline_n": None, "candidate_n": None, "ratio": None,
           "diff_ci95": None, "tolerance": tol, "verdict": NA, "note": "", "test": None, "n_pairs": None,
           "change": None, "change_ci95": None, "p": None, "p_holm": None}
    row.update(fields)
    return row


def _note(row: dict, text: str) -> None:
    row["note"] = "; ".join(x for x in (row["note"], text) if x)


def _per_request_row(key: Key, metric: str, tol: float, base: Job, cand: Job) -> dict | None:
    """The row with its test run; its verdict is set by `_decide` once the job's p-values are Holm-adjusted."""
    sb, sc = quality_source(base.summary), quality_source(cand.summary)
    b, c = request_values(metric, base.records, sb), request_values(metric, cand.records, sc)
    if not b and not c:
        return None  # not measured on either side (e.g. no judge): no row
    row = _row(key, metric, tol, baseline_n=len(b), candidate_n=len(c))
    if metric == "quality" and sb and sc and sb != sc:
        row["note"] = f"graded by different graders ({sb} vs {sc}): not comparable"
        return row
    if b:
        row["baseline_p50"] = float(np.median(b))
    if c:
        row["candidate_p50"] = float(np.median(c))
    if not c:
        if not cand.records:  # the candidate job produced nothing: that is a regression
            err = cand.summary.get("error") or "no ok requests"
            row.update(verdict=WORSE, note=f"candidate job has no ok requests ({err})")
        else:
            row["note"] = "not measured in candidate"
        return row
    if not b:
        row["note"] = "not measured in baseline" if base.records else "baseline job has no ok requests"
        return row
    bp, cp = row["baseline_p50"], row["candidate_p50"]
    row["ratio"] = cp / bp if bp else None
    direction = METRICS[metric][1]
    pr = pairs(metric, base, cand)
    positive = (pr.base > 0) & (pr.cand > 0)  # a ratio needs both; timings, speeds and scores are > 0
    row["n_pairs"] = int(positive.sum())
    if len(b) < 2 or len(c) < 2:
        row.update(verdict=_tolerance_verdict(direction, _change(bp, cp), tol),
                   note="n < 2: no distribution, tolerance only")
        return row
    if row["n_pairs"] >= MIN_PAIRS:
        pr = Pairs([p for p, ok in zip(pr.prompts, positive, strict=True) if ok], pr.base[positive],
                   pr.cand[positive])
        ratios = pr.cand / pr.base
        change_ci, diff = paired_ci(pr)
        row.update(test="paired", change=float(np.median(ratios)) - 1, change_ci95=change_ci, diff_ci95=diff,
                   p=signed_rank_p(np.log(ratios)))
        if positive.size > positive.sum():
            _note(row, f"{positive.size - positive.sum()} pair(s) with a value <= 0 left out")
    else:
        ci, p = unpaired_test(np.asarray(b), np.asarray(c))
        row.update(test="unpaired", change=_change(bp, cp), diff_ci95=ci, p=p)
        _note(row, f"unpaired: {row['n_pairs']} pairs in common (< {MIN_PAIRS})")
        if min(len(b), len(c)) < SMALL_N:
            _note(row, f"n < {SMALL_N}: the CI is approximate")
    return row


def _decide(row: dict) -> None:
    """Verdict of a tested row: beyond the tolerance AND Holm-adjusted p < ALPHA."""
    change, p = row["change"], row["p_holm"]
    verdict = _tolerance_verdict(row["direction"], change, row["tolerance"])
    significant = p < ALPHA
    lo, hi = row["diff_ci95"]
    if verdict != NOISE and not significant:
        _note(row, f"moved {change:+.1%} but Holm-adjusted p = {p:.2g} >= {ALPHA:.2g}"
                   + ("; the CI includes 0" if lo <= 0 <= hi else ""))
        verdict = NOISE
    elif verdict == NOISE and significant:
        _note(row, f"significant (Holm-adjusted p = {p:.2g}) but {change:+.1%} is within the tolerance")
    row["verdict"] = verdict


def _per_job_row(key: Key, metric: str, tol: float, base: Job, cand: Job) -> dict | None:
    b, c = base.summary.get(metric), cand.summary.get(metric)
    b = float(b) if isinstance(b, int | float) else None
    c = float(c) if isinstance(c, int | float) else None
    if b is None and c is None:
        return None
    row = _row(key, metric, tol, baseline_p50=b, candidate_p50=c, note=SCALAR_NOTE)
    if b is None or c is None:
        row["note"] = f"{SCALAR_NOTE}; not measured in {'baseline' if b is None else 'candidate'}"
        return row
    row["ratio"] = c / b if b else None
    row["change"] = _change(b, c)
    row["verdict"] = _tolerance_verdict(METRICS[metric][1], row["change"], tol)
    return row


def per_prompt_regressions(key: Key, metric: str, tol: float, base: Job, cand: Job, gates: str | None) -> list[dict]:
    """Prompts with at least MIN_PROMPT_PAIRS paired rounds, every one worse by more than the tolerance.

    p50s are over the prompt's paired rounds; least_change is the smallest per-round change c_i / b_i - 1
    in the bad direction (every round is at least this much worse). `gates`: None when the entry counts
    toward the exit code, else why it does not."""
    if metric == "quality" and quality_source(base.summary) != quality_source(cand.summary):
        return []
    direction = METRICS[metric][1]
    pr = pairs(metric, base, cand)
    by_prompt: dict[str, list[int]] = {}
    for i, pid in enumerate(pr.prompts):
        by_prompt.setdefault(pid, []).append(i)
    out = []
    for pid, ix in sorted(by_prompt.items()):
        b, c = pr.base[ix], pr.cand[ix]
        if len(ix) < MIN_PROMPT_PAIRS or np.any(b <= 0):
            continue
        bad = [_bad(direction, x) for x in c / b - 1]
        if min(bad) <= tol:
            continue
        bp, cp = float(np.median(b)), float(np.median(c))
        out.append(_row(key, metric, tol, scope="prompt", prompt_id=pid, baseline_p50=bp, candidate_p50=cp,
                        baseline_n=len(ix), candidate_n=len(ix), n_pairs=len(ix), ratio=cp / bp,
                        change=cp / bp - 1, least_change=_bad(direction, min(bad)), verdict=WORSE,
                        counts=gates is None,
                        note=f"every one of its {len(ix)} paired rounds worse by more than {pct(tol)}"
                             + (f"; not counted: {gates}" if gates else "")))
    return out


def _gate_reason(metric: str, tb, tc) -> str | None:
    if metric not in PER_PROMPT_GATES:
        return "at temperature 0 its rounds grade the same answer (one observation, not several)"
    if tb != 0 or tc != 0:
        return f"sampled decoding (temperature {tb} vs {tc}): a prompt's rounds differ in work"
    return None


def _temperature(summary: dict):
    return ((summary.get("config") or {}).get("decoding") or {}).get("temperature")


def _first_outputs(recs: list[dict]) -> dict[str, str]:
    """Each prompt's output in its earliest ok round (round 0 unless that request failed)."""
    best: dict[str, tuple[int, str]] = {}
    for r in recs:
        pid, rnd = r.get("prompt_id"), r.get("round", 0)
        if pid is not None and (pid not in best or rnd < best[pid][0]):
            best[pid] = (rnd, r.get("output"))
    return {pid: out for pid, (_, out) in best.items()}


def output_drift(base: Job, cand: Job, examples: int = 3, width: int = 200) -> dict:
    tb, tc = _temperature(base.summary), _temperature(cand.summary)
    if tb != 0 or tc != 0:
        return {"checked": False, "reason": f"needs temperature 0 on both sides (baseline {tb}, candidate {tc})"}
    ob, oc = _first_outputs(base.records), _first_outputs(cand.records)
    shared = sorted(set(ob) & set(oc))
    differing = [p for p in shared if ob[p] != oc[p]]
    return {"checked": True, "n_compared": len(shared), "prompts_differing": differing,
            "examples": {p: {"baseline": (ob[p] or "")[:width], "candidate": (oc[p] or "")[:width]}
                         for p in differing[:examples]}}


def flake(job: Job) -> dict:
    """Determinism across rounds at temperature 0, over prompts with at least 2 ok rounds.

    flake rate of a prompt = share of its rounds whose output differs from its most common output;
    pass_k = share of prompts whose k rounds all gave the same output (k = the prompt's ok rounds)."""
    t = _temperature(job.summary)
    if t != 0:
        return {"checked": False, "reason": f"sampled decoding (temperature {t})"}
    outputs: dict[str, list] = {}
    for r in job.records:
        outputs.setdefault(str(r.get("prompt_id")), []).append(r.get("output"))
    rates = {pid: 1 - Counter(outs).most_common(1)[0][1] / len(outs)
             for pid, outs in sorted(outputs.items()) if len(outs) >= 2}
    if not rates:
        return {"checked": False, "reason": "no prompt has 2 ok rounds"}
    ks = sorted({len(outputs[pid]) for pid in rates})
    return {"checked": True, "prompts": len(rates), "k": ks[0] if len(ks) == 1 else ks,
            "pass_k": sum(r == 0 for r in rates.values()) / len(rates),
            "flake_rate_mean": float(np.mean(list(rates.values()))),
            "flaky": {pid: r for pid, r in rates.items() if r > 0}}


def _pairing(base: Job, cand: Job) -> dict:
    keys_b = {(str(r.get("prompt_id")), r.get("round", 0)) for r in base.records}
    keys_c = {(str(r.get("prompt_id")), r.get("round", 0)) for r in cand.records}
    both = keys_b & keys_c
    out = {"pairs": len(both), "prompts": len({p for p, _ in both}), "min_pairs": MIN_PAIRS}
    if not both and keys_b and keys_c:
        out["note"] = ("no (prompt_id, round) in common (other prompt ids?): per-request metrics compared "
                       "unpaired, no per-prompt check")
    elif len(both) < MIN_PAIRS and keys_b and keys_c:
        out["note"] = f"only {len(both)} (prompt_id, round) pairs in common (< {MIN_PAIRS}): compared unpaired"
    return out


def compare(baseline: Side, candidate: Side, tolerances: Mapping[str, float] | None = None) -> dict:
    tol = load_tolerances()
    tol.update(tolerances or {})
    shared = sorted(set(baseline) & set(candidate), key=_sort_key)
    if not shared:
        raise UserError(f"nothing to compare: no model/prompts/decoding/hardware in common. "
                        f"baseline {baseline.ref} has: {baseline.keys_text()}; "
                        f"candidate {candidate.ref} has: {candidate.keys_text()}")
    rows, drift, per_prompt, flakes, pairing, prompt_regressions = [], {}, {}, {}, {}, []
    for key in shared:
        b, c = baseline[key], candidate[key]
        tested = [row for metric in PER_REQUEST if (row := _per_request_row(key, metric, tol[metric], b, c))]
        for row, p in zip(tested, holm([r["p"] for r in tested]), strict=True):
            row["p_holm"] = p
            if p is not None:
                _decide(row)
        rows += tested
        rows += [row for metric in PER_JOB if (row := _per_job_row(key, metric, tol[metric], b, c))]
        drift[key.label] = output_drift(b, c)
        flakes[key.label] = {"baseline": flake(b), "candidate": flake(c)}
        pairing[key.label] = _pairing(b, c)
        tb, tc = _temperature(b.summary), _temperature(c.summary)
        job_worse = {r["metric"] for r in tested if r["verdict"] == WORSE}
        changed = set(drift[key.label].get("prompts_differing") or ())
        entries = []
        for metric in PER_REQUEST:
            for e in per_prompt_regressions(key, metric, tol[metric], b, c, _gate_reason(metric, tb, tc)):
                if e["prompt_id"] in changed:
                    _note(e, "its output changed (drift)")
                if e["counts"] and metric in job_worse:
                    e["counts"] = False
                    _note(e, "not counted again: the whole job regressed on this metric")
                entries.append(e)
        per_prompt[key.label] = entries
        prompt_regressions += [e for e in entries if e["counts"]]
    regressions = [r for r in rows if r["verdict"] == WORSE] + prompt_regressions
    return _clean({
        "baseline": baseline.ref, "candidate": candidate.ref,
        "baseline_path": str(baseline.path), "candidate_path": str(candidate.path),
        "tolerances": dict(tol),
        "verdict_rule": VERDICT_RULE.replace("**", ""),
        "definitions": {m: {"unit": u, "direction": d, "definition": f} for m, (u, d, f) in METRICS.items()},
        "rows": rows, "drift": drift, "pairing": pairing, "per_prompt": per_prompt, "flake": flakes,
        "only_baseline": [k.as_dict() for k in sorted(set(baseline) - set(candidate), key=_sort_key)],
        "only_candidate": [k.as_dict() for k in sorted(set(candidate) - set(baseline), key=_sort_key)],
        "regressions": regressions, "ok": not regressions,
    })


def _clean(obj):
    """No NaN or infinity in the JSON (they are not JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def pct(x: float) -> str:
    """A tolerance or rate as a percentage: 10%, 12.5%."""
    return f"{x:.0%}" if abs(x * 100 - round(x * 100)) < 1e-9 else f"{x:.1%}"
