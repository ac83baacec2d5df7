"""The Starlette application: routes, the session cookie, CSRF on every POST, the page's state.

Routes: ``/login`` and ``/logout``; ``/`` (the page; ``?h=ID`` loads one of your
past questions), ``/ask`` and ``/run`` (POST), ``/feedback`` (POST),
``/prompt?q=...`` (the prompt the model sees), ``/status``, ``/result.csv``,
``/static/...``. Database work runs on the session's own pool, as its role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlparse
from psycopg_pool import PoolTimeout
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

__all__ = ["create_app", "COOKIE", "LOGIN_COOKIE", "MAX_QUESTION_CHARS", "MAX_SQL_CHARS"]

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


def create_app(settings: WebSettings) -> Starlette:
    """The application for ``settings``; in single-user mode ``app.state.single_user_link`` (an
    :class:`auth.OneTimeLink`) opens a session, once per link."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    store = SessionStore(settings.session_idle_minutes * 60, settings.session_max_hours * 3600,
                         settings.max_sessions, settings.max_sessions_per_role)
    throttle = auth.login_throttle()
    shared: dict[str, Any] = {}  # the single-user pool

    def cookie_args(request: Request) -> dict[str, Any]:
        return {"httponly": True, "samesite": "strict", "path": request.scope.get("root_path") or "/",
                "secure": settings.secure_cookies or request.url.scheme == "https"}

    async def current(request: Request) -> Session | None:
        return await store.get(request.cookies.get(COOKIE))

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {"settings": settings, **context}, status_code=status)

    def to_login(request: Request) -> Response:
        return RedirectResponse(request.url_for("login"), status_code=303)

    # -- page ------------------------------------------------------------------
    async def page(request: Request, s: Session, lease: Lease, status: int = 200, **state: Any) -> Response:
        """The main page with the side list of your questions; a failure shows the daemon's status."""
        problem: db.Problem | None = state.get("problem")
        history: list[db.HistoryItem] = []
        daemon = None
        if not (problem and problem.kind in ("database", "busy")):
            try:
                conn = await lease.conn()
                history = await db.history(conn, settings.history_limit)
                if problem is not None:
                    daemon = await db.status(conn)
            except DB_ERRORS as exc:
                state.setdefault("problem", db.problem_from(exc))
        return render(request, "index.html", status, s=s, history=history, daemon=daemon,
                      question=state.pop("question", ""), **state)

    async def index(request: Request) -> Response:
        s = await current(request)
        if s is None:
            return to_login(request)
        state: dict[str, Any] = {}
        h = request.query_params.get("h", "")
        async with Lease(s) as lease:
            if h.isdigit() and len(h) < 19:
                try:
                    item = await db.history_item(await lease.conn(), int(h))
                except DB_ERRORS as exc:
                    return await page(request, s, lease, problem=db.problem_from(exc))
                if item is not None:
                    state.update(question=item.question or "", sql=format_sql(item.sql or ""), ask_id=item.id,
                                 item=item, thanks=request.query_params.get("thanks") == "1")
            return await page(request, s, lease, **state)

    # -- POST: every one goes through this check --------------------------------
    def post(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            s = await current(request)
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

    async def run_sql(s: Session, lease: Lease, sql: str) -> tuple[results.Result | None, db.Problem | None]:
        try:
            rows, notices = await db.execute(await lease.conn(), sql)
        except DB_ERRORS as exc:
            return None, db.problem_from(exc)
        result = results.build(rows, notices, settings.max_table_rows)
        s.result = result
        return result, None

    async def ask(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
        question = str(form.get("question", "")).strip()
        if not question or len(question) > MAX_QUESTION_CHARS:
            return await page(request, s, lease, 400, question=question[:MAX_QUESTION_CHARS], problem=db.Problem(
                "query", f"Ask a question of 1 to {MAX_QUESTION_CHARS} characters."))
        try:
            sql, ask_id, notices = await db.ask(await lease.conn(), question)
        except DB_ERRORS as exc:
            return await page(request, s, lease, question=question, problem=db.problem_from(exc))
        result, problem = await run_sql(s, lease, sql)
        return await page(request, s, lease, question=question, sql=format_sql(sql), ask_id=ask_id,
                          ask_notices=notices, result=result, problem=problem)

    async def run(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
        sql = str(form.get("sql", ""))
        question = str(form.get("question", ""))[:MAX_QUESTION_CHARS]
        ask_id = str(form.get("ask_id", ""))
        if len(sql) > MAX_SQL_CHARS:
            return await page(request, s, lease, 400, question=question, sql=sql[:MAX_SQL_CHARS],
                              problem=db.Problem("query", f"The SQL is longer than {MAX_SQL_CHARS} characters."))
        result, problem = await run_sql(s, lease, sql)
        return await page(request, s, lease, question=question, sql=sql,
                          ask_id=int(ask_id) if ask_id.isdigit() and len(ask_id) < 19 else None,
                          result=result, problem=problem)

    async def feedback(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
        ask_id = str(form.get("ask_id", ""))
        verdict = str(form.get("verdict", ""))
        corrected = str(form.get("corrected_sql", "")).strip() or None
        if not ask_id.isdigit() or len(ask_id) >= 19 or verdict not in ("up", "down", "fix"):
            raise HTTPException(400, "bad feedback form")
        if corrected is not None and len(corrected) > MAX_SQL_CHARS:
            raise HTTPException(400, "corrected SQL too long")
        try:
            await db.feedback(await lease.conn(), int(ask_id), verdict == "up",
                              corrected if verdict == "fix" else None)
        except DB_ERRORS as exc:
            return await page(request, s, lease, problem=db.problem_from(exc))
        return RedirectResponse(str(request.url_for("index").include_query_params(h=ask_id, thanks=1)),
                                status_code=303)

    async def logout(request: Request, s: Session, lease: Lease, form: FormData) -> Response:
        await store.remove(request.cookies.get(COOKIE))
        response = to_login(request)
        response.delete_cookie(COOKIE, path=request.scope.get("root_path") or "/")
        return response

    # -- GET: prompt, status, CSV ------------------------------------------------
    async def prompt(request: Request) -> Response:
        s = await current(request)
        if s is None:
            return to_login(request)
        question = request.query_params.get("q", "")[:MAX_QUESTION_CHARS]
        text, problem = None, None
        try:
            async with Lease(s) as lease:
                text = await db.prompt(await lease.conn(), question)
        except DB_ERRORS as exc:
            problem = db.problem_from(exc)
        return render(request, "prompt.html", s=s, question=question, prompt=text, problem=problem)

    async def status(request: Request) -> Response:
        s = await current(request)
        if s is None:
            return to_login(request)
        daemon, problem = None, None
        try:
            async with Lease(s) as lease:
                daemon = await db.status(await lease.conn())
        except DB_ERRORS as exc:
            problem = db.problem_from(exc)
        return render(request, "status.html", s=s, daemon=daemon, problem=problem)

    async def result_csv(request: Request) -> Response:
        s = await current(request)
        if s is None:
            return to_login(request)
        if s.result is None:
            return PlainTextResponse("No result yet: ask a question or run SQL first.", status_code=404)
        return Response(results.to_csv(s.result), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="sqlcoder-result.csv"'})

    # -- login --------------------------------------------------------------------
    async def login_page(request: Request, message: str | None = None, status: int = 200,
                         role: str = "") -> Response:
        token = new_token()
        response = render(request, "login.html", status, csrf=token, message=message, role=role[:63],
                          single_user=settings.single_user)
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **cookie_args(request))
        return response

    def start_session(request: Request, key: str) -> Response:
        response = RedirectResponse(request.url_for("index"), status_code=303)
        response.set_cookie(COOKIE, key, max_age=settings.session_max_hours * 3600, **cookie_args(request))
        response.delete_cookie(LOGIN_COOKIE, path=request.scope.get("root_path") or "/")
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("token")
            if settings.single_user and app.state.single_user_link.take(token):  # spent: once per link
                await store.reap()
                session = Session(role="", pool=shared["pool"], owns_pool=False)
                try:
                    async with Lease(session) as lease:
                        who = await db.whoami(await lease.conn())
                except DB_ERRORS as exc:
                    return await login_page(request, db.problem_from(exc).message, 503)
                session.role, session.note = who.role, auth.role_note(who)
                await store.remove(request.cookies.get(COOKIE))
                try:
                    key = await store.add(session)
                except SessionsFull:
                    return await login_page(request, auth.TOO_MANY, 503)
                return start_session(request, key)
            return await login_page(request)
        form = await request.form()
        if settings.single_user:
            return await login_page(request, "Open the page with the link sqlcoder-web printed at start.", 403)
        if not origin_ok(request) or not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE)):
            return await login_page(request, "The login form expired; please try again.", 403)
        try:
            done = await auth.login(store, throttle, settings.conninfo, str(form.get("role", "")).strip(),
                                    str(form.get("password", "")), settings.connect_timeout_s,
                                    request.client.host if request.client else "")
        except auth.LoginFailed as exc:
            return await login_page(request, str(exc), exc.status, role=str(form.get("role", "")).strip())
        await store.remove(request.cookies.get(COOKIE))  # a fresh cookie value at every login
        return start_session(request, done.key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.single_user:
            shared["pool"] = make_pool(settings.conninfo, settings.connect_timeout_s)
            await shared["pool"].open(wait=False)
        reaper = asyncio.create_task(store.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            await store.close_all()
            if "pool" in shared:
                await shared["pool"].close()

    routes = [
        Route("/", index, name="index"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", post(logout), methods=["POST"], name="logout"),
        Route("/ask", post(ask), methods=["POST"], name="ask"),
        Route("/run", post(run), methods=["POST"], name="run"),
        Route("/feedback", post(feedback), methods=["POST"], name="feedback"),
        Route("/prompt", prompt, name="prompt"),
        Route("/status", status, name="status"),
        Route("/result.csv", result_csv, name="result_csv"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityMiddleware)], lifespan=lifespan)
    app.state.single_user_link = auth.OneTimeLink(settings.base_url) if settings.single_user else None
    app.state.sessions = store
    app.state.login_throttle = throttle
    return app
