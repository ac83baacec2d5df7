"""What the extension's SQL declares, read from sql/objects/ (the current definition of every object):
the settings' defaults live there only."""

from __future__ import annotations

import re

from helpers.paths import ROOT

OBJECTS = ROOT / "sql" / "objects"


def setting_defaults() -> dict[str, str]:
    """``key -> default`` that a fresh install inserts into sqlcoder.config_default."""
    rows: dict[str, str] = {}
    for source in sorted(OBJECTS.glob("*.sql")):
        for block in re.findall(r"INSERT INTO sqlcoder\.config_default .*?;\n", source.read_text(), re.S):
            for key, value in re.findall(r"\(\s*'([a-z_]+)',\s*'((?:[^']|'')*)'", block):
                assert key not in rows, f"setting {key} declared twice"
                rows[key] = value.replace("''", "'")
    return rows
