"""The serving loop: bind the Unix socket and the HTTP listeners, accept until SIGTERM, then drain and clean up.

The model itself (backend, scheduler, limits, status) is a :class:`~.model_service.ModelService`,
which the connection handlers use directly; this module owns what only the loop needs. While
serving, the accept loop also watches the socket file (removed: bound again; replaced by another
file: stop, exit status 5), applies SIGHUP (settings re-read), and waits instead of spinning when
the process runs out of file descriptors.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from .accept import FD_RESERVE, OUT_OF_DESCRIPTORS, raise_fd_limit
from .access import resolve_allowlist, socket_access
from .backends import Backend
from .connection import handle_connection, refuse_connection
from .errors import Busy
from .metrics_listener import start_metrics_server
from .model_service import ModelService
from .openai_listener import start_openai_server
from .reload import reread_settings
from .settings import Settings
from .unixsocket import BoundSocket, bind_socket

__all__ = ["EXIT_CUT_OFF", "EXIT_SOCKET_LOST", "Daemon"]

log = logging.getLogger(__name__)

#: Exit status when a stop's drain deadline cut requests off.
EXIT_CUT_OFF = 4
#: Exit status when the socket was replaced by another file (or could not be bound again).
EXIT_SOCKET_LOST = 5
_SOCKET_CHECK_S = 1.0


class Daemon:
    """Owns the socket, the HTTP side listeners and the signals around one :class:`ModelService`."""

    def __init__(self, settings: Settings, backend: Backend | None = None, argv: Sequence[str] | None = None):
        self.settings = settings
        self.argv = argv
        allowed_uids = resolve_allowlist(settings.allow_uid, settings.allow_user)
        self.access = socket_access(settings.socket, settings.socket_group, allowed_uids)
        self.service = ModelService(settings, allowed_uids, backend)
        self._bound: BoundSocket | None = None
        self._side_servers: list[Any] = []
        caps = settings.max_connections + sum(s.cap for name, s in self.service.listener_slots.items()
                                              if getattr(settings, f"{name}_listen"))
        soft, want = raise_fd_limit(caps)
        if soft < want:
            log.warning("the descriptor limit (%d) leaves room for about %d connections, not the %d of "
                        "max_connections and the listeners' caps: at the limit the daemon stops accepting until a "
                        "connection closes; raise LimitNOFILE (ulimit -n) to %d", soft, max(0, soft - FD_RESERVE),
                        caps, want)
        self.socket_lost = False
        self._reload_requested = False
        self._out_of_fds_since: float | None = None

    def load(self) -> None:
        self.service.load()

    def start_side_listeners(self, phase: str) -> None:
        """HTTP listeners on loopback: metrics before loading (status says 'loading'), OpenAI API after."""
        if phase == "early" and self.settings.metrics_listen:
            self._side_servers.append(start_metrics_server(self.service, self.settings.metrics_listen,
                                                           self.service.listener_slots["metrics"]))
        if phase == "ready" and self.settings.openai_listen:
            self._side_servers.append(start_openai_server(self.service, self.settings.openai_listen,
                                                          self.service.listener_slots["openai"]))

    def serve(self) -> int:
        """Bind the socket (only now that the model is loaded), accept until :meth:`request_stop`, drain;
        the exit status: 0, :data:`EXIT_CUT_OFF` or :data:`EXIT_SOCKET_LOST`."""
        self.service.scheduler.start()
        self.start_side_listeners("ready")
        for note in self.access.notes:
            log.info("%s", note)
        for warning in self.access.warnings:
            log.warning("%s", warning)
        self._bound = bind_socket(self.settings.socket, self.access.gid)
        self.service.state = "ready"
        log.info("listening on %s (allowed uids: %s; at most %d connections)", self.settings.socket,
                 ",".join(map(str, sorted(self.service.allowed_uids))), self.service.slots.cap)
        sel = selectors.DefaultSelector()
        sel.register(self._bound.sock, selectors.EVENT_READ)
        next_check = time.monotonic() + _SOCKET_CHECK_S
        try:
            while not self.service.closing.is_set():
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + _SOCKET_CHECK_S
                    self._check_socket(sel)
                    continue
                if sel.select(timeout=0.2):
                    self._accept_one()
        finally:
            sel.close()
            cut = self._shutdown()
        if self.socket_lost:
            return EXIT_SOCKET_LOST
        return EXIT_CUT_OFF if cut else 0

    def _check_socket(self, sel: selectors.BaseSelector) -> None:
        """Bind the socket again when its file was removed; stop when another file took the path."""
        assert self._bound is not None
        state = self._bound.state()
        if state == "ours":
            return
        path = self.settings.socket
        if state == "replaced":
            log.error("the socket %s was replaced by another file (another daemon?); this daemon can no longer be "
                      "reached and stops (exit status %d)", path, EXIT_SOCKET_LOST)
            self.socket_lost = True
            self.request_stop()
            return
        log.warning("the socket %s was removed; binding it again", path)
        try:
            bound = bind_socket(path, self.access.gid)
        except (OSError, ValueError) as e:
            log.error("cannot bind the socket %s again: %s; stopping (exit status %d)", path, e, EXIT_SOCKET_LOST)
            self.socket_lost = True
            self.request_stop()
            return
        old, self._bound = self._bound, bound
        sel.unregister(old.sock)
        sel.register(bound.sock, selectors.EVENT_READ)
        old.sock.setblocking(False)
        while True:  # serve the clients that connected before the file went (they wait in its backlog)
            try:
                conn, _ = old.sock.accept()
            except OSError:
                break
            self._start_connection(conn)
        old.sock.close()  # its file is gone: nothing to unlink
        log.info("listening on %s again", path)

    def _accept_one(self) -> None:
        assert self._bound is not None
        try:
            conn, _ = self._bound.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as e:
            if e.errno not in OUT_OF_DESCRIPTORS:
                log.warning("accept failed: %s", e)
                return
            if self._out_of_fds_since is None:
                self._out_of_fds_since = time.monotonic()
                self.service.slots.fd_exhausted += 1
                log.warning("out of file descriptors (%s) with %d connections open: accepting again once one "
                            "closes; raise LimitNOFILE or lower max_connections", e.strerror, self.service.slots.open)
            self.service.slots.wait_for_release(0.5)
            return
        if self._out_of_fds_since is not None:
            log.info("accepting connections again after %.1f s without a free descriptor",
                     time.monotonic() - self._out_of_fds_since)
            self._out_of_fds_since = None
        self._start_connection(conn)

    def _start_connection(self, conn: socket.socket) -> None:
        """A thread for ``conn``, or one ``busy`` line and close when max_connections are open."""
        if not self.service.slots.acquire():
            refuse_connection(conn, Busy(f"too many connections (max_connections {self.service.slots.cap}); try again"))
            return
        try:
            threading.Thread(target=self._serve_conn, args=(conn,), name="sqlcoder-conn", daemon=True).start()
        except RuntimeError:  # no thread can be started: treat like a full table
            self.service.slots.release()
            refuse_connection(conn, Busy("the daemon cannot start another connection thread; try again"))

    def _serve_conn(self, conn: socket.socket) -> None:
        try:
            handle_connection(self.service, conn)
        finally:
            self.service.slots.release()

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        """Signal handler (SIGTERM, SIGINT): stop accepting; :meth:`serve` then drains and returns."""
        if not self.service.closing.is_set():
            name = signal.Signals(signum).name if signum else "socket lost"
            log.info("stopping (%s): no new connections; finishing in-flight requests for up to %g s", name,
                     self.settings.drain_timeout_s)
        self.service.state = "draining"
        self.service.closing.set()

    def request_reload(self, *_args: Any) -> None:
        """SIGHUP handler: the accept loop re-reads the settings (not here: a handler must not take locks)."""
        self._reload_requested = True

    def reload(self) -> None:
        changed = reread_settings(self.argv, self.settings)
        if changed is None:
            return
        try:
            allowed = resolve_allowlist(changed.get("allow_uid", self.settings.allow_uid),
                                        changed.get("allow_user", self.settings.allow_user))
        except ValueError as e:
            log.error("SIGHUP: settings not reloaded, the old ones stay in effect: %s", e)
            return
        self.settings.update(changed)
        self.service.apply_settings(allowed)
        logging.getLogger().setLevel(self.settings.log_level)
        log.info("SIGHUP: settings re-read; applied: %s (allowed uids: %s)", ", ".join(sorted(changed)) or "none",
                 ",".join(map(str, sorted(allowed))))

    def _shutdown(self) -> int:
        """Close and remove our socket (never another daemon's), drain; the number of requests cut off."""
        if self._bound is not None:
            self._bound.close()
        t0 = time.monotonic()
        cut = self.service.drain(self.settings.drain_timeout_s)
        for srv in self._side_servers:
            srv.shutdown()
            srv.server_close()
        self.service.backend.close()
        if cut:
            log.warning("stopped after %.1f s: drain_timeout_s (%g s) passed with %d requests unfinished; they "
                        "were answered shutting_down (exit status %d)", time.monotonic() - t0,
                        self.settings.drain_timeout_s, cut, EXIT_CUT_OFF)
        else:
            log.info("stopped after draining for %.1f s", time.monotonic() - t0)
        return cut

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

