"""The daemon under an operator's hands: its socket file, signals, connection limits, descriptor limits,
a frozen daemon, the listen backlog, the OpenAI-compatible listener (one test per row).

Real daemon subprocesses and real signals throughout; the client side is the in-database
package's own ``DaemonClient`` (and, for the frozen daemon, ``sqlcoder.ask`` in PostgreSQL).
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder.client import DaemonClient
from sqlcoder.errors import DaemonBusy, DaemonNotResponding, DaemonNotRunning
from sqlcoder_dev.daemonproc import Connection, DaemonProcess, socket_path
from sqlcoder_dev.fake_daemon import drop_run_database, setup_run_database
from sqlcoder_dev.pgcluster import Cluster

pytestmark = pytest.mark.slow

TINY = ["--quantize", "none", "--device-map", "cpu"]
LONG = {"prompt": "SELECT count(*) FROM", "max_new_tokens": 4000, "num_beams": 4}
KEY = "k-ops-123"
PYTHON_DIR = str(Path(__file__).resolve().parents[2] / "python")


def wait_for(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll until ``check()``; the limit only bounds a hung test, it is not a performance assertion."""
    end = time.monotonic() + limit
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(d: DaemonProcess) -> dict:
    return d.request({"v": 1, "id": "s", "op": "status"}, timeout=30)["status"]


def serving(d: DaemonProcess) -> bool:
    """Whether the daemon answers status (after SIGCONT its backlog may still be full for a moment)."""
    try:
        return status(d)["state"] == "ready"
    except OSError:
        return False


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops-config") / "daemon.toml"
    path.write_text("max_queue = 8\n")
    return path


@pytest.fixture(scope="module")
def d(random_model: Path, config_file: Path) -> Iterator[DaemonProcess]:
    """One daemon for the rows that do not end it: small connection cap, short idle timeout, a keyed listener."""
    port = _free_port()
    with DaemonProcess(random_model, socket_path(),
                       [*TINY, "--config", str(config_file), "--socket-group", "postgres", "--max-connections", "4",
                        "--idle-timeout-s", "2", "--openai-listen", f"127.0.0.1:{port}",
                        "--openai-listen-api-key", KEY, "--max-new-tokens", "4000",
                        "--repetition-guard-tokens", "0"]) as daemon:
        daemon.port = port  # type: ignore[attr-defined]
        yield daemon


# -- row: the socket removed, a second daemon on the same path, SIGTERM to the first --------------------

def test_socket_removed_is_bound_again_and_a_second_daemon_is_refused(random_model: Path, tmp_path: Path) -> None:
    """Also row "no --socket-group": the socket gets group postgres, so the default allowlist works."""
    path = socket_path()
    with DaemonProcess(random_model, path, TINY, log_path=tmp_path / "a.log") as a:
        st = os.stat(path)
        assert st.st_gid == grp.getgrnam("postgres").gr_gid and stat.S_IMODE(st.st_mode) == 0o660
        assert "socket gets group postgres" in a.log_text()
        path.unlink()
        wait_for(lambda: path.exists() and os.stat(path).st_ino != st.st_ino, "the daemon to bind its socket again")
        assert "was removed; binding it again" in a.log_text()
        assert a.request({"v": 1, "id": "s", "op": "status"})["ok"]
        b = DaemonProcess(random_model, path, TINY, log_path=tmp_path / "b.log")
        b.start()  # returns at once: the path already answers (the first daemon)
        assert b.proc.wait(120) == 1 and "another daemon is listening" in b.log_text()
        b.stop()
        assert a.stop() == 0
    assert not path.exists(), "the first daemon removes its own socket when it stops"


def test_without_socket_group_an_unreachable_allowlist_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """The other half of row "no --socket-group": a daemon that may not give the socket group postgres
    (running as nobody, not a member) refuses to start instead of admitting a user who cannot connect.
    (The check runs before the model loads; here it is called directly, as the test cannot run the
    daemon's virtual environment as another user.)"""
    import sqlcoder_daemon.access as access

    nobody, postgres = pwd.getpwnam("nobody"), pwd.getpwnam("postgres")
    for name, value in (("getuid", nobody.pw_uid), ("geteuid", nobody.pw_uid), ("getegid", nobody.pw_gid)):
        monkeypatch.setattr(access.os, name, lambda value=value: value)
    monkeypatch.setattr(access.os, "getgroups", lambda: [nobody.pw_gid])
    with pytest.raises(ValueError, match="postgres .uid \\d+. is not in, .* pass --socket-group"):
        access.socket_access(tmp_path / "s.sock", None, {nobody.pw_uid, postgres.pw_uid})
    chosen = access.socket_access(tmp_path / "s.sock", "postgres", {nobody.pw_uid, postgres.pw_uid})
    assert chosen.gid == grp.getgrnam("postgres").gr_gid and not chosen.warnings
    assert access.socket_access(tmp_path / "s.sock", None, {nobody.pw_uid}).gid is None  # only itself: fine


def test_socket_replaced_by_another_daemon_is_left_alone_and_the_first_exits(random_model: Path,
                                                                             tmp_path: Path) -> None:
    path = socket_path()
    with DaemonProcess(random_model, path, TINY, log_path=tmp_path / "a.log") as a:
        other = socket.socket(socket.AF_UNIX)  # another daemon won the path while the first's socket was gone
        tmp = path.with_name("other.tmp")
        other.bind(str(tmp))
        other.listen(1)
        os.rename(tmp, path)
        inode = os.stat(path).st_ino
        assert a.proc.wait(30) == 5
        assert "was replaced by another file" in a.log_text()
        assert path.exists() and os.stat(path).st_ino == inode, "the stopping daemon deleted another's socket"
        other.close()


# -- row: a regular file at the socket path ----------------------------------------------------------

def test_regular_file_at_the_socket_path(random_model: Path, tmp_path: Path) -> None:
    """Refused at start with a message naming it; a file put there later is never deleted; the client
    names it instead of suggesting --socket-group."""
    path = socket_path()
    path.parent.mkdir()
    path.write_text("not a socket")
    result = subprocess.run([sys.executable, "-m", "sqlcoder_daemon", "--model", str(random_model),
                             "--socket", str(path), *TINY], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=PYTHON_DIR))
    assert result.returncode == 1 and "is not a socket (a regular file)" in result.stderr
    with pytest.raises(DaemonNotRunning, match="is a regular file, not the daemon's socket") as err:
        DaemonClient(str(path)).request("status", 5)
    assert "--socket-group" not in err.value.hint and "remove it" in err.value.hint
    path.unlink()
    with DaemonProcess(random_model, path, TINY, log_path=tmp_path / "d.log") as d:
        path.unlink()
        path.write_text("planted")
        assert d.proc.wait(30) == 5
    assert path.read_text() == "planted"


# -- row: SIGHUP ---------------------------------------------------------------------------------------

def test_sighup_rereads_settings_and_keeps_serving(d: DaemonProcess, config_file: Path) -> None:
    assert status(d)["settings"]["max_queue"] == 8
    config_file.write_text("max_queue = 3\nprefix_cache_min_tokens = 16\n")
    try:
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: status(d)["settings"]["max_queue"] == 3, "max_queue to change")
        assert d.proc.poll() is None
        log = d.log_text()
        assert "SIGHUP: settings re-read; applied: max_queue" in log
        assert "only applied by a restart: prefix_cache_min_tokens" in log
        config_file.write_text("max_queue = [")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "settings not reloaded" in d.log_text(), "the bad file to be reported")
        assert status(d)["settings"]["max_queue"] == 3 and d.proc.poll() is None
    finally:
        config_file.write_text("max_queue = 8\n")


# -- row: idle connections, the connection cap, the descriptor limit ----------------------------------

def test_idle_connections_are_closed_and_the_cap_answers_busy(d: DaemonProcess) -> None:
    idle = [Connection(d.socket_path, timeout=30) for _ in range(4)]
    try:
        wait_for(lambda: status_via_fresh_busy(d), "the cap to be reached")
        with pytest.raises(DaemonBusy, match="too many connections") as err:
            DaemonClient(str(d.socket_path)).request("status", 5)
        assert err.value.sqlstate == "53000"
        for c in idle:  # each is closed by the daemon after idle_timeout_s (2 s), not held for ever
            assert c.closed_by_peer()
    finally:
        for c in idle:
            c.close()
    st = status(d)["connections"]["socket"]
    assert st["max"] == 4 and st["idle_closed"] >= 4 and st["refused"] >= 1


def status_via_fresh_busy(d: DaemonProcess) -> bool:
    with Connection(d.socket_path, timeout=30) as c:
        r = c.ask({"v": 1, "id": "s", "op": "status"})
    return r is not None and not r["ok"] and r["error"]["code"] == "busy"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_descriptor_limit_backs_off_logs_once_and_recovers(random_model: Path, tmp_path: Path) -> None:
    path = socket_path()
    with DaemonProcess(random_model, path, [*TINY, "--max-connections", "1000", "--idle-timeout-s", "3"],
                       log_path=tmp_path / "d.log", nofile=96) as d:
        assert "leaves room for about" in d.log_text()  # the limit is below what max_connections needs: warned
        held = []
        for _ in range(250):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(str(path))
                held.append(s)
            except BlockingIOError:
                s.close()
        wait_for(lambda: "out of file descriptors" in d.log_text(), "the daemon to run out of descriptors")
        cpu0, t0 = _cpu_seconds(d.proc.pid), time.monotonic()
        time.sleep(1.0)
        spent = _cpu_seconds(d.proc.pid) - cpu0
        assert spent < 0.5 * (time.monotonic() - t0), f"the accept loop spins ({spent:.2f} s of CPU in 1 s)"
        for s in held:
            s.close()
        wait_for(lambda: "accepting connections again" in d.log_text(), "the daemon to accept again")
        assert d.request({"v": 1, "id": "s", "op": "status"})["ok"]
        assert d.log_text().count("out of file descriptors") <= 3  # once per episode, not per accept


# -- row: the listen backlog full (SIGSTOP), and a frozen daemon --------------------------------------

def test_full_backlog_is_retried_then_reported_busy(d: DaemonProcess) -> None:
    held: list[socket.socket] = []
    d.proc.send_signal(signal.SIGSTOP)
    try:
        while len(held) < 5000:
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(str(d.socket_path))
            except BlockingIOError:
                s.close()
                break
            held.append(s)
        started = time.monotonic()
        with pytest.raises(DaemonBusy) as err:
            DaemonClient(str(d.socket_path), connect_timeout=0.5).request("status", 5)
        assert time.monotonic() - started >= 0.5, "EAGAIN was not retried until connect_timeout"
        assert err.value.sqlstate == "53000" and "listen backlog is full" in err.value.message
        assert "SIGSTOP" in err.value.hint and "Start the model daemon" not in err.value.hint
    finally:
        d.proc.send_signal(signal.SIGCONT)
        for s in held:
            s.close()
    wait_for(lambda: serving(d), "the daemon to serve again")


@pytest.fixture(scope="module")
def frozen_db(pg: Cluster, d: DaemonProcess) -> Iterator[str]:
    db, role = f"ops_{os.getpid()}", f"ops_analyst_{os.getpid()}"
    setup_run_database(pg, db, SHOP_TEMPLATE, d.socket_path, role, {"model_timeout_ms": "2000"})
    yield db
    drop_run_database(pg, db, role)


def test_frozen_daemon_is_named_within_model_timeout(pg: Cluster, d: DaemonProcess, frozen_db: str) -> None:
    role = f"ops_analyst_{os.getpid()}"
    with pg.connect(frozen_db, user=role, options="-c statement_timeout=60000") as conn:
        d.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(psycopg.Error) as err:
                conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
            elapsed = time.monotonic() - started
        finally:
            d.proc.send_signal(signal.SIGCONT)
        assert err.value.sqlstate == "57014"
        assert "the sqlcoder daemon did not answer within 2 s" in err.value.diag.message_primary
        assert "SIGSTOP" in err.value.diag.message_hint
        assert elapsed < 15, elapsed  # a hang guard; the budget itself is tested in test_client_unit.py
    wait_for(lambda: serving(d), "the daemon to serve again")


def test_frozen_daemon_through_the_client(d: DaemonProcess) -> None:
    client = DaemonClient(str(d.socket_path), budget=1.0)
    d.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(DaemonNotResponding, match="did not answer within 1 s"):
            client.request("status", 5)
    finally:
        d.proc.send_signal(signal.SIGCONT)


# -- row: SIGTERM with a drain deadline shorter than the running generation -------------------------

def test_sigterm_drain_deadline_answers_shutting_down_and_exits_nonzero(random_model: Path, tmp_path: Path) -> None:
    d = DaemonProcess(random_model, socket_path(),
                      [*TINY, "--max-new-tokens", "4000",
                      "--repetition-guard-tokens", "0", "--max-batch-size", "1", "--drain-timeout-s", "1"],
                      log_path=tmp_path / "d.log")
    with d:
        gone = Connection(d.socket_path)
        gone.send({"v": 1, "id": "walks-away", "op": "generate", **LONG})
        wait_for(lambda: status(d)["requests"]["in_flight"] == 1, "the first request to start")
        gone.close()
        wait_for(lambda: status(d)["requests"]["cancelled"] == 1, "the walk-away to be cancelled")
        running, queued = Connection(d.socket_path), Connection(d.socket_path)
        running.send({"v": 1, "id": "running", "op": "generate", **LONG})
        wait_for(lambda: status(d)["requests"]["in_flight"] == 1, "the request to start")
        queued.send({"v": 1, "id": "queued", "op": "generate", **LONG, "num_beams": 1})
        wait_for(lambda: status(d)["requests"]["queued"] == 1, "the second request to queue")
        d.proc.send_signal(signal.SIGTERM)
        replies = [running.recv(), queued.recv()]
        assert d.proc.wait(60) == 4
    for r in replies:
        assert r["ok"] is False and r["error"]["code"] == "shutting_down", r
        assert "queue is full" not in r["error"]["message"]
    events = [json.loads(line) for line in d.log_text().splitlines() if line.startswith("{")]
    by_id = {e["id"]: e for e in events if e.get("event") == "request"}
    assert by_id["walks-away"]["outcome"] == "cancelled" and by_id["walks-away"]["generate_ms"] > 0
    assert by_id["running"]["outcome"] == "shutting_down" and by_id["running"]["generate_ms"] > 0
    assert by_id["queued"]["outcome"] == "shutting_down" and by_id["queued"]["total_ms"] > 0
    assert "requests unfinished" in d.log_text()


# -- row: the OpenAI-compatible listener --------------------------------------------------------------

def _http(d: DaemonProcess, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)  # type: ignore[attr-defined]
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_openai_listener_needs_a_key_unless_insecure(random_model: Path) -> None:
    args = [sys.executable, "-m", "sqlcoder_daemon", "--model", str(random_model), "--socket",
            str(socket_path()), *TINY, "--openai-listen", f"127.0.0.1:{_free_port()}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=PYTHON_DIR))
    assert result.returncode == 2 and "--openai-listen needs --openai-listen-api-key" in result.stderr


def test_openai_listener_checks_the_key_and_content_length(d: DaemonProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    body = json.dumps({"prompt": "SELECT", "max_tokens": 2}).encode()
    assert _http(d, "POST", "/v1/completions", body, {"Content-Length": str(len(body))})[0] == 401
    assert _http(d, "POST", "/v1/completions", body,
                 {"Authorization": f"Bearer {KEY}x", "Content-Length": str(len(body))})[0] == 401
    code, reply = _http(d, "POST", "/v1/completions", body, {**auth, "Content-Length": str(len(body))})
    assert code == 200 and reply["usage"]["completion_tokens"] <= 2
    assert _http(d, "POST", "/v1/completions", None, auth)[0] == 411
    code, reply = _http(d, "POST", "/v1/completions", None, {**auth, "Content-Length": "-1"})
    assert code == 400 and "Content-Length" in reply["error"]["message"]
    code, reply = _http(d, "POST", "/v1/completions", None, {**auth, "Content-Length": str(300 << 20)})
    assert code == 413 and "max_request_bytes" in reply["error"]["message"]


@pytest.mark.parametrize("fields, message", [
    ({"timeout_ms": -5}, "'timeout_ms' must be between 1 and"),
    ({"timeout_ms": "soon"}, "'timeout_ms' must be an integer"),
    ({"max_tokens": 0}, "'max_new_tokens' must be between 1 and"),
    ({"num_beams": 99}, "'num_beams' must be between 1 and"),
    ({"prompt": ""}, "'prompt' is empty"),
    ({"user": "u" * 300}, "'id' is longer than 200 characters"),
    ({"stop": [1]}, "'stop' must be a string or a list"),
])
def test_openai_listener_validates_like_the_socket(d: DaemonProcess, fields: dict, message: str) -> None:
    body = json.dumps({"prompt": "SELECT", "max_tokens": 2, **fields}).encode()
    code, reply = _http(d, "POST", "/v1/completions", body,
                        {"Authorization": f"Bearer {KEY}", "Content-Length": str(len(body))})
    assert code == 400 and message in reply["error"]["message"], reply


def test_every_case_in_the_security_note_has_its_test() -> None:
    note = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    section = re.split(r"\n##+ ", note.split("### Local users and operators against the daemon", 1)[1], maxsplit=1)[0]
    named = {name for row in section.splitlines() if row.startswith("| `")
             for name in re.findall(r"`(test_\w+)`", row)}
    assert len(named) >= 9 and named <= set(globals()), sorted(named - set(globals()))
