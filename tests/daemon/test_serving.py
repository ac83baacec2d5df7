"""The daemon under concurrent use: batching, busy, deadlines, cancellation on disconnect, draining on SIGTERM,
the metrics listener and the per-request log line."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sqlcoder_dev.daemonproc import Connection as Conn
from sqlcoder_dev.daemonproc import DaemonProcess, socket_path

pytestmark = pytest.mark.slow

LONG = {"prompt": "SELECT count(*) FROM", "max_new_tokens": 4000, "num_beams": 4}


def wait_for(check: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    """Poll until ``check()``; the limit only bounds a hung test, it is not a performance assertion."""
    end = time.monotonic() + limit
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.05)


def status(d: DaemonProcess) -> dict:
    return d.request({"v": 1, "id": "s", "op": "status"})["status"]


@pytest.fixture(scope="module")
def daemon(random_model: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(random_model, socket_path(),
                       ["--quantize", "none", "--device-map", "cpu", "--max-new-tokens", "4000",
                        "--repetition-guard-tokens", "0", "--max-queue", "8",
                        "--max-batch-size", "8", "--batch-wait-ms", "50"]) as d:
        yield d


def idle(d: DaemonProcess) -> None:
    wait_for(lambda: (lambda r: r["in_flight"] == 0 and r["queued"] == 0)(status(d)["requests"]), "an idle daemon")


def test_concurrent_requests_are_batched_with_unchanged_answers(daemon: DaemonProcess) -> None:
    prompts = [f"SELECT {i} FROM t{i}" for i in range(8)]
    serial = [daemon.request({"v": 1, "id": str(i), "op": "generate", "prompt": p, "max_new_tokens": 12,
                              "num_beams": 1}) for i, p in enumerate(prompts)]
    before = status(daemon)["batches"]
    replies: dict[int, dict] = {}
    barrier = threading.Barrier(len(prompts))

    def client(i: int) -> None:
        c = Conn(daemon.socket_path)
        barrier.wait()
        replies[i] = c.ask({"v": 1, "id": str(i), "op": "generate", "prompt": prompts[i], "max_new_tokens": 12,
                            "num_beams": 1})
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [replies[i]["text"] for i in range(8)] == [r["text"] for r in serial]
    after = status(daemon)["batches"]
    assert after["count"] - before["count"] < len(prompts)  # at least two requests shared a batch


def test_disconnect_cancels_the_running_generation(daemon: DaemonProcess) -> None:
    idle(daemon)
    before = status(daemon)["requests"]
    c = Conn(daemon.socket_path)
    c.send({"v": 1, "id": "long", "op": "generate", **LONG})
    wait_for(lambda: status(daemon)["requests"]["in_flight"] == 1, "the long request to start")
    c.close()
    wait_for(lambda: status(daemon)["requests"]["in_flight"] == 0, "the generation to stop")
    after = status(daemon)["requests"]
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["interrupted"] == before["interrupted"] + 1  # stopped mid-way, not run to the end
    assert after["completed"] == before["completed"]


def test_disconnect_removes_a_queued_request_and_full_queue_is_busy(daemon: DaemonProcess) -> None:
    idle(daemon)
    before = status(daemon)["requests"]
    running = Conn(daemon.socket_path)
    running.send({"v": 1, "id": "run", "op": "generate", **LONG})
    wait_for(lambda: status(daemon)["requests"]["in_flight"] == 1, "the long request to start")
    # Different settings than the running batch, so these wait in the queue until it is full.
    capacity = status(daemon)["settings"]["max_queue"]
    queued = [Conn(daemon.socket_path) for _ in range(capacity)]
    for i, q in enumerate(queued):
        q.send({"v": 1, "id": f"q{i}", "op": "generate", **LONG, "num_beams": 2})
    wait_for(lambda: status(daemon)["requests"]["queued"] == capacity, "a full queue")
    extra = Conn(daemon.socket_path)
    r = extra.ask({"v": 1, "id": "extra", "op": "generate", **LONG, "num_beams": 3})
    assert r["ok"] is False and r["error"]["code"] == "busy" and r["id"] == "extra"
    assert extra.ask({"v": 1, "id": "s", "op": "status"})["ok"]  # kept open
    queued[0].close()
    wait_for(lambda: status(daemon)["requests"]["queued"] == capacity - 1, "the queued request to leave")
    assert status(daemon)["requests"]["in_flight"] == 1
    for c in (*queued[1:], running, extra):
        c.close()
    idle(daemon)
    after = status(daemon)["requests"]
    assert after["cancelled"] == before["cancelled"] + capacity + 1
    assert after["rejected"] == before["rejected"] + 1
    assert after["completed"] == before["completed"]


def test_deadline_gives_timeout_and_keeps_the_connection(daemon: DaemonProcess) -> None:
    idle(daemon)
    c = Conn(daemon.socket_path)
    r = c.ask({"v": 1, "id": "t", "op": "generate", **LONG, "timeout_ms": 300})
    assert r["ok"] is False and r["error"]["code"] == "timeout" and r["id"] == "t"
    assert c.ask({"v": 1, "id": "s", "op": "status"})["status"]["requests"]["timeouts"] >= 1
    c.close()


def test_sigterm_drains_in_flight_requests_and_logs_each(random_model: Path, tmp_path: Path) -> None:
    port = _free_port()
    d = DaemonProcess(random_model, socket_path(),
                      ["--quantize", "none", "--device-map", "cpu", "--metrics-listen", f"127.0.0.1:{port}",
                       "--log-prompts", "true", "--max-new-tokens", "4000",
                       "--repetition-guard-tokens", "0", "--drain-timeout-s", "600"],
                      log_path=tmp_path / "daemon.log")
    seen_loading = threading.Event()

    def watch() -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end and not d.socket_path.exists():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1) as resp:
                    state = json.load(resp)["status"]["state"]
                if state == "loading" and not d.socket_path.exists():
                    seen_loading.set()
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)  # polls /status while the model loads
    watcher.start()
    with d:
        watcher.join()
        assert seen_loading.is_set(), "the metrics listener never reported state 'loading' before the socket"
        c = Conn(d.socket_path)
        c.send({"v": 1, "id": "drain-me", "op": "generate", **LONG, "max_new_tokens": 1500})
        wait_for(lambda: status(d)["requests"]["in_flight"] == 1, "the request to start")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "sqlcoder_daemon_requests_in_flight 1" in metrics and 'state="ready"' in metrics
        d.proc.send_signal(signal.SIGTERM)
        r = c.recv()
        assert r["ok"] is True and r["id"] == "drain-me" and r["usage"]["completion_tokens"] == 1500
        assert d.proc.wait(60) == 0
    assert not d.socket_path.exists()
    events = [json.loads(line) for line in d.log_text().splitlines() if line.startswith("{")]
    req = [e for e in events if e.get("event") == "request" and e["id"] == "drain-me"]
    assert len(req) == 1 and req[0]["outcome"] == "ok" and req[0]["prompt"] == LONG["prompt"]
    assert req[0]["completion_tokens"] == r["usage"]["completion_tokens"] and req[0]["generate_ms"] > 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
