"""A stand-in model daemon speaking docs/protocol.md, with scripted replies and misbehaviour on demand.

Tests point ``socket_path`` at it to serve hostile model output (``DROP TABLE``,
ten megabytes, NUL bytes) and to fail the ways a real daemon can (garbage,
truncated or oversize replies, another protocol version, hanging, closing
mid-request, being slow). It runs in threads of the test process::

    with FakeDaemon(path) as fake:
        fake.reply("SELECT 1;")        # every generate answers this text
        fake.reply_when("PostgreSQL's error", "SELECT 2;")  # ... except prompts holding a text
        fake.misbehave("hang")          # ... or this failure mode
        fake.disconnects                # when clients gave up on a hanging request

``python -m sqlcoder_dev.fake_daemon --socket PATH --text 'SELECT 1;'`` runs one by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .daemonproc import socket_dir  # re-exported: the tests that use the stand-in import it from here

__all__ = ["FakeDaemon", "MODES", "socket_dir", "setup_run_database", "drop_run_database"]

# mode -> what a generate request gets
MODES = {
    "ok": "a normal reply carrying the scripted text",
    "garbage": "a line that is not JSON",
    "not_object": "a JSON line that is not an object",
    "truncated": "half a JSON reply, then the connection closes",
    "oversize": "a valid reply whose line is larger than the given size",
    "wrong_version": "a reply claiming protocol version 2",
    "unsupported_version": "an unsupported_version error reply",
    "error": "an error reply with the given code",
    "wrong_id": "a reply to another request id",
    "no_text": "an ok reply without text",
    "invalid_utf8": "a reply line with invalid UTF-8 bytes",
    "hang": "no reply until the client closes the connection",
    "close": "the connection closes right after the request is read",
    "slow": "the normal reply after a delay",
}


@dataclass
class _Script:
    mode: str = "ok"
    text: str = " SELECT 1;"
    model: str = "fake/sqlcoder"
    delay_s: float = 0.0
    size: int = 0
    code: str = "internal"
    raw: bytes | None = None


class FakeDaemon:
    """A scripted daemon on a Unix socket (mode 0666 unless ``socket_mode`` says otherwise)."""

    def __init__(self, path: str | os.PathLike, socket_mode: int = 0o666):
        self.path = Path(path)
        self.socket_mode = socket_mode
        self._script = _Script()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._rules: list[tuple[str, str]] = []
        self.requests: list[dict[str, Any]] = []
        self.disconnects: list[float] = []  # monotonic times clients closed a hanging request

    # -- scripting -----------------------------------------------------------
    #: Whether generate replies say a request's grammar was honoured (False: like a backend that cannot).
    honours_grammar = True

    def reply(self, text: str, model: str = "fake/sqlcoder") -> FakeDaemon:
        """Answer every generate request with ``text`` as the model's raw completion."""
        with self._lock:
            self._script = _Script(mode="ok", text=text, model=model)
            self._rules = []
        return self

    def reply_when(self, prompt_contains: str, text: str) -> FakeDaemon:
        """Answer ``text`` to a generate whose prompt contains ``prompt_contains`` (until the next reply())."""
        with self._lock:
            self._rules.append((prompt_contains, text))
        return self

    def misbehave(self, mode: str, *, delay_s: float = 0.0, size: int = 0, code: str = "internal",
                  text: str = " SELECT 1;") -> FakeDaemon:
        """Fail every generate request the way ``mode`` (a key of :data:`MODES`) says."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {sorted(MODES)}")
        with self._lock:
            self._script = _Script(mode=mode, delay_s=delay_s, size=size, code=code, text=text)
        return self

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> FakeDaemon:
        if self.path.exists():
            self.path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        os.chmod(self.path, self.socket_mode)
        server.listen(64)
        server.settimeout(0.1)
        self._server = server
        thread = threading.Thread(target=self._accept_loop, name="fake-daemon", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.path.exists():
            self.path.unlink()

    def __enter__(self) -> FakeDaemon:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors for a moment: keep serving
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not self._answer(conn, line):
                        return
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, line: bytes) -> bool:
        """Reply to one request line; False when the connection must close."""
        try:
            request = json.loads(line)
        except ValueError:
            conn.sendall(_line({"v": 1, "id": None, "ok": False,
                                "error": {"code": "bad_request", "message": "not JSON"}}))
            return False
        with self._lock:
            self.requests.append(request)
            script = self._script
            prompt = str(request.get("prompt") or "")
            for needle, text in self._rules:
                if request.get("op") == "generate" and script.mode == "ok" and needle in prompt:
                    script = _Script(mode="ok", text=text, model=script.model)
                    break
        rid, op = request.get("id"), request.get("op")
        if op == "status":
            conn.sendall(_line({"v": 1, "id": rid, "ok": True, "status": {
                "state": "ready", "model": script.model, "backend": "fake", "device": "cpu",
                "quantization": "none", "dtype": "float32", "context_length": 4096, "max_new_tokens": 300,
                "num_beams": 1, "uptime_s": 1.0, "protocol": 1, "version": "fake",
                "requests": {"completed": 0, "failed": 0, "in_flight": 0, "queued": 0}}}))
            return True
        if op == "count_tokens":
            texts = request.get("texts") or []
            conn.sendall(_line({"v": 1, "id": rid, "ok": True, "counts": [len(str(t)) // 4 + 1 for t in texts]}))
            return True
        return self._generate(conn, rid, script, constrained="grammar" in request and self.honours_grammar)

    def _generate(self, conn: socket.socket, rid: Any, script: _Script, constrained: bool = False) -> bool:
        # Like a daemon whose backend honours grammars: it says so (its text is scripted all the same).
        ok = {"v": 1, "id": rid, "ok": True, "text": script.text, "model": script.model, "finish_reason": "eos",
              "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "timings": {"queue_ms": 0, "generate_ms": 1},
              "constrained": constrained}
        mode = script.mode
        if mode == "ok":
            conn.sendall(_line(ok))
        elif mode == "slow":
            if self._wait_or_disconnect(conn, script.delay_s):
                conn.sendall(_line(ok))
        elif mode == "garbage":
            conn.sendall(b"this is not json at all\n")
        elif mode == "not_object":
            conn.sendall(b"[1, 2, 3]\n")
        elif mode == "truncated":
            conn.sendall(_line(ok)[:25])
            return False
        elif mode == "oversize":
            conn.sendall(_line({**ok, "text": " SELECT '" + "x" * script.size + "';"}))
        elif mode == "wrong_version":
            conn.sendall(_line({**ok, "v": 2}))
        elif mode == "unsupported_version":
            conn.sendall(_line({"v": 1, "id": rid, "ok": False, "supported": [2],
                                "error": {"code": "unsupported_version", "message": "this daemon speaks 2"}}))
        elif mode == "error":
            conn.sendall(_line({"v": 1, "id": rid, "ok": False,
                                "error": {"code": script.code, "message": f"scripted {script.code}"}}))
        elif mode == "wrong_id":
            conn.sendall(_line({**ok, "id": "someone-else"}))
        elif mode == "no_text":
            conn.sendall(_line({k: v for k, v in ok.items() if k != "text"}))
        elif mode == "invalid_utf8":
            conn.sendall(b'{"v": 1, "id": "' + str(rid).encode() + b'", "ok": true, "text": "SELECT \xff\xfe"}\n')
        elif mode == "hang":
            self._wait_or_disconnect(conn, float("inf"))
            return False
        elif mode == "close":
            return False
        return True

    def _wait_or_disconnect(self, conn: socket.socket, seconds: float) -> bool:
        """Sleep ``seconds``; False (and a recorded disconnect) if the client closed first."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data = conn.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                with self._lock:
                    self.disconnects.append(time.monotonic())
                return False
        return not self._stop.is_set()


def setup_run_database(cluster: Any, dbname: str, template: str, socket_path: str | os.PathLike,
                       role: str, settings: dict[str, str] | None = None) -> None:
    """A database copied from ``template`` whose sqlcoder talks to ``socket_path``, and an ordinary ``role``.

    The role can log in, read (and use the sequences of) schema public, and
    was granted sqlcoder access: the kind of caller ``sqlcoder.run`` is for.
    """
    cluster.psql(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
    cluster.psql(f'DO $$BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
    with cluster.connect(dbname) as conn:
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (role,))
        for key, value in {"socket_path": str(socket_path), **(settings or {})}.items():
            conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = %s", (value, key))


def drop_run_database(cluster: Any, dbname: str, role: str) -> None:
    cluster.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)', check=False)
    cluster.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a scripted stand-in for sqlcoder-daemon")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--text", default=" SELECT 1;", help="raw completion every generate returns")
    parser.add_argument("--mode", default="ok", choices=sorted(MODES), help="how to answer generate")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, for --mode slow")
    args = parser.parse_args(argv)
    fake = FakeDaemon(args.socket)
    if args.mode == "ok":
        fake.reply(args.text)
    else:
        fake.misbehave(args.mode, delay_s=args.delay, text=args.text)
    with fake:
        print(f"fake sqlcoder daemon on {args.socket} ({args.mode}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
