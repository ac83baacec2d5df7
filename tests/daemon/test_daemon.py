"""The real daemon subprocess over its Unix socket: replies, permissions, peer check, protocol errors, shutdown."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlcoder_dev.daemonproc import Connection as Conn
from sqlcoder_dev.daemonproc import DaemonProcess, socket_path

pytestmark = pytest.mark.slow

STATUS_KEYS = {"state", "model", "backend", "device", "quantization", "dtype", "context_length", "max_new_tokens",
               "num_beams", "uptime_s", "requests", "protocol", "version"}


@pytest.fixture(scope="module")
def nf4_daemon(random_model: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(random_model, socket_path(),
                       ["--quantize", "nf4", "--device-map", "cpu", "--socket-group", "nogroup",
                        "--max-request-bytes", "65536", "--max-new-tokens", "64"]) as d:
        yield d


def gen(d: DaemonProcess, **kw) -> dict:
    return d.request({"v": 1, "id": "g", "op": "generate", "prompt": "SELECT count(*) FROM", **kw})


def test_generate_nf4_reply_shape(nf4_daemon: DaemonProcess) -> None:
    r = gen(nf4_daemon, max_new_tokens=8, num_beams=1)
    assert r["ok"] is True and r["id"] == "g" and r["v"] == 1
    assert isinstance(r["text"], str)
    assert r["finish_reason"] in ("eos", "length")
    assert r["usage"]["prompt_tokens"] > 0
    assert 1 <= r["usage"]["completion_tokens"] <= 8
    assert r["timings"]["generate_ms"] > 0 and r["timings"]["queue_ms"] >= 0


def test_generate_is_deterministic_with_beams(nf4_daemon: DaemonProcess) -> None:
    a, b = gen(nf4_daemon, max_new_tokens=6, num_beams=4), gen(nf4_daemon, max_new_tokens=6, num_beams=4)
    assert a["ok"] and a["text"] == b["text"]


def test_count_tokens_excludes_bos(nf4_daemon: DaemonProcess) -> None:
    r = nf4_daemon.request({"v": 1, "id": "c", "op": "count_tokens", "texts": ["SELECT 1;", "", "x" * 50]})
    assert r["ok"] and len(r["counts"]) == 3
    assert r["counts"][1] == 0 and r["counts"][0] >= 1 and r["counts"][2] >= 1
    g = gen(nf4_daemon, prompt="SELECT 1;", max_new_tokens=1, num_beams=1)
    assert g["usage"]["prompt_tokens"] == r["counts"][0] + 1  # the prompt gets <s>


def test_status_fields(nf4_daemon: DaemonProcess) -> None:
    st = nf4_daemon.request({"v": 1, "id": "s", "op": "status"})["status"]
    assert STATUS_KEYS <= st.keys()
    assert st["state"] == "ready" and st["protocol"] == 1 and st["backend"] == "transformers"
    assert st["quantization"] == "nf4" and st["device"] == "cpu" and st["dtype"] == "float32"
    assert st["context_length"] == 4096 and st["max_new_tokens"] == 64
    assert {"completed", "failed", "in_flight", "queued"} <= st["requests"].keys()
    assert st["settings"]["socket_group"] == "nogroup"


def test_socket_mode_group_and_parent_dir(nf4_daemon: DaemonProcess) -> None:
    st = os.stat(nf4_daemon.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == grp.getgrnam("nogroup").gr_gid
    assert stat.S_IMODE(os.stat(nf4_daemon.socket_path.parent).st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_peer_not_in_allowlist_is_forbidden(nf4_daemon: DaemonProcess) -> None:
    nobody = pwd.getpwnam("nobody")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody (group nogroup may open the socket), connect, report
        try:
            os.close(rfd)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            c = Conn(nf4_daemon.socket_path)
            reply = c.ask({"v": 1, "id": "x", "op": "status"})
            out = json.dumps({"reply": reply, "closed": c.closed_by_peer()})
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            out = json.dumps({"error": repr(e)})
        os.write(wfd, out.encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 65536):
        data += chunk
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "error" not in result, result
    assert result["reply"]["ok"] is False and result["reply"]["error"]["code"] == "forbidden"
    assert result["closed"] is True
    assert nf4_daemon.request({"v": 1, "id": "s", "op": "status"})["ok"]  # still serving


def test_protocol_errors_keep_the_connection_when_they_should(nf4_daemon: DaemonProcess) -> None:
    c = Conn(nf4_daemon.socket_path)
    r = c.ask(b"[1, 2]\n")
    assert r["error"]["code"] == "bad_request" and r["id"] is None
    r = c.ask({"v": 1, "id": "u", "op": "fly"})
    assert r["error"]["code"] == "bad_request" and r["id"] == "u"
    r = c.ask({"v": 7, "id": "w", "op": "status"})
    assert r["error"]["code"] == "unsupported_version" and r["error"]["supported"] == [1] and r["id"] == "w"
    r = c.ask({"v": 1, "id": "m", "op": "generate"})
    assert r["error"]["code"] == "bad_request" and "prompt" in r["error"]["message"]
    r = c.ask({"v": 1, "id": "n", "op": "generate", "prompt": "x", "max_new_tokens": 10_000})
    assert r["error"]["code"] == "bad_request"
    r = c.ask({"v": 1, "id": "ok", "op": "status", "unknown_field": [1]})
    assert r["ok"] is True and r["id"] == "ok"
    r = c.ask(b"{not json\n")
    assert r["error"]["code"] == "bad_request" and r["id"] is None
    assert c.closed_by_peer()
    c.close()


def test_oversize_line_is_too_large_and_closed(nf4_daemon: DaemonProcess) -> None:
    c = Conn(nf4_daemon.socket_path)
    c.send(b'{"v": 1, "id": "big", "op": "generate", "prompt": "' + b"a" * 70_000)
    r = c.recv()
    assert r["error"]["code"] == "too_large" and r["id"] is None
    assert c.closed_by_peer()
    c.close()
    assert nf4_daemon.request({"v": 1, "id": "s", "op": "status"})["ok"]


def test_prompt_longer_than_context_is_too_large(nf4_daemon: DaemonProcess) -> None:
    c = Conn(nf4_daemon.socket_path)
    r = c.ask({"v": 1, "id": "long", "op": "generate", "prompt": "SELECT 1; " * 6000, "num_beams": 1})
    assert r["error"]["code"] == "too_large" and r["id"] == "long"
    assert c.ask({"v": 1, "id": "s", "op": "status"})["ok"]  # kept open
    c.close()


def test_unquantized_daemon_serves_and_stops_on_sigterm(random_model: Path) -> None:
    d = DaemonProcess(random_model, socket_path(), ["--quantize", "none", "--device-map", "cpu"])
    with d:
        r = d.request({"v": 1, "id": "1", "op": "generate", "prompt": "SELECT", "max_new_tokens": 5,
                       "num_beams": 2})
        assert r["ok"] and r["usage"]["completion_tokens"] <= 5
        st = d.request({"v": 1, "id": "2", "op": "status"})["status"]
        assert st["quantization"] == "none" and st["dtype"] == "float32"
        assert st["requests"]["completed"] == 1
        assert d.socket_path.exists()
    assert d.proc.returncode == 0
    assert not d.socket_path.exists()


@pytest.mark.parametrize("problem", ["group", "not_a_socket"])
def test_socket_problems_are_refused_before_loading(random_model: Path, tmp_path: Path, problem: str) -> None:
    """A bad --socket-group or a file in the socket's place fails at once, not after a long model load."""
    import subprocess
    import sys

    sock = tmp_path / "sqlcoder.sock"
    args = ["--socket-group", "no-such-group-sqlcoder"] if problem == "group" else []
    if problem == "not_a_socket":
        sock.write_text("not a socket")
    result = subprocess.run([sys.executable, "-m", "sqlcoder_daemon", "--model", str(random_model),
                             "--socket", str(sock), "--quantize", "none", "--device-map", "cpu", *args],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "python")))
    assert result.returncode == 1
    assert ("no such group" if problem == "group" else "is not a socket") in result.stderr
    assert "model ready" not in result.stderr
