"""The report: the model card's table, latency percentiles, per-question exports, run deltas."""

import csv
import json

import pytest

from sqlcoder_eval.cli import main
from sqlcoder_eval.report import (
    MixedJudges,
    compare_runs,
    format_by_file,
    format_table,
    percentile,
    summarize,
    write_csv,
    write_json,
)


def rec(run, id, category, correct, latency=None, skipped=None, error=None, judge="sql-eval",
        source="questions_gen_postgres.csv"):
    return {"run": run, "id": id, "db_name": "shop", "category": category, "question": f"q{id}", "correct": correct,
            "exact": correct, "skipped": skipped, "error": error, "latency_ms": latency, "generated": "SELECT 1",
            "gold": "SELECT 1", "instructions": "", "note": "", "exec_ms": 1.0, "predictions": "ask",
            "judge": judge, "source": source}


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
    assert lines[0].split() == ["run", "judge", "date_functions", "group_by", "ratio", "overall", "n", "errors",
                                "skipped", "p50_s", "p95_s"]
    assert lines[1].split() == ["a", "sql-eval", "100.0", "50.0", "0.0", "50.0", "4", "1", "1", "0.25", "0.39"]
    assert lines[2].split()[:6] == ["b", "sql-eval", "0.0", "100.0", "0.0", "50.0"]


def test_records_from_before_the_two_judges_were_scored_strictly():
    old = [{k: v for k, v in r.items() if k != "judge"} for r in RUN_A]
    assert summarize(old)["a"].judge == "strict"
    assert summarize(old + [rec("a", 9, "ratio", True)])["a"].judge == "mixed"


def test_compare_refuses_runs_of_different_judges_unless_told():
    strict_b = [dict(r, judge="strict") for r in RUN_B]
    with pytest.raises(MixedJudges, match="--mixed-judges"):
        compare_runs(RUN_A, strict_b)
    assert "A = a (judge sql-eval), B = b (judge strict)" in compare_runs(RUN_A, strict_b, mixed_judges=True)


def test_several_question_files_are_reported_per_file():
    other = [rec("a", 10 + i, "instructions_cte_join", i % 2 == 0, source="instruct_advanced_postgres.csv")
             for i in range(4)]
    out = format_by_file(RUN_A + other)
    assert "file questions_gen_postgres.csv: 5 questions" in out
    assert "file instruct_advanced_postgres.csv: 4 questions" in out
    assert "instructions_cte_join" in out.split("instruct_advanced_postgres.csv")[1]
    assert format_by_file(RUN_A) == ""


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
    assert "A = a (judge sql-eval), B = b (judge sql-eval)" in capsys.readouterr().out
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(dict(r, judge="strict")) + "\n" for r in RUN_B))
    assert main(["report", "--compare", str(tmp_path / "a.jsonl"), str(tmp_path / "s.jsonl")]) == 2
    assert "scored by the sql-eval judge" in capsys.readouterr().err
    assert main(["report", "--compare", str(tmp_path / "a.jsonl"), str(tmp_path / "s.jsonl"), "--mixed-judges"]) == 0


def test_report_into_a_closed_pipe_ends_quietly(tmp_path):
    """`sqlcoder-eval report --compare a b | head`: the reader leaves early, no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    for name, records in (("a", RUN_A), ("b", RUN_B)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    python_dir = Path(__file__).resolve().parents[2] / "python"
    r = subprocess.run([sys.executable, "-m", "sqlcoder_eval.cli", "report", "--compare",
                        str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")],
                       stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(python_dir)})
    os.close(write_end)
    assert r.stderr == ""
    assert r.returncode == 141
