"""``ask_overhead_ms`` alone (also run against an older install to compare): ``python bench/_ask_overhead.py``."""

from __future__ import annotations

import statistics
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from bench_history import DB, ROLE, TEMPLATE, TimedDaemon, make_tables  # noqa: E402
from sqlcoder_dev.fake_daemon import drop_run_database, setup_run_database, socket_dir  # noqa: E402
from sqlcoder_dev.pgcluster import Cluster  # noqa: E402


def main(samples: int = 50) -> None:
    with Cluster() as pg, TimedDaemon(socket_dir() / "bench-ask.sock") as daemon:
        pg.createdb(TEMPLATE)
        pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=TEMPLATE)
        make_tables(pg, TEMPLATE, 1000)
        setup_run_database(pg, DB, TEMPLATE, daemon.path, ROLE)
        daemon.reply(" SELECT count(*) FROM t_1;")
        with pg.connect(DB, user=ROLE) as conn:
            for _ in range(3):
                conn.execute("SELECT sqlcoder.ask('how many rows in t_1?')")
            overheads = []
            for _ in range(samples):
                daemon.spent.clear()
                started = time.perf_counter()
                conn.execute("SELECT sqlcoder.ask('how many rows in t_1?')")
                overheads.append(time.perf_counter() - started - sum(daemon.spent))
        drop_run_database(pg, DB, ROLE)
    overheads.sort()
    print(f"ask overhead ms: median {statistics.median(overheads) * 1000:.1f}, "
          f"p25 {overheads[len(overheads) // 4] * 1000:.1f}, min {overheads[0] * 1000:.1f}", flush=True)


if __name__ == "__main__":
    main()
