"""sqlcoder's in-database package, run by PL/Python inside every backend.

Standard library only: it runs in the system's Python, never with torch. The
SQL functions call :func:`sqlcoder.api.entry`, which does the rest.
"""

__version__ = "0.4.0"
__all__ = ["__version__"]
