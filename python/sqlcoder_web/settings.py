"""The server's settings, declared once: type, default and help, read from command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WebSettings", "parse_args"]


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class WebSettings:
    """What an operator chooses when starting sqlcoder-web."""

    conninfo: str = _opt("", "libpq connection string or service (e.g. 'service=shop' or "
                             "'host=/var/run/postgresql dbname=shop') WITHOUT a user: each person logs in as "
                             "their role")
    single_user: bool = _opt(False, "no login page: connect with --conninfo as it is (its own user and password or "
                                    ".pgpass); the page is opened with a one-time link printed at start", flag=True)
    host: str = _opt("127.0.0.1", "address to listen on (keep the default behind a TLS reverse proxy)")
    port: int = _opt(8765, "port to listen on")
    root_path: str = _opt("", "URL prefix when a reverse proxy serves the page under a path, e.g. /sqlcoder")
    secure_cookies: bool = _opt(False, "mark cookies Secure (set it when users reach the page over HTTPS)", flag=True)
    forwarded_allow_ips: str = _opt("127.0.0.1", "proxies whose X-Forwarded-* headers are trusted")
    session_idle_minutes: int = _opt(30, "log a session out after this many minutes without a request")
    session_max_hours: int = _opt(12, "log a session out this many hours after login, active or not")
    max_sessions: int = _opt(64, "most sessions at once (each holds up to two database connections)")
    max_sessions_per_role: int = _opt(4, "most sessions of one role at once; its next login ends its least "
                                         "recently used one")
    max_connections: int = _opt(1024, "most HTTP connections open at once; one more closes the connection that "
                                      "has waited longest for its request to arrive")
    request_timeout_s: int = _opt(20, "each request must arrive whole (headers and body) within this many "
                                      "seconds of the connection opening (kept alive: of its first byte)")
    keep_alive_s: int = _opt(5, "close a connection idle this long after a reply")
    connect_timeout_s: int = _opt(5, "wait this long for a database connection before saying it cannot be reached")
    history_limit: int = _opt(50, "how many of your past questions the side list shows")
    max_table_rows: int = _opt(1000, "most result rows drawn in the page's table (the CSV has them all)")

    @property
    def base_url(self) -> str:
        """Where the page is served, as printed at start."""
        return f"http://{self.host}:{self.port}{self.root_path}"


def parse_args(argv: Sequence[str] | None = None) -> WebSettings:
    """Flags from :class:`WebSettings` (``--session-idle-minutes`` for ``session_idle_minutes``)."""
    parser = argparse.ArgumentParser(prog="sqlcoder-web", description=__doc__.split("\n")[0] if __doc__ else None)
    for f in dataclasses.fields(WebSettings):
        flag = "--" + f.name.replace("_", "-")
        if f.metadata.get("flag"):
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=int if f.type in ("int", int) else str, default=f.default,
                                help=f"{f.metadata['help']} (default: {f.default!r})")
    ns = parser.parse_args(argv)
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(WebSettings)}
    settings = WebSettings(**values)
    if not settings.conninfo:
        parser.error("--conninfo is required (e.g. --conninfo 'host=/var/run/postgresql dbname=shop')")
    for name in ("session_idle_minutes", "session_max_hours", "max_sessions", "max_sessions_per_role",
                 "max_connections", "request_timeout_s", "keep_alive_s", "connect_timeout_s", "history_limit",
                 "max_table_rows"):
        if getattr(settings, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return settings
