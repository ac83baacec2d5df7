"""SIGHUP: read the settings again and apply those that can change without reloading the model.

Logs go to stderr (journald or the container's log), so there is no log file to reopen.
A setting that needs a restart (the model, the socket, the listeners...) is named in a
warning and left as it was; a config file that no longer parses is reported and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .settings import Settings, SettingsError, load_settings

__all__ = ["RELOADABLE", "reread_settings"]

log = logging.getLogger(__name__)

#: Settings SIGHUP applies at once; every other one needs a restart.
RELOADABLE = frozenset({
    "allow_uid", "allow_user", "log_level", "log_prompts", "max_queue", "batch_wait_ms", "timeout_ms",
    "drain_timeout_s", "max_new_tokens", "num_beams", "max_num_beams", "max_request_bytes", "max_connections",
    "openai_listen_max_connections", "metrics_listen_max_connections", "idle_timeout_s", "openai_listen_api_key",
})


def reread_settings(argv: Sequence[str] | None, current: Settings) -> dict[str, Any] | None:
    """Re-read flags and the config file; the changed settings SIGHUP may apply, or None when they do not
    load (logged). Changed settings that need a restart are named in a warning and left out."""
    try:
        new = load_settings(argv)
        if new.openai_listen and not (new.openai_listen_api_key or new.openai_listen_insecure):
            raise SettingsError("openai_listen_api_key may not become empty while the listener runs")
    except (SettingsError, ValueError) as e:
        log.error("SIGHUP: settings not reloaded, the old ones stay in effect: %s", e)
        return None
    changed = current.changed(new)
    restart = sorted(k for k in changed if k not in RELOADABLE)
    if restart:
        log.warning("SIGHUP: changed but only applied by a restart: %s", ", ".join(restart))
    return {k: v for k, v in sorted(changed.items()) if k in RELOADABLE}
