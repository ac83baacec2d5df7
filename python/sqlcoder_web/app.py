"""The Starlette application: the routes, each its own handler, and what they share.

Routes: ``/login`` and ``/logout``; ``/`` (the page; ``?h=ID`` reopens one of
your past questions with its rows and its conversation), ``/ask`` (POST;
``follow_up=ID`` refines that earlier answer) and ``/run`` (POST),
``/feedback`` (POST, about the SQL on screen), ``/cancel`` (POST: stops your
running question), ``/prompt?q=...&f=ID`` (the prompt the model sees),
``/status``, ``/result.csv``, ``/static/...``. Database work runs on the
session's own pool, as its role.

Every handler is a module-level function of ``request``; what they share (the
settings, templates, sessions, the single-user pool) is one :class:`Web` on
``app.state.web``. POST handlers go through :func:`post`, which checks the
session, the origin and the CSRF token, and leases the session a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlparse
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import auth, db, results
from .security import SecurityMiddleware, origin_ok
from .sessions import Lease, Session, SessionBusy, SessionsFull, SessionStore, make_pool, new_token, same_token
from .settings import WebSettings

__all__ = ["create_app", "Web", "COOKIE", "LOGIN_COOKIE", "MAX_QUESTION_CHARS", "MAX_SQL_CHARS"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "sqlcoder_session"
LOGIN_COOKIE = "sqlcoder_login_csrf"
MAX_QUESTION_CHARS = 4000
MAX_SQL_CHARS = 100_000
DB_ERRORS = (psycopg.Error, PoolTimeout, SessionBusy, OSError)

Handler = Callable[[Request, Session, Lease, FormData], Awaitable[Response]]


def format_sql(sql: str) -> str:
    """Line breaks and indentation only: sqlparse never touches literals, identifiers or keywords' case."""
    try:
        return sqlparse.format(sql, reindent=True).strip() if len(sql) <= MAX_SQL_CHARS else sql
    except Exception:  # a formatter bug must not lose the SQL
        return sql


def same_sql(a: str, b: str) -> bool:
    """The same statement, spacing and a trailing semicolon aside (the page reformats what the model wrote)."""
    def norm(s: str) -> str:
        return " ".join(s.split()).rstrip("; ")
    return norm(a) == norm(b)


def _history_id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 19 else None


@dataclass
class Web:
    """What every handler shares: one per application."""

    settings: WebSettings
    store: SessionStore
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=str(HERE / "templates")))
    throttle: auth.LoginThrottle = field(default_factory=auth.login_throttle)
    shared_pool: AsyncConnectionPool | None = None  # single-user mode's pool
    single_user_link: auth.OneTimeLink | None = None

    def cookie_args(self, request: Request) -> dict[str, Any]:
        return {"httponly": True, "samesite": "strict", "path": request.scope.get("root_path") or "/",
                "secure": self.settings.secure_cookies or request.url.scheme == "https"}

    async def current(self, request: Request) -> Session | None:
        return await self.store.get(request.cookies.get(COOKIE))

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context = {"settings": self.settings, "plain": db.plain_words, **context}
        return self.templates.TemplateResponse(request, name, context, status_code=status)


def web(request: Request) -> Web:
    return request.app.state.web  # type: ignore[no-any-return]


def to_login(request: Request) -> Response:
    return RedirectResponse(request.url_for("login"), status_code=303)


# -- the page -------------------------------------------------------------------------------------

async def page(request: Request, s: Session, lease: Lease, status: int = 200, **state: Any) -> Response:
    """The main page with the side list of your questions; a failure shows the daemon's status."""
    w = web(request)
    problem: db.Problem | None = state.get("problem")
    history: list[db.HistoryItem] = []
    thread: list[db.HistoryItem] = []
    suggestions: list[str] = []
    daemon = None
    ask_id: int | None = state.get("ask_id") or state.get("refine_of")
    if not (problem and problem.kind in ("database", "busy")):
        try:
            conn = await lease.conn()
            history = await db.history(conn, w.settings.history_limit)
            if ask_id is not None and len(turns := s.thread(ask_id)) > 1:
                thread = await db.history_items(conn, turns)
            if problem is None and state.get("result") is None:
                suggestions = await db.suggestions(conn)
            if problem is not None:
                daemon = await db.status(conn)
        except DB_ERRORS as exc:
            state.setdefault("problem", db.problem_from(exc))
    return w.render(request, "index.html", status, s=s, history=history, thread=thread,
                    refines=s.follow_ups.get(ask_id) if ask_id is not None else None, daemon=daemon,
                    daemon_summary=db.status_summary(daemon) if daemon else None, suggestions=suggestions,
                    question=state.pop("question", ""), **state)


async def run_sql(request: Request, s: Session, lease: Lease, sql: str, question: str,
                  ask_id: int | None) -> tuple[results.Result | None, db.Problem | None]:
    """Run SQL through ``sqlcoder.execute``; a result is kept for the CSV and, by history id, for reopening."""
    try:
        rows, notices = await db.execute(await lease.conn(), sql)
    except DB_ERRORS as exc:
        return None, db.problem_from(exc)
    result = results.build(rows, notices, web(request).settings.max_table_rows, question)
    s.result = result
    if ask_id is not None:
        s.keep_answer(ask_id, sql, result)
    return result, None


async def index(request: Request) -> Response:
    """The page; ``?h=ID`` reopens a past question: its kept rows, or its SQL run again."""
    w = web(request)
    s = await w.current(request)
    if s is None:
        return to_login(request)
    state: dict[str, Any] = {}
    h = _history_id(request.query_params.get("h", ""))
    async with Lease(s) as lease:
        if h is not None:
            try:
                item = await db.history_item(await lease.conn(), h)
            except DB_ERRORS as exc:
                return await page(request, s, lease, problem=db.problem_from(exc))
            if item is not None:
                state.update(question=item.question or "", ask_id=item.id, item=item,
                             thanks=request.query_params.get("thanks") or None)
                kept = s.answers.get(item.id)
                if kept is not None:
                    state.update(sql=kept[0], result=kept[1], reopened="kept")
                else:
                    sql = item.corrected_sql or item.sql or ""
                    state["sql"] = format_sql(sql)
                    if sql and item.outcome == "ok":
                        result, problem = await run_sql(request, s, lease, sql, item.question or "", item.id)
                        state.update(result=result, problem=problem, reopened="rerun")
        return await page(request, s, lease, **state)


def post(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST handler behind the session, origin and CSRF checks, with a leased connection."""
    async def endpoint(request: Request) -> Response:
        s = await web(request).current(request)
        if s is None:
            return to_login(request)
        form = await request.form()
        if not origin_ok(request) or not same_token(str(form.get("csrf", "")), s.csrf):
            return PlainTextResponse("Forbidden: the form's CSRF token is missing or wrong; reload the page.",
                                     status_code=403)
        async with Lease(s) as lease:
            return await handler(request, s, lease, form)
    endpoint.__name__ = handler.__name__
    return endpoint


async def ask(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
    """A question, or with ``follow_up`` (a history id) one that refines that earlier answer of yours."""
    question = str(form.get("question", "")).strip()
    follow_up = _history_id(str(form.get("follow_up", "")))
    if not question or len(question) > MAX_QUESTION_CHARS:
        return await page(request, s, lease, 400, question=question[:MAX_QUESTION_CHARS], problem=db.Problem(
            "query", f"Ask a question of 1 to {MAX_QUESTION_CHARS} characters."))
    try:
        sql, ask_id, notices = await db.ask(await lease.conn(), question, follow_up)
    except DB_ERRORS as exc:
        if follow_up is not None:  # the refine box keeps the question, under the answer it refines
            return await page(request, s, lease, refine_of=follow_up, refine_question=question,
                              problem=db.problem_from(exc))
        return await page(request, s, lease, question=question, problem=db.problem_from(exc))
    title = question
    if follow_up is not None and ask_id is not None and ask_id != follow_up:
        s.keep_follow_up(ask_id, follow_up)
        title = await conversation_title(lease, s, ask_id)
    sql = format_sql(sql)
    result, problem = await run_sql(request, s, lease, sql, title, ask_id)
    return await page(request, s, lease, question=question, sql=sql, ask_id=ask_id,
                      ask_notices=notices, result=result, problem=problem)


async def conversation_title(lease: Lease, s: Session, ask_id: int) -> str:
    """A follow-up's chart title: its conversation's first question, then the follow-up ("now only the
    top 3" alone says little)."""
    turns = s.thread(ask_id)
    try:
        items = {i.id: i.question or "" for i in await db.history_items(await lease.conn(), [turns[0], ask_id])}
    except DB_ERRORS:
        items = {}
    return " — ".join(q for q in (items.get(turns[0]), items.get(ask_id)) if q)


async def run(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
    sql = str(form.get("sql", ""))
    question = str(form.get("question", ""))[:MAX_QUESTION_CHARS]
    ask_id = _history_id(str(form.get("ask_id", "")))
    if len(sql) > MAX_SQL_CHARS:
        return await page(request, s, lease, 400, question=question, sql=sql[:MAX_SQL_CHARS],
                          problem=db.Problem("query", f"The SQL is longer than {MAX_SQL_CHARS} characters."))
    result, problem = await run_sql(request, s, lease, sql, question, ask_id)
    return await page(request, s, lease, question=question, sql=sql, ask_id=ask_id, result=result,
                      problem=problem, sql_open=True)


async def feedback(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
    """Right or wrong, about the SQL on screen: an edited SQL marked right is recorded as the correction."""
    ask_id = _history_id(str(form.get("ask_id", "")))
    verdict = str(form.get("verdict", ""))
    on_screen = str(form.get("sql", "")).strip()
    if ask_id is None or verdict not in ("up", "down"):
        raise HTTPException(400, "bad feedback form")
    if len(on_screen) > MAX_SQL_CHARS:
        raise HTTPException(400, "SQL too long")
    try:
        conn = await lease.conn()
        item = await db.history_item(conn, ask_id)
        if item is None:
            raise HTTPException(404, "no such question of yours")
        edited = bool(on_screen) and not same_sql(on_screen, item.sql or "")
        if verdict == "up" and edited:
            await db.feedback(conn, ask_id, False, on_screen)  # the model's SQL was wrong; this one is right
            thanks = "corrected"
        else:
            await db.feedback(conn, ask_id, verdict == "up", None)
            thanks = verdict
    except DB_ERRORS as exc:
        return await page(request, s, lease, problem=db.problem_from(exc))
    kept = s.answers.get(ask_id)
    if kept is not None and on_screen and not same_sql(kept[0], on_screen):
        s.answers.pop(ask_id)  # the rows on screen were not this SQL's: reopening runs it again
    return RedirectResponse(str(request.url_for("index").include_query_params(h=ask_id, thanks=thanks)),
                            status_code=303)


async def cancel(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
    """Stop the session's running statements: PostgreSQL cancels ``sqlcoder.ask``, which closes its daemon
    request. Leases no connection itself (the cancel travels on its own)."""
    signalled = await s.cancel_running()
    return PlainTextResponse(f"cancelled {signalled}", status_code=200)


async def logout(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
    await web(request).store.remove(request.cookies.get(COOKIE))
    response = to_login(request)
    response.delete_cookie(COOKIE, path=request.scope.get("root_path") or "/")
    return response


# -- GET: prompt, status, CSV ----------------------------------------------------------------------

async def prompt(request: Request) -> Response:
    w = web(request)
    s = await w.current(request)
    if s is None:
        return to_login(request)
    question = request.query_params.get("q", "")[:MAX_QUESTION_CHARS]
    follow_up = _history_id(request.query_params.get("f", ""))
    text, problem = None, None
    try:
        async with Lease(s) as lease:
            text = await db.prompt(await lease.conn(), question, follow_up)
    except DB_ERRORS as exc:
        problem = db.problem_from(exc)
    return w.render(request, "prompt.html", s=s, question=question, prompt=text, problem=problem,
                    follow_up=follow_up)


async def status(request: Request) -> Response:
    """A one-line summary for everyone; the daemon's full status for superusers only."""
    w = web(request)
    s = await w.current(request)
    if s is None:
        return to_login(request)
    daemon, problem = None, None
    try:
        async with Lease(s) as lease:
            daemon = await db.status(await lease.conn())
    except DB_ERRORS as exc:
        problem = db.problem_from(exc)
    return w.render(request, "status.html", s=s, daemon=daemon if s.superuser else None,
                    summary=db.status_summary(daemon) if daemon else None, problem=problem)


async def result_csv(request: Request) -> Response:
    s = await web(request).current(request)
    if s is None:
        return to_login(request)
    if s.result is None:
        return PlainTextResponse("No result yet: ask a question or run SQL first.", status_code=404)
    return Response(results.to_csv(s.result), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="sqlcoder-result.csv"'})


# -- login -----------------------------------------------------------------------------------------

async def login_page(request: Request, message: str | None = None, status: int = 200, role: str = "") -> Response:
    w = web(request)
    token = new_token()
    response = w.render(request, "login.html", status, csrf=token, message=message, role=role[:63],
                        single_user=w.settings.single_user)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **w.cookie_args(request))
    return response


def start_session(request: Request, key: str) -> Response:
    w = web(request)
    response = RedirectResponse(request.url_for("index"), status_code=303)
    response.set_cookie(COOKIE, key, max_age=w.settings.session_max_hours * 3600, **w.cookie_args(request))
    response.delete_cookie(LOGIN_COOKIE, path=request.scope.get("root_path") or "/")
    return response


async def single_user_login(request: Request) -> Response:
    """The one-time link of single-user mode: a session on the shared pool."""
    w = web(request)
    await w.store.reap()
    assert w.shared_pool is not None
    session = Session(role="", pool=w.shared_pool, owns_pool=False)
    try:
        async with Lease(session) as lease:
            who = await db.whoami(await lease.conn())
    except DB_ERRORS as exc:
        return await login_page(request, db.problem_from(exc).message, 503)
    session.role, session.note, session.superuser = who.role, auth.role_note(who), who.superuser
    await w.store.remove(request.cookies.get(COOKIE))
    try:
        key = await w.store.add(session)
    except SessionsFull:
        return await login_page(request, auth.TOO_MANY, 503)
    return start_session(request, key)


async def login(request: Request) -> Response:
    w = web(request)
    if request.method == "GET":
        link = w.single_user_link
        if link is not None and link.take(request.query_params.get("token")):  # spent: once per link
            return await single_user_login(request)
        return await login_page(request)
    form = await request.form()
    if w.settings.single_user:
        return await login_page(request, "Open the page with the link sqlcoder-web printed at start.", 403)
    if not origin_ok(request) or not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE)):
        return await login_page(request, "The login form expired; please try again.", 403)
    try:
        done = await auth.login(w.store, w.throttle, w.settings.conninfo, str(form.get("role", "")).strip(),
                                str(form.get("password", "")), w.settings.connect_timeout_s,
                                request.client.host if request.client else "")
    except auth.LoginFailed as exc:
        return await login_page(request, str(exc), exc.status, role=str(form.get("role", "")).strip())
    await w.store.remove(request.cookies.get(COOKIE))  # a fresh cookie value at every login
    return start_session(request, done.key)


# -- the application -------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    w: Web = app.state.web
    if w.settings.single_user:
        w.shared_pool = make_pool(w.settings.conninfo, w.settings.connect_timeout_s)
        await w.shared_pool.open(wait=False)
    reaper = asyncio.create_task(w.store.reap_forever())
    try:
        yield
    finally:
        reaper.cancel()
        await w.store.close_all()
        if w.shared_pool is not None:
            await w.shared_pool.close()


ROUTES = [
    Route("/", index, name="index"),
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/logout", post(logout), methods=["POST"], name="logout"),
    Route("/ask", post(ask), methods=["POST"], name="ask"),
    Route("/run", post(run), methods=["POST"], name="run"),
    Route("/feedback", post(feedback), methods=["POST"], name="feedback"),
    Route("/cancel", post(cancel), methods=["POST"], name="cancel"),
    Route("/prompt", prompt, name="prompt"),
    Route("/status", status, name="status"),
    Route("/result.csv", result_csv, name="result_csv"),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]


def create_app(settings: WebSettings) -> Starlette:
    """The application for ``settings``; in single-user mode ``app.state.single_user_link`` (an
    :class:`auth.OneTimeLink`) opens a session, once per link."""
    store = SessionStore(settings.session_idle_minutes * 60, settings.session_max_hours * 3600,
                         settings.max_sessions, settings.max_sessions_per_role)
    w = Web(settings, store,
            single_user_link=auth.OneTimeLink(settings.base_url) if settings.single_user else None)
    app = Starlette(routes=ROUTES, middleware=[Middleware(SecurityMiddleware)], lifespan=lifespan)
    app.state.web = w
    app.state.single_user_link = w.single_user_link
    app.state.sessions = store
    app.state.login_throttle = w.throttle
    return app
