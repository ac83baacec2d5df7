"""Test configuration: the repository's python/ on sys.path, fixtures from tests/fixtures/."""

import os
import sys
from pathlib import Path

# Before anything imports torch (daemon subprocesses inherit it too): OpenMP threads that
# spin while waiting made torch work 5-15x slower on this 2-core box when tests run side by side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

pytest_plugins = ["fixtures.pg", "fixtures.models"]


def pytest_addoption(parser):
    # tests/test_sql_eval_fidelity.py: the defog-data style folder it checks.
    parser.addoption("--sql-eval-data", default=None,
                     help="sql-eval data folder (default: $SQL_EVAL_DATA, else ../shared/sql-eval)")
