"""What a caller asked, checked once: the question, their instructions, their visible search path, and
the earlier answer a follow-up refines.

``ask``, ``run`` and ``prompt`` take these as loose SQL arguments; every step after the checks here
(prompt assembly, generation, correction, the grammar) reads them from one :class:`Request`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import InvalidQuestion, NullQuestion
from .follow_up import Earlier

__all__ = ["Request", "read_request"]


@dataclass(frozen=True)
class Request:
    """A checked question: within the DBA's limits, stripped, free of NUL bytes."""

    question: str
    instructions: tuple[str, ...] = ()
    caller_path: tuple[str, ...] = ()
    earlier: Earlier | None = None


def read_request(settings: Settings, question: Any, instructions: Any, caller_path: Sequence[str] | None,
                 earlier: Earlier | None = None) -> Request:
    """The SQL arguments as a :class:`Request`; a bad question or instructions raise with a HINT."""
    return Request(_check_question(question, settings), tuple(_instructions(instructions, settings)),
                   tuple(caller_path or ()), earlier)


def _check_question(question: Any, settings: Settings) -> str:
    if question is None:
        raise NullQuestion("the question must not be NULL")
    if not isinstance(question, str) or not question.strip():
        raise InvalidQuestion("the question must not be empty")
    if len(question) > settings.max_question_chars:
        raise InvalidQuestion(
            f"the question is {len(question)} characters long; the limit is {settings.max_question_chars}",
            hint="Shorten the question, or ask a superuser to raise max_question_chars in sqlcoder.config.")
    if "\x00" in question:
        raise InvalidQuestion("the question contains a NUL character")
    return question.strip()


def _instructions(instructions: Any, settings: Settings) -> list[str]:
    if instructions is None:
        return []
    text = str(instructions)
    if len(text) > settings.max_instructions_chars:
        raise InvalidQuestion(
            f"the instructions are {len(text)} characters long; the limit is {settings.max_instructions_chars}",
            hint="Shorten the instructions, or ask a superuser to raise max_instructions_chars in sqlcoder.config.")
    return [line for line in text.splitlines() if line.strip()]
