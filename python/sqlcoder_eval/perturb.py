"""Deterministic ways to break a gold query, for checking that the comparison catches wrong answers.

Each kind yields candidate rewrites of one query, in a fixed order. The four
kinds of the issue (drop a WHERE, change a LIMIT, swap an aggregate, reorder an
ORDER BY) come first; when none of them changes the result, two fallbacks (drop
an output column, swap an arithmetic operator) still can. The caller
executes them and keeps the first whose result differs from every gold variant's
(:func:`sqlcoder_eval.predictors.PerturbedPredictor`): a rewrite that leaves the
result as it was (a WHERE that filters nothing, a LIMIT above the row count)
proves nothing about the comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._sqltokens import Token, clause_end, next_code, tokenize, untokenize

__all__ = ["FALLBACKS", "KINDS", "Perturbation", "candidates", "change_limit", "drop_column", "drop_where",
           "reorder_order_by", "swap_aggregate", "swap_operator"]


@dataclass(frozen=True)
class Perturbation:
    """A rewritten query and a short description of what was changed."""

    kind: str
    description: str
    sql: str


def _replace(tokens: list[Token], start: int, end: int, text: str) -> str:
    return untokenize(tokens[:start]) + text + untokenize(tokens[end:])


def drop_where(sql: str) -> Iterator[Perturbation]:
    """Remove one WHERE clause (outer ones first)."""
    tokens = tokenize(sql)
    wheres = sorted((t.depth, i) for i, t in enumerate(tokens) if t.is_word("WHERE"))
    for _, i in wheres:
        end = clause_end(tokens, i)
        dropped = " ".join(untokenize(tokens[i:end]).split())
        yield Perturbation("drop_where", f"dropped `{dropped[:80]}`", _replace(tokens, i, end, " "))


def change_limit(sql: str) -> Iterator[Perturbation]:
    """Change a LIMIT's count by one, down first (it removes a row whenever the LIMIT was reached)."""
    tokens = tokenize(sql)
    for i, t in enumerate(tokens):
        if not t.is_word("LIMIT"):
            continue
        j = next_code(tokens, i + 1)
        if j < len(tokens) and tokens[j].kind == "number" and tokens[j].text.isdigit():
            n = int(tokens[j].text)
            for m in ([n - 1] if n > 0 else []) + [n + 1]:
                yield Perturbation("change_limit", f"LIMIT {n} -> LIMIT {m}", _replace(tokens, j, j + 1, str(m)))


_SWAPS = {"AVG": "SUM", "SUM": "AVG", "MIN": "MAX", "MAX": "MIN"}


def swap_aggregate(sql: str) -> Iterator[Perturbation]:
    """Swap AVG/SUM and MIN/MAX, or add or remove DISTINCT inside COUNT()."""
    tokens = tokenize(sql)
    for i, t in enumerate(tokens):
        if t.kind != "word" or t.upper not in (*_SWAPS, "COUNT"):
            continue
        p = next_code(tokens, i + 1)
        if p >= len(tokens) or tokens[p].text != "(":
            continue
        if t.upper in _SWAPS:
            new = _SWAPS[t.upper]
            yield Perturbation("swap_aggregate", f"{t.upper} -> {new}", _replace(tokens, i, i + 1, new))
            continue
        a = next_code(tokens, p + 1)
        if a < len(tokens) and tokens[a].is_word("DISTINCT"):
            yield Perturbation("swap_aggregate", "COUNT(DISTINCT x) -> COUNT(x)",
                               _replace(tokens, a, next_code(tokens, a + 1), ""))
        elif a < len(tokens) and tokens[a].text not in ("*", ")"):
            yield Perturbation("swap_aggregate", "COUNT(x) -> COUNT(DISTINCT x)",
                               _replace(tokens, a, a, "DISTINCT "))


def _order_keys(tokens: list[Token], by: int) -> list[tuple[int, int]]:
    """(start, end) token spans of the comma-separated keys of the ORDER BY whose BY is at ``by``."""
    end = clause_end(tokens, by, ("LIMIT", "OFFSET", "FETCH", "UNION", "INTERSECT", "EXCEPT", "FOR", "WINDOW"))
    keys, start = [], next_code(tokens, by + 1)
    for j in range(start, end):
        if tokens[j].text == "," and tokens[j].depth == tokens[by].depth:
            keys.append((start, j))
            start = next_code(tokens, j + 1)
    keys.append((start, end))
    return [(s, e) for s, e in keys if s < e]


def _flip_direction(tokens: list[Token], start: int, end: int) -> tuple[str, str]:
    """The key's text with ASC and DESC exchanged (DESC added when the key has neither)."""
    key = tokens[start:end]
    for k, t in enumerate(key):
        if t.depth == key[0].depth and t.is_word("ASC", "DESC"):
            new = "DESC" if t.upper == "ASC" else "ASC"
            return untokenize(key[:k]) + new + untokenize(key[k + 1:]), f"{t.upper} -> {new}"
    nulls = next((k for k, t in enumerate(key) if t.depth == key[0].depth and t.is_word("NULLS")), None)
    if nulls is None:
        text = untokenize(key)
        body = text.rstrip()
        return body + " DESC" + text[len(body):], "ASC -> DESC"
    return untokenize(key[:nulls]) + "DESC " + untokenize(key[nulls:]), "ASC -> DESC"


def reorder_order_by(sql: str) -> Iterator[Perturbation]:
    """Reverse the first key of an ORDER BY, or swap its first two keys."""
    tokens = tokenize(sql)
    for i, t in enumerate(tokens):
        if not t.is_word("ORDER"):
            continue
        by = next_code(tokens, i + 1)
        if by >= len(tokens) or not tokens[by].is_word("BY"):
            continue
        keys = _order_keys(tokens, by)
        if not keys:
            continue
        s, e = keys[0]
        text, what = _flip_direction(tokens, s, e)
        yield Perturbation("reorder_order_by", f"first ORDER BY key {what}", _replace(tokens, s, e, text))
        if len(keys) > 1:
            (s1, e1), (s2, e2) = keys[0], keys[1]
            swapped = untokenize(tokens[s2:e2]).strip() + ", " + untokenize(tokens[s1:e1]).strip()
            trailing = " " if untokenize(tokens[s2:e2]).endswith(" ") else ""
            yield Perturbation("reorder_order_by", "swapped the first two ORDER BY keys",
                               _replace(tokens, s1, e2, swapped + trailing))


def _select_items(tokens: list[Token]) -> list[tuple[int, int]]:
    """(start, end) token spans of the outermost SELECT list's items."""
    sel = next((i for i, t in enumerate(tokens) if t.depth == 0 and t.is_word("SELECT")), None)
    if sel is None:
        return []
    start = next_code(tokens, sel + 1)
    if start < len(tokens) and tokens[start].is_word("DISTINCT", "ALL"):
        start = next_code(tokens, start + 1)
        if start < len(tokens) and tokens[start].is_word("ON"):
            return []  # DISTINCT ON (...) ties the list to its keys: leave it alone
    end = clause_end(tokens, sel, ("FROM", "INTO", "WHERE", "GROUP", "HAVING", "WINDOW", "ORDER", "LIMIT",
                                   "OFFSET", "FETCH", "UNION", "INTERSECT", "EXCEPT"))
    items = []
    for j in range(start, end):
        if tokens[j].text == "," and tokens[j].depth == 0:
            items.append((start, j))
            start = j + 1
    items.append((start, end))
    return [(s, e) for s, e in items if untokenize(tokens[s:e]).strip()]


def drop_column(sql: str) -> Iterator[Perturbation]:
    """Fallback: remove one output column of the outer SELECT (last first), when it has several."""
    tokens = tokenize(sql)
    items = _select_items(tokens)
    if len(items) < 2:
        return
    for k in reversed(range(len(items))):
        s, e = items[k]
        # Take the comma before the item (or after it, for the first one) with it.
        cut_s, cut_e = (items[k - 1][1], e) if k > 0 else (s, items[1][0])
        removed = untokenize(tokens[cut_s:cut_e])
        keep = removed[len(removed.rstrip()):] if k == len(items) - 1 else ""
        dropped = " ".join(untokenize(tokens[s:e]).split())
        yield Perturbation("drop_column", f"dropped output column `{dropped[:60]}`",
                           _replace(tokens, cut_s, cut_e, keep))


_OPERATORS = {"/": "*", "*": "/", "+": "-", "-": "+"}


def swap_operator(sql: str) -> Iterator[Perturbation]:
    """Fallback: exchange one arithmetic operator (``/`` and ``*``, ``+`` and ``-``)."""
    tokens = tokenize(sql)
    for i, t in enumerate(tokens):
        if t.kind != "op" or t.text not in _OPERATORS:
            continue
        prev = next((tokens[j] for j in range(i - 1, -1, -1) if tokens[j].kind not in ("ws", "comment")), None)
        # ``count(*)``, ``SELECT *`` and ``t.*`` are not multiplications; a leading sign is not an operator.
        if prev is None or prev.text in ("(", ",", ".") or prev.is_word("SELECT", "DISTINCT"):
            continue
        new = _OPERATORS[t.text]
        yield Perturbation("swap_operator", f"{t.text} -> {new}", _replace(tokens, i, i + 1, new))


KINDS: dict[str, Callable[[str], Iterator[Perturbation]]] = {
    "drop_where": drop_where,
    "change_limit": change_limit,
    "swap_aggregate": swap_aggregate,
    "reorder_order_by": reorder_order_by,
}
FALLBACKS: dict[str, Callable[[str], Iterator[Perturbation]]] = {
    "drop_column": drop_column,
    "swap_operator": swap_operator,
}


def candidates(sql: str, start: int = 0) -> Iterator[Perturbation]:
    """Every candidate of every kind, the kinds taken in turn from the ``start``-th (so that a set of
    questions numbered 0, 1, 2, ... exercises all kinds), each kind's candidates in query order;
    then the fallbacks."""
    names = list(KINDS)
    for k in range(len(names)):
        yield from KINDS[names[(start + k) % len(names)]](sql)
    for fallback in FALLBACKS.values():
        yield from fallback(sql)
