"""A GBNF grammar of the SQL a model may write for one call: PostgreSQL's SELECT over the tables, columns and
functions the caller's prompt shows.

GBNF is llama.cpp's grammar format; the daemon's transformers backend and
vLLM read it too (docs/daemon.md). The grammar is an aid to the model, never a
trust boundary: the guard checks every answer as before.

What it covers: SELECT with joins, subqueries, CTEs, set operations,
aggregates (FILTER, ORDER BY inside), window functions, CASE, casts, EXTRACT
and the other special forms, intervals and typed literals, aliases. Keywords
are case-insensitive; a name is accepted as the catalog renders it (bare
names also in upper case, and double-quoted).

Names are checked by the three shapes a query can have, because a context-free
grammar cannot remember which aliases a query defined:

- a plain query (no CTE, no subquery in FROM): tables are the visible ones,
  and every column reference, qualified by any alias or not, is a visible
  column; ORDER BY and GROUP BY may also name an output column's alias;
- a query whose FROM has a subquery: tables are still the visible ones (and
  the subqueries), but columns may also be the subqueries' output names,
  which the grammar cannot know, so any identifier;
- a query with WITH: CTE names stand beside tables, and columns are free too.

Only the first shape constrains every name; the model writes it for most
questions (every gold query of sql-eval but seven).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import SCHEMAS, _spi, policy
from ._spi import Plpy
from .catalog import Table
from .schema_cache import CachedSchema

__all__ = ["FUNCTIONS_SQL", "SPECIAL_FUNCTIONS", "Grammar", "build", "for_prompt", "function_names"]

#: Names the model may call that are syntax, not pg_proc functions.
SPECIAL_FUNCTIONS = ("coalesce", "nullif", "greatest", "least")

# Functions the guard's policy allows by their volatility (immutable or stable), or that its shipped allow
# list names, which the caller may execute, on the caller's path (pg_catalog included): names only, the
# guard decides on the OIDs PostgreSQL resolves. Deny lists are applied in Python (policy.DENIED).
FUNCTIONS_SQL = """
SELECT DISTINCT p.proname::text AS name
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE (n.nspname = 'pg_catalog' OR n.nspname = ANY ($1::name[]))
  AND n.nspname <> ALL ($2::name[])
  AND p.prokind IN ('f', 'a', 'w')
  AND (p.provolatile IN ('i', 's') OR p.proname = ANY ($3::name[]))
  AND p.prorettype <> ALL ('{internal,trigger,event_trigger,language_handler,fdw_handler,index_am_handler,
                              table_am_handler,tsm_handler}'::pg_catalog.regtype[])
  AND p.proname !~ '^_'
  AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
ORDER BY 1
"""

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*\Z")
#: A GBNF group that matches nothing a model writes into SQL.
_NOTHING = "[\\x00]"
#: Names after a shared prefix that go in as one flat group: the parse stacks a name position may hold.
_FLAT_NAMES = 32
_ALL_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*(?:\n[a-z_][a-z0-9_$]*)*")

_KEYWORDS = (
    "all", "and", "any", "array", "as", "asc", "at", "between", "both", "by", "case", "cast", "cross", "cube",
    "current", "current_date", "current_time", "current_timestamp", "date", "day", "desc", "distinct", "else",
    "end", "escape", "except", "exists", "extract", "false", "filter", "first", "following", "for", "from", "full",
    "group", "groups", "having", "hour", "ilike", "in", "inner", "intersect", "interval", "is", "join", "last",
    "lateral", "leading", "left", "like", "limit", "localtime", "localtimestamp", "materialized", "minute", "month",
    "natural", "not", "null", "nulls", "offset", "on", "or", "order", "outer", "over", "overlay", "partition",
    "placing", "position", "preceding", "range", "recursive", "right", "rollup", "row", "rows", "second", "select",
    "sets", "similar", "some", "substring", "symmetric", "then", "ties", "time", "timestamp", "to", "trailing",
    "trim", "true", "unbounded", "union", "using", "values", "week", "when", "where", "window", "with", "within",
    "without", "year", "zone", "fetch", "next", "only", "grouping", "unknown", "collate",
)

_TYPES = (
    "smallint", "integer", "int", "bigint", "int2", "int4", "int8", "real", "float", "float4", "float8",
    "numeric", "decimal", "text", "varchar", "char", "character", "bool", "boolean", "date", "time", "timestamp",
    "timestamptz", "timetz", "interval", "json", "jsonb", "uuid", "money", "bytea", "inet", "cidr", "name",
)

# The grammar's syntax, token by token (whitespace may come before every token), in GBNF's notation; the
# expression rules once for each kind of column reference (-s: visible columns only, -r: any identifier
# too), {X} standing for the kind. k-* are keywords, any case.
_EXPR_RULES = r"""
expr-{X} ::= pre-{X} (binop pre-{X} | post-{X})*
pre-{X} ::= (k-not | "-" | "+")* prim-{X}
post-{X} ::= "::" type
  | k-is (k-not)? (k-null | k-true | k-false | k-unknown | k-distinct k-from pre-{X})
  | (k-not)? k-in "(" (subq-{X} | exprs-{X}) ")"
  | (k-not)? k-between (k-symmetric)? arith-{X} k-and arith-{X}
  | (k-not)? (k-like | k-ilike | k-similar k-to) pre-{X} (k-escape string)?
  | k-at k-time k-zone pre-{X}
  | "[" expr-{X} (":" expr-{X})? "]"
  | k-collate ident
  | binop (k-any | k-all | k-some) "(" (subq-{X} | expr-{X}) ")"
arith-{X} ::= pre-{X} (arithop pre-{X} | "::" type)*
exprs-{X} ::= expr-{X} ("," expr-{X})*
prim-{X} ::= literal | col-{X} | call-{X} | case-{X} | special-{X}
  | "(" (subq-{X} | exprs-{X}) ")"
  | k-exists "(" subq-{X} ")"
  | k-array ("[" exprs-{X}? "]" | "(" subq-{X} ")")
  | k-row "(" exprs-{X}? ")"
  | k-interval string (unit (k-to unit)?)?
  | (k-date | k-timestamp ((k-with | k-without) k-time k-zone)? | k-time) string
  | k-current-date | k-current-timestamp | k-current-time | k-localtime | k-localtimestamp
col-{X} ::= (qual ".")? colname-{X} | qual "." "*"
call-{X} ::= fname "(" (k-distinct | k-all)? ("*" | exprs-{X} (orderby-{X})?)? ")"
  (k-within k-group "(" orderby-{X} ")")?
  (k-filter "(" k-where expr-{X} ")")?
  (k-over (ident | "(" window-{X} ")"))?
window-{X} ::= (ident)? (k-partition k-by exprs-{X})? (orderby-{X})? frame?
orderby-{X} ::= k-order k-by sortitem-{X} ("," sortitem-{X})*
sortitem-{X} ::= (expr-{X} | ident) ((k-asc | k-desc))? (k-nulls (k-first | k-last))?
case-{X} ::= k-case (expr-{X})? (k-when expr-{X} k-then expr-{X})+ (k-else expr-{X})?
  k-end
special-{X} ::= k-cast "(" expr-{X} k-as type ")"
  | k-extract "(" (field | string) k-from expr-{X} ")"
  | k-substring "(" expr-{X} (k-from expr-{X})? (k-for expr-{X})? ")"
  | k-position "(" arith-{X} k-in expr-{X} ")"
  | k-trim "(" ((k-both | k-leading | k-trailing))? (expr-{X})? (k-from)? exprs-{X} ")"
  | k-overlay "(" expr-{X} k-placing expr-{X} k-from expr-{X} (k-for expr-{X})? ")"
"""

_QUERY_RULES = r"""
root ::= query end | k-i-do-not-know "."?
end ::= ";"? ("[/SQL]" | "```")?
query ::= stmt-s | stmt-d | k-with (k-recursive)? cte ("," cte)* stmt-w
cte ::= ident ("(" ident ("," ident)* ")")? k-as ((k-not)? k-materialized)?
  "(" subq-r ")"
subq-s ::= stmt-s | stmt-d
subq-r ::= stmt-s | stmt-d | stmt-w
stmt-s ::= core-s (setop core-s)* tail-s
stmt-d ::= core-d (setop (core-s | core-d))* tail-r
stmt-w ::= core-w (setop core-w)* tail-r
tail-s ::= (orderby-s)? limit?
tail-r ::= (orderby-r)? limit?
setop ::= (k-union | k-intersect | k-except) ((k-all | k-distinct))?
core-s ::= select-s (k-from from-s)? (k-where expr-s)? (group-s)? (k-having expr-s)?
  (windows-s)? | "(" stmt-s ")"
core-d ::= select-r k-from from-d (k-where expr-r)? (group-r)? (k-having expr-r)?
  (windows-r)? | "(" stmt-d ")"
core-w ::= select-r (k-from from-w)? (k-where expr-r)? (group-r)? (k-having expr-r)?
  (windows-r)? | "(" stmt-w ")" | k-values "(" exprs-r ")" ("," "(" exprs-r ")")*
select-s ::= k-select (distinct-s)? item-s ("," item-s)*
select-r ::= k-select (distinct-r)? item-r ("," item-r)*
distinct-s ::= k-all | k-distinct (k-on "(" exprs-s ")")?
distinct-r ::= k-all | k-distinct (k-on "(" exprs-r ")")?
item-s ::= "*" | expr-s ((k-as)? ident)?
item-r ::= "*" | expr-r ((k-as)? ident)?
group-s ::= k-group k-by gitem-s ("," gitem-s)*
group-r ::= k-group k-by gitem-r ("," gitem-r)*
gitem-s ::= expr-s | ident | (k-rollup | k-cube) "(" exprs-s ")" | "(" ")"
gitem-r ::= expr-r | ident | (k-rollup | k-cube) "(" exprs-r ")" | "(" ")"
windows-s ::= k-window ident k-as "(" window-s ")" ("," ident k-as "(" window-s ")")*
windows-r ::= k-window ident k-as "(" window-r ")" ("," ident k-as "(" window-r ")")*
limit ::= (k-limit (integer | k-all) | k-offset integer ((k-row | k-rows))?
  | k-fetch (k-first | k-next) integer? (k-row | k-rows) (k-only | k-with k-ties))+
from-s ::= tableitem (fnext-t joincond-s?)*
from-d ::= derived (fnext-d joincond-r?)* | tableitem (fnext-t joincond-r?)* fnext-x joincond-r? (fnext-d joincond-r?)*
from-w ::= witem (fnext-w joincond-r?)*
fnext-t ::= fsep tableitem
fnext-x ::= fsep derived
fnext-d ::= fsep (tableitem | derived)
fnext-w ::= fsep witem
witem ::= tableitem | derived | ident (alias)?
fsep ::= "," | ((k-natural)? ((k-left | k-right | k-full) (k-outer)? | k-inner)?
  | k-cross) k-join
joincond-s ::= k-on expr-s | k-using "(" ident ("," ident)* ")"
joincond-r ::= k-on expr-r | k-using "(" ident ("," ident)* ")"
tableitem ::= (k-only)? table (alias)?
derived ::= (k-lateral)? "(" subq-r ")" (alias)?
alias ::= (k-as)? ident ("(" ident ("," ident)* ")")?
table ::= (schema ".")? tablename
qual ::= ident ("." ident)?
frame ::= (k-range | k-rows | k-groups) (bound | k-between bound k-and bound)
bound ::= k-unbounded (k-preceding | k-following) | k-current k-row | integer (k-preceding | k-following)
  | string (k-preceding | k-following)
type ::= typename ("(" integer ("," integer)? ")")? ((k-with | k-without) k-time k-zone)?
  ("[" "]")*
typename ::= k-double k-precision | k-character k-varying | k-timestamp | k-time | basetype | schematype
field ::= k-year | k-month | k-day | k-hour | k-minute | k-second | k-week | ident
unit ::= k-year | k-month | k-day | k-hour | k-minute | k-second | ident
binop ::= arithop | "=" | "<>" | "!=" | "<=" | ">=" | "<" | ">" | k-and | k-or | "~" | "~*" | "!~" | "!~*"
  | "@>" | "<@" | "&&" | "->" | "->>" | "#>" | "#>>" | "?" | "?|" | "?&"
arithop ::= "+" | "-" | "*" | "/" | "%" | "^" | "||" | "|/"
literal ::= number | string | k-null | k-true | k-false
"""

# Tokens, as GBNF (character by character) and as a Lark regular expression.
_TOKENS: dict[str, tuple[str, str]] = {
    "number": (r'[0-9]+ ("." [0-9]*)? ([eE] [-+]? [0-9]+)? | "." [0-9]+ ([eE] [-+]? [0-9]+)?',
               r"/[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?/"),
    "integer": ("[0-9]+", "/[0-9]+/"),
    "string": (r"""[eE]? "'" ([^'\\] | "''" | "\\" [^\x00])* "'" """.strip(), r"/[eE]?'([^'\\]|''|\\.)*'/"),
    "ident": (r'[a-zA-Z_] [a-zA-Z0-9_$]* | "\"" ([^"] | "\"\"")+ "\""', r'/[a-zA-Z_][a-zA-Z0-9_$]*|"([^"]|"")+"/'),
}
_NAME_RULES = ("tablename", "schema", "colname-s", "schematype", "fname")
# Whitespace before a token: bounded (one line break, a few spaces or tabs each side), so a model cannot
# spin on blank lines where the grammar would let it go on (after a complete query, say).
_WS_GBNF = r'[ \t]{0,8} ("\n" [ \t]{0,8})?'
_WS_LARK = r"/[ \t\n]+/"


def _nocase(word: str) -> str:
    """A keyword as GBNF characters that match it in any case."""
    return " ".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else f'"{c}"' for c in word)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
            **{chr(c): f"\\x{c:02x}" for c in range(32) if chr(c) not in "\n\r\t"}}
_ESCAPE = re.compile(r'[\\"\x00-\x1f]')


def _literal(text: str) -> str:
    """``text`` as one double-quoted literal, the same in GBNF and Lark: a name holding quotes, backslashes or
    line breaks (a quoted identifier may) stays one name."""
    return '"' + _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], text) + '"'


def _joined(rules: str) -> str:
    """Rules written over several lines (continuations indented) as one line each: GBNF ends a rule at a
    newline outside parentheses."""
    return re.sub(r"\n[ \t]+", " ", rules.strip())


_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_RULE_REF = re.compile(r"(?<![\w\"-])([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w-])")
_KEYWORD_NAMES = {f"k-{w.replace('_', '-')}": w for w in (*_KEYWORDS, "double", "precision", "character", "varying")}
_KEYWORD_NAMES["k-i-do-not-know"] = "i do not know"
_SYNTAX = "\n".join([_joined(_QUERY_RULES), _joined(_EXPR_RULES.replace("{X}", "s")),
                     _joined(_EXPR_RULES.replace("{X}", "r")), "colname-r ::= colname-s | ident"])


def _gbnf_fixed() -> str:
    # Each token takes the whitespace before it, so whitespace has one place and no rule is ambiguous about it.
    syntax = _LITERAL.sub(lambda m: "ws " + m.group(0), _SYNTAX)
    lines = [syntax.replace("root ::= ", "root ::= (", 1).replace("\n", ") ws\n", 1)]
    lines += [f"{name} ::= ws ({body})" for name, (body, _) in _TOKENS.items()]
    lines += [f"{name} ::= ws {_nocase(word)}" for name, word in sorted(_KEYWORD_NAMES.items())]
    lines.append("basetype ::= ws (" + " | ".join(_nocase(t) for t in _TYPES) + ")")
    lines.append(f"ws ::= {_WS_GBNF}")
    return "\n".join(lines)


def _lark_name(name: str) -> str:
    upper = name in _TOKENS or name in _KEYWORD_NAMES or name in _NAME_RULES or name == "basetype"
    name = name.replace("-", "_")
    return name.upper() if upper else name


def _lark_fixed() -> str:
    def convert(line: str) -> str:
        name, body = line.split(" ::= ", 1)
        parts = _LITERAL.split(body)
        literals = _LITERAL.findall(body)
        out = []
        for i, part in enumerate(parts):
            out.append(_RULE_REF.sub(lambda m: _lark_name(m.group(1)), part))
            if i < len(literals):
                out.append(literals[i])
        return f"{_lark_name(name)}: {''.join(out)}"

    # %ignore skips whitespace between tokens only: before the first and after the last it is a token.
    lines = ["start: SPACE? root SPACE?", f"SPACE: {_WS_LARK}"] + [convert(line) for line in _SYNTAX.splitlines()]
    lines += [f"{_lark_name(name)}: {lark}" for name, (_, lark) in _TOKENS.items()]
    lines += [f"{_lark_name(name)}: {_literal(word)}i" for name, word in sorted(_KEYWORD_NAMES.items())]
    lines.append("BASETYPE: " + " | ".join(f"{_literal(t)}i" for t in _TYPES))
    lines.append(f"%ignore {_WS_LARK}")
    return "\n".join(lines)


_GBNF_FIXED = _gbnf_fixed()
_LARK_FIXED = _lark_fixed()


def function_names(rows: Iterable[str], denied: Iterable[str] = (), denied_prefixes: Sequence[str] = ()) -> list[str]:
    """Function names for the grammar: ``rows`` (from :data:`FUNCTIONS_SQL`) and the special forms, without
    the names of denied functions."""
    refused = set(denied)
    prefixes = tuple(denied_prefixes)
    names = {n for n in rows if n not in refused and not n.startswith(prefixes)}
    return sorted(names | set(SPECIAL_FUNCTIONS))


def _type_base(rendered: str) -> str:
    """A column's type name without its modifiers and array brackets ("character varying(20)[]" -> the words)."""
    return rendered.split("(", 1)[0].split("[", 1)[0].strip()


@dataclass(frozen=True)
class Grammar:
    """One call's grammar in the two forms the daemon's backends read: GBNF (llama.cpp, vLLM) and Lark
    (llguidance, the transformers backend)."""

    gbnf: str
    lark: str

    def as_request(self) -> dict[str, str]:
        return {"gbnf": self.gbnf, "lark": self.lark}


def _names(tables: Sequence[Table], functions: Iterable[str]) -> dict[str, list[str]]:
    columns = [t.columns for t in tables]
    types = {c.type for cols in columns for c in cols}
    bases = {_type_base(t) for t in types}
    return {
        "tablename": list(dict.fromkeys(t.name for t in tables)),
        "schema": list(dict.fromkeys(t.schema for t in tables)),
        "colname-s": list(dict.fromkeys(c.name for cols in columns for c in cols)),
        # user-defined types (an enum): "mood", "public.mood"
        "schematype": sorted(b for b in bases if " " not in b and b.lower() not in _TYPES),
        "fname": list(dict.fromkeys(functions)),
    }


def _split_plain(names: list[str]) -> tuple[list[str], list[str]]:
    """Bare lower-case names (most of a catalog, checked in one match) and the others."""
    if _ALL_PLAIN.fullmatch("\n".join(names)):
        return names, []
    plain = [n for n in names if _PLAIN_NAME.match(n)]
    return plain, [n for n in names if not _PLAIN_NAME.match(n)]


def _gbnf_names(rule: str, names: list[str]) -> str:
    """Each name as rendered; a bare name also in any case (PostgreSQL folds it) and double-quoted.

    Bare names go in as a prefix tree (``"cust" ("omers" | "om_id")``), not one alternative per name:
    llama.cpp's grammar engine keeps one parse stack per alternative still alive, and checks every token
    against each, so a flat list of the 2,000 function names a catalog allows made each token cost
    seconds. With the tree, a name position holds one stack per distinct next character.
    """
    plain, other = _split_plain(names)
    exact = anycase = _NOTHING
    if plain:
        distinct = sorted(dict.fromkeys(plain))  # distinct already, and mostly in order: cheap
        exact = _prefix_tree(distinct, 0, len(distinct), 0)
        anycase = exact.translate(_ANY_CASE).replace(' ""', "").replace('"" ', "")
    parts = [_literal(n) for n in other] + [f"{rule}-bare", f'"\\"" {rule}-exact "\\""']
    # The same rules whatever the names: a name can add none.
    return "\n".join([f"{rule} ::= ws (" + " | ".join(parts) + ")", f"{rule}-exact ::= {exact}",
                      f"{rule}-bare ::= {anycase}"])


#: Inside a prefix tree's literals, each letter as a class of both cases: ``"ab1"`` becomes
#: ``"" [aA] "" [bB] "1"``, and the empty literals are then dropped.
_ANY_CASE = str.maketrans({c: f'" [{c}{c.upper()}] "' for c in "abcdefghijklmnopqrstuvwxyz"})


def _prefix_tree(names: list[str], lo: int, hi: int, depth: int) -> str:
    """``names[lo:hi]`` (sorted, distinct, bare: no character needs escaping), which share their first
    ``depth`` characters, as one GBNF group of what follows that prefix. A few names go in flat; work
    is per branching node, and per name only in C-level joins, so 100,000 column names take milliseconds."""
    optional = len(names[lo]) == depth  # the prefix itself is a name: it sorts first
    if optional:
        lo += 1
    if hi - lo <= _FLAT_NAMES:
        body = '("' + '" | "'.join([n[depth:] for n in names[lo:hi]]) + '")'
        return body + "?" if optional else body
    parts = []
    while lo < hi:
        first = names[lo]
        end = bisect.bisect_left(names, first[:depth] + chr(ord(first[depth]) + 1), lo, hi)
        if end - lo == 1:
            parts.append(f'"{first[depth:]}"')
        else:
            last, k = names[end - 1], depth + 1
            while k < len(first) and k < len(last) and first[k] == last[k]:
                k += 1
            parts.append(f'"{first[depth:k]}" ' + _prefix_tree(names, lo, end, k))
        lo = end
    body = "(" + " | ".join(parts) + ")"
    return body + "?" if optional else body


def _lark_names(rule: str, names: list[str]) -> str:
    if not names:
        return f"{_lark_name(rule)}: /[\\x00]/"
    plain, other = _split_plain(names)
    parts = [_literal(n) for n in other]
    if plain:
        parts += ['"' + '"i | "'.join(plain) + '"i', '"\\"' + '\\"" | "\\"'.join(plain) + '\\""']
    return f"{_lark_name(rule)}: " + " | ".join(parts)


def build(tables: Sequence[Table], functions: Iterable[str]) -> Grammar:
    """The grammar for a prompt showing ``tables``, in which the model may call ``functions``."""
    names = _names(tables, functions)
    gbnf = "\n".join([_GBNF_FIXED, *(_gbnf_names(rule, n) for rule, n in names.items())])
    lark = "\n".join([_LARK_FIXED, *(_lark_names(rule, n) for rule, n in names.items())])
    return Grammar(gbnf + "\n", lark + "\n")


def _bare_name(signature: str) -> str:
    """``pg_catalog.lower(text)`` -> ``lower``: the name a query calls a DBA's listed function by."""
    name = signature.split("(", 1)[0].strip().rsplit(".", 1)[-1]
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def for_prompt(plpy: Plpy, cached: CachedSchema, tables: Sequence[int], caller_path: Sequence[str],
               allowed: Sequence[str] = (), denied: Sequence[str] = ()) -> Grammar:
    """The grammar of a prompt showing ``cached``'s tables at ``tables``, for the caller's functions and the
    DBA's lists (``allowed_functions``, ``denied_functions``); kept with the cached schema, which is dropped
    when the catalog changes, so a call with the same tables reuses it."""
    key = (tuple(tables), tuple(allowed), tuple(denied))
    hit = cached.derived.get("grammar")
    if hit is not None and hit[0] == key:
        found: Grammar = hit[1]
        return found
    functions = cached.derived.get("grammar_functions")
    if functions is None or functions[0] != key[1:]:
        plan = _spi.plan(plpy, FUNCTIONS_SQL, ["name[]", "name[]", "name[]"])
        rows = plpy.execute(plan, [list(caller_path), list(SCHEMAS),
                                   sorted(policy.ALLOWED | {_bare_name(s) for s in allowed})])
        refused = set().union(*policy.DENIED.values()) | {_bare_name(s) for s in denied}
        prefixes = tuple(p for group in policy.DENIED_PREFIXES.values() for p in group)
        functions = (key[1:], function_names((r["name"] for r in rows), refused, prefixes))
        cached.derived["grammar_functions"] = functions
    shown = cached.schema.tables
    built = build([shown[i] for i in tables], functions[1])
    cached.derived["grammar"] = (key, built)
    return built
