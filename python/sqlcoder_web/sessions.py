"""Server-side sessions: a random cookie names one logged-in role, its connection pool and CSRF token.

The password is handed to the session's psycopg pool, which needs it to
reconnect after a lost database, and lives only in this process's memory for
the session's life: never in a cookie, on disk or in a log. A session ends at
logout, after ``session_idle_minutes`` without a request, or
``session_max_hours`` after login; its pool (and so the password) goes with it.

Sessions are capped overall (``max_sessions``) and per role
(``max_sessions_per_role``): a role at its cap that logs in again ends its own
least recently used session, so one account logging in over and over holds a
few sessions, never every one.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .results import Result

__all__ = ["Lease", "Session", "SessionBusy", "SessionStore", "SessionsFull", "make_pool", "new_token", "same_token"]

log = logging.getLogger(__name__)

IDLE_CONNECTION_S = 120.0
MAX_KEPT_ANSWERS = 8  # per session: the rows of its latest answers, shown again when one is reopened
MAX_KEPT_FOLLOW_UPS = 256  # per session: which answer each of its latest follow-ups refined (its threads)
MAX_THREAD_TURNS = 20  # most turns of one conversation the page shows
MAX_CONNECTIONS = 2  # per session: a question and, beside it, a click in another tab


class SessionBusy(Exception):
    """Every connection of the session is in use by its other requests (long questions in other tabs)."""


class SessionsFull(Exception):
    """``max_sessions`` are open, none of them the role's own: no room for another person."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison; an absent token never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())  # type: ignore[union-attr]


@dataclass
class Session:
    """One logged-in person."""

    role: str
    pool: AsyncConnectionPool
    csrf: str = field(default_factory=new_token)
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    result: Result | None = None  # the last result, for its CSV download
    owns_pool: bool = True
    note: str | None = None  # shown on every page: why this role will not get far
    in_use: int = 0  # connections its requests hold right now
    superuser: bool = False  # sees the daemon's full status and an error's technical details
    #: Connections its requests hold right now, so that a cancel reaches the statement each runs.
    running: set[psycopg.AsyncConnection] = field(default_factory=set)
    #: History id -> (the SQL on screen, its result): the latest answers' rows, newest last.
    answers: OrderedDict[int, tuple[str, Result]] = field(default_factory=OrderedDict)
    #: History id of a follow-up -> the history id of the answer it refined, newest last.
    follow_ups: OrderedDict[int, int] = field(default_factory=OrderedDict)

    def keep_answer(self, history_id: int, sql: str, result: Result) -> None:
        self.answers[history_id] = (sql, result)
        self.answers.move_to_end(history_id)
        while len(self.answers) > MAX_KEPT_ANSWERS:
            self.answers.popitem(last=False)

    def keep_follow_up(self, history_id: int, refined: int) -> None:
        self.follow_ups[history_id] = refined
        self.follow_ups.move_to_end(history_id)
        while len(self.follow_ups) > MAX_KEPT_FOLLOW_UPS:
            self.follow_ups.popitem(last=False)

    def thread(self, history_id: int) -> list[int]:
        """The conversation ``history_id`` is part of, as this session saw it: the first question, then
        every follow-up of it and of its follow-ups, oldest first (at most ``MAX_THREAD_TURNS``, the
        latest kept); ``[history_id]`` alone when it is no follow-up and has none."""
        root, seen = history_id, {history_id}
        while root in self.follow_ups and self.follow_ups[root] not in seen:
            root = self.follow_ups[root]
            seen.add(root)
        turns, frontier = {root}, {root}
        while frontier:  # every follow-up is newer than what it refines: a few passes at most
            frontier = {child for child, parent in self.follow_ups.items()
                        if parent in frontier and child not in turns}
            turns |= frontier
        return sorted(turns)[-MAX_THREAD_TURNS:]

    async def cancel_running(self) -> int:
        """Ask PostgreSQL to cancel the statement on each connection in use (a question waiting on the
        model ends and closes its daemon request); returns how many were signalled."""
        conns = list(self.running)
        for conn in conns:
            try:
                await conn.cancel_safe(timeout=5)
            except psycopg.Error as exc:  # the connection went away meanwhile: nothing left to cancel
                log.info("cancel not delivered: %s", exc)
        return len(conns)

    async def renew_pool(self) -> None:
        """Swap in a fresh pool with the same connection parameters (see :class:`Lease`)."""
        old, owned = self.pool, self.owns_pool
        self.pool = make_pool(old.conninfo, old.timeout, **(old.kwargs or {}))  # type: ignore[arg-type]
        self.owns_pool = True
        await self.pool.open(wait=False)
        if owned:
            await old.close(timeout=0)


class SessionStore:
    """Sessions by cookie value, with expiry, a ceiling on how many exist at once and one per role."""

    def __init__(self, idle_s: float, max_age_s: float, max_sessions: int, max_per_role: int | None = None):
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.max_per_role = max_sessions if max_per_role is None else max_per_role
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def full(self) -> bool:
        return len(self._sessions) >= self.max_sessions

    def count(self, role: str) -> int:
        return sum(1 for s in self._sessions.values() if s.role == role)

    def has_room_for(self, role: str) -> bool:
        """Whether ``role`` can log in now: a free place, or a session of its own to replace."""
        return not self.full() or self.count(role) > 0

    async def add(self, session: Session) -> str:
        """Store ``session`` under a new cookie value. A role at ``max_per_role`` (or holding a session when
        the store is full) gives up its least recently used session; :class:`SessionsFull` when the
        store is full of other roles' sessions."""
        mine = [k for k, s in self._sessions.items() if s.role == session.role]
        victim = None
        if mine and (len(mine) >= self.max_per_role or self.full()):
            victim = min(mine, key=lambda k: self._sessions[k].last_seen)
            evicted = self._sessions.pop(victim)
        elif self.full():
            raise SessionsFull()
        key = new_token()
        self._sessions[key] = session  # before any await: a concurrent login sees the count it must
        if victim is not None:
            log.info("role %s logged in again with %d sessions open: its least recently used one ends",
                     session.role, len(mine))
            if evicted.owns_pool:
                await evicted.pool.close()
        return key

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.last_seen > self.idle_s or now - s.created > self.max_age_s

    async def get(self, key: str | None) -> Session | None:
        """The live session for a cookie value (touched), or None; an expired one is closed."""
        s = self._sessions.get(key) if key else None
        if s is None:
            return None
        now = time.monotonic()
        if self._expired(s, now):
            await self.remove(key)
            return None
        s.last_seen = now
        return s

    async def remove(self, key: str | None) -> None:
        s = self._sessions.pop(key, None) if key else None
        if s is not None and s.owns_pool:
            await s.pool.close()

    async def reap(self) -> int:
        """Close every expired session; returns how many."""
        now = time.monotonic()
        stale = [k for k, s in self._sessions.items() if self._expired(s, now)]
        for k in stale:
            await self.remove(k)
        return len(stale)

    async def reap_forever(self, every_s: float = 30.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.reap()
            except Exception:  # keep reaping; a pool that fails to close is logged
                log.exception("closing expired sessions failed")

    async def close_all(self) -> None:
        for k in list(self._sessions):
            await self.remove(k)


def make_pool(conninfo: str, timeout_s: float, **kwargs: Any) -> AsyncConnectionPool:
    """One person's pool: at most two connections, kept while in use and closed after two idle minutes.

    Kept connections keep the extension's per-backend caches (the schema
    catalog) warm between questions; none is opened before the first request
    (``min_size=0``), and each is checked before use, so one the server
    dropped is replaced at once.
    """
    return AsyncConnectionPool(
        conninfo, kwargs={"autocommit": True, "application_name": "sqlcoder-web",
                          "connect_timeout": max(1, int(timeout_s)), **kwargs},
        min_size=0, max_size=MAX_CONNECTIONS, max_idle=IDLE_CONNECTION_S, timeout=timeout_s, open=False,
        check=AsyncConnectionPool.check_connection, num_workers=1)


class Lease:
    """At most one connection for one request, taken from the session's pool at first use.

    A pool that could not connect waits out a growing backoff before it tries
    again, so after such a failure the session gets a fresh pool: the first
    request after the database is back connects at once.
    """

    def __init__(self, session: Session):
        self._session = session
        self._cm: Any = None
        self._conn: psycopg.AsyncConnection | None = None

    async def conn(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            await self._release()
            self._cm = self._session.pool.connection()
            try:
                self._conn = await self._cm.__aenter__()
            except PoolTimeout:
                self._cm = None
                if self._session.in_use >= MAX_CONNECTIONS:
                    raise SessionBusy() from None  # this person's own requests hold every connection
                await self._session.renew_pool()
                raise
            self._session.in_use += 1
            self._session.running.add(self._conn)
        return self._conn

    async def _release(self) -> None:
        cm, conn, self._cm, self._conn = self._cm, self._conn, None, None
        if conn is not None:
            self._session.running.discard(conn)
        if cm is not None:
            self._session.in_use -= 1
            await cm.__aexit__(None, None, None)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._release()
