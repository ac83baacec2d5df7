"""``make soak``: 32 concurrent clients against the real daemon for two minutes (a tiny CPU model).

Checks what the in-suite soak (tests/daemon/test_soak.py, 20 s) checks, for
longer: no failed request, no leaked file descriptor, flat memory. Prints
``BENCH`` lines and exits non-zero on a failed check.
Usage: ``python bench/soak_daemon.py [SECONDS] [CLIENTS]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sqlcoder_dev.daemonproc import DaemonProcess, soak, socket_path
from sqlcoder_dev.tiny import build_random_llama


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 120.0
    clients = int(argv[1]) if len(argv) > 1 else 32
    with tempfile.TemporaryDirectory(prefix="soak-daemon-") as tmp:
        model = build_random_llama(Path(tmp) / "model")
        with DaemonProcess(model, socket_path(), ["--quantize", "none", "--device-map", "cpu",
                                                   "--log-level", "WARNING"]) as daemon:
            r = soak(daemon, clients=clients, seconds=seconds)
    print(f"BENCH soak_requests_per_s {r.requests_per_s:.2f} req/s")
    print(f"BENCH soak_failed_requests {r.failed} requests")
    print(f"BENCH soak_fd_growth {r.fds_end - r.fds_start} fds")
    print(f"BENCH soak_rss_growth_mib {(r.rss_end - r.rss_warm) / 2**20:.1f} MiB")
    print(f"# {r.ok} ok, {r.abandoned} abandoned on purpose; fds {r.fds_start} -> {r.fds_warm} -> {r.fds_end}; "
          f"rss {r.rss_warm / 2**20:.0f} -> {r.rss_end / 2**20:.0f} MiB")
    for failure in r.failures:
        print(f"# failed: {failure}")
    ok = r.failed == 0 and r.fds_end <= r.fds_start and r.rss_end <= r.rss_warm * 1.10 + (16 << 20)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
