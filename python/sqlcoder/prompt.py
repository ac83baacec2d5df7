"""SQLCoder's prompt templates, and how its answer is cut back to one SQL statement."""

from __future__ import annotations

from collections.abc import Iterable

from ._sqleval_prompt import (
    LLAMA_3_SQLCODER_8B,
    SQL_EVAL_GENERIC,
    SQL_EVAL_TEMPLATES,
    instructions_as_sql_eval,
    schema_as_sql_eval,
)
from .errors import AnswerRepeats, AnswerTruncated, NoSQLGenerated

__all__ = ["TEMPLATES", "TEMPLATE_SETTINGS", "DEFAULT_TEMPLATE", "SQLCODER_70B_TEMPLATE", "SQL_EVAL_PROFILE",
           "choose_template", "template_for_model", "render_prompt", "extract_sql", "MODEL_OUTPUT_DETAIL",
           "MAX_OUTPUT_SHOWN"]

#: DETAIL of an answer refused before the guard saw SQL: this prefix, then the model's text as a Python
#: literal (so sqlcoder-eval can keep it in its records).
MODEL_OUTPUT_DETAIL = "model output: "
MAX_OUTPUT_SHOWN = 4000

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

# sqlcoder-7b-2's template (its model card), with sql-eval's Instructions
# section added only when there are instructions.
SQLCODER_7B_2_TEMPLATE = """### Task
Generate a SQL query to answer [QUESTION]{question}[/QUESTION]
{instructions}
### Database Schema
The query will run on a database with the following schema:
{schema}

### Answer
Given the database schema, here is the SQL query that [QUESTION]{question}[/QUESTION]
[SQL]
"""

# sqlcoder-34b-alpha's template (its model card); it answers in a sql fence.
SQLCODER_34B_TEMPLATE = """### Task
Generate a SQL query to answer the following question:
`{question}`
{instructions}
### Database Schema
The query will run on a database with the following schema:
{schema}

### Answer
Given the database schema, here is the SQL query that answers `{question}`:
```sql
"""

# llama-3-sqlcoder-8b's template (its model card) without the leading
# <|begin_of_text|>: the daemon's tokenizer adds the beginning-of-sequence token.
# Instructions come under Defog's header (sql-eval's utils/questions.py, May 2024):
# "Follow the instructions below to generate the query:". The same text is
# sql-eval's prompt for that model, so it is written once, in _sqleval_prompt.py.
LLAMA_3_SQLCODER_8B_TEMPLATE = LLAMA_3_SQLCODER_8B

TEMPLATES: dict[str, str] = {
    "sqlcoder-70b": SQLCODER_70B_TEMPLATE,
    "sqlcoder-7b-2": SQLCODER_7B_2_TEMPLATE,
    "sqlcoder-34b": SQLCODER_34B_TEMPLATE,
    "llama-3-sqlcoder-8b": LLAMA_3_SQLCODER_8B_TEMPLATE,
    **SQL_EVAL_TEMPLATES,
}
DEFAULT_TEMPLATE = "sqlcoder-70b"
# The ``template`` setting ``sql-eval``: what sql-eval rendered for the served model,
# where that is known; the model's own template otherwise.
SQL_EVAL_PROFILE = "sql-eval"
AUTO = "auto"  # the served model's own template
#: Every value the ``template`` setting accepts (config.py validates against it).
TEMPLATE_SETTINGS: tuple[str, ...] = (AUTO, SQL_EVAL_PROFILE, *TEMPLATES)


def template_for_model(model: str | None) -> str:
    """The template a model was trained with, guessed from its name (a hub id or a local path)."""
    name = (model or "").lower().rstrip("/").rsplit("/", 1)[-1].replace("_", "-")
    if "llama-3" in name or "llama3" in name:
        return "llama-3-sqlcoder-8b"
    if "7b-2" in name:
        return "sqlcoder-7b-2"
    if "34b" in name:
        return "sqlcoder-34b"
    return DEFAULT_TEMPLATE


def choose_template(setting: str, model: str | None) -> str:
    """The template for the ``template`` setting: a name, ``auto`` (the served model's own) or
    ``sql-eval`` (what sql-eval rendered for the served model, when known)."""
    if setting not in (AUTO, SQL_EVAL_PROFILE):
        return setting
    own = template_for_model(model) if model else DEFAULT_TEMPLATE
    if setting == SQL_EVAL_PROFILE and model and "sqlcoder" not in model.lower():
        return SQL_EVAL_GENERIC  # not a SQLCoder: sql-eval prompted it with its default prompt.md
    return f"sql-eval-{own}" if setting == SQL_EVAL_PROFILE and f"sql-eval-{own}" in TEMPLATES else own


def _instructions_block(template: str, lines: list[str]) -> str:
    if template in SQL_EVAL_TEMPLATES:
        return instructions_as_sql_eval(template, lines)
    if template == "sqlcoder-70b":  # extra lines follow the template's own first rule
        return "".join(f"\n- {line}" for line in lines)
    bullets = "\n".join(f"- {line}" for line in lines)
    if template == "llama-3-sqlcoder-8b":
        return f"\nFollow the instructions below to generate the query:\n{bullets}\n" if lines else ""
    return f"\n### Instructions\n{bullets}\n" if lines else ""


def _one_instruction(text: str) -> str:
    """An instruction's first line, and its nested lines (a glossary's sub-bullets) indented under it.
    Whitespace inside a line collapses; no line of an instruction starts at the left margin but the
    first, so an instruction cannot pose as one of the prompt's own sections."""
    first, *rest = [line for line in text.splitlines() if line.strip()] or [""]
    out = [" ".join(first.split())]
    for line in rest:
        indent = min(len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip()), 8)
        out.append("  " + " " * indent + " ".join(line.split()))
    return "\n".join(out)


def render_prompt(question: str, schema: str, instructions: Iterable[str] = (),
                  template: str = DEFAULT_TEMPLATE, after_schema: str = "") -> str:
    """The whole prompt in ``template``; each instruction becomes one ``- `` item (nested lines kept).

    ``after_schema`` (golden examples, a refused attempt) follows the schema as it is, where sql-eval
    puts its k-shot examples.
    """
    lines = [_one_instruction(line) for line in instructions if line and line.strip()]
    if template in SQL_EVAL_TEMPLATES:
        schema = schema_as_sql_eval(schema, template)
    return TEMPLATES[template].format(question=question, schema=schema + after_schema,
                                      instructions=_instructions_block(template, lines))


def extract_sql(completion: str, finish_reason: str = "eos") -> str:
    """Cut the model's completion the way SQLCoder's reference inference does.

    Everything after a repeated ``[SQL]``, up to ``[/SQL]``, a closing code fence
    or the first ``;``, stripped, with ``;`` appended. Raises
    :class:`NoSQLGenerated` when nothing is left or the model declined, and
    :class:`AnswerTruncated` (:class:`AnswerRepeats`) when the daemon ended the
    completion at ``max_new_tokens`` (its repetition guard) before any of those
    marks: the query was cut, not finished. DETAIL holds the model's text.
    """
    detail = f"{MODEL_OUTPUT_DETAIL}{completion[:MAX_OUTPUT_SHOWN]!r}"
    text = completion.split("[SQL]")[-1]
    ended = "[/SQL]" in text
    text = text.split("[/SQL]")[0]
    if "```sql" in text:
        text = text.split("```sql")[-1]
    ended = ended or "```" in text
    text = text.split("```")[0]
    ended = ended or ";" in text
    text = text.split(";")[0].strip()
    if not text:
        raise NoSQLGenerated("the model returned no SQL for this question", detail=detail)
    if "i do not know" in text.lower() and not text.lower().lstrip("( ").startswith(("select", "with")):
        raise NoSQLGenerated("the model could not answer this question from the schema it was shown", detail=detail)
    if not ended and finish_reason == "length":
        raise AnswerTruncated("the model's answer reached max_new_tokens before its query ended", detail=detail)
    if not ended and finish_reason == "repetition":
        raise AnswerRepeats("the model's answer kept repeating itself and was stopped before its query ended",
                            detail=detail)
    return text + ";"
