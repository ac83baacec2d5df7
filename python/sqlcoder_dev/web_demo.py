"""``make web-demo``: the browser page against the sample shop, the real daemon and the demo model.

Starts a throwaway cluster with the sample database, a role ``analyst`` that
logs in with a password (printed), the daemon, and ``sqlcoder-web`` on
127.0.0.1; Ctrl-C stops everything and removes the cluster. The tests use
:func:`require_password` and :func:`prepare_shop` too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence

from . import shop
from .daemonproc import DaemonProcess, socket_dir
from .pgcluster import Cluster

__all__ = ["main", "require_password", "grant_reader"]


def require_password(cluster: Cluster, role: str, password: str) -> None:
    """Give ``role`` a password and make the cluster ask for it on its socket (it trusts everyone else)."""
    from psycopg import sql

    with cluster.connect() as conn:  # ALTER ROLE takes no parameters: quoted by psycopg instead
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    hba = cluster.datadir / "pg_hba.conf"
    line = f'local all "{role}" scram-sha-256\n'
    text = hba.read_text()
    if line not in text:
        hba.write_text(line + text)  # first match wins: before the trust lines
    cluster.psql("SELECT pg_catalog.pg_reload_conf()")


def grant_reader(cluster: Cluster, dbname: str, role: str) -> None:
    """``role`` may log in, read the sample's tables and use sqlcoder in ``dbname``."""
    cluster.psql(f'DO $$ BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$')
    with cluster.connect(dbname) as conn:
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (role,))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make web-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765, help="port of the page on 127.0.0.1")
    args = parser.parse_args(argv)

    from sqlcoder_web.cli import main as web_main  # the web extra is part of `make setup`

    sockdir = socket_dir(prefix="sqlcoder-webdemo-")
    password = secrets.token_urlsafe(9)
    try:
        with Cluster() as pg:
            pg.createdb("shop")
            pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname="shop")
            shop.load_sample(pg, "shop")
            grant_reader(pg, "shop", "analyst")
            require_password(pg, "analyst", password)
            real_model = os.environ.get("SQLCODER_MODEL")
            if real_model:
                model, extra = real_model, ["--quantize", os.environ.get("SQLCODER_QUANTIZE", "nf4"),
                                            "--device-map", os.environ.get("SQLCODER_DEVICE_MAP", "auto")]
            else:
                started = time.monotonic()
                model, extra = str(shop.ensure_demo_model(pg, "shop")), ["--quantize", "none", "--device-map", "cpu"]
                print(f"* DEMO MODEL ready ({time.monotonic() - started:.1f} s): it knows the sample questions "
                      "(demo/questions.json) and nothing else")
            sock = sockdir / "sqlcoder.sock"
            with DaemonProcess(model, sock, extra_args=[*extra, "--socket-group", "postgres"]):
                with pg.connect("shop") as conn:
                    conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(sock),))
                print(f"* log in as role 'analyst' with password '{password}'; try: "
                      f"{shop.sample_questions()[1]['question']}")
                print("* Ctrl-C stops the page, the daemon and the cluster", flush=True)
                web_main(["--conninfo", f"host={pg.sockdir} port={pg.port} dbname=shop", "--port", str(args.port)])
        print("* cluster stopped and removed")
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
