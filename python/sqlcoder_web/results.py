"""A result as the page shows it: columns and their kinds, cells as text, the chart, the CSV.

Rows come from ``sqlcoder.execute`` as JSON objects, so column types are read
from the values: JSON numbers are numeric columns, ISO dates and timestamps
(how PostgreSQL writes date and timestamp values in JSON) are time columns,
other strings are categories. A time column and a numeric column give a line
chart; a category column and a numeric column a bar chart. Key columns (``id``,
``customer_id``, ``sku``...) are never plotted: a number that names a row is
not a quantity. The chart's title is the question, its axes the column names
in words.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Result", "build", "column_kind", "chart_spec", "is_key", "to_csv", "MAX_CHART_POINTS", "MAX_SERIES"]

MAX_CHART_POINTS = 500
MAX_SERIES = 5
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?")
_KEY = re.compile(r"(?:^|[_\s])(?:id|key|pk|fk|uuid|guid|sku|code|zip|postcode|phone|number|no)$|.Id$|^(?:id|pk)_",
                  re.IGNORECASE)
MAX_TITLE_CHARS = 120
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Result:
    """What the page draws: ``cells`` are display texts, ``chart`` is a Chart.js spec or None."""

    columns: list[str]
    kinds: list[str]
    cells: list[list[str]]
    raw: list[list[Any]] = field(repr=False)
    notices: list[str]
    chart: dict[str, Any] | None
    shown_rows: int

    @property
    def row_count(self) -> int:
        return len(self.raw)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def column_kind(values: Sequence[Any]) -> str:
    """``number``, ``time``, ``text`` or ``other`` (booleans, JSON, mixed), from the non-null values."""
    present = [v for v in values if v is not None]
    if not present:
        return "other"
    if all(_is_number(v) for v in present):
        return "number"
    if all(isinstance(v, str) for v in present):
        return "time" if all(_TIME.fullmatch(v) for v in present) else "text"
    return "other"


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if _is_number(v):
        return str(v)
    return json.dumps(v, ensure_ascii=False, default=str)


def _point(v: Any) -> float | None:
    """A chart value; NaN and infinities (PostgreSQL's numeric has them) become gaps, as JSON has no such number."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def is_key(column: str) -> bool:
    """A column that names rows rather than measures them: ``id``, ``order_id``, ``customerId``, ``sku``."""
    return bool(_KEY.search(column.strip()))


def words(column: str) -> str:
    """A column name as an axis label: ``total_amount`` -> ``Total amount``."""
    text = re.sub(r"[_\s]+", " ", column).strip()
    return (text[:1].upper() + text[1:]) if text else column


def chart_spec(columns: Sequence[str], kinds: Sequence[str], raw: Sequence[Sequence[Any]],
               question: str = "") -> dict[str, Any] | None:
    """``{"type": "line"|"bar", "title", "x", "y", "labels": [...], "series": [{"label", "data"}]}`` or None."""
    if not raw or len(raw) > MAX_CHART_POINTS:
        return None
    numeric = [i for i, k in enumerate(kinds) if k == "number" and not is_key(columns[i])]
    x = next((i for i, k in enumerate(kinds) if k == "time"), None)
    chart_type = "line"
    if x is None:  # a category: a name rather than a code, where there is one
        texts = [i for i, k in enumerate(kinds) if k == "text"]
        x = next((i for i in texts if not is_key(columns[i])), texts[0] if texts else None)
        chart_type = "bar"
    if x is None or not numeric:
        return None
    order = range(len(raw))
    if chart_type == "line":  # ISO texts of one kind sort as time does (offsets aside)
        order = sorted(order, key=lambda r: raw[r][x] or "")
    series = numeric[:MAX_SERIES]
    title = " ".join(question.split())
    return {
        "type": chart_type,
        "title": title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "\u2026",
        "x": words(columns[x]),
        "y": words(columns[series[0]]) if len(series) == 1 else "",
        "labels": [_cell(raw[r][x]) for r in order],
        "series": [{"label": words(columns[i]), "data": [_point(raw[r][i]) for r in order]} for i in series],
    }


def build(rows: Sequence[Sequence[tuple[str, Any]]], notices: Sequence[str], max_table_rows: int,
          question: str = "") -> Result:
    """A :class:`Result` from ``db.execute``'s rows (lists of (column, value) pairs)."""
    columns = [name for name, _ in rows[0]] if rows else []
    raw = [[value for _, value in row] for row in rows]
    kinds = [column_kind([r[i] for r in raw if i < len(r)]) for i in range(len(columns))]
    shown = raw[:max_table_rows]
    return Result(columns=columns, kinds=kinds, cells=[[_cell(v) for v in row] for row in shown], raw=raw,
                  notices=list(notices), chart=chart_spec(columns, kinds, raw, question), shown_rows=len(shown))


def _csv_cell(v: Any) -> str:
    text = "" if v is None else _cell(v)
    if isinstance(v, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(result: Result) -> str:
    """Every row (not only those the table shows), text that looks like a formula defused with a quote."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_csv_cell(c) for c in result.columns])
    for row in result.raw:
        writer.writerow([_csv_cell(v) for v in row])
    return out.getvalue()
