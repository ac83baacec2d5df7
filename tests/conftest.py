"""Test configuration: the fixtures of tests/plugins/ for every folder, and the suite's own options.

pyproject.toml puts python/ and tests/ on sys.path (so ``import sqlcoder`` and ``import helpers``
work) and imports test modules by path (``--import-mode=importlib``), so test files in different
folders may share a name.
"""

import os

# Before anything imports torch (daemon subprocesses inherit it too): OpenMP threads that
# spin while waiting made torch work 5-15x slower on this 2-core box when tests run side by side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = ["plugins.postgres", "plugins.models"]


def pytest_addoption(parser):
    # tests/eval/test_sql_eval_fidelity.py: the defog-data style folder it checks.
    parser.addoption("--sql-eval-data", default=None,
                     help="sql-eval data folder (default: $SQL_EVAL_DATA, else ../shared/sql-eval)")
