"""Golden examples, self-correction and value hints without a server: ranking, rendering, verdicts."""

from __future__ import annotations

import pytest

from sqlcoder import correction, examples, value_hints
from sqlcoder.catalog import Column, Table
from sqlcoder.ddl import render_table
from sqlcoder.errors import InvalidSql, NotAPlainQuery

E = examples.Example


def test_ranking_prefers_the_rarer_shared_words() -> None:
    index = examples.ExampleIndex.build([
        E(1, "how many orders were shipped", "SELECT 1", (10,)),
        E(2, "how many customers per country", "SELECT 2", (11,)),
        E(3, "total revenue per country last month", "SELECT 3", (12,)),
    ])
    ranked = [index.examples[i].id for _, i in index.ranked("revenue by country", 3)]
    assert ranked[0] == 3 and set(ranked) == {2, 3}  # example 1 shares no word: never ranked
    assert index.ranked("nothing in common", 3) == []


def test_render_is_defogs_kshot_form_one_line_each() -> None:
    text = examples.render([E(1, "first\nquestion", "SELECT a\n  FROM t", (1,)), E(2, "second", "SELECT b", (1,))])
    assert text == ("\n\nCorrect answers to similar questions on this database:\n"
                    "EXAMPLE QUESTION 1: first question\nEXAMPLE QUERY 1: SELECT a FROM t\n\n"
                    "EXAMPLE QUESTION 2: second\nEXAMPLE QUERY 2: SELECT b")
    assert examples.render([]) == ""


@pytest.mark.parametrize("exc, fixable", [
    (InvalidSql("x", sqlstate="42703"), True),
    (InvalidSql("x", sqlstate="42601"), True),
    (InvalidSql("x", sqlstate="42P01"), True),
    (InvalidSql("x", sqlstate="22007"), True),
    (InvalidSql("x", sqlstate="42501"), False),
    (NotAPlainQuery("x"), False),
    (ValueError("x"), False),
])
def test_which_refusals_are_sent_back(exc, fixable) -> None:
    assert correction.fixable(exc) is fixable


def test_the_correction_block_and_the_failure_detail() -> None:
    block = correction.render("SELECT nme\nFROM customers", 'column "nme" does not exist')
    assert block == ("\n\n### Previous attempt\nThis query was written for the question, and PostgreSQL refused it:\n"
                     "SELECT nme FROM customers;\nPostgreSQL's error: column \"nme\" does not exist\n"
                     "Write a query that avoids this error.")
    first = InvalidSql('sqlcoder refused the SQL: column "nme" does not exist', sqlstate="42703")
    assert correction.postgres_message(first) == 'column "nme" does not exist'
    failed = correction.failure(first, [correction.Attempt("SELECT nme", "42703", "no nme", 1.0),
                                        correction.Attempt("SELECT nom", "42703", "no nom", 2.0)])
    assert failed is first
    assert failed.detail == ("attempt 1: SQL: SELECT nme\nattempt 1: error: no nme (SQLSTATE 42703)\n"
                             "attempt 2: SQL: SELECT nom\nattempt 2: error: no nom (SQLSTATE 42703)")
    long = correction.as_json([correction.Attempt("x" * 10_000, None, None, None)])
    assert len(long[0]["sql"]) < 4100


def test_value_hint_helpers() -> None:
    assert value_hints._distinct(3.0, 100.0) == 3.0
    assert value_hints._distinct(-0.5, 40.0) == 20.0
    assert value_hints._distinct(0.0, 40.0) is None and value_hints._distinct(None, 1.0) is None
    assert value_hints.usable("DE") and not value_hints.usable("a\nb") and not value_hints.usable("x" * 41)
    assert not value_hints.usable("") and not value_hints.usable(None)


def test_values_render_in_the_column_comment_quoted() -> None:
    table = Table(1, "public", "orders", columns=[Column("status", "text", comment="order state",
                                                         values=["shipped", "o'neil"])])
    assert "status text --order state; e.g. 'shipped', 'o''neil'" in render_table(table)


@pytest.mark.parametrize("template", ["sqlcoder-70b", "sql-eval-sqlcoder-70b", "sql-eval-llama-3-sqlcoder-8b"])
def test_examples_follow_the_schema_untouched_in_every_template(template) -> None:
    from sqlcoder.prompt import render_prompt
    block = examples.render([E(1, "how many?", "SELECT count(*) FROM t", (1,))])
    text = render_prompt("q", "CREATE TABLE t (\n  id integer\n);", [], template, block)
    assert block.strip() in text  # the blank line and the EXAMPLE lines as rendered, not re-laid out
    assert text.index("CREATE TABLE t") < text.index("EXAMPLE QUESTION 1")
