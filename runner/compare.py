"""`slmbench compare BASELINE CANDIDATE`: is the candidate worse than the baseline, beyond noise?

A side is a job dir (`requests.jsonl` + `summary.json`), a sweep dir (subdirs that are job
dirs), or the name of a committed baseline (`outputs/baselines/NAME/`, laid out as either).
Jobs are matched on (model, prompts, decoding, hardware). Per-request metrics are compared
by their medians with a bootstrap CI of the difference; per-job scalars by tolerance only.
At temperature 0 the outputs themselves are compared too (output drift).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml
from tabulate import tabulate

from runner import records
from runner.errors import UserError
from runner.paths import CONF_DIR

SUMMARY = "summary.json"
BASELINES_DIR = Path("outputs") / "baselines"  # relative to the cwd
TOLERANCES_FILE = CONF_DIR / "compare" / "default.yaml"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
SMALL_N = 10  # below this a bootstrap CI of a median is too narrow to lean on: the row says so

LOWER, HIGHER = "lower is better", "higher is better"
# name -> (unit, direction, definition)
PER_REQUEST = {
    "ttft_s": ("s", LOWER, "t(first non-empty content chunk) - t(sent)"),
    "tpot_s": ("s/token", LOWER, "(e2e_s - ttft_s) / (completion_tokens - 1)"),
    "e2e_s": ("s", LOWER, "t(last byte) - t(sent)"),
    "decode_tps": ("tokens/s", HIGHER, "(completion_tokens - 1) / (e2e_s - ttft_s)"),
    "quality": ("score 1-5", HIGHER, "per answer, from the job's quality.source: the notes scorer's score, or "
                                     "the mean of the judge's aspect scores (answers it failed to grade are left "
                                     "out)"),
}
PER_JOB = {
    "load_s": ("s", LOWER, "wall time of the model load"),
    "rss_mb": ("MB", LOWER, "process RSS after load, 10^6 bytes"),
    "rss_peak_mb": ("MB", LOWER, "highest RSS sampled while generating"),
    "disk_mb": ("MB", LOWER, "bytes of the model folder / 10^6"),
}
METRICS = {**PER_REQUEST, **PER_JOB}

WORSE, BETTER, NOISE, NA = "worse", "better", "within noise", "n/a"
SCALAR_NOTE = "no distribution: tolerance only"
VERDICT_RULE = (
    "Verdict rule. Per-request metrics: change = p50_candidate / p50_baseline - 1 (medians over ok requests); "
    "**worse** when the change is in the metric's bad direction by more than its relative tolerance AND the "
    f"bootstrap {CI_LEVEL:.0%} CI of (p50_candidate - p50_baseline) ({BOOTSTRAP_RESAMPLES} resamples of each "
    f"side, seed {BOOTSTRAP_SEED}) excludes 0; **better** symmetrically; otherwise **within noise**. "
    "Per-job scalars (load_s, rss_mb, rss_peak_mb, disk_mb: one value per job, no distribution): "
    "tolerance only. ratio = candidate / baseline.")
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
    if (path / records.REQUESTS).is_file():
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
    try:
        summary = json.loads((path / SUMMARY).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no {SUMMARY} (an unfinished run?); rerun it into the same dir to finish") from None
    except ValueError as exc:
        raise UserError(f"{path / SUMMARY}: not valid JSON ({exc})") from None
    recs = records.latest_per_key(records.read(path / records.REQUESTS))
    ok = [r for r in recs if r.get("status") == "ok"]
    return job_key(summary), Job(summary, ok)


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


def request_values(metric: str, recs: list[dict], source: str | None = None) -> list[float]:
    out = []
    for r in recs:
        if metric == "quality" and source == "notes":
            v = (r.get("scores") or {}).get("notes.score")
            if isinstance(v, int | float):
                out.append(float(v))
        elif metric == "quality":
            j = r.get("judge")
            if not isinstance(j, dict) or j.get("error") is not None or not j.get("scores"):
                continue
            scores = [v for v in j["scores"].values() if isinstance(v, int | float)]
            if scores:
                out.append(float(np.mean(scores)))
        else:
            v = r.get(metric)
            if isinstance(v, int | float) and math.isfinite(v):
                out.append(float(v))
    return out


def diff_ci(base: np.ndarray, cand: np.ndarray, seed: int = BOOTSTRAP_SEED,
            resamples: int = BOOTSTRAP_RESAMPLES, level: float = CI_LEVEL) -> list[float]:
    """Percentile bootstrap CI of median(cand) - median(base), each side resampled independently."""
    rng = np.random.default_rng(seed)
    rows = max(1, min(resamples, 2_000_000 // max(base.size, cand.size)))  # bound memory for big runs
    diffs = []
    for start in range(0, resamples, rows):
        n = min(rows, resamples - start)
        mb = np.median(rng.choice(base, size=(n, base.size), replace=True), axis=1)
        mc = np.median(rng.choice(cand, size=(n, cand.size), replace=True), axis=1)
        diffs.append(mc - mb)
    d = np.concatenate(diffs)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _change(b: float, c: float) -> float:
    """Relative change c/b - 1 (0 when both are 0, +-inf when only the baseline is 0)."""
    if b == 0:
        return 0.0 if c == 0 else math.copysign(math.inf, c)
    return c / b - 1


def _tolerance_verdict(direction: str, change: float, tol: float) -> str:
    bad = change if direction == LOWER else -change
    if bad > tol:
        return WORSE
    if -bad > tol:
        return BETTER
    return NOISE


def _row(key: Key, metric: str, tol: float, **fields) -> dict:
    unit, direction, _ = METRICS[metric]
    row = {**key.as_dict(), "metric": metric, "unit": unit, "direction": direction, "baseline_p50": None,
           "candidate_p50": None, "baseline_n": None, "candidate_n": None, "ratio": None, "diff_ci95": None,
           "tolerance": tol, "verdict": NA, "note": ""}
    row.update(fields)
    return row


def _per_request_row(key: Key, metric: str, tol: float, base: Job, cand: Job) -> dict | None:
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
    change = _change(bp, cp)
    direction = METRICS[metric][1]
    if len(b) < 2 or len(c) < 2:
        row.update(verdict=_tolerance_verdict(direction, change, tol), note="n < 2: no distribution, tolerance only")
        return row
    lo, hi = diff_ci(np.asarray(b), np.asarray(c))
    row["diff_ci95"] = [lo, hi]
    verdict = _tolerance_verdict(direction, change, tol)
    excludes_zero = lo > 0 or hi < 0
    if verdict != NOISE and not excludes_zero:
        row["note"] = f"median moved {change:+.1%} but the CI includes 0"
        verdict = NOISE
    elif verdict == NOISE and excludes_zero:
        row["note"] = f"CI excludes 0 but {change:+.1%} is within the tolerance"
    if min(len(b), len(c)) < SMALL_N:
        row["note"] = "; ".join(x for x in (row["note"], f"n < {SMALL_N}: the CI is approximate") if x)
    row["verdict"] = verdict
    return row


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
    row["verdict"] = _tolerance_verdict(METRICS[metric][1], _change(b, c), tol)
    return row


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


def compare(baseline: Side, candidate: Side, tolerances: Mapping[str, float] | None = None) -> dict:
    tol = load_tolerances()
    tol.update(tolerances or {})
    shared = sorted(set(baseline) & set(candidate), key=_sort_key)
    if not shared:
        raise UserError(f"nothing to compare: no model/prompts/decoding/hardware in common. "
                        f"baseline {baseline.ref} has: {baseline.keys_text()}; "
                        f"candidate {candidate.ref} has: {candidate.keys_text()}")
    rows, drift = [], {}
    for key in shared:
        b, c = baseline[key], candidate[key]
        for metric in PER_REQUEST:
            row = _per_request_row(key, metric, tol[metric], b, c)
            if row:
                rows.append(row)
        for metric in PER_JOB:
            row = _per_job_row(key, metric, tol[metric], b, c)
            if row:
                rows.append(row)
        drift[key.label] = output_drift(b, c)
    regressions = [r for r in rows if r["verdict"] == WORSE]
    return _clean({
        "baseline": baseline.ref, "candidate": candidate.ref,
        "baseline_path": str(baseline.path), "candidate_path": str(candidate.path),
        "tolerances": dict(tol),
        "verdict_rule": VERDICT_RULE.replace("**", ""),
        "definitions": {m: {"unit": u, "direction": d, "definition": f} for m, (u, d, f) in METRICS.items()},
        "rows": rows, "drift": drift,
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


# ---- output ----------------------------------------------------------------------------------

def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def _pct(x: float) -> str:
    return f"{x:.0%}" if abs(x * 100 - round(x * 100)) < 1e-9 else f"{x:.1%}"


def _outcome(result: dict) -> str:
    n = len(result["regressions"])
    return "no regressions" if not n else f"{n} regression(s)"


def _table(rows: list[dict], fmt: str) -> str:
    body = [[r["metric"], r["unit"], _num(r["baseline_p50"]), _num(r["candidate_p50"]),
             "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
             "-" if not r["diff_ci95"] else f"[{r['diff_ci95'][0]:+.3g}, {r['diff_ci95'][1]:+.3g}]",
             _pct(r["tolerance"]),
             r["verdict"].upper() if r["verdict"] == WORSE else r["verdict"], r["note"]]
            for r in rows]
    return tabulate(body, headers=["metric", "unit", "baseline p50", "candidate p50", "ratio",
                                   "diff 95% CI (cand - base)", "tolerance", "verdict", "note"],
                    tablefmt=fmt, disable_numparse=True)


def _groups(result: dict) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault(Key(*(r[f] for f in KEY_FIELDS)).label, []).append(r)
    return list(groups.items())


def _drift_lines(result: dict) -> list[str]:
    out = []
    for label, d in result["drift"].items():
        if d["checked"] and d["prompts_differing"]:
            out.append(f"output drift at temperature 0 in {label}: {len(d['prompts_differing'])} of "
                       f"{d['n_compared']} prompts differ ({', '.join(d['prompts_differing'])})")
    return out


def _only_lines(result: dict) -> list[str]:
    return ([f"only in baseline: {Key(**k).label}" for k in result["only_baseline"]]
            + [f"only in candidate: {Key(**k).label}" for k in result["only_candidate"]])


def regression_lines(result: dict) -> list[str]:
    out = []
    for r in result["regressions"]:
        label = Key(*(r[f] for f in KEY_FIELDS)).label
        change = ""
        if r["ratio"] is not None:
            change = f" (x{r['ratio']:.3f}, tolerance {_pct(r['tolerance'])}, {r['direction']})"
        ci = f", diff 95% CI [{r['diff_ci95'][0]:+.3g}, {r['diff_ci95'][1]:+.3g}]" if r["diff_ci95"] else ""
        note = f"; {r['note']}" if r["note"] else ""
        out.append(f"REGRESSION {label}: {r['metric']} {_num(r['baseline_p50'])} -> {_num(r['candidate_p50'])} "
                   f"{r['unit']}{change}{ci}{note}")
    return out


def write_outputs(result: dict, out_dir: Path) -> str:
    """Write `compare.json` and `compare.md` into out_dir; return the terminal table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2))
    md = [f"# Compare: {result['candidate']} against {result['baseline']}", "",
          f"- baseline: `{result['baseline']}` ({result['baseline_path']})",
          f"- candidate: `{result['candidate']}` ({result['candidate_path']})",
          f"- result: **{_outcome(result)}**",
          "", VERDICT_RULE, ""]
    text = []
    for label, rows in _groups(result):
        md += [f"## {label}", "", _table(rows, "github"), ""]
        text += [f"== {label}", _table(rows, "simple"), ""]
    md += ["## Metrics", "",
           tabulate([[m, d["unit"], d["direction"], _pct(result["tolerances"][m]), d["definition"]]
                     for m, d in result["definitions"].items()],
                    headers=["metric", "unit", "direction", "tolerance", "definition"], tablefmt="github",
                    disable_numparse=True), ""]
    md += ["## Output drift (temperature 0: round-0 outputs compared per prompt)", ""]
    for label, d in result["drift"].items():
        if not d["checked"]:
            md.append(f"- {label}: not checked ({d['reason']})")
        elif not d["prompts_differing"]:
            md.append(f"- {label}: identical on all {d['n_compared']} prompts")
        else:
            md.append(f"- {label}: {len(d['prompts_differing'])} of {d['n_compared']} prompts differ: "
                      f"{', '.join(d['prompts_differing'])}")
            for pid, ex in d["examples"].items():
                md += [f"  - `{pid}` baseline: {json.dumps(ex['baseline'])}",
                       f"  - `{pid}` candidate: {json.dumps(ex['candidate'])}"]
    only = _only_lines(result)
    if only:
        md += ["", "## Not compared", ""] + [f"- {line}" for line in only]
    (out_dir / "compare.md").write_text("\n".join(md) + "\n")
    return "\n".join(text).rstrip("\n")


def main(baseline_ref: str, candidate_ref: str, out_dir: Path | None = None,
         tolerance_overrides: Sequence[str] = (), resolvers: Iterable[Resolver] = (),
         tolerances_path: Path | None = None) -> int:
    """Print the comparison, write compare.json/.md; 0 when nothing regressed, 1 when something did.
    Bad input raises UserError (the CLI prints it and exits 2)."""
    tol = load_tolerances(tolerances_path, tolerance_overrides)  # before any loading: fail fast
    resolvers = list(resolvers)
    baseline = load_side(baseline_ref, resolvers)
    candidate = load_side(candidate_ref, resolvers)
    result = compare(baseline, candidate, tol)
    if out_dir is None:
        out_dir = Path(candidate_ref) if Path(candidate_ref).is_dir() else Path.cwd()
    text = write_outputs(result, Path(out_dir))
    print(f"baseline: {baseline.ref} ({baseline.path})\ncandidate: {candidate.ref} ({candidate.path})\n")
    print(text)
    for line in _only_lines(result) + _drift_lines(result):
        print(line)
    for line in regression_lines(result):
        print(line)
    print(f"{_outcome(result)}; wrote {Path(out_dir) / 'compare.md'} and compare.json")
    return 0 if result["ok"] else 1
