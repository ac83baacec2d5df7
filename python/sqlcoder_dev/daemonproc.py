"""Run the real daemon as a subprocess for tests, the demo and benchmarks.

``with DaemonProcess(model_dir, sock) as d: ...`` starts ``python -m
sqlcoder_daemon``, waits until its socket accepts connections (the daemon
creates it only after loading the model), and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Connection", "DaemonProcess", "DaemonStartError", "request", "socket_path"]

_PYTHON_DIR = Path(__file__).resolve().parent.parent


def socket_path(name: str = "sqlcoder.sock") -> Path:
    """A socket path in a fresh directory others (postgres, nobody) can traverse; its parent is left for the
    daemon to create, as it does under /run."""
    base = Path(tempfile.mkdtemp(prefix="sqlcoder-sock-"))
    os.chmod(base, 0o755)  # mkdtemp makes it private to its owner
    return base / "run" / name


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

    def __enter__(self) -> "Connection":
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
                 log_path: str | os.PathLike | None = None):
        self.model_dir = model_dir
        self.socket_path = Path(socket_path)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="sqlcoder-daemon-", suffix=".log")[1])
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

    def start(self) -> "DaemonProcess":
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PYTHON_DIR), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Tiny models gain nothing from OpenMP threads, and on a busy machine their spin-waits
        # make each step tens of times slower; one thread keeps test daemons quick.
        env.setdefault("OMP_NUM_THREADS", "1")
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
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

    def __enter__(self) -> "DaemonProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        if self._own_log and exc[0] is None:
            try:
                self.log_path.unlink()
            except OSError:
                pass
