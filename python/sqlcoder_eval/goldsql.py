"""Expand a sql-eval gold query into every query it stands for (sql-eval's ``get_all_minimal_queries``).

A gold query holds alternatives separated by ``;``. In each alternative the first
``{a, b, ...}`` column set stands for every non-empty subset of its columns, in
order, and ``GROUP BY {}`` takes the same columns. An answer is judged against
every expanded variant, so the expansion must match sql-eval's exactly: the
split on ``;`` is naive (gold queries carry no ``;`` inside literals), and only
the first braced set of an alternative is expanded.
"""

from __future__ import annotations

from itertools import combinations

__all__ = ["expand_gold", "split_alternatives"]


def split_alternatives(query: str) -> list[str]:
    """The non-empty ``;``-separated alternatives of a gold query, stripped."""
    return [part.strip() for part in query.split(";") if part.strip()]


def _column_subsets(options: list[str]) -> list[tuple[str, ...]]:
    return [combo for r in range(1, len(options) + 1) for combo in combinations(options, r)]


def expand_gold(query: str) -> list[str]:
    """Every gold variant of ``query``, in sql-eval's order (alternatives, then subsets by size)."""
    variants: list[str] = []
    for alt in split_alternatives(query):
        start = alt.find("{")
        end = alt.find("}", start + 1)
        if start == -1 or end == -1:
            variants.append(alt)
            continue
        options = [opt.strip() for opt in alt[start + 1:end].split(",")]
        left, right = alt[:start], alt[end + 1:]
        for combo in _column_subsets(options):
            columns = ", ".join(combo)
            variants.append(left + columns + right.replace("GROUP BY {}", f"GROUP BY {columns}"))
    return variants
