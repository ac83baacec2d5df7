"""SQLCoder's prompt templates, and how its answer is cut back to one SQL statement."""

from __future__ import annotations

from typing import Iterable

from .errors import NoSQLGenerated

__all__ = ["SQLCODER_70B_TEMPLATE", "render_prompt", "extract_sql"]

# sqlcoder-70b-alpha's template, from prompt.md of defog-ai/sqlcoder, verbatim.
SQLCODER_70B_TEMPLATE = """### Task
Generate a SQL query to answer [QUESTION]{question}[/QUESTION]

### Instructions
- If you cannot answer the question with the available database schema, return 'I do not know'{instructions}

### Database Schema
The query will run on a database with the following schema:
{schema}

### Answer
Given the database schema, here is the SQL query that answers [QUESTION]{question}[/QUESTION]
[SQL]
"""


def render_prompt(question: str, schema: str, instructions: Iterable[str] = ()) -> str:
    """The 70B prompt; extra instructions become more ``- `` lines under the first."""
    extra = "".join(f"\n- {line.strip()}" for line in instructions if line and line.strip())
    return SQLCODER_70B_TEMPLATE.format(question=question, schema=schema, instructions=extra)


def extract_sql(completion: str) -> str:
    """Cut the model's completion the way SQLCoder's reference inference does.

    Everything after a repeated ``[SQL]``, up to ``[/SQL]``, a closing code fence
    or the first ``;``, stripped, with ``;`` appended. Raises
    :class:`NoSQLGenerated` when nothing is left or the model declined.
    """
    text = completion.split("[SQL]")[-1]
    text = text.split("[/SQL]")[0]
    if "```sql" in text:
        text = text.split("```sql")[-1]
    text = text.split("```")[0]
    text = text.split(";")[0].strip()
    if not text:
        raise NoSQLGenerated("the model returned no SQL for this question", detail=f"model output: {completion[:500]!r}")
    if "i do not know" in text.lower() and not text.lower().lstrip("( ").startswith(("select", "with")):
        raise NoSQLGenerated("the model could not answer this question from the schema it was shown",
                             detail=f"model output: {completion[:500]!r}")
    return text + ";"
