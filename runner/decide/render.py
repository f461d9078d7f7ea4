"""The decision's files: `decision.json` (the previous one kept as `decision.previous.json`),
`pareto.png`, and the decision section at the top of `report.md` (between
`<!-- decision:start -->` and `<!-- decision:end -->`); and `slmbench decide`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tabulate import tabulate

from runner.config.errors import UserError
from runner.config.selection import load_selection
from runner.decide.decision import RegistryLookup, decide, fmt, objective_text, with_unit
from runner.decide.keys import Metric
from runner.decide.selection import AUTO_SPEED
from runner.metrics import catalog
from runner.store import jobdir

SUMMARY = jobdir.SUMMARY
DECISION = "decision.json"
PREVIOUS = "decision.previous.json"
PLOT = "pareto.png"
REPORT = "report.md"
START, END = "<!-- decision:start -->", "<!-- decision:end -->"
# `slmbench decide`'s exit codes: 0 a recommendation; 1 nothing could be decided (every job failed,
# or the limits ruled every candidate out); 2 bad input; NONE_FIT no candidate is fit for the task.
NONE_FIT = 3

# ---------------------------------------------------------------------------- report, plot, files


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def decision_markdown(decision: dict, plot_name: str | None) -> list[str]:
    """The report's decision section, markers included (`slmbench decide` replaces it in place)."""
    o = decision["objective"]
    lim = decision["limits"]
    units = {}
    for c in decision["candidates"]:
        units.update({k: Metric(k, tuple(k.split("."))).unit for k in c["metrics"]})
    limits = [f"`{k}` <= {with_unit(fmt(v), units.get(k, ''))}" for k, v in lim["max"].items()]
    limits += [f"`{k}` >= {with_unit(fmt(v), units.get(k, ''))}" for k, v in lim["min"].items()]
    if lim["licenses"]:
        limits.append(f"licence in [{', '.join(lim['licenses'])}]")
    if lim["commercial"]:
        limits.append("commercial use allowed (model registry)")
    if o["kind"] == "weights":
        goal = f"maximize {objective_text(decision)}"
    else:
        goal = (f"{'maximize' if o['goal'] == 'max' else 'minimize'} `{o['metric']}`"
                + (" (auto: qualified quality when measured, else decode speed)" if o["auto"] else ""))
    qu = decision.get("quality") or {}
    trust = (f"quality from {', '.join(qu['sources'])} (qualified on answers of known order)" if qu.get("sources")
             else "no qualified quality")
    if qu.get("not_used"):
        trust += f"; untrusted quality not used for {', '.join(f'`{j}`' for j in qu['not_used'])}"
    if qu.get("trusted_unqualified"):
        trust += (f"; UNTRUSTED quality used (selection.trust_unqualified=true) for "
                  f"{', '.join(f'`{j}`' for j in qu['trusted_unqualified'])}")
    lines = [START, "# Decision", "", f"**{decision['summary_sentence']}**", "",
             f"- objective: {goal}; noise: {o['noise']}",
             f"- quality: {trust}",
             f"- limits: {'; '.join(limits) if limits else 'none'}",
             f"- fit for the task: {_fit_text(decision)}"]
    rec, ru = decision["recommended"], decision["runner_up"]
    if rec:
        line = f"- recommended: **{rec.get('name') or rec['model']}** (job `{rec['job']}`)"
        if ru:
            line += (f"; runner-up: {ru['model']} (job `{ru['job']}`), margin {fmt(decision['margin'])} "
                     f"({decision['margin_vs_noise'] or 'noise unknown'})")
        lines.append(line)
    lines.append("")

    metric_cols = [d["key"] for d in decision["dimensions"]]
    for k in [*lim["max"], *lim["min"], *((o["weights"] or {}) if o["kind"] == "weights" else [o["metric"]])]:
        if k not in metric_cols:
            metric_cols.append(k)
    order = sorted(decision["candidates"], key=lambda c: (
        c["rank"] is None, c["rank"] or 0, not c["evaluated"], not c["eligible"]))
    rows = []
    for c in order:
        rank = "-" if c["rank"] is None else str(c["rank"])
        if rec and c["job"] == rec["job"]:
            rank += " (recommended)"
        elif ru and c["job"] == ru["job"]:
            rank += " (runner-up)"
        eligible = "not evaluated" if not c["evaluated"] else "yes" if c["eligible"] else "no"
        fit = {True: "yes", False: "no", None: "-"}[c.get("fit")]
        why = c["reasons"] + [f"not fit: {r}" for r in c.get("fit_reasons") or []] + c["notes"]
        rows.append([rank, c["job"], c.get("name") or c["model"], c["hardware"] or "-", c["decoding"] or "-", eligible,
                     fit, fmt(c["objective_value"]), *(fmt(c["metrics"].get(k)) for k in metric_cols),
                     "yes" if c["on_pareto"] else "", "; ".join(why) or "-"])
    objective_col = "objective (weighted)" if o["kind"] == "weights" else f"objective: {o['metric']} ({o['goal']})"
    headers = ["rank", "job", "model", "hardware", "decoding", "eligible", "fit", objective_col,
               *(f"{k} ({units[k]})" if units.get(k) else k for k in metric_cols), "pareto", "why not / notes"]
    lines += [tabulate([[_cell(x) for x in r] for r in rows], headers=headers, tablefmt="github",
                       disable_numparse=True), ""]

    if decision["not_evaluated"]:
        lines += ["Not evaluated (failed jobs):", "",
                  *[f"- `{n['job']}`: {_cell(n['error'])}" for n in decision["not_evaluated"]], ""]
    if decision["dimensions"]:
        dims = ", ".join(f"{d['label']} (`{d['key']}`, {'lower' if d['goal'] == 'min' else 'higher'} is better)"
                         for d in decision["dimensions"])
        front = ", ".join(f"`{j}`" for j in decision["pareto"]) or "none"
        lines.append(f"Pareto front over {dims}: {front}. A job is on it when no other job is at least as good "
                     "on every dimension and better on one; a job missing a dimension is not on it.")
        if decision["missing_dimensions"]:
            lines.append("Not measured for any job: " + ", ".join(
                f"{d['label']} (`{d['key']}`)" for d in decision["missing_dimensions"]) + ".")
        lines.append("")
    if plot_name:
        lines += [f"![Pareto front]({plot_name})", ""]
    lines += ["Re-decide without re-running: `slmbench decide SWEEP_DIR max.e2e_s.p95=2.0 min.quality.overall=3 "
              "licenses=[Apache-2.0] objective.metric=e2e_s.p50` (keys: conf/selection/default.yaml).", END]
    return lines


def _fit_text(decision: dict) -> str:
    """The verdict and the bars it was held to, per source."""
    verdict = {True: "yes", False: "**no candidate is fit**", None: "not assessed"}[decision.get("fit")]
    if (decision.get("acceptance") or {}).get("mode") == "off":
        return f"{verdict} (selection.acceptance=false)"
    sources: dict[str, str] = {}
    for c in decision["candidates"]:
        acc = c.get("acceptance")
        if acc:
            bars = [f"`{k}` >= {fmt(v)}" for k, v in acc["min"].items()] + [
                f"`{k}` <= {fmt(v)}" for k, v in acc["max"].items()]
            sources[acc["source"]] = ", ".join(bars) or "none left (explicit limits replace them)"
    held = "; ".join(f"{src}: {bars}" for src, bars in sources.items())
    return f"{verdict}" + (f" (bars from {held})" if held else "")


def write_plot(decision: dict, path: Path) -> Path | None:
    """Quality (or decode_tps.p50 without quality) against e2e_s.p50; the front highlighted.
    Removes a stale plot when nothing can be drawn."""
    cands = [c for c in decision["candidates"] if c["evaluated"]]
    ykey = ("quality.overall" if any(c["metrics"].get("quality.overall") is not None for c in cands)
            else AUTO_SPEED)
    pts = [c for c in cands if c["metrics"].get("e2e_s.p50") is not None and c["metrics"].get(ykey) is not None]
    if not pts:
        path.unlink(missing_ok=True)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = (decision["recommended"] or {}).get("job")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    groups = [("on the Pareto front", lambda c: c["on_pareto"], "tab:red"),
              ("dominated", lambda c: not c["on_pareto"], "tab:gray")]
    for label, pick, colour in groups:
        for eligible, marker in ((True, "o"), (False, "X")):
            sel = [c for c in pts if pick(c) and c["eligible"] == eligible]
            if sel:
                ax.scatter([c["metrics"]["e2e_s.p50"] for c in sel], [c["metrics"][ykey] for c in sel],
                           c=colour, marker=marker, s=60, zorder=3,
                           label=f"{label}{'' if eligible else ', not eligible'}")
    for r in (c for c in pts if c["job"] == rec):
        ax.scatter([r["metrics"]["e2e_s.p50"]], [r["metrics"][ykey]], s=320, marker="*", c="gold",
                       edgecolors="black", zorder=4, label="recommended")
    for c in pts:
        ax.annotate(c["job"], (c["metrics"]["e2e_s.p50"], c["metrics"][ykey]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    dims = ", ".join(d["label"] for d in decision["dimensions"])
    ax.set_xlabel(catalog.label("e2e_s.p50"))
    ax.set_ylabel(catalog.label(ykey) + ("" if ykey == "quality.overall" else " (no quality measured)"), fontsize=9)
    ax.margins(x=0.35, y=0.12)  # room for the labels
    ax.set_title(f"Pareto front over {dims}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", markerscale=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _job_key(name: str) -> tuple[int, str]:
    head = name.split("_", 1)[0]
    return (int(head) if head.isdigit() else 0, name)


def read_summaries(sweep_dir: Path) -> list[tuple[str, jobdir.Summary]]:
    files = sorted(sweep_dir.glob(f"*/{SUMMARY}"), key=lambda p: _job_key(p.parent.name))
    if not files and (sweep_dir / SUMMARY).is_file():
        files = [sweep_dir / SUMMARY]  # a single run: a sweep of one candidate
    if not files:
        raise UserError(f"{sweep_dir}: no job summaries (*/{SUMMARY}): nothing to decide")
    out = []
    for f in files:
        try:
            out.append((f.parent.name, jobdir.read_summary(f.parent)))
        except OSError as exc:
            raise UserError(f"{f}: unreadable summary ({exc})") from None
    return out


def update_report(report: Path, section: list[str]) -> Path:
    """Replace the decision section of report.md in place, or insert it at the top."""
    text = report.read_text() if report.is_file() else ""
    lines = text.splitlines()
    if START in lines and END in lines and lines.index(START) < lines.index(END):
        i, j = lines.index(START), lines.index(END)
        new = lines[:i] + section + lines[j + 1:]
    else:
        rest = [ln for ln in lines if ln not in (START, END)]
        new = section + ([""] + rest if rest else [])
    report.write_text("\n".join(new) + "\n")
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_decision(sweep_dir: Path, selection: Any, registry_lookup: RegistryLookup | None = None,
                   plots: bool = True) -> dict:
    """Decide over a sweep directory's jobs; write decision.json (the previous one kept as
    decision.previous.json), pareto.png (with `plots`; without, a stale one is removed) and the
    decision section of report.md. Nothing is written when the input is bad (UserError)."""
    sweep_dir = Path(sweep_dir)
    decision = decide(read_summaries(sweep_dir), selection, registry_lookup)
    decision["sweep"] = sweep_dir.name
    if plots:
        plot = write_plot(decision, sweep_dir / PLOT)
    else:
        (sweep_dir / PLOT).unlink(missing_ok=True)  # a stale plot would contradict this decision
        plot = None
    decision["plot"] = plot.name if plot else None
    out = sweep_dir / DECISION
    if out.is_file():
        os.replace(out, sweep_dir / PREVIOUS)
    _write_json(out, decision)
    update_report(sweep_dir / REPORT, decision_markdown(decision, decision["plot"]))
    return decision


def decide_main(sweep_dir: Path, overrides: list[str], registry_lookup: RegistryLookup | None = None) -> int:
    """`slmbench decide SWEEP_DIR [overrides]`: 0 with a recommendation, 1 when nothing could be
    decided, NONE_FIT (3) when no candidate is fit for the task; bad input raises UserError (exit 2)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: no such directory")
    selection = load_selection(list(overrides))
    decision = write_decision(sweep_dir, selection, registry_lookup)
    rows = [[c["rank"] or "-", c["job"], "not evaluated" if not c["evaluated"] else "yes" if c["eligible"] else "no",
             {True: "yes", False: "no", None: "-"}[c.get("fit")], fmt(c["objective_value"]),
             "yes" if c["on_pareto"] else "",
             "; ".join(c["reasons"] + [f"not fit: {r}" for r in c.get("fit_reasons") or []]) or "-"]
            for c in decision["candidates"]]
    print(tabulate(rows, headers=["rank", "job", "eligible", "fit", "objective", "pareto", "why not"],
                   tablefmt="simple", disable_numparse=True))
    print()
    print(decision["summary_sentence"])
    wrote = [DECISION] + ([PREVIOUS] if (sweep_dir / PREVIOUS).is_file() else []) + (
        [decision["plot"]] if decision["plot"] else []) + [REPORT]
    print(f"wrote {', '.join(str(sweep_dir / w) for w in wrote)}")
    if decision["fit"] is False:
        return NONE_FIT
    return 0 if decision["recommended"] else 1
