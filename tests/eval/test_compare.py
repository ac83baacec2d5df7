"""The comparison rules of sql-eval, each on small hand-made result sets."""

from decimal import Decimal

import pytest

from sqlcoder_eval.compare import (
    ResultSet,
    asks_for_order,
    compare_df,
    compare_results,
    normalize,
    subset_df,
    values_equal,
)

R = ResultSet.of
UNORDERED = ("group_by", "How many orders per customer?")
ORDERED = ("order_by", "List the customers by number of orders")


def exact(gold, gen, kind=UNORDERED, gold_sql=None, gen_sql=None, policy="sql-eval"):
    return compare_df(gold, gen, *kind, gold_sql, gen_sql, policy)


# -- normalisation ------------------------------------------------------------

def test_identical_results_match():
    gold = R(["name", "n"], [("a", 1), ("b", 2)])
    assert exact(gold, gold)


def test_columns_are_compared_after_sorting_them_by_name():
    gold = R(["name", "n"], [("a", 1), ("b", 2)])
    assert exact(gold, R(["n", "name"], [(1, "a"), (2, "b")]))


def test_rows_are_sorted_when_the_question_asks_for_no_order():
    gold = R(["name", "n"], [("a", 1), ("b", 2), (None, 3)])
    assert exact(gold, R(["name", "n"], [(None, 3), ("b", 2), ("a", 1)]))


def test_rows_keep_their_order_for_an_ordered_question_without_order_by():
    gold = R(["name"], [("a",), ("b",)])
    gen = R(["name"], [("b",), ("a",)])
    assert not exact(gold, gen, ORDERED, "SELECT name FROM t", "SELECT name FROM t")
    assert exact(gold, gen, UNORDERED, "SELECT name FROM t", "SELECT name FROM t")


def test_strict_policy_keeps_the_returned_order_of_ordered_questions():
    gold = R(["name", "n"], [("a", 2), ("b", 1)])
    gen = R(["name", "n"], [("b", 1), ("a", 2)])
    sql = "SELECT name, n FROM t ORDER BY n DESC"
    assert not exact(gold, gen, ORDERED, sql, "SELECT name, n FROM t ORDER BY n", policy="strict")


def test_sql_eval_policy_re_sorts_ordered_rows_by_the_first_order_by_key():
    # sql-eval sorts both results by their first ORDER BY key (descending unless it says ASC) and
    # then by every other column, so ties and the returned order do not matter...
    gold = R(["name", "n"], [("a", 2), ("b", 1)])
    gen = R(["name", "n"], [("b", 1), ("a", 2)])
    assert exact(gold, gen, ORDERED, "SELECT name, n FROM t ORDER BY n DESC", "SELECT name, n FROM t ORDER BY t.n")
    # ...but an explicit ASC against a DESC does.
    assert not exact(gold, gen, ORDERED, "SELECT name, n FROM t ORDER BY n DESC",
                     "SELECT name, n FROM t ORDER BY n ASC")


def test_sql_eval_policy_moves_the_order_key_column_last():
    res = R(["a", "n", "z"], [(1, 5, "x"), (2, 7, "y")])
    out = normalize(res, *ORDERED, "SELECT a, n, z FROM t ORDER BY n ASC NULLS LAST")
    assert out.columns == ("a", "z", "n")
    assert out.rows == ((1, "x", 5), (2, "y", 7))


def test_duplicate_rows_are_dropped():
    gold = R(["name"], [("a",), ("b",)])
    assert exact(gold, R(["name"], [("a",), ("b",), ("a",)]))


def test_duplicate_column_names_are_dropped():
    gold = R(["id", "name"], [(1, "a")])
    assert exact(gold, R(["id", "name", "name"], [(1, "a", "a")]))


def test_floats_match_within_tolerance_and_not_beyond():
    gold = R(["ratio"], [(1 / 3,)])
    assert exact(gold, R(["ratio"], [(0.3333334,)]))
    assert not exact(gold, R(["ratio"], [(0.3334,)]))


def test_decimal_and_float_compare_by_value():
    assert exact(R(["avg"], [(Decimal("2.3333333333333333"),)]), R(["avg"], [(7 / 3,)]))
    assert values_equal(Decimal("10.00"), 10)
    assert not values_equal(Decimal("10.01"), 10)


def test_null_equals_null_only():
    assert values_equal(None, None) and values_equal(float("nan"), None)
    assert not values_equal(None, 0) and not values_equal("", None)


def test_different_row_counts_do_not_match():
    assert not exact(R(["n"], [(1,), (2,)]), R(["n"], [(1,)]))


def test_empty_results_match_when_shaped_alike():
    assert exact(R(["n"], []), R(["count"], []))
    assert not exact(R(["n"], []), R(["a", "b"], []))


def test_mixed_types_in_a_column_still_sort():
    gold = R(["v"], [(1,), ("x",), (None,)])
    assert exact(gold, R(["v"], [("x",), (None,), (1,)]))


def test_ordering_words_follow_sql_eval():
    assert asks_for_order("order_by", "anything")
    assert asks_for_order("group_by", "Sort the results by name")
    assert asks_for_order("ratio", "Arrange them by size")
    # sql-eval matches whole words only: "ordered" and "sorted" do not ask for an order.
    assert not asks_for_order("group_by", "Publications ordered by year")
    assert not asks_for_order("group_by", "How many per year?")


# -- the subset rule ------------------------------------------------------------

def test_extra_columns_in_the_answer_are_allowed():
    gold = R(["name", "n"], [("a", 1), ("b", 2)])
    gen = R(["id", "name", "n"], [(10, "a", 1), (20, "b", 2)])
    assert not exact(gold, gen)
    assert subset_df(gold, gen, *UNORDERED)


def test_a_missing_gold_column_fails_the_subset_rule():
    gold = R(["name", "n"], [("a", 1), ("b", 2)])
    assert not subset_df(gold, R(["name"], [("a",), ("b",)]), *UNORDERED)


def test_subset_rule_ignores_column_names_and_row_order():
    gold = R(["name", "n"], [("a", 1), ("b", 2)])
    gen = R(["x", "customer", "total"], [(0, "b", 2), (0, "a", 1)])
    assert subset_df(gold, gen, *UNORDERED)


def test_each_answer_column_matches_one_gold_column_only():
    gold = R(["a", "b"], [(1, 1), (2, 2)])
    assert not subset_df(gold, R(["x", "y"], [(1, "p"), (2, "q")]), *UNORDERED)
    assert subset_df(gold, R(["x", "y", "z"], [(1, "p", 1), (2, "q", 2)]), *UNORDERED)


def test_matched_columns_must_still_line_up_row_by_row():
    # Each column's values match as sorted lists, but the pairs differ.
    gold = R(["name", "n"], [("a", 1), ("b", 2)])
    gen = R(["name", "n", "extra"], [("a", 2, 0), ("b", 1, 0)])
    assert not subset_df(gold, gen, *UNORDERED)


def test_an_empty_gold_result_is_never_a_subset():
    assert not subset_df(R(["n"], []), R(["n", "m"], []), *UNORDERED)


def test_subset_values_use_the_float_tolerance():
    gold = R(["ratio"], [(0.5,), (0.25,)])
    assert subset_df(gold, R(["id", "r"], [(1, 0.2500000001), (2, 0.5)]), *UNORDERED)


# -- over all gold variants ---------------------------------------------------

def test_any_gold_variant_can_make_an_answer_exact():
    gold = [("SELECT id FROM t", R(["id"], [(1,), (2,)])),
            ("SELECT name FROM t", R(["name"], [("a",), ("b",)]))]
    v = compare_results(gold, "SELECT name FROM t", R(["name"], [("b",), ("a",)]), *UNORDERED)
    assert v.exact and v.correct


def test_a_superset_of_some_variant_is_correct_but_not_exact():
    gold = [("SELECT id, n FROM t", R(["id", "n"], [(1, 5)])), ("SELECT name, n FROM t", R(["name", "n"], [("a", 5)]))]
    v = compare_results(gold, "SELECT name, n, city FROM t", R(["name", "n", "city"], [("a", 5, "Paris")]), *UNORDERED)
    assert v.correct and not v.exact


def test_no_variant_matching_is_wrong():
    gold = [("SELECT n FROM t", R(["n"], [(5,)]))]
    v = compare_results(gold, "SELECT n + 1 FROM t", R(["n"], [(6,)]), *UNORDERED)
    assert not v.correct and not v.exact


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        normalize(R(["a"], []), *ORDERED, None, policy="loose")
