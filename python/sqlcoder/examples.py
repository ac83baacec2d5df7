"""Golden examples: question/SQL pairs a table owner vouches for, shown to the model as k-shot examples.

Adding one (``sqlcoder.add_example``, ``promote_example`` or a direct INSERT)
fires a trigger that runs here as the inserting role: the guard checks the
SQL, and PostgreSQL's parse analysis and rewriter (``guard.query_objects``)
list every relation it reads, by OID; the inserting role must own each one
(superusers may add any). Row-level security on ``sqlcoder.examples`` shows a
role exactly the examples PostgreSQL would let it run: the query analyzed as
that role and its range tables put through the executor's own permission
check (``sqlcoder_internal._example_permitted``, src/example_access.c), so a role with
column grants sees an example that reads only its columns, and an example
never names a table or column the caller cannot select.

At ask time the examples a caller may read are indexed once per cached schema
(``schema_cache``: a changed example, GRANT or REVOKE invalidates it) and the
most similar questions win: tf-idf cosine over the same stemmed words as
pruning, no extra model. The permission check runs again for the few chosen,
and they are rendered the way Defog's sql-eval renders its k-shot examples
(``EXAMPLE QUESTION n:`` / ``EXAMPLE QUERY n:``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _spi, config, execute, guard, policy
from ._spi import Plpy
from .errors import ExampleNotOwner, InvalidExample
from .pruning import terms

__all__ = ["Example", "ExampleIndex", "check_new", "permitted", "select", "render", "MAX_SQL_CHARS"]

MAX_SQL_CHARS = 20_000  # an example is a single query a person wrote, not a dump
_CACHE_KEY = "examples"
_CANDIDATES = 8  # candidates re-ranked and checked per example wanted
TABLE_WEIGHT = 0.5  # how much the relevance of an example's tables to the question adds to its similarity

_READ_SQL = """
SELECT e.id, e.question, e.sql, e.tables::pg_catalog.oid[]::pg_catalog.int8[] AS tables,
       e.search_path::text[] AS search_path
FROM sqlcoder.examples e
ORDER BY e.id
"""
_OWNERS_SQL = """
SELECT c.oid::pg_catalog.int8 AS oid, pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) AS super
FROM pg_catalog.pg_class c
WHERE c.oid = ANY ($1::pg_catalog.oid[])
"""
# PostgreSQL's own permission check on the analyzed query (src/example_access.c), as the caller.
_PERMITTED_SQL = "SELECT sqlcoder_internal._example_permitted($1, $2::pg_catalog.name[]) AS permitted"


@dataclass(frozen=True)
class Example:
    """One golden example: its question, SQL, and the relations (OIDs) the SQL reads."""

    id: int
    question: str
    sql: str
    tables: tuple[int, ...]
    search_path: tuple[str, ...] = ()


# -- Adding ---------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_texts(question: Any, sql: Any, settings: config.Settings) -> tuple[str, str]:
    if not isinstance(question, str) or not question.strip():
        raise InvalidExample("the example's question must not be NULL or empty")
    if len(question) > settings.max_question_chars:
        raise InvalidExample(f"the example's question is {len(question)} characters long; the limit is "
                             f"{settings.max_question_chars} (max_question_chars)")
    if "\x00" in question:
        raise InvalidExample("the example's question contains a NUL character")
    text = guard.strip_sql(sql)
    if len(text) > MAX_SQL_CHARS:
        raise InvalidExample(f"the example's SQL is {len(text)} characters long; the limit is {MAX_SQL_CHARS}")
    return question.strip(), text


def relations_of(plpy: Plpy, sql: str, search_path: Sequence[str], settings: config.Settings) -> frozenset[int]:
    """The guard's verdict on ``sql`` as the current role, then the relations it reads (nothing runs)."""
    path, timeout_s = list(search_path), settings.query_timeout_s
    execute.guard_only(plpy, sql, caller_path=path, max_cost=None, timeout_s=timeout_s,
                       functions=policy.load_lists(plpy, settings.allowed_functions, settings.denied_functions))
    return execute.in_caller_context(plpy, path, timeout_s, lambda: guard.query_objects(plpy, sql).relations)


def _check_owner(plpy: Plpy, relations: frozenset[int], sql: str) -> None:
    rows = plpy.execute(_spi.plan(plpy, _OWNERS_SQL, ["oid[]"]), [sorted(relations)])
    if rows and rows[0]["super"]:
        return
    foreign = [r["oid"] for r in rows if not r["owned"]]
    if foreign:
        names = plpy.execute(_spi.plan(
            plpy, "SELECT pg_catalog.string_agg(o::pg_catalog.regclass::text, ', ' ORDER BY o) AS names "
            "FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS o", ["oid[]"]), [foreign])[0]["names"]
        raise ExampleNotOwner(f"must be owner of every table the example reads to add it; not of {names}",
                              detail=guard.detail_for(sql))


def check_new(plpy: Plpy, question: Any, sql: Any, search_path: Any) -> dict[str, Any]:
    """The trigger's verdict on a new example, as the inserting role: its texts and relations (OIDs)."""
    settings = config.load(plpy)
    question, text = _check_texts(question, sql, settings)
    relations = relations_of(plpy, text, search_path or [], settings)
    if not relations:
        raise InvalidExample("an example must read at least one table", detail=guard.detail_for(text))
    _check_owner(plpy, relations, text)
    return {"question": question, "sql": text, "tables": sorted(relations)}


# -- Choosing -------------------------------------------------------------------

@dataclass
class ExampleIndex:
    """An inverted index of example questions (tf-idf weights, unit length)."""

    examples: list[Example] = field(default_factory=list)
    postings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    idf: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, examples: list[Example]) -> ExampleIndex:
        index = cls(examples=examples)
        bags = [terms(e.question) for e in examples]
        df: dict[str, int] = {}
        for bag in bags:
            for term in bag:
                df[term] = df.get(term, 0) + 1
        n = len(examples)
        index.idf = {t: math.log(1.0 + n / d) for t, d in df.items()}
        for i, bag in enumerate(bags):
            norm = math.sqrt(sum(index.idf[t] ** 2 for t in bag)) or 1.0
            for term in bag:
                index.postings.setdefault(term, []).append((i, index.idf[term] / norm))
        return index

    def ranked(self, question: str, limit: int) -> list[tuple[float, int]]:
        """(cosine, position) of the ``limit`` best examples sharing a word with ``question``."""
        scores: dict[int, float] = {}
        for term in terms(question):
            posting = self.postings.get(term)
            if posting:
                weight = self.idf[term]
                for i, w in posting:
                    scores[i] = scores.get(i, 0.0) + w * weight
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [(score, i) for i, score in best]


def _index(plpy: Plpy, cached: Any) -> ExampleIndex:
    """The examples the caller may read, indexed once per cached schema entry."""
    index: ExampleIndex | None = cached.derived.get(_CACHE_KEY)
    if index is None:
        rows = plpy.execute(_spi.plan(plpy, _READ_SQL))
        index = ExampleIndex.build([Example(int(r["id"]), r["question"], r["sql"],
                                            tuple(int(t) for t in r["tables"] or ()),
                                            tuple(r["search_path"] or ())) for r in rows])
        cached.derived[_CACHE_KEY] = index
    return index


def permitted(plpy: Plpy, example: Example) -> bool:
    """Whether PostgreSQL would let the current role run the example's query: its analyzed range tables
    through the executor's permission check, column privileges included (nothing runs)."""
    plan = _spi.plan(plpy, _PERMITTED_SQL, ["text", "text[]"])
    return bool(plpy.execute(plan, [example.sql, list(example.search_path)])[0]["permitted"])


def _positions(cached: Any) -> dict[int, int]:
    """OID -> position of every table the caller is shown (cached with the schema)."""
    positions: dict[int, int] | None = cached.derived.get("positions")
    if positions is None:
        positions = cached.derived["positions"] = {t.oid: i for i, t in enumerate(cached.schema.tables)}
    return positions


def _table_relevance(cached: Any, question: str, oids: set[int]) -> dict[int, float]:
    """Relevance of the tables ``oids`` to the question (pruning's lexical score without neighbours),
    scaled so that the most relevant of them is 1; only their postings are read."""
    positions = _positions(cached)
    wanted = {positions[o]: o for o in oids if o in positions}
    if not wanted:
        return {}
    index = cached.index
    n = len(cached.schema.tables)
    own: dict[int, float] = {}
    for term in terms(question):
        posting = index.postings.get(term)
        if not posting:
            continue
        idf = math.log(1.0 + n / len(posting))
        for position, oid in wanted.items():
            weight = posting.get(position)
            if weight:
                own[oid] = own.get(oid, 0.0) + weight * idf
    top = max(own.values(), default=0.0)
    return {oid: score / top for oid, score in own.items()} if top > 0 else {}


def select(plpy: Plpy, cached: Any, question: str, k: int, exclude: Sequence[int] = ()) -> list[Example]:
    """Up to ``k`` examples most similar to ``question`` whose every relation the caller may read and is
    shown in the prompt's schema.

    The candidates most similar by question text are re-ranked with how
    relevant their tables are to the question (``TABLE_WEIGHT``).
    """
    if k <= 0:
        return []
    index = _index(plpy, cached)
    if not index.examples:
        return []
    skip = set(exclude)
    shown = _positions(cached)
    # Only examples about tables the model is shown: one reading a table off the caller's path (another
    # role's schema, granted to PUBLIC) would be text that role plants in every reader's prompt.
    pool = [(score, i, index.examples[i]) for score, i in index.ranked(question, (k + len(skip)) * _CANDIDATES)
            if index.examples[i].id not in skip and all(t in shown for t in index.examples[i].tables)]
    relevance = _table_relevance(cached, question, {t for _, _, e in pool for t in e.tables})
    ranked = []
    for score, i, example in pool:
        tables = [relevance.get(t, 0.0) for t in example.tables]
        bonus = TABLE_WEIGHT * sum(tables) / len(tables) if tables else 0.0
        ranked.append((-(score + bonus), i, example))
    ranked.sort(key=lambda r: (r[0], r[1]))
    chosen: list[Example] = []
    for _, _, example in ranked:  # checked again: the index may be older than a REVOKE in this transaction
        if example.tables and permitted(plpy, example):
            chosen.append(example)
            if len(chosen) == k:
                break
    return chosen


def render(examples: Sequence[Example]) -> str:
    """The k-shot block that follows the schema in the prompt ('' for none); each text on one line."""
    if not examples:
        return ""
    lines = ["", "", "Correct answers to similar questions on this database:"]
    for n, example in enumerate(examples, 1):
        if n > 1:
            lines.append("")
        lines.append(f"EXAMPLE QUESTION {n}: {_one_line(example.question)}")
        lines.append(f"EXAMPLE QUERY {n}: {_one_line(example.sql)}")
    return "\n".join(lines)
