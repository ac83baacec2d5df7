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
