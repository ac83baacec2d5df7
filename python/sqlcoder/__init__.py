"""sqlcoder's in-database package, run by PL/Python inside every backend.

Standard library only: it runs in the system's Python, never with torch. The
SQL functions call :func:`sqlcoder.api.entry`, which does the rest.
"""

__version__ = "0.4.0"
#: The schemas the extension's script creates (sql/objects/schema.sql): what callers use, and its internals.
SCHEMAS = ("sqlcoder", "sqlcoder_internal")
__all__ = ["__version__", "SCHEMAS"]
