"""A follow-up conversation in psql through the real daemon and real transformers.

The tiny model is taught two prompts, both rendered by the extension itself:
a first question, and a follow-up refining it (``follow_up => 0``). Then
psql asks both, as an analyst, and the second answer is the refined query:
the daemon was sent exactly the prompt ``sqlcoder.prompt(..., follow_up => 0)``
shows, or the model would not have known it.
"""

from __future__ import annotations

import subprocess

from plugins.postgres import configure_socket
from sqlcoder_dev import shop
from sqlcoder_dev.daemonproc import DaemonProcess, socket_dir
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.tiny import train_tiny_sqlcoder

FIRST = "how many customers are there?"
FIRST_SQL = "SELECT COUNT(*) FROM customers;"
SECOND = "and how many of them are in Germany?"
SECOND_SQL = "SELECT COUNT(*) FROM customers WHERE country = 'DE';"

CONVERSATION = f"""\\pset format unaligned
\\pset tuples_only on
SELECT sqlcoder.ask('{FIRST}');
SELECT max(id) AS first FROM sqlcoder.history WHERE role = current_user \\gset
SELECT sqlcoder.ask('{SECOND}', follow_up => 0);
SELECT count(*) FROM customers WHERE country = 'DE';
\\echo -- what the model was sent for the second question (history row :first is the first):
SELECT sqlcoder.prompt('{SECOND}', follow_up => :first);
"""


def psql_transcript(pg: Cluster, db: str, user: str, script: str) -> str:
    """psql reading ``script`` on standard input, echoing each statement (-a) before its output."""
    cmd = [str(pg.bindir / "psql"), "-X", "-a", "-v", "ON_ERROR_STOP=1", "-h", str(pg.sockdir), "-p", str(pg.port),
           "-U", user, "-d", db]
    done = subprocess.run(cmd, input=script, capture_output=True, text=True, check=True)
    return done.stdout


def test_a_follow_up_conversation_in_psql_through_the_real_daemon(pg, new_db, analyst_role, tiny_daemon,
                                                                  tmp_path) -> None:
    db = new_db(socket=tiny_daemon.socket_path)
    role = analyst_role(db)
    with pg.connect(db, user=role) as conn:
        assert conn.execute("SELECT sqlcoder.ask(%s)", (FIRST,)).fetchone()[0] == FIRST_SQL
        first_prompt = conn.execute("SELECT sqlcoder.prompt(%s)", (FIRST,)).fetchone()[0]
        second_prompt = conn.execute("SELECT sqlcoder.prompt(%s, follow_up => 0)", (SECOND,)).fetchone()[0]
    assert f"[QUESTION]{FIRST}[/QUESTION]\n[SQL]\n{FIRST_SQL}\n[/SQL]" in second_prompt
    model = train_tiny_sqlcoder([(first_prompt, shop.completion_for(FIRST_SQL)),
                                 (second_prompt, shop.completion_for(SECOND_SQL))])
    sock = socket_dir() / "followup.sock"
    with DaemonProcess(model, sock, extra_args=["--quantize", "none", "--device-map", "cpu",
                                                "--socket-group", "postgres"]):
        configure_socket(pg, db, str(sock))
        out = psql_transcript(pg, db, role, CONVERSATION)
    (tmp_path / "transcript.txt").write_text(out)
    print(out)
    lines = out.splitlines()
    assert lines[lines.index(f"SELECT sqlcoder.ask('{FIRST}');") + 1] == FIRST_SQL
    assert lines[lines.index(f"SELECT sqlcoder.ask('{SECOND}', follow_up => 0);") + 1] == SECOND_SQL
    assert second_prompt in out
