"""Throwaway PostgreSQL clusters for tests, the demo, benchmarks and evaluation.

PostgreSQL refuses to run as root, so when we are root every server command
runs as the ``postgres`` OS user through ``runuser``. The cluster listens only
on a Unix socket in its own directory, trusts local connections, and is
removed when stopped: nothing depends on a cluster started by hand.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Cluster", "pg_bindir", "SERVER_USER"]

SERVER_USER = "postgres"


def pg_bindir() -> Path:
    """The server binaries of the PostgreSQL that ``pg_config`` names."""
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _as_server_user(cmd: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return list(cmd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A private PostgreSQL cluster: ``with Cluster() as pg: pg.psql("SELECT 1")``."""

    def __init__(self, base_dir: str | os.PathLike | None = None, settings: dict[str, str] | None = None):
        self._own_dir = base_dir is None
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="sqlcoder-pg-"))
        self.datadir = self.base / "data"
        self.sockdir = self.base / "sock"
        self.port = _free_port()
        self.bindir = pg_bindir()
        self.settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.sockdir}'",
            "port": str(self.port),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "lc_messages": "'C'",
        }
        self.settings.update(settings or {})
        self.running = False

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Cluster:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.sockdir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SERVER_USER)
            for p in (self.base, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust",
                       "-U", SERVER_USER, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            with open(self.datadir / "postgresql.auto.conf", "a") as f:
                for k, v in self.settings.items():
                    f.write(f"{k} = {v}\n")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.base / "server.log"),
                   "-w", "-t", "60", "start"])
        self.running = True
        return self

    def stop(self, remove: bool = True) -> None:
        if self.running:
            subprocess.run(_as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                                            "-m", "immediate", "-w", "stop"]),
                           capture_output=True)
            self.running = False
        if remove and self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, cmd: Sequence[str]) -> None:
        r = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
        if r.returncode != 0:
            log = ""
            if (self.base / "server.log").exists():
                log = (self.base / "server.log").read_text()[-4000:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{log}")

    # -- clients -------------------------------------------------------------
    def conninfo(self, dbname: str = "postgres", user: str = SERVER_USER) -> str:
        return f"host={self.sockdir} port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname: str = "postgres", user: str = SERVER_USER, autocommit: bool = True, **kw):
        """A psycopg 3 connection (psycopg is a test/tooling dependency, never the extension's)."""
        import psycopg

        return psycopg.connect(self.conninfo(dbname, user), autocommit=autocommit, **kw)

    def psql(self, sql: str | None = None, dbname: str = "postgres", user: str = SERVER_USER,
             file: str | os.PathLike | None = None, check: bool = True) -> str:
        """Run psql with ON_ERROR_STOP; returns its stdout (unaligned, tuples only)."""
        cmd = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", str(self.sockdir), "-p", str(self.port), "-U", user, "-d", dbname]
        if file is not None:
            cmd += ["-f", str(file)]
        else:
            cmd += ["-c", sql or ""]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    def createdb(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run([str(self.bindir / "pg_isready"), "-h", str(self.sockdir), "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("cluster did not become ready")
