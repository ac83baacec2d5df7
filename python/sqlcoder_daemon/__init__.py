"""The SQLCoder model daemon: serves a text-to-SQL model to PostgreSQL over a Unix socket (docs/daemon.md)."""

__all__ = ["__version__"]

__version__ = "0.4.0"
