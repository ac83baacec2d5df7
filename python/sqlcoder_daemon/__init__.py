"""The SQLCoder model daemon: serves a text-to-SQL model to PostgreSQL over a Unix socket (docs/daemon.md)."""

from importlib import metadata as _metadata

__all__ = ["__version__"]

try:
    __version__ = _metadata.version("sqlcoder")
except _metadata.PackageNotFoundError:  # running from a source tree (PYTHONPATH=python)
    __version__ = "0.4.0"
