"""The sql-eval judge, one quirk per test, on hand-made result sets; the judges' dispatch and
``sqlcoder-eval judge`` on cases whose expected verdicts came from sql-eval's own code."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from sqlcoder_eval import sqleval_judge as sj
from sqlcoder_eval.cli import main
from sqlcoder_eval.compare import ResultSet
from sqlcoder_eval.execute import QueryError
from sqlcoder_eval.judges import Outcome, verdict

SMALL = Path(__file__).parent / "data"
R = ResultSet.of
UNORDERED = ("group_by", "How many orders per customer?")
ORDERED = ("order_by", "List the customers by number of orders")


def F(columns, rows):
    return sj.frame_of(R(columns, rows))


def exact(gold, gen, kind=UNORDERED, gold_sql=None, gen_sql=None):
    return sj.compare_df(F(*gold), F(*gen), *kind, gold_sql, gen_sql)


def judged(gold_text, results, gen, kind=UNORDERED, gen_sql="SELECT 1"):
    """Judge ``gen`` with the sql-eval judge; ``results`` maps each gold variant to its result."""
    return verdict("sql-eval", gold_text, list(results.items()), gen_sql, R(*gen), *kind)


# -- the first, broadcast comparison ------------------------------------------------

def test_an_empty_answer_equals_a_one_row_gold():
    assert exact((["n"], [(5,)]), (["n"], []))
    assert exact((["a", "b"], [(1, 2)]), (["x", "y"], []))


def test_a_one_row_answer_equals_an_empty_gold_of_one_column():
    assert exact((["n"], []), (["name", "city"], [("Ada", "Paris")]))


def test_an_empty_answer_does_not_equal_a_gold_of_several_rows():
    assert not exact((["n"], [(1,), (2,)]), (["n"], []))


def test_a_single_gold_value_equals_an_answer_repeating_it():
    assert exact((["c"], [("Books",)]), (["c"], [("Books",), ("Books",)]))
    assert not exact((["c"], [("Books",)]), (["c"], [("Books",), ("Home",)]))


# -- values as pandas holds them ----------------------------------------------------

def test_numeric_becomes_float_and_an_integer_column_with_null_too():
    f = F(["d", "i", "j"], [(Decimal("1.5"), 1, None), (Decimal("2"), None, None)])
    assert f.kinds == ("float", "float", "object")
    assert f.rows[0][0] == 1.5 and f.rows[1][1] != f.rows[1][1]  # NaN


def test_datetimes_with_null_become_nat_and_dates_stay_objects():
    f = F(["ts", "d"], [(datetime(2024, 1, 1), None), (None, None)])
    assert f.kinds == ("datetime", "object")


def test_exact_comparison_has_no_float_tolerance():
    assert not exact((["r"], [(1 / 3,), (1.0,)]), (["r"], [(0.3333334,), (1.0,)]))


def test_null_equals_the_fill_value_after_normalising():
    assert exact((["n", "m"], [(None, 1)]), (["n", "m"], [(-99999, 1)]))
    # NULLs sort last before the fill, so with several rows the positions must still agree.
    assert not exact((["n"], [(None,), (1,)]), (["n"], [(-99999,), (1,)]))


def test_duplicate_column_names_raise_unless_the_first_comparison_matched():
    with pytest.raises(sj.JudgeError):
        exact((["id", "name"], [(1, "a"), (2, "b")]), (["id", "name", "name"], [(1, "a", "a"), (2, "b", "b")]))
    assert exact((["a", "b"], [(1, 1)]), (["a", "a"], [(1, 1)]))


# -- ordering -----------------------------------------------------------------------

def test_unordered_rows_are_sorted_on_every_column_with_nulls_last():
    assert exact((["a", "b"], [(2, "x"), (None, "y"), (1, "z")]), (["b", "a"], [("z", 1), ("y", None), ("x", 2)]))


def test_order_key_is_read_after_order_by_with_one_space_up_to_a_comma():
    assert sj.order_key("SELECT a, b FROM t ORDER BY t.b DESC, a") == (["b"], False)
    assert sj.order_key("SELECT a FROM t ORDER BY a ASC NULLS LAST LIMIT 3") == (["a", "3"], True)
    assert sj.order_key("SELECT a FROM t ORDER  BY a ASC") is None


def test_order_key_stops_at_a_newline_and_then_sorts_every_column_descending():
    assert sj.order_key("SELECT a FROM t ORDER BY a ASC\nLIMIT 3") == ([], False)
    assert sj.order_key("SELECT a FROM t ORDER BY a ASC\n") == (["a"], True)  # a final newline ends the text
    out = sj.normalize(F(["a", "b"], [(1, "x"), (2, "y")]), *ORDERED, "SELECT a, b FROM t ORDER BY a\nASC")
    assert out.rows == ((2, "y"), (1, "x"))


def test_order_key_comes_from_the_first_order_by_of_the_whole_gold_text():
    gold = "SELECT a, b FROM t ORDER BY b ASC;SELECT a, b FROM t ORDER BY a DESC"
    assert sj.order_key(gold) == (["b"], True)


def test_order_key_without_direction_sorts_descending_and_moves_the_key_last():
    out = sj.normalize(F(["n", "name"], [(1, "a"), (2, "b")]), *ORDERED, "SELECT n, name FROM t ORDER BY n")
    assert out.columns == ("name", "n") and out.rows == (("b", 2), ("a", 1))


def test_ordered_question_without_order_by_keeps_the_returned_order():
    assert not exact((["a"], [(1,), (2,)]), (["a"], [(2,), (1,)]), ORDERED, "SELECT a FROM t", "SELECT a FROM t")


# -- the subset rule ------------------------------------------------------------------

def test_subset_allows_extra_columns_and_renamed_ones():
    assert sj.subset_df(F(["n"], [(1,), (2,)]), F(["id", "x"], [(9, 2), (8, 1)]), *UNORDERED)


def test_subset_keeps_the_returned_order_of_an_ordered_question():
    gold, gen = F(["n"], [(1,), (2,)]), F(["x", "y"], [(2, 0), (1, 0)])
    assert not sj.subset_df(gold, gen, *ORDERED)
    assert sj.subset_df(gold, gen, *UNORDERED)


def test_subset_tolerance_applies_between_floats_only():
    assert sj.subset_df(F(["r"], [(0.25,)]), F(["r", "x"], [(0.2500001, 1)]), *UNORDERED)
    assert not sj.subset_df(F(["n"], [(1,)]), F(["n", "x"], [(1.0000001, 2)]), *UNORDERED)


def test_a_timestamptz_equals_a_timestamp_by_its_utc_wall_clock_in_the_subset_rule_only():
    """pandas 2.2 (checked by hand: read_sql_query's UTC conversion, then assert_series_equal with
    check_dtype=False) takes 10:00+01 for the naive 09:00, and 10:00+01 for no naive 10:00."""
    plus_one = timezone(timedelta(hours=1))
    aware = [(datetime(2024, 1, 1, 10, tzinfo=plus_one),), (datetime(2024, 1, 2, 10, tzinfo=plus_one),)]
    gold = (["t"], [(datetime(2024, 1, 1, 9),), (datetime(2024, 1, 2, 9),)])
    assert F(["t"], aware).rows[0][0].utcoffset() == timedelta(0)
    assert sj.subset_df(F(*gold), F(["t", "x"], [r + (1,) for r in aware]), *UNORDERED)
    assert not exact(gold, (["t"], aware))
    assert not sj.subset_df(F(["t"], [(datetime(2024, 1, 1, 10),), (datetime(2024, 1, 2, 10),)]),
                            F(["t"], aware), *UNORDERED)
    assert judged("SELECT t FROM x", {"SELECT t FROM x": R(*gold)}, (["t"], aware)) == Outcome(False, True, None)


def test_subset_of_an_empty_gold_is_false():
    assert not sj.subset_df(F(["n"], []), F(["n"], []), *UNORDERED)


# -- the harness: % and statements ------------------------------------------------------

def test_percent_is_doubled_from_like_to_the_last_quote_and_fails_elsewhere():
    assert sj.query_text("SELECT a FROM t WHERE a LIKE 'x%'") == ["SELECT a FROM t WHERE a LIKE 'x%'"]
    assert sj.query_text("SELECT '5%%' AS s") == ["SELECT '5%' AS s"]
    for sql in ("SELECT 7 % 3", "SELECT a FROM t WHERE a LIKE 'x%' AND b % 2 = 0", "SELECT '50%'"):
        with pytest.raises(sj.JudgeError):
            sj.query_text(sql)


def test_several_statements_are_all_run():
    assert sj.query_text("SELECT 1; SELECT 2;") == ["SELECT 1", " SELECT 2"]
    assert sj.query_text("SELECT ';' AS s") == ["SELECT ';' AS s"]


# -- over the gold variants ---------------------------------------------------------------

def test_the_first_exact_variant_ends_the_loop_before_a_failing_one():
    gold = "SELECT n FROM t;SELECT n FROM missing"
    results = {"SELECT n FROM t": R(["n"], [(1,)]), "SELECT n FROM missing": QueryError("no such table")}
    assert judged(gold, results, (["n"], [(1,)])) == Outcome(True, True)


def test_a_failing_variant_after_a_subset_match_makes_the_answer_wrong():
    gold = "SELECT n FROM t;SELECT n FROM missing"
    results = {"SELECT n FROM t": R(["n"], [(1,)]), "SELECT n FROM missing": QueryError("no such table")}
    out = judged(gold, results, (["n", "x"], [(1, 2)]))
    assert not out.correct and "gold query failed" in out.error


def test_strict_judge_refuses_any_failing_variant_and_keeps_today_s_rules():
    results = [("SELECT n FROM t", R(["n"], [(5,)]))]
    assert verdict("strict", "SELECT n FROM t", results, "SELECT n FROM t LIMIT 0", R(["n"], []),
                   *UNORDERED) == Outcome(False, False)
    failing = results + [("SELECT n FROM missing", QueryError("no such table"))]
    assert verdict("strict", "x", failing, "SELECT 1", R(["n"], [(5,)]), *UNORDERED).error


def test_unknown_judge_is_refused():
    with pytest.raises(ValueError, match="unknown judge"):
        verdict("loose", "SELECT 1", [], "SELECT 1", R(["n"], []), *UNORDERED)


# -- the judge command, against sql-eval's recorded verdicts ----------------------------------

@pytest.mark.slow
def test_judge_command_agrees_with_sql_eval_on_cases_built_from_its_source(capsys):
    cases = SMALL / "judge_cases.csv"
    assert main(["judge", "--data", str(SMALL), "--cases", str(cases), "--judge", "sql-eval"]) == 0
    out = capsys.readouterr()
    rows = list(csv.DictReader(open(cases, newline="", encoding="utf-8")))
    expected = [f"JUDGE {i} exact={r['sql_eval_exact']} subset={r['sql_eval_subset']}" for i, r in enumerate(rows)]
    assert out.out.splitlines() == expected
    assert "NOTE 4 " in out.err  # the duplicate column names: sql-eval raised


def test_judge_command_refuses_a_cases_file_without_its_columns(tmp_path, capsys):
    bad = tmp_path / "cases.csv"
    bad.write_text("db_name,question,query\nshop,q,SELECT 1\n")
    assert main(["judge", "--dsn", "", "--cases", str(bad), "--judge", "strict"]) == 2
    assert "needs the columns db_name, question, gold, answer" in capsys.readouterr().err


def test_cases_script_writes_gold_variants_and_perturbations_or_rewrites():
    import subprocess
    import sys

    script = Path(__file__).parents[2] / "scripts" / "sql_eval_cases.py"
    questions = SMALL / "questions_gen_postgres.csv"
    for extra in ([], ["--rewrites"]):
        out = subprocess.run([sys.executable, str(script), *extra, str(questions)], check=True,
                             capture_output=True, text=True).stdout
        rows = list(csv.DictReader(out.splitlines(keepends=True)))
        assert list(rows[0]) == ["db_name", "question", "gold", "answer", "query_category"]
        assert {r["question"] for r in rows} == {q["question"] for q in csv.DictReader(open(questions))}
        if not extra:  # each question's gold answer, then its perturbations
            assert all(any(r["answer"] == r["gold"].split(";")[0].strip() for r in rows if r["question"] == q)
                       for q in {r["question"] for r in rows})
            assert len(rows) > 3 * len({r["question"] for r in rows})
        else:
            assert sum(" UNION ALL " in r["answer"] for r in rows) >= len({r["question"] for r in rows})
