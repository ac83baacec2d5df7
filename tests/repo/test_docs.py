"""The operator docs stay in step with the code: settings, error classes, messages, daemon codes and flags.

Pure file parsing (no cluster, no daemon): docs/operations.md's "Configuration
reference" and "Troubleshooting" sections against ``sqlcoder.config.SETTINGS`` (the keys),
the extension scripts, ``sqlcoder.errors``, the messages raised in
``python/sqlcoder/*.py`` and the daemon's settings and error codes.
"""

from __future__ import annotations

import ast
import re

import pytest

from helpers.paths import ROOT
from helpers.sql_objects import setting_defaults
from sqlcoder import errors
from sqlcoder.config import SETTINGS
from sqlcoder_daemon import errors as daemon_errors
from sqlcoder_daemon.settings import SETTINGS as DAEMON_SETTINGS
from sqlcoder_daemon.settings import build_parser

OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
DAEMON_DOC = (ROOT / "docs" / "daemon.md").read_text()
PACKAGE = ROOT / "python" / "sqlcoder"


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/operations.md has no '## {title}' section"
    return match.group(1)


def section_of(text: str, title: str) -> str:
    """The body of a ``### title`` subsection."""
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^##|\Z)", text, re.S | re.M)
    assert match, f"no '### {title}' subsection"
    return match.group(1)


REFERENCE = section(OPERATIONS, "Configuration reference")
TROUBLESHOOTING = section(OPERATIONS, "Troubleshooting")


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row (separator rows left out; ``\\|`` is not a cell border)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


# -- configuration reference -----------------------------------------------------

def documented_defaults() -> dict[str, str]:
    """``key -> default`` from the reference's extension tables (first cell a key, second its default)."""
    found = {}
    for cells in table_rows(section_of(REFERENCE, "The extension: `sqlcoder.config`")):
        key = re.fullmatch(r"`([a-z_]+)`", cells[0])
        if key and key.group(1) in SETTINGS and len(cells) >= 2:
            found[key.group(1)] = "" if cells[1] == "empty" else cells[1].strip("`")
    return found


def test_every_extension_setting_is_in_the_reference_with_its_default() -> None:
    documented, defaults = documented_defaults(), setting_defaults()
    for key in SETTINGS:
        assert key in documented, f"Configuration reference lacks sqlcoder.config key {key}"
        assert documented[key] == defaults[key], \
            f"{key}: documented default {documented[key]!r}, the scripts say {defaults[key]!r}"


def test_extension_scripts_insert_exactly_the_parsed_settings() -> None:
    # Defaults live only in the scripts (config_default); config.py parses every key they insert, no other.
    assert set(setting_defaults()) == set(SETTINGS)


def test_every_daemon_setting_is_documented() -> None:
    for setting in DAEMON_SETTINGS:
        name = f"`{setting.name}`"
        assert name in DAEMON_DOC or name in REFERENCE, f"no docs for daemon setting {setting.name}"


def test_daemon_flags_named_in_the_reference_and_troubleshooting_exist() -> None:
    known = {option for action in build_parser()._actions for option in action.option_strings}
    text = re.sub(r"pg_config --\w+", "", REFERENCE + TROUBLESHOOTING)  # other programs' options
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text))
    assert named, "the sections name no daemon flag at all: the pattern is broken"
    assert named <= known, f"flags the daemon does not have: {sorted(named - known)}"


# -- troubleshooting ---------------------------------------------------------------

def _raised_names() -> set[str]:
    """Error classes constructed anywhere in the package outside errors.py."""
    names = set()
    for path in PACKAGE.glob("*.py"):
        if path.name != "errors.py":
            names |= set(re.findall(r"\b([A-Z]\w+)\(", path.read_text()))
    return names


def concrete_error_classes() -> list[type]:
    """``errors.__all__`` less the abstract bases: classes with subclasses that nothing constructs."""
    classes = [getattr(errors, name) for name in errors.__all__]
    raised = _raised_names()
    return [c for c in classes
            if c.__name__ in raised or not any(o is not c and issubclass(o, c) for o in classes)]


@pytest.mark.parametrize("cls", concrete_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_has_an_entry_with_its_sqlstate(cls: type) -> None:
    rows = [cells for cells in table_rows(TROUBLESHOOTING) if f"`{cls.__name__}`" in cells]
    assert rows, f"Troubleshooting has no entry for {cls.__name__}"
    assert any(f"`{cls.sqlstate}`" in " ".join(cells) for cells in rows), \
        f"Troubleshooting's entries for {cls.__name__} do not name SQLSTATE {cls.sqlstate}"


def _literal_parts(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def raised_messages() -> list[tuple[str, str]]:
    """(where, literal text) for each message an error class is raised with in python/sqlcoder/*.py."""
    found = []
    names = set(errors.__all__)
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
                    and node.args):
                for part in _literal_parts(node.args[0]):
                    if len(part.strip()) >= 3:  # leave out ": ", " s" and the like between placeholders
                        found.append((f"{path.name}:{node.lineno}", part))
    return found


def sql_raised_messages() -> list[tuple[str, str]]:
    """(where, literal text) for each RAISE EXCEPTION message of the extension's SQL, split at ``%``."""
    found = []
    for script in sorted((ROOT / "sql" / "objects").glob("*.sql")):
        for match in re.finditer(r"RAISE EXCEPTION '((?:[^']|'')*)'", script.read_text()):
            for part in match.group(1).replace("''", "'").split("%"):
                if len(part.strip()) >= 3:
                    found.append((script.name, part))
    return found


def test_the_message_scanners_find_messages() -> None:
    # Guard against a scanner that silently finds nothing (and so checks nothing).
    assert len(raised_messages()) > 40 and len(sql_raised_messages()) > 10


@pytest.mark.parametrize("where, text", raised_messages() + sql_raised_messages())
def test_every_raised_message_is_in_troubleshooting(where: str, text: str) -> None:
    assert text in TROUBLESHOOTING, f"{where}: message text {text!r} is not in Troubleshooting"


def test_every_daemon_error_code_is_documented() -> None:
    codes = {cls.code for cls in vars(daemon_errors).values()
             if isinstance(cls, type) and issubclass(cls, daemon_errors.DaemonError)}
    documented = {cells[0].strip("`") for cells in table_rows(section_of(TROUBLESHOOTING, "The daemon's error codes"))}
    assert codes <= documented, f"daemon error codes without an entry: {sorted(codes - documented)}"
