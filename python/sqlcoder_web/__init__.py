"""sqlcoder-web: a browser page where people who do not write SQL ask their database questions.

Each user logs in as their own PostgreSQL role; every question goes through
``sqlcoder.ask`` and ``sqlcoder.execute`` on that role's own connections, so
the page shows nothing the role could not query in psql.
"""

__all__ = ["__version__"]

__version__ = "0.4.0"
