"""The extension's SQL has one current definition per object (sql/README.md): the files of sql/objects/,
joined in the Makefile's order into the full install script of the newest version."""

from __future__ import annotations

import re
from collections import Counter

from helpers.paths import ROOT

OBJECTS = ROOT / "sql" / "objects"
NEWEST = (ROOT / "sqlcoder.control").read_text().split("default_version = '")[1].split("'")[0]
# CREATE [UNIQUE] kind name [ON table]: policies and triggers are named per table.
CREATE = re.compile(r"^CREATE (?:UNIQUE )?(SCHEMA|TABLE|VIEW|TYPE|FUNCTION|INDEX|POLICY|TRIGGER|EVENT TRIGGER|ROLE)"
                    r"\s+([\w.]+)(?:[^;]*?\bON\s+([\w.]+))?", re.M)


def listed_sources() -> list[str]:
    """SQL_OBJECTS of the Makefile, in order."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^SQL_OBJECTS\s*=\s*\$\(addprefix sql/objects/,(.*?)\)$", text, re.M)
    assert match, "the Makefile names the object sources in SQL_OBJECTS"
    return match.group(1).split()


def test_the_makefile_builds_every_source_once() -> None:
    listed = listed_sources()
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p.name for p in OBJECTS.glob("*.sql"))


def test_each_object_is_defined_once() -> None:
    """No CREATE then CREATE OR REPLACE, no column added after its table: what a reader finds is the definition."""
    defined: Counter[tuple[str, str, str]] = Counter()
    for source in OBJECTS.glob("*.sql"):
        text = source.read_text()
        assert "CREATE OR REPLACE" not in text, f"{source.name}: edit the definition itself"
        assert not re.search(r"ALTER TABLE \S+ (ADD|DROP|ALTER) COLUMN", text), f"{source.name}: edit the CREATE TABLE"
        for kind, name, table in CREATE.findall(text):
            defined[kind, name, table if kind in ("POLICY", "TRIGGER") else ""] += 1
    twice = [key for key, n in defined.items() if n > 1]
    assert twice == []
    assert ("FUNCTION", "sqlcoder.run", "") in defined  # the walk found definitions at all


def test_the_entry_point_runs_the_newest_package() -> None:
    entry = (OBJECTS / "entry.sql").read_text()
    assert f'api.entry(plpy, "{NEWEST}", op, params, token)' in entry
    updates = sorted((ROOT / "sql").glob(f"sqlcoder--*--{NEWEST}.sql.in"))
    assert len(updates) == 1, "one update script leads to the newest version"
    assert f'api.entry(plpy, "{NEWEST}", op, params, token)' in updates[0].read_text()


def test_the_definition_pattern_names_policies_per_table() -> None:
    found = CREATE.findall("CREATE POLICY owners_add ON sqlcoder.join_hints FOR INSERT\n"
                           "CREATE FUNCTION sqlcoder.run(question text)\n")
    assert found == [("POLICY", "owners_add", "sqlcoder.join_hints"), ("FUNCTION", "sqlcoder.run", "")]
