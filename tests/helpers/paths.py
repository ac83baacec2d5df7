"""Where the checkout's parts are, for tests that read files or start programs from it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = ROOT / "python"
DOCS = ROOT / "docs"
