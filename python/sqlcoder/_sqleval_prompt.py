"""The prompts defog-ai/sql-eval built for each SQLCoder model, for evaluation on the card's terms.

``sql-eval-sqlcoder-70b`` is sql-eval's ``prompts/prompt.md`` from 7 February 2024
(commit e58d0cb; the 70B's card numbers date from then): the [QUESTION] format
without an Instructions section, so neither the question's instructions nor a
glossary reach the model. ``sql-eval-llama-3-sqlcoder-8b`` is prompt.md from
10 May 2024 (commit d36f08e, llama-3-sqlcoder-8b's evaluation), whose
instructions block is ``Follow the instructions below to generate the query:``
with each sentence on its own line.

sql-eval printed the schema in its own layout, with no blank line between
tables. In February 2024 (``format_topk_sql`` and the join list of
``utils/pruning.py``) the tables sat in a code fence, every column line ending in
a comma and a comment marker (``--``, empty without a description), and the
join pairs followed in a second fence; in May 2024 the full
schema came from ``to_prompt_schema`` (the catalog's own column layout) with the
pairs after ``Here is a list of joinable columns:``. :func:`schema_as_sql_eval`
turns the catalog's rendering into the layout of the template's date; what the
live catalog must render differently (type spelling, constraints, column order,
names as the search path finds them) stays.
"""

from __future__ import annotations

import re

__all__ = ["LLAMA_3_SQLCODER_8B", "SQL_EVAL_GENERIC", "SQL_EVAL_TEMPLATES", "instructions_as_sql_eval",
           "schema_as_sql_eval"]

SQL_EVAL_70B = """### Task
Generate a SQL query to answer [QUESTION]{question}[/QUESTION]

### Database Schema
The query will run on a database with the following schema:
{schema}

### Answer
Given the database schema, here is the SQL query that answers [QUESTION]{question}[/QUESTION]
[SQL]
"""

# llama-3-sqlcoder-8b's own template (its model card), without the leading
# <|begin_of_text|> (the daemon's tokenizer adds it): sql-eval prompted the 8B
# with exactly this, so prompt.py serves it under both names.
LLAMA_3_SQLCODER_8B = """<|start_header_id|>user<|end_header_id|>

Generate a SQL query to answer this question: `{question}`
{instructions}

DDL statements:
{schema}<|eot_id|><|start_header_id|>assistant<|end_header_id|>

The following SQL query best answers the question `{question}`:
```sql
"""

# prompts/prompt.md at commit aa8f045 (6 May 2024), the prompt sql-eval's runners
# (llama_cpp_runner among them) gave every model by default; {instructions} is
# sql-eval's "### Instructions:" block, or nothing.
SQL_EVAL_PROMPT_MD = """### Task
Generate a SQL query to answer [QUESTION]{question}[/QUESTION]
{instructions}

### Database Schema
The query will run on a database with the following schema:
{schema}

### Answer
Given the database schema, here is the SQL query that answers [QUESTION]{question}[/QUESTION]
[SQL]
"""

#: The ``sql-eval`` profile's template for a model without a SQLCoder template of its own.
SQL_EVAL_GENERIC = "sql-eval-prompt-md"

SQL_EVAL_TEMPLATES: dict[str, str] = {
    "sql-eval-sqlcoder-70b": SQL_EVAL_70B,
    "sql-eval-llama-3-sqlcoder-8b": LLAMA_3_SQLCODER_8B,
    SQL_EVAL_GENERIC: SQL_EVAL_PROMPT_MD,
}

_JOIN = re.compile(r"^-- (?P<pair>.+ can be joined with .+)$")
_COLUMN = re.compile(r"^(?P<body>  \S.*?)(?P<comma>,?)(?: --(?P<comment>.*))?$")
_JOINS_HEADER = "Additionally, the following are tables/column pairs that can be joined in this database:"


_CONSTRAINT = re.compile(r" (?:PRIMARY KEY|NOT NULL|UNIQUE|GENERATED (?:ALWAYS|BY DEFAULT) AS (?:IDENTITY|.* STORED))"
                         r"(?=(?: (?:PRIMARY KEY|NOT NULL|UNIQUE|GENERATED .*))*,?(?: --.*)?$)")


def _metadata_only(schema: str) -> str:
    """The catalog's tables as sql-eval's ``to_prompt_schema`` printed metadata: each column's name, type
    and description, no constraint, no table comment, no table-level key line, the last column without
    a comma, and the join pairs after ``Here is a list of joinable columns:``."""
    tables: list[tuple[str, list[str]]] = []
    joins: list[str] = []
    columns: list[tuple[str, str]] | None = None
    for line in schema.splitlines():
        join = _JOIN.match(line)
        if join and columns is None:
            joins.append(join["pair"])
        elif line.startswith("CREATE TABLE ") and line.endswith(" ("):
            tables.append((line[len("CREATE TABLE "):-2].replace('"', ""), [line]))
            columns = []
        elif line == ");" and columns is not None:
            tables[-1][1].extend([f"{b}{',' if i < len(columns) - 1 else ''}{c}" for i, (b, c) in enumerate(columns)]
                                 + [");"])
            columns = None
        elif columns is not None and (m := _COLUMN.match(line)) \
                and not m["body"].startswith(("  PRIMARY KEY (", "  UNIQUE (")):
            columns.append((_CONSTRAINT.sub("", m["body"]), f" --{m['comment']}" if m["comment"] else ""))
    # defog-data's metadata lists a database's tables by the length of their names, then by name.
    tables.sort(key=lambda t: (len(t[0]), t[0]))
    text = "".join("\n".join(lines) + "\n" for _, lines in tables)
    return text + ("\nHere is a list of joinable columns:\n" + "\n".join(joins) if joins else "")


def schema_as_sql_eval(schema: str, template: str) -> str:
    """The catalog's schema text in the layout sql-eval used with ``template`` (see the module docstring)."""
    if template == SQL_EVAL_GENERIC:
        return _metadata_only(schema)
    fenced = template == "sql-eval-sqlcoder-70b"
    tables: list[str] = []
    joins: list[str] = []
    inside = False
    for line in schema.splitlines():
        if not line.strip():
            continue
        join = _JOIN.match(line)
        if join and not inside:
            joins.append(join["pair"])
            continue
        if line.startswith("CREATE TABLE ") and line.endswith(" ("):
            inside = True
        elif line == ");":
            inside = False
        elif inside and fenced and (m := _COLUMN.match(line)):
            # Every column came from a "table.column,type,description" row, so even one without a
            # description got the comment marker.
            line = f"{m['body']}, --{m['comment'] or ''}"
        tables.append(line)
    if not fenced:
        text = "\n".join(tables) + "\n" if tables else ""
        return text + ("\nHere is a list of joinable columns:\n" + "\n".join(joins) if joins else "")
    text = "```\n" + "\n".join(tables) + "\n" if tables else ""
    if joins:
        text += "```\n\n" + _JOINS_HEADER + "\n```\n" + "\n".join(joins) + "\n```"
    return text


def instructions_as_sql_eval(template: str, lines: list[str]) -> str:
    """The instructions block sql-eval put in ``template`` (none for the 70B's)."""
    if template == SQL_EVAL_GENERIC and lines:  # utils/questions.py's prepare_questions_df
        text = "\n".join(lines).replace(". ", ".\n")
        return f"\n### Instructions:\n{text}\n"
    if template != "sql-eval-llama-3-sqlcoder-8b" or not lines:
        return ""
    text = "\n".join(lines).replace(". ", ".\n")
    return f"\nFollow the instructions below to generate the query:\n{text}\n"
