"""Run the real daemon as a subprocess for tests, the demo and benchmarks.

``with DaemonProcess(model_dir, sock) as d: ...`` starts ``python -m
sqlcoder_daemon``, waits until its socket accepts connections (the daemon
creates it only after loading the model), and stops it with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlcoder_daemon.memory import proc_bytes

__all__ = ["Connection", "DaemonProcess", "DaemonStartError", "SoakReport", "process_fds", "process_rss", "request",
           "soak", "socket_dir", "socket_path"]

_PYTHON_DIR = Path(__file__).resolve().parent.parent


def socket_dir(prefix: str = "sqlcoder-sock-") -> Path:
    """A fresh directory others (postgres, nobody) can traverse: pytest's and mkdtemp's are private to root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def socket_path(name: str = "sqlcoder.sock") -> Path:
    """A socket path in a fresh :func:`socket_dir`; its parent is left for the daemon to create, as it
    does under /run."""
    return socket_dir() / "run" / name


class Connection:
    """A raw protocol connection for tests: send lines (objects or raw bytes), read reply lines."""

    def __init__(self, path: str | os.PathLike, timeout: float = 120.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, message: dict[str, Any] | bytes) -> None:
        self.sock.sendall(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n")

    def recv(self) -> dict[str, Any] | None:
        """The next reply, or None if the daemon closed the connection."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, message: dict[str, Any] | bytes) -> dict[str, Any] | None:
        self.send(message)
        return self.recv()

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class DaemonStartError(RuntimeError):
    """The daemon exited or did not open its socket in time; the message carries its log."""


def request(socket_path: str | os.PathLike, message: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request on a fresh connection and return the reply (a tiny protocol client)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"daemon closed the connection; got {buf[:200]!r}")
            buf += chunk
    return json.loads(buf)


class DaemonProcess:
    """A ``sqlcoder-daemon`` subprocess serving ``model_dir`` on ``socket_path``."""

    def __init__(self, model_dir: str | os.PathLike | None, socket_path: str | os.PathLike,
                 extra_args: Sequence[str] = (), *, start_timeout: float = 180.0, env: dict[str, str] | None = None,
                 log_path: str | os.PathLike | None = None, nofile: int | None = None):
        self.model_dir = model_dir
        #: A soft and hard descriptor limit for the daemon (tests of its behaviour at the limit).
        self.nofile = nofile
        self.socket_path = Path(socket_path)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._own_log = log_path is None
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="sqlcoder-daemon-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self._log_file = None

    @property
    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "sqlcoder_daemon", "--socket", str(self.socket_path)]
        if self.model_dir is not None:
            args += ["--model", str(self.model_dir)]
        return args + self.extra_args

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> DaemonProcess:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PYTHON_DIR), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Tiny models gain nothing from OpenMP threads, and on a busy machine their spin-waits
        # make each step tens of times slower; one thread keeps test daemons quick.
        env.setdefault("OMP_NUM_THREADS", "1")
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, preexec_fn=self._limit if self.nofile else None)
        end = time.monotonic() + self.start_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise DaemonStartError(f"daemon exited with {self.proc.returncode} before opening "
                                       f"{self.socket_path}; log:\n{self.log_text()[-5000:]}")
            if self._connectable():
                return self
            time.sleep(0.05)
        self.stop()
        raise DaemonStartError(f"daemon did not open {self.socket_path} within {self.start_timeout:.0f} s; "
                               f"log:\n{self.log_text()[-5000:]}")

    def _limit(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _connectable(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket_path))
                return True
            except OSError:
                return False

    def request(self, message: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        return request(self.socket_path, message, timeout)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait (SIGKILL after ``timeout``); return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        if self._own_log and exc[0] is None:
            try:
                self.log_path.unlink()
            except OSError:
                pass


# --------------------------------------------------------------------------- soak


def process_rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (Linux)."""
    rss = proc_bytes(f"/proc/{pid}/status", "VmRSS")
    if rss is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return rss


def process_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` (Linux)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclasses.dataclass
class SoakReport:
    """What a soak run saw: request outcomes, and the daemon's fds and memory after warm-up and at the end."""

    seconds: float
    clients: int
    ok: int = 0
    failed: int = 0
    abandoned: int = 0  # requests the client walked away from on purpose
    failures: list[str] = dataclasses.field(default_factory=list)
    fds_start: int = 0
    fds_warm: int = 0
    fds_end: int = 0
    rss_warm: int = 0
    rss_end: int = 0

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def soak(daemon: DaemonProcess, *, clients: int = 32, seconds: float = 120.0, seed: int = 0,
         warmup_fraction: float = 0.25) -> SoakReport:
    """Hammer ``daemon`` with ``clients`` concurrent clients for ``seconds``.

    Each client mixes short generates (greedy and beam), token counts and
    status requests, reconnects now and then, and sometimes walks away in the
    middle of a generate (which the daemon must treat as a cancellation).
    The daemon's open fds and RSS are sampled after warm-up and at the end.
    """
    report = SoakReport(seconds=seconds, clients=clients)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    pid = daemon.proc.pid

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        conn: Connection | None = None
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            if conn is None or rng.random() < 0.1:
                if conn:
                    conn.close()
                conn = Connection(daemon.socket_path)
            kind = rng.random()
            rid = f"c{n}-{i}"
            if kind < 0.7:
                msg = {"v": 1, "id": rid, "op": "generate", "prompt": f"SELECT {rng.randint(0, 10**6)} FROM t{n}",
                       "max_new_tokens": rng.randint(1, 12), "num_beams": rng.choice([1, 1, 4])}
            elif kind < 0.85:
                msg = {"v": 1, "id": rid, "op": "count_tokens", "texts": ["SELECT 1;", "x" * rng.randint(0, 300)]}
            else:
                msg = {"v": 1, "id": rid, "op": "status"}
            try:
                conn.send(msg)
                if msg["op"] == "generate" and rng.random() < 0.03:
                    conn.close()  # walk away mid-request
                    conn = None
                    with lock:
                        report.abandoned += 1
                    continue
                reply = conn.recv()
            except OSError as e:
                reply = {"ok": False, "error": {"code": "client", "message": repr(e)}}
            with lock:
                if reply and reply.get("ok") and reply.get("id") == rid:
                    report.ok += 1
                else:
                    report.failed += 1
                    if len(report.failures) < 20:
                        report.failures.append(f"{rid}: {reply!r}"[:300])
                    conn = None
        if conn:
            conn.close()

    report.fds_start = process_fds(pid)
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds * warmup_fraction)
    report.fds_warm, report.rss_warm = process_fds(pid), process_rss(pid)
    for t in threads:
        t.join(seconds + 300)
    # Let the daemon notice the last disconnects before counting its descriptors.
    end = time.monotonic() + 10
    while time.monotonic() < end:
        st = request(daemon.socket_path, {"v": 1, "id": "soak", "op": "status"})["status"]["requests"]
        if st["in_flight"] == 0 and st["queued"] == 0 and process_fds(pid) <= report.fds_start:
            break
        time.sleep(0.1)
    report.fds_end, report.rss_end = process_fds(pid), process_rss(pid)
    return report
