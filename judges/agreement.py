"""How far the LLM judge can be trusted: agreement with human scores, and between judges.

Inputs are a job directory's `annotations.csv` (human scores beside the judge's, see
`judges/annotations.py`) and `judgements.jsonl` (every grading, possibly by several judges).
Every statistic is a small function whose docstring states its formula; `agreement()` puts
them together and writes `agreement.json`.

Undefined figures (a constant side for Spearman, no variation at all for kappa or alpha) are
`nan` from the statistic functions and `None` in the report dicts and `agreement.json`, so the
JSON stays strict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from runner.config.errors import UserError
from runner.store import jobdir

LABELS = (1, 2, 3, 4, 5)
AGREEMENT = "agreement.json"
ANNOTATIONS = "annotations.csv"
MIN_N_STABLE = 20  # below this many pairs, kappa / rho / alpha swing widely from one rating to the next


# -- pairwise statistics (a = human, b = judge) --------------------------------------------------

def _pairs(a: Sequence, b: Sequence) -> tuple[list, list]:
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"rating lists differ in length: {len(a)} != {len(b)}")
    return a, b


def confusion_matrix(a: Sequence[int], b: Sequence[int], labels: Sequence[int] = LABELS) -> list[list[int]]:
    """Counts O[i][j] = #{n : a_n = labels[i] and b_n = labels[j]}.

    Rows are the first rater (human), columns the second (judge). A rating outside `labels`
    raises ValueError."""
    a, b = _pairs(a, b)
    index = {v: i for i, v in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for x, y in zip(a, b, strict=True):
        if x not in index or y not in index:
            raise ValueError(f"rating pair ({x!r}, {y!r}) outside labels {tuple(labels)}")
        m[index[x]][index[y]] += 1
    return m


def quadratic_weighted_kappa(a: Sequence[int], b: Sequence[int], labels: Sequence[int] = LABELS) -> float:
    """Cohen's kappa with quadratic weights.

    With k labels, O the confusion matrix (N pairs), r_i / c_j its row / column totals,
    E_ij = r_i * c_j / N (counts expected by chance) and w_ij = (i - j)^2 / (k - 1)^2:

        kappa_qw = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij

    1 = perfect agreement, 0 = chance level, < 0 = worse than chance. nan when there are no
    pairs or sum w E = 0 (both raters gave one and the same label throughout)."""
    o = np.asarray(confusion_matrix(a, b, labels), dtype=float)
    n = o.sum()
    k = len(labels)
    if n == 0 or k < 2:
        return math.nan
    i = np.arange(k)
    w = (i[:, None] - i[None, :]) ** 2 / (k - 1) ** 2
    e = np.outer(o.sum(axis=1), o.sum(axis=0)) / n
    expected = float((w * e).sum())
    if expected == 0:
        return math.nan
    return 1.0 - float((w * o).sum()) / expected


def _average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n; tied values all get the mean of the ranks they span."""
    v = np.asarray(x, dtype=float)
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1  # mean of ranks i+1 .. j+1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties get average ranks).

        rho = sum (R_n - mean R)(S_n - mean S) / sqrt(sum (R_n - mean R)^2 * sum (S_n - mean S)^2)

    where R, S are the ranks of a, b. Without ties this equals 1 - 6 sum d_n^2 / (N (N^2 - 1)).
    nan with fewer than 2 pairs or when either side is constant."""
    a, b = _pairs(a, b)
    if len(a) < 2:
        return math.nan
    r, s = _average_ranks(a), _average_ranks(b)
    r, s = r - r.mean(), s - s.mean()
    den = math.sqrt(float((r * r).sum()) * float((s * s).sum()))
    if den == 0:
        return math.nan
    return float((r * s).sum()) / den


def exact_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of pairs with identical scores: #{n : a_n = b_n} / N (nan when N = 0)."""
    a, b = _pairs(a, b)
    if not a:
        return math.nan
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def within_one(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of pairs at most one point apart: #{n : |a_n - b_n| <= 1} / N (nan when N = 0)."""
    a, b = _pairs(a, b)
    if not a:
        return math.nan
    return sum(abs(x - y) <= 1 for x, y in zip(a, b, strict=True)) / len(a)


# -- Krippendorff's alpha ------------------------------------------------------------------------

def coincidence_matrix(ratings: Sequence[Sequence[Hashable | None]]) -> tuple[list, np.ndarray]:
    """Krippendorff's coincidence matrix of a coders x units table (None = missing).

    Only pairable values count: units with m_u >= 2 values. For values c, k:

        o_ck = sum_u (number of ordered pairs (c, k) from different coders in unit u) / (m_u - 1)

    Returns (sorted distinct values, o). Its totals are n_c = sum_k o_ck and n = sum_c n_c
    (the number of pairable values)."""
    rows = [list(r) for r in ratings]
    if rows and len({len(r) for r in rows}) != 1:
        raise ValueError("every coder needs one entry (or None) per unit")
    units = list(zip(*rows, strict=True)) if rows else []
    pairable = [[v for v in u if v is not None] for u in units]
    pairable = [u for u in pairable if len(u) >= 2]
    values = sorted({v for u in pairable for v in u})
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in pairable:
        cnt = np.zeros(len(values))
        for v in u:
            cnt[index[v]] += 1
        o += (np.outer(cnt, cnt) - np.diag(cnt)) / (len(u) - 1)
    return values, o


def _delta2(values: list, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function delta^2_ck of Krippendorff (2011) for each metric."""
    k = len(values)
    if level == "nominal":
        return 1.0 - np.eye(k)
    x = np.asarray(values, dtype=float)
    if level == "interval":
        return (x[:, None] - x[None, :]) ** 2
    if level == "ratio":
        s = x[:, None] + x[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            d = ((x[:, None] - x[None, :]) / s) ** 2
        return np.where(s == 0, 0.0, d)
    if level == "ordinal":
        # delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2, values in rank order
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        d = np.zeros((k, k))
        for c in range(k):
            for j in range(c, k):
                d[c, j] = d[j, c] = (cum[j + 1] - cum[c] - (n_c[c] + n_c[j]) / 2) ** 2
        return d
    raise ValueError(f"level must be nominal, ordinal, interval or ratio, not {level!r}")


def krippendorff_alpha(ratings: Sequence[Sequence[int | None]], level: str = "ordinal") -> float:
    """Krippendorff's alpha for a coders x units table with None for missing values.

    From the coincidence matrix o (see `coincidence_matrix`), n_c = sum_k o_ck, n = sum_c n_c:

        alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_ck o_ck delta^2_ck / sum_ck n_c n_k delta^2_ck

    with delta^2_ck (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
    nominal 0 if c = k else 1; interval (c - k)^2; ratio ((c - k) / (c + k))^2;
    ordinal (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 over the values in rank order.
    1 = perfect reliability, 0 = chance level. nan when fewer than 2 pairable values or no
    variation at all (D_e = 0)."""
    values, o = coincidence_matrix(ratings)
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n < 2:
        return math.nan
    d2 = _delta2(values, n_c, level)
    expected = float((np.outer(n_c, n_c) * d2).sum())
    if expected == 0:
        return math.nan
    return 1.0 - (n - 1) * float((o * d2).sum()) / expected


# -- reports ---------------------------------------------------------------------------------------

def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _pair_stats(human: list[int], judge: list[int]) -> dict:
    n = len(human)
    return {
        "n": n,
        "mean_human": _clean(float(np.mean(human))) if n else None,
        "mean_judge": _clean(float(np.mean(judge))) if n else None,
        "kappa_qw": _clean(quadratic_weighted_kappa(human, judge)),
        "spearman": _clean(spearman(human, judge)),
        "exact": _clean(exact_agreement(human, judge)),
        "within_1": _clean(within_one(human, judge)),
        # human and judge as two coders of the same units
        "alpha": _clean(krippendorff_alpha([list(human), list(judge)], "ordinal")) if n else None,
        "confusion": {"labels": list(LABELS), "rows": "human", "cols": "judge",
                      "matrix": confusion_matrix(human, judge)},
        "low_n": n < MIN_N_STABLE,
    }


def judge_human_report(rows: list[dict]) -> dict:
    """Human against judge, per aspect and pooled over all aspects ("overall").

    `rows` are `read_annotations` rows; those without both a human and a judge score are left
    out. Each entry: n, mean_human, mean_judge, kappa_qw, spearman, exact, within_1, confusion
    (rows = human, cols = judge, labels 1-5) and low_n (n < 20)."""
    per: dict[str, tuple[list[int], list[int]]] = {}
    for r in rows:
        if r.get("human_score") is None or r.get("judge_score") is None:
            continue
        h, j = per.setdefault(r["aspect"], ([], []))
        h.append(int(r["human_score"]))
        j.append(int(r["judge_score"]))
    all_h = [x for h, _ in per.values() for x in h]
    all_j = [x for _, j in per.values() for x in j]
    return {"aspects": {a: _pair_stats(h, j) for a, (h, j) in sorted(per.items())},
            "overall": _pair_stats(all_h, all_j)}


def _valid_score(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v in LABELS


def inter_judge_report(job_dir: Path) -> dict | None:
    """Krippendorff's alpha (ordinal) between judge models, per aspect and pooled ("overall").

    Reads `judgements.jsonl`: first gradings only (repeat 0), no injection probe, no error.
    A unit is one (model, prompt_id, round, aspect); a judge that graded a unit more than once
    counts with its last grading. Only units graded by 2+ judges count (n_units). None when
    the file is absent, or fewer than 2 judges graded any unit in common."""
    path = Path(job_dir) / jobdir.JUDGEMENTS
    if not path.exists():
        return None
    units: dict[tuple, dict[str, int]] = {}
    for g in jobdir.judgements(Path(job_dir)):
        if (g.get("repeat") or 0) != 0 or g.get("probe") is not None or g.get("error"):
            continue
        judge = g.get("judge_model")
        if not judge:
            continue
        for aspect, score in (g.get("scores") or {}).items():
            if _valid_score(score):
                key = (g.get("model"), g.get("prompt_id"), g.get("round"), aspect)
                units.setdefault(key, {})[judge] = score
    shared = {k: v for k, v in units.items() if len(v) >= 2}
    if not shared:
        return None
    judges = sorted({j for v in shared.values() for j in v})

    def alpha(keys: list[tuple]) -> dict:
        table = [[shared[k].get(j) for k in keys] for j in judges]
        return {"n_units": len(keys), "alpha": _clean(krippendorff_alpha(table, "ordinal")),
                "low_n": len(keys) < MIN_N_STABLE}

    aspects = sorted({k[3] for k in shared})
    return {"judges": judges, "level": "ordinal",
            "aspects": {a: alpha([k for k in shared if k[3] == a]) for a in aspects},
            "overall": alpha(list(shared))}


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(rows: list[list], headers: list[str]) -> str:
    """A github-style table: first column left, the rest right-aligned, our number formats kept."""
    align = ("left",) + ("right",) * (len(headers) - 1)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=align)


def format_report(report: dict) -> str:
    """Terminal/markdown text of an `agreement()` dict (keys judge_human, inter_judge)."""
    jh = report["judge_human"]
    head = ["aspect", "n", "mean human", "mean judge", "kappa (qw)", "alpha (ordinal)", "spearman", "exact",
            "within 1"]

    def line(name: str, s: dict) -> list:
        return [name, s["n"], _f(s["mean_human"], 2), _f(s["mean_judge"], 2), _f(s["kappa_qw"]),
                _f(s.get("alpha")), _f(s["spearman"]), _f(s["exact"], 2), _f(s["within_1"], 2)]

    table = [line(a, s) for a, s in jh["aspects"].items()] + [line("overall", jh["overall"])]
    judges = report.get("judge_models") or []
    title = "## Judge against human" + (f" (judge: {', '.join(judges)})" if judges else "")
    out = [title, "", _table(table, head), ""]

    conf = jh["overall"]["confusion"]
    labels = conf["labels"]
    cm = [[f"human {lab}", *row, sum(row)] for lab, row in zip(labels, conf["matrix"], strict=True)]
    cm.append(["total", *[sum(col) for col in zip(*conf["matrix"], strict=True)], jh["overall"]["n"]])
    out += ["Overall confusion matrix (rows: human score, columns: judge score):", "",
            _table(cm, ["", *[f"judge {lab}" for lab in labels], "total"]), ""]

    low = [a for a, s in [*jh["aspects"].items(), ("overall", jh["overall"])] if s["low_n"]]
    if low:
        out.append(f"Note: fewer than {MIN_N_STABLE} annotated pairs for {', '.join(low)}: "
                   "these figures are unstable; annotate more rows before trusting them.")
    if any(v is None for s in [*jh["aspects"].values(), jh["overall"]]
           for v in (s["kappa_qw"], s["spearman"]) if s["n"]):
        out.append("n/a: undefined (a side gives one score throughout).")

    ij = report.get("inter_judge")
    if ij:
        rows = [[a, s["n_units"], _f(s["alpha"])] for a, s in ij["aspects"].items()]
        rows.append(["overall", ij["overall"]["n_units"], _f(ij["overall"]["alpha"])])
        out += ["", f"## Between judges ({', '.join(ij['judges'])})", "",
                _table(rows, ["aspect", "units", "Krippendorff alpha (ordinal)"])]
        if ij["overall"]["low_n"] or any(s["low_n"] for s in ij["aspects"].values()):
            out += ["",f"Note: fewer than {MIN_N_STABLE} shared units somewhere: alpha is unstable there."]
    return "\n".join(out).rstrip() + "\n"


def _judge_models(job_dir: Path) -> list[str]:
    recs = jobdir.graded_records(job_dir)
    return sorted({r["judge"]["model"] for r in recs
                   if isinstance(r.get("judge"), dict) and r["judge"].get("model")})


def agreement(job_dir: Path, reviewed: list[dict] | None = None, reviewed_in: str | None = None) -> tuple[str, dict]:
    """Human scores from `annotations.csv` and, where given, from a review in MLflow (`reviewed`:
    rows in the same shape, from `reviewed_in`; a score given in both places counts once, the
    review's); compare them with the judge's, compare judges; write `agreement.json` and return
    (terminal text, the dict written)."""
    from judges.annotations import read_annotations, row_key

    job_dir = Path(job_dir)
    path = job_dir / ANNOTATIONS
    if not path.exists() and reviewed is None:
        raise UserError(f"no {ANNOTATIONS} in {job_dir} and no review in MLflow: run `slmbench annotate "
                        f"{job_dir}` (a CSV) or `slmbench annotate --review {job_dir}` (the MLflow UI) first")
    from_csv = {row_key(r): r for r in (read_annotations(path) if path.exists() else [])}
    from_review = {row_key(r): r for r in reviewed or []}
    merged = {**from_csv, **from_review}
    rows = list(merged.values())
    if not rows:
        where = " or ".join(w for w in (str(path) if path.exists() else None, reviewed_in) if w)
        raise UserError(f"no human labels yet in {where}: fill in 1-5 in the human_score column, or score the "
                        f"answers on the review page")
    result = {
        "job_dir": str(job_dir),
        "annotations": str(path) if path.exists() else None,
        "reviewed_in": reviewed_in,
        "human_labels": {"annotations.csv": len(from_csv.keys() - from_review.keys()), "mlflow": len(from_review)},
        "judge_models": _judge_models(job_dir),
        "judge_human": judge_human_report(rows),
        "inter_judge": inter_judge_report(job_dir),
    }
    (job_dir / AGREEMENT).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return format_report(result), result
