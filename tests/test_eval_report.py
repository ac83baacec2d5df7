"""The report: the model card's table, latency percentiles, per-question exports, run deltas."""

import csv
import json

from sqlcoder_eval.cli import main
from sqlcoder_eval.report import compare_runs, format_table, percentile, summarize, write_csv, write_json


def rec(run, id, category, correct, latency=None, skipped=None, error=None):
    return {"run": run, "id": id, "db_name": "shop", "category": category, "question": f"q{id}", "correct": correct,
            "exact": correct, "skipped": skipped, "error": error, "latency_ms": latency, "generated": "SELECT 1",
            "gold": "SELECT 1", "instructions": "", "note": "", "exec_ms": 1.0, "predictions": "ask"}


RUN_A = [rec("a", 0, "group_by", True, 100), rec("a", 1, "group_by", False, 200, error="boom"),
         rec("a", 2, "date_functions", True, 300), rec("a", 3, "ratio", False, 400),
         rec("a", 4, "ratio", False, skipped="no perturbation")]
RUN_B = [rec("b", 0, "group_by", True, 50), rec("b", 1, "group_by", True, 50),
         rec("b", 2, "date_functions", False, 50), rec("b", 3, "ratio", False, 50)]


def test_percentile_interpolates_like_numpy():
    assert percentile([100, 200, 300, 400], 50) == 250
    assert percentile([100, 200, 300, 400], 95) == 385
    assert percentile([], 50) is None


def test_summary_counts_per_category_and_leaves_skipped_questions_out():
    s = summarize(RUN_A)["a"]
    assert s.categories == {"group_by": (1, 2), "date_functions": (1, 1), "ratio": (0, 1)}
    assert s.skipped == [4] and s.errors == 1
    assert s.percent() == 50.0 and s.percent("group_by") == 50.0


def test_table_has_one_row_per_run_and_the_model_card_column_order():
    lines = format_table(list(summarize(RUN_A + RUN_B).values())).splitlines()
    assert lines[0].split() == ["run", "date_functions", "group_by", "ratio", "overall", "n", "errors", "skipped",
                                "p50_s", "p95_s"]
    assert lines[1].split() == ["a", "100.0", "50.0", "0.0", "50.0", "4", "1", "1", "0.25", "0.39"]
    assert lines[2].split()[:5] == ["b", "0.0", "100.0", "0.0", "50.0"]


def test_compare_shows_deltas_and_the_questions_that_changed():
    out = compare_runs(RUN_A, RUN_B)
    assert "group_by" in out and "+50.0" in out and "-100.0" in out
    assert "#1 shop/group_by wrong -> right" in out and "#2 shop/date_functions right -> wrong" in out
    assert "2 questions changed" in out


def test_exports_hold_every_question(tmp_path):
    write_csv(RUN_A + RUN_B, tmp_path / "all.csv")
    write_json(RUN_A, tmp_path / "a.json")
    rows = list(csv.DictReader(open(tmp_path / "all.csv")))
    assert len(rows) == 9 and rows[1]["error"] == "boom"
    assert [r["id"] for r in json.loads((tmp_path / "a.json").read_text())] == [0, 1, 2, 3, 4]


def test_report_command_reads_results_files(tmp_path, capsys):
    for name, records in (("a", RUN_A), ("b", RUN_B)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--csv", str(tmp_path / "x.csv")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("a ")
    assert main(["report", "--compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 0
    assert "A = a, B = b" in capsys.readouterr().out
