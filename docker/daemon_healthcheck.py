"""Container healthcheck: ask the daemon for its status over its socket (protocol v1).

Healthy means the daemon answers ``status`` with ``state: ready``. The socket
only appears once the model is loaded, so a loading daemon reads as
unhealthy; the image's generous start period covers the load. Standard
library only, so it costs no import of torch.
"""

from __future__ import annotations

import json
import os
import socket
import sys

__all__ = ["probe", "main"]


def probe(path: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Send one ``status`` request; return (healthy, a line for the container's health log)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b'{"v": 1, "id": "healthcheck", "op": "status"}\n')
            buf = b""
            while not buf.endswith(b"\n") and len(buf) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as e:
        return False, f"cannot reach {path}: {e}"
    try:
        reply = json.loads(buf)
    except ValueError:
        return False, f"not a protocol reply: {buf[:200]!r}"
    if not isinstance(reply, dict) or not reply.get("ok"):
        err = reply.get("error", {}) if isinstance(reply, dict) else {}
        return False, f"status failed: {err.get('code')}: {err.get('message')}"
    status = reply.get("status") or {}
    state = status.get("state")
    summary = f"state={state} model={status.get('model')} device={status.get('device')}"
    return state == "ready", summary


def main() -> int:
    """Exit 0 when healthy, 1 otherwise (Docker's healthcheck convention)."""
    ok, line = probe(os.environ.get("SQLCODER_SOCKET_PATH", "/run/sqlcoder/sqlcoder.sock"))
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
