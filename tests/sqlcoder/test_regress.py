"""pg_regress tests of the SQL surface (``make installcheck``), against the suite's own cluster."""

from __future__ import annotations

import os
import subprocess

from helpers.paths import ROOT
from sqlcoder_dev.pgcluster import Cluster


def test_installcheck(pg: Cluster) -> None:
    env = dict(os.environ, PGHOST=str(pg.sockdir), PGPORT=str(pg.port), PGUSER="postgres")
    result = subprocess.run(["make", "-s", "installcheck"], cwd=ROOT, env=env, capture_output=True, text=True)
    diffs = ROOT / "build" / "regress" / "regression.diffs"
    assert result.returncode == 0, result.stdout + result.stderr + (diffs.read_text() if diffs.exists() else "")
