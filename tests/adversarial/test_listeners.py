"""Local users against the daemon's listeners and the browser page: floods of slow clients, drip-fed requests,
one account logging in over and over, concurrent password guesses, a reused one-time link.

Real processes throughout: the daemon (a random tiny model) with its Unix socket, OpenAI-compatible and
metrics listeners; ``sqlcoder-web`` started as an operator starts it; PostgreSQL asking for passwords.
Every slow client is a bounded loop on loopback (sqlcoder_dev.drip). docs/security.md lists the cases.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from helpers.paths import ROOT
from sqlcoder.client import DaemonClient
from sqlcoder_dev.daemonproc import DaemonProcess, process_fds, socket_path
from sqlcoder_dev.drip import DripFlood, drip_until_closed, http_request_bytes, tcp_connector
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.web_demo import require_password
from sqlcoder_web import auth
from sqlcoder_web.server import LISTEN_BACKLOG, ceiling

pytestmark = pytest.mark.slow

KEY = "k-listeners-1"
IDLE_S = 3.0  # the daemon's idle_timeout_s here: every request must arrive whole within it
REQUEST_S = 3  # sqlcoder-web's --request-timeout-s here
PASSWORD = "right-pass-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- the daemon ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon(random_model: Path) -> Iterator[DaemonProcess]:
    """Default caps (socket 512, OpenAI listener 64, metrics 16), a short deadline, both listeners."""
    openai_port, metrics_port = _free_port(), _free_port()
    with DaemonProcess(random_model, socket_path(),
                       ["--quantize", "none", "--device-map", "cpu", "--socket-group", "postgres",
                        "--idle-timeout-s", str(IDLE_S), "--max-new-tokens", "8", "--num-beams", "1",
                        "--openai-listen", f"127.0.0.1:{openai_port}", "--openai-listen-api-key", KEY,
                        "--metrics-listen", f"127.0.0.1:{metrics_port}"]) as d:
        d.openai_port, d.metrics_port = openai_port, metrics_port  # type: ignore[attr-defined]
        yield d


def _connections(d: DaemonProcess) -> dict:
    return d.request({"v": 1, "id": "s", "op": "status"}, timeout=30)["status"]["connections"]


def test_openai_drip_flood_leaves_ask_and_metrics_answering(pg: Cluster, new_db, analyst_role,
                                                            daemon: DaemonProcess) -> None:
    """520 connections dripping a completion request into the OpenAI listener (no key needed to connect),
    one byte every 2 s, closed ones replaced: the database still asks through the socket and /metrics answers.
    Once every ask got 53000 "too many connections" for as long as the flood lasted."""
    db = new_db(socket=str(daemon.socket_path))
    role = analyst_role(db)
    before = _connections(daemon)
    request = http_request_bytes("POST", "/v1/completions", {"Authorization": f"Bearer {KEY}",
                                                              "Content-Length": "40"}, b'{"prompt": "SELECT 1"')
    outcomes: list[str] = []
    with DripFlood(tcp_connector("127.0.0.1", daemon.openai_port), request, count=520, interval_s=2.0,  # type: ignore[attr-defined]
                   rounds=7) as flood:
        time.sleep(2.5)
        with pg.connect(db, user=role) as conn:
            for _ in range(3):
                try:
                    conn.execute("SELECT sqlcoder.ask('how many customers are there?')").fetchone()
                    outcomes.append("ok")
                except psycopg.Error as exc:
                    outcomes.append(exc.sqlstate or "?")
                reply = DaemonClient(str(daemon.socket_path)).request("generate", 30, prompt="SELECT",
                                                                      max_new_tokens=2, num_beams=1)
                assert "text" in reply
                code, text = _get(daemon.metrics_port, "/metrics")  # type: ignore[attr-defined]
                assert code == 200 and b"sqlcoder_daemon_connections_openai_refused" in text
                assert _get(daemon.metrics_port, "/healthz")[0] == 200  # type: ignore[attr-defined]
                time.sleep(2)
        during = _connections(daemon)
    # The model is random: its SQL fails the guard (or parses); what matters is that the daemon answered.
    assert "53000" not in outcomes and "57014" not in outcomes, outcomes
    assert during["openai"]["open"] <= during["openai"]["max"] == 64
    assert during["openai"]["refused"] - before["openai"]["refused"] >= 400  # the rest got 503 at once
    assert during["openai"]["idle_closed"] > before["openai"]["idle_closed"]  # held ones cut at the deadline
    assert flood.reconnects > 0
    assert during["socket"]["refused"] == before["socket"]["refused"]
    assert during["metrics"]["refused"] == before["metrics"]["refused"] == 0


REQUEST_HEAD = http_request_bytes("POST", "/v1/completions", {"Authorization": f"Bearer {KEY}",
                                                               "Content-Length": "60"})


@pytest.mark.parametrize("where, prefix, payload", [
    ("openai-headers", b"", REQUEST_HEAD),  # request line and headers, a byte at a time
    ("openai-body", REQUEST_HEAD, b'{"prompt": "SELECT count(*) FROM customers", "max_tokens": 2}'),
    ("metrics-headers", b"", b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 40 + b"\r\n\r\n"),
    ("socket-line", b"", b'{"v": 1, "id": "drip", "op": "status", "pad": "' + b"a" * 40 + b'"}\n'),
])
def test_a_drip_fed_request_is_closed_at_its_deadline(daemon: DaemonProcess, where: str, prefix: bytes,
                                                      payload: bytes) -> None:
    """One byte every 0.25 s: each byte would have restarted a per-read timeout; the request's deadline
    (idle_timeout_s, 3 s) closes it however it drips."""
    if where == "socket-line":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(daemon.socket_path))
    else:
        port = daemon.metrics_port if where.startswith("metrics") else daemon.openai_port  # type: ignore[attr-defined]
        sock = socket.create_connection(("127.0.0.1", port))
    with sock:
        result = drip_until_closed(sock, payload, 0.25, prefix)
    assert result.closed, f"still open after {result.seconds:.1f} s and {result.bytes_sent} bytes"
    assert IDLE_S - 0.5 <= result.seconds <= 2 * IDLE_S, result
    assert result.bytes_sent < len(prefix) + len(payload)
    assert daemon.request({"v": 1, "id": "s", "op": "status"})["ok"]


# -- the page ------------------------------------------------------------------------------------------------

WEB_DB = f"listeners_web_{os.getpid()}"
ROLES = [f"lw_role_{os.getpid()}_{i}" for i in range(3)]


@pytest.fixture(scope="module")
def web_db(pg: Cluster) -> Iterator[str]:
    from plugins.postgres import EMPTY_TEMPLATE

    pg.psql(f'CREATE DATABASE "{WEB_DB}" TEMPLATE "{EMPTY_TEMPLATE}"')
    for role in ROLES:
        pg.psql(f'CREATE ROLE "{role}" LOGIN')
        pg.psql(f"SELECT sqlcoder.grant_access('{role}')", dbname=WEB_DB)
        require_password(pg, role, PASSWORD)
    yield WEB_DB
    pg.psql(f'DROP DATABASE IF EXISTS "{WEB_DB}" WITH (FORCE)')
    for role in ROLES:
        pg.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)


class WebServer:
    """``sqlcoder-web`` as an operator starts it; its standard output is kept (the single-user links)."""

    def __init__(self, args: list[str], nofile: int | None = None):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "sqlcoder_web", "--port", str(self.port), *args],
                                     env=dict(os.environ, PYTHONPATH=str(ROOT / "python")),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
                                     if nofile else None)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def links(self) -> list[str]:
        return [m.group(0) for line in self.lines for m in [re.search(r"http://\S+/login\?token=\S+", line)] if m]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def web(pg: Cluster, web_db: str) -> Iterator[WebServer]:
    # A descriptor limit below the flood's 2,500 connections (and above what the default cap needs), as on a
    # host where LimitNOFILE is a few thousand: without a cap, the flood would reach it.
    server = WebServer(["--conninfo", f"host={pg.sockdir} port={pg.port} dbname={web_db}",
                        "--request-timeout-s", str(REQUEST_S)], nofile=2300)
    yield server
    server.stop()


def _login_form(client: httpx.Client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)


def login(base: str, role: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    reply = client.post("/login", data={"csrf": _login_form(client), "role": role, "password": password})
    assert reply.status_code == 303, reply.text[-500:]
    return client


def test_body_drip_flood_leaves_page_loads_working(web: WebServer) -> None:
    """2,500 connections, each sending a login POST's headers and one byte of its body: a normal page load
    (the login page, and a logged-in page) still works, and the server's descriptors stay bounded.
    Once they held the server at its descriptor limit and a normal page load timed out."""
    user = login(web.base, ROLES[0])
    head = http_request_bytes("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                 "Content-Length": "1000"})
    with DripFlood(tcp_connector("127.0.0.1", web.port), b"", count=2500, interval_s=1.0, rounds=8,
                   prefix=head + b"r") as flood:
        time.sleep(2)
        for _ in range(3):
            assert httpx.get(web.base + "/login", timeout=10).status_code == 200  # a hang fails: timeout
            page = httpx.get(web.base + "/", cookies=user.cookies, timeout=10)  # a new connection, as a load
            assert page.status_code == 200 and ROLES[0] in page.text
            assert process_fds(web.proc.pid) <= ceiling(1024) + LISTEN_BACKLOG + 2 * 64 + 256
            time.sleep(1)
    assert flood.reconnects >= 2500  # every dripper was closed (at its deadline, or shed at the cap)
    user.close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_drip_fed_page_request_is_closed_at_its_deadline(web: WebServer, where: str) -> None:
    head = http_request_bytes("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                 "Content-Length": "200"})
    prefix, payload = (b"", head) if where == "headers" else (head, b"role=x&password=" + b"y" * 184)
    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        result = drip_until_closed(sock, payload, 0.25, prefix)
    assert result.closed and REQUEST_S - 0.5 <= result.seconds <= 2 * REQUEST_S, result
    assert result.reply.startswith(b"HTTP/1.1 408 "), result.reply[:200]
    # The deadline is the request's, not the connection's: a kept-alive connection idle for longer (but less
    # than --keep-alive-s) serves its next request.
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        for pause in (0, REQUEST_S + 0.5):
            time.sleep(pause)
            conn.request("GET", "/login")
            reply = conn.getresponse()
            assert reply.status == 200 and b'name="csrf"' in reply.read()
    finally:
        conn.close()


def test_one_role_logging_in_64_times_leaves_room_for_everyone_else(web: WebServer, pg: Cluster) -> None:
    """64 logins of one role (--max-sessions 64) once filled the server: "Too many people are logged in" for
    everyone for 30 minutes. Now the role holds at most --max-sessions-per-role (4): its oldest end."""
    clients = [login(web.base, ROLES[1]) for _ in range(64)]
    try:
        assert all(c.get("/").status_code == 200 for c in clients[-4:])
        assert all(c.get("/").status_code == 303 for c in clients[:-4])  # ended: back to the login form
        other = login(web.base, ROLES[2])
        assert other.get("/").status_code == 200
        other.close()
        backends = pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLES[1]}'").strip()
        assert int(backends) <= 4 * 2  # each session keeps at most two connections
    finally:
        for c in clients:
            c.close()


async def _guesses(base: str, pairs: list[tuple[str, str]]) -> tuple[list[int], float]:
    """POST every (role, local address) pair's wrong password at once; their statuses and the time taken."""
    clients: dict[str, httpx.AsyncClient] = {}
    forms: dict[str, str] = {}
    for _, address in pairs:
        if address not in clients:
            limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)  # each guess on its own
            clients[address] = httpx.AsyncClient(
                base_url=base, timeout=120, limits=limits,
                transport=httpx.AsyncHTTPTransport(local_address=address, limits=limits))
            page = await clients[address].get("/login")
            forms[address] = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    started = time.monotonic()
    replies = await asyncio.gather(*(clients[a].post("/login", data={"csrf": forms[a], "role": r,
                                                                      "password": "wrong"}) for r, a in pairs))
    took = time.monotonic() - started
    for c in clients.values():
        await c.aclose()
    return [r.status_code for r in replies], took


@pytest.mark.parametrize("shape", ["one-role-one-address", "many-roles-one-address", "one-role-many-addresses"])
def test_concurrent_wrong_passwords_are_checked_one_per_pause(web: WebServer, shape: str) -> None:
    """200 wrong passwords sent at once once took 4.4 s in all (the pause was per request). Now each role and
    each address gets one guess checked per pause (1 s); the rest wait, a few of them, or are refused at once."""
    if shape == "one-role-one-address":
        pairs = [(ROLES[0], "127.0.0.1")] * 200
    elif shape == "many-roles-one-address":
        pairs = [(f"nobody_{i}", "127.0.0.1") for i in range(40)]
    else:
        pairs = [(ROLES[0], f"127.0.0.{2 + i}") for i in range(40)]
    statuses, took = asyncio.run(_guesses(web.base, pairs))
    checked = statuses.count(401)
    assert set(statuses) <= {401, 429}, statuses
    assert 1 <= checked <= took / auth.FAILED_LOGIN_DELAY_S + 1, (checked, took)
    # Nobody else is held up: another role from another address logs in at once.
    assert login(web.base, ROLES[2]).get("/").status_code == 200


def test_single_user_link_opens_one_session_once(pg: Cluster, web_db: str) -> None:
    """The printed link once worked for three separate clients. Now the first gets the page; the others get
    the login page with no session; the next link, printed on use, works once too."""
    solo = WebServer(["--single-user", "--conninfo", f"host={pg.sockdir} port={pg.port} dbname={web_db} "
                                                     f"user={ROLES[2]} password={PASSWORD}"])
    try:
        link = solo.links()[0]
        clients = [httpx.Client(timeout=30) for _ in range(3)]
        first = clients[0].get(link)
        assert first.status_code == 303 and clients[0].get(solo.base + "/").status_code == 200
        for c in clients[1:]:
            again = c.get(link, follow_redirects=False)
            assert again.status_code == 200 and "sqlcoder_session" not in again.cookies
            assert c.get(solo.base + "/", follow_redirects=False).status_code == 303
        deadline = time.monotonic() + 10
        while len(solo.links()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        following = solo.links()[1]
        assert following != link
        assert clients[1].get(following, follow_redirects=False).status_code == 303
        assert clients[2].get(following, follow_redirects=False).status_code == 200  # spent already
        for c in clients:
            c.close()
        # 20 clients racing with one link: one session.
        deadline = time.monotonic() + 10
        while len(solo.links()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        raced = solo.links()[2]

        async def race() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                replies = await asyncio.gather(*(client.get(raced) for _ in range(20)))
            return [r.status_code for r in replies]

        assert sorted(asyncio.run(race())) == [200] * 19 + [303]
    finally:
        solo.stop()
    assert not [line for line in solo.lines if "GET /login" in line and "token" in line]  # not in the log


def test_every_case_is_in_the_security_note() -> None:
    note = (ROOT / "docs" / "security.md").read_text()
    section = note.split("### Slow clients and floods against the listeners and the page", 1)[1].split("\n## ", 1)[0]
    rows = [row for row in section.splitlines() if row.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`(test_\w+)`", row)}
    tests = {n for n in globals() if n.startswith("test_")} - {"test_every_case_is_in_the_security_note"}
    assert len(rows) >= 7 and named == tests, named ^ tests
