"""Who may use the socket: the uid allowlist, and a socket group that lets every allowlisted user connect.

The peer check (``SO_PEERCRED``) admits only allowlisted uids, but a uid can only
get that far if the file mode lets it open the socket (0660: owner or group). The
two settings must agree, so the daemon checks them together before loading anything.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SocketAccess", "default_allowlist", "resolve_allowlist", "socket_access"]


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


class SocketAccess:
    """The group the socket gets (None: the daemon's own, no chown), a note on how it was chosen, and
    warnings about allowlisted users who cannot open it, to log at start."""

    def __init__(self, gid: int | None, notes: list[str], warnings: list[str] | None = None):
        self.gid = gid
        self.notes = notes
        self.warnings = warnings or []


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _in_group(uid: int, gid: int) -> bool | None:
    """Whether ``uid`` is in group ``gid`` (primary or supplementary); None when the uid has no passwd entry."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return None
    if pw.pw_gid == gid:
        return True
    try:
        return pw.pw_name in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def _may_give(gid: int) -> bool:
    """A process may give its files a group it belongs to; root any group."""
    return os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups()


def _default_gid(path: Path) -> int:
    """The group a new socket gets without a chown: the directory's under a set-group-id directory."""
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    st = os.stat(directory)
    return st.st_gid if st.st_mode & stat.S_ISGID and directory == path.parent else os.getegid()


def socket_access(path: str | os.PathLike[str], group: str | None, allowed: set[int]) -> SocketAccess:
    """Choose the socket's group so that every allowlisted user can open it, or refuse (ValueError).

    With ``--socket-group``, that group is used and users outside it are named in a warning.
    Without it, the daemon's own group is kept when it covers everyone; otherwise the primary
    group of an allowlisted user (``postgres`` by default) that covers them all and that the
    daemon may give; when there is none, the start is refused with a message saying what to pass.
    """
    others = sorted(u for u in allowed if u not in (0, os.getuid()))  # root passes file modes anyway
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"--socket-group {group}: no such group") from None
        outside = [u for u in others if _in_group(u, gid) is False]
        warnings = [f"allowlisted {', '.join(map(_user, outside))} not in --socket-group {group}: "
                    "they cannot open the socket (mode 0660)"] if outside else []
        return SocketAccess(gid, [], warnings)
    own = _default_gid(Path(path))
    if all(_in_group(u, own) is not False for u in others):
        return SocketAccess(None, [])
    candidates: list[int] = []
    for uid in others:
        try:
            candidates.append(pwd.getpwuid(uid).pw_gid)
        except KeyError:
            pass
    for gid in candidates:
        if _may_give(gid) and all(_in_group(u, gid) is not False for u in others):
            return SocketAccess(gid, [f"no --socket-group: the socket gets group {_group(gid)} so that "
                                      f"{', '.join(map(_user, others))} can connect"])
    outside = [u for u in others if _in_group(u, own) is False]
    raise ValueError(
        f"no --socket-group given and the socket would be group {_group(own)} (mode 0660), which "
        f"{', '.join(map(_user, outside))} is not in, so the allowlist admits a user who could not connect; "
        f"pass --socket-group with a group that user is in (e.g. --socket-group postgres, the daemon's user "
        f"must be a member), or list only reachable users with --allow-user/--allow-uid")
