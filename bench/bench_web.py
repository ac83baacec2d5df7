"""What sqlcoder-web adds to one request, over calling the SQL API on a kept connection.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``web_run_ms``: POST /run of ``SELECT 1`` through the real ``sqlcoder-web``
  (a new scram-authenticated connection per request, sqlcoder.execute, the
  side list from sqlcoder.history, the page rendered), median of 30.
- ``direct_run_ms``: the same two statements on a kept psycopg connection.
- ``web_overhead_ms``: the difference: what the page's connection per request
  (backend start, authentication, the PL/Python package's first import) and
  HTTP cost.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.web_demo import require_password

DB, ROLE, TEMPLATE, PASSWORD = "bench_web", "bench_web_analyst", "bench_web_template", "bench-pass"
HISTORY = "SELECT id, question FROM sqlcoder.history WHERE operation = 'ask' ORDER BY id DESC LIMIT 50"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    with Cluster() as pg, FakeDaemon(socket_dir() / "fake.sock") as fake:
        pg.createdb(TEMPLATE)
        pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=TEMPLATE)
        setup_run_database(pg, DB, TEMPLATE, fake.path, ROLE)
        require_password(pg, ROLE, PASSWORD)
        with psycopg.connect(pg.conninfo(DB, ROLE), password=PASSWORD, autocommit=True) as conn:
            samples = []
            for _ in range(30):
                started = time.perf_counter()
                conn.execute("SELECT r::text FROM sqlcoder.execute('SELECT 1') AS r").fetchall()
                conn.execute(HISTORY).fetchall()
                samples.append(time.perf_counter() - started)
            direct = statistics.median(samples)
        port = _port()
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "python"))
        proc = subprocess.Popen([sys.executable, "-m", "sqlcoder_web", "--port", str(port), "--conninfo",
                                 f"host={pg.sockdir} port={pg.port} dbname={DB}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base) as client:
                for _ in range(100):
                    try:
                        page = client.get("/login")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
                client.post("/login", data={"csrf": token, "role": ROLE, "password": PASSWORD})
                csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
                samples = []
                for _ in range(31):
                    started = time.perf_counter()
                    reply = client.post("/run", data={"csrf": csrf, "sql": "SELECT 1 AS one"})
                    samples.append(time.perf_counter() - started)
                    assert 'id="row-count">1<' in reply.text, reply.text[-2000:]
                web = statistics.median(samples[1:])
        finally:
            proc.terminate()
            proc.wait(30)
        print(f"BENCH web_run_ms {web * 1000:.1f} ms", flush=True)
        print(f"BENCH direct_run_ms {direct * 1000:.1f} ms", flush=True)
        print(f"BENCH web_overhead_ms {(web - direct) * 1000:.1f} ms", flush=True)
        drop_run_database(pg, DB, ROLE)


if __name__ == "__main__":
    main()
