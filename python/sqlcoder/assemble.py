"""Put the prompt together: cached schema, golden examples, instructions, the model's template, its budget.

``sqlcoder.prompt()`` and ``sqlcoder.ask()`` both come here, so prompt() shows
exactly what ask sends. The call's :class:`~sqlcoder.model.Model` says which
model the daemon serves and how long its context is; when it cannot be reached, the
prompt is still built, with the configured or the 70B template and the whole
schema. When the daemon is reachable and the schema does not fit the budget,
the tables least relevant to the question are left out (with a NOTICE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import _spi, bounds, catalog, examples, follow_up, schema_cache, value_hints
from ._spi import Plpy
from .config import Settings
from .errors import DaemonError, DaemonNotResponding, NothingVisible
from .model import Model, ModelInfo
from .prompt import choose_template, render_prompt
from .pruning import select_tables
from .request import Request

__all__ = ["dba_instructions", "context_budget", "build_call_prompt", "CallPrompt",
           "DEFAULT_MAX_NEW_TOKENS"]

DEFAULT_MAX_NEW_TOKENS = 300  # the protocol's default for generate
# A token covers at least one byte for the SentencePiece (byte fallback) and
# byte-level BPE tokenizers SQLCoder models use, plus one for a leading space.
_BYTES_SLACK = 8
_SEPARATOR_TOKENS = 2  # the blank line between two tables
_ESTIMATE_SLACK = 64  # the per-table estimate errs high (separators, join lines counted twice)
_EXAMPLES_SHARE = 4  # golden examples may take up to 1/4 of the budget when it is tight

_DBA_INSTRUCTIONS_SQL = """
SELECT i.id, pg_catalog.left(i.instruction, $2) AS instruction, pg_catalog.length(i.instruction) AS chars
FROM sqlcoder.instructions i
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = i.scope
WHERE i.scope IS NULL OR n.nspname = ANY ($1::name[])
ORDER BY i.scope IS NOT NULL, i.id
"""


def dba_instructions(plpy: Plpy, caller_path: Sequence[str],
                     max_chars: int) -> list[tuple[str, str, int]]:
    """``sqlcoder.instructions`` for this caller, global ones first: (name, text cut to ``max_chars``, length)."""
    plan = _spi.plan(plpy, _DBA_INSTRUCTIONS_SQL, ["name[]", "int4"])
    return [(f"instruction {r['id']}", r["instruction"], int(r["chars"]))
            for r in plpy.execute(plan, [list(caller_path), max_chars])]


def context_budget(settings: Settings, info: ModelInfo | None) -> int | None:
    """Most prompt tokens: the configured budget, else context length minus the tokens to generate."""
    if settings.context_budget_tokens:
        return settings.context_budget_tokens
    if info is None or info.context_length is None:
        return None
    new_tokens = settings.max_new_tokens or info.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    return max(info.context_length - new_tokens, 0)


Counter = Callable[[list[str]], list[int]]


def _hint_settings(settings: Settings) -> value_hints.HintSettings | None:
    if not settings.value_hints:
        return None
    return value_hints.HintSettings(settings.value_hints_max_values, settings.value_hints_max_distinct)


_QUOTED_SQL = ("SELECT pg_catalog.array_agg(pg_catalog.quote_ident(p.n) ORDER BY p.o) AS names "
               "FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS p(n, o)")


def refuse_empty(plpy: Plpy, caller_path: Sequence[str]) -> None:
    """No table to show: an error naming the schemas the caller could use, before the model is asked."""
    own = [n for n in caller_path if n != "pg_catalog" and not n.startswith("pg_temp_")]
    path = plpy.execute(_spi.plan(plpy, _QUOTED_SQL, ["text[]"]), [own])[0]["names"] or []
    shown = ", ".join(path) or "(no schema you may use)"
    others, more = catalog.schemas_off_path(plpy, caller_path)
    if not others:
        raise NothingVisible(
            "sqlcoder: you may read no table or view on your search_path, nor in any other schema",
            detail=f"Your effective search_path: {shown}. The model would be shown an empty schema.")
    listed = ", ".join(others) + (", ..." if more else "")
    raise NothingVisible(
        "sqlcoder: you may read no table or view on your search_path; the model would be shown an empty schema",
        detail=f"Your effective search_path: {shown}. Schemas you may use that are not on it: {listed}.",
        hint=f"SET search_path = {', '.join([*path, *others])};")


@dataclass(frozen=True)
class CallPrompt:
    """A prompt and the schema it shows: ``tables`` are positions in ``cached.schema.tables`` (all of them
    when nothing was left out), which the call's grammar (grammar.py) names."""

    text: str
    cached: schema_cache.CachedSchema
    tables: tuple[int, ...]


def build_call_prompt(plpy: Plpy, settings: Settings, request: Request, model: Model,
                      correction: str = "") -> CallPrompt:
    """The prompt for ``request``, pruned to the model's context when the daemon is reachable, with the
    tables it shows.

    After the schema come the golden examples the caller may read (at most
    ``max_examples``), then the question a follow-up refines (``request.earlier``,
    follow_up.py), then ``correction`` (a refused attempt, correction.py).
    Nothing is asked of the model when the caller may see no table.
    """
    question, caller_path, earlier = request.question, request.caller_path, request.earlier
    cached = schema_cache.get(plpy, caller_path, _hint_settings(settings), settings.max_comment_chars)
    if not cached.schema.tables:
        refuse_empty(plpy, caller_path)
    relevant = follow_up.relevance_text(question, earlier)
    chosen = examples.select(plpy, cached, relevant, settings.max_examples)
    lines, cut = bounds.bound_instructions(dba_instructions(plpy, caller_path, settings.max_comment_chars),
                                           list(request.instructions), settings.max_comment_chars,
                                           settings.max_instructions_chars)
    bounds.notice_cut(plpy, cached.schema.cut + cut)
    info = model.info()
    template = choose_template(settings.template, info.model if info else None)
    refines = follow_up.render(earlier, template)
    tail = examples.render(chosen) + refines + correction
    full = render_prompt(question, cached.text, lines, template, tail)
    budget = context_budget(settings, info)
    every = tuple(range(len(cached.schema.tables)))
    if info is None or budget is None or len(full.encode("utf-8")) + _BYTES_SLACK <= budget:
        return CallPrompt(full, cached, every)
    try:
        count = model.count_tokens
        # Examples take at most a quarter of the budget, the least similar leave first.
        while chosen and count([examples.render(chosen)])[0] > budget // _EXAMPLES_SHARE:
            chosen.pop()
        tail = examples.render(chosen) + refines + correction
        full = render_prompt(question, cached.text, lines, template, tail)
        text, kept = _pruned(plpy, cached, question, lines, template, budget, info.model, count, full, tail,
                             relevant)
        return CallPrompt(text, cached, kept)
    except DaemonNotResponding:
        if model.client.budget is not None:
            raise
        return CallPrompt(full, cached, every)
    except DaemonError:
        return CallPrompt(full, cached, every)  # counting failed: send everything and let the daemon judge


def _pruned(plpy: Plpy, cached: schema_cache.CachedSchema, question: str, lines: list[str], template: str,
            budget: int, model: str, count: Counter, full: str, tail: str = "",
            relevant: str = "") -> tuple[str, tuple[int, ...]]:
    blocks, join_counts = cached.counts(model, count)
    costs = [c + _SEPARATOR_TOKENS for c in blocks]
    for (left, right, _), tokens in zip(cached.joins, join_counts):
        half = math.ceil((tokens + 1) / 2)
        costs[left] += half
        costs[right] += half
    base = count([render_prompt(question, "", lines, template, tail)])[0]
    # Count the whole prompt only when the estimate says it may fit: then it is
    # small, while a huge schema could exceed the daemon's request size limit.
    if base + sum(costs) <= budget + _ESTIMATE_SLACK and count([full])[0] <= budget:
        return full, tuple(range(len(cached.schema.tables)))
    scores = cached.index.scores(relevant or question)
    kept = select_tables(scores, costs, budget - base)
    # Exact check: joins and token merges at the seams may cost a little more
    # than estimated; drop the least relevant tables until it fits.
    drop_order = sorted(kept, key=lambda i: (scores[i], -i))
    while True:
        prompt = render_prompt(question, cached.render(kept), lines, template, tail)
        over = count([prompt])[0] - budget
        if over <= 0 or not kept:
            break
        while over > 0 and drop_order:
            victim = drop_order.pop(0)
            kept.remove(victim)
            over -= costs[victim]
    total = len(cached.schema.tables)
    plpy.notice(f"sqlcoder: the schema does not fit the model's context ({budget} tokens); "
                f"{total - len(kept)} of {total} tables were left out")
    return prompt, tuple(sorted(kept))
