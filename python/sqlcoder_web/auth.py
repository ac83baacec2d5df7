"""Logging in as a PostgreSQL role: the password goes to PostgreSQL, never anywhere else.

A login is accepted only if PostgreSQL itself asked for the password and
accepted it: a server that would let the role in without one (trust, peer,
a .pgpass file of the account sqlcoder-web runs as) could otherwise be used to
act as any role. Every failure reads the same, whichever part was wrong.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import psycopg

from . import db
from .sessions import Session, SessionStore, make_pool

__all__ = ["LoginFailed", "login", "role_note", "LOGIN_FAILED", "MAX_ROLE_CHARS", "MAX_PASSWORD_CHARS"]

log = logging.getLogger(__name__)

LOGIN_FAILED = "Login failed: that role name and password do not match, or the role may not log in."
UNREACHABLE = "The database cannot be reached right now; try again in a moment."
NO_PASSWORD_ASKED = ("Login refused: the database did not ask for a password, so it cannot prove who you are. "
                     "The DBA must require password authentication for this connection (pg_hba.conf).")
TOO_MANY = "Too many people are logged in right now; try again later."
MAX_ROLE_CHARS = 63  # NAMEDATALEN - 1
MAX_PASSWORD_CHARS = 1024
FAILED_LOGIN_DELAY_S = 1.0  # slows guessing through the page; PostgreSQL's own limits still apply


class LoginFailed(Exception):
    """A login that did not succeed, with the message the page shows."""


# libpq reports connection failures without a SQLSTATE. Those it found on the
# client side (no server there) read as "cannot be reached"; everything the server
# refused (wrong password, unknown role, no pg_hba.conf entry, in whatever
# language the server speaks) reads as LOGIN_FAILED, so no one learns which part was wrong.
_UNREACHABLE_WORDS = ("Is the server running", "Connection refused", "No such file or directory",
                      "timeout expired", "could not translate host name", "Network is unreachable",
                      "No route to host", "server closed the connection unexpectedly")


def _is_auth_failure(exc: psycopg.Error) -> bool:
    text = str(exc)
    return not any(w in text for w in _UNREACHABLE_WORDS)


def role_note(who: db.Who) -> str | None:
    """What the page tells a role that may log in but will not get answers."""
    if not who.granted:
        return (f"Your role {who.role} may not use sqlcoder yet: ask a DBA to run "
                f"SELECT sqlcoder.grant_access('{who.role}');")
    if who.superuser:
        return ("You are logged in as a superuser: sqlcoder refuses to run generated SQL for superusers unless a "
                "DBA sets allow_superuser_run. Log in as an ordinary role.")
    return None


def _last_line(exc: BaseException) -> str:
    """The server's or libpq's reason (it never contains the password)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][-300:] if lines else type(exc).__name__


@dataclass(frozen=True)
class LoggedIn:
    key: str
    session: Session
    who: db.Who


async def login(store: SessionStore, conninfo: str, role: str, password: str, timeout_s: int) -> LoggedIn:
    """Check the role and password against PostgreSQL, then open that role's pool and session."""
    if not role or len(role) > MAX_ROLE_CHARS or len(password) > MAX_PASSWORD_CHARS or "\x00" in role + password:
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)
        raise LoginFailed(LOGIN_FAILED)
    if store.full():
        await store.reap()
        if store.full():
            raise LoginFailed(TOO_MANY)
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, user=role, password=password, autocommit=True,
                                                     connect_timeout=timeout_s, application_name="sqlcoder-web")
    except psycopg.Error as exc:
        if _is_auth_failure(exc):
            log.info("login failed: %s", _last_line(exc))
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)
            raise LoginFailed(LOGIN_FAILED) from None
        log.warning("database unreachable at login: %s", _last_line(exc))
        raise LoginFailed(UNREACHABLE) from None
    try:
        if not conn.pgconn.used_password:
            log.warning("refused a login: the server did not ask for a password")
            raise LoginFailed(NO_PASSWORD_ASKED)
        who = await db.whoami(conn)
    finally:
        await conn.close()
    pool = make_pool(conninfo, timeout_s, user=role, password=password)
    await pool.open(wait=False)
    session = Session(role=who.role, pool=pool, note=role_note(who), superuser=who.superuser)
    return LoggedIn(store.add(session), session, who)
