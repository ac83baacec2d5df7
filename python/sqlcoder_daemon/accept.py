"""Connections within limits: a cap for the socket and one for each HTTP listener, and the descriptor budget.

Each connection holds a thread and a descriptor. Without a cap, idle clients could
take every descriptor; with one cap for all, a flood of one listener (any local user
reaches loopback) would lock the database out of the socket. At the descriptor limit
``accept`` fails at once while the listening socket stays readable, which turns a
select loop into a busy spin. The accept loops therefore wait on
:meth:`ConnectionSlots.wait_for_release` when they run out.
"""

from __future__ import annotations

import errno
import logging
import resource
import threading

__all__ = ["FD_RESERVE", "OUT_OF_DESCRIPTORS", "ConnectionSlots", "raise_fd_limit"]

log = logging.getLogger(__name__)

#: Descriptors the daemon needs besides connections: model files, torch and CUDA, pipes, logs, listeners.
FD_RESERVE = 256
#: accept() errors that mean "no descriptor or buffer now": back off instead of retrying at once.
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionSlots:
    """Counts open connections against ``cap``; wakes a waiting accept loop when one closes."""

    def __init__(self, cap: int):
        self.cap = cap
        self.open = 0
        self.refused = 0
        self.idle_closed = 0
        self.fd_exhausted = 0
        self._cond = threading.Condition()

    def acquire(self) -> bool:
        with self._cond:
            if self.open >= self.cap:
                self.refused += 1
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.open -= 1
            self._cond.notify_all()

    def note_idle_close(self) -> None:
        with self._cond:
            self.idle_closed += 1

    def wait_for_release(self, timeout: float) -> None:
        """Sleep until a connection closes (a descriptor is free again) or ``timeout`` passes."""
        with self._cond:
            self._cond.wait(timeout)

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return {"open": self.open, "max": self.cap, "refused": self.refused, "idle_closed": self.idle_closed,
                    "fd_exhausted": self.fd_exhausted}


def raise_fd_limit(max_connections: int) -> tuple[int, int]:
    """Raise the soft descriptor limit toward ``max_connections + FD_RESERVE`` (never above the hard limit;
    ``max_connections``: the caps of the socket and the listeners together);
    return (soft limit now, what was wanted), so the caller can warn when the cap cannot be met."""
    want = max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the descriptor limit to %d: %s", target, e)
    return soft, want
