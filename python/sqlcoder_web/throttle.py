"""Login attempts one at a time per role and per client address, each failure holding its turn for a pause.

A pause per request would not slow a guesser who sends many requests at once
(200 concurrent wrong passwords once took 4.4 s in all). Here every attempt
first takes the turn of the role it names and of the address it comes from, and
a failed attempt keeps both turns through the pause: one role, or one address,
gets at most one guess checked per pause, however many requests arrive
together. Only a few attempts may wait for a turn; more are refused at once
(:class:`Throttled`), so waiting guesses never hold the server's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Attempt", "LoginThrottle", "Throttled"]


class Throttled(Exception):
    """Too many attempts are already waiting for this role or address."""


@dataclass
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


@dataclass
class Attempt:
    """One login attempt holding its turns; :meth:`failed` makes it keep them through the pause."""

    failed_: bool = False

    def failed(self) -> None:
        self.failed_ = True


class LoginThrottle:
    """Turns by key (``role:NAME``, ``address:IP``); an entry lives only while someone holds or waits for it."""

    def __init__(self, pause_s: float, max_waiting: int):
        self.pause_s = pause_s
        self.max_waiting = max_waiting
        self._turns: dict[str, _Turn] = {}
        self.refused = 0

    def __len__(self) -> int:
        return len(self._turns)

    async def _take(self, key: str) -> None:
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        if turn.waiting >= self.max_waiting:
            self.refused += 1
            raise Throttled(key)
        turn.waiting += 1
        try:
            await turn.lock.acquire()
        finally:
            turn.waiting -= 1
            if not turn.lock.locked() and turn.waiting == 0:
                self._turns.pop(key, None)  # cancelled while waiting, nobody else there

    def _give(self, key: str) -> None:
        turn = self._turns[key]
        turn.lock.release()
        if turn.waiting == 0:
            del self._turns[key]

    @contextlib.asynccontextmanager
    async def attempt(self, role: str, address: str) -> AsyncIterator[Attempt]:
        """Hold the role's turn, then the address's (always in that order: no two attempts wait on each
        other in a cycle) for one attempt; after :meth:`Attempt.failed`, through the pause as well."""
        held: list[str] = []
        try:
            for key in (f"role:{role}", f"address:{address}"):
                await self._take(key)
                held.append(key)
            attempt = Attempt()
            try:
                yield attempt
            finally:
                if attempt.failed_:  # also when the failure leaves the block as an exception
                    await asyncio.sleep(self.pause_s)
        finally:
            for key in reversed(held):
                self._give(key)
