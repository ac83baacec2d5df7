"""The ``sql-eval`` judge: sql-eval's verdicts, quirks included, without pandas.

Written from reading defog-ai/sql-eval's ``eval/eval.py`` (``compare_query_results``,
``compare_df``, ``normalize_table``, ``subset_df``) as it ran with pandas 2.2,
numpy 1.26, SQLAlchemy 2.0 and psycopg2. Where sql-eval raised an exception the
answer counts wrong; :class:`JudgeError` carries the reason. The quirks kept:

- results are first compared element-wise with numpy broadcasting, so an empty
  answer equals a one-row gold (and a one-row answer an empty gold of one column);
- numbers come back as pandas makes them: ``numeric`` becomes float, an integer
  column with a NULL becomes float with NaN;
- duplicate column names raise (unless the first, broadcast comparison matched);
- exact comparison has no float tolerance; the subset rule's does, except against
  an integer column (pandas 2.2's ``check_exact`` default);
- a ``timestamptz`` arrives in UTC; exact comparison never equals it with a
  ``timestamp``, the subset rule does when the UTC wall-clock times match;
- the ORDER BY key is read from the whole gold text (all alternatives), only after
  ``ORDER BY`` written with one space and only up to a newline; without a key the
  rows of an ordered question are sorted on every column, descending;
- the subset rule keeps an ordered question's rows in the order they came back;
- gold alternatives are run one by one; the first exact match ends the loop, and a
  failing alternative after a subset match still makes the answer wrong;
- ``%`` outside sql-eval's LIKE escape is read by psycopg2 as a parameter marker
  (an error, or ``%%`` becoming ``%``), and of several statements the last result is
  what gets judged (see :func:`query_text`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ._sqltokens import tokenize
from .compare import ResultSet, Verdict, asks_for_order
from .goldsql import expand_gold

__all__ = ["Frame", "JudgeError", "compare_df", "frame_of", "judge", "normalize", "query_text", "subset_df"]

NULL_FILL = -99999  # what sql-eval's fillna puts in place of NULL before the exact comparison
REL_TOL, ABS_TOL = 1e-5, 1e-8  # pandas' assert_series_equal defaults
_NOT_KEYS = {"desc", "asc", "nulls", "last", "first", "limit"}
_LIKE_SPAN = re.compile(r"like.*'", re.IGNORECASE | re.DOTALL)  # first LIKE to the last quote
_ORDER_BY = re.compile("order by", re.IGNORECASE)  # one space, as sql-eval's pattern has it


class JudgeError(Exception):
    """sql-eval would have raised here: the answer is counted wrong, with this reason."""


@dataclass(frozen=True)
class Frame:
    """A result as pandas holds it: per column a kind (int, float, bool, datetime, object)."""

    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)

    def column(self, j: int) -> list[Any]:
        return [r[j] for r in self.rows]

    def select(self, indices: Sequence[int], names: Sequence[str] | None = None) -> Frame:
        names = [self.columns[i] for i in indices] if names is None else names
        return Frame(tuple(names), tuple(self.kinds[i] for i in indices),
                     tuple(tuple(r[i] for i in indices) for r in self.rows))


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _coerce(values: list[Any]) -> tuple[str, list[Any]]:
    """One column as ``read_sql_query(coerce_float=True)`` builds it."""
    present = [v for v in values if v is not None]
    nan = float("nan")
    if present and all(_is_number(v) for v in present):
        if len(present) == len(values) and all(isinstance(v, int) for v in present):
            return "int", values
        return "float", [nan if v is None else float(v) for v in values]
    if present and all(isinstance(v, bool) for v in present) and len(present) == len(values):
        return "bool", values
    if present and all(isinstance(v, (datetime, timedelta)) for v in present):
        # A timestamptz column becomes datetime64[ns, UTC] (read_sql_query's _parse_date_columns).
        return "datetime", [nan if v is None else _in_utc(v) for v in values]  # NaT: unequal to itself, sorts last
    return "object", values  # uuid stays a UUID: SQLAlchemy registers psycopg2's uuid type


def _in_utc(v: datetime | timedelta) -> datetime | timedelta:
    return v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is not None else v


def _wall_clock(v: Any) -> Any:
    """A UTC timestamp as ``assert_series_equal(check_dtype=False)`` compares it with a naive one: its
    UTC wall-clock time (the element-wise ``==`` of the first comparison keeps them unequal)."""
    return v.replace(tzinfo=None) if isinstance(v, datetime) else v


def frame_of(result: ResultSet) -> Frame:
    """The DataFrame sql-eval would have built from this result."""
    kinds, columns = [], []
    for j in range(len(result.columns)):
        kind, values = _coerce(result.column(j))
        kinds.append(kind)
        columns.append(values)
    rows = tuple(zip(*columns)) if columns else tuple(() for _ in result.rows)
    return Frame(tuple(result.columns), tuple(kinds), rows)


def _eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - numpy counts a failed element comparison as unequal
        return False


def _broadcast_equal(a: Frame, b: Frame) -> bool:
    """``(a.values == b.values).all()``; shapes that do not broadcast compare unequal."""
    (r1, c1), (r2, c2) = a.shape, b.shape

    def size(x: int, y: int) -> int | None:
        return x if x == y else (y if x == 1 else (x if y == 1 else None))

    rows, cols = size(r1, r2), size(c1, c2)
    if rows is None or cols is None:
        return False
    return all(_eq(a.rows[i if r1 > 1 else 0][j if c1 > 1 else 0], b.rows[i if r2 > 1 else 0][j if c2 > 1 else 0])
               for i in range(rows) for j in range(cols))


def _row_key(row: tuple) -> tuple:
    out = []
    for v in row:
        if _is_null(v):
            out.append(("null",))
        else:
            try:
                hash(v)
                out.append(v)
            except TypeError:
                out.append(repr(v))
    return tuple(out)


def _drop_duplicate_rows(rows: Sequence[tuple]) -> list[tuple]:
    seen: set = set()
    kept = []
    for r in rows:
        k = _row_key(r)
        if k not in seen:
            seen.add(k)
            kept.append(r)
    return kept


def _sort(rows: list[tuple], keys: Sequence[int], ascending: bool) -> list[tuple]:
    """``sort_values(by=keys, ascending=...)``: NULLs last for every key, either direction."""
    try:
        for k in reversed(keys):
            present = sorted((r for r in rows if not _is_null(r[k])), key=lambda r: r[k], reverse=not ascending)
            rows = present + [r for r in rows if _is_null(r[k])]
    except TypeError as e:
        raise JudgeError(f"rows cannot be sorted: {e}") from None
    return rows


def _renamed_duplicates(names: Sequence[str]) -> list[str]:
    """sql-eval's ``deduplicate_columns``: each repeated name gets its position appended."""
    counts = {n: names.count(n) for n in names}
    return [f"{n}_{i}" if counts[n] > 1 else n for i, n in enumerate(names)]


def order_key(sql: str) -> tuple[list[str], bool] | None:
    """The words sql-eval takes for the first ORDER BY key of ``sql`` and its direction."""
    starts = [m.end() for m in _ORDER_BY.finditer(sql)]
    if not starts:
        return None
    # The first ORDER BY whose key text reaches a stop without crossing a newline ("$" matches
    # only at the very end, or before a final newline); none: no key words at all.
    text = ""
    for start in starts:
        rest = sql[start:]
        stop = re.search(r"[;,)\n]", rest)
        if stop is None:
            text = rest
            break
        if stop.group() != "\n" or stop.start() == len(rest) - 1:
            text = rest[:stop.start()]
            break
    words = [w.rsplit(".", 1)[-1] for w in text.split()]
    upper = [w.upper() for w in words]
    ascending = "DESC" not in upper and "ASC" in upper
    words = [w.replace(",", "").replace("(", "") for w in words]
    return [w for w in words if w.lower() not in _NOT_KEYS], ascending


def normalize(frame: Frame, category: str, question: str, sql: str | None = None) -> Frame:
    """sql-eval's ``normalize_table``."""
    rows = _drop_duplicate_rows(frame.rows)
    if len(set(frame.columns)) != len(frame.columns):
        raise JudgeError("cannot reindex on an axis with duplicate labels (duplicate column names)")
    order = sorted(range(len(frame.columns)), key=lambda i: frame.columns[i])
    df = Frame(frame.columns, frame.kinds, tuple(rows)).select(order)
    if asks_for_order(category, question):
        key = order_key(sql) if sql else None
        if key is not None:
            words, ascending = key
            others = [c for c in df.columns if c not in words]
            keys = [w for w in words if w in df.columns]
            index = {c: i for i, c in enumerate(df.columns)}
            rows = _sort(list(df.rows), [index[c] for c in keys + others], ascending)
            df = Frame(df.columns, df.kinds, tuple(rows)).select([index[c] for c in others + keys])
    else:
        df = Frame(df.columns, df.kinds, tuple(_sort(list(df.rows), range(len(df.columns)), True)))
    return Frame(tuple(_renamed_duplicates(df.columns)), df.kinds, df.rows)


def compare_df(gold: Frame, gen: Frame, category: str, question: str, gold_sql: str | None = None,
               gen_sql: str | None = None) -> bool:
    """Exact match: broadcast-equal as returned, or equal cell by cell once normalised, NULL = NULL."""
    if _broadcast_equal(gold, gen):
        return True
    g, n = normalize(gold, category, question, gold_sql), normalize(gen, category, question, gen_sql)
    if g.shape != n.shape:
        return False

    def fill(v: Any) -> Any:
        return NULL_FILL if _is_null(v) else v

    return all(_eq(fill(x), fill(y)) for rg, rn in zip(g.rows, n.rows) for x, y in zip(rg, rn))


def _close(a: Any, b: Any, exact: bool) -> bool:
    if _is_null(a) or _is_null(b):
        return _is_null(a) and _is_null(b)
    if not exact and _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return _eq(_wall_clock(a), _wall_clock(b))


def _series_equal(a: list[Any], kind_a: str, b: list[Any], kind_b: str) -> bool:
    """``assert_series_equal(check_dtype=False)``: exact when either side is an integer column."""
    exact = kind_a in ("int", "bool") or kind_b in ("int", "bool")
    return len(a) == len(b) and all(_close(x, y, exact) for x, y in zip(a, b))


def _sorted_values(values: list[Any]) -> list[Any]:
    try:
        present = sorted(v for v in values if not _is_null(v))
    except TypeError as e:
        raise JudgeError(f"a column cannot be sorted: {e}") from None
    return present + [v for v in values if _is_null(v)]


def subset_df(gold: Frame, gen: Frame, category: str, question: str) -> bool:
    """The subset rule as sql-eval calls it (no SQL: an ordered question keeps the returned order)."""
    if not gold.rows or not gold.columns:
        return False
    gold = Frame(tuple(_renamed_duplicates(gold.columns)), gold.kinds, gold.rows)
    gen_names = _renamed_duplicates(gen.columns)
    remaining = list(range(len(gen.columns)))
    matched: list[int] = []
    for j in range(len(gold.columns)):
        wanted = _sorted_values(gold.column(j))
        hit = next((k for k in remaining if _series_equal(wanted, gold.kinds[j], _sorted_values(gen.column(k)),
                                                          gen.kinds[k])), None)
        if hit is None:
            return False
        matched.append(hit)
        remaining.remove(hit)
    if any(gen_names[k] != gen.columns[k] for k in matched):
        raise JudgeError("a matched column has a duplicate name (KeyError in sql-eval)")
    sub = normalize(gold, category, question)
    sup = normalize(gen.select(matched, gold.columns), category, question)
    return sub.columns == sup.columns and sub.shape == sup.shape and all(
        _series_equal(sub.column(j), sub.kinds[j], sup.column(j), sup.kinds[j]) for j in range(len(sub.columns)))


def query_text(sql: str) -> list[str]:
    """What PostgreSQL receives for ``sql`` from sql-eval, split into statements.

    sql-eval doubles every ``%`` from the first ``LIKE`` to the last quote; psycopg2
    then reads the text as a template: ``%%`` becomes ``%`` and any other ``%`` fails.
    psycopg2 sends all statements at once and returns the last result."""
    span = _LIKE_SPAN.search(sql)
    lo, hi = (span.start(), span.end()) if span else (len(sql), len(sql))
    out, i = [], 0
    while i < len(sql):
        ch = sql[i]
        if ch == "%" and not lo <= i < hi:
            if sql[i + 1:i + 2] != "%":
                raise JudgeError("a '%' outside sql-eval's LIKE escape is read as a psycopg2 parameter")
            i += 1
        out.append(ch)
        i += 1
    statements, current = [], []
    for t in tokenize("".join(out)):
        if t.text == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(t.text)
    statements.append("".join(current))
    return [s for s in statements if s.strip() and any(t.kind not in ("ws", "comment") for t in tokenize(s))]


def judge(gold_text: str, gen: ResultSet, category: str, question: str, gen_sql: str,
          run_gold: Callable[[str], ResultSet]) -> Verdict:
    """sql-eval's ``compare_query_results`` once the answer has run: each gold variant is run
    (``run_gold``) and compared in turn. Raises :class:`JudgeError` or the runner's error."""
    gen_frame = frame_of(gen)
    correct = False
    for variant in expand_gold(gold_text):
        gold = frame_of(run_gold(variant))
        if compare_df(gold, gen_frame, category, question, gold_text, gen_sql):
            return Verdict(exact=True, correct=True)
        if subset_df(gold, gen_frame, category, question):
            correct = True
    return Verdict(exact=False, correct=correct)
