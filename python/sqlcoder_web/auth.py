"""Logging in as a PostgreSQL role: the password goes to PostgreSQL, never anywhere else.

A login is accepted only if PostgreSQL itself asked for the password and
accepted it: a server that would let the role in without one (trust, peer,
a .pgpass file of the account sqlcoder-web runs as) could otherwise be used to
act as any role. Every failure reads the same, whichever part was wrong, and
comes after a pause that holds the role's and the address's turn
(:mod:`.throttle`): guesses sent together are checked one after another.

In single-user mode there is no password: :class:`OneTimeLink` is the key, and
each link opens one session only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from . import db
from .sessions import Session, SessionsFull, SessionStore, make_pool, new_token, same_token
from .throttle import LoginThrottle, Throttled

__all__ = ["LoginFailed", "OneTimeLink", "login", "role_note", "LOGIN_FAILED", "MAX_ROLE_CHARS",
           "MAX_PASSWORD_CHARS", "THROTTLED", "TOO_MANY"]

log = logging.getLogger(__name__)

LOGIN_FAILED = "Login failed: that role name and password do not match, or the role may not log in."
UNREACHABLE = "The database cannot be reached right now; try again in a moment."
NO_PASSWORD_ASKED = ("Login refused: the database did not ask for a password, so it cannot prove who you are. "
                     "The DBA must require password authentication for this connection (pg_hba.conf).")
TOO_MANY = "Too many people are logged in right now; try again later."
THROTTLED = ("Too many login attempts for this role or from this address right now; wait a minute and try "
             "again.")
MAX_ROLE_CHARS = 63  # NAMEDATALEN - 1
MAX_PASSWORD_CHARS = 1024
#: After a failed login the role's and the address's turns stay taken this long: one guess per pause for
#: each, however many are sent at once. PostgreSQL's own limits still apply.
FAILED_LOGIN_DELAY_S = 1.0
#: Attempts that may wait for a role's or an address's turn; more are refused at once.
MAX_WAITING_ATTEMPTS = 8


def login_throttle() -> LoginThrottle:
    return LoginThrottle(FAILED_LOGIN_DELAY_S, MAX_WAITING_ATTEMPTS)


class LoginFailed(Exception):
    """A login that did not succeed, with the message the page shows and its HTTP status."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


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


async def login(store: SessionStore, throttle: LoginThrottle, conninfo: str, role: str, password: str,
                timeout_s: int, address: str) -> LoggedIn:
    """Check the role and password against PostgreSQL, then open that role's pool and session; one attempt
    at a time per role and per client ``address``, a failure holding both through the pause."""
    try:
        async with throttle.attempt(role[: MAX_ROLE_CHARS + 1], address) as attempt:
            if (not role or len(role) > MAX_ROLE_CHARS or len(password) > MAX_PASSWORD_CHARS
                    or "\x00" in role + password):
                attempt.failed()
                raise LoginFailed(LOGIN_FAILED)
            if not store.has_room_for(role):
                await store.reap()
                if not store.has_room_for(role):
                    raise LoginFailed(TOO_MANY, 503)
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, user=role, password=password,
                                                             autocommit=True, connect_timeout=timeout_s,
                                                             application_name="sqlcoder-web")
            except psycopg.Error as exc:
                if _is_auth_failure(exc):
                    log.info("login failed: %s", _last_line(exc))
                    attempt.failed()
                    raise LoginFailed(LOGIN_FAILED) from None
                log.warning("database unreachable at login: %s", _last_line(exc))
                raise LoginFailed(UNREACHABLE) from None
            return await _open_session(store, conninfo, role, password, timeout_s, conn)
    except Throttled:
        log.warning("login refused: too many attempts waiting for the same role or from %s", address)
        raise LoginFailed(THROTTLED, 429) from None


async def _open_session(store: SessionStore, conninfo: str, role: str, password: str, timeout_s: int,
                        conn: psycopg.AsyncConnection) -> LoggedIn:
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
    try:
        key = await store.add(session)
    except SessionsFull:
        await pool.close()
        raise LoginFailed(TOO_MANY, 503) from None
    return LoggedIn(key, session, who)


class OneTimeLink:
    """The single-user mode's key: a link that opens one session, once.

    A used link (in a browser's history, a proxy's log, over a shoulder) opens
    nothing more; each use prints the next link where the first one was printed
    (the server's standard output), for whoever started sqlcoder-web.
    """

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token = new_token()

    @property
    def url(self) -> str:
        return f"{self.base_url}/login?token={self.token}"

    def announce(self, first: bool = True) -> None:
        what = "open" if first else "that link has been used; the next one-time link is"
        print(f"sqlcoder-web: {what} {self.url}", flush=True)

    def take(self, token: str | None) -> bool:
        """True for the current token, which is then spent (no await between the check and the spending, so
        of two requests racing with one token only one gets True)."""
        if not same_token(token, self.token):
            return False
        self.token = new_token()
        self.announce(first=False)
        return True
