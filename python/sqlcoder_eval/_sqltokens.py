"""A small PostgreSQL lexer: just enough to find clauses at a given parenthesis depth."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Token", "tokenize", "untokenize", "next_code", "clause_end"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[EeBbXxNn]?'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$)
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<param>\$\d+)
  | (?P<op>::|<=|>=|<>|!=|\|\||.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    """One lexeme; ``depth`` is the parenthesis depth it sits at (a ``(`` at the depth outside it)."""

    kind: str
    text: str
    depth: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens that join back into exactly ``sql``."""
    tokens: list[Token] = []
    depth = 0
    for m in _TOKEN.finditer(sql):
        kind, text = m.lastgroup, m.group(0)
        if kind == "tag":
            kind = "dollar"
        if text == ")":
            depth = max(depth - 1, 0)
        tokens.append(Token(kind, text, depth))
        if text == "(":
            depth += 1
    return tokens


def untokenize(tokens: list[Token]) -> str:
    return "".join(t.text for t in tokens)


def next_code(tokens: list[Token], i: int) -> int:
    """Index of the first token at or after ``i`` that is not whitespace or a comment (len if none)."""
    while i < len(tokens) and tokens[i].kind in ("ws", "comment"):
        i += 1
    return i


_CLAUSE_STARTS = ("WHERE", "GROUP", "HAVING", "WINDOW", "ORDER", "LIMIT", "OFFSET", "FETCH",
                  "UNION", "INTERSECT", "EXCEPT", "FOR", "RETURNING")


def clause_end(tokens: list[Token], start: int, stops: tuple[str, ...] = _CLAUSE_STARTS) -> int:
    """Where the clause opened at ``start`` ends: the next clause keyword or ``;`` at its depth, the
    parenthesis that closes its subquery, or the end."""
    depth = tokens[start].depth
    for j in range(start + 1, len(tokens)):
        t = tokens[j]
        if t.depth < depth or (t.depth == depth and (t.text == ";" or (t.kind == "word" and t.upper in stops))):
            return j
    return len(tokens)
