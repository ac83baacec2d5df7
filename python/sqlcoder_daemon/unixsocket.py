"""The listening Unix socket: atomic creation with mode 0660 and a group, peer credentials, line reading,
and noticing that a peer has gone."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import select
import socket
import struct
import time
from pathlib import Path

from .errors import TooLarge

__all__ = ["BoundSocket", "IdleTimeout", "LineReader", "bind_socket", "check_socket_path", "client_gone", "peer_uid"]

log = logging.getLogger(__name__)


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid from ``SO_PEERCRED`` (Linux: pid, uid, gid as three ints)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def client_gone(conn: socket.socket) -> bool:
    """True if the peer closed its end (EOF pending), without consuming any data it sent."""
    try:
        poller = select.poll()  # not select(): it fails on descriptors above 1023
        poller.register(conn, select.POLLIN | select.POLLRDHUP)
        if not poller.poll(0):
            return False
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _stale(path: Path) -> bool:
    """True if ``path`` is a socket nobody listens on (left by a crashed daemon)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        return e.errno in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return False


def check_socket_path(path: str | os.PathLike[str]) -> None:
    """Refuse, before a load that can take minutes, what :func:`bind_socket` would refuse after it."""
    path = Path(path)
    _refuse_occupied(path)
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create the socket {path}: no write permission on {directory}")


def _refuse_occupied(path: Path) -> bool:
    """Raise if something that is not a stale socket is at ``path``; True if a stale socket is there."""
    if not (path.exists() or path.is_symlink()):
        return False
    if path.is_symlink() or not path.is_socket():
        kind = "a symbolic link" if path.is_symlink() else "a directory" if path.is_dir() else "a regular file"
        raise FileExistsError(f"{path} exists and is not a socket ({kind}); remove it or choose another --socket")
    if not _stale(path):
        raise FileExistsError(f"another daemon is listening on {path}")
    return True


@dataclasses.dataclass(frozen=True)
class BoundSocket:
    """The listening socket and the identity (device, inode) of the file it created, so that the daemon
    removes only its own socket and notices when the path is removed or taken over."""

    sock: socket.socket
    path: Path
    dev: int
    ino: int

    def state(self) -> str:
        """``ours``, ``missing`` (nothing at the path) or ``replaced`` (another file is there)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "missing"  # e.g. the directory is gone
        return "ours" if (st.st_dev, st.st_ino) == (self.dev, self.ino) else "replaced"

    def close(self) -> None:
        """Stop listening and unlink the path only while it is still the file this daemon created."""
        self.sock.close()
        if self.state() == "ours":
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def bind_socket(path: str | os.PathLike[str], gid: int | None, backlog: int = 128) -> BoundSocket:
    """Listen on ``path``, which appears atomically already carrying mode 0660 and group ``gid``.

    Binding a temporary name and hard-linking it into place means a client never
    sees the socket with the wrong permissions, and (unlike a rename) never
    replaces a file that appeared at ``path`` meanwhile. A live daemon or any
    other file at ``path`` is an error; a stale socket file is replaced.
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o755)
        os.chmod(path.parent, 0o755)  # mkdir's mode is filtered by the umask
    if _refuse_occupied(path):
        path.unlink()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, 0o660)
        if gid is not None:
            os.chown(tmp, -1, gid)
        sock.listen(backlog)
        st = os.lstat(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{path} appeared while this daemon was binding it; another daemon?") from None
        finally:
            tmp.unlink()
    except BaseException:
        sock.close()
        if tmp.exists():
            tmp.unlink()
        raise
    return BoundSocket(sock, path, st.st_dev, st.st_ino)


class IdleTimeout(Exception):
    """The peer sent no complete request line within ``idle_timeout_s``: the connection is closed."""


class LineReader:
    """Reads newline-terminated request lines, refusing any longer than ``max_bytes`` and closing a
    connection that takes longer than ``idle_timeout`` seconds to send one (it would hold a thread and
    a descriptor for nothing)."""

    def __init__(self, conn: socket.socket, max_bytes: int, chunk: int = 65536, idle_timeout: float | None = None):
        self.conn = conn
        self.max_bytes = max_bytes
        self.chunk = chunk
        self.idle_timeout = idle_timeout
        self.buf = bytearray()

    def readline(self) -> bytes | None:
        """The next line without its ``\\n``; None at end of stream; :class:`TooLarge` (close) if oversize;
        :class:`IdleTimeout` when the line does not arrive in time."""
        start = 0
        deadline = None if self.idle_timeout is None else time.monotonic() + self.idle_timeout
        while True:
            nl = self.buf.find(b"\n", start)
            if nl >= 0:
                if nl > self.max_bytes:
                    break
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                # The reply is then written under the same bound: a client that never reads cannot hold it.
                self.conn.settimeout(self.idle_timeout)
                return line
            if len(self.buf) > self.max_bytes:
                break
            start = len(self.buf)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IdleTimeout()
                self.conn.settimeout(left)
            try:
                data = self.conn.recv(self.chunk)
            except TimeoutError:
                raise IdleTimeout() from None
            if not data:
                return None  # a partial line at EOF is dropped: the client went away
            self.buf += data
        raise TooLarge(f"request line exceeds max_request_bytes ({self.max_bytes})", close=True)

    def has_buffered(self) -> bool:
        return bool(self.buf)
