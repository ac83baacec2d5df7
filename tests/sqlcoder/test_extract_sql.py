"""Cutting the model's completion back to one statement, as SQLCoder's reference inference does."""

import pytest

from sqlcoder.errors import NoSQLGenerated
from sqlcoder.prompt import extract_sql


@pytest.mark.parametrize("completion, sql", [
    ("SELECT 1;\n[/SQL]", "SELECT 1;"),
    (" SELECT count(*) FROM t\n[/SQL] trailing words", "SELECT count(*) FROM t;"),
    ("```sql\nSELECT a FROM t;\n```", "SELECT a FROM t;"),
    ("SELECT a FROM t; DROP TABLE t;", "SELECT a FROM t;"),
    ("[SQL]\nSELECT 2;[/SQL]", "SELECT 2;"),
    ("  SELECT 3  ", "SELECT 3;"),
])
def test_completion_is_cut_to_one_statement(completion: str, sql: str) -> None:
    assert extract_sql(completion) == sql


@pytest.mark.parametrize("completion", ["", "   \n[/SQL]", ";", "I do not know", "I do not know;[/SQL]"])
def test_no_sql_is_an_error(completion: str) -> None:
    with pytest.raises(NoSQLGenerated) as err:
        extract_sql(completion)
    assert err.value.sqlstate == "22000" and err.value.hint


@pytest.mark.parametrize("completion", ["SELECT id FROM t WHERE a = 1 AND a = 1 AND", "[SQL]\n```sql\nSELECT x, y,"])
def test_an_answer_cut_by_max_new_tokens_is_reported_as_cut(completion: str) -> None:
    from sqlcoder.errors import AnswerRepeats, AnswerTruncated

    with pytest.raises(AnswerTruncated) as cut:
        extract_sql(completion, "length")
    assert cut.value.sqlstate == "22001" and "max_new_tokens" in cut.value.hint
    assert cut.value.detail == f"model output: {completion!r}"  # the model's text, for history and sqlcoder-eval
    with pytest.raises(AnswerRepeats) as looped:
        extract_sql(completion, "repetition")
    assert looped.value.sqlstate == "22001" and "--repetition-guard-tokens" in looped.value.hint


@pytest.mark.parametrize("completion", ["SELECT 1; SELECT 1; SELECT", "SELECT 1\n[/SQL] and more words",
                                        "SELECT 1\n```\nx"])
def test_a_finished_query_before_the_cut_is_kept(completion: str) -> None:
    """max_new_tokens ran out after the query had ended: the query stands (as sql-eval cuts at ';')."""
    assert extract_sql(completion, "length") == "SELECT 1;"
    assert extract_sql(completion, "repetition") == "SELECT 1;"
    assert extract_sql("SELECT 1", "eos") == "SELECT 1;"
