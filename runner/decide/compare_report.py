"""What `slmbench compare` prints and writes: `compare.md`, `compare.json` and the exit code."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tabulate import tabulate

from runner.decide.compare import (
    KEY_FIELDS,
    MIN_PROMPT_PAIRS,
    VERDICT_RULE,
    WORSE,
    Key,
    Resolver,
    compare,
    load_side,
    load_tolerances,
    pct,
)

# ---- output ----------------------------------------------------------------------------------

def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def _outcome(result: dict) -> str:
    n = len(result["regressions"])
    return "no regressions" if not n else f"{n} regression(s)"


def _table(rows: list[dict], fmt: str) -> str:
    body = [[r["metric"], r["unit"], _num(r["baseline_p50"]), _num(r["candidate_p50"]),
             "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
             {"paired": f"paired, {r['n_pairs']} pairs", "unpaired": "unpaired"}.get(r["test"], "-"),
             _change_text(r),
             "-" if not r["diff_ci95"] else f"[{r['diff_ci95'][0]:+.3g}, {r['diff_ci95'][1]:+.3g}]",
             "-" if r["p"] is None else f"{r['p']:.2g} ({r['p_holm']:.2g})",
             pct(r["tolerance"]),
             r["verdict"].upper() if r["verdict"] == WORSE else r["verdict"], r["note"]]
            for r in rows]
    return tabulate(body, headers=["metric", "unit", "baseline p50", "candidate p50", "ratio", "test",
                                   "change [95% CI]", "diff 95% CI (cand - base)", "p (Holm)", "tolerance",
                                   "verdict", "note"],
                    tablefmt=fmt, disable_numparse=True)


def _change_text(r: dict) -> str:
    if r["change"] is None:
        return "-"
    ci = r["change_ci95"]
    return f"{r['change']:+.1%}" + (f" [{ci[0]:+.1%}, {ci[1]:+.1%}]" if ci else "")


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


def _pairing_lines(result: dict) -> list[str]:
    return [f"{label}: {p['note']}" for label, p in result["pairing"].items() if p.get("note")]


def _flake_text(f: dict) -> str:
    if not f["checked"]:
        return f"not checked ({f['reason']})"
    flaky = ", ".join(f"{pid} {pct(r)}" for pid, r in f["flaky"].items())
    return (f"pass^k {pct(f['pass_k'])} of {f['prompts']} prompts (k = {f['k']} rounds), mean flake rate "
            f"{pct(f['flake_rate_mean'])}" + (f"; flaky: {flaky}" if flaky else ""))


def _flake_lines(result: dict) -> list[str]:
    """Only when the candidate is less deterministic than the baseline (reported, not a regression)."""
    out = []
    for label, f in result["flake"].items():
        b, c = f["baseline"], f["candidate"]
        if c["checked"] and c["flaky"] and (not b["checked"] or c["flake_rate_mean"] > b["flake_rate_mean"]):
            out.append(f"outputs vary across rounds at temperature 0 in {label} (candidate): {_flake_text(c)}")
    return out


def _prompt_line(r: dict) -> str:
    label = Key(*(r[f] for f in KEY_FIELDS)).label
    return (f"{label}: prompt {r['prompt_id']}: {r['metric']} {_num(r['baseline_p50'])} -> "
            f"{_num(r['candidate_p50'])} {r['unit']} (x{r['ratio']:.3f}, {r['direction']}); {r['note']}")


def _listed_prompt_lines(result: dict) -> list[str]:
    """Prompts worse in every round that do not count toward the exit code."""
    return [f"worse in every round, {_prompt_line(e)}" for entries in result["per_prompt"].values()
            for e in entries if not e["counts"]]


def regression_lines(result: dict) -> list[str]:
    out = []
    for r in result["regressions"]:
        if r.get("scope") == "prompt":
            out.append(f"REGRESSION {_prompt_line(r)}")
            continue
        label = Key(*(r[f] for f in KEY_FIELDS)).label
        change = ""
        if r["ratio"] is not None:
            change = f" (x{r['ratio']:.3f}, tolerance {pct(r['tolerance'])}, {r['direction']})"
        paired = f", {r['test']} change {_change_text(r)}" if r.get("test") else ""
        ci = f", diff 95% CI [{r['diff_ci95'][0]:+.3g}, {r['diff_ci95'][1]:+.3g}]" if r["diff_ci95"] else ""
        p = f", Holm-adjusted p {r['p_holm']:.2g}" if r.get("p_holm") is not None else ""
        note = f"; {r['note']}" if r["note"] else ""
        out.append(f"REGRESSION {label}: {r['metric']} {_num(r['baseline_p50'])} -> {_num(r['candidate_p50'])} "
                   f"{r['unit']}{change}{paired}{ci}{p}{note}")
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
        p = result["pairing"].get(label, {})
        pairing = p.get("note") or f"paired on {p.get('pairs')} (prompt_id, round) pairs over {p.get('prompts')} prompts"
        md += [f"## {label}", "", pairing, "", _table(rows, "github"), ""]
        text += [f"== {label} ({pairing})", _table(rows, "simple"), ""]
    md += ["## Metrics", "",
           tabulate([[m, d["unit"], d["direction"], pct(result["tolerances"][m]), d["definition"]]
                     for m, d in result["definitions"].items()],
                    headers=["metric", "unit", "direction", "tolerance", "definition"], tablefmt="github",
                    disable_numparse=True), ""]
    md += [f"## Per-prompt regressions (every one of at least {MIN_PROMPT_PAIRS} paired rounds worse by more "
           "than the tolerance)", ""]
    for label, entries in result["per_prompt"].items():
        if not entries:
            md.append(f"- {label}: none")
            continue
        md += [f"- {label}:", "", tabulate(
            [[e["prompt_id"], e["metric"], e["unit"], _num(e["baseline_p50"]), _num(e["candidate_p50"]),
              f"{e['ratio']:.3f}", e["n_pairs"], f"{e['least_change']:+.1%}", "yes" if e["counts"] else "no",
              e["note"]] for e in entries],
            headers=["prompt", "metric", "unit", "baseline p50", "candidate p50", "ratio", "rounds",
                     "least change", "counts", "note"], tablefmt="github", disable_numparse=True), ""]
    md += ["", "## Output drift (temperature 0: round-0 outputs compared per prompt)", ""]
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
    md += ["", "## Determinism across rounds (temperature 0)", "",
           "Flake rate of a prompt = share of its ok rounds whose output differs from its most common output; "
           "pass^k = share of prompts whose k rounds all gave the same output. Reported, not a regression: drift "
           "on a prompt that is flaky on the baseline side may be flake rather than change.", ""]
    for label, f in result["flake"].items():
        md += [f"- {label}: baseline {_flake_text(f['baseline'])}; candidate {_flake_text(f['candidate'])}"]
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
    for line in (_only_lines(result) + _pairing_lines(result) + _drift_lines(result) + _flake_lines(result)
                 + _listed_prompt_lines(result)):
        print(line)
    for line in regression_lines(result):
        print(line)
    print(f"{_outcome(result)}; wrote {Path(out_dir) / 'compare.md'} and compare.json")
    return 0 if result["ok"] else 1
