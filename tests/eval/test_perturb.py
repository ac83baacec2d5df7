"""Perturbations rewrite exactly the clause they name, and the lexer never loses a character."""

from hypothesis import given
from hypothesis import strategies as st

from sqlcoder_eval._sqltokens import tokenize, untokenize
from sqlcoder_eval.perturb import (
    FALLBACKS,
    KINDS,
    candidates,
    change_limit,
    drop_column,
    drop_where,
    reorder_order_by,
    swap_aggregate,
    swap_operator,
)


def sqls(gen):
    return [p.sql for p in gen]


@given(st.text())
def test_tokens_join_back_into_the_input(s):
    assert untokenize(tokenize(s)) == s


def test_statements_are_counted_outside_literals_and_comments():
    from sqlcoder_eval.execute import statement_count

    assert statement_count("SELECT 1;") == 1
    assert statement_count("SELECT ';' -- ; \n ; ") == 1
    assert statement_count("COMMIT; DELETE FROM t") == 2
    assert statement_count(" ; -- nothing") == 0


def test_literals_and_quoted_names_are_single_tokens():
    tokens = [t for t in tokenize("SELECT 'a WHERE b', \"ORDER\" FROM t") if t.kind != "ws"]
    assert [t.kind for t in tokens] == ["word", "string", "op", "quoted", "word", "word"]


def test_drop_where_removes_the_outer_clause_first_then_nested_ones():
    sql = "SELECT a FROM t WHERE x = 1 AND y IN (SELECT y FROM u WHERE z > 2) GROUP BY a"
    assert [" ".join(s.split()) for s in sqls(drop_where(sql))] == [
        "SELECT a FROM t GROUP BY a",
        "SELECT a FROM t WHERE x = 1 AND y IN (SELECT y FROM u ) GROUP BY a",
    ]


def test_where_inside_a_string_is_not_a_clause():
    assert sqls(drop_where("SELECT 'WHERE x' FROM t")) == []


def test_change_limit_tries_one_less_then_one_more():
    assert sqls(change_limit("SELECT a FROM t ORDER BY a LIMIT 5")) == [
        "SELECT a FROM t ORDER BY a LIMIT 4", "SELECT a FROM t ORDER BY a LIMIT 6"]
    assert sqls(change_limit("SELECT a FROM t LIMIT 0")) == ["SELECT a FROM t LIMIT 1"]


def test_swap_aggregate_exchanges_pairs_and_toggles_count_distinct():
    assert sqls(swap_aggregate("SELECT avg(x), MAX(y) FROM t")) == [
        "SELECT SUM(x), MAX(y) FROM t", "SELECT avg(x), MIN(y) FROM t"]
    assert sqls(swap_aggregate("SELECT COUNT(DISTINCT x), count(y), count(*) FROM t")) == [
        "SELECT COUNT(x), count(y), count(*) FROM t", "SELECT COUNT(DISTINCT x), count(DISTINCT y), count(*) FROM t"]
    assert sqls(swap_aggregate("SELECT max_speed FROM t")) == []


def test_reorder_order_by_flips_the_first_key_then_swaps_keys():
    assert sqls(reorder_order_by("SELECT a FROM t ORDER BY a DESC NULLS LAST, b LIMIT 3")) == [
        "SELECT a FROM t ORDER BY a ASC NULLS LAST, b LIMIT 3",
        "SELECT a FROM t ORDER BY b, a DESC NULLS LAST LIMIT 3"]
    assert sqls(reorder_order_by("SELECT a FROM t ORDER BY count(*)")) == ["SELECT a FROM t ORDER BY count(*) DESC"]
    assert sqls(reorder_order_by("SELECT a FROM t ORDER BY a NULLS FIRST")) == [
        "SELECT a FROM t ORDER BY a DESC NULLS FIRST"]


def test_drop_column_needs_two_output_columns():
    assert sqls(drop_column("SELECT DISTINCT a, f(b, c) AS x FROM t")) == [
        "SELECT DISTINCT a FROM t", "SELECT DISTINCT  f(b, c) AS x FROM t"]
    assert sqls(drop_column("SELECT a FROM t")) == []


def test_swap_operator_leaves_stars_and_signs_alone():
    assert sqls(swap_operator("SELECT count(*), t.*, -a, b / c FROM t")) == ["SELECT count(*), t.*, -a, b * c FROM t"]


def test_kinds_rotate_with_the_start_and_fallbacks_come_last():
    sql = "SELECT a, sum(b) FROM t WHERE c ORDER BY a LIMIT 2"
    first = [next(candidates(sql, start)).kind for start in range(len(KINDS))]
    assert first == list(KINDS)
    kinds = [p.kind for p in candidates(sql)]
    first_fallback = min(i for i, k in enumerate(kinds) if k in FALLBACKS)
    assert set(kinds[:first_fallback]) == set(KINDS) and set(kinds[first_fallback:]) <= set(FALLBACKS)


def test_candidates_are_deterministic():
    sql = "SELECT a, sum(b) FROM t WHERE c GROUP BY a ORDER BY 2 DESC LIMIT 2"
    assert sqls(candidates(sql, 3)) == sqls(candidates(sql, 3))
