"""Test configuration: the repository's python/ on sys.path, fixtures from tests/fixtures/."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

pytest_plugins = ["fixtures.pg", "fixtures.models"]
