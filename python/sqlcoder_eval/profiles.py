"""Prompt profiles for ``sqlcoder-eval run --prompt-profile``: which prompt the extension renders.

``default`` is what ``sqlcoder.ask`` sends in production (the ``template``
setting ``auto``: the served model's own template). ``sql-eval`` is what
sql-eval rendered for the served model (setting ``sql-eval``; see
``python/sqlcoder/_sqleval_prompt.py``). The profile is set in each database's
``sqlcoder.config`` before the run, so the prompt still comes from the extension,
and stays set afterwards (the settings are per database).
"""

from __future__ import annotations

import psycopg

from .load import database_conninfo

__all__ = ["PROFILES", "ProfileError", "apply_profile"]

PROFILES = {"default": "auto", "sql-eval": "sql-eval"}


class ProfileError(RuntimeError):
    """The profile could not be set in a database (no extension, or no right to change its settings)."""


def apply_profile(conninfo: str, databases: list[str], profile: str) -> str:
    """Set the ``template`` setting of every database for ``profile``; returns a line for the user."""
    value = PROFILES[profile]
    for name in databases:
        try:
            with psycopg.connect(database_conninfo(conninfo, name), autocommit=True) as conn:
                cur = conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'template'", (value,))
                if cur.rowcount != 1:
                    raise ProfileError(f"{name}: sqlcoder.config has no template setting")
        except psycopg.Error as e:
            raise ProfileError(f"{name}: cannot set the prompt profile ({str(e).strip().splitlines()[0]}); "
                               "is the extension installed and may this role update sqlcoder.config?") from None
    return f"prompt profile {profile}: template = {value} in {len(databases)} databases"
