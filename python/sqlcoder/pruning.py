"""Keep the tables most relevant to a question when the whole schema does not fit the context.

Relevance is lexical and deterministic, with no extra model: the question's
words are looked up in an inverted index of table names (weight 3), column
names (2), and comments and enum labels (1), each weighted by how rare the
word is among the tables (idf). A table joined to a matching one (foreign key
or join hint) inherits half of its best neighbour's score, so the tables a
query needs to join come along. Tables are then taken by score, as long as
they fit the token budget. Building the index is linear in the schema and
done once per cached schema; ranking touches only the postings of the
question's words, so it stays fast at 10,000 tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from .catalog import Schema, Table

__all__ = ["terms", "RelevanceIndex", "select_tables"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_STOPWORDS = frozenset("""
a an and are as at be by can did do does each for from get give had has have how i in is it its list me
many much my of on or per please show than that the their them there these this those to was we were
what when where which who whom whose why will with would you your all any find tell return
""".split())

NAME_WEIGHT, COLUMN_WEIGHT, TEXT_WEIGHT = 3.0, 2.0, 1.0
NEIGHBOUR_SHARE = 0.5


def _stem(word: str) -> str:
    """A light plural strip, so "orders" meets "order" and "categories" meets "category"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str | None) -> set[str]:
    """The words of ``text`` that can match: split at non-letters and camelCase, lowercased, stemmed."""
    if not text:
        return set()
    out = set()
    for word in _WORD.findall(_CAMEL.sub(" ", text)):
        word = word.lower()
        if len(word) > 1 and word not in _STOPWORDS:
            out.add(_stem(word))
    return out


@lru_cache(maxsize=1 << 16)
def _name_terms(name: str) -> frozenset[str]:
    """Terms of an identifier; cached, as names like id or created_at recur in many tables."""
    return frozenset(terms(_unquote(name)))


def _unquote(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


@dataclass
class RelevanceIndex:
    """An inverted index over a schema's tables (by position in ``Schema.tables``)."""

    postings: dict[str, dict[int, float]] = field(default_factory=dict)
    neighbours: list[set[int]] = field(default_factory=list)

    @classmethod
    def build(cls, schema: Schema) -> RelevanceIndex:
        index = cls(neighbours=[set() for _ in schema.tables])
        position = {t.oid: i for i, t in enumerate(schema.tables)}
        for i, table in enumerate(schema.tables):
            for term, weight in _table_terms(table).items():
                index.postings.setdefault(term, {})[i] = weight
        for join in schema.joins:
            left, right = position.get(join.left), position.get(join.right)
            if left is not None and right is not None and left != right:
                index.neighbours[left].add(right)
                index.neighbours[right].add(left)
        return index

    def scores(self, question: str) -> list[float]:
        """Per table: its own lexical score plus a share of its best-scoring neighbour's."""
        n = len(self.neighbours)
        own = [0.0] * n
        for term in terms(question):
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = math.log(1.0 + n / len(posting))
            for i, weight in posting.items():
                own[i] += weight * idf
        total = list(own)
        for i in (i for i, s in enumerate(own) if s > 0):
            for j in self.neighbours[i]:
                total[j] = max(total[j], own[j] + NEIGHBOUR_SHARE * own[i])
        return total


def _table_terms(table: Table) -> dict[str, float]:
    weights: dict[str, float] = {}

    def add(words: Iterable[str], weight: float) -> None:
        for word in words:
            if weights.get(word, 0.0) < weight:
                weights[word] = weight

    add(_name_terms(table.name), NAME_WEIGHT)
    add(terms(table.comment), TEXT_WEIGHT)
    for column in table.columns:
        add(_name_terms(column.name), COLUMN_WEIGHT)
        if column.comment:
            add(terms(column.comment), TEXT_WEIGHT)
        for label in column.enum_labels or ():
            add(terms(label), TEXT_WEIGHT)
    return weights


def select_tables(scores: Sequence[float], costs: Sequence[int], budget: int) -> list[int]:
    """Positions of the tables to keep, in schema order.

    Tables with a positive score are taken best first (ties in schema order)
    while their cost fits what is left of ``budget``; one that does not fit is
    skipped and smaller ones may still follow. With no match at all, tables
    are taken in schema order (search path order) until the budget is spent.
    """
    candidates = [i for i, s in enumerate(scores) if s > 0]
    candidates.sort(key=lambda i: (-scores[i], i))
    if not candidates:
        candidates = list(range(len(costs)))
    kept, left = [], budget
    for i in candidates:
        if costs[i] <= left:
            kept.append(i)
            left -= costs[i]
    return sorted(kept)
