"""A wall-clock limit on work inside this backend: a child process that cancels it, then ends it.

Why a process: a ``statement_timeout`` set inside the function does not apply
to the statement already running, and a Python timer thread cannot run while
PL/Python holds the GIL inside an SPI call. SIGINT is PostgreSQL's query
cancel: the backend stops the running query at its next interrupt check.

Why it escalates: a cancel is an ordinary error, and code can catch it
(PL/pgSQL ``EXCEPTION WHEN query_canceled`` in a loop, a PL/Python ``try``)
and go on. So after the limit the child repeats SIGINT every
:data:`REPEAT_S` (a cancel that arrives while the catching handler runs,
outside its protected block, ends the call), and if the backend is still
working :data:`GRACE_S` after the limit, it sends SIGTERM, PostgreSQL's
``pg_terminate_backend``: the backend ends the call and its session with
FATAL 57P01, which no handler can catch. A backend inside code that never
checks for interrupts (a C function looping in a library) acts on neither
until that code returns; the policy refuses the known ones (the XPath family).

The race: the child may fire just as the work finishes. It writes one byte to
a pipe *before* it signals, so after killing and reaping it we know whether a
cancel may be pending (:attr:`Watchdog.fired`), and the caller consumes it
(:func:`absorb_pending_cancel`) instead of letting it hit a later statement.
The child also checks that the backend is still its parent before signalling,
so a recycled pid is never hit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from . import _spi
from ._spi import Plpy

__all__ = ["Watchdog", "absorb_pending_cancel"]

# Run by the system Python with -I -S: no site packages, no environment.
# The parent kills it (SIGKILL) as soon as the work ends, so every signal after
# the first only reaches a backend still inside the limited work.
_CHILD = r"""
import os, signal, sys, time
seconds, target, fd, repeat, grace = (float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                      float(sys.argv[4]), float(sys.argv[5]))
time.sleep(seconds)
if os.getppid() != target:
    sys.exit(1)
os.write(fd, b"F")
os.kill(target, signal.SIGINT)
end = time.monotonic() + grace
while time.monotonic() < end:
    time.sleep(min(repeat, max(end - time.monotonic(), 0)))
    if os.getppid() != target:
        sys.exit(1)
    os.kill(target, signal.SIGINT)
if os.getppid() == target:
    os.kill(target, signal.SIGTERM)
"""

#: Seconds between repeated cancels once the limit has passed.
REPEAT_S = 0.1
#: Seconds after the limit at which a backend that is still inside the work is terminated.
GRACE_S = 2.0


def _python() -> str:
    # In PL/Python sys.executable is the system interpreter PL/Python was built with.
    return sys.executable if sys.executable and os.path.exists(sys.executable) else "/usr/bin/python3"


class Watchdog:
    """``with Watchdog(seconds) as dog: ...``; afterwards ``dog.fired`` says whether it signalled.

    ``seconds`` after the start: SIGINT, repeated every ``repeat_s``; ``grace_s``
    after the first, SIGTERM (the backend ends its session).
    """

    def __init__(self, seconds: float, target_pid: int | None = None, *, repeat_s: float = REPEAT_S,
                 grace_s: float = GRACE_S):
        self.seconds = seconds
        self.repeat_s = repeat_s
        self.grace_s = grace_s
        self.target_pid = target_pid if target_pid is not None else os.getpid()
        self.fired = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._read_fd: int | None = None

    def start(self) -> Watchdog:
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [_python(), "-I", "-S", "-c", _CHILD, repr(self.seconds), str(self.target_pid), str(write_fd),
                 repr(self.repeat_s), repr(self.grace_s)],
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._read_fd = read_fd
        return self

    def stop(self) -> bool:
        """Kill and reap the child; return whether it sent (or was about to send) SIGINT."""
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    self._proc.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._proc.wait()
            self._proc = None
        if self._read_fd is not None:
            os.set_blocking(self._read_fd, False)
            try:
                self.fired = os.read(self._read_fd, 1) == b"F"
            except BlockingIOError:
                self.fired = False
            os.close(self._read_fd)
            self._read_fd = None
        return self.fired

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def absorb_pending_cancel(plpy: Plpy) -> None:
    """Let a cancel the watchdog sent after the work ended fire here, harmlessly, and swallow it."""
    try:
        with plpy.subtransaction():
            plpy.execute("SELECT 1")
    except plpy.SPIError as exc:
        if not _spi.is_canceled(exc):
            raise
