"""A model server that attacks the daemon: the real daemon (openai backend) in front of a compromised or broken
vLLM/TGI/llama.cpp stand-in, with the same invariants as tests/adversarial/test_hostile_sql.py (docs/security.md
has the table)."""

from __future__ import annotations

import pytest

from helpers.adversarial import DB, assert_unharmed, outcome_of
from helpers.model_server_stand_in import ModelServerStandIn
from sqlcoder_dev.daemonproc import DaemonProcess, process_rss
from sqlcoder_dev.fake_daemon import socket_dir

# (case id, what the openai backend's model server does, expected SQLSTATE)
HOSTILE_MODEL_SERVERS = [
    ("server-drop-table", "sql", "25006"),  # a compromised server's completion is still only model output
    ("server-40-mib-reply", "huge", "08001"),  # refused after 16 MiB: the daemon's memory stays bounded
    ("server-dribbles-bytes", "dribble", "57014"),  # never finishes: the request's deadline cuts it
    ("server-html-page", "garbage", "08001"),
    ("server-list-finish-reason", "list-finish", "25006"),  # read as a completion (once a TypeError), then guarded
]


@pytest.mark.parametrize("case, mode, expected", HOSTILE_MODEL_SERVERS, ids=[c[0] for c in HOSTILE_MODEL_SERVERS])
def test_hostile_model_server(pg, analyst_conn, baseline, case, mode, expected) -> None:
    with ModelServerStandIn(mode) as server, \
            DaemonProcess(None, socket_dir() / "sqlcoder.sock", ["--backend", "openai", "--openai-url", server.url,
                                                                 "--socket-group", "postgres"]) as daemon:
        server.text = " DROP TABLE customers;"
        with pg.connect(DB) as admin:
            old = admin.execute("SELECT key, value FROM sqlcoder.config WHERE key IN "
                                "('socket_path', 'model_timeout_ms')").fetchall()
            admin.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(daemon.socket_path),))
            admin.execute("UPDATE sqlcoder.config SET value = '3000' WHERE key = 'model_timeout_ms'")
        try:
            rss = process_rss(daemon.proc.pid)
            assert outcome_of(analyst_conn, "SELECT * FROM sqlcoder.run('how many customers are there?')") == expected
            assert process_rss(daemon.proc.pid) < rss + 64 * 2**20
            assert daemon.request({"v": 1, "id": "s", "op": "status"})["status"]["state"] == "ready"
        finally:
            with pg.connect(DB) as admin:
                for key, value in old:
                    admin.execute("UPDATE sqlcoder.config SET value = %s WHERE key = %s", (value, key))
    assert_unharmed(pg, analyst_conn, baseline)


def test_every_case_is_in_the_security_note() -> None:
    from helpers.paths import ROOT

    rows = {line.split(" | ")[0].strip("| "): line for line in (ROOT / "docs" / "security.md").read_text().splitlines()
            if line.startswith("| `")}
    for case, _mode, expected in HOSTILE_MODEL_SERVERS:
        assert f"`{case}`" in rows and expected in rows[f"`{case}`"], case
