"""Agreement statistics on hand-made tables with known values, and the annotations file
round trip (write, fill in by hand, read back, agree)."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest

from judges.agreement import (
    agreement,
    coincidence_matrix,
    confusion_matrix,
    exact_agreement,
    format_report,
    inter_judge_report,
    judge_human_report,
    krippendorff_alpha,
    quadratic_weighted_kappa,
    spearman,
    within_one,
)
from judges.annotations import COLUMNS, read_annotations, write_annotations
from runner.config.errors import UserError

N = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C:
# 4 observers x 12 units, values 1-5, missing data. Published: nominal 0.743,
# ordinal 0.815, interval 0.849, ratio 0.797.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]


def qwk_by_pairs(a: list[int], b: list[int]) -> float:
    """An independent quadratic kappa for evenly spaced integer labels: with quadratic
    weights, sum w O = sum_n (a_n - b_n)^2 / (k-1)^2 and sum w E = (1/N) sum_m sum_n
    (a_m - b_n)^2 / (k-1)^2, so kappa = 1 - N sum_n (a_n - b_n)^2 / sum_m sum_n (a_m - b_n)^2."""
    obs = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    exp = sum((x - y) ** 2 for x in a for y in b)
    return 1 - len(a) * obs / exp


# -- statistics ---------------------------------------------------------------------------------

def test_identical_ratings_give_kappa_one_and_alpha_one():
    r = [1, 2, 3, 4, 5, 3, 2]
    assert quadratic_weighted_kappa(r, r) == pytest.approx(1.0)
    assert spearman(r, r) == pytest.approx(1.0)
    assert exact_agreement(r, r) == 1.0
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha([r, r, r], level) == pytest.approx(1.0)
    # a missing value does not break perfect agreement
    assert krippendorff_alpha([[1, 2, 3, N], [1, 2, 3, 4], [N, 2, 3, 4]]) == pytest.approx(1.0)


def test_quadratic_kappa_hand_example():
    # human a = [1, 2, 3, 3], judge b = [1, 3, 3, 2], labels 1..3 (k = 3, N = 4).
    # O (rows human 1..3, cols judge 1..3) = [[1,0,0],[0,0,1],[0,1,1]]
    # w_ij = (i-j)^2 / 4: w = [[0,.25,1],[.25,0,.25],[1,.25,0]]
    # sum w O = .25 (human 2, judge 3) + .25 (human 3, judge 2) = 0.5
    # row totals r = (1,1,2), column totals c = (1,1,2); E = r c^T / 4
    #   = [[.25,.25,.5],[.25,.25,.5],[.5,.5,1]]
    # sum w E = .25*.25 + 1*.5 + .25*.25 + .25*.5 + 1*.5 + .25*.5 = 1.375
    # kappa = 1 - 0.5 / 1.375 = 1 - 4/11 = 7/11 = 0.63636...
    a, b = [1, 2, 3, 3], [1, 3, 3, 2]
    assert confusion_matrix(a, b, (1, 2, 3)) == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert quadratic_weighted_kappa(a, b, (1, 2, 3)) == pytest.approx(7 / 11)
    # unused labels 4 and 5 change nothing (the 1/(k-1)^2 scale cancels)
    assert quadratic_weighted_kappa(a, b) == pytest.approx(7 / 11)
    assert qwk_by_pairs(a, b) == pytest.approx(7 / 11)
    # full disagreement at the extremes: sum w O = 2, sum w E = 1 -> kappa = -1
    assert quadratic_weighted_kappa([1, 5], [5, 1]) == pytest.approx(-1.0)
    # one rater constant at 3: sum w O = sum w E -> kappa = 0
    assert quadratic_weighted_kappa([3, 3, 3, 3], [1, 2, 4, 5]) == pytest.approx(0.0)
    # no variation at all: undefined
    assert math.isnan(quadratic_weighted_kappa([4, 4, 4], [4, 4, 4]))


def test_quadratic_kappa_matches_independent_implementations():
    from sklearn.metrics import cohen_kappa_score  # the dev extra: a missing one fails, never skips

    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(3, 40)
        a = [rng.randint(1, 5) for _ in range(n)]
        b = [min(5, max(1, x + rng.choice([-2, -1, 0, 0, 1]))) for x in a]
        if len(set(a)) == 1 and len(set(b)) == 1:
            continue
        ours = quadratic_weighted_kappa(a, b)
        assert ours == pytest.approx(qwk_by_pairs(a, b))
        assert ours == pytest.approx(cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic"))


def test_krippendorff_alpha_textbook_example():
    for level, published in [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]:
        assert krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(published, abs=5e-4), level
    # pairable values: units 1-11 hold 3,4,4,4,4,4,4,4,4,3,2 values (unit 12 has one: dropped) = 40.
    # value totals n_c counted by hand over those units: 1 -> 9, 2 -> 13, 3 -> 10, 4 -> 5, 5 -> 3.
    values, o = coincidence_matrix(KRIPPENDORFF_2011)
    assert values == [1, 2, 3, 4, 5]
    assert o.sum() == pytest.approx(40)
    assert list(o.sum(axis=1)) == pytest.approx([9, 13, 10, 5, 3])
    assert (o == o.T).all()
    # unit 1: three 1s -> o_11 += 3*2/2 = 3; unit 8 (1,1,2,1) -> o_11 += 3*2/3 = 2, o_12 += 3/3 = 1;
    # unit 6 (1,2,3,4) -> 1/3 to each off-diagonal pair; unit 11 (1,1) -> o_11 += 2.
    assert o[0, 0] == pytest.approx(7)
    assert o[0, 1] == pytest.approx(1 + 1 / 3)


def test_krippendorff_alpha_edge_cases():
    assert math.isnan(krippendorff_alpha([[3, 3, 3], [3, 3, 3]]))  # no variation: undefined
    assert math.isnan(krippendorff_alpha([[1, N], [N, 2]]))  # nothing pairable
    # two coders who always disagree by swapping 1 and 2: nominal alpha is -1/... < 0
    assert krippendorff_alpha([[1, 2, 1, 2], [2, 1, 2, 1]], "nominal") < 0
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2], [1]])
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2], [1, 2]], "cardinal")


def test_spearman_hand_examples_and_scipy():
    # no ties: d = (0, 1, -1, 0), rho = 1 - 6*2 / (4*15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: ranks a = (1, 2.5, 2.5, 4), b = (1, 2, 3.5, 3.5); centred (-1.5,0,0,1.5), (-1.5,-.5,1,1)
    # rho = 3.75 / sqrt(4.5 * 4.5) = 0.8333...
    assert spearman([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(3.75 / 4.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([2, 2, 2], [1, 2, 3]))  # a constant side
    assert math.isnan(spearman([1], [1]))
    from scipy.stats import spearmanr  # the dev extra: a missing scipy fails, never skips
    rng = random.Random(11)
    for _ in range(50):
        n = rng.randint(3, 30)
        a = [rng.randint(1, 5) for _ in range(n)]
        b = [rng.randint(1, 5) for _ in range(n)]
        if len(set(a)) > 1 and len(set(b)) > 1:
            assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)


def test_confusion_matrix_and_agreement_shares():
    human = [1, 1, 2, 5, 5, 3]
    judge = [1, 2, 2, 5, 3, 3]
    m = confusion_matrix(human, judge)
    assert m == [[1, 1, 0, 0, 0],  # human 1: judge 1 once, judge 2 once
                 [0, 1, 0, 0, 0],
                 [0, 0, 1, 0, 0],
                 [0, 0, 0, 0, 0],
                 [0, 0, 1, 0, 1]]  # rows are human: human 5 -> judge 3 once, judge 5 once
    assert sum(map(sum, m)) == 6
    assert exact_agreement(human, judge) == pytest.approx(4 / 6)
    assert within_one(human, judge) == pytest.approx(5 / 6)  # only (5, 3) is two apart
    with pytest.raises(ValueError):
        confusion_matrix([0], [1])
    with pytest.raises(ValueError):
        exact_agreement([1, 2], [1])


def test_judge_human_report_per_aspect_and_overall():
    rows = [{"aspect": "clarity", "human_score": h, "judge_score": j} for h, j in [(1, 1), (3, 3), (5, 4)]]
    rows += [{"aspect": "correct", "human_score": h, "judge_score": j} for h, j in [(2, 4), (4, 2)]]
    rows.append({"aspect": "correct", "human_score": 3, "judge_score": None})  # no judge score: left out
    rep = judge_human_report(rows)
    c = rep["aspects"]["clarity"]
    assert c["n"] == 3 and c["exact"] == pytest.approx(2 / 3) and c["within_1"] == 1.0
    assert c["mean_human"] == pytest.approx(3) and c["mean_judge"] == pytest.approx(8 / 3)
    assert c["kappa_qw"] == pytest.approx(qwk_by_pairs([1, 3, 5], [1, 3, 4]))
    assert rep["aspects"]["correct"]["spearman"] == pytest.approx(-1.0)
    o = rep["overall"]
    assert o["n"] == 5 and o["exact"] == pytest.approx(2 / 5)
    assert o["confusion"]["matrix"][1][3] == 1 and o["confusion"]["matrix"][3][1] == 1
    assert o["low_n"] is True


# -- annotations file -----------------------------------------------------------------------------

LONG = 'First line, with "quotes"\nsecond line\n' + "x" * 400


def _record(pid, rnd, output="ok answer", scores=None, status="ok", judge_error=None, model="m1"):
    r = {"model": model, "prompt_id": pid, "round": rnd, "status": status, "output": output}
    if scores is not None:
        r["judge"] = {"model": "judge-a", "scores": scores if not judge_error else {},
                      "rationales": {k: "because" for k in scores}, "error": judge_error}
    return r


def _job(tmp_path: Path, recs: list[dict], torn: bool = True) -> Path:
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in recs)
    if torn:
        text += '{"model": "m1", "prompt_id": "torn", "rou'  # killed mid-write
    (job / "requests.jsonl").write_text(text)
    return job


def _records() -> list[dict]:
    return [
        _record("p1", 0, LONG, {"correctness": 4, "clarity": 3}),
        _record("p2", 0, "short", {"correctness": 2, "clarity": 5}),
        _record("p1", 1, "again", {"correctness": 5, "clarity": 3}),
        _record("p2", 1, "", scores=None, status="error"),  # failed request
        _record("p3", 0, "not graded"),  # no judge at all
        _record("p3", 1, "judge broke", {"correctness": 3}, judge_error="unparseable reply"),
    ]


def _fill(path: Path, scores: dict[tuple, str], notes: str = "") -> None:
    """Type human scores into the file as a person with a spreadsheet would."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        k = (r["prompt_id"], r["round"], r["aspect"])
        if k in scores:
            r["human_score"] = scores[k]
            r["notes"] = notes
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def test_write_annotations_rows_and_excerpt(tmp_path):
    job = _job(tmp_path, _records())
    path = write_annotations(job, excerpt_chars=50)
    assert path == job / "annotations.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == COLUMNS
        rows = list(reader)
    # 3 graded ok records x 2 aspects; the error, the ungraded, the judge failure and the torn line are out
    assert len(rows) == 6
    assert {(r[0], r[2], r[3]) for r in rows} == {(p, rnd, a) for p, rnd in [("p1", "0"), ("p2", "0"), ("p1", "1")]
                                                for a in ("correctness", "clarity")}
    first = next(r for r in rows if r[0] == "p1" and r[2] == "0" and r[3] == "correctness")
    assert first[4] == LONG[:50] and "\n" in first[4] and '"quotes"' in first[4]
    assert first[5] == "4" and first[6] == "" and first[7] == ""
    assert read_annotations(path) == []  # nothing annotated yet


def test_annotations_round_trip_and_agreement(tmp_path):
    job = _job(tmp_path, _records())
    path = write_annotations(job)
    # judge:  p1/0 correctness 4, clarity 3; p2/0 correctness 2, clarity 5; p1/1 correctness 5, clarity 3
    _fill(path, {("p1", "0", "correctness"): "4",   # = judge
                 ("p1", "0", "clarity"): "3",       # = judge
                 ("p2", "0", "correctness"): "3",   # judge 2: one off
                 ("p2", "0", "clarity"): "2",       # judge 5: three off
                 ("p1", "1", "correctness"): "5"},  # = judge; p1/1 clarity left blank
          notes="checked")
    rows = read_annotations(path)
    assert len(rows) == 5
    assert all(isinstance(r["human_score"], int) and isinstance(r["round"], int) for r in rows)
    assert rows[0]["notes"] == "checked"

    text, result = agreement(job)
    human, judge = [4, 5, 3, 3, 2], [4, 5, 2, 3, 5]  # correctness x3, clarity x2
    o = result["judge_human"]["overall"]
    assert o["n"] == 5
    assert o["exact"] == pytest.approx(3 / 5)
    assert o["within_1"] == pytest.approx(4 / 5)
    assert o["kappa_qw"] == pytest.approx(qwk_by_pairs(human, judge))
    assert o["mean_human"] == pytest.approx(17 / 5) and o["mean_judge"] == pytest.approx(19 / 5)
    assert o["confusion"]["matrix"][1][4] == 1  # human 2, judge 5
    corr = result["judge_human"]["aspects"]["correctness"]
    assert corr["n"] == 3 and corr["exact"] == pytest.approx(2 / 3)
    assert corr["spearman"] == pytest.approx(1.0)  # (4,5,3) vs (4,5,2): same order
    assert result["judge_models"] == ["judge-a"]
    assert result["inter_judge"] is None  # no judgements.jsonl

    on_disk = json.loads((job / "agreement.json").read_text())
    assert on_disk == result
    assert "correctness" in text and "overall" in text and "judge 5" in text
    assert "unstable" in text  # n = 5 < 20


def test_rewriting_keeps_human_scores_and_adds_rows(tmp_path):
    recs = _records()
    job = _job(tmp_path, recs, torn=False)
    path = write_annotations(job)
    _fill(path, {("p1", "0", "correctness"): "2", ("p2", "0", "clarity"): "x?"}, notes="mine")
    before = path.read_text(encoding="utf-8").splitlines()
    # a re-grade changes a judge score, and a later round adds a graded answer
    recs[0]["judge"]["scores"]["correctness"] = 5
    recs.append(_record("p2", 1, "late answer", {"correctness": 1, "clarity": 1}))
    _job(tmp_path, recs, torn=False)
    write_annotations(job)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    by_key = {(r["prompt_id"], r["round"], r["aspect"]): r for r in rows}
    kept = by_key[("p1", "0", "correctness")]
    assert kept["human_score"] == "2" and kept["notes"] == "mine"
    assert kept["judge_score"] == "5"  # the judge column is refreshed
    assert by_key[("p2", "0", "clarity")]["human_score"] == "x?"  # kept verbatim, even if invalid
    assert by_key[("p2", "1", "clarity")]["human_score"] == ""
    # existing order first, new rows at the end
    assert [(r["prompt_id"], r["round"]) for r in rows[-2:]] == [("p2", "1"), ("p2", "1")]
    assert len(before) < len(path.read_text(encoding="utf-8").splitlines())


def test_malformed_annotations_name_row_and_column(tmp_path):
    job = _job(tmp_path, _records())
    path = write_annotations(job)
    # the first data row's output spans several physical lines: rows are counted as a spreadsheet
    # shows them (header = row 1), not as lines of text
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[5]["human_score"] = "x"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(UserError) as e:
        read_annotations(path)
    assert str(e.value) == "annotations.csv row 7, column human_score: 'x' is not an integer 1-5"

    for bad in ("6", "0", "3.5", "four"):
        rows[5]["human_score"] = bad
        _write_rows(path, rows)
        with pytest.raises(UserError, match=rf"row 7, column human_score: '{bad}'"):
            read_annotations(path)

    rows[5]["human_score"] = "3"
    rows[2]["judge_score"] = "9"
    _write_rows(path, rows)
    with pytest.raises(UserError, match=r"row 4, column judge_score: '9' is not an integer 1-5"):
        read_annotations(path)


def _write_rows(path, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def test_annotations_missing_file_and_columns(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_annotations(tmp_path / "annotations.csv")
    p = tmp_path / "annotations.csv"
    p.write_text("prompt_id,model,round,aspect,output,score\np1,m1,0,c,text,4\n")
    with pytest.raises(UserError) as e:
        read_annotations(p)
    assert "judge_score" in str(e.value) and "human_score" in str(e.value) and "notes" in str(e.value)
    assert "\n" not in str(e.value)


def test_agreement_preconditions(tmp_path):
    job = _job(tmp_path, _records())
    with pytest.raises(UserError, match="slmbench annotate"):
        agreement(job)
    write_annotations(job)
    with pytest.raises(UserError, match="no human labels yet"):
        agreement(job)
    assert not (job / "agreement.json").exists()


# -- between judges --------------------------------------------------------------------------------

def _grading(judge, pid, rnd, scores, repeat=0, probe=None, error=None):
    return {"prompt_id": pid, "round": rnd, "model": "m1", "judge_model": judge, "repeat": repeat,
            "probe": probe, "scores": scores, "rationales": {}, "error": error}


def test_inter_judge_alpha(tmp_path):
    job = _job(tmp_path, _records())
    assert inter_judge_report(job) is None  # no judgements.jsonl
    units = [("p1", 0, 4, 2), ("p2", 0, 2, 5), ("p1", 1, 5, 3), ("p2", 1, 1, 1)]
    lines = []
    for judge in ("judge-a", "judge-b"):
        for pid, rnd, c, k in units:
            lines.append(_grading(judge, pid, rnd, {"correctness": c, "clarity": k}))
    # these must all be ignored: repeats, injection probes, failed gradings, a third judge alone
    lines.append(_grading("judge-b", "p1", 0, {"correctness": 1, "clarity": 5}, repeat=1))
    lines.append(_grading("judge-b", "p2", 0, {"correctness": 5, "clarity": 1}, probe="injection"))
    lines.append(_grading("judge-a", "p1", 1, {}, error="unparseable"))
    lines.append(_grading("judge-c", "p9", 0, {"correctness": 1}))
    (job / "judgements.jsonl").write_text("".join(json.dumps(g) + "\n" for g in lines) + '{"torn')
    rep = inter_judge_report(job)
    assert rep["judges"] == ["judge-a", "judge-b"]
    assert rep["aspects"]["correctness"] == {"n_units": 4, "alpha": pytest.approx(1.0), "low_n": True}
    assert rep["overall"]["n_units"] == 8 and rep["overall"]["alpha"] == pytest.approx(1.0)

    # judge-b disagrees on one unit: alpha drops below 1 and equals the direct computation
    lines[4] = _grading("judge-b", "p1", 0, {"correctness": 1, "clarity": 2})
    (job / "judgements.jsonl").write_text("".join(json.dumps(g) + "\n" for g in lines))
    rep = inter_judge_report(job)
    expected = krippendorff_alpha([[4, 2, 5, 1], [1, 2, 5, 1]], "ordinal")
    assert rep["aspects"]["correctness"]["alpha"] == pytest.approx(expected)
    assert expected < 1
    assert rep["aspects"]["clarity"]["alpha"] == pytest.approx(1.0)

    # one judge only: no report
    (job / "judgements.jsonl").write_text("".join(json.dumps(g) + "\n" for g in lines[:4]))
    assert inter_judge_report(job) is None


def test_format_report_shows_inter_judge_table(tmp_path):
    rows = [{"aspect": "clarity", "human_score": h, "judge_score": h} for h in [1, 2, 3, 4, 5] * 4]
    report = {"judge_models": ["judge-a"], "judge_human": judge_human_report(rows),
              "inter_judge": {"judges": ["a", "b"], "level": "ordinal",
                              "aspects": {"clarity": {"n_units": 25, "alpha": 0.5, "low_n": False}},
                              "overall": {"n_units": 25, "alpha": 0.5, "low_n": False}}}
    text = format_report(report)
    assert "unstable" not in text  # n = 20
    assert "1.000" in text and "Krippendorff alpha" in text and "0.500" in text
    assert "| human 3 |" in text
