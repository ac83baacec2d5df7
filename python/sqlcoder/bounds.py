"""Text other roles wrote, cut to the DBA's limits before it reaches a prompt.

Comments, instructions and join hints are written by object owners, and a
prompt is built for whoever asks: a schema owner's 5 MB comment must not make
another role's prompt 5 MB long. Each piece is cut to ``max_comment_chars``
with a visible marker, all instructions together to ``max_instructions_chars``,
and the caller hears which objects were cut in a NOTICE.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._spi import Plpy

__all__ = ["MARK", "marked", "marker_text", "cut", "bound_instructions", "notice_cut"]

MARK = "[cut by sqlcoder"
_NOTICE_NAMES = 3  # objects named in one NOTICE; the rest are counted


def marker_text(what: str) -> str:
    return f"{MARK}: {what}]"


def marked(text: str, more: int | None) -> str:
    """``text`` (already cut) with the marker saying how much is missing."""
    return text + "…" + marker_text(f"{more} more characters" if more is not None else "the rest")


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` at most ``limit`` characters plus the marker; and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return marked(text[:limit], len(text) - limit), True


def bound_instructions(owners: Sequence[tuple[str, str, int]], callers: Sequence[str], line_chars: int,
                       total_chars: int) -> tuple[list[str], list[str]]:
    """Instruction lines for the prompt, and the names of those cut.

    ``owners`` are (name, text, full length) from ``sqlcoder.instructions``, the
    text already cut to ``line_chars`` in SQL. The caller's own lines (within
    ``total_chars`` already) come first in the budget, so owners' text can
    never crowd them out; owners' lines fill what is left, in order, and the
    first that does not fit is cut and the rest left out.
    """
    budget = total_chars - sum(len(line) for line in callers)
    lines: list[str] = []
    names: list[str] = []
    for i, (name, text, length) in enumerate(owners):
        was_cut = length > line_chars
        if was_cut:
            text = marked(text[:line_chars], length - line_chars)
        if len(text) > budget:
            if budget > 0:
                lines.append(marked(text[:budget], None))
            names.append(name)
            if len(owners) - i - 1:
                names.append(f"{len(owners) - i - 1} more instruction(s) left out (max_instructions_chars)")
            break
        lines.append(text)
        budget -= len(text)
        if was_cut:
            names.append(name)
    return lines + list(callers), names


def notice_cut(plpy: Plpy, names: Sequence[str]) -> None:
    """One NOTICE naming what was cut (the first few, then a count)."""
    if not names:
        return
    shown = ", ".join(names[:_NOTICE_NAMES])
    more = f" and {len(names) - _NOTICE_NAMES} more" if len(names) > _NOTICE_NAMES else ""
    plpy.notice(f"sqlcoder: text longer than sqlcoder allows was cut in the prompt: {shown}{more}",
                hint="Owners can shorten it; a superuser can raise max_comment_chars or max_instructions_chars "
                     "in sqlcoder.config.")
