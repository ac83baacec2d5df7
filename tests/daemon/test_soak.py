"""A short soak: 32 concurrent clients; no failed request, no leaked descriptor, flat memory.

The two-minute version is ``make soak`` (bench/soak_daemon.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlcoder_dev.daemonproc import DaemonProcess, soak, socket_path

pytestmark = pytest.mark.slow


def test_soak_32_clients(random_model: Path) -> None:
    with DaemonProcess(random_model, socket_path(), ["--quantize", "none", "--device-map", "cpu",
                                                     "--log-level", "WARNING"]) as d:
        r = soak(d, clients=32, seconds=20)
    assert r.failed == 0, r.failures
    assert r.ok > 100 and r.abandoned > 0
    assert r.fds_end <= r.fds_start, (r.fds_start, r.fds_warm, r.fds_end)  # every connection was closed
    assert r.rss_end <= r.rss_warm * 1.10 + (16 << 20), (r.rss_warm, r.rss_end)
