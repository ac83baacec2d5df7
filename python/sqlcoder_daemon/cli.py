"""``sqlcoder-daemon``: parse settings, set up logging, run the daemon; exit codes for systemd.

0 clean stop, 1 cannot start, 2 bad settings, 3 model too large for memory, 4 a stop cut requests off,
5 the socket was replaced by another file (docs/daemon.md, "Signals, exit status, systemd").
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Sequence

from . import __version__
from .settings import SettingsError, load_settings

__all__ = ["main", "setup_logging"]

log = logging.getLogger("sqlcoder_daemon")


class _Formatter(logging.Formatter):
    """Text lines for humans; request events (JSON messages) stay one JSON object per line, with time and level."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "sqlcoder_daemon.requests":
            event = json.loads(record.getMessage())
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
            return json.dumps({"ts": ts, "level": record.levelname.lower(), **event}, ensure_ascii=False)
        return super().format(record)


def setup_logging(level: str) -> None:
    """Log to stderr (journald under systemd adds its own timestamps, we keep ours for plain runs)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except SettingsError as e:
        print(f"sqlcoder-daemon: {e}", file=sys.stderr)
        return 2
    if settings.version:
        print(f"sqlcoder-daemon {__version__}")
        return 0
    setup_logging(settings.log_level)
    from .daemon import Daemon
    from .memory import InsufficientMemory
    from .unixsocket import check_socket_path

    # SIGHUP's default action kills the process: while loading it is only remembered, then applied.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        check_socket_path(settings.socket)
        daemon = Daemon(settings, argv=argv)
        signal.signal(signal.SIGHUP, daemon.request_reload)
        daemon.start_side_listeners("early")
        daemon.load()
    except InsufficientMemory as e:
        log.error("%s", e)
        return 3
    except (ValueError, OSError, ImportError) as e:
        log.error("cannot start: %s", e)
        return 1
    daemon.install_signal_handlers()
    try:
        return daemon.serve()
    except (ValueError, OSError) as e:
        log.error("cannot serve: %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
