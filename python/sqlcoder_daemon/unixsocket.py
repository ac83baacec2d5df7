"""The listening Unix socket: atomic creation with mode 0660 and a group, peer credentials, line reading."""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import socket
import struct
from pathlib import Path
from typing import Iterable

from .errors import TooLarge

__all__ = ["LineReader", "bind_socket", "check_socket_path", "default_allowlist", "peer_uid", "remove_socket", "resolve_allowlist"]

log = logging.getLogger(__name__)


def default_allowlist() -> set[int]:
    """The daemon's own uid and the ``postgres`` user's (if that user exists)."""
    uids = {os.getuid()}
    try:
        uids.add(pwd.getpwnam("postgres").pw_uid)
    except KeyError:
        pass
    return uids


def resolve_allowlist(uids: Iterable[int], users: Iterable[str]) -> set[int]:
    """Explicit ``--allow-uid``/``--allow-user`` values, or the default allowlist when none are given."""
    out = {int(u) for u in uids}
    for name in users:
        try:
            out.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            raise ValueError(f"--allow-user {name}: no such user") from None
    return out or default_allowlist()


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid from ``SO_PEERCRED`` (Linux: pid, uid, gid as three ints)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


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


def check_socket_path(path: str | os.PathLike, group: str | None) -> None:
    """Refuse, before a load that can take minutes, what :func:`bind_socket` would refuse after it."""
    path = Path(path)
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise ValueError(f"--socket-group {group}: no such group") from None
    if path.exists() or path.is_symlink():
        if not path.is_socket():
            raise FileExistsError(f"{path} exists and is not a socket")
        if not _stale(path):
            raise FileExistsError(f"another daemon is listening on {path}")
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create the socket {path}: no write permission on {directory}")


def bind_socket(path: str | os.PathLike, group: str | None, backlog: int = 128) -> socket.socket:
    """Listen on ``path``, which appears atomically already carrying mode 0660 and ``group``.

    Binding a temporary name and renaming it means a client never sees the
    socket with the wrong permissions. A live daemon on ``path`` is an error;
    a stale socket file is replaced.
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o755)
        os.chmod(path.parent, 0o755)  # mkdir's mode is filtered by the umask
    if path.exists() or path.is_symlink():
        if not path.is_socket():
            raise FileExistsError(f"{path} exists and is not a socket")
        if not _stale(path):
            raise FileExistsError(f"another daemon is listening on {path}")
        path.unlink()
    gid = None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"--socket-group {group}: no such group") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists():
        tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, 0o660)
        if gid is not None:
            os.chown(tmp, -1, gid)
        sock.listen(backlog)
        os.rename(tmp, path)
    except BaseException:
        sock.close()
        if tmp.exists():
            tmp.unlink()
        raise
    return sock


def remove_socket(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class LineReader:
    """Reads newline-terminated request lines, refusing any longer than ``max_bytes``."""

    def __init__(self, conn: socket.socket, max_bytes: int, chunk: int = 65536):
        self.conn = conn
        self.max_bytes = max_bytes
        self.chunk = chunk
        self.buf = bytearray()

    def readline(self) -> bytes | None:
        """The next line without its ``\\n``; None at end of stream; :class:`TooLarge` (close) if oversize."""
        start = 0
        while True:
            nl = self.buf.find(b"\n", start)
            if nl >= 0:
                if nl > self.max_bytes:
                    break
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                return line
            if len(self.buf) > self.max_bytes:
                break
            start = len(self.buf)
            data = self.conn.recv(self.chunk)
            if not data:
                return None  # a partial line at EOF is dropped: the client went away
            self.buf += data
        raise TooLarge(f"request line exceeds max_request_bytes ({self.max_bytes})", close=True)

    def has_buffered(self) -> bool:
        return bool(self.buf)
