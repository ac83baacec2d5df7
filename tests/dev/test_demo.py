"""``make demo``: it asks its sample questions through the real daemon and prints SQL and rows."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers.paths import ROOT
from sqlcoder_dev import shop


def test_demo_prints_sql_and_rows_and_cleans_up(demo_model) -> None:
    """demo_model first: the demo then finds the trained model in the cache."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    env.pop("SQLCODER_MODEL", None)
    result = subprocess.run([sys.executable, "-m", "sqlcoder_dev.demo"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "DEMO MODEL" in out and "knows those" in out
    for item in shop.sample_questions()[:3]:
        assert f"SELECT sqlcoder.ask('{item['question']}')" in out
        assert item["sql"] in out
    assert "Monitor 27\"         | 289.00" in out  # a row of the second question's result
    assert out.rstrip().endswith("* cluster stopped and removed")
